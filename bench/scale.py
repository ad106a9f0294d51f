"""A million items: build a map from a Parquet file of precomputed vectors with `latentmap build --table
--vector`, serve it, and measure what a user waits for, beside the same figures for a 1,000-item map.

    python bench/scale.py                       # 1,000 and 1,000,000 items, digits space
    python bench/scale.py --sizes 100000        # a quicker look
    python bench/scale.py --first-frame         # also time the page's first frame in headless Chromium

Vectors are the digits space's own image embeddings of scikit-learn's digits, each repeated with small noise
(so the map has the space's real cluster structure). Reported per size: build time (the whole CLI command:
read, store, final fit on a sample + placement of the rest), its peak RSS, bytes on disk per item, click ->
decode latency (POST /decode at fresh points, p50; the first, which loads the map, is reported apart),
neighbours p50 (GET /neighbors at fresh points), the server's own memory after them (RssAnon: the
memory-mapped array files it reads are page cache, not counted) and, with --first-frame, the page's first frame.
Targets (2-core machine): build <= 15 min and peak RSS <= 6 GB at 1M; click -> decode at 1M <= 1.2x at 1k.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_util import REPO_ROOT, running_server

SPACE = "digits"


def make_table(path: Path, n: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.maps.demo import digit_pil_images
    from app.settings import Settings
    from app.spaces.registry import load_space

    space = load_space(Settings(space=SPACE, device="cpu"))
    pictures, labels = digit_pil_images()
    base = space.encode_images(pictures).vectors.astype(np.float32)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), size=n)
    scale = 0.05 * np.linalg.norm(base, axis=1).mean() / np.sqrt(base.shape[1])
    vectors = (base[pick] + rng.normal(scale=scale, size=(n, base.shape[1]))).astype(np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "id": pa.array([f"item-{i}" for i in range(n)]),
            "vector": pa.FixedSizeListArray.from_arrays(flat, base.shape[1]),
            "digit": pa.array([str(int(d)) for d in np.asarray(labels)[pick]]),
            "brightness": pa.array(vectors[:, 0].astype(np.float64)),
        }
    )
    pq.write_table(table, path)


def build_argv(data_dir: Path, table: Path, title: str) -> list[str]:
    """`latentmap build` of a table of precomputed vectors (also bench/build_phases.py's)."""
    return [
        "build",
        "--space",
        SPACE,
        "--data-dir",
        str(data_dir),
        "--table",
        str(table),
        "--vector",
        "vector",
        "--label",
        "id",
        "--title",
        title,
        "--quiet",
    ]


def build(data_dir: Path, table: Path, title: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, map id) of the CLI build."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *build_argv(data_dir, table, title)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"build failed: {err.decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, json.loads(out)["id"]


def disk_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())


def probe(base: str, map_id: str, n_clicks: int, seed: int, offset: int = 0) -> dict:
    """`offset` shifts every click's seed: a map served again decodes afresh (nothing from its cache)."""
    info = httpx.get(f"{base}/api/maps/{map_id}", timeout=60).json()
    x0, y0, x1, y1 = info["bounds"]
    rng = np.random.default_rng(seed)
    client = httpx.Client(base_url=base, timeout=600)
    first = time.perf_counter()
    client.post(f"/api/maps/{map_id}/decode", json={"x": x0, "y": y0, "seed": 1 + offset}).raise_for_status()
    first = time.perf_counter() - first
    decode, neighbours = [], []
    for i in range(n_clicks):
        x, y = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
        t = time.perf_counter()
        r = client.post(f"/api/maps/{map_id}/decode", json={"x": x, "y": y, "seed": 1000 + i + offset})
        r.raise_for_status()
        assert r.headers["X-Decode-Cache"] == "miss"
        decode.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.get(f"/api/maps/{map_id}/neighbors", params={"x": x, "y": y, "k": 10}).raise_for_status()
        neighbours.append(time.perf_counter() - t)
    t = time.perf_counter()
    client.get(f"/api/maps/{map_id}/points.bin").raise_for_status()
    points_bin = time.perf_counter() - t
    client.close()
    return {
        "first_decode_s": first,
        "decode_p50_ms": 1000 * statistics.median(decode),
        "neighbors_p50_ms": 1000 * statistics.median(neighbours),
        "points_bin_s": points_bin,
    }


def anon_rss_mb(pid: int) -> float:
    """The server's own memory (RssAnon): not the page cache of the memory-mapped array files it reads."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def first_frame(base: str, map_id: str) -> float:
    from playwright.sync_api import sync_playwright
    from render import CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS + ["--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            start = time.perf_counter()
            page.goto(f"{base}/m/{map_id}")
            page.wait_for_selector("body[data-ready='1']", timeout=300_000)
            page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
            return time.perf_counter() - start
        finally:
            browser.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000")
    p.add_argument("--baseline", type=int, default=1000)
    p.add_argument("--clicks", type=int, default=15)
    p.add_argument("--first-frame", action="store_true")
    p.add_argument("--work-dir", help="keep tables and data here (default: a temporary folder)")
    p.add_argument("--reuse", action="store_true", help="serve maps already built in --work-dir again (no build)")
    args = p.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="latentmap-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    load_start = os.getloadavg()
    for n in [args.baseline] + [int(s) for s in args.sizes.split(",")]:
        table, data = work / f"vectors-{n}.parquet", work / f"data-{n}"
        t = time.perf_counter()
        if not table.exists():  # a kept --work-dir reuses its tables (the same seed makes the same table)
            make_table(table, n)
        print(
            f"{n:,}: table ready in {time.perf_counter() - t:.1f} s ({table.stat().st_size / n:.0f} B/row)",
            flush=True,
        )
        built = data / "build.json"  # the build's figures, kept beside its data: --reuse serves it again
        if args.reuse and built.exists():
            row = json.loads(built.read_text())
            print(f"{n:,}: reusing the map built in {row['build_s']:.1f} s", flush=True)
        else:
            seconds, peak_mb, map_id = build(data, table, f"scale {n}")
            row = {"n": n, "build_s": seconds, "peak_rss_mb": peak_mb, "disk_b_per_item": disk_bytes(data) / n}
            row["map_id"] = map_id
            built.write_text(json.dumps(row))
            print(f"{n:,}: built in {seconds:.1f} s, peak RSS {peak_mb:.0f} MB", flush=True)
        map_id = row.pop("map_id")
        with running_server(SPACE, data_dir=str(data)) as (base, server):
            row.update(probe(base, map_id, args.clicks, seed=n, offset=int(time.time()) % 100_000 * 100))
            row["server_anon_mb"] = anon_rss_mb(server.pid)
            if args.first_frame:
                try:
                    row["first_frame_s"] = first_frame(base, map_id)
                except Exception as e:  # noqa: BLE001 - the other figures still count; say why this one is missing
                    print(f"{n:,}: first frame not measured: {type(e).__name__}: {e}", flush=True)
                    row["first_frame_s"] = float("nan")
        print(f"{n:,}: {row}", flush=True)
        rows.append(row)
    load_end = os.getloadavg()
    print(
        f"\nscale: space {SPACE}, {os.cpu_count()} CPUs (shared), {args.clicks} clicks per map; load average "
        f"{' / '.join(f'{x:.1f}' for x in load_start)} at the start, {' / '.join(f'{x:.1f}' for x in load_end)} at the end"
    )
    keys = [
        ("build_s", "build (s)"),
        ("peak_rss_mb", "build peak RSS (MB)"),
        ("disk_b_per_item", "disk (bytes/item)"),
        ("points_bin_s", "points.bin (s)"),
        ("first_decode_s", "first click, loads the map (s)"),
        ("decode_p50_ms", "click -> decode p50 (ms)"),
        ("neighbors_p50_ms", "neighbours p50 (ms)"),
        ("server_anon_mb", "server memory after the clicks, RssAnon (MB)"),
    ] + ([("first_frame_s", "first frame (s)")] if args.first_frame else [])
    base_row = rows[0]
    print("| figure | " + " | ".join(f"{r['n']:,} items" for r in rows) + " | ratio to 1k |")
    print("|---|" + "---|" * len(rows) + "---|")
    for key, name in keys:
        ratios = ", ".join(f"{r[key] / base_row[key]:.2f}x" for r in rows[1:]) if base_row[key] else "-"
        print(f"| {name} | " + " | ".join(f"{r[key]:,.1f}" for r in rows) + f" | {ratios} |")


if __name__ == "__main__":
    main()
