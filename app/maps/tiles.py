"""Quadtree point tiles and thumbnail atlases: what the browser draws of a map it does not hold whole.

The map's points sit in a square (`TileIndex.origin`, `.size`) cut like a web map: tile (z, x, y) is
column x, row y (counted from the *top*) of the 2^z × 2^z grid at zoom z, the same convention as the terrain
tiles. A tile holds at most `tile_points` points, chosen so that a zoomed-out view keeps the shape of every
cluster, and each tile's points include its parent's that fall inside it (zooming in only adds points):

- Every point gets a random but fixed priority and, once, the first zoom at which it appears (its *level*).
- At zoom z each tile is cut into 2^s × 2^s cells (s = `tile_cells_log2`). The tile's free places (its cap
  minus what coarser zooms already put there) go round-robin over the occupied cells: first the best point of
  every occupied cell, then the second of every cell, … So a cluster of three points in a corner gets shown
  as surely as the dense middle, and dense cells still show more than sparse ones.
- Tile (z, x, y) = the points inside it whose level ≤ z.

Points are kept in Morton (Z-order) order at `MORTON_BITS` bits per axis, so the points of any tile are one
contiguous slice found by binary search: serving a tile reads only its own points.

Thumbnails: tile (z, x, y) is also cut into g × g cells (g = `tile_thumbs_side`); in each cell the best (by
priority) item that has a thumbnail is drawn. One picture per cell keeps them from piling up, every dense
region shows some, and a picture chosen at zoom z stays chosen at every finer zoom (it is still the best of
its smaller cell), so zooming in adds pictures without swapping the ones on screen. The pictures of a tile are
packed into one atlas image (g columns, cells of `tile_thumb_px`), WebP with alpha.

Tiles are a pure function of the map's items at one version and of the settings above: immutable, cached by
any HTTP cache under a URL naming the version.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..imaging import for_dark_map, open_image
from ..settings import Settings
from .store import NotFound, StaleVersion, Store, write_atomic

MORTON_BITS = 20  # per axis: positions are quantised to 2^20 steps of the square (a millionth of its side)
POINT_TILE_MAGIC = b"LMT1"
POINT_TILE_LAYOUT = 2  # bumped when the tile body changes (part of the ETag): 2 = the pictures' ids at the end

log = logging.getLogger(__name__)


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Interleave zeros between the low 20 bits of v (uint64): bit i moves to bit 2i."""
    v = v.astype(np.uint64) & np.uint64(0xFFFFF)
    for shift, mask in (
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton(col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Z-order code: the row's bits above the column's at every level (row counted from the top)."""
    return (_spread_bits(row) << np.uint64(1)) | _spread_bits(col)


def square_of(xy: np.ndarray) -> tuple[float, float, float]:
    """(x0, y0, size): a square a little larger than the points' bounding box, centred on it."""
    if len(xy) == 0:
        return -1.0, -1.0, 2.0
    lo, hi = xy.min(axis=0).astype(np.float64), xy.max(axis=0).astype(np.float64)
    size = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    size = size * 1.02 if size > 0 else 1.0  # a margin so no point lies on the far edge
    cx, cy = (lo + hi) / 2
    return float(cx - size / 2), float(cy - size / 2), size


@dataclass
class TileIndex:
    """One map version's points in Morton order with their levels: enough to cut any tile quickly."""

    map_id: str
    version: int
    origin: tuple[float, float]
    size: float
    max_zoom: int
    order: np.ndarray  # (n,) uint32: points-order index of the k-th point in Morton order
    codes: np.ndarray  # (n,) uint64 Morton codes, sorted
    level: np.ndarray  # (n,) uint8 in Morton order: first zoom showing the point (max_zoom + 1: never)
    thumb_level: np.ndarray  # (n,) uint8 in Morton order: first zoom showing the point's picture
    priority: np.ndarray  # (n,) uint32 in Morton order: lower = shown first
    xy: np.ndarray  # (n, 2) float32 in Morton order
    kinds: np.ndarray  # (n,) uint8 in Morton order
    has_thumb: np.ndarray  # (n,) bool in Morton order
    ids: np.ndarray  # (n,) bytes ids in Morton order
    fingerprint: str  # the settings that shape tiles: part of the ETag

    @property
    def count(self) -> int:
        return len(self.order)

    def tile_slice(self, z: int, x: int, y: int) -> slice:
        check_tile(z, x, y, self.max_zoom)
        shift = np.uint64(2 * (MORTON_BITS - z))
        start = morton(np.array([x], np.uint64), np.array([y], np.uint64))[0] << shift
        end = start + (np.uint64(1) << shift)
        lo, hi = np.searchsorted(self.codes, [start, end])
        return slice(int(lo), int(hi))

    def etag(self, z: int, x: int, y: int, what: str) -> str:
        return f'"{what}-{self.version}-{z}-{x}-{y}-{self.fingerprint}"'


def check_tile(z: int, x: int, y: int, max_zoom: int) -> None:
    if not 0 <= z <= max_zoom:
        raise NotFound(f"zoom {z} is outside 0..{max_zoom} (LATENTMAP_TILE_MAX_ZOOM)")
    if not (0 <= x < 2**z and 0 <= y < 2**z):
        raise NotFound(f"tile {z}/{x}/{y} is outside the map's square (x and y run 0..{2**z - 1} at zoom {z})")


def build_index(
    map_id: str,
    xy: np.ndarray,
    kinds: np.ndarray,
    has_thumb: np.ndarray,
    ids: np.ndarray,
    version: int,
    settings: Settings,
) -> TileIndex:
    cap, cells_log2, max_zoom = settings.tile_points, settings.tile_cells_log2, settings.tile_max_zoom
    x0, y0, size = square_of(xy)
    n = len(xy)
    steps = 2**MORTON_BITS
    col = np.clip(((xy[:, 0].astype(np.float64) - x0) / size * steps).astype(np.int64), 0, steps - 1)
    row = np.clip(((y0 + size - xy[:, 1].astype(np.float64)) / size * steps).astype(np.int64), 0, steps - 1)
    codes = morton(col, row)
    order = np.argsort(codes, kind="stable").astype(np.uint32)
    codes = codes[order]
    # Fixed priorities: the same map version always gives the same tiles.
    priority = np.random.default_rng(n).permutation(n).astype(np.uint32)[order]
    level = np.full(n, max_zoom + 1, dtype=np.uint8)
    for z in range(max_zoom + 1):
        free = np.flatnonzero(level > max_zoom)
        if len(free) == 0:
            break
        tile = codes >> np.uint64(2 * (MORTON_BITS - z))
        cell_bits = 2 * max(0, MORTON_BITS - z - cells_log2)
        cand_tile, cand_cell, cand_prio = tile[free], codes[free] >> np.uint64(cell_bits), priority[free]
        # Round of each candidate: its rank by priority within its cell (cells are contiguous in Morton order).
        by_cell = np.lexsort((cand_prio, cand_cell))
        sorted_cell = cand_cell[by_cell]
        starts = np.flatnonzero(np.r_[True, sorted_cell[1:] != sorted_cell[:-1]])
        rank = np.arange(len(by_cell)) - np.repeat(starts, np.diff(np.r_[starts, len(by_cell)]))
        rounds = np.empty(len(free), dtype=np.int64)
        rounds[by_cell] = rank
        # Places left in each tile after coarser zooms.
        taken_tiles, taken_counts = np.unique(tile[level <= max_zoom], return_counts=True)
        by_take = np.lexsort((cand_prio, rounds, cand_tile))
        sorted_tile = cand_tile[by_take]
        tstarts = np.flatnonzero(np.r_[True, sorted_tile[1:] != sorted_tile[:-1]])
        pos = np.arange(len(by_take)) - np.repeat(tstarts, np.diff(np.r_[tstarts, len(by_take)]))
        already = np.zeros(len(sorted_tile), dtype=np.int64)
        if len(taken_tiles):
            where = np.minimum(np.searchsorted(taken_tiles, sorted_tile), len(taken_tiles) - 1)
            hit = taken_tiles[where] == sorted_tile
            already[hit] = taken_counts[where[hit]]
        chosen = free[by_take[pos < cap - already]]
        level[chosen] = z
    thumb_level = _thumb_levels(codes, priority, has_thumb[order], max_zoom, settings.tile_thumbs_side)
    return TileIndex(
        map_id=map_id,
        version=version,
        origin=(x0, y0),
        size=size,
        max_zoom=max_zoom,
        order=order,
        codes=codes,
        level=level,
        thumb_level=thumb_level,
        priority=priority,
        xy=xy[order],
        kinds=kinds[order],
        has_thumb=has_thumb[order],
        ids=ids[order],
        fingerprint=tiles_fingerprint(settings),
    )


def tiles_fingerprint(settings: Settings) -> str:
    """The settings (and layout) that shape tiles: part of every tile's ETag and of a saved index's name."""
    return hashlib.sha256(
        f"{settings.tile_points}/{settings.tile_cells_log2}/{settings.tile_max_zoom}/{settings.tile_thumbs_side}/"
        f"{settings.tile_thumb_px}/{MORTON_BITS}/{POINT_TILE_LAYOUT}".encode()
    ).hexdigest()[:10]


_INDEX_ARRAYS = ("order", "codes", "level", "thumb_level", "priority", "xy", "kinds", "has_thumb", "ids")


def save_index(index: TileIndex, path: Path) -> None:
    """The index as one uncompressed .npz (plain arrays, no pickles), a whole file or none."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        origin=np.array(index.origin, np.float64),
        size=np.array(index.size, np.float64),
        max_zoom=np.array(index.max_zoom),
        **{name: getattr(index, name) for name in _INDEX_ARRAYS},
    )
    write_atomic(path, buffer.getvalue())


def load_index(path: Path, map_id: str, version: int, fingerprint: str, count: int) -> TileIndex | None:
    """The index saved at `path` (named by map version and fingerprint), or None: no file, unreadable, or not
    of `count` points (built again)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in _INDEX_ARRAYS}
            origin, size, max_zoom = saved["origin"], saved["size"], saved["max_zoom"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    if any(len(a) != count for a in arrays.values()):
        return None
    return TileIndex(
        map_id=map_id,
        version=version,
        origin=(float(origin[0]), float(origin[1])),
        size=float(size),
        max_zoom=int(max_zoom),
        fingerprint=fingerprint,
        **arrays,
    )


def _thumb_levels(
    codes: np.ndarray, priority: np.ndarray, pictured: np.ndarray, max_zoom: int, side: int
) -> np.ndarray:
    """For each point (Morton order), the first zoom at which it is the best-priority pictured item of its
    thumbnail cell (one of side² per tile); max_zoom + 1 for never. Cells are contiguous runs in Morton order,
    so the best of every cell is one reduceat per zoom, no sorting."""
    side_log2 = side.bit_length() - 1
    if side != 1 << side_log2:
        raise ValueError(f"tile_thumbs_side must be a power of two, got {side}")
    levels = np.full(len(codes), max_zoom + 1, dtype=np.uint8)
    where = np.flatnonzero(pictured)
    if len(where) == 0:
        return levels
    pcodes, pprio = codes[where], priority[where].astype(np.int64)
    best_at = np.full(len(where), max_zoom + 1, dtype=np.uint8)
    for z in range(max_zoom, -1, -1):  # finest first: a point best at z is best at every finer zoom too
        cells = pcodes >> np.uint64(2 * max(0, MORTON_BITS - z - side_log2))
        starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
        mins = np.minimum.reduceat(pprio, starts)
        is_best = pprio == np.repeat(mins, np.diff(np.r_[starts, len(cells)]))
        best_at[is_best] = z
    levels[where] = best_at
    return levels


@dataclass
class PointTile:
    indices: np.ndarray  # points-order indices
    xy: np.ndarray
    kinds: np.ndarray
    thumb_indices: np.ndarray  # points-order indices of the items whose pictures the atlas holds, slot order
    thumb_xy: np.ndarray
    thumb_ids: list[str]

    def encode(self) -> bytes:
        """b"LMT1", uint32 n, uint32 m, uint32 index[n], float32 x[n], float32 y[n], uint32 thumb_index[m],
        float32 thumb_x[m], float32 thumb_y[m], uint8 kind[n], uint32 ids_length, the pictures' item ids (UTF-8,
        one a line, ids_length bytes); little-endian. Thumbnail k sits in atlas slot k (column k % side, row
        k // side); its id lets the page fetch the item's own, sharper thumbnail for close-ups."""
        n, m = len(self.indices), len(self.thumb_indices)
        ids = "\n".join(self.thumb_ids).encode()
        parts = [
            POINT_TILE_MAGIC,
            np.array([n, m], "<u4").tobytes(),
            self.indices.astype("<u4").tobytes(),
            np.ascontiguousarray(self.xy[:, 0], "<f4").tobytes(),
            np.ascontiguousarray(self.xy[:, 1], "<f4").tobytes(),
            self.thumb_indices.astype("<u4").tobytes(),
            np.ascontiguousarray(self.thumb_xy[:, 0], "<f4").tobytes(),
            np.ascontiguousarray(self.thumb_xy[:, 1], "<f4").tobytes(),
            self.kinds.astype("u1").tobytes(),
            np.array([len(ids)], "<u4").tobytes(),
            ids,
        ]
        return b"".join(parts)


def cut_tile(index: TileIndex, z: int, x: int, y: int, thumbs_side: int) -> PointTile:
    s = index.tile_slice(z, x, y)
    level = index.level[s]
    shown = np.flatnonzero(level <= z) + s.start
    best = np.flatnonzero(index.thumb_level[s] <= z) + s.start  # Morton order = atlas slot order
    return PointTile(
        indices=index.order[shown],
        xy=index.xy[shown],
        kinds=index.kinds[shown],
        thumb_indices=index.order[best],
        thumb_xy=index.xy[best],
        thumb_ids=[i.decode() for i in index.ids[best]],
    )


def pack_atlas(store: Store, tile: PointTile, side: int, cell_px: int, max_pixels: int) -> bytes:
    """The tile's pictures in a grid of `side` columns, each fitted into a cell_px square (centred, aspect kept,
    transparent around it) as the dark map draws them (imaging.for_dark_map), as lossy WebP with alpha."""
    m = len(tile.thumb_ids)
    if m == 0:
        raise NotFound("this tile has no pictures")
    rows = -(-m // side)
    atlas = Image.new("RGBA", (side * cell_px, rows * cell_px), (0, 0, 0, 0))
    for k, item_id in enumerate(tile.thumb_ids):
        try:
            im = open_image(store.read_thumbnail(item_id), max_pixels, keep_alpha=True).convert("RGBA")
        except NotFound:  # deleted since: a later map version will not list it; leave the cell empty
            continue
        im.thumbnail(
            (cell_px, cell_px), Image.Resampling.LANCZOS if max(im.size) > cell_px else Image.Resampling.NEAREST
        )
        if max(im.size) < cell_px:  # small pictures (digits are 16 px) are enlarged crisply to fill the cell
            f = cell_px / max(im.size)
            im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.NEAREST)
        cx, cy = (k % side) * cell_px, (k // side) * cell_px
        atlas.paste(for_dark_map(im), (cx + (cell_px - im.width) // 2, cy + (cell_px - im.height) // 2))
    out = io.BytesIO()
    atlas.save(out, "WEBP", quality=80, method=2)
    return out.getvalue()


class PointTiles:
    """Tile indexes of recently used maps and recently made tiles, in memory, both bounded by settings."""

    def __init__(self, store: Store, settings: Settings):
        self.store, self.settings = store, settings
        self._lock = threading.Lock()
        self._indexes: OrderedDict[str, TileIndex] = OrderedDict()
        self._building: dict[str, threading.Lock] = {}
        self._bytes: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes_total = 0

    def index(self, map_id: str, version: int | None = None) -> TileIndex:
        """The current version's index; StaleVersion when `version` is given and is not the current one."""
        current = self.store.get_map(map_id).version
        if version is not None and version != current:
            raise StaleVersion(f"map {map_id} is at version {current}, not {version}: ask for the current tiles")
        with self._lock:
            cached = self._indexes.get(map_id)
            if cached is not None and cached.version == current:
                self._indexes.move_to_end(map_id)
                return cached
            building = self._building.setdefault(map_id, threading.Lock())
        with building:  # one build per map at a time; others wait for it rather than build it again
            with self._lock:
                cached = self._indexes.get(map_id)
            if cached is None or cached.version != current:
                cached = self._saved_or_built(map_id)
                with self._lock:
                    self._indexes[map_id] = cached
                    self._indexes.move_to_end(map_id)
                    while len(self._indexes) > self.settings.tile_index_maps:
                        self._indexes.popitem(last=False)
        if version is not None and cached.version != version:
            raise StaleVersion(f"map {map_id} changed while its tiles were being made: ask again")
        return cached

    def _saved_or_built(self, map_id: str) -> TileIndex:
        """A big map's index is saved beside its arrays (`tile_index_file_min_items`): a server's first visitor
        then waits for a file read, not for the index of a million points to be built (~6 s at 1M)."""
        record = self.store.get_map(map_id)
        count, version = record.count, record.version
        fingerprint = tiles_fingerprint(self.settings)
        path = None
        if count >= self.settings.tile_index_file_min_items:
            path = self.store.tile_index_path(map_id, version, fingerprint)
            saved = load_index(path, map_id, version, fingerprint, count) if path.is_file() else None
            if saved is not None:
                return saved
        xy, kinds, thumbs, ids, got = self.store.tile_source(map_id)
        index = build_index(map_id, xy, kinds, thumbs, ids, got, self.settings)
        if path is not None and got == version:
            try:
                save_index(index, path)
            except OSError as e:  # a read-only data dir still serves tiles, built at each start
                log.warning("tile index of map %s not saved: %s", map_id, e)
        return index

    def points_tile(self, index: TileIndex, z: int, x: int, y: int) -> bytes:
        return self._cached(
            (index.map_id, index.version, "bin", z, x, y),
            lambda: cut_tile(index, z, x, y, self.settings.tile_thumbs_side).encode(),
        )

    def atlas(self, index: TileIndex, z: int, x: int, y: int) -> bytes:
        def make() -> bytes:
            tile = cut_tile(index, z, x, y, self.settings.tile_thumbs_side)
            return pack_atlas(
                self.store,
                tile,
                self.settings.tile_thumbs_side,
                self.settings.tile_thumb_px,
                self.settings.max_image_pixels,
            )

        return self._cached((index.map_id, index.version, "webp", z, x, y), make)

    def _cached(self, key: tuple, make) -> bytes:
        with self._lock:
            hit = self._bytes.get(key)
            if hit is not None:
                self._bytes.move_to_end(key)
                return hit
        data = make()
        with self._lock:
            if key not in self._bytes:
                self._bytes[key] = data
                self._bytes_total += len(data)
            while self._bytes_total > self.settings.tile_cache_bytes and self._bytes:
                _, old = self._bytes.popitem(last=False)
                self._bytes_total -= len(old)
        return data
