"""The "Digits" demo map, created on first start of the digits space, and the UMAP warm-up."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from .service import MapService

log = logging.getLogger("latentmap")

DEMO_TITLE = "Digits"
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def demo_prompts() -> list[str]:
    return DIGIT_WORDS + [f"a handwritten {w}" for w in DIGIT_WORDS] + [f"the digit {d}" for d in range(10)]


def digit_pil_images() -> tuple[list[Image.Image], np.ndarray]:
    from ..spaces.digits_train import digit_images

    images, labels = digit_images()[:2]
    return images, labels


def ensure_demo_map(service: MapService) -> str | None:
    """Create the Digits map when the digits space runs and no map exists yet."""
    if service.space.name != "digits" or service.store.list_maps():
        return None
    log.info("first start: building the Digits demo map (1,797 images + %d prompts)", len(demo_prompts()))
    record, _ = service.create_map(DEMO_TITLE)
    # Prompts first (a small exact PCA map), images placed through it, then a single UMAP fit of everything.
    service.add_prompts(record.id, demo_prompts())
    images, labels = digit_pil_images()
    service.add_pil_images(record.id, images, [f"digit {int(l)} #{i}" for i, l in enumerate(labels)])
    service.refit(record.id)
    return record.id


def warm_umap() -> None:
    try:
        import umap

        data = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
        umap.UMAP(n_neighbors=5, metric="cosine", n_epochs=5, random_state=0).fit_transform(data)
    except Exception:  # warm-up is an optimisation only
        log.exception("UMAP warm-up failed")
