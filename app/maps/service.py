"""Map operations: add prompts and images, decode a 2D point, refit. Orchestrates store, projection and the
space; every model call goes through the work queue."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import imaging
from ..errors import Conflict, Rejected
from ..jobs import WorkQueue
from ..settings import Settings
from ..spaces.base import DecodeRequest, Space, unit
from . import decode_keys, projection
from .decode_keys import MapDecodeState, SpotDecode, check_seed
from .prompt_images import PromptImageWorker
from .store import ItemRecord, MapArrays, MapRecord, NewItem, NotFound, Store, check_id

MAP_VECTOR_BLOCK = 65_536  # rows of projection vectors worked out at a time (MapService._map_vectors)


class SpaceMismatch(Conflict):
    """The map was made with another space than the one this server runs."""


@dataclass
class Upload:
    filename: str
    data: bytes


@dataclass
class DecodeResult:
    png: bytes
    cached: bool
    key: str


class MapService:
    def __init__(self, store: Store, space: Space, settings: Settings, queue: WorkQueue):
        self.store, self.space, self.settings, self.queue = store, space, settings, queue
        # Adding and refitting read positions, then write new ones: one map change at a time.
        self._write_lock = threading.Lock()
        self._map_vector_cache: dict[str, tuple[MapArrays, np.ndarray]] = {}  # per map, dropped with its arrays
        self._reference_cache: dict = {}  # bulk builds: the items new ones are placed against (_reference)
        # CPU image work (PIL releases the GIL) runs here, beside the model call in the queue.
        self.image_workers = settings.image_workers or min(8, os.cpu_count() or 1)
        self._image_pool = ThreadPoolExecutor(self.image_workers, thread_name_prefix="images")
        self.prompt_images = None  # generates prompt images after the prompts are on the map (prompt_images.py)
        if space.generates_prompt_images and settings.defer_prompt_images:
            self.prompt_images = PromptImageWorker(store, space, queue, settings.thumbnail_size)

    def close(self) -> None:
        if self.prompt_images is not None:
            self.prompt_images.close()
        self._image_pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ maps
    def create_map(self, title: str) -> tuple[MapRecord, str]:
        title = title.strip()
        if not title:
            raise Rejected("title must not be empty")
        if len(title) > self.settings.max_title_chars:
            raise Rejected(f"title is longer than {self.settings.max_title_chars} characters")
        return self.store.create_map(title, self.space.name)

    def delete_map(self, map_id: str) -> None:
        """The map with its items, thumbnails, tours, columns and cached decodes (Store.delete_map), and what
        this process remembers of it. Live presentations and quiz rounds are ended by the caller (Classroom)."""
        self.store.get_map(map_id)  # NotFound for a map that is not there
        with self._write_lock:  # not in the middle of an add or a refit of this map
            self.store.delete_map(map_id)
            self._map_vector_cache.pop(map_id, None)

    def usable_map(self, map_id: str) -> MapRecord:
        """The map, if this server's space can change or decode it (SpaceMismatch otherwise)."""
        record = self.store.get_map(map_id)
        if record.space != self.space.name:
            raise SpaceMismatch(
                f"map {map_id} was made with space '{record.space}', but this server runs "
                f"'{self.space.name}'; start it with --space {record.space}"
            )
        return record

    # ------------------------------------------------------------------ adding
    def add_prompts(
        self, map_id: str, prompts: Sequence[str], gone: Callable[[], bool] | None = None
    ) -> list[ItemRecord]:
        self.usable_map(map_id)
        cleaned = [p.strip() for p in prompts]
        if not cleaned or any(not p for p in cleaned):
            raise Rejected("prompts must be a non-empty list of non-empty strings")
        if len(cleaned) > self.settings.max_prompts_per_request:
            raise Rejected(f"at most {self.settings.max_prompts_per_request} prompts per request")
        too_long = [p for p in cleaned if len(p) > self.settings.max_prompt_chars]
        if too_long:
            raise Rejected(
                f"prompts must be at most {self.settings.max_prompt_chars} characters ({len(too_long)} are longer)"
            )
        if self.prompt_images is None:
            return self._insert(map_id, self.prompt_items(cleaned, gone))
        # On the map now, from the text vector; the generated image (thumbnail, decode vector) comes later.
        vectors = self.queue.run(lambda: self.space.encode_text(cleaned), gone)
        provisional = self.space.text_to_image_side(vectors)
        records = self._insert(
            map_id,
            [
                NewItem(kind="text", label=p, vector=vectors[i], decode_vector=provisional[i], pending_image=True)
                for i, p in enumerate(cleaned)
            ],
        )
        self.prompt_images.wake()
        return records

    def prompt_items(self, prompts: Sequence[str], gone: Callable[[], bool] | None = None) -> list[NewItem]:
        encoded = self.queue.run(lambda: self.space.encode_prompts(prompts), gone)
        size = self.settings.thumbnail_size
        thumbnails = (
            [None] * len(prompts)
            if encoded.images is None
            else list(self._image_pool.map(lambda im: imaging.thumbnail_png(im, size), encoded.images))
        )
        return [
            NewItem(
                kind="text",
                label=p,
                vector=encoded.vectors[i],
                decode_vector=encoded.decode_vectors[i],
                latent=None if encoded.latents is None else encoded.latents[i],
                thumbnail_png=thumbnails[i],
            )
            for i, p in enumerate(prompts)
        ]

    def add_images(
        self, map_id: str, uploads: Sequence[Upload], gone: Callable[[], bool] | None = None
    ) -> list[ItemRecord]:
        """All-or-nothing: one unreadable file rejects the request (naming it) and nothing is added.

        Files are decoded and encoded in chunks of at most `max_upload_pixels_in_flight` decoded pixels (one
        file at least), and a chunk's pictures are dropped once encoded: a request's peak memory is bounded
        whatever its files (a 40 MP PNG is 38 KB on the wire and 120 MB decoded)."""
        self.usable_map(map_id)
        if not uploads:
            raise Rejected("no files were uploaded (multipart field 'files')")
        if len(uploads) > self.settings.max_files_per_request:
            raise Rejected(f"at most {self.settings.max_files_per_request} files per request")
        for up in uploads:
            if len(up.data) > self.settings.max_file_bytes:
                raise Rejected(f"{up.filename}: larger than {self.settings.max_file_bytes} bytes")
        pixels, first_bad = [], None  # headers only: nothing is decoded yet
        for up in uploads:
            try:
                pixels.append(imaging.image_pixels(up.data, self.settings.max_image_pixels))
            except imaging.ImageRejected as e:
                first_bad = Rejected(f"{up.filename}: {e}")
                break
        # Files before a bad header are still decoded (not encoded): the first bad file in upload order names
        # the rejection, whichever check finds it.
        items: list[NewItem] = []
        try:
            for chunk in _chunks(pixels, self.settings.max_upload_pixels_in_flight):
                items.extend(self._chunk_items([uploads[i] for i in chunk], gone, encode=first_bad is None))
        finally:
            if sum(pixels) > self.settings.max_upload_pixels_in_flight:
                _return_freed_memory()
        if first_bad is not None:
            raise first_bad
        return self._insert(map_id, items)

    def _chunk_items(self, uploads: Sequence[Upload], gone: Callable[[], bool] | None, encode: bool) -> list[NewItem]:
        """One chunk decoded (and encoded): its pictures are freed when this returns."""
        opened = list(self._image_pool.map(self._open_upload, uploads))
        bad = next((result for result in opened if isinstance(result, Rejected)), None)
        if bad is not None:
            raise bad
        return self.image_items(opened, [_label(u.filename) for u in uploads], gone) if encode else []

    def _open_upload(self, upload: Upload) -> Image.Image | Rejected:
        try:
            return imaging.open_image(upload.data, self.settings.max_image_pixels, keep_alpha=True)
        except imaging.ImageRejected as e:
            return Rejected(f"{upload.filename}: {e}")

    def add_pil_images(
        self, map_id: str, images: Sequence[Image.Image], labels: Sequence[str], gone: Callable[[], bool] | None = None
    ) -> list[ItemRecord]:
        return self._insert(map_id, self.image_items(images, labels, gone))

    def image_items(
        self, images: Sequence[Image.Image], labels: Sequence[str], gone: Callable[[], bool] | None = None
    ) -> list[NewItem]:
        """A pipeline: the image pool prepares model inputs (then thumbnails) while the model encodes the
        batches already prepared, `encode_batch_size` images a model call."""
        size, batch = self.settings.thumbnail_size, self.settings.encode_batch_size
        # The model sees transparent pixels on white; the thumbnail keeps the alpha (imaging.on_white).
        prepared = [
            self._image_pool.submit(lambda im: self.space.prepare_image(imaging.on_white(im)), im) for im in images
        ]
        thumbnails = [self._image_pool.submit(imaging.thumbnail_png, im, size) for im in images]
        vectors, latents = [], []
        try:
            for start in range(0, len(images), batch):
                ready = [f.result() for f in prepared[start : start + batch]]
                encoded = self.queue.run(lambda ready=ready: self.space.encode_prepared(ready), gone)
                vectors.extend(encoded.vectors)
                latents.extend([None] * len(ready) if encoded.latents is None else encoded.latents)
        except BaseException:
            for f in prepared + thumbnails:
                f.cancel()
            raise
        return [
            NewItem(
                kind="image",
                label=label,
                vector=vectors[i],
                decode_vector=vectors[i],
                latent=latents[i],
                thumbnail_png=thumbnails[i].result(),
            )
            for i, label in enumerate(labels)
        ]

    def add_items(self, map_id: str, items: list[NewItem], reference_items: int | None = None) -> list[ItemRecord]:
        """Items encoded elsewhere (prompt_items / image_items), added in one go: on an empty map, one fit.
        `reference_items`: place them against only the map's first that many items (a bulk build, which refits
        at the end: each batch then costs the same however big the map has grown)."""
        self.usable_map(map_id)
        return self._insert(map_id, items, reference_items)

    def _insert(self, map_id: str, items: list[NewItem], reference_items: int | None = None) -> list[ItemRecord]:
        with self._write_lock:
            record = self.store.get_map(map_id)
            if record.count + len(items) > self.settings.max_items_per_map:
                raise Rejected(f"a map holds at most {self.settings.max_items_per_map} items")
            if reference_items is not None and record.count > reference_items:
                existing_xy, existing_map_vectors = self._reference(record, reference_items)
            else:
                existing, existing_map_vectors = self.item_map_vectors(map_id)
                existing_xy = existing.xy
            new_map_vectors = self._map_vectors(np.stack([i.vector for i in items]), [i.kind for i in items])
            state = record.projection
            if len(existing_xy) == 0 or state.get("method") in (None, "none"):
                # The first items of a map: nobody can move yet, so fit them.
                fitted = projection.fit(
                    new_map_vectors, self.settings.umap_min_items, state.get("revision", 0) + 1, settings=self.settings
                )
                return self.store.add_items(map_id, items, fitted.xy, projection=fitted.state)
            xy = projection.place(
                new_map_vectors,
                existing_map_vectors,
                existing_xy,
                state,
                self.settings.place_neighbors,
                self.settings.place_refine_epochs,
            )
            return self.store.add_items(map_id, items, xy)

    def _reference(self, record: MapRecord, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and projection vectors of the map's first `limit` items (same until the next refit)."""
        key = (record.id, limit, record.projection.get("revision", 0))
        if self._reference_cache.get("key") != key:
            vectors, kinds, xy = self.store.head_arrays(record.id, limit)
            self._reference_cache = {"key": key, "value": (xy, self._map_vectors(vectors, kinds))}
        return self._reference_cache["value"]

    def _map_vectors(self, vectors: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
        """Into one float32 array, block by block (_map_vector_blocks): all at once, a million rows took ~2 GB of
        temporaries, the largest part of a 1M build's peak memory."""
        if len(vectors) <= MAP_VECTOR_BLOCK:
            return self.space.map_vectors(vectors, self._modalities(kinds))
        out, start = None, 0
        for block in self._map_vector_blocks(vectors, kinds):
            if out is None:
                out = np.empty((len(vectors), block.shape[1]), block.dtype)
            out[start : start + len(block)] = block
            start += len(block)
        return out

    def _map_vector_blocks(self, vectors: np.ndarray, kinds: Sequence[str]) -> Iterator[np.ndarray]:
        """Projection vectors MAP_VECTOR_BLOCK rows at a time (each row on its own: the same numbers)."""
        modalities = self._modalities(kinds)
        for start in range(0, len(vectors), MAP_VECTOR_BLOCK):
            stop = start + MAP_VECTOR_BLOCK
            yield self.space.map_vectors(vectors[start:stop], modalities[start:stop])

    @staticmethod
    def _modalities(kinds: Sequence[str]) -> list[str]:
        return ["text" if k == "text" else "image" for k in kinds]

    # ------------------------------------------------------------------ refit
    def refit(self, map_id: str) -> MapRecord:
        self.usable_map(map_id)
        with self._write_lock:
            record = self.store.get_map(map_id)
            arrays, map_vectors = self.item_map_vectors(map_id)
            fitted = projection.fit(
                map_vectors,
                self.settings.umap_min_items,
                record.projection.get("revision", 0) + 1,
                settings=self.settings,
            )
            self.store.set_positions(map_id, arrays.ids, fitted.xy, fitted.state)
            moved = self.store.get_arrays(map_id)
            if moved.vectors is arrays.vectors:  # the same items, moved: their projection vectors still hold
                self._map_vector_cache[map_id] = (moved, map_vectors)
        return self.store.get_map(map_id)

    # ------------------------------------------------------------------ decoding
    def decode_state(self, record: MapRecord) -> MapDecodeState:
        """What every decode on this map depends on besides its own request (decode_keys.py)."""
        st = self.settings
        return MapDecodeState(
            space=self.space.name,
            map_id=record.id,
            revision=record.projection.get("revision", 0),
            content=record.version,
            blend=f"{st.blend_neighbors},{st.blend_power},{st.latent_strength}",
            pending=self.pending_mark(record.id),
        )

    def spot(
        self,
        record: MapRecord,
        x: float,
        y: float,
        seed: int,
        variant: str | None = None,
        lora_scale: float | None = None,
        preview: bool = False,
    ) -> SpotDecode:
        return decode_keys.spot(
            self.decode_state(record), x, y, seed, variant, lora_scale, preview, self.space.decoder_identity(variant)
        )

    def through_decoder(self, key, variant: str | None, lora_scale: float | None):
        """The same decode key through another decoder (its variant, strength and weights' identity)."""
        return dataclasses.replace(
            key, variant=variant, lora_scale=lora_scale, decoder=self.space.decoder_identity(variant)
        )

    def decode_key(
        self,
        record: MapRecord,
        x: float,
        y: float,
        seed: int,
        variant: str | None = None,
        lora_scale: float | None = None,
        preview: bool = False,
    ) -> str:
        return self.spot(record, x, y, seed, variant, lora_scale, preview).digest()

    def pending_mark(self, map_id: str) -> str:
        """Part of a decode's cache key while some of the map's prompts still wait for their image: what is
        decoded meanwhile (from provisional vectors) is never served again once the images are in."""
        if self.prompt_images is None:
            return ""
        return decode_keys.pending_digest(self.store.pending_image_ids(map_id))

    def resolve_variant(self, variant: str | None, lora_scale: float | None) -> tuple[str | None, float | None]:
        """A decode's canonical (variant, lora_scale); Rejected for ones this space cannot decode."""
        try:
            return self.space.resolve_variant(variant, lora_scale, self.settings.max_lora_scale)
        except ValueError as e:
            raise Rejected(str(e)) from None

    def decode_at(
        self,
        map_id: str,
        x: float,
        y: float,
        seed: int,
        gone: Callable[[], bool] | None = None,
        variant: str | None = None,
        lora_scale: float | None = None,
        preview: bool = False,
    ) -> DecodeResult:
        """Pixels for a 2D point. The same (space, map, projection revision, x, y, seed) gives the same bytes:
        the first decode is cached, so adding items later does not change a shared link's picture.
        `variant`/`lora_scale` pick a decoder variant (LoRA, fine-tune) that shares the space's CLIP space;
        `preview` asks for the space's fast, rougher picture (cached under its own key)."""
        record = self.usable_map(map_id)
        variant, lora_scale = self.resolve_variant(variant, lora_scale)
        self.check_point(map_id, x, y)
        check_seed(seed, self.settings.max_seed)
        spot = self.spot(record, x, y, seed, variant, lora_scale, preview)
        key = spot.digest()
        cached = self.store.cached_decode(key)
        if cached is not None:  # before loading arrays: a shared link's image costs one file read
            return DecodeResult(cached, True, key)
        arrays = self.store.get_arrays(map_id)
        if len(arrays) == 0:
            raise Rejected("this map has no items yet: add prompts or images first")
        return self.decode_cached(key, self.spot_request(arrays, spot), gone, map_id=map_id)

    def spot_request(self, arrays: MapArrays, spot: SpotDecode) -> DecodeRequest:
        """The one definition of "decode this spot" (clicks, compare columns, terrain cells)."""
        request = self.blend_request(arrays, spot.x, spot.y, spot.seed)
        request.variant, request.lora_scale, request.preview = spot.variant, spot.lora_scale, spot.preview
        return request

    def vary_item(
        self, map_id: str, item_id: str, seed: int, strength: float, gone: Callable[[], bool] | None = None
    ) -> DecodeResult:
        """A variation of one item: its own decode vector, starting from its VAE latent noised to `strength`
        (items without a latent: a fresh picture of the vector with this seed)."""
        self.usable_map(map_id)
        check_id(item_id, "item id")
        check_seed(seed, self.settings.max_seed)
        if not (np.isfinite(strength) and 0 < strength <= 1):
            raise Rejected("strength must be more than 0 and at most 1")
        arrays = self.store.get_arrays(map_id)
        try:
            i = arrays.ids.index(item_id)
        except ValueError:
            raise NotFound(f"item {item_id} not found in map {map_id}") from None
        strength = round(float(strength), 4)
        key = decode_keys.VaryDecode(
            self.space.name,
            map_id,
            item_id,
            seed,
            strength,
            self.pending_mark(map_id),
            self.space.decoder_identity(None),
        ).digest()
        latent = arrays.latents[i]
        request = DecodeRequest(
            vector=np.asarray(arrays.decode_vectors[i], np.float32),
            seed=seed,
            latent=latent,
            strength=strength if latent is not None else 1.0,
        )
        return self.decode_cached(key, request, gone, map_id=map_id)

    def decode_cached(
        self, key: str, request: DecodeRequest, gone: Callable[[], bool] | None = None, map_id: str | None = None
    ) -> DecodeResult:
        """Decode through the queue unless `key` is cached; store the PNG under `key` (owned by `map_id`: it
        goes when the map is deleted). A request that is not finite is refused: no NaN picture is made or
        cached."""
        cached = self.store.cached_decode(key)
        if cached is not None:
            return DecodeResult(cached, True, key)
        if not np.isfinite(request.vector).all() or (
            request.latent is not None and not np.isfinite(request.latent).all()
        ):
            raise Rejected("this point cannot be decoded (its blended vector is not finite)")
        image = self.queue.run(lambda: self.space.decode([request])[0], gone)
        png = imaging.to_png(image)
        self.store.store_decode(key, png, map_id)
        return DecodeResult(png, False, key)

    def check_point(self, map_id: str, x: float, y: float) -> None:
        """Rejected unless x, y are finite and within `coordinate_margin` map widths of the map's points (and
        within ±max_abs_coordinate): far-away points mean nothing and overflow the distance maths."""
        limit = self.settings.max_abs_coordinate
        if not (isinstance(x, (int, float)) and isinstance(y, (int, float)) and np.isfinite(x) and np.isfinite(y)):
            raise Rejected("x and y must be finite numbers")
        if abs(x) > limit or abs(y) > limit:
            raise Rejected(f"x and y must be within ±{limit:g}")
        bounds = self.store.bounds(map_id)
        if bounds is None:
            return
        xmin, ymin, xmax, ymax = bounds
        margin = self.settings.coordinate_margin * max(xmax - xmin, ymax - ymin, 1.0)
        if not (xmin - margin <= x <= xmax + margin and ymin - margin <= y <= ymax + margin):
            raise Rejected(
                f"x, y = {x:.4g}, {y:.4g} is far outside the map (its points span x {xmin:.3g} to "
                f"{xmax:.3g}, y {ymin:.3g} to {ymax:.3g})"
            )

    def item_map_vectors(self, map_id: str) -> tuple[MapArrays, np.ndarray]:
        """The map's arrays and its items' projection vectors (unit, modality-centred), cached per version."""
        arrays = self.store.get_arrays(map_id)
        cached = self._map_vector_cache.get(map_id)
        if cached is None or cached[0] is not arrays:
            if not len(arrays):
                map_vectors = np.zeros((0, self.space.dim), np.float32)
            elif len(arrays) >= self.settings.map_vectors_file_min_items:
                map_vectors = self._map_vector_file(map_id, arrays)
            else:
                map_vectors = self._map_vectors(arrays.vectors, arrays.kinds)
            cached = (arrays, map_vectors)
            self._map_vector_cache[map_id] = cached
            for stale in [
                m
                for m, (a, _) in self._map_vector_cache.items()
                if m != map_id and not self.store.has_cached_arrays(m, a)
            ]:
                del self._map_vector_cache[stale]
        return cached

    def _map_vector_file(self, map_id: str, arrays: MapArrays) -> np.ndarray:
        """A big map's projection vectors, memory-mapped from the file of its items and this space's stats
        (made by _map_vector_blocks, as _map_vectors is: the same numbers, when it is not there yet)."""
        made_of = [arrays.content_key.encode(), *self._space_identity()]
        return self.store.map_vectors_file(
            map_id,
            made_of,
            len(arrays),
            arrays.vectors.shape[1],
            lambda: self._map_vector_blocks(arrays.vectors, arrays.kinds),
        )

    def _space_identity(self) -> list[bytes]:
        """What a projection vector depends on besides the item's own vector: the space and its modality means."""
        stats = getattr(self.space, "stats", None)
        means = (getattr(stats, "text_mean", None), getattr(stats, "image_mean", None))
        return [self.space.name.encode()] + [
            b"" if m is None else np.ascontiguousarray(m, dtype=np.float64).tobytes() for m in means
        ]

    def blend_request(self, arrays: MapArrays, x: float, y: float, seed: int) -> DecodeRequest:
        """Blend the nearest items' image-side vectors (and VAE latents where they have them)."""
        idx, w = projection.blend_weights((x, y), arrays.xy, self.settings.blend_neighbors, self.settings.blend_power)
        vecs = np.asarray(arrays.decode_vectors[idx], np.float32)  # stored as float16 or float32
        direction = unit((w[:, None] * unit(vecs)).sum(0, keepdims=True))[0]
        norm = float((w * np.linalg.norm(vecs, axis=1)).sum())
        latent, strength = None, 1.0
        with_latent = [(i, wi) for i, wi in zip(idx, w) if arrays.latents[i] is not None]
        if with_latent and self.settings.latent_strength < 1.0:
            total = sum(wi for _, wi in with_latent)
            latent = sum(arrays.latents[i] * (wi / total) for i, wi in with_latent).astype(np.float32)
            # The less of the point's weight comes from items with latents, the less we trust their layout.
            strength = 1.0 - (1.0 - self.settings.latent_strength) * float(total)
        return DecodeRequest(vector=(direction * norm).astype(np.float32), seed=seed, latent=latent, strength=strength)


def _return_freed_memory() -> None:
    """Give the decoded pictures' freed memory back to the system (glibc keeps it in its arenas otherwise: the
    server's RSS stayed gigabytes high after one large upload). No-op where there is no glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _chunks(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive indices grouped so each group's sizes sum to at most `budget` (a larger one goes alone)."""
    groups: list[list[int]] = []
    total = 0
    for i, size in enumerate(sizes):
        if groups and total + size <= budget:
            groups[-1].append(i)
            total += size
        else:
            groups.append([i])
            total = size
    return groups


def _label(filename: str | None) -> str:
    name = (filename or "image").replace("\\", "/").rsplit("/", 1)[-1]
    return name[:200] or "image"
