"""The "Digits" demo map, created on first start of the digits space, and the UMAP warm-up."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from .service import MapService

log = logging.getLogger("latentmap")

DEMO_TITLE = "Digits"
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def demo_prompts() -> list[str]:
    return DIGIT_WORDS + [f"a handwritten {w}" for w in DIGIT_WORDS] + [f"the digit {d}" for d in range(10)]


def digit_pil_images() -> tuple[list[Image.Image], np.ndarray]:
    from ..spaces.digits_data import digit_images

    images, labels = digit_images()[:2]
    return images, labels


def ensure_demo_map(service: MapService) -> str | None:
    """Create the Digits map when the digits space runs and no map exists yet."""
    if service.space.name != "digits" or service.store.list_maps():
        return None
    log.info("first start: building the Digits demo map (1,797 images + %d prompts)", len(demo_prompts()))
    record, key = service.create_map(DEMO_TITLE)
    images, labels = digit_pil_images()
    # Images first and prompts last, so prompts are drawn on top; one UMAP fit of everything.
    items = service.image_items(images, [f"digit {int(d)} #{i}" for i, d in enumerate(labels)])
    items += service.prompt_items(demo_prompts())
    service.add_items(record.id, items)
    service.store.save_tour(record.id, "What is a latent space?", digits_tour(service, record.id))
    link_file = Path(service.store.data_dir) / "digits-edit-link.txt"
    link_file.write_text(f"/m/{record.id}#key={key}\n")
    link_file.chmod(0o600)
    # The key itself is not logged: only where the owner finds it.
    log.info("Digits map ready; its edit link (to add prompts and images) is in %s", link_file)
    return record.id


def digits_tour(service: MapService, map_id: str) -> list[dict]:
    """Five steps through the Digits map, placed from where the digits actually landed."""
    arrays = service.store.get_arrays(map_id)
    labels = np.array([int(label.split()[1]) if label.startswith("digit ") else -1 for label in arrays.labels])
    centre = {d: arrays.xy[labels == d].mean(0).round(4).tolist() for d in range(10)}
    seven = arrays.xy[arrays.labels.index("seven")].round(4).tolist()
    between = ((np.array(centre[1]) + np.array(centre[7])) / 2).round(4).tolist()
    return [
        {
            "caption": "Every dot is a handwritten digit or a prompt, placed by what the model sees in it. "
            "Digits that look alike land together: ten islands, one per digit.",
            "view": [0.0, 0.0, 1.0],
            "at": None,
            "seed": None,
            "path": None,
        },
        {
            "caption": "The sea between islands is part of the space too. This spot lies halfway between the ones "
            "and the sevens: the decoder draws what lives there.",
            "view": [*between, 2.5],
            "at": between,
            "seed": 0,
            "path": None,
        },
        {
            "caption": "A walk from the ones to the sevens: each frame is decoded from a point along the way.",
            "view": [*between, 1.5],
            "at": None,
            "seed": 0,
            "path": [centre[1], centre[7]],
        },
        {
            "caption": 'The prompt "seven" is text, not a picture, yet it lands among the images of sevens: '
            "text and images share one space.",
            "view": [*seven, 3.0],
            "at": seven,
            "seed": 0,
            "path": None,
        },
        {
            "caption": "Same point, another seed: the digit stays a seven, the handwriting changes. A point is an "
            "idea; the seed picks one drawing of it.",
            "view": [*seven, 3.0],
            "at": seven,
            "seed": 1,
            "path": None,
        },
    ]


def warm_umap(settings=None) -> None:
    """Compile the production UMAP path (numba) once, off the request path."""
    try:
        from . import projection

        data = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        fitted = projection.fit(data[:48], umap_min_items=20, revision=0, settings=settings)
        projection.place(data[48:], data[:48], fitted.xy, fitted.state, k=8, refine_epochs=10)
    except Exception:  # warm-up is an optimisation only
        log.exception("UMAP warm-up failed")
