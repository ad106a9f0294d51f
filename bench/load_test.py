"""Overload test: N concurrent clients hammer one server on loopback for a bounded time.

Checks the promises of the work queue: no 5xx, every accepted request answered, refusals are 429 with
Retry-After, memory stays bounded. Prints one table and exits 0.

    python bench/load_test.py --space tiny-random --clients 50 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

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
                    r = await http.post(f"/api/maps/{map_id}/decode",
                                        json={"x": rng.uniform(-1, 1), "y": rng.uniform(-1, 1),
                                              "seed": rng.randrange(1 << 30)})
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
        httpx.post(f"{base}/api/maps/{made['id']}/prompts", headers={"X-Edit-Key": made["edit_key"]},
                   json={"prompts": [f"prompt {i}" for i in range(30)]}, timeout=120)
        rss_before = rss_mb(proc.pid)
        results: list = []
        rng = random.Random(0)
        started = time.monotonic()
        tasks = [client_loop(base, made["id"], args.seconds, random.Random(rng.random()), results)
                 for _ in range(args.clients)]
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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--space", default="tiny-random")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60)
    asyncio.run(run(p.parse_args()))
