"""Rules every model load follows: safetensors only, and one device choice."""

from __future__ import annotations

from pathlib import Path

import torch

# Formats that can run code when loaded (pickle underneath). We refuse them rather than skip them, so a
# user who points us at such a folder learns why instead of getting random weights.
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")


class UnsafeWeightsError(ValueError):
    pass


def check_safetensors_only(path: str | Path) -> None:
    """Raise if a model folder holds pickle-based weight files."""
    path = Path(path)
    bad = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if bad:
        raise UnsafeWeightsError(
            f"{path} holds pickle-based weight files ({', '.join(bad[:5])}); latentmap loads safetensors only. "
            "Convert them to .safetensors (e.g. save_pretrained(..., safe_serialization=True)) and remove the "
            "pickles."
        )


def choose_device(requested: str = "auto") -> str:
    """'cuda' when available (or asked for), else 'cpu'. Decided once per space."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was requested but CUDA is not available on this machine")
    return requested
