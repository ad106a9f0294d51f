"""The stage functions of an ingest, shared by the local pipeline (local.py) and the Ray one (ray_pipeline.py):

read_image (CPU: one read of the file -> content hash, checked, decoded, reduced picture + thumbnail)
read_images (the same for a chunk of records, in a worker process: see init_reader)
encode_images (model: prepared pictures -> CLIP vectors and VAE latents)
image_items / text_items / vector_items (-> NewItem rows for the store)
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import imaging
from ..maps.store import NewItem
from ..settings import Settings
from ..spaces.base import PreparedImage, Space
from .sources import Record, Skip


@dataclass
class Decoded:
    """A record's picture after the CPU stage: RGB on white for the model, thumbnail PNG with its alpha."""

    record: Record
    image: Image.Image | None  # RGB, at most ingest_max_side pixels a side (None once prepared)
    thumbnail_png: bytes
    content_hash: str
    # The model's input (PreparedImage's tensors as arrays) when a reader made it: numpy arrays pickle as plain
    # bytes, torch tensors leaving a process each take a shared-memory file and a socket round trip.
    prepared: tuple[np.ndarray, np.ndarray | None] | None = None

    def model_input(self) -> Image.Image | PreparedImage:
        if self.prepared is None:
            return self.image
        import torch

        clip, vae = self.prepared
        return PreparedImage(torch.from_numpy(clip), None if vae is None else torch.from_numpy(vae))


def content_hash(record: Record, data: bytes | None = None) -> str:
    """What makes an item the same on a rerun: its identity in the source (relative path / row content) and
    the bytes of its picture. A changed file is a new item; a moved collection root is not."""
    h = hashlib.sha256(record.identity.encode())
    if data is not None:
        h.update(b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def read_image(record: Record, settings: Settings, present: frozenset | set = frozenset()) -> Decoded | Skip | None:
    """Read, check and decode one picture; any problem is a Skip that names the file and says why. None when
    the map already has it (`present` content hashes): a rerun reads such files but decodes nothing."""
    path = record.image_path
    try:
        size = path.stat().st_size
        if size > settings.max_ingest_file_bytes:
            return Skip(
                record.name,
                f"file is {size:,} bytes; the limit is {settings.max_ingest_file_bytes:,} "
                "(LATENTMAP_MAX_INGEST_FILE_BYTES)",
            )
        data = path.read_bytes()
    except FileNotFoundError:
        return Skip(record.name, "file not found")
    except OSError as e:
        return Skip(record.name, f"not readable ({e.strerror or e})")
    digest = content_hash(record, data)
    if digest in present:
        return None
    try:
        # JPEGs big enough are decoded at a reduced scale (never below ingest_max_side): far less work.
        picture = imaging.open_image(data, settings.max_image_pixels, keep_alpha=True, draft=settings.ingest_max_side)
    except imaging.ImageRejected as e:
        return Skip(record.name, str(e))
    return decoded(record, picture, digest, settings)


# A worker process's settings and the map's content hashes, set once per process (not sent with every task).
_reader: dict = {}


def init_reader(settings: Settings, present: frozenset, prepare: Callable | None = None) -> None:
    """Initializer of the local pipeline's reader processes. `prepare`: the space's image_preparer (then the
    model's input is made here too, and the picture itself is not sent back)."""
    _reader.update(settings=settings, present=present, prepare=prepare)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    if prepare is not None:
        import torch

        torch.set_num_threads(1)  # one process per core already


def _exit_with_parent(parent: int) -> None:
    """A build killed with -9 cannot stop its readers, and forked ones never see their task queue close: each
    reader leaves once its parent is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def read_images(records: Sequence[Record]) -> list[Decoded | Skip | None]:
    """read_prepared for each record, in a reader process (see init_reader)."""
    return [read_prepared(r, _reader["settings"], _reader["present"], _reader["prepare"]) for r in records]


def read_prepared(
    record: Record, settings: Settings, present: frozenset | set, prepare: Callable | None
) -> Decoded | Skip | None:
    """read_image, then with `prepare` (the space's image_preparer) the model's input made from the picture,
    which is dropped: what leaves a worker is the small prepared input, not the decoded picture."""
    got = read_image(record, settings, present)
    if prepare is not None and isinstance(got, Decoded):
        ready = prepare(got.image)
        got.prepared = (ready.clip.numpy(), None if ready.vae is None else ready.vae.numpy())
        got.image = None
    return got


def decoded(record: Record, picture: Image.Image, digest: str, settings: Settings) -> Decoded:
    side = settings.ingest_max_side
    if max(picture.size) > side:  # model inputs are far smaller: later stages need not carry megapixels
        scale = side / max(picture.size)
        target = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)  # reduce() first: cheaper
    return Decoded(record, imaging.on_white(picture), imaging.thumbnail_png(picture, settings.thumbnail_size), digest)


def encode_images(
    space: Space,
    images: Sequence[Image.Image | PreparedImage],
    batch_size: int,
    prepare_map: Callable = map,
    run: Callable = lambda f: f(),
) -> tuple[np.ndarray, list]:
    """CLIP vectors (n, dim) and VAE latents (or Nones) of RGB pictures (or of pictures already prepared).
    `prepare_map` runs the CPU preparation; `run` wraps each model call (the work queue)."""
    vectors, latents = [], []

    def prepare(im):
        return im if isinstance(im, PreparedImage) else space.prepare_image(im)

    prepared = iter(prepare_map(prepare, images))
    for start in range(0, len(images), batch_size):
        ready = [next(prepared) for _ in range(min(batch_size, len(images) - start))]
        encoded = run(lambda ready=ready: space.encode_prepared(ready))
        vectors.append(np.asarray(encoded.vectors, np.float32))
        latents.extend([None] * len(ready) if encoded.latents is None else list(encoded.latents))
    return (np.concatenate(vectors) if vectors else np.zeros((0, space.dim), np.float32)), latents


def image_items(batch: Sequence[Decoded], vectors: np.ndarray, latents: Sequence) -> list[NewItem]:
    return [
        NewItem(
            kind="image",
            label=d.record.label,
            vector=vectors[i],
            decode_vector=vectors[i],
            latent=latents[i],
            thumbnail_png=d.thumbnail_png,
            content_hash=d.content_hash,
            meta=d.record.meta or None,
        )
        for i, d in enumerate(batch)
    ]


def text_items(
    space: Space, records: Sequence[Record], run: Callable = lambda f: f(), thumbnail_size: int = 128
) -> list[NewItem]:
    encoded = run(lambda: space.encode_prompts([r.text for r in records]))
    return [
        NewItem(
            kind="text",
            label=r.label,
            vector=encoded.vectors[i],
            decode_vector=encoded.decode_vectors[i],
            latent=None if encoded.latents is None else encoded.latents[i],
            thumbnail_png=None if encoded.images is None else imaging.thumbnail_png(encoded.images[i], thumbnail_size),
            content_hash=content_hash(r),
            meta=r.meta or None,
        )
        for i, r in enumerate(records)
    ]


def vector_items(records: Sequence[Record], thumbnails: Sequence[Decoded | None] | None = None) -> list[NewItem]:
    """Precomputed image vectors: no model call. With a picture per row its thumbnail is kept."""
    thumbs = thumbnails or [None] * len(records)
    return [
        NewItem(
            kind="image",
            label=r.label,
            vector=r.vector,
            decode_vector=r.vector,
            thumbnail_png=None if t is None else t.thumbnail_png,
            content_hash=content_hash(r) if t is None else t.content_hash,
            meta=r.meta or None,
        )
        for r, t in zip(records, thumbs)
    ]
