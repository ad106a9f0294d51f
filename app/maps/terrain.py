"""Terrain: the map's latent space drawn as web-map tiles of decoded cells.

The terrain square `[x0, x0 + s] x [y0, y0 + s]` encloses the map's bounds. Tile (z, x, y) covers
`[x0 + x*s/2^z, x0 + (x+1)*s/2^z]` across and, with y counted from the top,
`[y0 + s - (y+1)*s/2^z, y0 + s - y*s/2^z]` down; its image is `cells x cells` cells of `cell_px` pixels, cell
(i, j) (column i from the left, row j from the top) the decode of the cell's centre exactly as a click there
decodes it (MapService.spot_request: same blend, same latent start, same seed).

A tile's cells are decoded as batched model calls through the work queue's TILE lane, one denoising step a
slice, so clicks go between the slices; the cells' blending and the tile's PNG encoding are slices too, so no
tile work runs beside a click. Tile work is admitted per client and in total (beyond: 429 with
Retry-After); a client asking for more than its share drops its own oldest tile (it has moved away from it).
Tiles are cached under their key (decode_keys.TerrainTile) in the bounded decode cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .. import imaging
from ..errors import NotFound, Rejected
from ..jobs import TILE, ClientGone, QueueFull
from .decode_keys import TerrainTile, check_seed
from .service import MapService
from .store import MapRecord

SQUARE_MARGIN = 0.05  # the square reaches this share of the map's extent beyond its points on each side


def terrain_square(bounds: list[float]) -> tuple[tuple[float, float], float]:
    """(origin, size) of the square enclosing [xmin, ymin, xmax, ymax], centred on it (rounded: part of keys)."""
    xmin, ymin, xmax, ymax = bounds
    side = max(xmax - xmin, ymax - ymin)
    side = side * (1 + 2 * SQUARE_MARGIN) if side > 0 else 1.0
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    return (round(cx - side / 2, 6), round(cy - side / 2, 6)), round(side, 6)


def cell_centres(tile: TerrainTile) -> list[tuple[float, float]]:
    """Map coordinates of the tile's cell centres, row by row from the top, each row left to right."""
    (x0, y0), s, g = tile.origin, tile.size, tile.cells
    side = s / 2**tile.z
    return [
        (x0 + (tile.x + (i + 0.5) / g) * side, y0 + s - (tile.y + (j + 0.5) / g) * side)
        for j in range(g)
        for i in range(g)
    ]


def fit_cell(image: Image.Image, px: int) -> Image.Image:
    """A decode at the cell's size: whole-pixel enlargements stay sharp (nearest), reductions average (box)."""
    w, h = image.size
    if (w, h) == (px, px):
        return image
    if px > w and px % w == 0 and px % h == 0:
        return image.resize((px, px), Image.Resampling.NEAREST)
    return image.resize((px, px), Image.Resampling.BOX if px < min(w, h) else Image.Resampling.BICUBIC)


@dataclass
class TileResult:
    png: bytes
    key: str
    cached: bool


@dataclass
class _Ticket:
    client: str
    dropped: bool = False


@dataclass
class _Admission:
    """Tile work admitted now: per client, oldest first."""

    by_client: dict[str, list[_Ticket]] = field(default_factory=dict)
    total: int = 0


class Terrain:
    def __init__(self, service: MapService):
        self.service = service
        self._lock = threading.Lock()
        self._admitted = _Admission()
        self._making: OrderedDict[str, threading.Lock] = OrderedDict()  # one decode per tile key at a time
        self._recent: list[float] = []  # seconds per tile made, for Retry-After

    @property
    def settings(self):
        return self.service.settings

    # ------------------------------------------------------------------ describing
    def base_tile(self, record: MapRecord, bounds: list[float] | None = None) -> TerrainTile | None:
        """Tile (0, 0, 0), seed 0: what every tile of the map shares (None for a map without items)."""
        bounds = self.service.store.bounds(record.id) if bounds is None else bounds
        if bounds is None:
            return None
        origin, size = terrain_square(bounds)
        return TerrainTile(
            self.service.decode_state(record),
            origin,
            size,
            self.settings.terrain_cells,
            self.settings.terrain_cell_px,
            0,
            0,
            0,
            0,
        )

    def describe(self, record: MapRecord, bounds: list[float] | None = None) -> dict | None:
        """The `terrain` of GET /api/maps/{id}."""
        base = self.base_tile(record, bounds)
        if base is None:
            return None
        return {
            "origin": list(base.origin),
            "size": base.size,
            "cells": base.cells,
            "cell_px": base.cell_px,
            "max_zoom": self.settings.terrain_max_zoom,
            "revision": base.revision,
            "previews": bool(self.service.space.info.get("preview")),
        }

    def tile_key(
        self,
        map_id: str,
        z: int,
        x: int,
        y: int,
        seed: int,
        variant: str | None = None,
        lora_scale: float | None = None,
        preview: bool = False,
    ) -> TerrainTile:
        """The checked tile: NotFound outside the square or beyond the deepest zoom, Rejected for a bad seed
        or variant."""
        record = self.service.usable_map(map_id)
        check_seed(seed, self.settings.max_seed)
        variant, lora_scale = self.service.resolve_variant(variant, lora_scale)
        max_zoom = self.settings.terrain_max_zoom
        if not 0 <= z <= max_zoom:
            raise NotFound(f"terrain zoom {z} is beyond this server's deepest zoom ({max_zoom})")
        if not (0 <= x < 2**z and 0 <= y < 2**z):
            raise NotFound(f"terrain tile {z}/{x}/{y} is outside the map's square (x and y from 0 to {2**z - 1})")
        base = self.base_tile(record)
        if base is None:
            raise NotFound("this map has no items yet, so no terrain: add prompts or images first")
        return TerrainTile(
            base.state,
            base.origin,
            base.size,
            base.cells,
            base.cell_px,
            z,
            x,
            y,
            seed,
            variant,
            lora_scale,
            bool(preview),
            self.service.space.decoder_identity(variant),
        )

    # ------------------------------------------------------------------ making
    def tile(self, tile: TerrainTile, client: str, gone: Callable[[], bool] | None = None) -> TileResult:
        """The tile's PNG: from the cache, or decoded (admitted within the tile budgets; QueueFull beyond)."""
        key = tile.digest()
        cached = self.service.store.cached_decode(key)
        if cached is not None:
            return TileResult(cached, key, True)
        ticket = self._admit(client)
        try:
            with self._making_lock(key):
                cached = self.service.store.cached_decode(key)  # made meanwhile by another request
                if cached is not None:
                    return TileResult(cached, key, True)
                start = time.perf_counter()
                png = self._make(tile, lambda: ticket.dropped or (gone is not None and gone()))
                self._recent = (self._recent + [time.perf_counter() - start])[-20:]
                self.service.store.store_decode(key, png, tile.state.map_id)
                return TileResult(png, key, False)
        except ClientGone:
            if ticket.dropped:
                raise QueueFull(
                    self.retry_after(), "this tile was dropped for newer tiles of the same client"
                ) from None
            raise
        finally:
            self._release(ticket)

    def _make(self, tile: TerrainTile, gone: Callable[[], bool]) -> bytes:
        arrays = self.service.store.get_arrays(tile.state.map_id)
        if len(arrays) == 0:
            raise Rejected("this map has no items yet: add prompts or images first")
        return self.service.queue.run_steps(self._tile_steps(tile, arrays), gone, TILE)

    def _tile_steps(self, tile: TerrainTile, arrays) -> Iterator[bytes | None]:
        """All of a tile's work as slices of the TILE lane: blending the cells' requests, the batched decode
        steps, then pasting and PNG encoding. None of it runs beside a click: on a small CPU a tile thread
        blending or encoding next to a click's decode slows the click as much as waiting for it (one GIL,
        few cores), and a click waits for at most one of these slices. Yields None per slice, the PNG last."""
        service, per_slice = self.service, max(1, self.settings.terrain_batch_size)
        centres = cell_centres(tile)
        requests = []
        for start in range(0, len(centres), per_slice):
            requests += [
                service.spot_request(arrays, tile.cell_spot(cx, cy)) for cx, cy in centres[start : start + per_slice]
            ]
            yield None
        images = None
        for value in service.space.decode_steps(requests, per_slice):
            if value is None:
                yield None
            else:
                images = value
        g, p = tile.cells, tile.cell_px
        mode = "L" if all(im.mode == "L" for im in images) else "RGB"
        canvas = Image.new(mode, (g * p, g * p))
        for n, image in enumerate(images):
            canvas.paste(fit_cell(image.convert(mode), p), ((n % g) * p, (n // g) * p))
        yield imaging.to_png(canvas)

    @staticmethod
    def cells_of(png: bytes, cells: int) -> list[Image.Image]:
        """A tile cut back into its cells (row by row from the top): for tests and tools."""
        import io

        tile = Image.open(io.BytesIO(png))
        tile.load()
        p = tile.width // cells
        return [tile.crop((i * p, j * p, (i + 1) * p, (j + 1) * p)) for j in range(cells) for i in range(cells)]

    # ------------------------------------------------------------------ admission
    def _admit(self, client: str) -> _Ticket:
        with self._lock:
            mine = self._admitted.by_client.setdefault(client, [])
            if len(mine) >= self.settings.max_tiles_per_client:  # the client moved on: its oldest tile goes
                oldest = mine.pop(0)
                oldest.dropped = True
                self._admitted.total -= 1
            if self._admitted.total >= self.settings.max_tile_jobs:
                if not mine:
                    self._admitted.by_client.pop(client, None)
                raise QueueFull(self.retry_after(), "the server is making as many terrain tiles as it will")
            ticket = _Ticket(client)
            mine.append(ticket)
            self._admitted.total += 1
            return ticket

    def _release(self, ticket: _Ticket) -> None:
        with self._lock:
            mine = self._admitted.by_client.get(ticket.client, [])
            if ticket in mine:
                mine.remove(ticket)
                self._admitted.total -= 1
            if not mine:
                self._admitted.by_client.pop(ticket.client, None)

    def admitted(self) -> tuple[int, dict[str, int]]:
        """(tiles admitted, per client): for tests and the benchmark."""
        with self._lock:
            return self._admitted.total, {c: len(t) for c, t in self._admitted.by_client.items()}

    def _making_lock(self, key: str) -> threading.Lock:
        with self._lock:
            lock = self._making.get(key)
            if lock is None:
                lock = self._making[key] = threading.Lock()
                while len(self._making) > 4 * self.settings.max_tile_jobs:  # forget idle ones, oldest first
                    old_key, old = next(iter(self._making.items()))
                    if old.locked():
                        break
                    del self._making[old_key]
            return lock

    def retry_after(self) -> int:
        typical = float(np.median(self._recent)) if self._recent else 1.0
        return max(1, int(round(typical)))
