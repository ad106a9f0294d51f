"""Decode latency: `POST /api/maps/{id}/decode` (cache miss) ÷ the bare pipeline call with the same arguments.

The bench process builds the same map as the server (same prompts and images, same deterministic space), so
`MapService.blend_request` gives it the exact vector / latent / strength / seed the server decodes; the bare
call is `space.pipeline(...)` with those. Also shown: `MapService.decode_at` in-process (no HTTP). Interleaved.
A preview path is measured only if the server accepts `preview` (DecodeIn) — otherwise reported as absent.

    python bench/decode.py --space tiny-random --requests 20
"""

from __future__ import annotations

import argparse
import random
import time

import httpx
import numpy as np
import torch
from serve_util import running_server
from space_util import load_space, machine, make_service, pct, photo_like_png, set_threads


def main(args):
    env = set_threads(args.threads)
    space = load_space(args.space)
    service = make_service(space, defer_prompt_images=False)  # a complete map before timing
    prompts = [f"thing {i}" for i in range(args.prompts)]
    pngs = [photo_like_png(i, 128) for i in range(args.images)]
    from app.maps.service import Upload

    record, _ = service.create_map("decode")
    service.add_prompts(record.id, prompts)
    if pngs:
        service.add_images(record.id, [Upload(f"im{i}.png", b) for i, b in enumerate(pngs)])
    arrays = service.store.get_arrays(record.id)
    settings = getattr(space, "decode_settings", None) or space.config

    def bare(req):
        if not hasattr(space, "pipeline"):  # unclip-h / turbo-h: Space.decode = the diffusers call + PIL, no map
            space.decode([req])
            return
        emb = torch.from_numpy(np.asarray(req.vector, np.float32)).unsqueeze(0)
        init = None if req.latent is None or req.strength >= 1.0 else torch.from_numpy(req.latent).unsqueeze(0)
        space.pipeline(
            emb,
            num_inference_steps=int(settings["steps"]),
            guidance_scale=float(settings["guidance"]),
            generator=torch.Generator("cpu").manual_seed(req.seed),
            init_latents=init,
            strength=req.strength,
        )

    rng = random.Random(0)
    times = {"bare": [], "service": [], "http": [], "preview": []}
    preview_supported = False
    with running_server(args.space, extra_env=env) as (base, _proc):
        made = httpx.post(base + "/api/maps", json={"title": "decode"}).json()
        headers = {"X-Edit-Key": made["edit_key"]}
        with httpx.Client(base_url=base, timeout=600) as http:
            http.post(f"/api/maps/{made['id']}/prompts", headers=headers, json={"prompts": prompts}).raise_for_status()
            if pngs:
                http.post(
                    f"/api/maps/{made['id']}/images",
                    headers=headers,
                    files=[("files", (f"im{i}.png", b, "image/png")) for i, b in enumerate(pngs)],
                ).raise_for_status()
            while any(p.get("pending") for p in http.get(f"/api/maps/{made['id']}/points").json()["points"]):
                time.sleep(0.5)  # spaces that generate prompt pictures: let the server's map complete first
            server_points = http.get(f"/api/maps/{made['id']}/points").json()["points"]
            server_xy = np.array([[p["x"], p["y"]] for p in server_points])
            same_map = bool(np.allclose(server_xy, arrays.xy, atol=1e-5))
            try:
                from app.api.schemas import DecodeIn

                preview_supported = "preview" in DecodeIn.model_fields
            except Exception:
                preview_supported = False
            for i in range(args.requests + 2):
                x, y, seed = rng.uniform(-0.9, 0.9), rng.uniform(-0.9, 0.9), rng.randrange(1 << 30)
                req = service.blend_request(arrays, round(x, 6), round(y, 6), seed)
                runs = [
                    ("bare", lambda: bare(req)),
                    ("service", lambda: service.decode_at(record.id, x, y, seed)),
                    (
                        "http",
                        lambda: http.post(
                            f"/api/maps/{made['id']}/decode", json={"x": x, "y": y, "seed": seed}
                        ).raise_for_status(),
                    ),
                ]
                if preview_supported:
                    runs.append(
                        (
                            "preview",
                            lambda: http.post(
                                f"/api/maps/{made['id']}/decode",
                                json={"x": x, "y": y, "seed": seed + 1, "preview": True},
                            ).raise_for_status(),
                        )
                    )
                for name, fn in runs:
                    t = time.perf_counter()
                    fn()
                    if i >= 2:  # first two rounds are warm-up
                        times[name].append(time.perf_counter() - t)
    ms = lambda v: f"{1000 * v:.0f}"  # noqa: E731
    b50 = pct(times["bare"], 0.5)
    print(
        f"decode: space={args.space} requests={args.requests} steps={settings['steps']} "
        f"guidance={settings['guidance']} map={args.prompts} prompts + {args.images} images, "
        f"server map identical to the bench's: {same_map} threads={args.threads} ({machine()})"
    )
    print("| path | p50 ms | p95 ms | p50 ÷ bare p50 |\n|---|---|---|---|")
    bare_label = "bare pipeline call" if hasattr(space, "pipeline") else "bare Space.decode (the diffusers call)"
    labels = {
        "bare": f"{bare_label} (same vector/latent/strength/seed)",
        "service": "MapService.decode_at (in-process, cache miss)",
        "http": "POST /decode (cache miss, real server)",
        "preview": "POST /decode preview=true",
    }
    for name, v in times.items():
        if v:
            print(f"| {labels[name]} | {ms(pct(v, 0.5))} | {ms(pct(v, 0.95))} | {pct(v, 0.5) / b50:.2f} |")
    if not preview_supported:
        print("| POST /decode preview=true | absent (DecodeIn has no `preview` field) | | |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--space", default="tiny-random")
    p.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server (0 = default)")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--prompts", type=int, default=30)
    p.add_argument("--images", type=int, default=8)
    main(p.parse_args())
