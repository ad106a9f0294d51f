"""The Space interface: what every model family offers to maps.

A space owns a CLIP-style encoder (text and images land in one vector space) and a decoder that turns a
CLIP *image* embedding (optionally with a VAE latent to start from) back into pixels. It knows nothing of
maps, storage or HTTP.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


@dataclass
class EncodedImages:
    """Encoder output for a batch of images."""

    vectors: np.ndarray  # (n, dim) float32, raw (unnormalised) CLIP image embeddings
    latents: np.ndarray | None  # (n, *latent_shape) float32 diffusion-space latents, or None


@dataclass
class PreparedImage:
    """One image as model-ready tensors, made on the CPU without touching a model (`Space.prepare_image`).

    Preparing is thread-safe and runs in worker threads outside the device queue, so decoding and resizing
    images overlaps the model work (bench/encode.py)."""

    clip: torch.Tensor  # (3, h, w) encoder input, after the encoder's own transform
    vae: torch.Tensor | None = None  # (c, h, w) in [-1, 1] at the decoder's size, for spaces with a VAE


@dataclass
class EncodedPrompts:
    """Encoder output for a batch of prompts.

    `vectors` (CLIP text embeddings) place a prompt on the map. `decode_vectors` are what the image decoder
    is conditioned on when a click lands near the prompt: the text vector moved across the modality gap, or,
    for spaces that generate an image per prompt, that image's CLIP image embedding.
    """

    vectors: np.ndarray  # (n, dim) raw CLIP text embeddings
    decode_vectors: np.ndarray  # (n, dim) image-side embeddings
    images: list[Image.Image] | None = None  # generated per prompt (shown as its thumbnail), if any
    latents: np.ndarray | None = None  # VAE latents of those images, if any


@dataclass
class ModalityStats:
    """Where each modality sits in CLIP space, measured on reference data when the space was built.

    CLIP puts text and images in two separate cones (the "modality gap"). Subtracting each modality's mean
    unit vector puts a prompt next to images of the same thing; adding the image mean back turns a text
    vector into something an image-conditioned decoder understands.
    """

    text_mean: np.ndarray  # (dim,) mean of unit text vectors
    image_mean: np.ndarray  # (dim,) mean of unit image vectors
    image_norm: float  # mean norm of raw image embeddings (decoders want unnormalised embeddings)

    def mean_for(self, modality: str) -> np.ndarray:
        return self.text_mean if modality == "text" else self.image_mean


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class DecodeRequest:
    vector: np.ndarray  # (dim,) raw image-side CLIP embedding
    seed: int
    latent: np.ndarray | None = None  # optional starting latent (diffusion space)
    strength: float = 1.0  # how much noise is put on `latent` (1.0 = ignore it)
    preview: bool = False  # a fast, rougher picture (fewer steps / TAESD) where the space offers one; else ignored
    variant: str | None = None  # decoder variant (LoRA / fine-tune name; None = the space's own decoder)
    lora_scale: float | None = None  # LoRA strength for a LoRA variant (None = its default)


class Space(ABC):
    """One model family: encode text, encode images, decode vectors."""

    name: str
    dim: int
    device: str
    stats: ModalityStats
    info: dict  # provenance and settings shown by GET /api/spaces

    @abstractmethod
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 raw CLIP text embeddings."""

    # True where encode_prompts generates an image per prompt (seconds on a GPU): maps then add the prompt at
    # once with its text vector moved across the gap and fill in the image later (app/maps/prompt_images.py).
    generates_prompt_images: bool = False

    def prompt_images(self, texts: Sequence[str]) -> tuple[list[Image.Image], EncodedImages]:
        """The images generated from prompts and their encodings (spaces with generates_prompt_images)."""
        raise NotImplementedError(f"space '{self.name}' does not generate prompt images")

    def encode_prompts(self, texts: Sequence[str]) -> EncodedPrompts:
        """Everything a prompt item needs. Default: the text vector moved across the modality gap."""
        vectors = self.encode_text(texts)
        return EncodedPrompts(vectors=vectors, decode_vectors=self.text_to_image_side(vectors))

    def encode_images(self, images: Sequence[Image.Image]) -> EncodedImages:
        """CLIP image embeddings and VAE latents for decoded PIL images."""
        return self.encode_prepared([self.prepare_image(im) for im in images])

    @abstractmethod
    def prepare_image(self, image: Image.Image) -> PreparedImage:
        """The CPU part of encoding one image (colour conversion, resizing, tensors); no model is touched."""

    def image_preparer(self) -> Callable[[Image.Image], PreparedImage] | None:
        """`prepare_image` as a picklable function that holds no model, so that another process can run it
        (the ingest's reader processes); None where a space has none (then it is prepared here)."""
        return None

    @abstractmethod
    def encode_prepared(self, prepared: Sequence[PreparedImage]) -> EncodedImages:
        """The model part of encoding: one batch through the image encoder and the VAE."""

    @abstractmethod
    def decode(self, requests: Sequence[DecodeRequest]) -> list[Image.Image]:
        """Pixels for each request, deterministic for the same request."""

    def decode_steps(
        self, requests: Sequence[DecodeRequest], batch_size: int = 16
    ) -> Iterator[list[Image.Image] | None]:
        """The pictures of many requests (a terrain tile's cells) as short slices of model work for the work
        queue (jobs.WorkQueue.run_steps): None after each slice, the images (in request order) last. Default:
        one request a slice through `decode`. Spaces that batch override it (ClipDecoderSpace: `batch_size`
        requests a model call, one denoising step a slice)."""
        images: list[Image.Image] = []
        for r in requests:
            images.extend(self.decode([r]))
            yield None
        yield images

    def text_to_image_side(self, text_vectors: np.ndarray) -> np.ndarray:
        """Move raw text embeddings across the modality gap so the image decoder can use them."""
        shifted = unit(unit(text_vectors) - self.stats.text_mean + self.stats.image_mean)
        return (shifted * self.stats.image_norm).astype(np.float32)

    def map_vectors(self, vectors: np.ndarray, modalities: Sequence[str]) -> np.ndarray:
        """Unit vectors used for projection: each modality centred on its own mean (closes the gap)."""
        u = unit(vectors)
        means = np.stack([self.stats.mean_for(m) for m in modalities]) if len(modalities) else 0.0
        return unit(u - means)

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "device": self.device, **self.info}

    # Decoder variants (LoRAs, fine-tunes, upscalers; see spaces/variants.py). Default: none.
    def variants(self) -> list[dict]:
        """Loaded variants with their kind and lineage."""
        return []

    def resolve_variant(
        self, variant: str | None, lora_scale: float | None, max_scale: float = 2.0
    ) -> tuple[str | None, float | None]:
        """Canonical (variant, lora_scale) of a decode: (None, None) is the space's own decoder. ValueError
        for a variant or strength this space cannot decode."""
        if variant in (None, "", "base") and lora_scale is None:
            return None, None
        raise ValueError(f"space '{self.name}' has no decoder variants")

    def decoder_identity(self, variant: str | None) -> str:
        """What, beyond the space's name and the variant's name, decides a decode's pixels (a user's checkpoint
        or LoRA file, see own_models.py): part of decode cache keys. '' for a space's default weights."""
        return ""

    def upscale(self, image: Image.Image, upscaler: str | None = None) -> Image.Image:
        """A larger picture of a decoded image through the space's upscaler. ValueError when it has none."""
        raise ValueError(f"space '{self.name}' has no upscaler")
