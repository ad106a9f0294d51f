"""Variants of a space's decoder that share its CLIP space (and so its maps): LoRAs, fine-tunes, upscalers.

A variant lives in its own folder under the space directory, safetensors only:

    variants/<name>/variant.json    {"kind": "lora" | "finetune" | "upscaler", "base": <space name>,
                                     "description", "lineage", "licence", "default_scale" (LoRA), "metrics", ...}
    variants/<name>/lora.safetensors            kind lora: PEFT/diffusers UNet LoRA (`save_lora_adapter` layout;
                                                keys with or without a "unet." prefix)
    variants/<name>/unet/                       kind finetune: `UNet2DConditionModel.save_pretrained` (safetensors)
    variants/<name>/upscaler.safetensors        kind upscaler: `ConvUpscaler` weights (config in variant.json)

Every variant decodes the same CLIP image embeddings, so one clicked point can be decoded by the base and by
each variant side by side. LoRAs are PEFT adapters on the base UNet: each decode switches the wanted adapter
on at the wanted strength and switches adapters off again, so a base decode is bit-identical with or without
LoRAs loaded. A fine-tune is a second UNet sharing the base's VAE. Nothing here knows about maps or HTTP.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .loading import check_safetensors_only

KINDS = ("lora", "finetune", "upscaler")
BASE = "base"  # the reserved name of a space's own decoder
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")
LORA_FILE = "lora.safetensors"
UPSCALER_FILE = "upscaler.safetensors"


class VariantError(ValueError):
    """A variant request or variant folder that cannot be used; the message is meant for the user."""


# ---------------------------------------------------------------------------------------------- upscaler
class _ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ConvUpscaler(nn.Module):
    """A small super-resolution net (ESPCN/EDSR-style): convolutions at the low resolution, a pixel shuffle
    up by `scale`, added to the bicubic upsampling of the input. Images in [-1, 1], (n, channels, h, w)."""

    def __init__(self, channels: int = 1, scale: int = 4, width: int = 32, blocks: int = 3):
        super().__init__()
        self.config = {"channels": channels, "scale": scale, "width": width, "blocks": blocks}
        self.scale = scale
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(width) for _ in range(blocks)])
        self.tail = nn.Conv2d(width, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        nn.init.zeros_(self.tail.weight)  # starts as plain bicubic; training adds the detail
        nn.init.zeros_(self.tail.bias)

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(low, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.shuffle(self.tail(self.body(F.relu(self.head(low)))))

    @torch.inference_mode()
    def upscale(self, image: Image.Image) -> Image.Image:
        mode = "L" if self.config["channels"] == 1 else "RGB"
        arr = np.asarray(image.convert(mode), dtype=np.float32) / 127.5 - 1.0
        x = torch.from_numpy(arr[None, None] if arr.ndim == 2 else arr.transpose(2, 0, 1)[None].copy())
        p = next(self.parameters())
        out = self(x.to(p.device, p.dtype)).clamp(-1, 1).float().cpu()[0]
        out = ((out + 1) * 127.5).round().to(torch.uint8).numpy()
        return Image.fromarray(out[0] if mode == "L" else out.transpose(1, 2, 0), mode=mode)

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(Path(directory) / UPSCALER_FILE), metadata={"config": json.dumps(self.config)})

    @classmethod
    def load(cls, directory: str | Path, config: dict) -> ConvUpscaler:
        from safetensors.torch import load_file

        model = cls(**{k: int(config[k]) for k in ("channels", "scale", "width", "blocks")})
        model.load_state_dict(load_file(str(Path(directory) / UPSCALER_FILE)))
        return model.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------- LoRA files
def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """A LoRA safetensors file (or a folder holding exactly one / `lora.safetensors`) → (UNet state dict with
    no "unet." prefix, PEFT adapter metadata or None). Refuses anything but safetensors."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        check_safetensors_only(path)
        files = [path / LORA_FILE] if (path / LORA_FILE).is_file() else sorted(path.glob("*.safetensors"))
        if len(files) != 1:
            raise VariantError(f"{path}: expected one LoRA .safetensors file, found {len(files)}")
        path = files[0]
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        raise VariantError(f"{path}: LoRA weights must be an existing .safetensors file (pickles are refused)")
    state = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        raw_meta = f.metadata() or {}
    metadata = json.loads(raw_meta["lora_adapter_metadata"]) if "lora_adapter_metadata" in raw_meta else None
    if state and all(k.startswith("unet.") for k in state):
        state = {k[len("unet.") :]: v for k, v in state.items()}
    bad = [k for k in state if "lora_A" not in k and "lora_B" not in k and "lora.down" not in k and "lora.up" not in k]
    if not state or bad:
        raise VariantError(
            f"{path}: not a diffusers/PEFT UNet LoRA (unexpected keys such as "
            f"{(bad or ['<none>'])[0]!r}; kohya/A1111 files need converting first)"
        )
    return state, metadata


# ---------------------------------------------------------------------------------------------- variants
@dataclass
class Variant:
    name: str
    kind: str
    meta: dict  # variant.json (or what load_lora was given)
    path: Path | None = None
    pipeline: object | None = None  # finetune: its own ClipDecoderPipeline (shared VAE)
    upscaler: ConvUpscaler | None = None

    @property
    def default_scale(self) -> float | None:
        return float(self.meta.get("default_scale", 1.0)) if self.kind == "lora" else None

    def describe(self) -> dict:
        keep = ("description", "base", "lineage", "licence", "metrics", "training", "trainer")
        row = {"name": self.name, "kind": self.kind, **{k: self.meta[k] for k in keep if k in self.meta}}
        if self.kind == "lora":
            row["default_scale"] = self.default_scale
            row["rank"] = self.meta.get("rank")
        if self.kind == "upscaler":
            row["scale"] = int(self.meta["config"]["scale"])
        return row


def base_lineage(config: dict) -> dict:
    """Provenance of a space's own decoder, in the same shape as a variant's `lineage`."""
    prov = config.get("provenance", {})
    lineage = {
        "kind": "base",
        "base_model": prov.get("base_model"),
        "fine_tune_of": None,
        "loras": [],
        "licence": config.get("licence") or prov.get("licence") or "not declared",
    }
    lineage.update(config.get("lineage", {}))
    return lineage


class VariantSet:
    """The variants attached to one ClipDecoderPipeline. Callers serialise decodes (the space's lock)."""

    def __init__(self, pipeline, space_name: str, image_mode: str, lineage: dict | None = None):
        self.pipeline, self.space_name, self.image_mode = pipeline, space_name, image_mode
        self.lineage = lineage or {}  # the base decoder's (base_lineage)
        self.variants: dict[str, Variant] = {}
        self._lock = threading.Lock()  # adding variants vs listing them

    # ------------------------------------------------------------------ loading
    def load_dir(self, variants_dir: str | Path) -> list[str]:
        """Load every `variants/<name>/variant.json` (sorted by name); returns the names loaded."""
        variants_dir = Path(variants_dir)
        if not variants_dir.is_dir():
            return []
        loaded = []
        for d in sorted(p for p in variants_dir.iterdir() if (p / "variant.json").is_file()):
            meta = json.loads((d / "variant.json").read_text())
            kind = meta.get("kind")
            if kind == "lora":
                self.load_lora(d / LORA_FILE, d.name, meta=meta, directory=d)
            elif kind == "finetune":
                self.load_finetune(d, d.name, meta)
            elif kind == "upscaler":
                self.load_upscaler(d, d.name, meta)
            else:
                raise VariantError(f"{d}/variant.json: kind must be one of {', '.join(KINDS)}, got {kind!r}")
            loaded.append(d.name)
        return loaded

    def _check_new(self, name: str, meta: dict) -> None:
        if not NAME_RE.match(name) or name == BASE:
            raise VariantError(f"variant name {name!r} must match {NAME_RE.pattern} and not be {BASE!r}")
        if name in self.variants:
            raise VariantError(f"a variant named {name!r} is already loaded")
        base = meta.get("base", self.space_name)
        if base != self.space_name:
            raise VariantError(f"variant {name!r} was made for space {base!r}, not {self.space_name!r}")

    def load_lora(
        self,
        path: str | Path,
        name: str,
        scale: float = 1.0,
        meta: dict | None = None,
        directory: Path | None = None,
        state: dict | None = None,
    ) -> Variant:
        """Load a LoRA onto the base decoder as adapter `name`; `scale` is its default strength (per-decode
        strengths override it). A ClipDecoderPipeline takes a PEFT/diffusers UNet LoRA file; a Stable Diffusion
        pipeline (the real spaces) takes `state`, already read and checked (own_models.load_loras), in Kohya or
        diffusers/PEFT layout, onto its UNet and text encoder."""
        meta = dict(
            meta
            or {
                "base": self.space_name,
                "default_scale": scale,
                "lineage": {"kind": "lora", "lora_of": self.space_name, "file": Path(path).name},
            }
        )
        meta.setdefault("kind", "lora")
        with self._lock:
            self._check_new(name, meta)
            if _has_lora_loader(self.pipeline):
                if state is None:
                    raise VariantError(f"LoRA {name!r}: read it with own_models.load_loras")
                try:
                    self.pipeline.load_lora_weights(dict(state), adapter_name=name)
                except Exception as e:  # shapes or module names that do not fit this UNet / text encoder
                    raise VariantError(f"LoRA {name!r} does not fit this space's decoder: {e}") from None
                self.pipeline.disable_lora()  # off unless a decode asks for it
            else:
                state, metadata = read_lora_file(path)
                unet = self.pipeline.unet
                try:
                    unet.load_lora_adapter(state, adapter_name=name, prefix=None, metadata=metadata)
                except Exception as e:  # shapes or module names that do not fit this UNet
                    raise VariantError(f"LoRA {name!r} does not fit this space's decoder: {e}") from None
                unet.disable_adapters()  # off unless a decode asks for it
            ranks = {int(v.shape[0]) for k, v in state.items() if "lora_A" in k or "lora.down" in k or "lora_down" in k}
            meta.setdefault("rank", max(ranks) if ranks else None)
            variant = Variant(name, "lora", meta, directory)
            self.variants[name] = variant
        return variant

    def load_finetune(self, directory: str | Path, name: str, meta: dict) -> Variant:
        from diffusers import UNet2DConditionModel

        from .pipeline import ClipDecoderPipeline

        directory = Path(directory)
        check_safetensors_only(directory)
        with self._lock:
            self._check_new(name, meta)
            unet = UNet2DConditionModel.from_pretrained(directory / "unet", use_safetensors=True)
            base = self.pipeline.unet.config
            for key in ("in_channels", "sample_size", "encoder_hid_dim", "addition_embed_type"):
                if unet.config.get(key) != base.get(key):
                    raise VariantError(
                        f"fine-tune {name!r}: {key} is {unet.config.get(key)!r}, the base "
                        f"decoder's is {base.get(key)!r}"
                    )
            sched = type(self.pipeline.scheduler).from_config(self.pipeline.scheduler.config)
            pipe = ClipDecoderPipeline(
                unet=unet.eval().to(self.pipeline.device), scheduler=sched, vae=self.pipeline.vae
            )
            pipe.set_progress_bar_config(disable=True)
            variant = Variant(name, "finetune", meta, directory, pipeline=pipe)
            self.variants[name] = variant
        return variant

    def load_upscaler(self, directory: str | Path, name: str, meta: dict) -> Variant:
        directory = Path(directory)
        check_safetensors_only(directory)
        with self._lock:
            self._check_new(name, meta)
            model = ConvUpscaler.load(directory, meta["config"])
            want = 1 if self.image_mode == "L" else 3
            if model.config["channels"] != want:
                raise VariantError(
                    f"upscaler {name!r} takes {model.config['channels']}-channel images, this "
                    f"space makes {want}-channel ones"
                )
            variant = Variant(name, "upscaler", meta, directory, upscaler=model.to(self.pipeline.device))
            self.variants[name] = variant
        return variant

    # ------------------------------------------------------------------ use
    def describe(self) -> list[dict]:
        with self._lock:
            return [
                {**v.describe(), "lineage": lineage_of(self.space_name, self.lineage, v)}
                for v in self.variants.values()
            ]

    def resolve(
        self, variant: str | None, lora_scale: float | None, max_scale: float = 2.0
    ) -> tuple[str | None, float | None]:
        """A decode's (variant, strength) in canonical form: (None, None) for the base decoder; a LoRA's
        strength defaults to its `default_scale`. Raises VariantError for unknown names or bad strengths."""
        if variant in (None, "", BASE):
            if lora_scale is not None:
                raise VariantError("lora_scale needs a LoRA variant (the base decoder has no strength)")
            return None, None
        found = self.variants.get(variant)
        if found is None or found.kind == "upscaler":
            names = [n for n, v in self.variants.items() if v.kind != "upscaler"]
            raise VariantError(
                f"unknown decoder variant {variant!r}; choose {BASE!r}"
                + (f" or one of {', '.join(names)}" if names else " (this space has no variants)")
            )
        if found.kind != "lora":
            if lora_scale is not None:
                raise VariantError(f"lora_scale applies to LoRA variants; {variant!r} is a {found.kind}")
            return variant, None
        scale = found.default_scale if lora_scale is None else float(lora_scale)
        if not np.isfinite(scale) or not 0.0 <= scale <= max_scale:
            raise VariantError(f"lora_scale must be between 0 and {max_scale}")
        return variant, round(scale, 4)

    @contextmanager
    def pipeline_for(self, variant: str | None, lora_scale: float | None) -> Iterator[object]:
        """The pipeline that decodes `variant` (LoRA switched on at `lora_scale` for the duration)."""
        if variant in (None, BASE):
            yield self.pipeline
            return
        found = self.variants[variant]
        if found.kind == "finetune":
            yield found.pipeline
            return
        weight = found.default_scale if lora_scale is None else float(lora_scale)
        if _has_lora_loader(self.pipeline):  # UNet and text encoder together
            self.pipeline.enable_lora()
            self.pipeline.set_adapters([variant], adapter_weights=[weight])
            try:
                yield self.pipeline
            finally:
                self.pipeline.disable_lora()
            return
        unet = self.pipeline.unet
        unet.enable_adapters()
        unet.set_adapters([variant], weights=[weight])
        try:
            yield self.pipeline
        finally:
            unet.disable_adapters()

    def upscaler(self, name: str | None = None) -> Variant:
        ups = [v for v in self.variants.values() if v.kind == "upscaler"]
        if name is not None:
            ups = [v for v in ups if v.name == name]
        if not ups:
            raise VariantError(f"no upscaler {name!r}" if name else "this space has no upscaler")
        return ups[0]


def _has_lora_loader(pipeline) -> bool:
    """Stable Diffusion pipelines (diffusers' LoRA loader mixin) vs our ClipDecoderPipeline (UNet adapters only)."""
    return hasattr(pipeline, "load_lora_weights") and hasattr(pipeline, "enable_lora")


def lineage_of(space_name: str, base: dict, variant: Variant) -> dict:
    """A variant's lineage, completed from the base's: what it is a fine-tune/LoRA of, and the base model."""
    own = dict(variant.meta.get("lineage", {}))
    own.setdefault("kind", variant.kind)
    own.setdefault("base_model", base.get("base_model") or space_name)
    if variant.kind == "finetune":
        own.setdefault("fine_tune_of", space_name)
    if variant.kind == "lora":
        own.setdefault("loras", [variant.name])
    own.setdefault("licence", variant.meta.get("licence") or base.get("licence"))
    return own


__all__ = [
    "BASE",
    "KINDS",
    "ConvUpscaler",
    "Variant",
    "VariantError",
    "VariantSet",
    "base_lineage",
    "lineage_of",
    "read_lora_file",
]
