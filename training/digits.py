"""Train the `digits` space: a small but *trained* space built with the same classes as the real ones.

Data: `sklearn.datasets.load_digits()` as app/spaces/digits_data.py gives it (16x16 "L" images, a 70/30
stratified split); only the 70% train split is used for training, the 30% test split stays held out (tests
and the metrics below use it).

Three models, trained one after another (fixed seeds, 1 CPU thread by default):

1. CLIP-style dual encoder: open_clip `CLIP` from a custom config (ViT 16px / patch 4, small text tower),
   trained contrastively on augmented digits and template captions; same-label pairs in a batch are
   positives (soft targets), since a batch over 10 classes is full of duplicates.
2. VAE: diffusers `AutoencoderKL`, 1 channel, 16x16 -> 4x8x8 latents.
3. Decoder: diffusers `UNet2DConditionModel`, Kandinsky-2.2 style (`addition_embed_type="image"`,
   `encoder_hid_dim_type="image_proj"`), conditioned on the unnormalised CLIP image embedding, trained with
   epsilon prediction on a cosine DDPM schedule, 15% conditioning dropout (zero embedding) for
   classifier-free guidance, EMA weights. Sampled by DDIM inside `ClipDecoderPipeline`.

    python -m training.digits --out app/spaces/weights/digits [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from app.spaces.digits_data import (
    CANONICAL_PROMPTS,
    CAPTION_TEMPLATES,
    PIXELS,
    captions_for,
    digit_images,
    image_to_digit,
    mean_image_vectors,
)

EMBED_DIM = 64
LATENT_SIZE = 8
LATENT_CHANNELS = 4

OPEN_CLIP_CFG = {
    "embed_dim": EMBED_DIM,
    "vision_cfg": {"image_size": PIXELS, "layers": 3, "width": 96, "head_width": 32, "patch_size": 4},
    # open_clip's bundled tokenizer emits ids up to 49407, so the vocabulary must stay 49408.
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
PREPROCESS_CFG = {
    "size": PIXELS,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}

# Training budget (steps x batch); about 15 minutes on 2 CPU cores in total.
CLIP_STEPS, CLIP_BATCH = 700, 128
VAE_STEPS, VAE_BATCH = 800, 64
UNET_STEPS, UNET_BATCH = 4000, 128
UNET_AUGMENTED_COPIES = 8
COND_DROPOUT = 0.15
EMA_DECAY = 0.999
ALIGN_STEPS = 150
DECODE = {"steps": 20, "guidance": 2.0}
# One thread by default: results are bit-identical only for the same thread count, and on a shared 2-core
# machine two OpenMP threads competing with other processes ran up to 6x slower than one.
THREADS = 1


# ---------------------------------------------------------------------------------------------- data
def _to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """(n, 1, H, W) in [-1, 1]: both the VAE input (`_to_vae_tensor`) and, repeated to 3 channels, exactly
    what open_clip's preprocess (resize to the same size, mean=std=0.5) gives for these images."""
    arr = np.stack([np.asarray(im.convert("L"), dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr[:, None].copy())


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light random affine (rotation +-10 degrees, scale 0.9..1.1, shift +-1 px) on [-1, 1] images."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2.0 / x.shape[-1])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample((x + 1) / 2, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out * 2 - 1


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True)


def _cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p))


# ---------------------------------------------------------------------------------------------- CLIP
def _clip_model(tmp_dir: Path):
    import open_clip

    clip_dir = tmp_dir / "clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    (clip_dir / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": OPEN_CLIP_CFG, "preprocess_cfg": PREPROCESS_CFG})
    )
    model = open_clip.create_model(f"local-dir:{clip_dir}", load_weights=False)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    return model, tokenizer


def train_clip(x_train: torch.Tensor, y_train: np.ndarray, tmp_dir: Path, seed: int, progress: bool):
    torch.manual_seed(seed)
    model, tokenizer = _clip_model(tmp_dir)
    captions = [(d, c) for d in range(10) for c in captions_for(d)]
    tokens = tokenizer([c for _, c in captions])
    caption_label = torch.tensor([d for d, _ in captions])
    by_label = [torch.nonzero(caption_label == d).flatten() for d in range(10)]
    y = torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, CLIP_STEPS, 50))
    model.train()
    bar = _bar(CLIP_STEPS, "clip", progress)
    for step in range(CLIP_STEPS):
        idx = torch.randint(0, len(y), (CLIP_BATCH,), generator=gen)
        labels = y[idx]
        pick = torch.stack(
            [by_label[int(d)][torch.randint(0, len(by_label[int(d)]), (1,), generator=gen)] for d in labels]
        ).flatten()
        images = _augment(x_train[idx], gen).repeat(1, 3, 1, 1)
        img = model.encode_image(images, normalize=True)
        txt = model.encode_text(tokens[pick], normalize=True)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        pos = (labels[:, None] == labels[None, :]).float()
        target = pos / pos.sum(1, keepdim=True)
        loss = 0.5 * (
            torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
            + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    # The committed weights are float16 (the 49,408-row token table dominates the size); round now so that
    # everything downstream (stats, decoder conditioning) sees exactly the weights that ship.
    model = model.half().float().eval()
    return model, tokenizer


def align_text(model, tokenizer, x_train: torch.Tensor, y_train: np.ndarray, seed: int, progress: bool):
    """Fine-tune the text tower only, so that a caption moved across the modality gap the way
    `Space.text_to_image_side` does it (unit(unit(t) - text_mean + image_mean)) lands on its digit's image
    centroid. The image tower is frozen, so image embeddings (and everything trained on them) are unchanged.
    Without this, gap-shifted captions sat at cosine ~0.8 from their centroid (images: ~0.95) and the decoder
    read them poorly (4-6/10 right).
    """
    torch.manual_seed(seed)
    img = _encode_images(model, x_train).float()
    img_unit = F.normalize(img, dim=-1)
    image_mean = img_unit.mean(0)
    y = torch.from_numpy(y_train)
    centroids = torch.stack([F.normalize(img[y == d].mean(0), dim=-1) for d in range(10)])
    captions = [(d, c) for d in range(10) for c in captions_for(d)]
    tokens = tokenizer([c for _, c in captions])
    cap_label = torch.tensor([d for d, _ in captions])
    params = [p for n, p in model.named_parameters() if not n.startswith("visual.") and n != "logit_scale"]
    for n, p in model.named_parameters():
        p.requires_grad_(
            n in {n2 for n2, p2 in model.named_parameters() if not n2.startswith("visual.") and n2 != "logit_scale"}
        )
    opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + 5)
    model.train()
    bar = _bar(ALIGN_STEPS, "align text", progress)
    for step in range(ALIGN_STEPS):
        t = F.normalize(model.encode_text(tokens, normalize=False), dim=-1)
        shifted = F.normalize(t - t.mean(0) + image_mean, dim=-1)
        align = (1 - (shifted * centroids[cap_label]).sum(-1)).mean()
        idx = torch.randint(0, len(y), (256,), generator=gen)
        logits = model.logit_scale.exp().clamp(max=100).detach() * img_unit[idx] @ t.T
        pos = (y[idx][:, None] == cap_label[None, :]).float()
        contrast = torch.sum(-(pos / pos.sum(1, keepdim=True)) * F.log_softmax(logits, 1), 1).mean()
        loss = 10 * align + contrast
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(align=f"{align.item():.4f}", contrast=f"{contrast.item():.3f}")
    bar.close()
    for p in model.parameters():
        p.requires_grad_(True)
    return model.half().float().eval()


@torch.inference_mode()
def _encode_images(model, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    return torch.cat(
        [model.encode_image(x[i : i + batch].repeat(1, 3, 1, 1), normalize=False) for i in range(0, len(x), batch)]
    )


# ---------------------------------------------------------------------------------------------- VAE
def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=PIXELS,
    )


def train_vae(x_train: torch.Tensor, seed: int, progress: bool):
    torch.manual_seed(seed)
    vae = make_vae()
    gen = torch.Generator().manual_seed(seed + 2)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, VAE_STEPS, 50))
    vae.train()
    bar = _bar(VAE_STEPS, "vae", progress)
    for step in range(VAE_STEPS):
        idx = torch.randint(0, len(x_train), (VAE_BATCH,), generator=gen)
        x = _augment(x_train[idx], gen) if step % 2 else x_train[idx]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        kl = posterior.kl().mean()
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-5 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", kl=f"{kl.item():.0f}")
    bar.close()
    vae.eval()
    with torch.inference_mode():
        latents = torch.cat([vae.encode(x_train[i : i + 256]).latent_dist.mean for i in range(0, len(x_train), 256)])
        rec = torch.cat([vae.decode(latents[i : i + 256]).sample for i in range(0, len(latents), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae, float(F.mse_loss(rec.clamp(-1, 1), x_train))


# ---------------------------------------------------------------------------------------------- UNet
def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        addition_embed_type="image",
        encoder_hid_dim=EMBED_DIM,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=64,
        attention_head_dim=16,
    )


def train_unet(latents: torch.Tensor, cond: torch.Tensor, seed: int, progress: bool):
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    unet = make_unet()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    gen = torch.Generator().manual_seed(seed + 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, UNET_STEPS, 100))
    unet.train()
    bar = _bar(UNET_STEPS, "unet", progress)
    ema_params, params = list(ema.parameters()), list(unet.parameters())
    for step in range(UNET_STEPS):
        idx = torch.randint(0, len(latents), (UNET_BATCH,), generator=gen)
        z0, c = latents[idx], cond[idx].clone()
        c[torch.rand(UNET_BATCH, generator=gen) < COND_DROPOUT] = 0.0
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, 1000, (UNET_BATCH,), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        pred = unet(zt, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": c}).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(EMA_DECAY, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - decay)
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    return ema


# ---------------------------------------------------------------------------------------------- metrics
def evaluate(space, images, labels, train_idx, test_idx, seeds=(0, 1)) -> dict:
    """The held-out figures the tests check (same procedure as tests/test_digits_space.py)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from app.spaces.base import DecodeRequest, unit

    def features(ims):
        return np.stack([image_to_digit(im) for im in ims]) / 16.0

    with threadpool_limits(1):  # BLAS threads on a busy 2-core machine: 0.05 s -> 15-60 s
        clf = LogisticRegression(max_iter=1000).fit(features([images[i] for i in train_idx]), labels[train_idx])
    test_images = [images[i] for i in test_idx]
    y_test = labels[test_idx]
    vec = space.encode_images(test_images).vectors
    captions = [(d, c) for d in range(10) for c in captions_for(d)]
    txt = space.encode_text([c for _, c in captions])
    cap_label = np.array([d for d, _ in captions])
    zero_shot = float((cap_label[(unit(vec) @ unit(txt).T).argmax(1)] == y_test).mean())
    canon = space.encode_text(CANONICAL_PROMPTS)
    zero_shot_canonical = float(((unit(vec) @ unit(canon).T).argmax(1) == y_test).mean())

    means = mean_image_vectors(vec, y_test)
    text_side = space.text_to_image_side(canon)

    def judge(vectors, seed):
        t = time.perf_counter()
        out = space.decode([DecodeRequest(vector=v, seed=seed) for v in vectors])
        dt = (time.perf_counter() - t) / len(vectors)
        with threadpool_limits(1):
            pred = clf.predict(features(out))
        return int((pred == np.arange(10)).sum()), dt

    metrics = {
        "zero_shot_accuracy": round(zero_shot, 4),
        "zero_shot_accuracy_canonical": round(zero_shot_canonical, 4),
        "classifier_test_accuracy": round(float(clf.score(features(test_images), y_test)), 4),
    }
    times = []
    for seed in seeds:
        n_img, dt = judge(means, seed)
        n_txt, dt2 = judge(text_side, seed)
        times += [dt, dt2]
        metrics[f"decode_mean_image_correct_of_10_seed{seed}"] = n_img
        metrics[f"decode_text_side_correct_of_10_seed{seed}"] = n_txt
    metrics["decode_seconds_per_image"] = round(float(np.median(times)), 3)
    return metrics


# ---------------------------------------------------------------------------------------------- main
def train(out_dir: Path, seed: int = 0, progress: bool = True, threads: int = THREADS) -> dict:
    """Train the CLIP encoder, VAE and decoder, save the space to `out_dir`, and return its metrics."""
    import tempfile

    import open_clip
    from diffusers import DDIMScheduler

    from app.spaces.clip_decoder import ClipDecoderSpace, compute_stats
    from app.spaces.pipeline import ClipDecoderPipeline

    torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    images, labels, train_idx, test_idx = digit_images()
    x_all = _to_tensor(images)
    x_train, y_train = x_all[train_idx], labels[train_idx]
    timings = {}

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        clip_model, tokenizer = train_clip(x_train, y_train, Path(tmp), seed, progress)
        timings["clip_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    clip_model = align_text(clip_model, tokenizer, x_train, y_train, seed, progress)
    timings["align_text_s"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    vae, vae_mse = train_vae(x_train, seed, progress)
    timings["vae_s"] = round(time.perf_counter() - t, 1)

    # Decoder training pairs: the original train images plus augmented copies, each with its VAE latent and
    # its own CLIP image embedding (what the space computes for an image at run time).
    gen = torch.Generator().manual_seed(seed + 4)
    xs = torch.cat([x_train] + [_augment(x_train, gen) for _ in range(UNET_AUGMENTED_COPIES)])
    with torch.inference_mode():
        cond = _encode_images(clip_model, xs)
        latents = torch.cat([vae.encode(xs[i : i + 512]).latent_dist.mean for i in range(0, len(xs), 512)])
        latents = latents * vae.config.scaling_factor
    t = time.perf_counter()
    unet = train_unet(latents.clone(), cond.clone(), seed, progress)
    timings["unet_s"] = round(time.perf_counter() - t, 1)

    with torch.inference_mode():
        text_vectors = clip_model.encode_text(
            tokenizer([c for d in range(10) for c in captions_for(d)]), normalize=False
        ).numpy()
        image_vectors = _encode_images(clip_model, x_train).numpy()
    stats = compute_stats(text_vectors, image_vectors)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type="epsilon",
        timestep_spacing="trailing",
    )
    pipeline = ClipDecoderPipeline(unet=unet.eval(), scheduler=scheduler, vae=vae.eval())
    timings["total_train_s"] = round(time.perf_counter() - t_start, 1)

    provenance = {
        "data": "sklearn.datasets.load_digits (1,797 8x8 digits, upsampled bicubic to 16x16 'L')",
        "split": "70/30 stratified, random_state=0; trained on the 70% train split only "
        f"({len(train_idx)} images); metrics on the {len(test_idx)} held-out test images",
        "seed": seed,
        "trainer": "python -m training.digits --out DIR --seed N",
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "training": {
            "clip": {"steps": CLIP_STEPS, "batch": CLIP_BATCH, "captions": CAPTION_TEMPLATES},
            "align_text": {"steps": ALIGN_STEPS},
            "vae": {"steps": VAE_STEPS, "batch": VAE_BATCH, "train_mse": round(vae_mse, 5)},
            "unet": {
                "steps": UNET_STEPS,
                "batch": UNET_BATCH,
                "cond_dropout": COND_DROPOUT,
                "ema_decay": EMA_DECAY,
                "schedule": "cosine DDPM, epsilon",
                "augmented_copies": UNET_AUGMENTED_COPIES,
            },
            "seconds": timings,
            "threads": torch.get_num_threads(),
        },
    }
    config = {"name": "digits", "image_mode": "L", "decode": dict(DECODE), "provenance": provenance}
    # float16 CLIP weights keep the directory small (loaded back into the float32 model).
    ClipDecoderSpace.save_components(
        out_dir, config, copy.deepcopy(clip_model).half(), OPEN_CLIP_CFG, PREPROCESS_CFG, pipeline, stats
    )

    space = ClipDecoderSpace.from_pretrained(out_dir, device="cpu")
    metrics = evaluate(space, images, labels, train_idx, test_idx)
    metrics.update(timings)
    config["provenance"]["metrics"] = metrics
    (out_dir / "space.json").write_text(json.dumps(config, indent=2))
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the latentmap 'digits' space from sklearn's load_digits.")
    parser.add_argument("--out", type=Path, required=True, help="space directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (results depend on it)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    metrics = train(args.out, seed=args.seed, progress=not args.no_progress, threads=args.threads)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
