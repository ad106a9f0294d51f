"""`turbo-h` (speed): Stable Diffusion 1.5 + IP-Adapter (ViT-H) + LCM-LoRA, 4 steps at guidance 1, TAESD.

`ip-adapter_sd15` was trained on the (unnormalised) image embeddings of the same open_clip ViT-H-14 the map
uses, so a map vector goes straight in through `ip_adapter_image_embeds`: one tensor per adapter, shaped
(batch, 1 image, dim), with the zero embedding first when classifier-free guidance is on (the layout
`StableDiffusionPipeline.prepare_ip_adapter_image_embeds` expects). The LCM-LoRA is fused into the UNet at load
time. The SD VAE is not used at all: TAESD (AutoencoderTiny) encodes uploads to latents and decodes every image.

A stored latent (`DecodeRequest.latent`, `strength` < 1) runs the img2img variant of the same components.
Prompt thumbnails: plain SD 1.5 text-to-image (IP-Adapter scale 0 by default, configs/turbo-h.json).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import hub
from .base import DecodeRequest
from .checkpoints import load_sd_pipeline
from .loading import choose_device
from .vith import (
    VitH,
    VitHSpace,
    build_clip_dir,
    clip_tokenizer,
    dtype_kwargs,
    fingerprint,
    reference_prompts,
    space_config,
    torch_dtype,
)

log = logging.getLogger(__name__)
NAME = "turbo-h"


class TurboSpace(VitHSpace):
    def __init__(self, clip: VitH, pipe, config: dict, device: str, provenance: dict):
        super().__init__(config.get("name", NAME), clip, config, device, provenance)
        from diffusers import StableDiffusionImg2ImgPipeline

        self.pipe = pipe
        self.img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
        self.img2img.set_progress_bar_config(disable=True)
        self.info["preview"] = {**(config.get("preview") or {}), "vae": "taesd"}

    @classmethod
    def from_paths(
        cls,
        paths: dict,
        device: str,
        cache_dir: Path | None = None,
        config: dict | None = None,
        n_reference: int | None = None,
        provenance: dict | None = None,
        checkpoint: Path | None = None,
        base_id: str | None = None,
        max_header_bytes: int = 100 * 1024 * 1024,
    ) -> TurboSpace:
        """`checkpoint`: a single-file SD 1.x checkpoint (original layout) replacing SD 1.5's UNet and text
        encoder, loaded against the sd15 folder's configs when they fit it, else the shipped SD 1.5 configs."""
        from diffusers import AutoencoderTiny, LCMScheduler, StableDiffusionPipeline

        from . import own_models

        config = {**space_config(NAME), **(config or {})}
        dtype = torch_dtype(device)
        clip = VitH.shared(paths["clip"], device)
        taesd = AutoencoderTiny.from_pretrained(paths["taesd"], **dtype_kwargs(dtype), use_safetensors=True)
        components = dict(
            vae=taesd, safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False
        )
        ckpt_row = None
        if checkpoint is not None:
            ckpt_row = own_models.check_file(Path(checkpoint), NAME, "checkpoint", max_header_bytes)
            config_dir = _checkpoint_config(Path(checkpoint), paths.get("sd15"), cache_dir, max_header_bytes)
            pipe = load_sd_pipeline(checkpoint, config_dir, dtype, **components)
        else:
            pipe = StableDiffusionPipeline.from_pretrained(
                paths["sd15"], **components, **dtype_kwargs(dtype), use_safetensors=True
            )
        pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
        pipe.load_lora_weights(str(paths["lcm_lora"]), weight_name=hub.LCM_LORA_WEIGHT, adapter_name="lcm")
        pipe.fuse_lora()
        pipe.unload_lora_weights()  # the fused weights stay; no LoRA layers at inference
        folder, weight = hub.IP_ADAPTER_WEIGHT.rsplit("/", 1)
        pipe.load_ip_adapter(str(paths["ip_adapter"]), subfolder=folder, weight_name=weight, image_encoder_folder=None)
        pipe.to(device=device, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        expected = int(pipe.unet.encoder_hid_proj.image_projection_layers[0].image_embeds.in_features)
        if expected != clip.dim:
            raise ValueError(
                f"{NAME}: the IP-Adapter expects {expected}-d image embeddings but the CLIP encoder at "
                f"{paths['clip']} gives {clip.dim}-d ones"
            )
        provenance = provenance or {k: str(v) if v else None for k, v in paths.items()}
        if ckpt_row is not None:
            provenance = {
                **provenance,
                "checkpoint": ckpt_row["file"],
                "sd15": provenance.get("sd15") or "configs only",
            }
        space = cls(clip, pipe, config, device, provenance)
        tag = own_models.decoder_tag(ckpt_row and ckpt_row["sha256"], None if ckpt_row else base_id)
        shown = hub.components(NAME, base_id)["sd15"].repo_id
        space.set_base(own_models.base_info(NAME, shown, ckpt_row), own_models.base_lineage(NAME, shown, ckpt_row), tag)
        prompts = reference_prompts(n_reference or config.get("reference_prompts"))
        key = fingerprint(NAME, paths, config)
        if tag:
            key["decoder"] = tag
        space.stats = space.load_stats(cache_dir, key, prompts)
        return space

    # ------------------------------------------------------------------ calls
    def _ip_embeds(self, vector: np.ndarray | torch.Tensor, guidance: float) -> list[torch.Tensor]:
        emb = torch.as_tensor(np.asarray(vector, dtype=np.float32)).reshape(1, 1, -1)  # (batch, images, dim)
        if guidance > 1.0:
            emb = torch.cat([torch.zeros_like(emb), emb])  # negative first, as diffusers chunks them
        return [emb.to(device=self.device, dtype=self.dtype)]

    @torch.inference_mode()
    def _call(
        self,
        prompt: str,
        vector,
        seed: int,
        steps: int,
        guidance: float,
        ip_scale: float,
        init_latent: np.ndarray | None = None,
        strength: float = 1.0,
        variant: str | None = None,
        lora_scale: float | None = None,
    ) -> Image.Image:
        generator = torch.Generator("cpu").manual_seed(int(seed))
        common = dict(
            prompt=prompt,
            num_inference_steps=int(steps),
            guidance_scale=float(guidance),
            ip_adapter_image_embeds=self._ip_embeds(vector, guidance),
            generator=generator,
            output_type="pil",
        )
        with self._lock, self._variant(variant, lora_scale):
            self.pipe.set_ip_adapter_scale(float(ip_scale))
            if init_latent is not None and strength < 1.0:
                latent = torch.from_numpy(np.array(init_latent, dtype=np.float32)).unsqueeze(0)
                # diffusers runs int(steps * strength) steps: below one step's worth it would run none (and
                # fail on an empty batch). At least one, as the unclip-h loop does.
                strength = min(1.0, max(float(strength), (1.0 + 1e-6) / int(steps)))
                out = self.img2img(image=latent.to(self.device, self.dtype), strength=strength, **common)
            else:
                out = self.pipe(height=int(self.config["height"]), width=int(self.config["width"]), **common)
        return out.images[0]

    def _decode_one(self, req: DecodeRequest) -> Image.Image:
        preview = bool(getattr(req, "preview", False))
        steps = (
            int((self.config.get("preview") or {}).get("steps", self.config["steps"]))
            if preview
            else int(self.config["steps"])
        )
        latent = None
        if req.latent is not None and req.strength < 1.0:
            latent = np.asarray(req.latent, dtype=np.float32)
            scale = self.pipe.vae_scale_factor
            expected = (
                self.pipe.unet.config.in_channels,
                int(self.config["height"]) // scale,
                int(self.config["width"]) // scale,
            )
            if latent.shape != expected:
                raise ValueError(f"decode latent must have shape {expected}, got {latent.shape}")
        return self._call(
            "",
            req.vector,
            req.seed,
            steps,
            float(self.config["guidance"]),
            float(self.config.get("ip_adapter_scale", 1.0)),
            latent,
            float(req.strength),
            req.variant,
            req.lora_scale,
        )

    def _generate(self, texts: list[str]) -> list[Image.Image]:
        cfg = self.config.get("prompt_images") or {}
        zeros = np.zeros(self.dim, dtype=np.float32)
        return [
            self._call(
                text,
                zeros,
                int(cfg.get("seed", 0)),
                int(cfg.get("steps", self.config["steps"])),
                float(cfg.get("guidance", self.config["guidance"])),
                float(cfg.get("ip_adapter_scale", 0.0)),
            )
            for text in texts
        ]


def _checkpoint_config(checkpoint: Path, sd15: Path | None, cache_dir: Path | None, max_header_bytes: int) -> Path:
    """The diffusers config folder a checkpoint loads against: the sd15 folder when its shapes fit (what this
    machine already has), else SD 1.5's configs shipped with the package. Never a download."""
    from . import own_models
    from .checkpoints import sd15_config_dir
    from .model_files import read_header

    tensors, _, _ = read_header(checkpoint, max_header_bytes)
    reasons = []
    if sd15 is not None:
        why = own_models.checkpoint_fits_config(tensors, Path(sd15))
        if why is None:
            return Path(sd15)
        reasons.append(f"{sd15}: {why}")
    shipped = sd15_config_dir((Path(cache_dir) if cache_dir else Path(".")) / "sd15-config")
    why = own_models.checkpoint_fits_config(tensors, shipped)
    if why is None:
        return shipped
    reasons.append(f"SD 1.5's configs: {why}")
    raise own_models.OwnModelError(
        f"checkpoint {checkpoint.name} does not fit {NAME}'s SD 1.x decoder: " + "; ".join(reasons)
    )


def load(settings) -> TurboSpace:
    from . import own_models

    device = choose_device(settings.device)
    choice = own_models.choice_from_settings(settings)
    checkpoint = own_models.resolve_file(choice.checkpoint, "checkpoint") if choice.checkpoint else None
    paths = hub.resolve(NAME, base=choice.base, checkpoint=checkpoint is not None)
    if choice.base:
        own_models.check_base_folder(paths["sd15"], NAME)
    space = TurboSpace.from_paths(
        paths,
        device,
        cache_dir=Path(settings.data_dir) / "spaces" / NAME,
        provenance={"weights": "pretrained", **hub.provenance(NAME, paths, choice.base)},
        checkpoint=checkpoint,
        base_id=choice.base,
        max_header_bytes=settings.max_model_header_bytes,
    )
    if choice.loras:
        space.load_loras(choice.loras, settings.max_model_header_bytes)
    return space


# ---------------------------------------------------------------------------------------------- random builds
def ip_adapter_state_dict(unet, embed_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """An `ip-adapter_sd15`-shaped state dict for `unet` (the layout diffusers' tests build and `load_ip_adapter`
    reads): image_proj.{proj,norm} and ip_adapter.{1,3,5,...}.to_{k,v}_ip, one pair per cross-attention."""
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    sd = {
        "image_proj.proj.weight": torch.randn(4 * cross, embed_dim, generator=g) * 0.02,
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    blocks = list(unet.config.block_out_channels)
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = blocks[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
        else:
            hidden = blocks[int(name[len("down_blocks.")])]
        for kind in ("to_k_ip", "to_v_ip"):
            sd[f"ip_adapter.{key_id}.{kind}.weight"] = torch.randn(hidden, cross, generator=g) * 0.02
        key_id += 2
    return sd


def lora_state_dict(unet, rank: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LoRA over every attention projection, in the kohya/`lora_unet_*` format (alpha per module)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, module in unet.named_modules():
        if (
            isinstance(module, torch.nn.Linear)
            and ".attn" in name
            and name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v", "0")
        ):
            key = "lora_unet_" + name.replace(".", "_")
            sd[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=g) * 0.02
            sd[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=g) * 0.02
            sd[f"{key}.alpha"] = torch.tensor(float(rank))
    return sd


def build_random(root: Path, arch: dict, seed: int = 0, unet_key: str = "sd15_unet") -> dict[str, Path]:
    """Every turbo-h component at the size `arch` describes, random weights, in the hub's folder layouts under
    `root` (sd15/ without vae/ or safety_checker/, as `latentmap download` leaves it). Tests/benchmarks only."""
    from diffusers import AutoencoderTiny, PNDMScheduler, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    root = Path(root)
    clip_dir = build_clip_dir(root / "clip", arch["clip"], seed)
    embed_dim = json.loads((clip_dir / "open_clip_config.json").read_text())["model_cfg"]["embed_dim"]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{k: v for k, v in arch[unet_key].items() if not k.startswith("_")})
    sd15 = root / "sd15"
    unet.save_pretrained(sd15 / "unet", safe_serialization=True)
    CLIPTextModel(CLIPTextConfig(**arch["text_encoder"])).save_pretrained(
        sd15 / "text_encoder", safe_serialization=True
    )
    clip_tokenizer(sd15 / "tokenizer")
    PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    ).save_pretrained(sd15 / "scheduler")
    (sd15 / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.6.0",
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
                "scheduler": ["diffusers", "PNDMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
            indent=2,
        )
    )
    ip_dir = root / "ip_adapter"
    (ip_dir / "models").mkdir(parents=True, exist_ok=True)
    save_file(ip_adapter_state_dict(unet, embed_dim, seed), str(ip_dir / hub.IP_ADAPTER_WEIGHT))
    lora_dir = root / "lcm_lora"
    lora_dir.mkdir(parents=True, exist_ok=True)
    save_file(lora_state_dict(unet, int(arch.get("lora_rank", 4)), seed), str(lora_dir / hub.LCM_LORA_WEIGHT))
    AutoencoderTiny(**arch.get("taesd", {})).save_pretrained(root / "taesd", safe_serialization=True)
    return {"clip": clip_dir, "sd15": sd15, "ip_adapter": ip_dir, "lcm_lora": lora_dir, "taesd": root / "taesd"}
