"""Latency and memory of the real ViT-H spaces (unclip-h, turbo-h).

    python bench/gpu_spaces.py                          # the real downloaded weights (`latentmap download ...`)
    python bench/gpu_spaces.py --random-weights         # real-size architectures, random weights (no download)
    python bench/gpu_spaces.py --random-weights --tiny  # toy size: checks the script itself on any CPU
    python bench/gpu_spaces.py --random-weights --device cpu --n 1 --steps 1 --preview-steps 1
                                                        # real size on a CPU: proves the shapes, not the speed

Random-weight architectures come from app/spaces/configs/arch/{real,tiny}.json; they are written to a temp
folder in the hub's layout and loaded through the same loader the app uses. Pictures from random weights mean
nothing, but timings and memory of the real-size networks are the real ones. Every result line says which
weights were used. Prints p50/p95 decode latency, preview latency, encode throughput (texts, images, prompts
with their generated image) and peak GPU memory, one JSON object per space.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from space_util import pct, timed  # noqa: E402

from app.spaces import hub  # noqa: E402
from app.spaces.base import DecodeRequest  # noqa: E402
from app.spaces.loading import choose_device  # noqa: E402
from app.spaces.vith import CONFIG_DIR, space_config  # noqa: E402

SPACES = ("unclip-h", "turbo-h")


def _module(space: str):
    if space == "unclip-h":
        from app.spaces import unclip

        return unclip, unclip.UnclipSpace
    from app.spaces import turbo

    return turbo, turbo.TurboSpace


def _images(n: int, size: int = 256) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def bench_space(space: str, args, device: str, workdir: Path) -> dict:
    module, cls = _module(space)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    config: dict = {}
    if args.random_weights:
        arch_name = "tiny" if args.tiny else "real"
        arch = json.loads((CONFIG_DIR / "arch" / f"{arch_name}.json").read_text())
        size = arch["image_size"] if isinstance(arch["image_size"], int) else arch["image_size"][space]
        config = {"height": size, "width": size}
        t = time.perf_counter()
        paths = module.build_random(workdir / space, arch)
        build_s = time.perf_counter() - t
        weights = f"RANDOM ({arch_name} architecture; timings only, pictures meaningless)"
        provenance = {"weights": "random", "arch": arch_name}
    else:
        paths = hub.resolve(space)
        build_s = 0.0
        weights = "pretrained: " + ", ".join(f"{k}={v}" for k, v in hub.provenance(space, paths).items())
        provenance = {"weights": "pretrained", **hub.provenance(space, paths)}
    defaults = space_config(space)
    if args.steps:  # decodes and the per-prompt images alike (a quick smoke run on a CPU)
        config["steps"] = args.steps
        config["prompt_images"] = {**defaults.get("prompt_images", {}), "steps": args.steps}
    if args.preview_steps:
        config["preview"] = {**(defaults.get("preview") or {}), "steps": args.preview_steps}
    t = time.perf_counter()
    sp = cls.from_paths(
        paths,
        device,
        cache_dir=workdir / "stats" / space,
        config=config,
        n_reference=args.reference_prompts,
        provenance=provenance,
    )
    load_s = time.perf_counter() - t  # includes measuring modality stats on the reference prompts

    vector = sp.encode_images(_images(1))
    v, latent = vector.vectors[0], vector.latents[0]
    sp.decode([DecodeRequest(vector=v, seed=0)])  # warm-up (kernels, allocator)
    sp.decode([DecodeRequest(vector=v, seed=0, preview=True)])
    decode = [timed(lambda i=i: sp.decode([DecodeRequest(vector=v, seed=i)]), device) for i in range(args.n)]
    preview = [
        timed(lambda i=i: sp.decode([DecodeRequest(vector=v, seed=i, preview=True)]), device) for i in range(args.n)
    ]
    img2img = [
        timed(lambda i=i: sp.decode([DecodeRequest(vector=v, seed=i, latent=latent, strength=0.8)]), device)
        for i in range(max(1, args.n // 2))
    ]
    texts = [f"a photo of thing number {i}" for i in range(64)]
    text_s = timed(lambda: sp.encode_text(texts), device)
    imgs = _images(16)
    image_s = timed(lambda: sp.encode_images(imgs), device)
    prompts = texts[:4]
    prompt_s = timed(lambda: sp.encode_prompts(prompts), device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {
        "space": space,
        "weights": weights,
        "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        "dtype": str(sp.dtype).replace("torch.", ""),
        "size": [sp.config["width"], sp.config["height"]],
        "steps": sp.config["steps"],
        "preview_steps": (sp.config.get("preview") or {}).get("steps"),
        "build_random_s": round(build_s, 2),
        "load_s": round(load_s, 2),
        "n": args.n,
        "decode_p50_s": round(pct(decode, 0.5), 4),
        "decode_p95_s": round(pct(decode, 0.95), 4),
        "preview_p50_s": round(pct(preview, 0.5), 4),
        "preview_p95_s": round(pct(preview, 0.95), 4),
        "img2img_0.8_p50_s": round(statistics.median(img2img), 4),
        "encode_text_per_s": round(len(texts) / text_s, 1),
        "encode_images_per_s": round(len(imgs) / image_s, 2),
        "encode_prompts_per_s": round(len(prompts) / prompt_s, 3),
        "peak_gpu_memory_gib": None if peak is None else round(peak, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", nargs="+", choices=SPACES, default=list(SPACES))
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="build the architectures with random weights instead of loading the downloaded ones",
    )
    p.add_argument("--tiny", action="store_true", help="toy-size architectures (implies --random-weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--n", type=int, default=10, help="timed decodes per measurement")
    p.add_argument("--steps", type=int, help="override the steps of decodes and of per-prompt images")
    p.add_argument("--preview-steps", type=int, help="override the preview's steps")
    p.add_argument(
        "--reference-prompts",
        type=int,
        default=4,
        help="reference prompts for the modality statistics measured at load (the app uses 32)",
    )
    p.add_argument("--out", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.tiny:
        args.random_weights = True
    device = choose_device(args.device)
    if args.random_weights:
        print("NOTE: random weights: timings and memory only; the pictures are meaningless", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="latentmap-bench-") as tmp:
        for space in args.space:
            try:
                row = bench_space(space, args, device, Path(tmp))
            except hub.MissingWeightsError as e:
                print(f"{space}: {e}\n(or measure real-size random weights: --random-weights)", file=sys.stderr)
                return 1
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    sys.exit(main())
