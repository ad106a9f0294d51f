"""`tiny-random`: the real classes at toy size with fixed-seed random weights, for fast offline tests.

It is built from config, saved to a directory, and loaded back through `ClipDecoderSpace.from_pretrained`,
the same loader the trained spaces use. Random weights mean nothing: use it for shapes, persistence and
determinism, never for meaning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import open_clip
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from PIL import Image

from .clip_decoder import ClipDecoderSpace, compute_stats
from .pipeline import ClipDecoderPipeline

EMBED_DIM = 32
IMAGE_SIZE = 32

OPEN_CLIP_CFG = {
    "embed_dim": EMBED_DIM,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    # open_clip's bundled tokenizer emits ids up to 49407, so the vocabulary must stay 49408.
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {
    "size": IMAGE_SIZE,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def tiny_unet(embed_dim: int, sample_size: int, in_channels: int = 4) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("DownBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        addition_embed_type="image",
        encoder_hid_dim=embed_dim,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=8,
    )


def build(path: str | Path, seed: int = 0) -> Path:
    """Create the tiny-random space directory at `path` (deterministic for a seed)."""
    torch.manual_seed(seed)
    clip_name = "local-dir:" + str(_write_clip_config(Path(path)))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns that a model without weights is random: here it is meant to be
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(clip_name, load_weights=False)
    finally:
        root.setLevel(level)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )
    unet = tiny_unet(EMBED_DIM, IMAGE_SIZE // 2)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type="epsilon",
    )
    pipeline = ClipDecoderPipeline(unet=unet.eval(), scheduler=scheduler, vae=vae.eval())

    # Modality statistics from fixed reference inputs, as the trained spaces compute them from their data.
    rng = np.random.default_rng(seed)
    tokenizer = open_clip.get_tokenizer(clip_name)
    images = [Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)) for _ in range(16)]
    with torch.inference_mode():
        text_vectors = model.encode_text(tokenizer([f"reference prompt {i}" for i in range(16)])).numpy()
        image_vectors = model.encode_image(torch.stack([preprocess(im) for im in images])).numpy()
    config = {
        "name": "tiny-random",
        "image_mode": "RGB",
        "decode": {"steps": 4, "guidance": 2.0},
        "provenance": {"weights": "random (fixed seed)", "seed": seed, "purpose": "tests only"},
    }
    return ClipDecoderSpace.save_components(
        path, config, model, OPEN_CLIP_CFG, PREPROCESS_CFG, pipeline, compute_stats(text_vectors, image_vectors)
    )


def _write_clip_config(path: Path) -> Path:
    clip_dir = path / "clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    (clip_dir / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": OPEN_CLIP_CFG, "preprocess_cfg": PREPROCESS_CFG})
    )
    return clip_dir
