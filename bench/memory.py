"""Server memory with a big map: peak RSS of a real `latentmap serve` after building an N-item map over HTTP
(prompts in batches, some images), a full refit, and a round of reads (points, points.bin, decodes, neighbours,
search). Uses the digits space when its weights exist, else tiny-random (see --space).

    python bench/memory.py --items 10000 --images 1000
"""

from __future__ import annotations

import argparse
import time

import httpx
from serve_util import peak_rss_mb, rss_mb, running_server
from space_util import machine, photo_like_png


def main(args):
    space = args.space
    if space == "auto":
        from app.settings import DIGITS_SPACE_DIR

        space = "digits" if (DIGITS_SPACE_DIR / "space.json").is_file() else "tiny-random"
    rows = []
    env = {"LATENTMAP_CREATE_DEMO_MAP": "0"}
    with running_server(space, extra_env=env) as (base, proc):
        rows.append(("after start", rss_mb(proc.pid), peak_rss_mb(proc.pid), 0.0))
        with httpx.Client(base_url=base, timeout=900) as http:
            made = http.post("/api/maps", json={"title": "memory"}).json()
            h = {"X-Edit-Key": made["edit_key"]}
            mid = made["id"]
            t = time.perf_counter()
            n_prompts = args.items - args.images
            for start in range(0, n_prompts, 200):
                batch = [f"a photo of thing number {i}" for i in range(start, min(n_prompts, start + 200))]
                http.post(f"/api/maps/{mid}/prompts", headers=h, json={"prompts": batch}).raise_for_status()
            for start in range(0, args.images, 64):
                files = [
                    ("files", (f"im{i}.png", photo_like_png(i, 128), "image/png"))
                    for i in range(start, min(args.images, start + 64))
                ]
                http.post(f"/api/maps/{mid}/images", headers=h, files=files).raise_for_status()
            rows.append(
                (f"after adding {args.items:,} items", rss_mb(proc.pid), peak_rss_mb(proc.pid), time.perf_counter() - t)
            )
            t = time.perf_counter()
            http.post(f"/api/maps/{mid}/refit", headers=h).raise_for_status()
            rows.append(("after a full refit", rss_mb(proc.pid), peak_rss_mb(proc.pid), time.perf_counter() - t))
            t = time.perf_counter()
            http.get(f"/api/maps/{mid}/points").raise_for_status()
            http.get(f"/api/maps/{mid}/points.bin").raise_for_status()
            for i in range(args.decodes):
                http.post(f"/api/maps/{mid}/decode", json={"x": 0.1 * i - 0.4, "y": 0.2, "seed": i}).raise_for_status()
                params = {"x": 0.1 * i - 0.4, "y": 0.2, "k": 20}
                http.get(f"/api/maps/{mid}/neighbors", params=params).raise_for_status()
            http.get(f"/api/maps/{mid}/search", params={"q": "a red thing", "k": 10}).raise_for_status()
            count = http.get(f"/api/maps/{mid}").json()["count"]
            rows.append(
                (
                    "after reads (points, points.bin, decodes, neighbours, search)",
                    rss_mb(proc.pid),
                    peak_rss_mb(proc.pid),
                    time.perf_counter() - t,
                )
            )
    print(f"memory: space={space} items={count:,} ({args.images:,} images) ({machine()})")
    print("| stage | RSS MB | peak RSS MB (VmHWM) | stage seconds |\n|---|---|---|---|")
    for name, rss, peak, secs in rows:
        print(f"| {name} | {rss:.0f} | {peak:.0f} | {secs:.1f} |")
    print(f"| **peak RSS vs 1.5 GB target** | | **{rows[-1][2]:.0f} MB** ({rows[-1][2] / 1536:.0%}) | |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--space", default="auto", help="auto = digits if its weights exist, else tiny-random")
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--images", type=int, default=1_000)
    p.add_argument("--decodes", type=int, default=5)
    main(p.parse_args())
