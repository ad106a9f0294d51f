"""Overload test: N concurrent clients hammer one server on loopback for a bounded time.

Checks the promises of the work queue: no 5xx, every accepted request answered, refusals are 429 with
Retry-After, memory stays bounded. Prints one table and exits 0.

    python bench/load_test.py --space tiny-random --clients 50 --seconds 60
    python bench/load_test.py --case oversized   # 10 oversized requests in flight: /api/health p95
    python bench/load_test.py --case uploads     # 64 files of 39.9 MP in one request: added peak RSS

`--case oversized` keeps 10 clients sending the request of issue 16 (a path of 500,000 zeros, 1.5 MB) and,
separately, bodies just under the JSON cap that fail validation, while one client times /api/health; the
baseline is /api/health on the same server with nothing else in flight (ratio = loaded p95 / idle p95). It runs
the server as shipped, then one that parses every JSON body on the event loop (as before the fix) for comparison.
`--case uploads` posts 64 PNGs of 39.9 MP (a few kB each on the wire, 120 MB each decoded) in one request and
reads the server's peak RSS (VmHWM) before and after; the baseline is one such file on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor

import httpx
from serve_util import peak_rss_mb, rss_mb, running_server


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def client_loop(base, map_id, seconds, rng, results):
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        while time.monotonic() < end:
            kind = rng.random()
            start = time.perf_counter()
            try:
                if kind < 0.7:  # fresh decodes: cache misses, the expensive path
                    r = await http.post(
                        f"/api/maps/{map_id}/decode",
                        json={"x": rng.uniform(-1, 1), "y": rng.uniform(-1, 1), "seed": rng.randrange(1 << 30)},
                    )
                    op = "decode"
                else:
                    r = await http.get(f"/api/maps/{map_id}/points")
                    op = "points"
            except httpx.TransportError as e:
                results.append(("error", type(e).__name__, time.perf_counter() - start, None))
                continue
            results.append((op, r.status_code, time.perf_counter() - start, r.headers.get("retry-after")))
            if r.status_code == 429:
                await asyncio.sleep(min(float(r.headers.get("retry-after", 1)), 2.0) * rng.random())


async def run(args):
    with running_server(args.space) as (base, proc):
        made = httpx.post(base + "/api/maps", json={"title": "load"}).json()
        httpx.post(
            f"{base}/api/maps/{made['id']}/prompts",
            headers={"X-Edit-Key": made["edit_key"]},
            json={"prompts": [f"prompt {i}" for i in range(30)]},
            timeout=120,
        )
        rss_before = rss_mb(proc.pid)
        results: list = []
        rng = random.Random(0)
        started = time.monotonic()
        tasks = [
            client_loop(base, made["id"], args.seconds, random.Random(rng.random()), results)
            for _ in range(args.clients)
        ]
        await asyncio.gather(*tasks)
        wall = time.monotonic() - started
        rss_after, rss_peak = rss_mb(proc.pid), peak_rss_mb(proc.pid)
        health = httpx.get(base + "/api/health").status_code

    decodes = [r for r in results if r[0] == "decode"]
    ok = [r[2] for r in decodes if r[1] == 200]
    refused = [r for r in decodes if r[1] == 429]
    five = [r for r in results if isinstance(r[1], int) and r[1] >= 500]
    errors = [r for r in results if r[0] == "error"]
    other = [r for r in results if isinstance(r[1], int) and r[1] not in (200, 429) and r[1] < 500]
    print(f"load test: space={args.space} clients={args.clients} seconds={args.seconds} (wall {wall:.1f} s)")
    print("| metric | value |\n|---|---|")
    rows = [
        ("requests", len(results)),
        ("decodes answered 200", len(ok)),
        ("decode p50 / p95 (s), accepted", f"{pct(ok, 0.5):.3f} / {pct(ok, 0.95):.3f}"),
        ("decodes refused 429 (share)", f"{len(refused)} ({len(refused) / max(1, len(decodes)):.0%})"),
        ("429 with Retry-After", f"{sum(1 for r in refused if r[3])}/{len(refused)}"),
        ("points p50 (s)", f"{pct([r[2] for r in results if r[0] == 'points' and r[1] == 200], 0.5):.3f}"),
        ("5xx", len(five)),
        ("other 4xx", len(other)),
        ("transport errors", len(errors)),
        ("server RSS before / after / peak (MB)", f"{rss_before:.0f} / {rss_after:.0f} / {rss_peak:.0f}"),
        ("health after", health),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")


def path_of_zeros(count: int) -> bytes:
    return ('{"points": [' + ", ".join(["0"] * count) + '], "steps": 2}').encode()


def under_the_cap_body(limit: int) -> bytes:
    """A JSON body just under `limit` bytes whose every element fails validation (strings for numbers)."""
    pair, head, tail = '["x", "y"], ', '{"points": [', '["x", "y"]], "steps": 2}'
    count = (limit - len(head) - len(tail) - 64) // len(pair)
    return (head + pair * count + tail).encode()


async def health_times(base: str, seconds: float) -> list[float]:
    times = []
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        while time.monotonic() < end:
            start = time.perf_counter()
            r = await http.get("/api/health")
            assert r.status_code == 200
            times.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)
    return times


async def flood(base: str, url: str, body: bytes, seconds: float, codes: list) -> None:
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        while time.monotonic() < end:
            try:
                r = await http.post(url, content=body, headers={"Content-Type": "application/json"})
                codes.append((r.status_code, len(r.content)))
            except httpx.TransportError as e:  # the server closes a refused upload's connection early
                codes.append((type(e).__name__, 0))


def flood_process(base: str, url: str, body: bytes, seconds: float, clients: int) -> list:
    codes: list = []

    async def all_clients():
        await asyncio.gather(*[flood(base, url, body, seconds, codes) for _ in range(clients)])

    asyncio.run(all_clients())
    return codes


async def oversized_rows(args, extra_env: dict) -> list:
    with running_server(args.space, extra_env=extra_env) as (base, proc):
        made = httpx.post(base + "/api/maps", json={"title": "oversized"}).json()
        httpx.post(
            f"{base}/api/maps/{made['id']}/prompts",
            headers={"X-Edit-Key": made["edit_key"]},
            json={"prompts": [f"prompt {i}" for i in range(30)]},
            timeout=120,
        )
        url = f"/api/maps/{made['id']}/path"
        limit = args.json_cap
        idle = await health_times(base, args.seconds / 3)
        rows = [("idle (baseline)", idle, [], idle)]
        for name, body in (
            ("500,000 zeros (1.5 MB)", path_of_zeros(500_000)),
            (f"{len(under_the_cap_body(limit)) / 1e6:.2f} MB of bad pairs, under the cap", under_the_cap_body(limit)),
        ):
            # The 10 senders run in another process: the timing loop here measures the server, not them.
            with ProcessPoolExecutor(1) as pool:
                sending = pool.submit(flood_process, base, url, body, args.seconds / 3, 10)
                await asyncio.sleep(0.5)  # all ten in flight before the timing starts
                loaded = await health_times(base, args.seconds / 3 - 1.0)
                codes = sending.result()
            rows.append((name, loaded, codes, idle))
    return rows


async def run_oversized(args):
    """The server as it ships (JSON bodies from `large_json_bytes` up parsed off the event loop, one at a time),
    then the same server with `large_json_bytes` above the JSON cap: every body parsed on the event loop by
    FastAPI, as before issue 16's fix (same run, same machine load)."""
    load_before = os.getloadavg()
    configs = [("off the loop (default)", {})]
    if not args.no_compare:
        configs.append(("on the loop (before)", {"LATENTMAP_LARGE_JSON_BYTES": str(4 * args.json_cap)}))
    table = []
    for config, env in configs:
        for row in await oversized_rows(args, env):
            table.append((config, *row))
    load_after = os.getloadavg()
    print(
        f"oversized requests: space={args.space}, 10 clients in flight, {args.seconds / 3:.0f} s per row; load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min), {os.cpu_count()} CPUs"
    )
    print(
        "| large JSON bodies parsed | in flight | /api/health p50 / p95 (ms) | p95 ÷ idle p95 | their answers | "
        "largest answer (bytes) |"
    )
    print("|---|---|---|---|---|---|")
    for config, name, times, codes, idle in table:
        answers = ", ".join(f"{c}×{n}" for c, n in sorted(_count(c for c, _ in codes).items(), key=str)) or "-"
        largest = max((size for _, size in codes), default=0)
        print(
            f"| {config} | {name} | {pct(times, 0.5) * 1e3:.1f} / {pct(times, 0.95) * 1e3:.1f} | "
            f"{pct(times, 0.95) / pct(idle, 0.95):.2f} | {answers} | {largest} |"
        )


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def big_png(pixels: int) -> bytes:
    from PIL import Image

    width = int(pixels**0.5 * 4 / 3)
    height = pixels // width
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 200)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def run_uploads(args):
    png = big_png(int(args.megapixels * 1_000_000))
    with running_server(args.space) as (base, proc):
        made = httpx.post(base + "/api/maps", json={"title": "uploads"}).json()
        key = {"X-Edit-Key": made["edit_key"]}
        url = f"{base}/api/maps/{made['id']}/images"
        rows = []
        for count in (1, args.files):
            before, peak_before = rss_mb(proc.pid), peak_rss_mb(proc.pid)
            start = time.perf_counter()
            r = httpx.post(
                url,
                headers=key,
                timeout=1800,
                files=[("files", (f"{count}-{i}.png", png, "image/png")) for i in range(count)],
            )
            wall = time.perf_counter() - start
            rows.append((count, r.status_code, wall, before, peak_before, peak_rss_mb(proc.pid), rss_mb(proc.pid)))
    print(
        f"uploads: space={args.space}, PNGs of {args.megapixels} MP ({len(png) / 1e3:.0f} kB each on the wire, "
        f"{args.megapixels * 3:.0f} MB each decoded)"
    )
    print(
        "| files in the request | status | wall (s) | RSS before (MB) | peak before → after (MB) | added peak (MB) | "
        "RSS after (MB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for count, status, wall, before, peak_before, peak_after, after in rows:
        print(
            f"| {count} | {status} | {wall:.1f} | {before:.0f} | {peak_before:.0f} → {peak_after:.0f} | "
            f"{peak_after - max(peak_before, before):.0f} | {after:.0f} |"
        )
    one, many = rows[0], rows[-1]
    added_one, added_many = one[5] - max(one[4], one[3]), many[5] - max(many[4], many[3])
    print(
        f"added peak, {many[0]} files ÷ 1 file: {added_many / max(1.0, added_one):.2f} "
        f"({added_many:.0f} MB ÷ {added_one:.0f} MB)"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=["decode", "oversized", "uploads"], default="decode")
    p.add_argument("--space", default="tiny-random")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--json-cap", type=int, default=1024 * 1024, help="the server's max_json_bytes (oversized case)")
    p.add_argument("--no-compare", action="store_true", help="oversized case: skip the on-the-loop comparison server")
    p.add_argument("--files", type=int, default=64, help="files in the big upload (uploads case)")
    p.add_argument("--megapixels", type=float, default=39.9, help="pixels of each uploaded PNG (uploads case)")
    args = p.parse_args()
    if args.case == "oversized":
        asyncio.run(run_oversized(args))
    elif args.case == "uploads":
        run_uploads(args)
    else:
        asyncio.run(run(args))
