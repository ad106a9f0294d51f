"""Presentation fan-out: N followers on SSE, the presenter changes state R times; event latency per follower.

Loopback only, bounded (stops after R rounds or --seconds). Prints one table and exits 0.

    python bench/sse_fanout.py --followers 50 --rounds 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
from serve_util import running_server


async def follower(base, code, inbox, ready):
    async with httpx.AsyncClient(timeout=60) as http:
        async with http.stream("GET", f"{base}/api/presentations/{code}/events") as r:
            ready.set()
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    inbox.append((data["version"], time.time()))
                elif line.startswith("event: end"):
                    return


async def run(args):
    with running_server(args.space) as (base, proc):
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            made = (await http.post("/api/maps", json={"title": "fan-out"})).json()
            p = (
                await http.post(f"/api/maps/{made['id']}/presentations", headers={"X-Edit-Key": made["edit_key"]})
            ).json()
            code, key = p["code"], {"X-Presenter-Key": p["presenter_key"]}
            inboxes = [[] for _ in range(args.followers)]
            readies = [asyncio.Event() for _ in range(args.followers)]
            tasks = [asyncio.create_task(follower(base, code, inboxes[i], readies[i])) for i in range(args.followers)]
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
            while (await http.get(f"/api/presentations/{code}")).json()["followers"] < args.followers:
                await asyncio.sleep(0.05)
            sent, presenter_latency = {}, []
            end = time.monotonic() + args.seconds
            for i in range(args.rounds):
                if time.monotonic() > end:
                    break
                t0 = time.time()
                r = await http.put(
                    f"/api/presentations/{code}/state",
                    headers=key,
                    json={"view": [i / 100, 0, 1], "at": [0, i / 100], "seed": i},
                )
                presenter_latency.append(time.time() - t0)
                sent[r.json()["version"]] = t0
                await asyncio.sleep(args.interval)
            await asyncio.sleep(1)
            await http.delete(f"/api/presentations/{code}", headers=key)
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    latencies = [t - sent[v] for inbox in inboxes for v, t in inbox if v in sent]
    received = sum(1 for inbox in inboxes for v, _ in inbox if v in sent)
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    presenter_latency.sort()
    print(f"SSE fan-out: {args.followers} followers, {len(sent)} state changes, loopback, space {args.space}")
    print("| metric | value |\n|---|---|")
    print(f"| events delivered | {received} / {len(sent) * args.followers} |")
    print(f"| event latency p50 / p95 (ms) | {pct(0.5):.1f} / {pct(0.95):.1f} |")
    print(f"| presenter PUT p50 (ms) | {presenter_latency[len(presenter_latency) // 2] * 1000:.1f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--space", default="tiny-random")
    p.add_argument("--followers", type=int, default=50)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--seconds", type=float, default=60)
    asyncio.run(run(p.parse_args()))
