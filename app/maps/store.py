"""All persistence: SQLite (WAL) for maps and items, float32 BLOBs for vectors and latents, PNG files for
thumbnails and cached decodes. No other module touches the data directory.

Crash safety: each ingest is one transaction; files are written to a temp name, fsynced and renamed into
place *before* the rows that reference them are committed, so an acknowledged item is always whole and a
half-written one is never visible.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Conflict, LatentmapError, NotFound
from ..settings import DEFAULT_DECODE_CACHE_BYTES
from .decode_cache import DecodeCache

FILE_WRITER_THREADS = 8  # thumbnail files of a batch written (and fsync-ed) at once

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{6,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS maps (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    space TEXT NOT NULL,
    edit_key_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,          -- bumped on every change to the map's items
    projection TEXT NOT NULL DEFAULT '{}'        -- JSON: method, revision, fitted_count, params
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    map_id TEXT NOT NULL REFERENCES maps(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    x REAL NOT NULL,
    y REAL NOT NULL,
    vector BLOB NOT NULL,          -- raw CLIP embedding, float32
    decode_vector BLOB NOT NULL,   -- image-side embedding the decoder is conditioned on, float32
    latent BLOB,                   -- VAE latent (diffusion space), float32, or NULL
    latent_shape TEXT,
    has_thumbnail INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    pending_image INTEGER NOT NULL DEFAULT 0  -- a prompt whose image (thumbnail, decode vector) is still to come
);
CREATE INDEX IF NOT EXISTS items_by_map ON items(map_id, seq);
CREATE TABLE IF NOT EXISTS tours (
    id TEXT PRIMARY KEY,
    map_id TEXT NOT NULL REFERENCES maps(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    steps TEXT NOT NULL,            -- JSON list of steps (view, at, seed, path, caption)
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tours_by_map ON tours(map_id, created_at);
CREATE TABLE IF NOT EXISTS map_columns (      -- metadata columns of a map's items (app/ingest)
    map_id TEXT NOT NULL REFERENCES maps(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,                -- index into items.meta
    name TEXT NOT NULL,
    type TEXT NOT NULL,                       -- number, category or text
    PRIMARY KEY (map_id, position),
    UNIQUE (map_id, name)
);
"""

COLUMN_TYPES = ("number", "category", "text")


class StaleVersion(Conflict):
    """A request refers to points by index, but the map's items changed since the client loaded them."""


class InvalidId(LatentmapError, ValueError):
    """An id or key that cannot exist: answered like a missing one (404), never looked up."""

    status = 404


class DataDirError(RuntimeError):
    pass


def check_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidId(f"invalid {what}: must match {ID_PATTERN.pattern}")
    return value


ARRAY_CACHE_MAPS = 8  # maps whose vectors stay in memory between requests
KIND_CODES = {"text": 0, "image": 1, "generated": 2}  # the kind byte of the binary points payload
KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MAX_SQL_INT = 2**63 - 1


def check_key(key: str) -> str:
    """Decode-cache keys are sha256 hex digests, nothing else."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidId("invalid decode key")
    return key


def new_id() -> str:
    return secrets.token_urlsafe(12)  # 96 random bits: unguessable, URL-safe


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class MapRecord:
    id: str
    title: str
    space: str
    created_at: float
    version: int
    count: int
    projection: dict


@dataclass
class NewItem:
    kind: str
    label: str
    vector: np.ndarray
    decode_vector: np.ndarray
    latent: np.ndarray | None = None
    thumbnail_png: bytes | None = None
    pending_image: bool = False  # decode_vector is provisional until its generated image arrives
    content_hash: str | None = None  # what the item was made from (app/ingest): a rerun skips what is present
    meta: dict | None = None  # metadata column name -> number, string or None (columns declared first)


@dataclass
class Column:
    name: str
    type: str  # number, category or text
    position: int


@dataclass
class ItemRecord:
    id: str
    map_id: str
    kind: str
    label: str
    x: float
    y: float
    has_thumbnail: bool
    pending_image: bool = False

    _COLUMNS = "id, map_id, kind, label, x, y, has_thumbnail, pending_image"

    @classmethod
    def from_row(cls, r) -> ItemRecord:
        return cls(
            id=r[0],
            map_id=r[1],
            kind=r[2],
            label=r[3],
            x=r[4],
            y=r[5],
            has_thumbnail=bool(r[6]),
            pending_image=bool(r[7]),
        )


@dataclass
class MapArrays:
    """Everything numeric about a map's items, in insertion order."""

    ids: list[str]
    kinds: list[str]
    labels: list[str]
    xy: np.ndarray  # (n, 2)
    vectors: np.ndarray  # (n, dim)
    decode_vectors: np.ndarray  # (n, dim)
    latents: list[np.ndarray | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def _blob(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float32).tobytes()


class Store:
    def __init__(self, data_dir: str | Path, decode_cache_bytes: int = DEFAULT_DECODE_CACHE_BYTES):
        self.data_dir = Path(data_dir)
        self.thumb_dir = self.data_dir / "thumbnails"
        self.decode_dir = self.data_dir / "decodes"
        self.check_writable(self.data_dir)
        for d in (self.thumb_dir, self.decode_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.data_dir / "latentmap.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(items)")}
        if "pending_image" not in columns:  # data directories made before the column existed
            self._db.execute("ALTER TABLE items ADD COLUMN pending_image INTEGER NOT NULL DEFAULT 0")
        self._db.execute("CREATE INDEX IF NOT EXISTS items_pending ON items(map_id) WHERE pending_image = 1")
        for table, column, decl in (
            ("items", "content_hash", "TEXT"),
            ("items", "meta", "TEXT"),
            ("maps", "source", "TEXT"),
        ):  # data directories made before ingest
            if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS items_by_hash ON items(map_id, content_hash) WHERE content_hash IS NOT NULL"
        )
        # The most recently used maps' arrays stay in memory (clicks need them); older ones are dropped.
        self._arrays_cache: OrderedDict[str, tuple[tuple[int, int], MapArrays]] = OrderedDict()
        self._images_done: dict[str, int] = {}  # per map: prompt images completed (part of the arrays' cache key)
        self._counts: dict[str, tuple[int, int]] = {}  # per map: (version, item count)
        # per map: (version, parsed projection) and (version, bounds): worked out once, not on every get_map
        self._parsed: dict[str, tuple[int, dict]] = {}
        self._bounds: dict[str, tuple[int, list[float] | None]] = {}
        self._sweep_orphans()
        self.decodes = DecodeCache(self.decode_dir, decode_cache_bytes)  # every decoded picture, within a budget

    def _sweep_orphans(self) -> None:
        """Remove what a crash can leave behind: temp files, and thumbnails whose rows never committed."""
        for d in (self.thumb_dir, self.decode_dir):
            for tmp in d.glob(".tmp-*"):
                tmp.unlink(missing_ok=True)
        known = {r[0] for r in self._db.execute("SELECT id FROM items WHERE has_thumbnail = 1")}
        for thumb in self.thumb_dir.glob("*.png"):
            if thumb.stem not in known:
                thumb.unlink(missing_ok=True)

    @staticmethod
    def check_writable(data_dir: Path) -> None:
        """Fail at start, with a clear message, on a data dir we cannot write (read-only, full, not a dir)."""
        try:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            Store._write_atomic(Path(data_dir) / ".write-probe", b"latentmap")
            (Path(data_dir) / ".write-probe").unlink()
        except OSError as e:
            raise DataDirError(f"data directory {data_dir} is not usable: {e.strerror or e}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.decodes.close()

    # ------------------------------------------------------------------ maps
    def create_map(self, title: str, space: str, source: str | None = None) -> tuple[MapRecord, str]:
        """`source` names what a build reads (app/ingest): the same title and source find the map again."""
        map_id, edit_key = new_id(), secrets.token_urlsafe(24)  # 192-bit edit key
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO maps(id, title, space, edit_key_hash, created_at, projection, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (map_id, title, space, hash_key(edit_key), now, json.dumps({"method": "none", "revision": 0}), source),
            )
        return self.get_map(map_id), edit_key

    def find_map(self, title: str, space: str, source: str) -> MapRecord | None:
        """The newest map built with this title from this source in this space (a build to continue)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM maps WHERE title = ? AND space = ? AND source = ? ORDER BY created_at DESC LIMIT 1",
                (title, space, source),
            ).fetchone()
        return None if row is None else self.get_map(row[0])

    # ------------------------------------------------------------------ metadata columns
    def declare_columns(self, map_id: str, types: dict[str, str]) -> list[Column]:
        """Add the columns the map does not have yet (a column keeps the type it was first declared with)."""
        bad = [t for t in types.values() if t not in COLUMN_TYPES]
        if bad:
            raise ValueError(f"column type must be one of {', '.join(COLUMN_TYPES)}, not {bad[0]}")
        with self._lock:
            have = {c.name for c in self.columns(map_id)}
            start = self._db.execute(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM map_columns WHERE map_id = ?", (map_id,)
            ).fetchone()[0]
            new = [n for n in types if n not in have]
            self._db.executemany(
                "INSERT INTO map_columns(map_id, position, name, type) VALUES (?, ?, ?, ?)",
                [(map_id, start + k, n, types[n]) for k, n in enumerate(new)],
            )
            return self.columns(map_id)

    def columns(self, map_id: str) -> list[Column]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, type, position FROM map_columns WHERE map_id = ? ORDER BY position", (map_id,)
            ).fetchall()
        return [Column(*r) for r in rows]

    def column(self, map_id: str, name: str) -> Column:
        for c in self.columns(map_id):
            if c.name == name:
                return c
        raise NotFound(f"map {map_id} has no column '{name}'")

    def column_summary(self, column: Column, map_id: str, max_categories: int) -> dict:
        """Counts of a category's values (most frequent first, at most `max_categories`), a number's range."""
        path = f"$[{int(column.position)}]"
        with self._lock:
            if column.type == "number":
                lo, hi, n = self._db.execute(
                    "SELECT MIN(v), MAX(v), COUNT(v) FROM (SELECT json_extract(meta, ?) AS v FROM items "
                    "WHERE map_id = ?)",
                    (path, map_id),
                ).fetchone()
                return {"min": lo, "max": hi, "count": n}
            if column.type == "category":
                rows = self._db.execute(
                    "SELECT json_extract(meta, ?) AS v, COUNT(*) AS c FROM items WHERE map_id = ? AND v IS NOT NULL "
                    "GROUP BY v ORDER BY c DESC, v LIMIT ?",
                    (path, map_id, max_categories + 1),
                ).fetchall()
                return {
                    "categories": [{"value": str(v), "count": c} for v, c in rows[:max_categories]],
                    "more_categories": len(rows) > max_categories,
                    "count": sum(c for _, c in rows),
                }
            n = self._db.execute(
                "SELECT COUNT(*) FROM items WHERE map_id = ? AND json_extract(meta, ?) IS NOT NULL", (map_id, path)
            ).fetchone()[0]
            return {"count": n}

    def column_values(self, map_id: str, column: Column, version: int | None = None) -> tuple[list, int]:
        """One column's value for every item in points order (None where missing), and the map's version."""
        with self._lock:
            current = self._map_version(map_id, expected=version)
            rows = self._db.execute(
                "SELECT json_extract(meta, ?) FROM items WHERE map_id = ? ORDER BY seq",
                (f"$[{int(column.position)}]", map_id),
            ).fetchall()
        return [r[0] for r in rows], current

    def item_meta(self, map_id: str, item_ids: Sequence[str]) -> dict[str, dict]:
        """Metadata of some items: item id -> {column name: value} (only the columns an item has a value in)."""
        names = [c.name for c in self.columns(map_id)]
        if not names or not item_ids:
            return {}
        out: dict[str, dict] = {}
        with self._lock:
            for start in range(0, len(item_ids), 500):  # SQLite's bound-parameter limit
                chunk = list(item_ids[start : start + 500])
                rows = self._db.execute(
                    f"SELECT id, meta FROM items WHERE map_id = ? AND meta IS NOT NULL AND id IN "
                    f"({','.join('?' * len(chunk))})",
                    (map_id, *chunk),
                ).fetchall()
                for item_id, meta in rows:
                    values = json.loads(meta)
                    out[item_id] = {n: v for n, v in zip(names, values) if v is not None}
        return out

    def content_hashes(self, map_id: str) -> set[str]:
        with self._lock:
            return {
                r[0]
                for r in self._db.execute(
                    "SELECT content_hash FROM items WHERE map_id = ? AND content_hash IS NOT NULL", (map_id,)
                )
            }

    def _map_from_row(self, row) -> MapRecord:
        return MapRecord(
            id=row[0],
            title=row[1],
            space=row[2],
            created_at=row[3],
            version=row[4],
            projection=self._projection(row[0], row[4], lambda: row[5]),
            count=row[6],
        )

    def _projection(self, map_id: str, version: int, text) -> dict:
        """The map's projection state, parsed once per map version (a refit or an add bumps the version);
        `text()` reads the stored JSON only when it is needed."""
        parsed = self._parsed.get(map_id)
        if parsed is None or parsed[0] != version:
            try:
                state = json.loads(text())
            except ValueError:
                state = None
            parsed = self._parsed[map_id] = (version, state if isinstance(state, dict) else {"method": "none"})
        return parsed[1]

    _MAP_SELECT = (
        "SELECT m.id, m.title, m.space, m.created_at, m.version, m.projection, "
        "(SELECT COUNT(*) FROM items i WHERE i.map_id = m.id) FROM maps m"
    )

    def get_map(self, map_id: str) -> MapRecord:
        """Every request asks this, several times: the item count (a scan of the map's index, ms at 100k items)
        and the parsed projection are remembered per map version — every change to a map's items or projection
        bumps its version under this lock."""
        check_id(map_id, "map id")
        with self._lock:
            row = self._db.execute(
                "SELECT id, title, space, created_at, version FROM maps WHERE id = ?", (map_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"map {map_id} not found")
            counted = self._counts.get(map_id)
            if counted is None or counted[0] != row[4]:
                count = self._db.execute("SELECT COUNT(*) FROM items WHERE map_id = ?", (map_id,)).fetchone()[0]
                counted = self._counts[map_id] = (row[4], count)
            projection = self._projection(
                map_id,
                row[4],
                lambda: self._db.execute("SELECT projection FROM maps WHERE id = ?", (map_id,)).fetchone()[0],
            )
        return MapRecord(
            id=row[0],
            title=row[1],
            space=row[2],
            created_at=row[3],
            version=row[4],
            projection=projection,
            count=counted[1],
        )

    def list_maps(self) -> list[MapRecord]:
        with self._lock:
            rows = self._db.execute(self._MAP_SELECT + " ORDER BY m.created_at DESC").fetchall()
            return [self._map_from_row(r) for r in rows]

    def check_edit_key(self, map_id: str, key: str | None) -> bool:
        if not key:
            return False
        with self._lock:
            row = self._db.execute("SELECT edit_key_hash FROM maps WHERE id = ?", (map_id,)).fetchone()
        return row is not None and hmac.compare_digest(row[0], hash_key(key))

    def delete_map(self, map_id: str) -> None:
        """The map, its items (rows and thumbnails), tours and cached decodes. Rows go first, in one
        transaction; files after (a crash in between leaves only orphans, which the next start sweeps)."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM items WHERE map_id = ?", (map_id,))]
            self._db.execute("DELETE FROM maps WHERE id = ?", (map_id,))  # items, tours: ON DELETE CASCADE
            for cache in (self._counts, self._parsed, self._bounds, self._images_done):
                cache.pop(map_id, None)
            self._arrays_cache.pop(map_id, None)
        for item_id in ids:
            (self.thumb_dir / f"{item_id}.png").unlink(missing_ok=True)
        self.delete_cached_decodes(map_id)

    def delete_cached_decodes(self, map_id: str) -> int:
        """Remove every cached decode (PNGs, path metadata, terrain tiles) made from the map; returns how many."""
        return self.decodes.delete_map(map_id)

    # ------------------------------------------------------------------ items
    def add_items(
        self, map_id: str, items: Sequence[NewItem], xy: np.ndarray, projection: dict | None = None
    ) -> list[ItemRecord]:
        """Insert items at the given positions in one transaction (optionally with a new projection state)."""
        ids = [new_id() for _ in items]
        # Files first, rows after: a row never points at a missing file. Written side by side: each file's
        # fsync waits for the disk, and concurrent ones share its commits (a batch of 64: ~5x faster).
        thumbs = [(self.thumb_dir / f"{i}.png", it.thumbnail_png) for i, it in zip(ids, items) if it.thumbnail_png]
        list(_file_writers().map(lambda pair: self._write_atomic(*pair), thumbs))
        now = time.time()
        with self._lock:
            metas = self._meta_rows(map_id, items)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seq0 = self._db.execute(
                    "SELECT COALESCE(MAX(seq), -1) + 1 FROM items WHERE map_id = ?", (map_id,)
                ).fetchone()[0]
                self._db.executemany(
                    "INSERT INTO items(id, map_id, seq, kind, label, x, y, vector, decode_vector, latent, "
                    "latent_shape, has_thumbnail, created_at, pending_image, content_hash, meta) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            item_id,
                            map_id,
                            seq0 + i,
                            it.kind,
                            it.label,
                            float(xy[i, 0]),
                            float(xy[i, 1]),
                            _blob(it.vector),
                            _blob(it.decode_vector),
                            None if it.latent is None else _blob(it.latent),
                            None if it.latent is None else json.dumps(list(it.latent.shape)),
                            int(it.thumbnail_png is not None),
                            now,
                            int(it.pending_image),
                            it.content_hash,
                            metas[i],
                        )
                        for i, (item_id, it) in enumerate(zip(ids, items))
                    ],
                )
                self._bump(map_id, projection)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                for item_id in ids:
                    (self.thumb_dir / f"{item_id}.png").unlink(missing_ok=True)
                raise
        return [
            ItemRecord(
                id=i,
                map_id=map_id,
                kind=it.kind,
                label=it.label,
                x=float(xy[k, 0]),
                y=float(xy[k, 1]),
                has_thumbnail=it.thumbnail_png is not None,
                pending_image=it.pending_image,
            )
            for k, (i, it) in enumerate(zip(ids, items))
        ]

    def _meta_rows(self, map_id: str, items: Sequence[NewItem]) -> list[str | None]:
        """items.meta: a JSON array in column position order (names live once, in map_columns)."""
        if not any(it.meta for it in items):
            return [None] * len(items)
        positions = {c.name: c.position for c in self.columns(map_id)}
        unknown = {n for it in items for n in (it.meta or {}) if n not in positions}
        if unknown:
            raise ValueError(f"undeclared columns {sorted(unknown)}: declare_columns first")
        width = max(positions.values()) + 1
        rows = []
        for it in items:
            values = [None] * width
            for name, value in (it.meta or {}).items():
                values[positions[name]] = value
            rows.append(json.dumps(values, allow_nan=False) if it.meta else None)
        return rows

    def set_positions(self, map_id: str, ids: Sequence[str], xy: np.ndarray, projection: dict) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "UPDATE items SET x = ?, y = ? WHERE id = ? AND map_id = ?",
                    [(float(p[0]), float(p[1]), i, map_id) for i, p in zip(ids, xy)],
                )
                self._bump(map_id, projection)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete_item(self, map_id: str, item_id: str) -> None:
        check_id(item_id, "item id")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute("DELETE FROM items WHERE id = ? AND map_id = ?", (item_id, map_id))
                if cur.rowcount == 0:
                    raise NotFound(f"item {item_id} not found in map {map_id}")
                self._bump(map_id, None)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        (self.thumb_dir / f"{item_id}.png").unlink(missing_ok=True)

    # ------------------------------------------------------------------ prompt images that come later
    def pending_images(self, space: str, limit: int) -> list[ItemRecord]:
        """Prompts of `space`'s maps still waiting for their generated image, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join('i.' + c for c in ItemRecord._COLUMNS.split(', '))} FROM items i "
                "JOIN maps m ON m.id = i.map_id WHERE i.pending_image = 1 AND m.space = ? "
                "ORDER BY i.created_at, i.seq LIMIT ?",
                (space, limit),
            ).fetchall()
        return [ItemRecord.from_row(r) for r in rows]

    def pending_image_ids(self, map_id: str) -> list[str]:
        with self._lock:
            return sorted(
                r[0] for r in self._db.execute("SELECT id FROM items WHERE map_id = ? AND pending_image = 1", (map_id,))
            )

    def complete_image(
        self, item_id: str, decode_vector: np.ndarray | None, latent: np.ndarray | None, thumbnail_png: bytes | None
    ) -> bool:
        """A pending prompt's generated image arrived: its thumbnail, decode vector and latent replace the
        provisional ones (None: generation failed; keep the provisional vector, stop waiting). Positions and the
        map's version do not change (nothing moved, indices stay valid). False if the item is gone."""
        if thumbnail_png is not None:
            self._write_atomic(self.thumb_dir / f"{item_id}.png", thumbnail_png)
        with self._lock:
            if decode_vector is None:
                cur = self._db.execute(
                    "UPDATE items SET pending_image = 0 WHERE id = ? AND pending_image = 1", (item_id,)
                )
            else:
                cur = self._db.execute(
                    "UPDATE items SET decode_vector = ?, latent = ?, latent_shape = ?, has_thumbnail = ?, "
                    "pending_image = 0 WHERE id = ? AND pending_image = 1",
                    (
                        _blob(decode_vector),
                        None if latent is None else _blob(latent),
                        None if latent is None else json.dumps(list(latent.shape)),
                        int(thumbnail_png is not None),
                        item_id,
                    ),
                )
            row = self._db.execute("SELECT map_id FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is not None:  # decode vectors changed: cached arrays of this map are stale
                self._images_done[row[0]] = self._images_done.get(row[0], 0) + 1
        if row is None and thumbnail_png is not None:  # deleted meanwhile (not: completed by someone else)
            (self.thumb_dir / f"{item_id}.png").unlink(missing_ok=True)
        return cur.rowcount == 1

    def _bump(self, map_id: str, projection: dict | None) -> None:
        if projection is None:
            self._db.execute("UPDATE maps SET version = version + 1 WHERE id = ?", (map_id,))
        else:
            self._db.execute(
                "UPDATE maps SET version = version + 1, projection = ? WHERE id = ?", (json.dumps(projection), map_id)
            )

    def get_item(self, item_id: str) -> ItemRecord:
        check_id(item_id, "item id")
        with self._lock:
            row = self._db.execute(f"SELECT {ItemRecord._COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise NotFound(f"item {item_id} not found")
        return ItemRecord.from_row(row)

    def points(self, map_id: str) -> list[ItemRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {ItemRecord._COLUMNS} FROM items WHERE map_id = ? ORDER BY seq", (map_id,)
            ).fetchall()
        return [ItemRecord.from_row(r) for r in rows]

    def positions(self, map_id: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(n, 2) float32 positions, (n,) kind codes (see KIND_CODES) and the map's version they belong to,
        without loading any vectors."""
        with self._lock:  # every write holds the lock: rows and version are of one moment
            rows = self._db.execute("SELECT x, y, kind FROM items WHERE map_id = ? ORDER BY seq", (map_id,)).fetchall()
            version = self._map_version(map_id)
        xy = np.array([(r[0], r[1]) for r in rows], dtype=np.float32).reshape(-1, 2)
        kinds = np.array([KIND_CODES.get(r[2], 255) for r in rows], dtype=np.uint8)
        return xy, kinds, version

    def tile_source(self, map_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """What point tiles are made of, in points order, of one moment: (n, 2) float32 positions, kind codes,
        has-thumbnail flags, item ids (fixed-width bytes: 1M ids in ~16 MB, not 1M str objects), map version."""
        with self._lock:
            rows = self._db.execute(
                "SELECT x, y, kind, has_thumbnail, id FROM items WHERE map_id = ? ORDER BY seq", (map_id,)
            ).fetchall()
            version = self._map_version(map_id)
        xy = np.array([(r[0], r[1]) for r in rows], dtype=np.float32).reshape(-1, 2)
        kinds = np.array([KIND_CODES.get(r[2], 255) for r in rows], dtype=np.uint8)
        thumbs = np.array([bool(r[3]) for r in rows], dtype=bool)
        ids = np.array([r[4] for r in rows], dtype="S") if rows else np.zeros(0, dtype="S1")  # ids are ASCII
        return xy, kinds, thumbs, ids, version

    def labels(self, map_id: str, version: int | None = None) -> tuple[list[str], int]:
        """Every item's label in points order, and the map's version they belong to; with `version`,
        StaleVersion when the map changed since."""
        with self._lock:
            current = self._map_version(map_id, expected=version)
            rows = self._db.execute("SELECT label FROM items WHERE map_id = ? ORDER BY seq", (map_id,)).fetchall()
        return [r[0] for r in rows], current

    def ids_at(self, map_id: str, indices: Sequence[int], version: int) -> list[str]:
        """Item ids at positions in points order, as of `version`; StaleVersion when the map changed since."""
        with self._lock:
            self._map_version(map_id, expected=version)
            ids = [r[0] for r in self._db.execute("SELECT id FROM items WHERE map_id = ? ORDER BY seq", (map_id,))]
        bad = [i for i in indices if not 0 <= i < len(ids)]
        if bad:
            raise NotFound(f"map {map_id} has {len(ids)} items; no item at index {bad[0]}")
        return [ids[i] for i in indices]

    def _map_version(self, map_id: str, expected: int | None = None) -> int:
        """The map's version (call under the lock); StaleVersion if it is not `expected` (when given)."""
        row = self._db.execute("SELECT version FROM maps WHERE id = ?", (map_id,)).fetchone()
        if row is None:
            raise NotFound(f"map {map_id} not found")
        if expected is not None and int(row[0]) != expected:
            raise StaleVersion(
                f"map {map_id} changed since it was loaded (version {expected}, now {row[0]}): reload it"
            )
        return int(row[0])

    def bounds(self, map_id: str) -> list[float] | None:
        """[xmin, ymin, xmax, ymax] of the map's points (None when empty), without loading them; remembered
        per map version (every decode request checks its point against them)."""
        with self._lock:
            version = self._map_version(map_id)
            cached = self._bounds.get(map_id)
            if cached is not None and cached[0] == version:
                return cached[1]
            row = self._db.execute(
                "SELECT MIN(x), MIN(y), MAX(x), MAX(y) FROM items WHERE map_id = ?", (map_id,)
            ).fetchone()
            bounds = None if row is None or row[0] is None else [float(v) for v in row]
            self._bounds[map_id] = (version, bounds)
            return bounds

    def item_at(self, map_id: str, index: int) -> ItemRecord:
        if not 0 <= index < MAX_SQL_INT:  # SQLite integers are 64-bit: a larger one would not even bind
            raise NotFound(f"map {map_id} has no item at index {index}")
        with self._lock:
            row = self._db.execute(
                f"SELECT {ItemRecord._COLUMNS} FROM items WHERE map_id = ? ORDER BY seq LIMIT 1 OFFSET ?",
                (map_id, index),
            ).fetchone()
        if row is None or index < 0:
            raise NotFound(f"map {map_id} has no item at index {index}")
        return ItemRecord.from_row(row)

    def head_arrays(self, map_id: str, limit: int) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Vectors, kinds and positions of the map's first `limit` items (bulk builds place against them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT vector, kind, x, y FROM items WHERE map_id = ? ORDER BY seq LIMIT ?", (map_id, limit)
            ).fetchall()
        return (
            _stack([r[0] for r in rows]),
            [r[1] for r in rows],
            np.array([(r[2], r[3]) for r in rows], dtype=np.float32).reshape(-1, 2),
        )

    def has_cached_arrays(self, map_id: str, arrays: MapArrays) -> bool:
        cached = self._arrays_cache.get(map_id)
        return cached is not None and cached[1] is arrays

    def get_arrays(self, map_id: str) -> MapArrays:
        """The map's vectors and positions, cached in memory until the map changes."""
        with self._lock:
            # Items change with the version; decode vectors also when a prompt's image arrives.
            key = (self.get_map(map_id).version, self._images_done.get(map_id, 0))
            cached = self._arrays_cache.get(map_id)
            if cached and cached[0] == key:
                self._arrays_cache.move_to_end(map_id)
                return cached[1]
            rows = self._db.execute(
                "SELECT id, kind, label, x, y, vector, decode_vector, latent, latent_shape "
                "FROM items WHERE map_id = ? ORDER BY seq",
                (map_id,),
            ).fetchall()
        arrays = MapArrays(
            ids=[r[0] for r in rows],
            kinds=[r[1] for r in rows],
            labels=[r[2] for r in rows],
            xy=np.array([[r[3], r[4]] for r in rows], dtype=np.float32).reshape(-1, 2),
            vectors=_stack([r[5] for r in rows]),
            decode_vectors=_stack([r[6] for r in rows]),
            latents=[
                None if r[7] is None else np.frombuffer(r[7], dtype=np.float32).reshape(json.loads(r[8])) for r in rows
            ],
        )
        self._arrays_cache[map_id] = (key, arrays)
        self._arrays_cache.move_to_end(map_id)
        while len(self._arrays_cache) > ARRAY_CACHE_MAPS:
            self._arrays_cache.popitem(last=False)
        return arrays

    # ------------------------------------------------------------------ tours
    def save_tour(self, map_id: str, title: str, steps: list[dict]) -> dict:
        tour = {"id": new_id(), "map_id": map_id, "title": title, "steps": steps, "created_at": time.time()}
        with self._lock:
            self._db.execute(
                "INSERT INTO tours(id, map_id, title, steps, created_at) VALUES (?, ?, ?, ?, ?)",
                (tour["id"], map_id, title, json.dumps(steps), tour["created_at"]),
            )
        return tour

    def tours(self, map_id: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, map_id, title, steps, created_at FROM tours WHERE map_id = ? ORDER BY created_at", (map_id,)
            ).fetchall()
        return [
            {"id": r[0], "map_id": r[1], "title": r[2], "steps": json.loads(r[3]), "created_at": r[4]} for r in rows
        ]

    def get_tour(self, map_id: str, tour_id: str) -> dict:
        check_id(tour_id, "tour id")
        for tour in self.tours(map_id):
            if tour["id"] == tour_id:
                return tour
        raise NotFound(f"tour {tour_id} not found on map {map_id}")

    def delete_tour(self, map_id: str, tour_id: str) -> None:
        check_id(tour_id, "tour id")
        with self._lock:
            if self._db.execute("DELETE FROM tours WHERE id = ? AND map_id = ?", (tour_id, map_id)).rowcount == 0:
                raise NotFound(f"tour {tour_id} not found on map {map_id}")

    # ------------------------------------------------------------------ files
    def read_thumbnail(self, item_id: str) -> bytes:
        path = self.thumb_dir / f"{check_id(item_id, 'item id')}.png"
        # O_NOFOLLOW: a symlink planted in the data directory is never followed out of it.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise NotFound(f"the thumbnail of item {item_id} is not available") from None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    # Decoded pictures live in the bounded decode cache (decode_cache.py), keyed by decode_keys.py.
    def cached_decode(self, key: str) -> bytes | None:
        return self.decodes.get(f"{check_key(key)}.png")

    def store_decode(self, key: str, png: bytes, map_id: str | None = None) -> None:
        self.decodes.put(f"{check_key(key)}.png", png, map_id)

    def store_decode_meta(self, key: str, meta: dict, map_id: str | None = None) -> None:
        self.decodes.put(f"{check_key(key)}.json", json.dumps(meta).encode(), map_id)

    def decode_meta(self, key: str) -> dict:
        data = self.decodes.get(f"{check_key(key)}.json")
        if data is None:
            raise NotFound(f"no decoded path {key}")
        return json.loads(data)

    def decode_map(self, key: str) -> str | None:
        """The map a cached decode was made from (None if unknown)."""
        return self.decodes.map_of(f"{check_key(key)}.png")

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


_FILE_WRITERS: list[ThreadPoolExecutor] = []
_FILE_WRITERS_LOCK = threading.Lock()


def _file_writers() -> ThreadPoolExecutor:
    with _FILE_WRITERS_LOCK:
        if not _FILE_WRITERS:
            _FILE_WRITERS.append(ThreadPoolExecutor(FILE_WRITER_THREADS, thread_name_prefix="store-files"))
        return _FILE_WRITERS[0]


def _stack(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(b, dtype=np.float32) for b in blobs])
