"""Your own model files on turbo-h (issue 19): load time of a single-file checkpoint and decode latency with 0, 1
and 3 LoRAs loaded.

    python bench/own_models.py                  # real size (configs/arch/real.json), random weights; a GPU session
    python bench/own_models.py --tiny --device cpu --n 2   # toy size: checks the script itself (a test runs it)

The turbo-h components are taken from LATENTMAP_*_ID (bench/gpu_suite.py points them at random-weight folders) or
built here. From the sd15 folder's UNet and text encoder (+ a random VAE) it writes what users download: a
single-file checkpoint in the original key layout and three Kohya-format LoRAs (rank 32 at real size over every
transformer-block layer and the text encoder, as CivitAI LoRAs are). At real size the checkpoint loads against
the SD 1.5 configs shipped in the package (no sd15 folder), which this run also proves. Rows:

- load: the sd15 diffusers folder vs the single-file checkpoint vs the checkpoint + 3 LoRAs (modality statistics
  cached, so the time is the models' load; the statistics' one-time cost is in gpu_spaces.py)
- decode p50/p95 of the base decoder and of one LoRA variant with 0, 1 and 3 LoRAs loaded, each ÷ the base
  decode with none loaded (PEFT layers on disabled adapters cost a little on every decode)

Timings do not depend on weight values; pictures from random weights mean nothing (RANDOM WEIGHTS on every row).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from space_util import pct, timed  # noqa: E402

from app.spaces import hub, own_models, turbo  # noqa: E402
from app.spaces.base import DecodeRequest  # noqa: E402
from app.spaces.checkpoints import write_sd1_checkpoint  # noqa: E402
from app.spaces.vith import CONFIG_DIR  # noqa: E402


def _paths(arch: dict, tiny: bool, workdir: Path) -> dict:
    """turbo-h's component folders: at real size from the environment when every one is set (gpu_suite), else
    built here (toy size always: single-file checkpoints need the SD 1.x block structure, tiny.json "sd1_unet")."""
    comps = hub.components("turbo-h")
    if not tiny and all(os.environ.get(f"LATENTMAP_{c.env}_ID") for c in comps.values()):
        return hub.resolve("turbo-h")
    return turbo.build_random(workdir / "turbo-h", arch, unet_key="sd1_unet" if tiny else "sd15_unet")


def write_files(paths: dict, arch: dict, rank: int, workdir: Path) -> tuple[Path, list[Path]]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(paths["sd15"] / "unet", use_safetensors=True)
    text_encoder = CLIPTextModel.from_pretrained(paths["sd15"] / "text_encoder", use_safetensors=True)
    torch.manual_seed(0)
    ckpt = write_sd1_checkpoint(
        workdir / "files" / "finetune.safetensors",
        unet,
        text_encoder,
        AutoencoderKL(**arch["vae"]),
        {"modelspec.architecture": "stable-diffusion-v1", "modelspec.title": "random fine-tune (bench)"},
    )
    from safetensors.torch import save_file

    loras = []
    for i in range(3):
        path = workdir / "files" / f"lora-{i}.safetensors"
        save_file(
            own_models.kohya_lora_state_dict(unet, text_encoder, rank=rank, seed=i, scale=0.02),
            str(path),
            metadata={"ss_base_model_version": "sd_v1", "ss_network_dim": str(rank)},
        )
        loras.append(path)
    return ckpt, loras


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="toy-size architectures (checks the script)")
    p.add_argument("--device", default="auto")
    p.add_argument("--n", type=int, default=10, help="decodes per row")
    p.add_argument("--rank", type=int, default=0, help="LoRA rank (default 32 real, 4 tiny)")
    p.add_argument("--out", help="also write the JSON rows here")
    args = p.parse_args()
    from app.spaces.loading import choose_device

    device = choose_device(args.device)
    arch = json.loads((CONFIG_DIR / "arch" / f"{'tiny' if args.tiny else 'real'}.json").read_text())
    size = arch["image_size"] if isinstance(arch["image_size"], int) else arch["image_size"]["turbo-h"]
    config = {"height": size, "width": size, "reference_prompts": 2 if args.tiny else 4}
    if args.tiny:
        config.update(steps=2, preview={"steps": 1}, prompt_images={"steps": 2, "seed": 0})
    rank = args.rank or (4 if args.tiny else 32)
    weights = f"RANDOM WEIGHTS ({'tiny' if args.tiny else 'real'} architecture, {device})"
    with tempfile.TemporaryDirectory(prefix="latentmap-own-models-") as tmp:
        workdir = Path(tmp)
        t = time.perf_counter()
        paths = _paths(arch, args.tiny, workdir)
        ckpt, lora_files = write_files(paths, arch, rank, workdir)
        build_s = time.perf_counter() - t
        stats = workdir / "stats"
        # Real size: no sd15 folder, so the checkpoint loads against the shipped SD 1.5 configs.
        ckpt_paths = paths if args.tiny else {**paths, "sd15": None}

        def load(checkpoint=None, where=paths):
            return turbo.TurboSpace.from_paths(where, device, cache_dir=stats, config=config, checkpoint=checkpoint)

        load()  # first loads measure the modality statistics (cached for the timed loads)
        load(ckpt, ckpt_paths)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        rows = []
        t = time.perf_counter()
        folder_space = load()
        rows.append({"row": "load: sd15 diffusers folder", "s": time.perf_counter() - t})
        del folder_space
        t = time.perf_counter()
        space = load(ckpt, ckpt_paths)
        rows.append({"row": "load: single-file checkpoint (original layout)", "s": time.perf_counter() - t})

        v = np.random.default_rng(0).standard_normal(space.dim).astype(np.float32)

        def decode_times(variant):
            space.decode([DecodeRequest(vector=v, seed=0, variant=variant)])  # warm-up
            return [
                timed(lambda i=i: space.decode([DecodeRequest(vector=v, seed=i, variant=variant)]), device)
                for i in range(args.n)
            ]

        reference = None
        for count in (0, 1, 3):
            have = len(space.variants())
            if count > have:
                t = time.perf_counter()
                space.load_loras([own_models.LoraChoice(str(f)) for f in lora_files[have:count]], 1 << 27)
                rows.append(
                    {
                        "row": f"load {count - have} LoRA{'s' if count - have > 1 else ''} (rank {rank})",
                        "s": time.perf_counter() - t,
                    }
                )
            for variant in [None] + ([space.variants()[0]["name"]] if count else []):
                times = decode_times(variant)
                p50 = pct(times, 0.5)
                reference = reference or p50
                rows.append(
                    {
                        "row": f"decode, {count} LoRA{'s' if count != 1 else ''} loaded, "
                        f"{'base' if variant is None else 'one LoRA on'}",
                        "p50_s": p50,
                        "p95_s": pct(times, 0.95),
                        "ratio": p50 / reference,
                    }
                )
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    print(f"{weights}; turbo-h {size}x{size}, {config.get('steps', 4)} steps; files built in {build_s:.1f} s\n")
    print("| row | s (load) / p50 s | p95 s | ÷ base decode, 0 LoRAs |\n|---|---|---|---|")
    for r in rows:
        if "s" in r:
            print(f"| {r['row']} | {r['s']:.2f} | | |")
        else:
            print(f"| {r['row']} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['ratio']:.2f} |")
    if peak is not None:
        print(f"\npeak GPU memory: {peak:.1f} GiB")
    if args.out:
        Path(args.out).write_text(json.dumps({"weights": weights, "rows": rows, "peak_gib": peak}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
