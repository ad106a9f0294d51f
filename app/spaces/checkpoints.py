"""Single-file Stable Diffusion checkpoints in the original (CompVis/LDM) key layout, the way people download them.

Loading goes through diffusers' `from_single_file` against a diffusers config folder that is already on this
machine (never a download): the space's own base folder when it is there, else the SD 1.5 configs shipped in
`configs/sd15/` (built into `<data_dir>/spaces/sd15-config/` with the CLIP tokenizer from open_clip's bundled
vocabulary).

Writing (`write_sd1_checkpoint`) is the reverse of diffusers' conversion, the key map of diffusers'
`scripts/convert_diffusers_to_original_stable_diffusion.py`: tests and benchmarks use it to make the files users
have ("model.diffusion_model.*", "first_stage_model.*", "cond_stage_model.transformer.*") from diffusers models.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .vith import CONFIG_DIR, clip_tokenizer

SD15_CONFIG_DIR = CONFIG_DIR / "sd15"  # model_index.json, unet/, text_encoder/, scheduler/ configs of SD 1.5

# ---------------------------------------------------------------------------------------------- diffusers → LDM keys
_UNET_TOP = [  # (original, diffusers)
    ("time_embed.0.weight", "time_embedding.linear_1.weight"),
    ("time_embed.0.bias", "time_embedding.linear_1.bias"),
    ("time_embed.2.weight", "time_embedding.linear_2.weight"),
    ("time_embed.2.bias", "time_embedding.linear_2.bias"),
    ("input_blocks.0.0.weight", "conv_in.weight"),
    ("input_blocks.0.0.bias", "conv_in.bias"),
    ("out.0.weight", "conv_norm_out.weight"),
    ("out.0.bias", "conv_norm_out.bias"),
    ("out.2.weight", "conv_out.weight"),
    ("out.2.bias", "conv_out.bias"),
]
_UNET_RESNET = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
]


def _unet_layer_map() -> list[tuple[str, str]]:
    """Block prefixes of the SD 1.x/2.x UNet (4 levels, 2 resnets down / 3 up, attention in the first 3)."""
    out = []
    for i in range(4):
        for j in range(2):
            out.append((f"input_blocks.{3 * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if i < 3:
                out.append((f"input_blocks.{3 * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(3):
            out.append((f"output_blocks.{3 * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if i > 0:
                out.append((f"output_blocks.{3 * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < 3:
            out.append((f"input_blocks.{3 * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            out.append((f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.", f"up_blocks.{i}.upsamplers.0."))
    out.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        out.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return out


def unet_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers SD 1.x/2.x UNet state dict in the original layout (keys without "model.diffusion_model.")."""
    top = {hf: sd for sd, hf in _UNET_TOP}
    layers = _unet_layer_map()
    out = {}
    for key, value in state.items():
        name = top.get(key, key)
        if "resnets" in name:
            for sd, hf in _UNET_RESNET:
                name = name.replace(hf, sd)
        for sd, hf in layers:
            name = name.replace(hf, sd)
        out[name] = value
    return out


def _vae_map() -> list[tuple[str, str]]:
    out = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"), ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(4):
        for j in range(2):
            out.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < 3:
            out.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            out.append((f"up.{3 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        for j in range(3):
            out.append((f"decoder.up.{3 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
    for i in range(2):
        out.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    return out


_VAE_ATTN = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]


def vae_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict in the original layout (keys without "first_stage_model.");
    the mid-block attention's linear weights become the original's 1x1 convolutions."""
    vae_map = _vae_map()
    out = {}
    for key, value in state.items():
        name = key
        for sd, hf in vae_map:
            name = name.replace(hf, sd)
        if "attentions" in key:
            for sd, hf in _VAE_ATTN:
                name = name.replace(hf, sd)
            if name.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")) and value.ndim == 2:
                value = value[:, :, None, None]
        out[name] = value
    return out


def write_sd1_checkpoint(path: str | Path, unet, text_encoder, vae, metadata: dict[str, str] | None = None) -> Path:
    """unet + CLIP text encoder + VAE (diffusers/transformers models) as one SD 1.x single-file checkpoint in the
    original key layout, as CivitAI and the original repos distribute them (tests and benchmarks)."""
    from safetensors.torch import save_file

    state = {}
    for key, value in unet_to_original(unet.state_dict()).items():
        state[f"model.diffusion_model.{key}"] = value
    for key, value in vae_to_original(vae.state_dict()).items():
        state[f"first_stage_model.{key}"] = value
    for key, value in text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        state[f"cond_stage_model.transformer.{key}"] = value
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return path


# ---------------------------------------------------------------------------------------------- loading
def sd15_config_dir(dest: Path) -> Path:
    """The shipped SD 1.5 diffusers configs as a folder `from_single_file(config=...)` reads offline (built once)."""
    dest = Path(dest)
    if not (dest / "tokenizer" / "tokenizer_config.json").is_file():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(SD15_CONFIG_DIR, tmp)
        clip_tokenizer(tmp / "tokenizer")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return dest


def config_matches(config_dir: Path, unet_state_keys: set[str]) -> bool:
    """Whether `config_dir`'s UNet config has the block structure the checkpoint's keys have (cheap check)."""
    cfg = json.loads((Path(config_dir) / "unet" / "config.json").read_text())
    levels = len(cfg["block_out_channels"])
    return levels == 4 and f"model.diffusion_model.output_blocks.{3 * levels - 1}.0.skip_connection.weight" in (
        unet_state_keys
    )


def load_sd_pipeline(checkpoint: str | Path, config_dir: str | Path, dtype: torch.dtype, **components):
    """StableDiffusionPipeline from a single-file checkpoint (original layout), its configs from `config_dir`
    (a local diffusers folder), never downloading; `components` (e.g. vae=TAESD) replace the file's own."""
    from diffusers import StableDiffusionPipeline

    from .vith import dtype_kwargs

    return StableDiffusionPipeline.from_single_file(
        str(checkpoint), config=str(config_dir), local_files_only=True, **dtype_kwargs(dtype), **components
    )
