"""The open_clip + ClipDecoderPipeline family: used by `tiny-random` and the trained `digits` space.

A space directory has the same layout whether it was built here, trained by `latentmap train-digits`, or
copied from somewhere else:

    space.json                  name, image mode, decode settings, provenance
    clip/open_clip_config.json  open_clip "local-dir:" layout: {"model_cfg": ..., "preprocess_cfg": ...}
    clip/open_clip_model.safetensors
    decoder/                    ClipDecoderPipeline.save_pretrained (model_index.json, unet/, vae/, scheduler/)
    stats.safetensors           modality means and image norm (see base.ModalityStats)
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from .base import DecodeRequest, EncodedImages, ModalityStats, PreparedImage, Space, unit
from .loading import check_safetensors_only, choose_device
from .pipeline import ClipDecoderPipeline
from .variants import VariantSet, base_lineage

PREVIEW_MIN_STEPS = 3


class ClipDecoderSpace(Space):
    def __init__(
        self,
        name: str,
        clip_model,
        preprocess,
        tokenizer,
        pipeline: ClipDecoderPipeline,
        stats: ModalityStats,
        config: dict,
        device: str,
    ):
        self.name = name
        self.clip = clip_model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.pipeline = pipeline
        self.stats = stats
        self.config = config
        self.device = device
        self.dim = (
            int(clip_model.text_projection.shape[1])
            if hasattr(clip_model, "text_projection")
            else int(stats.image_mean.shape[0])
        )
        self.image_mode = config.get("image_mode", "RGB")
        self.decode_settings = {"steps": 20, "guidance": 2.0, **config.get("decode", {})}
        self.info = {
            "family": "clip-decoder",
            "image_mode": self.image_mode,
            "decode": self.decode_settings,
            "provenance": config.get("provenance", {}),
            "preview": {"steps": max(PREVIEW_MIN_STEPS, int(self.decode_settings["steps"]) // 4)},
        }
        # diffusers schedulers hold state: one call at a time per pipeline.
        self._lock = threading.Lock()
        self.info["lineage"] = base_lineage(config)
        self.variant_set = VariantSet(pipeline, name, self.image_mode, self.info["lineage"])
        self.info["variants"] = []

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, variants: bool = True) -> ClipDecoderSpace:
        path = Path(path)
        if not (path / "space.json").is_file():
            raise FileNotFoundError(f"{path} is not a latentmap space directory (no space.json)")
        check_safetensors_only(path)
        device = device or choose_device()
        config = json.loads((path / "space.json").read_text())
        clip_model, _, preprocess = open_clip.create_model_and_transforms(
            f"local-dir:{path / 'clip'}", device=device, require_pretrained=True
        )
        tokenizer = open_clip.get_tokenizer(f"local-dir:{path / 'clip'}")
        pipeline = ClipDecoderPipeline.from_pretrained(path / "decoder", use_safetensors=True)
        pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        raw = load_numpy(str(path / "stats.safetensors"))
        stats = ModalityStats(
            text_mean=raw["text_mean"], image_mean=raw["image_mean"], image_norm=float(raw["image_norm"][0])
        )
        space = cls(config["name"], clip_model, preprocess, tokenizer, pipeline, stats, config, device)
        if variants:
            space.load_variants(path / "variants")
        return space

    @staticmethod
    def save_components(
        path: str | Path,
        config: dict,
        clip_model,
        open_clip_cfg: dict,
        preprocess_cfg: dict,
        pipeline: ClipDecoderPipeline,
        stats: ModalityStats,
    ) -> Path:
        """Write a space directory in the layout `from_pretrained` reads (used by builders and training)."""
        path = Path(path)
        (path / "clip").mkdir(parents=True, exist_ok=True)
        (path / "clip" / "open_clip_config.json").write_text(
            json.dumps({"model_cfg": open_clip_cfg, "preprocess_cfg": preprocess_cfg}, indent=2)
        )
        state = {k: v.detach().cpu().contiguous() for k, v in clip_model.state_dict().items()}
        save_torch(state, str(path / "clip" / "open_clip_model.safetensors"))
        pipeline.save_pretrained(path / "decoder", safe_serialization=True)
        save_numpy(
            {
                "text_mean": stats.text_mean.astype(np.float32),
                "image_mean": stats.image_mean.astype(np.float32),
                "image_norm": np.array([stats.image_norm], dtype=np.float32),
            },
            str(path / "stats.safetensors"),
        )
        (path / "space.json").write_text(json.dumps(config, indent=2))
        return path

    # ------------------------------------------------------------------ encoding
    def prepare_image(self, image: Image.Image) -> PreparedImage:
        return self.image_preparer()(image)

    def image_preparer(self):
        vae = self.pipeline.vae
        size = self.pipeline.latent_shape[1] * (2 ** (len(vae.config.block_out_channels) - 1))
        channels = vae.config.in_channels
        one_resize = self.image_mode == _vae_mode(channels) and _resizes_square_to(self.preprocess, size)
        return functools.partial(_prepare, self.preprocess, self.image_mode, size, channels, one_resize)

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.clip.encode_text(tokens, normalize=False).float().cpu().numpy()

    @torch.inference_mode()
    def encode_prepared(self, prepared: Sequence[PreparedImage]) -> EncodedImages:
        clip_in = torch.stack([p.clip for p in prepared]).to(self.device)
        vectors = self.clip.encode_image(clip_in, normalize=False).float().cpu().numpy()
        vae = self.pipeline.vae
        vae_in = torch.stack([p.vae for p in prepared]).to(self.device, vae.dtype)
        latents = vae.encode(vae_in).latent_dist.mean * vae.config.scaling_factor
        return EncodedImages(vectors=vectors, latents=latents.float().cpu().numpy())

    # ------------------------------------------------------------------ decoding
    def decode(self, requests: Sequence[DecodeRequest]) -> list[Image.Image]:
        # Requests are decoded one by one: each has its own seed and strength, and batching changes nothing
        # a user can see except latency (kept deterministic per request this way).
        return [self._decode_one(r) for r in requests]

    def _decode_one(self, req: DecodeRequest) -> Image.Image:
        self._check(req)
        emb = torch.from_numpy(np.array(req.vector, dtype=np.float32)).unsqueeze(0)
        init = None
        if req.latent is not None and req.strength < 1.0:
            init = torch.from_numpy(np.array(req.latent, dtype=np.float32)).unsqueeze(0)
        generator = torch.Generator("cpu").manual_seed(int(req.seed))
        variant, scale = getattr(req, "variant", None), getattr(req, "lora_scale", None)
        with self._lock, self.variant_set.pipeline_for(variant, scale) as pipeline:
            out = pipeline(
                emb,
                num_inference_steps=self._steps(req),
                guidance_scale=float(self.decode_settings["guidance"]),
                generator=generator,
                init_latents=init,
                strength=req.strength,
            )
        return out.images[0]

    def _check(self, req: DecodeRequest) -> None:
        if req.vector.shape != (self.dim,):
            raise ValueError(f"decode vector must have shape ({self.dim},), got {req.vector.shape}")

    def _steps(self, req: DecodeRequest) -> int:
        steps = int(self.decode_settings["steps"])
        return max(PREVIEW_MIN_STEPS, steps // 4) if req.preview else steps  # a preview: a quarter of the steps

    def decode_steps(
        self, requests: Sequence[DecodeRequest], batch_size: int = 16
    ) -> Iterator[list[Image.Image] | None]:
        """Batched: requests that share steps, strength, start (latent or not) and decoder run together,
        `batch_size` a model call, one denoising step a slice; each row keeps its own seed's noise, so a cell
        matches its single decode up to float rounding of the batched matmuls."""
        for r in requests:
            self._check(r)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            with_init = r.latent is not None and r.strength < 1.0
            groups.setdefault(
                (self._steps(r), float(r.strength) if with_init else 1.0, with_init, r.variant, r.lora_scale), []
            ).append(i)
        images: list[Image.Image | None] = [None] * len(requests)
        guidance = float(self.decode_settings["guidance"])
        for (steps, strength, with_init, variant, scale), members in groups.items():
            for start in range(0, len(members), max(1, batch_size)):
                chunk = members[start : start + max(1, batch_size)]
                emb = torch.from_numpy(np.stack([np.asarray(requests[i].vector, np.float32) for i in chunk]))
                init = (
                    torch.from_numpy(np.stack([np.asarray(requests[i].latent, np.float32) for i in chunk]))
                    if with_init
                    else None
                )
                generators = [torch.Generator("cpu").manual_seed(int(requests[i].seed)) for i in chunk]
                run = None
                while True:
                    # The lock and the decoder variant are taken per slice: between slices other decodes run.
                    with self._lock, self.variant_set.pipeline_for(variant, scale) as pipeline:
                        if run is None:
                            run = pipeline.steps(emb, steps, guidance, generators, init, strength)
                        out = next(run)
                    if out is not None:
                        break
                    yield None
                for i, image in zip(chunk, out.images):
                    images[i] = image
        yield images

    # ------------------------------------------------------------------ variants (spaces/variants.py)
    def load_variants(self, variants_dir: str | Path) -> list[str]:
        """Attach every variant under `variants_dir` (a space directory's `variants/`); returns their names."""
        with self._lock:
            names = self.variant_set.load_dir(variants_dir)
            self.info["variants"] = self.variant_set.describe()
        return names

    def load_lora(self, path: str | Path, name: str, scale: float = 1.0, meta: dict | None = None) -> dict:
        """Load a PEFT/diffusers LoRA (local .safetensors) onto the decoder as variant `name`."""
        with self._lock:
            variant = self.variant_set.load_lora(path, name, scale=scale, meta=meta)
            self.info["variants"] = self.variant_set.describe()
        return variant.describe()

    def variants(self) -> list[dict]:
        return self.variant_set.describe()

    def resolve_variant(
        self, variant: str | None, lora_scale: float | None, max_scale: float = 2.0
    ) -> tuple[str | None, float | None]:
        return self.variant_set.resolve(variant, lora_scale, max_scale)

    def upscale(self, image: Image.Image, upscaler: str | None = None) -> Image.Image:
        model = self.variant_set.upscaler(upscaler).upscaler
        return model.upscale(image)


def _prepare(
    preprocess, image_mode: str, vae_size: int, vae_channels: int, one_resize: bool, image: Image.Image
) -> PreparedImage:
    # The space's own colour convention first (digits are single-channel), then open_clip's transform.
    if one_resize and image.width == image.height:
        # Both inputs are the same square resize of the same colours: made once, open_clip's Resize then finds
        # the size right (Pillow copies) and its CenterCrop has nothing to cut. The same tensors, half the work.
        image = image.convert(image_mode).resize((vae_size, vae_size), Image.Resampling.BICUBIC)
    return PreparedImage(
        clip=preprocess(image.convert(image_mode).convert("RGB")),
        vae=_to_vae_tensor(image, vae_size, vae_channels),
    )


def _vae_mode(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


def _resizes_square_to(preprocess, size: int) -> bool:
    """Whether open_clip's transform starts by resizing a square picture to `size` x `size` (bicubic, as the
    VAE input is made) and centre-cropping that size: then one resize can serve both model inputs."""
    from torchvision import transforms

    steps = getattr(preprocess, "transforms", [])
    if len(steps) < 2 or not isinstance(steps[0], transforms.Resize) or not isinstance(steps[1], transforms.CenterCrop):
        return False
    resize, crop = steps[0], steps[1]
    wanted = {size, (size,), (size, size)}
    return (
        _size_key(resize.size) in wanted
        and resize.interpolation == transforms.InterpolationMode.BICUBIC
        and resize.max_size is None
        and _size_key(crop.size) in wanted
    )


def _size_key(size) -> int | tuple:
    return size if isinstance(size, int) else tuple(size)


def _to_vae_tensor(image: Image.Image, size: int, channels: int) -> torch.Tensor:
    im = image.convert(_vae_mode(channels)).resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def compute_stats(text_vectors: np.ndarray, image_vectors: np.ndarray) -> ModalityStats:
    """Modality statistics from reference embeddings (raw, unnormalised)."""
    return ModalityStats(
        text_mean=unit(text_vectors).mean(0),
        image_mean=unit(image_vectors).mean(0),
        image_norm=float(np.linalg.norm(image_vectors, axis=1).mean()),
    )
