"""Encode throughput: our ingest path ÷ the bare model calls, same batch size, same process.

- baseline: `Space.encode_prepared` (image encoder + VAE encoder) on tensors already prepared (no decoding,
  no resizing), any space.
- service: `MapService.add_images` with PNG bytes (open + preprocess + encode + thumbnail + SQLite + place),
  with the default image workers and with one (image work beside the model call vs none).
- http: `POST /api/maps/{id}/images` (multipart) on a real server started by this script.
Rounds are interleaved (baseline, service, http, baseline, ...) so machine noise hits all three alike.

    python bench/encode.py --space tiny-random --batch 16 --rounds 6 --image-size 256

`--folder N` compares instead what a user would otherwise write to encode a folder of N files (PNG files on disk)
with our ingest (`latentmap build --images`: thumbnails, VAE latents, SQLite, placement too) and its Ray path:
- user loop: for each batch of 64 files, PIL open -> the space's own CLIP preprocess -> `encode_image`;
- ingest: app/ingest/local.py `build` (a new map each round), target >= 1.0x the user loop; once as
  `latentmap build` runs it (with the final fit of the whole map: a UMAP layout the user loop has no part of,
  timed again alone at the end) and once as `latentmap build --no-refit` (items placed as they are stored);
- ray: app/ingest/ray_pipeline.py `build` on a local Ray started once outside the timing, target >= 0.8x ingest.

    python bench/encode.py --space digits --folder 256 --rounds 3 --image-size 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import httpx
import torch
from serve_util import running_server
from space_util import load_space, machine, make_service, photo_like_png, set_threads


def main(args):
    env = set_threads(args.threads)
    space = load_space(args.space)
    service = make_service(space)
    pngs = [photo_like_png(i, args.image_size) for i in range(args.batch)]

    import io

    from PIL import Image

    from app.maps.service import Upload

    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in pngs]
    prepared = [space.prepare_image(im) for im in images]  # decoded, resized, tensors: outside the timing

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    @torch.inference_mode()
    def bare():  # the model part only: image encoder + VAE encoder on the prepared batch
        space.encode_prepared(prepared)
        sync()

    record, _ = service.create_map("encode bench")
    serial = make_service(space, image_workers=1)  # the same path with no image work beside the model
    serial_record, _ = serial.create_map("encode bench, 1 image worker")
    uploads = [Upload(f"im{i}.png", b) for i, b in enumerate(pngs)]

    def ours():
        service.add_images(record.id, uploads)

    def ours_serial():
        serial.add_images(serial_record.id, uploads)

    times = {"bare": [], "service": [], "serial": [], "http": []}
    with running_server(args.space, extra_env=env) as (base, _proc):
        made = httpx.post(base + "/api/maps", json={"title": "encode"}).json()
        files = [("files", (f"im{i}.png", b, "image/png")) for i, b in enumerate(pngs)]
        headers = {"X-Edit-Key": made["edit_key"]}

        def http():
            r = httpx.post(f"{base}/api/maps/{made['id']}/images", files=files, headers=headers, timeout=300)
            r.raise_for_status()

        for fn in (bare, ours, ours_serial, http):  # warm-up: first calls allocate, first insert fits the projection
            fn()
        for _ in range(args.rounds):
            for name, fn in (("bare", bare), ("service", ours), ("serial", ours_serial), ("http", http)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)

    rate = {k: args.batch / statistics.median(v) for k, v in times.items()}
    print(
        f"encode: space={args.space} batch={args.batch} rounds={args.rounds} image={args.image_size}px "
        f"threads={args.threads} ({machine()})"
    )
    print("| path | items/s (median round) | ÷ bare |\n|---|---|---|")
    for name, label in (
        ("bare", "bare encode_image + VAE encode, prepared tensors"),
        ("service", f"MapService.add_images (PNG bytes in), {service.image_workers} image workers"),
        ("serial", "MapService.add_images, 1 image worker"),
        ("http", "POST /images (multipart, real server)"),
    ):
        print(f"| {label} | {rate[name]:.1f} | {rate[name] / rate['bare']:.2f} |")


def user_encoder(space):
    """The space's own CLIP preprocess and image encoder, as a user would call them (no VAE, no thumbnails)."""
    if hasattr(space.clip, "encode_prepared"):  # ViT-H spaces wrap open_clip
        return space.clip.preprocess, lambda batch: space.clip.encode_prepared(batch)
    return space.preprocess, lambda batch: space.clip.encode_image(batch, normalize=False).float().cpu().numpy()


def folder_main(args):
    import tempfile
    from pathlib import Path

    from PIL import Image

    from app.ingest import local, ray_pipeline, sources

    set_threads(args.threads)
    space = load_space(args.space)
    folder = Path(tempfile.mkdtemp(prefix="latentmap-encode-folder-"))
    files = []
    for i in range(args.folder):
        path = folder / f"sub{i % 4}" / f"{i:05d}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(photo_like_png(i, args.image_size))
        files.append(path)
    preprocess, encode_image = user_encoder(space)

    @torch.inference_mode()
    def user_loop():
        for start in range(0, len(files), 64):
            batch = torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files[start : start + 64]])
            encode_image(batch.to(space.device))

    service = make_service(space, place_refine_epochs=0)
    rounds = {"n": 0}

    def ingest(build):
        rounds["n"] += 1
        source = sources.folder_source(folder, service.settings)
        result = build(service, source, f"round {rounds['n']}")
        assert result.added == len(files), result.summary()
        rounds["map"] = result.map_id

    def ours():
        ingest(lambda svc, src, title: local.build(svc, src, title, progress=False))

    def ours_no_refit():
        ingest(lambda svc, src, title: local.build(svc, src, title, progress=False, refit=False))

    def on_ray():
        ingest(lambda svc, src, title: ray_pipeline.build(svc, src, title, None, progress=False))

    paths = [("user", user_loop), ("ingest", ours), ("no-refit", ours_no_refit)]
    if not args.no_ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)  # started once, not timed
        paths.append(("ray", on_ray))
    times = {name: [] for name, _ in paths}
    cpu = {name: [] for name, _ in paths}  # CPU seconds of this process and its (reaped) reader processes
    try:
        for _, fn in paths:  # warm-up
            fn()
        for _ in range(args.rounds):
            for name, fn in paths:
                c, t = cpu_seconds(), time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
                cpu[name].append(cpu_seconds() - c)
                if name == "ingest":
                    rounds["last fitted map"] = rounds["map"]
        started = time.perf_counter()  # the fixed part of each build: its final refit, timed again alone
        service.refit(rounds["last fitted map"])
        refit_s = time.perf_counter() - started
    finally:
        if not args.no_ray:
            ray.shutdown()
    rate = {k: len(files) / statistics.median(v) for k, v in times.items()}
    print(
        f"encode --folder: space={args.space} files={len(files)} image={args.image_size}px rounds={args.rounds} "
        f"threads={args.threads} ({machine()})"
    )
    per_item = {k: 1000 * statistics.median(v) / len(files) for k, v in cpu.items()}
    print("| path | items/s (median round) | ratio | CPU ms/item |\n|---|---|---|---|")
    print(
        f"| user loop: PIL open -> preprocess -> encode_image, batches of 64 | {rate['user']:.1f} | 1.00 | "
        f"{per_item['user']:.2f} |"
    )
    print(
        f"| our ingest (local.build: + thumbnails, VAE latents, SQLite, placement, final fit) | {rate['ingest']:.1f} | "
        f"{rate['ingest'] / rate['user']:.2f} x user loop (target >= 1.0) | {per_item['ingest']:.2f} |"
    )
    print(
        f"| our ingest without the final fit (`build --no-refit`) | {rate['no-refit']:.1f} | "
        f"{rate['no-refit'] / rate['user']:.2f} x user loop | {per_item['no-refit']:.2f} |"
    )
    if "ray" in rate:
        print(
            f"| our ingest on a local Ray (ray_pipeline.build) | {rate['ray']:.1f} | "
            f"{rate['ray'] / rate['ingest']:.2f} x local ingest (target >= 0.8) | (Ray's own processes) |"
        )
    print(f"each build's final refit of the {len(files)}-item map, alone: {refit_s:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--space", default="tiny-random")
    p.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server (0 = default)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--folder", type=int, default=0, help="compare folder ingest with a user's own loop on N files")
    p.add_argument("--no-ray", action="store_true", help="--folder without the Ray path")
    parsed = p.parse_args()
    if parsed.folder:
        folder_main(parsed)
    else:
        main(parsed)
