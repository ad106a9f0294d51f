"""Meaning tests on the committed, trained `digits` space (app/spaces/weights/digits).

Everything is measured on the held-out 30% test split of load_digits, which the space never saw in training.
Decoded images are judged by a LogisticRegression trained here on the train split's 8x8 digits.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from app.spaces.base import DecodeRequest, unit
from app.spaces.clip_decoder import ClipDecoderSpace
from app.spaces.digits_data import (
    CANONICAL_PROMPTS,
    captions_for,
    digit_images,
    image_to_digit,
    mean_image_vectors,
)

SPACE_DIR = Path(__file__).resolve().parents[1] / "app" / "spaces" / "weights" / "digits"
DIGITS = np.arange(10)


@pytest.fixture(scope="module")
def space():
    torch.set_num_threads(1)  # a shared 2-core machine: two OpenMP threads under contention are far slower
    return ClipDecoderSpace.from_pretrained(SPACE_DIR, device="cpu")


@pytest.fixture(scope="module")
def data():
    images, labels, train_idx, test_idx = digit_images()
    return images, labels, train_idx, test_idx


@pytest.fixture(scope="module")
def classifier(data):
    from sklearn.linear_model import LogisticRegression

    images, labels, train_idx, _ = data
    with threadpool_limits(1):  # BLAS threads on a busy 2-core machine: 0.05 s -> 15-60 s
        return LogisticRegression(max_iter=1000).fit(_features([images[i] for i in train_idx]), labels[train_idx])


@pytest.fixture(scope="module")
def test_vectors(space, data):
    images, labels, _, test_idx = data
    return space.encode_images([images[i] for i in test_idx]).vectors, labels[test_idx]


@pytest.fixture(scope="module")
def mean_vectors(test_vectors):
    vectors, labels = test_vectors
    return mean_image_vectors(vectors, labels)


def _decode(space, vectors, seed):
    return space.decode([DecodeRequest(vector=v, seed=seed) for v in vectors])


def _features(images):
    """Images -> 8x8 in load_digits' 0..16 range (image_to_digit), scaled by 1/16 for the classifier."""
    return np.stack([image_to_digit(im) for im in images]) / 16.0


def _predict(classifier, images):
    with threadpool_limits(1):
        return classifier.predict(_features(images))


@pytest.fixture(scope="module")
def mean_decodes(space, mean_vectors):
    return _decode(space, mean_vectors, seed=0)


def test_space_layout(space):
    assert space.name == "digits"
    assert space.image_mode == "L"
    assert space.dim == 64
    assert space.pipeline.vae.config.in_channels == 1
    assert "load_digits" in space.info["provenance"]["data"]


def test_split_is_stratified_and_disjoint(data):
    _, labels, train_idx, test_idx = data
    assert len(set(train_idx) & set(test_idx)) == 0
    assert len(train_idx) + len(test_idx) == len(labels) == 1797
    assert abs(len(test_idx) / len(labels) - 0.3) < 0.01
    assert all(np.sum(labels[test_idx] == d) >= 50 for d in DIGITS)


def test_classifier_judge_is_reliable(classifier, data):
    images, labels, _, test_idx = data
    assert (_predict(classifier, [images[i] for i in test_idx]) == labels[test_idx]).mean() >= 0.9


def test_zero_shot_classification_of_held_out_digits(space, test_vectors):
    vectors, labels = test_vectors
    captions = [(d, c) for d in DIGITS for c in captions_for(d)]
    text = space.encode_text([c for _, c in captions])
    caption_label = np.array([d for d, _ in captions])
    predicted = caption_label[(unit(vectors) @ unit(text).T).argmax(1)]
    accuracy = (predicted == labels).mean()
    assert accuracy >= 0.85, f"zero-shot accuracy {accuracy:.3f}"


def test_decoding_mean_image_embedding_gives_that_digit(classifier, mean_decodes):
    assert all(im.mode == "L" and im.size == (16, 16) for im in mean_decodes)
    correct = int((_predict(classifier, mean_decodes) == DIGITS).sum())
    assert correct >= 8, f"{correct}/10 decodes of mean image embeddings recognised"


def test_decoding_caption_moved_across_modality_gap(space, classifier):
    vectors = space.text_to_image_side(space.encode_text(CANONICAL_PROMPTS))
    correct = int((_predict(classifier, _decode(space, vectors, seed=0)) == DIGITS).sum())
    assert correct >= 7, f"{correct}/10 decodes of text-side prompts recognised"


def test_decoding_is_deterministic_per_seed(space, classifier, mean_vectors, mean_decodes):
    again = _decode(space, mean_vectors, seed=0)
    for a, b in zip(mean_decodes, again):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    other = _decode(space, mean_vectors, seed=1)
    for a, b in zip(mean_decodes, other):
        assert not np.array_equal(np.asarray(a), np.asarray(b))
    correct = int((_predict(classifier, other) == DIGITS).sum())
    assert correct >= 7, f"{correct}/10 decodes with another seed recognised"
