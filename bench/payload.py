"""Map payload: bytes per point of `GET /points` (JSON) vs `GET /points.bin` (9 bytes/point), with and without
gzip, plus server time to first byte, on a real server whose map is written straight into its store
(synthetic positions, labels like "a photo of thing number 12345", 8-d dummy vectors: only positions are read).

    python bench/payload.py --sizes 100000            # ~1 min
    python bench/payload.py --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time

import httpx
import numpy as np
from serve_util import running_server
from space_util import machine


def build_map(data_dir: str, n: int) -> str:
    from app.maps.store import NewItem, Store

    store = Store(data_dir)
    record, _ = store.create_map(f"payload {n}", "tiny-random")
    rng = np.random.default_rng(0)
    vec = np.zeros(8, np.float32)
    for start in range(0, n, 50_000):
        m = min(n, start + 50_000) - start
        kinds = rng.choice(["text", "image"], size=m)
        items = [
            NewItem(kind=str(kinds[i]), label=f"a photo of thing number {start + i}", vector=vec, decode_vector=vec)
            for i in range(m)
        ]
        xy = rng.uniform(-0.95, 0.95, size=(m, 2)).astype(np.float32)
        store.add_items(
            record.id,
            items,
            xy,
            projection={"method": "umap", "revision": 1, "fitted_count": n} if start == 0 else None,
        )
    return record.id


def main(args):
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        data_dir = tempfile.mkdtemp(prefix="latentmap-bench-payload-")
        map_id = build_map(data_dir, n)
        with running_server("tiny-random", data_dir=data_dir) as (base, _proc):
            with httpx.Client(base_url=base, timeout=600) as http:
                for path in ("points", "points.bin"):
                    http.get(f"/api/maps/{map_id}/{path}")  # warm
                    t = time.perf_counter()
                    r = http.get(f"/api/maps/{map_id}/{path}", headers={"Accept-Encoding": "identity"})
                    secs = time.perf_counter() - t
                    r.raise_for_status()
                    body = r.content
                    rows.append((n, path, len(body), len(gzip.compress(body, 6)), secs))
    print(f"payload: synthetic map, real server ({machine()})")
    print(
        "| N | endpoint | bytes/point | gzip bytes/point | total MB | server+transfer s (loopback) |\n"
        "|---|---|---|---|---|---|"
    )
    for n, path, raw, gz, secs in rows:
        print(f"| {n:,} | /{path} | {raw / n:.1f} | {gz / n:.1f} | {raw / 1e6:.1f} | {secs:.2f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="100000")
    main(p.parse_args())
