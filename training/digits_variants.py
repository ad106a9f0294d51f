"""Train the `digits` space's variants: a LoRA (thicker strokes), a fine-tune (italic digits), an upscaler (x4).

All three keep the space's CLIP encoder and map: they are trained on the same CLIP image embeddings the base
decoder is conditioned on, so a clicked point decodes through each of them side by side.

* `thick` (LoRA, rank 8, PEFT on the base UNet's attention projections and ResNet convolutions): the base UNet
  frozen, the LoRA trained to turn each training digit's CLIP embedding into the VAE latent of the *same*
  digit with its strokes dilated (a 3x3 cross max-filter at 16 px). Style changes, the point's meaning not.
* `italic` (fine-tune of every UNet weight, a few hundred steps, low learning rate): the same embedding →
  the latent of the digit sheared to the right (x += 0.2 y, top leaning right).
* `x4` (upscaler, `variants.ConvUpscaler`, ~60 k params): 16 px decoded images → 64 px. Input: the training
  digits at 16 px passed through the space's VAE (what a decode looks like); target: the same digits rendered
  straight from the 8x8 data at 64 px (bicubic); no augmentation (see UPSCALER_COPIES). It learns to undo the
  VAE's blur and the double interpolation; it is compared with plain bicubic on held-out digits.

Only the 70% train split of load_digits is used for training; every figure is measured on the 30% test split.
The figures are written into each `variant.json` under `metrics`.

    python -m training.digits_variants --space app/spaces/weights/digits [--only lora,finetune,upscaler]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from app.spaces.digits_data import digit_images, image_to_digit, mean_image_vectors

from .digits import _bar, _cosine_lr, _encode_images, _to_tensor

LORA_NAME, FINETUNE_NAME, UPSCALER_NAME = "thick", "italic", "x4"
LORA_RANK = 8
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj", "conv1", "conv2"]
LORA_STEPS, LORA_BATCH, LORA_LR = 500, 64, 2e-3
FINETUNE_STEPS, FINETUNE_BATCH, FINETUNE_LR = 300, 64, 3e-4
UPSCALER_STEPS, UPSCALER_BATCH, UPSCALER_LR = 1000, 32, 2e-3
# No augmentation for the upscaler: resampling both sizes with the same affine (bilinear) blurs the 16 px input
# far more than the 64 px target, and the net learned to over-sharpen (33.3 dB vs 35.4 dB for bicubic).
UPSCALER_COPIES = 0
UPSCALE, UPSCALER_WIDTH, UPSCALER_BLOCKS = 4, 32, 3
AUGMENTED_COPIES = 3
COND_DROPOUT = 0.15  # as in the base decoder's training, so classifier-free guidance keeps working
SHEAR = 0.2
EVAL_SEEDS = (0, 1, 2, 3)
THREADS = 1
DATA_LICENCE = (
    "training data: UCI Optical Recognition of Handwritten Digits via scikit-learn's load_digits "
    "(CC BY 4.0 per the UCI repository); weights: trained by latentmap, no separate licence declared"
)


# ---------------------------------------------------------------------------------------------- styles
def thicken(x: torch.Tensor) -> torch.Tensor:
    """Dilate strokes with a 3x3 cross (each ink pixel spreads to its 4 neighbours); [-1, 1] in and out."""
    ink = (x + 1) / 2
    p = F.pad(ink, (1, 1, 1, 1))
    out = torch.stack([ink, p[..., 1:-1, :-2], p[..., 1:-1, 2:], p[..., :-2, 1:-1], p[..., 2:, 1:-1]]).amax(0)
    return out * 2 - 1


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(
        theta.expand(x.shape[0], 2, 3) if theta.ndim == 2 else theta, list(x.shape), align_corners=False
    )
    return F.grid_sample((x + 1) / 2, grid, mode="bilinear", padding_mode="zeros", align_corners=False) * 2 - 1


def italicize(x: torch.Tensor, shear: float = SHEAR) -> torch.Tensor:
    """Shear right: the top of the digit moves right by `shear` of its half-height."""
    return _affine(x, torch.tensor([[1.0, shear, 0.0], [0.0, 1.0, 0.0]]))


def _random_theta(n: int, gen: torch.Generator) -> torch.Tensor:
    """The random affine of training.digits._augment (rotation ±10°, scale 0.9-1.1, shift ±1 px at 16 px),
    in normalised coordinates so the same transform applies at any resolution."""
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2.0 / 16)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


# ---------------------------------------------------------------------------------------------- measures
def _ink(images) -> np.ndarray:
    return np.stack([np.asarray(im.convert("L"), dtype=np.float32) / 255.0 for im in images])


def ink_fraction(images) -> float:
    """Stroke thickness: the mean fraction of pixels that are ink (> 50% grey)."""
    return float((_ink(images) > 0.5).mean())


def slant(images) -> float:
    """Mean slant of the ink: cov(x, y_up) / var(y_up) (0 upright, > 0 top leaning right)."""
    out = []
    for w in _ink(images):
        h, wd = w.shape
        yy, xx = np.mgrid[0:h, 0:wd].astype(np.float32)
        yu, s = -yy, max(float(w.sum()), 1e-6)
        mx, my = (w * xx).sum() / s, (w * yu).sum() / s
        var = (w * (yu - my) ** 2).sum() / s
        out.append(float((w * (xx - mx) * (yu - my)).sum() / s / max(var, 1e-6)))
    return float(np.mean(out))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of images in [0, 1]."""
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def classifier(images, labels, train_idx):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000).fit(
        np.stack([image_to_digit(images[i]) for i in train_idx]), labels[train_idx]
    )


def predict(clf, images) -> np.ndarray:
    return clf.predict(np.stack([image_to_digit(im) for im in images]))


def _to_pil(x: torch.Tensor) -> list[Image.Image]:
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return [Image.fromarray(a[0], mode="L") for a in arr]


# ---------------------------------------------------------------------------------------------- training
def _load_unet(space_dir: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(space_dir / "decoder" / "unet", use_safetensors=True)


def _diffusion_train(
    unet,
    params,
    cond: torch.Tensor,
    latents: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    desc: str,
    progress: bool,
) -> float:
    """Epsilon-prediction training on (cond, latent) pairs, as the base decoder was trained. Returns the
    mean loss of the last 50 steps."""
    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, steps, max(1, steps // 20)))
    unet.train()
    losses = []
    bar = _bar(steps, desc, progress)
    for step in range(steps):
        idx = torch.randint(0, len(latents), (batch,), generator=gen)
        z0, c = latents[idx], cond[idx].clone()
        c[torch.rand(batch, generator=gen) < COND_DROPOUT] = 0.0
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        pred = unet(
            noise_sched.add_noise(z0, noise, t), t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": c}
        ).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    unet.eval()
    return float(np.mean(losses[-50:]))


def train_lora(space_dir: Path, cond, latents, seed: int, progress: bool, steps: int = LORA_STEPS):
    from peft import LoraConfig

    unet = _load_unet(space_dir).requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, init_lora_weights=True, target_modules=LORA_TARGETS),
        adapter_name=LORA_NAME,
    )
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    torch.manual_seed(seed)
    loss = _diffusion_train(unet, params, cond, latents, steps, LORA_BATCH, LORA_LR, seed + 10, "lora", progress)
    return unet, loss, sum(p.numel() for p in params)


def train_finetune(space_dir: Path, cond, latents, seed: int, progress: bool, steps: int = FINETUNE_STEPS):
    unet = _load_unet(space_dir)
    params = list(unet.parameters())
    loss = _diffusion_train(
        unet, params, cond, latents, steps, FINETUNE_BATCH, FINETUNE_LR, seed + 20, "finetune", progress
    )
    return unet, loss


def upscaler_data(vae, x16: torch.Tensor, x64: torch.Tensor, copies: int, gen: torch.Generator | None):
    """(input at 16 px after a VAE round trip, 64 px target), with `copies` augmented copies (same affine at
    both resolutions) when `gen` is given."""
    lows, highs = [x16], [x64]
    for _ in range(copies if gen is not None else 0):
        theta = _random_theta(len(x16), gen)
        lows.append(_affine(x16, theta))
        highs.append(_affine(x64, theta))
    low, high = torch.cat(lows), torch.cat(highs)
    with torch.inference_mode():
        rec = torch.cat(
            [vae.decode(vae.encode(low[i : i + 512]).latent_dist.mean).sample for i in range(0, len(low), 512)]
        ).clamp(-1, 1)
    # What a decode gives is 8-bit pixels: quantise the input the same way.
    rec = ((rec + 1) * 127.5).round() / 127.5 - 1
    return rec.clone(), high.clone()


def train_upscaler(low: torch.Tensor, high: torch.Tensor, seed: int, progress: bool, steps: int = UPSCALER_STEPS):
    from app.spaces.variants import ConvUpscaler

    torch.manual_seed(seed)
    model = ConvUpscaler(channels=1, scale=UPSCALE, width=UPSCALER_WIDTH, blocks=UPSCALER_BLOCKS)
    gen = torch.Generator().manual_seed(seed + 30)
    opt = torch.optim.AdamW(model.parameters(), lr=UPSCALER_LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, steps, 50))
    model.train()
    bar = _bar(steps, "upscaler", progress)
    for step in range(steps):
        idx = torch.randint(0, len(low), (UPSCALER_BATCH,), generator=gen)
        loss = F.mse_loss(model(low[idx]), high[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    return model.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_decoders(space, clf, mean_vectors: np.ndarray, seeds=EVAL_SEEDS) -> dict:
    """Decode the 10 digits' mean test embeddings (x seeds) through the base and every decoder variant:
    ink fraction, slant, classifier accuracy, agreement with the base decode, seconds per image."""
    from app.spaces.base import DecodeRequest

    targets = np.tile(np.arange(10), len(seeds))
    decoders = [("base", None)] + [(v["name"], None) for v in space.variants() if v["kind"] in ("lora", "finetune")]
    decoders += [(v["name"], 0.5) for v in space.variants() if v["kind"] == "lora"]
    out, base_pred = {}, None
    for name, scale in decoders:
        t = time.perf_counter()
        images = [
            im
            for s in seeds
            for im in space.decode(
                [
                    DecodeRequest(vector=v, seed=s, variant=None if name == "base" else name, lora_scale=scale)
                    for v in mean_vectors
                ]
            )
        ]
        dt = (time.perf_counter() - t) / len(images)
        pred = predict(clf, images)
        base_pred = pred if base_pred is None else base_pred
        key = name if scale is None else f"{name}@{scale}"
        out[key] = {
            "ink_fraction": round(ink_fraction(images), 4),
            "slant": round(slant(images), 4),
            "accuracy": round(float((pred == targets).mean()), 4),
            "agreement_with_base": round(float((pred == base_pred).mean()), 4),
            "seconds_per_image": round(dt, 4),
            "n": len(images),
        }
    return out


def evaluate_upscaler(space, model, low_test, high_test, clf, base_decodes) -> dict:
    low_pil = _to_pil(low_test)
    t = time.perf_counter()
    ups = [model.upscale(im) for im in low_pil]
    dt = (time.perf_counter() - t) / len(ups)
    bicubic = [im.resize((im.width * UPSCALE, im.height * UPSCALE), Image.Resampling.BICUBIC) for im in low_pil]
    target = ((high_test[:, 0].numpy() + 1) / 2).astype(np.float32)
    as_arr = lambda ims: np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in ims])  # noqa: E731
    decoded_up = [space.upscale(im) for im in base_decodes]
    return {
        "psnr_db_upscaler": round(psnr(as_arr(ups), target), 2),
        "psnr_db_bicubic": round(psnr(as_arr(bicubic), target), 2),
        "seconds_per_image": round(dt, 5),
        "n_test_images": len(ups),
        "decoded_class_kept": round(float((predict(clf, decoded_up) == predict(clf, base_decodes)).mean()), 4),
        "output_size": list(decoded_up[0].size),
    }


# ---------------------------------------------------------------------------------------------- main
def _write_variant(directory: Path, meta: dict) -> None:
    (directory / "variant.json").write_text(json.dumps(meta, indent=2))


def _save_variant(variants_dir: Path, name: str, save: Callable[[Path], None], meta: dict) -> Path:
    """A fresh `variants_dir/name/`: the weights (`save(directory)`) and variant.json (metrics added later)."""
    d = variants_dir / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    save(d)
    _write_variant(d, meta)
    return d


def train(
    space_dir: Path,
    seed: int = 0,
    progress: bool = True,
    threads: int = THREADS,
    only: tuple[str, ...] = ("lora", "finetune", "upscaler"),
    quick: bool = False,
) -> dict:
    """Train the chosen variants into `space_dir/variants/`, evaluate them through the loaded space, and
    return the figures. `quick` (smoke tests only) trains a handful of steps."""
    from app.spaces.clip_decoder import ClipDecoderSpace

    torch.set_num_threads(threads)
    space_dir = Path(space_dir)
    config = json.loads((space_dir / "space.json").read_text())
    base_name = config["name"]
    variants_dir = space_dir / "variants"
    div = 50 if quick else 1
    t_start = time.perf_counter()

    images, labels, train_idx, test_idx = digit_images()
    x_all = _to_tensor(images)
    x_train = x_all[train_idx]
    base = ClipDecoderSpace.from_pretrained(space_dir, device="cpu")
    base_pipe = base.pipeline
    vae = base_pipe.vae
    gen = torch.Generator().manual_seed(seed + 4)
    thetas = [_random_theta(len(x_train), gen) for _ in range(AUGMENTED_COPIES)]
    xs = torch.cat([x_train] + [_affine(x_train, th) for th in thetas])
    with torch.inference_mode():
        cond = _encode_images(base.clip, xs)

    def latents_of(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            z = torch.cat([vae.encode(x[i : i + 512]).latent_dist.mean for i in range(0, len(x), 512)])
        return (z * vae.config.scaling_factor).clone()

    common = {"base": base_name, "trainer": "python -m training.digits_variants --space DIR", "licence": DATA_LICENCE}
    split = f"load_digits 70% train split ({len(train_idx)} images) + {AUGMENTED_COPIES} augmented copies"
    timings, written = {}, {}

    if "lora" in only:
        t = time.perf_counter()
        unet, loss, n_params = train_lora(
            space_dir, cond.clone(), latents_of(thicken(xs)), seed, progress, max(2, LORA_STEPS // div)
        )
        timings["lora_s"] = round(time.perf_counter() - t, 1)
        save_lora = partial(unet.save_lora_adapter, adapter_name=LORA_NAME, weight_name="lora.safetensors")
        written[LORA_NAME] = _save_variant(
            variants_dir,
            LORA_NAME,
            save_lora,
            {
                "kind": "lora",
                **common,
                "default_scale": 1.0,
                "rank": LORA_RANK,
                "description": "Thicker strokes: a LoRA on the base decoder trained on dilated digits.",
                "lineage": {"kind": "lora", "lora_of": base_name, "base_model": base_name, "loras": [LORA_NAME]},
                "training": {
                    "data": split + "; targets: strokes dilated by a 3x3 cross, conditioned on the "
                    "original image's CLIP embedding",
                    "rank": LORA_RANK,
                    "alpha": LORA_RANK,
                    "targets": LORA_TARGETS,
                    "params": n_params,
                    "steps": max(2, LORA_STEPS // div),
                    "batch": LORA_BATCH,
                    "lr": LORA_LR,
                    "cond_dropout": COND_DROPOUT,
                    "final_loss": round(loss, 4),
                    "seed": seed,
                },
            },
        )

    if "finetune" in only:
        t = time.perf_counter()
        unet, loss = train_finetune(
            space_dir, cond.clone(), latents_of(italicize(xs)), seed, progress, max(2, FINETUNE_STEPS // div)
        )
        timings["finetune_s"] = round(time.perf_counter() - t, 1)

        def save_unet(d: Path) -> None:
            unet.save_pretrained(d / "unet", safe_serialization=True)

        written[FINETUNE_NAME] = _save_variant(
            variants_dir,
            FINETUNE_NAME,
            save_unet,
            {
                "kind": "finetune",
                **common,
                "description": f"Italic digits: the base decoder fine-tuned (all weights) on digits sheared by {SHEAR}.",
                "lineage": {"kind": "finetune", "fine_tune_of": base_name, "base_model": base_name, "loras": []},
                "training": {
                    "data": split + f"; targets: digits sheared right (x += {SHEAR} y), conditioned on the "
                    "original image's CLIP embedding",
                    "steps": max(2, FINETUNE_STEPS // div),
                    "batch": FINETUNE_BATCH,
                    "lr": FINETUNE_LR,
                    "cond_dropout": COND_DROPOUT,
                    "final_loss": round(loss, 4),
                    "seed": seed,
                },
            },
        )

    up_test = None
    if "upscaler" in only:
        from app.spaces.variants import ConvUpscaler

        images64 = digit_images(16 * UPSCALE)[0]
        x64 = _to_tensor(images64)
        low, high = upscaler_data(
            vae, x_train, x64[train_idx], UPSCALER_COPIES, torch.Generator().manual_seed(seed + 5)
        )
        up_test = upscaler_data(vae, x_all[test_idx], x64[test_idx], 0, None)
        t = time.perf_counter()
        model = train_upscaler(low, high, seed, progress, max(2, UPSCALER_STEPS // div))
        timings["upscaler_s"] = round(time.perf_counter() - t, 1)
        written[UPSCALER_NAME] = _save_variant(
            variants_dir,
            UPSCALER_NAME,
            model.save,
            {
                "kind": "upscaler",
                **common,
                "config": model.config,
                "description": f"x{UPSCALE} super-resolution (16 px -> {16 * UPSCALE} px): a small conv net "
                "(residual over bicubic) trained by latentmap.",
                "lineage": {"kind": "upscaler", "upscaler_for": base_name, "base_model": None},
                "training": {
                    "data": f"load_digits 70% train split ({len(train_idx)} images, no augmentation); "
                    "input: 16 px digits through the space's VAE, 8-bit; target: the same 8x8 digits "
                    f"rendered bicubic at {16 * UPSCALE} px",
                    "loss": "MSE",
                    "steps": max(2, UPSCALER_STEPS // div),
                    "batch": UPSCALER_BATCH,
                    "lr": UPSCALER_LR,
                    "params": sum(p.numel() for p in model.parameters()),
                    "seed": seed,
                },
            },
        )
        assert isinstance(model, ConvUpscaler)

    # Evaluate through the space as it loads from disk, variants included.
    space = ClipDecoderSpace.from_pretrained(space_dir, device="cpu")
    clf = classifier(images, labels, train_idx)
    test_vectors = space.encode_images([images[i] for i in test_idx]).vectors
    means = mean_image_vectors(test_vectors, labels[test_idx])
    figures = {"decoders": evaluate_decoders(space, clf, means)}
    if up_test is not None:
        from app.spaces.base import DecodeRequest

        base_decodes = space.decode([DecodeRequest(vector=v, seed=0) for v in means])
        figures[UPSCALER_NAME] = evaluate_upscaler(
            space, space.variant_set.upscaler(UPSCALER_NAME).upscaler, *up_test, clf, base_decodes
        )
    figures["seconds"] = {**timings, "total_s": round(time.perf_counter() - t_start, 1)}
    figures["threads"] = torch.get_num_threads()
    for name, d in written.items():
        meta = json.loads((d / "variant.json").read_text())
        dec = figures["decoders"]
        if meta["kind"] == "lora":
            meta["metrics"] = {"base": dec["base"], f"{name}": dec[name], f"{name}@0.5": dec[f"{name}@0.5"]}
        elif meta["kind"] == "finetune":
            meta["metrics"] = {"base": dec["base"], name: dec[name]}
        else:
            meta["metrics"] = dict(figures[name])
        meta["metrics"]["measured_on"] = (
            f"the 10 digits' mean test-split CLIP embeddings x seeds {list(EVAL_SEEDS)}"
            if meta["kind"] != "upscaler"
            else "the load_digits test split (540 images) and 10 base decodes"
        )
        meta["training"]["seconds"] = timings.get(f"{meta['kind']}_s")
        _write_variant(d, meta)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the digits space's LoRA, fine-tune and upscaler variants.")
    parser.add_argument("--space", type=Path, required=True, help="the trained digits space directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--only", default="lora,finetune,upscaler", help="comma-separated: lora, finetune, upscaler")
    parser.add_argument("--quick", action="store_true", help="a few steps each (smoke test, meaningless weights)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    figures = train(
        args.space, seed=args.seed, progress=not args.no_progress, threads=args.threads, only=only, quick=args.quick
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
