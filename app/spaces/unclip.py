"""`unclip-h` (quality): Stable unCLIP 2.1 (H) decoding ViT-H image embeddings.

The pipeline's own image encoder *is* open_clip ViT-H-14 laion2b_s32b_b79k, so a map vector is exactly its
conditioning: the raw (unnormalised) embedding goes to `image_embeds` (the pipeline's image normalizer does its
own scaling), `noise_level` 0 by default, zeros as the negative image embedding (as the pipeline does). The
pipeline's image_encoder/feature_extractor are never downloaded or loaded: the shared `vith.VitH` encodes.

The denoising loop is the pipeline's own (`StableUnCLIPImg2ImgPipeline.__call__`, steps 3-9) written out so
that a starting VAE latent can be used SDEdit-style (`DecodeRequest.latent`/`strength`, which the pipeline call
does not offer) and so a preview can decode with TAESD. Prompt thumbnails: the prompt as text conditioning with
the zero image embedding (the pipeline's unconditional image input), i.e. SD 2.1 text-to-image.
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
    to_pil,
    torch_dtype,
)

log = logging.getLogger(__name__)
NAME = "unclip-h"


class UnclipSpace(VitHSpace):
    def __init__(self, clip: VitH, pipe, taesd, config: dict, device: str, provenance: dict):
        super().__init__(config.get("name", NAME), clip, config, device, provenance)
        self.pipe = pipe
        self.taesd = taesd
        self.vae_scale = pipe.vae_scale_factor
        self.info["preview"] = {**(config.get("preview") or {}), "vae": "taesd" if taesd is not None else "vae"}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_paths(
        cls,
        paths: dict,
        device: str,
        cache_dir: Path | None = None,
        config: dict | None = None,
        n_reference: int | None = None,
        provenance: dict | None = None,
        base_id: str | None = None,
    ) -> UnclipSpace:
        from diffusers import AutoencoderTiny, StableUnCLIPImg2ImgPipeline

        config = {**space_config(NAME), **(config or {})}
        dtype = torch_dtype(device)
        clip = VitH.shared(paths["clip"], device)
        pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(
            paths["pipeline"], image_encoder=None, feature_extractor=None, **dtype_kwargs(dtype), use_safetensors=True
        )
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        embed_dim = int(pipe.image_normalizer.mean.shape[-1])
        if embed_dim != clip.dim:
            raise ValueError(
                f"{NAME}: the pipeline expects {embed_dim}-d image embeddings but the CLIP encoder at "
                f"{paths['clip']} gives {clip.dim}-d ones"
            )
        taesd = None
        if paths.get("taesd") is not None:
            taesd = AutoencoderTiny.from_pretrained(paths["taesd"], **dtype_kwargs(dtype), use_safetensors=True)
            taesd.to(device).eval()
        provenance = provenance or {k: str(v) if v else None for k, v in paths.items()}
        space = cls(clip, pipe, taesd, config, device, provenance)
        from . import own_models

        shown = hub.components(NAME, base_id)["pipeline"].repo_id
        space.set_base(
            own_models.base_info(NAME, shown, None),
            own_models.base_lineage(NAME, shown, None),
            own_models.decoder_tag(base_id),
        )
        prompts = reference_prompts(n_reference or config.get("reference_prompts"))
        space.stats = space.load_stats(cache_dir, fingerprint(NAME, paths, config), prompts)
        return space

    # ------------------------------------------------------------------ the denoising loop
    def _run(
        self,
        image_embeds: torch.Tensor,
        prompt: str,
        seed: int,
        steps: int,
        guidance: float,
        noise_level: int,
        init_latent: torch.Tensor | None = None,
        strength: float = 1.0,
        fast_vae: bool = False,
        variant: str | None = None,
        lora_scale: float | None = None,
    ) -> Image.Image:
        return list(
            self._steps(
                image_embeds,
                prompt,
                [seed],
                steps,
                guidance,
                noise_level,
                init_latent,
                strength,
                fast_vae,
                variant,
                lora_scale,
            )
        )[-1][0]

    def _steps(
        self,
        image_embeds: torch.Tensor,
        prompt: str,
        seeds: list[int],
        steps: int,
        guidance: float,
        noise_level: int,
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        fast_vae: bool = False,
        variant: str | None = None,
        lora_scale: float | None = None,
    ):
        """The loop for a batch (row i: `image_embeds[i]`, `seeds[i]`, `init_latents[i]`) as a generator: None
        after each denoising step, the PIL images last. Each row draws its noise from its own seed's generator
        in the order a single decode does, with a private scheduler copy; the lock and the decoder variant are
        taken per slice, so a click can run between the steps of a terrain tile."""
        import copy

        from diffusers.utils.torch_utils import randn_tensor

        pipe, device, dtype = self.pipe, self.device, self.dtype
        height, width = int(self.config["height"]), int(self.config["width"])
        do_cfg = guidance > 1.0
        n = len(seeds)
        with self._lock, self._variant(variant, lora_scale), torch.inference_mode():
            prompt_embeds, negative = pipe.encode_prompt(
                prompt=prompt,
                device=device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=do_cfg,
                negative_prompt="",
            )
            prompt_embeds = prompt_embeds.repeat(n, 1, 1)
            if do_cfg:
                prompt_embeds = torch.cat([negative.repeat(n, 1, 1), prompt_embeds])
            scheduler = copy.deepcopy(pipe.scheduler)
            scheduler.set_timesteps(steps, device=device)
            timesteps = scheduler.timesteps
            shape = (1, pipe.unet.config.in_channels, height // self.vae_scale, width // self.vae_scale)
            conds, noises = [], []
            for i, seed in enumerate(seeds):
                generator = torch.Generator("cpu").manual_seed(int(seed))
                # Unnormalised embedding in; the pipeline's image_normalizer scales/unscales around the noising.
                conds.append(
                    pipe.noise_image_embeddings(
                        image_embeds[i : i + 1].to(device=device, dtype=dtype),
                        noise_level=int(noise_level),
                        generator=generator,
                    )
                )
                noises.append(randn_tensor(shape, generator=generator, device=torch.device(device), dtype=dtype))
            cond, noise = torch.cat(conds), torch.cat(noises)
            if do_cfg:
                cond = torch.cat([torch.zeros_like(cond), cond])
            if init_latents is not None and strength < 1.0:
                keep = max(1, int(round(len(timesteps) * strength)))
                timesteps = timesteps[len(timesteps) - keep :]
                latents = scheduler.add_noise(
                    init_latents.to(device=device, dtype=dtype), noise, timesteps[:1].repeat(n)
                )
            else:
                latents = noise * scheduler.init_noise_sigma
        for t in timesteps:
            with self._lock, self._variant(variant, lora_scale), torch.inference_mode():
                model_in = torch.cat([latents] * 2) if do_cfg else latents
                model_in = scheduler.scale_model_input(model_in, t)
                pred = pipe.unet(
                    model_in, t, encoder_hidden_states=prompt_embeds, class_labels=cond, return_dict=False
                )[0]
                if do_cfg:
                    uncond, text = pred.chunk(2)
                    pred = uncond + guidance * (text - uncond)
                latents = scheduler.step(pred, t, latents, return_dict=False)[0]
            yield None
        with self._lock, self._variant(variant, lora_scale), torch.inference_mode():
            if fast_vae and self.taesd is not None:
                pixels = self.taesd.decode(latents / self.taesd.config.scaling_factor, return_dict=False)[0]
            else:
                pixels = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        yield to_pil(pixels)

    def decode_steps(self, requests, batch_size: int = 16):
        """Batched like ClipDecoderSpace.decode_steps: requests sharing steps, strength and start run together,
        `batch_size` a model call, one denoising step a slice."""
        for r in requests:
            if np.asarray(r.vector).shape != (self.dim,):
                raise ValueError(f"decode vector must have shape ({self.dim},), got {np.asarray(r.vector).shape}")
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            with_init = r.latent is not None and r.strength < 1.0
            groups.setdefault(
                (
                    self._steps_for(r),
                    float(r.strength) if with_init else 1.0,
                    with_init,
                    bool(r.preview),
                    r.variant,
                    r.lora_scale,
                ),
                [],
            ).append(i)
        images: list = [None] * len(requests)
        for (steps, strength, with_init, preview, variant, scale), members in groups.items():
            for start in range(0, len(members), max(1, batch_size)):
                chunk = members[start : start + max(1, batch_size)]
                emb = torch.from_numpy(np.stack([np.asarray(requests[i].vector, np.float32) for i in chunk]))
                init = (
                    torch.from_numpy(np.stack([np.asarray(requests[i].latent, np.float32) for i in chunk]))
                    if with_init
                    else None
                )
                out = None
                for out in self._steps(
                    emb,
                    "",
                    [requests[i].seed for i in chunk],
                    steps,
                    float(self.config["guidance"]),
                    int(self.config.get("noise_level", 0)),
                    init,
                    strength,
                    preview,
                    variant,
                    scale,
                ):
                    if out is None:
                        yield None
                for i, image in zip(chunk, out):
                    images[i] = image
        yield images

    def _steps_for(self, req: DecodeRequest) -> int:
        preview = bool(getattr(req, "preview", False))
        return (
            int((self.config.get("preview") or {}).get("steps", self.config["steps"]))
            if preview
            else int(self.config["steps"])
        )

    # ------------------------------------------------------------------ Space hooks
    def _decode_one(self, req: DecodeRequest) -> Image.Image:
        emb = torch.from_numpy(np.array(req.vector, dtype=np.float32)).unsqueeze(0)
        init = None
        if req.latent is not None and req.strength < 1.0:
            init = torch.from_numpy(np.array(req.latent, dtype=np.float32)).unsqueeze(0)
            expected = (
                self.pipe.unet.config.in_channels,
                int(self.config["height"]) // self.vae_scale,
                int(self.config["width"]) // self.vae_scale,
            )
            if tuple(init.shape[1:]) != expected:
                raise ValueError(f"decode latent must have shape {expected}, got {tuple(init.shape[1:])}")
        preview = bool(getattr(req, "preview", False))
        return self._run(
            emb,
            "",
            req.seed,
            self._steps_for(req),
            float(self.config["guidance"]),
            int(self.config.get("noise_level", 0)),
            init,
            float(req.strength),
            fast_vae=preview,
            variant=req.variant,
            lora_scale=req.lora_scale,
        )

    def _generate(self, texts: list[str]) -> list[Image.Image]:
        cfg = self.config.get("prompt_images") or {}
        zeros = torch.zeros(1, self.dim)
        return [
            self._run(
                zeros,
                text,
                int(cfg.get("seed", 0)),
                int(cfg.get("steps", self.config["steps"])),
                float(cfg.get("guidance", self.config["guidance"])),
                0,
            )
            for text in texts
        ]


def load(settings) -> UnclipSpace:
    from . import own_models

    device = choose_device(settings.device)
    choice = own_models.choice_from_settings(settings)
    if choice.checkpoint:
        path = own_models.resolve_file(choice.checkpoint, "checkpoint")
        own_models.check_file(path, NAME, "checkpoint", settings.max_model_header_bytes)  # another family: refused
        raise own_models.OwnModelError(
            f"{path.name}: single-file checkpoints load on turbo-h (SD 1.x); for {NAME} convert the SD 2.x unCLIP "
            "checkpoint to a diffusers folder and pass it with --base"
        )
    paths = hub.resolve(NAME, base=choice.base)
    if choice.base:
        own_models.check_base_folder(paths["pipeline"], NAME)
    space = UnclipSpace.from_paths(
        paths,
        device,
        cache_dir=Path(settings.data_dir) / "spaces" / NAME,
        provenance={"weights": "pretrained", **hub.provenance(NAME, paths, choice.base)},
        base_id=choice.base,
    )
    if choice.loras:
        space.load_loras(choice.loras, settings.max_model_header_bytes)
    return space


# ---------------------------------------------------------------------------------------------- random builds
def build_random(root: Path, arch: dict, seed: int = 0) -> dict[str, Path]:
    """Every unclip-h component at the size `arch` describes (configs/arch/*.json), random weights, written in the
    hub's folder layout (as `latentmap download` leaves them) under `root`. For tests and benchmarks only."""
    from diffusers import (
        AutoencoderKL,
        AutoencoderTiny,
        DDIMScheduler,
        DDPMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPTextConfig, CLIPTextModel

    root = Path(root)
    clip_dir = build_clip_dir(root / "clip", arch["clip"], seed)
    embed_dim = json.loads((clip_dir / "open_clip_config.json").read_text())["model_cfg"]["embed_dim"]
    torch.manual_seed(seed)
    unet_cfg = {**arch["unclip_unet"], "projection_class_embeddings_input_dim": 2 * embed_dim}
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=None,
        image_encoder=None,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed_dim),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=clip_tokenizer(),
        text_encoder=CLIPTextModel(CLIPTextConfig(**arch.get("unclip_text_encoder", arch["text_encoder"]))),
        unet=UNet2DConditionModel(**unet_cfg),
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        vae=AutoencoderKL(**arch["vae"]),
    )
    pipe.save_pretrained(root / "pipeline", safe_serialization=True)
    # The hub repo lists an image encoder that `latentmap download` does not fetch; mirror that layout.
    index_path = root / "pipeline" / "model_index.json"
    index = json.loads(index_path.read_text())
    index.update(
        image_encoder=["transformers", "CLIPVisionModelWithProjection"],
        feature_extractor=["transformers", "CLIPImageProcessor"],
    )
    index_path.write_text(json.dumps(index, indent=2))
    AutoencoderTiny(**arch.get("taesd", {})).save_pretrained(root / "taesd", safe_serialization=True)
    return {"clip": clip_dir, "pipeline": root / "pipeline", "taesd": root / "taesd"}
