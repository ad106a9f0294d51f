"""The `digits` space's data: scikit-learn's `load_digits` as the space's 16x16 images, its fixed train/test
split, the captions it was trained on, and the probes the meaning tests and the trainers share.

Data: `sklearn.datasets.load_digits()` (1,797 handwritten digits, 8x8, values 0..16, white ink on black),
upsampled to 16x16 "L" images. A 70/30 stratified split (random_state=0); only the 70% train split is used
for training (training/digits.py), the 30% test split stays held out. The demo map is built from these images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .base import unit

PIXELS = 16  # the space's image size (8x8 digits upsampled bicubic)

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CANONICAL_PROMPTS = list(DIGIT_NAMES)  # the prompt for digit d is CANONICAL_PROMPTS[d]
CAPTION_TEMPLATES = [
    "{name}",
    "{digit}",
    "the digit {digit}",
    "a handwritten {name}",
    "number {name}",
    "the number {name}",
    "a {name}",
    "digit {digit}",
]


def captions_for(digit: int) -> list[str]:
    """Every training caption for a digit ("seven", "7", "the digit 7", "a handwritten seven", ...)."""
    return [t.format(name=DIGIT_NAMES[digit], digit=digit) for t in CAPTION_TEMPLATES]


def digit_to_image(values: np.ndarray, pixels: int = PIXELS) -> Image.Image:
    """An 8x8 array of 0..16 values -> an "L" PIL image of pixels x pixels (bicubic upsampling)."""
    arr = np.clip(np.asarray(values, dtype=np.float32).reshape(8, 8) * (255.0 / 16.0), 0, 255)
    return Image.fromarray(arr.round().astype(np.uint8), mode="L").resize((pixels, pixels), Image.Resampling.BICUBIC)


def image_to_digit(image: Image.Image) -> np.ndarray:
    """The inverse of `digit_to_image`: any image -> 64 values in 0..16 (load_digits' feature layout)."""
    im = image.convert("L").resize((8, 8), Image.Resampling.BOX)
    return (np.asarray(im, dtype=np.float32) * (16.0 / 255.0)).reshape(64)


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 70/30 stratified train/test split of load_digits (random_state=0)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=0.3, stratify=labels, random_state=0)
    return np.sort(train_idx), np.sort(test_idx)


def digit_images(pixels: int = PIXELS) -> tuple[list[Image.Image], np.ndarray, np.ndarray, np.ndarray]:
    """(images as "L" PIL images at the space's pixel size, labels, train indices, test indices)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    images = [digit_to_image(x, pixels) for x in digits.data]
    train_idx, test_idx = split_indices(labels)
    return images, labels, train_idx, test_idx


def mean_image_vectors(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per digit: the direction of the mean raw image embedding, at the digit's mean embedding norm."""
    out = []
    for d in range(10):
        v = vectors[labels == d]
        out.append(unit(v.mean(0)) * np.linalg.norm(v, axis=1).mean())
    return np.stack(out).astype(np.float32)
