"""Space names → how to load them. `--space` takes a name below or a local space directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..settings import DIGITS_SPACE_DIR, Settings
from .base import Space


@dataclass(frozen=True)
class SpaceEntry:
    name: str
    description: str
    available: Callable[[Settings], tuple[bool, str]]  # (usable here?, why not)
    load: Callable[[Settings, bool], Space]  # (settings, with the decoder's variants?)


def _load_dir(path: Path, settings: Settings, variants: bool) -> Space:
    from .clip_decoder import ClipDecoderSpace
    from .loading import choose_device

    return ClipDecoderSpace.from_pretrained(path, device=choose_device(settings.device), variants=variants)


def _tiny_random_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "spaces" / "tiny-random"


def _load_tiny_random(settings: Settings, variants: bool) -> Space:
    from . import tiny_random

    path = _tiny_random_dir(settings)
    if not (path / "space.json").is_file():
        tiny_random.build(path)  # deterministic: the same seed always writes the same weights
    return _load_dir(path, settings, variants)


def _digits_available(settings: Settings) -> tuple[bool, str]:
    if (DIGITS_SPACE_DIR / "space.json").is_file():
        return True, ""
    return False, f"weights missing at {DIGITS_SPACE_DIR}; run `latentmap train-digits`"


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _real_available(name: str) -> Callable[[Settings], tuple[bool, str]]:
    """A ViT-H space runs where its weights are in the cache (or local folders) and a CUDA GPU is present
    (or `--device cpu` explicitly asks for a very slow CPU run)."""

    def check(settings: Settings) -> tuple[bool, str]:
        from . import hub

        reasons = []
        if not settings.device.startswith("cpu") and not _cuda_available():
            reasons.append("no CUDA GPU on this machine (--device cpu forces a very slow CPU run)")
        # A user's --base replaces the base pipeline; with --checkpoint (turbo-h) its folder is optional.
        options = {
            k: v
            for k, v in (("base", settings.base or None), ("checkpoint", bool(settings.checkpoint)))
            if v and resolve_name(settings.space) == name
        }
        try:
            problems = hub.missing(name, **options)
        except Exception as e:  # a broken override must not break GET /api/spaces
            problems = [str(e)]
        if problems:
            reasons.append(f"weights missing: {'; '.join(problems)}; run `{hub.download_command(name)}`")
        return (not reasons), "; ".join(reasons)

    return check


def _load_real(name: str) -> Callable[[Settings, bool], Space]:
    def load(settings: Settings, variants: bool) -> Space:  # their variants are the --lora ones, in settings
        if name == "unclip-h":
            from .unclip import load as load_unclip

            return load_unclip(settings)
        from .turbo import load as load_turbo

        return load_turbo(settings)

    return load


SPACES: dict[str, SpaceEntry] = {
    "digits": SpaceEntry(
        "digits",
        "Handwritten digits (scikit-learn), trained by latentmap; runs on any CPU, offline.",
        _digits_available,
        lambda s, variants: _load_dir(DIGITS_SPACE_DIR, s, variants),
    ),
    "tiny-random": SpaceEntry(
        "tiny-random",
        "Tiny random-weight models of the real classes; for tests, meaningless pictures.",
        lambda s: (True, ""),
        _load_tiny_random,
    ),
    "unclip-h": SpaceEntry(
        "unclip-h",
        "Quality: Stable unCLIP 2.1 (H) decodes open_clip ViT-H-14 image embeddings (CUDA GPU).",
        _real_available("unclip-h"),
        _load_real("unclip-h"),
    ),
    "turbo-h": SpaceEntry(
        "turbo-h",
        "Speed: SD 1.5 + IP-Adapter (ViT-H) + LCM-LoRA, 4 steps, TAESD; same ViT-H map as unclip-h (CUDA GPU).",
        _real_available("turbo-h"),
        _load_real("turbo-h"),
    ),
}


def resolve_name(requested: str) -> str:
    """'auto' → the default space for this machine: unclip-h with a CUDA GPU and its weights present, else digits."""
    if requested == "auto":
        if _cuda_available():
            from . import hub

            try:
                if not hub.missing("unclip-h"):
                    return "unclip-h"
            except Exception:
                pass
        return "digits"
    return requested


def space_settings(settings: Settings) -> Settings:
    """`settings` with a space file (`--space ./myspace.toml`, own_models.read_space_file) read into them."""
    from . import own_models

    if own_models.is_space_file(settings.space):
        return own_models.apply_space_file(settings, settings.space)
    return settings


def load_space(settings: Settings, *, decoder_variants: bool = True) -> Space:
    """The space `settings.space` names: a name below, a space directory, or a space file (.toml / .json) naming
    one of them with the user's base, checkpoint and LoRAs; --base/--checkpoint/--lora apply to every form.

    `decoder_variants=False` leaves out the decoder's variants (a space directory's variants/, --lora): for a
    process that only encodes (a Ray encoder actor). Variants never change encoding (spaces/variants.py);
    loading them is 0.4 s of a new process's 5.1 s with the digits space, more with big LoRAs or fine-tunes
    (each fine-tune is a UNet of its own)."""
    from . import own_models

    settings = space_settings(settings)
    if not decoder_variants:
        settings = replace(settings, loras="")
    name = resolve_name(settings.space)
    if name in SPACES:
        if (settings.base or settings.checkpoint) and name not in own_models.SPACE_FAMILY:
            raise ValueError(
                f"--base/--checkpoint replace the base weights of {', '.join(own_models.SPACE_FAMILY)}; "
                f"space '{name}' has its own decoder (LoRAs load with --lora)"
            )
        ok, why = SPACES[name].available(settings)
        if not ok:
            raise RuntimeError(f"space '{name}' is not available: {why}")
        space = SPACES[name].load(settings, decoder_variants)
    elif Path(name).is_dir():
        if settings.base or settings.checkpoint:
            raise ValueError(
                f"--base/--checkpoint replace the base weights of {', '.join(own_models.SPACE_FAMILY)}; "
                f"the space directory {name} has its own decoder (LoRAs load with --lora)"
            )
        space = _load_dir(Path(name), settings, decoder_variants)
    else:
        raise ValueError(
            f"unknown space '{name}': choose one of {', '.join(SPACES)}, give a space directory or a "
            "space file (.toml / .json)"
        )
    if settings.loras and space.name not in own_models.SPACE_FAMILY:
        _load_clip_decoder_loras(space, own_models.choice_from_settings(settings).loras)
    return space


def _load_clip_decoder_loras(space: Space, loras) -> None:
    """--lora on a ClipDecoderSpace (digits, a space directory): PEFT/diffusers UNet LoRA files."""
    from . import own_models

    for choice in loras:
        path = own_models.resolve_file(choice.source, "LoRA")
        name = choice.name or own_models.variant_name(path, {v["name"] for v in space.variants()})
        space.load_lora(path, name, scale=choice.strength)


def describe_spaces(settings: Settings, loaded: Space | None) -> list[dict]:
    try:
        settings = space_settings(settings)
    except ValueError:  # a broken space file must not break GET /api/spaces (the server loaded without it)
        pass
    rows = []
    for entry in SPACES.values():
        ok, why = entry.available(settings)
        row = {
            "name": entry.name,
            "loaded": loaded is not None and loaded.name == entry.name,
            "available": ok,
            "reason": why or None,
            "description": entry.description,
        }
        if row["loaded"]:
            row.update({"dim": loaded.dim, "device": loaded.device, "info": loaded.info})
        rows.append(row)
    if loaded is not None and loaded.name not in SPACES:
        rows.append(
            {
                "name": loaded.name,
                "loaded": True,
                "available": True,
                "reason": None,
                "description": "loaded from a local space directory",
                "dim": loaded.dim,
                "device": loaded.device,
                "info": loaded.info,
            }
        )
    return rows
