"""Prompt → point latency: one prompt added over HTTP ÷ a bare `encode_text` of one prompt, same process.

The map is seeded first (`--seed-items` prompts; ≥ umap_min_items means a UMAP map, so each new prompt is
placed through the kNN path, which is what a user of a real map waits for). Calls are interleaved.

    python bench/prompt_latency.py --space tiny-random --requests 60
"""

from __future__ import annotations

import argparse
import time

import httpx
import torch
from serve_util import running_server
from space_util import load_space, machine, make_service, pct, set_threads


def main(args):
    env = set_threads(args.threads)
    space = load_space(args.space)
    service = make_service(space)
    record, _ = service.create_map("prompt latency, in-process")
    service.add_prompts(record.id, [f"seed prompt {i}" for i in range(args.seed_items)])

    def settle():
        """Spaces that generate a picture per prompt do it after the prompt is placed; let those finish outside
        the timing, so each timed request finds the device idle (as a user adding one prompt does)."""
        if service.prompt_images is not None:
            service.prompt_images.wait_idle(600)

    bare_t, service_t, floor_t, http_t = [], [], [], []
    with running_server(args.space, extra_env=env) as (base, _proc):
        made = httpx.post(base + "/api/maps", json={"title": "prompt latency"}).json()
        headers = {"X-Edit-Key": made["edit_key"]}
        url = f"{base}/api/maps/{made['id']}/prompts"
        with httpx.Client(timeout=600) as http:
            r = http.post(url, headers=headers, json={"prompts": [f"seed prompt {i}" for i in range(args.seed_items)]})
            r.raise_for_status()

            def settle_server():
                while any(p.get("pending") for p in http.get(f"{base}/api/maps/{made['id']}/points").json()["points"]):
                    time.sleep(0.2)

            method = http.get(f"{base}/api/maps/{made['id']}").json().get("projection", {})
            for i in range(3):  # warm-up
                space.encode_text([f"warm {i}"])
                service.add_prompts(record.id, [f"warm {i}"])
                http.post(url, headers=headers, json={"prompts": [f"warm {i}"]}).raise_for_status()
            settle()
            settle_server()
            for i in range(args.requests):
                prompt = f"a photo of thing number {i}"
                t = time.perf_counter()
                with torch.inference_mode():
                    space.encode_text([prompt])
                bare_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                service.add_prompts(record.id, [prompt + " (service)"])
                service_t.append(time.perf_counter() - t)
                settle()
                t = time.perf_counter()
                http.get(f"{base}/api/health").raise_for_status()
                floor_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                http.post(url, headers=headers, json={"prompts": [prompt + " (http)"]}).raise_for_status()
                http_t.append(time.perf_counter() - t)
                settle_server()
    ms = lambda v: f"{1000 * v:.1f}"  # noqa: E731
    print(
        f"prompt latency: space={args.space} requests={args.requests} map seeded with {args.seed_items} prompts "
        f"(projection {method.get('method', '?') if isinstance(method, dict) else method}) threads={args.threads} "
        f"({machine()})"
    )
    print("| path | p50 ms | p95 ms | p50 ÷ bare p50 |\n|---|---|---|---|")
    b50 = pct(bare_t, 0.5)
    for name, v in (
        ("bare encode_text (1 prompt)", bare_t),
        ("MapService.add_prompts (in-process: encode + place + SQLite)", service_t),
        ("for scale: GET /api/health round trip (HTTP floor)", floor_t),
        ("POST /prompts (1 prompt, real server)", http_t),
    ):
        print(f"| {name} | {ms(pct(v, 0.5))} | {ms(pct(v, 0.95))} | {pct(v, 0.5) / b50:.2f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--space", default="tiny-random")
    p.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server (0 = default)")
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--seed-items", type=int, default=30)
    main(p.parse_args())
