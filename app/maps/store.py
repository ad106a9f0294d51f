"""All persistence: SQLite (WAL) for maps, items and metadata; per map, append-only array files of vectors
and latents (memory-mapped when read, never loaded into Python objects); PNG files for thumbnails and cached
decodes. No other module touches the data directory.

Array files (`arrays/<map id>/`): `vectors.bin` holds fixed-width rows of the map's dtype (`array_dtype` when
the map got its first items: float32, or float16 for half the bytes; BLOB-era maps are float32, so their decodes
stay bit for bit), `latents.bin` float32 rows of the map's latent shape. An item row names its rows (`vector_slot`, `decode_slot`: an image's
decode vector is its vector, one row; `latent_slot`). Rows are only ever appended; `map_arrays` holds how many
are committed.

Crash safety: each ingest is one transaction. Array rows are written past the committed count and fsynced
inside that transaction (SQLite's write lock is held: no other writer, in any process, is appending), then the
item rows and the new count commit together; a tail beyond the committed count (a crash, a rollback) is never
read and is cut off by the next write. Files are written to a temp name, fsynced and renamed into place
*before* the rows that reference them are committed. So an acknowledged item is always whole and a
half-written one is never visible. BLOB-era databases are migrated on open in one transaction (arrays written
and fsynced first, then the items table is rebuilt without the BLOB columns and committed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
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
from ..settings import DEFAULT_ARRAY_DTYPE, DEFAULT_DECODE_CACHE_BYTES
from .decode_cache import DecodeCache

FILE_WRITER_THREADS = 8  # thumbnail files of a batch written (and fsync-ed) at once

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{6,64}$")

ITEMS_TABLE = """(
    id TEXT PRIMARY KEY,
    map_id TEXT NOT NULL REFERENCES maps(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    x REAL NOT NULL,
    y REAL NOT NULL,
    vector_slot INTEGER NOT NULL,  -- row of the map's vectors.bin: the raw CLIP embedding
    decode_slot INTEGER NOT NULL,  -- row of vectors.bin: the image-side embedding the decoder is conditioned on
    latent_slot INTEGER,           -- row of the map's latents.bin (VAE latent), or NULL
    has_thumbnail INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    pending_image INTEGER NOT NULL DEFAULT 0,  -- a prompt whose image (thumbnail, decode vector) is still to come
    content_hash TEXT,
    meta TEXT
);
"""

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
CREATE TABLE IF NOT EXISTS items {ITEMS}CREATE INDEX IF NOT EXISTS items_by_map ON items(map_id, seq);
CREATE TABLE IF NOT EXISTS map_arrays (        -- a map's array files (see the module docstring)
    map_id TEXT PRIMARY KEY REFERENCES maps(id) ON DELETE CASCADE,
    dtype TEXT NOT NULL,                       -- of vectors.bin: float16 or float32
    dim INTEGER NOT NULL,
    vector_rows INTEGER NOT NULL DEFAULT 0,    -- committed rows of vectors.bin
    latent_shape TEXT,                         -- JSON shape of one latent (latents.bin rows are float32)
    latent_rows INTEGER NOT NULL DEFAULT 0     -- committed rows of latents.bin
);
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
""".replace("{ITEMS}", ITEMS_TABLE)

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
    """96 random bits, URL-safe; never leading with "-", which a command line would read as an option."""
    while True:
        token = secrets.token_urlsafe(12)
        if not token.startswith("-"):
            return token


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
    """Everything numeric about a map's items, in insertion order. `vectors` and `decode_vectors` are read-only
    views of the map's memory-mapped file (float16 or float32: cast rows before computing with them)."""

    ids: list[str]
    kinds: list[str]
    labels: list[str]
    xy: np.ndarray  # (n, 2)
    vectors: np.ndarray  # (n, dim)
    decode_vectors: np.ndarray  # (n, dim)
    latents: Sequence[np.ndarray | None] = field(default_factory=list)
    # which vector rows, of which kinds, in this order: what the map's projection vectors are made of (their
    # file, Store.map_vectors_file, is named by it; a refit moves items without changing it)
    content_key: str = ""

    def __len__(self) -> int:
        return len(self.ids)


ARRAY_DTYPES = {"float16": np.float16, "float32": np.float32}
VECTORS_FILE, LATENTS_FILE = "vectors.bin", "latents.bin"
ITEM_COLUMNS = [
    line.split()[0] for line in ITEMS_TABLE.strip("();\n").splitlines() if line.strip() and not line.startswith("(")
]


def _row_bytes(dtype: str | None, dim: int | None) -> int:
    return 0 if dtype is None else np.dtype(ARRAY_DTYPES[dtype]).itemsize * int(dim)


def _latent_width(shape: str | None) -> int:
    return 0 if shape is None else int(np.prod(json.loads(shape)))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_rows(path: Path, committed_bytes: int, data: bytes) -> None:
    """Write `data` right after the committed rows (cutting off any uncommitted tail first) and fsync it."""
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != committed_bytes:
            os.ftruncate(fd, committed_bytes)
        view, offset = memoryview(data), committed_bytes
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _rows(path: Path, dtype, rows: int, shape: tuple) -> np.ndarray:
    """The first `rows` rows of an array file, memory-mapped read-only (an empty array for none)."""
    if rows == 0:
        return np.zeros((0, *shape), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(rows, *shape))


def _pick(array: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """array[slots]: a view when the slots are evenly spaced (how appended maps are laid out), else a copy."""
    n = len(slots)
    if n == 0:
        return array[:0]
    step = int(slots[1] - slots[0]) if n > 1 else 1
    if step > 0 and int(slots[-1]) == int(slots[0]) + step * (n - 1) and np.all(np.diff(slots) == step):
        return array[int(slots[0]) : int(slots[-1]) + 1 : step]
    return np.asarray(array[slots])


class LatentRows(Sequence):
    """The map's latents in points order, read from the memory-mapped file when asked (None: no latent)."""

    def __init__(self, rows: np.ndarray, slots: np.ndarray):
        self._rows, self._slots = rows, slots  # slots: -1 where an item has no latent

    def __len__(self) -> int:
        return len(self._slots)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        slot = int(self._slots[i])
        return None if slot < 0 else np.array(self._rows[slot])  # a copy: callers may keep it


class Store:
    def __init__(
        self,
        data_dir: str | Path,
        decode_cache_bytes: int = DEFAULT_DECODE_CACHE_BYTES,
        array_dtype: str = DEFAULT_ARRAY_DTYPE,
    ):
        if array_dtype not in ARRAY_DTYPES:
            raise ValueError(f"array_dtype must be one of {', '.join(ARRAY_DTYPES)}, not {array_dtype}")
        self.array_dtype = array_dtype  # of new maps' vectors.bin
        self.data_dir = Path(data_dir)
        self.thumb_dir = self.data_dir / "thumbnails"
        self.decode_dir = self.data_dir / "decodes"
        self.array_dir = self.data_dir / "arrays"
        self.check_writable(self.data_dir)
        for d in (self.thumb_dir, self.decode_dir, self.array_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.data_dir / "latentmap.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        for table, column, decl in (
            ("items", "pending_image", "INTEGER NOT NULL DEFAULT 0"),  # data directories made before the column
            ("items", "content_hash", "TEXT"),  # data directories made before ingest
            ("items", "meta", "TEXT"),
            ("maps", "source", "TEXT"),
        ):
            if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        if "vector" in {r[1] for r in self._db.execute("PRAGMA table_info(items)")}:
            self._migrate_blobs()
        self._db.execute("CREATE INDEX IF NOT EXISTS items_pending ON items(map_id) WHERE pending_image = 1")
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
        """Remove what a crash can leave behind: temp files, thumbnails whose rows never committed, array files
        of deleted maps, and array rows past the committed count (under the write lock: no writer is mid-way)."""
        for d in (self.thumb_dir, self.decode_dir):
            for tmp in d.glob(".tmp-*"):
                tmp.unlink(missing_ok=True)
        known = {r[0] for r in self._db.execute("SELECT id FROM items WHERE has_thumbnail = 1")}
        for thumb in self.thumb_dir.glob("*.png"):
            if thumb.stem not in known:
                thumb.unlink(missing_ok=True)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # another process is writing (a long refit): its next write cuts tails
                return
            try:
                committed = {
                    r[0]: r[1:]
                    for r in self._db.execute(
                        "SELECT m.id, a.dtype, a.dim, a.vector_rows, a.latent_shape, a.latent_rows "
                        "FROM maps m LEFT JOIN map_arrays a ON a.map_id = m.id"
                    )
                }
                for folder in self.array_dir.iterdir():
                    for tmp in folder.glob(".tmp-*"):  # a neighbour index being written
                        tmp.unlink(missing_ok=True)
                    if folder.name not in committed:  # the map was deleted (or never committed its first items)
                        shutil.rmtree(folder, ignore_errors=True)
                        continue
                    dtype, dim, vector_rows, latent_shape, latent_rows = committed[folder.name]
                    if dtype is None:
                        vector_rows, latent_rows = 0, 0
                    vectors, latents = folder / VECTORS_FILE, folder / LATENTS_FILE
                    if vectors.exists() and vector_rows * _row_bytes(dtype, dim) < vectors.stat().st_size:
                        os.truncate(vectors, vector_rows * _row_bytes(dtype, dim))
                    width = _latent_width(latent_shape)
                    if latents.exists() and latent_rows * width * 4 < latents.stat().st_size:
                        os.truncate(latents, latent_rows * width * 4)
            finally:
                self._db.execute("COMMIT")

    def _migrate_blobs(self) -> None:
        """A BLOB-era database: every map's vectors and latents are written to its array files (float32, as
        they were: the same decodes, bit for bit) and fsynced, then the items table is rebuilt without the
        BLOB columns, all in one transaction. A crash midway leaves the old database as it was (the files
        written so far are uncommitted tails, cut off when the migration runs again at the next open)."""
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(items)")]
        keep = [c for c in ITEM_COLUMNS if c in cols and c not in ("vector_slot", "decode_slot", "latent_slot")]
        self._db.execute("PRAGMA foreign_keys=OFF")  # the table rebuild (a no-op inside a transaction: set first)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DROP TABLE IF EXISTS temp.slots")
            self._db.execute(
                "CREATE TEMP TABLE slots (id TEXT PRIMARY KEY, vector_slot INTEGER, decode_slot INTEGER, "
                "latent_slot INTEGER)"
            )
            for (map_id,) in self._db.execute("SELECT DISTINCT map_id FROM items").fetchall():
                self._migrate_map(map_id)
            self._db.execute("CREATE TABLE items_new " + ITEMS_TABLE)
            self._db.execute(
                f"INSERT INTO items_new ({', '.join(keep)}, vector_slot, decode_slot, latent_slot) "
                f"SELECT {', '.join('i.' + c for c in keep)}, s.vector_slot, s.decode_slot, s.latent_slot "
                "FROM items i JOIN temp.slots s ON s.id = i.id"
            )
            self._db.execute("DROP TABLE items")
            self._db.execute("ALTER TABLE items_new RENAME TO items")
            self._db.execute("CREATE INDEX IF NOT EXISTS items_by_map ON items(map_id, seq)")
            self._db.execute("DROP TABLE temp.slots")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._db.execute("PRAGMA foreign_keys=ON")

    def _migrate_map(self, map_id: str) -> None:
        folder = self.array_dir / map_id
        folder.mkdir(exist_ok=True)
        dim = None
        latent_shape = None
        vector_rows = latent_rows = 0
        cursor = self._db.execute(
            "SELECT id, vector, decode_vector, latent, latent_shape FROM items WHERE map_id = ? ORDER BY seq",
            (map_id,),
        )
        with open(folder / VECTORS_FILE, "wb") as vf, open(folder / LATENTS_FILE, "wb") as lf:
            while rows := cursor.fetchmany(4096):
                slots = []
                for item_id, vector, decode_vector, latent, shape in rows:
                    v = np.frombuffer(vector, dtype=np.float32)
                    dim = dim if dim is not None else len(v)
                    d = np.frombuffer(decode_vector, dtype=np.float32)
                    if len(v) != dim or len(d) != dim:
                        raise DataDirError(f"map {map_id}: item {item_id} has vectors of another width")
                    vf.write(v.tobytes())
                    vector_slot = vector_rows
                    vector_rows += 1
                    if vector != decode_vector:
                        vf.write(d.tobytes())
                        vector_rows += 1
                    latent_slot = None
                    if latent is not None:
                        item_shape = json.loads(shape)
                        latent_shape = latent_shape or item_shape
                        if item_shape != latent_shape:
                            raise DataDirError(f"map {map_id}: item {item_id} has a latent of another shape")
                        lf.write(latent)
                        latent_slot, latent_rows = latent_rows, latent_rows + 1
                    slots.append((item_id, vector_slot, vector_rows - 1, latent_slot))
                self._db.executemany("INSERT INTO temp.slots VALUES (?, ?, ?, ?)", slots)
            for f in (vf, lf):
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(folder)
        self._db.execute(
            "INSERT OR REPLACE INTO map_arrays(map_id, dtype, dim, vector_rows, latent_shape, latent_rows) "
            "VALUES (?, 'float32', ?, ?, ?, ?)",
            (map_id, dim or 0, vector_rows, None if latent_shape is None else json.dumps(latent_shape), latent_rows),
        )

    @staticmethod
    def check_writable(data_dir: Path) -> None:
        """Fail at start, with a clear message, on a data dir we cannot write (read-only, full, not a dir)."""
        try:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            write_atomic(Path(data_dir) / ".write-probe", b"latentmap")
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
        # Open memory maps of these files (a request in flight) keep reading them until they are dropped.
        shutil.rmtree(self.array_dir / map_id, ignore_errors=True)
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
        list(_file_writers().map(lambda pair: write_atomic(*pair), thumbs))
        now = time.time()
        with self._lock:
            metas = self._meta_rows(map_id, items)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seq0 = self._db.execute(
                    "SELECT COALESCE(MAX(seq), -1) + 1 FROM items WHERE map_id = ?", (map_id,)
                ).fetchone()[0]
                vector_slots, decode_slots, latent_slots = self._append_arrays(
                    map_id,
                    np.stack([np.asarray(it.vector, np.float32).reshape(-1) for it in items]),
                    np.stack([np.asarray(it.decode_vector, np.float32).reshape(-1) for it in items]),
                    [it.latent for it in items],
                )
                self._db.executemany(
                    "INSERT INTO items(id, map_id, seq, kind, label, x, y, vector_slot, decode_slot, latent_slot, "
                    "has_thumbnail, created_at, pending_image, content_hash, meta) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            item_id,
                            map_id,
                            seq0 + i,
                            it.kind,
                            it.label,
                            float(xy[i, 0]),
                            float(xy[i, 1]),
                            vector_slots[i],
                            decode_slots[i],
                            latent_slots[i],
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

    def _array_state(self, map_id: str) -> tuple | None:
        """(dtype, dim, vector_rows, latent_shape JSON, latent_rows) of the map's array files, None before any."""
        return self._db.execute(
            "SELECT dtype, dim, vector_rows, latent_shape, latent_rows FROM map_arrays WHERE map_id = ?", (map_id,)
        ).fetchone()

    def _append_arrays(
        self,
        map_id: str,
        vectors: np.ndarray | None,
        decode_vectors: np.ndarray,
        latents: Sequence[np.ndarray | None],
    ) -> tuple[list[int], list[int], list[int | None]]:
        """Append rows to the map's array files and count them in map_arrays; call inside a write transaction
        (the caller commits the item rows that reference them, or rolls everything back). Returns each item's
        vector, decode and latent slot. An image's decode vector is its vector: one row serves both.
        `vectors` None: decode vectors only (a prompt's generated image arrived)."""
        state = self._array_state(map_id)
        if state is None:
            dtype, dim, vector_rows, latent_shape, latent_rows = self.array_dtype, vectors.shape[1], 0, None, 0
            self._db.execute("INSERT INTO map_arrays(map_id, dtype, dim) VALUES (?, ?, ?)", (map_id, dtype, dim))
        else:
            dtype, dim, vector_rows, latent_shape, latent_rows = state
        if decode_vectors.shape[1] != dim or (vectors is not None and vectors.shape[1] != dim):
            raise ValueError(f"map {map_id} holds {dim}-d vectors, not {decode_vectors.shape[1]}-d")
        folder = self.array_dir / map_id
        folder.mkdir(exist_ok=True)
        np_dtype = ARRAY_DTYPES[dtype]
        if vectors is None:
            rows = decode_vectors.astype(np_dtype)
            vector_slots = np.zeros(0, np.int64)
            decode_slots = vector_rows + np.arange(len(rows))
        else:
            separate = ~np.all(vectors == decode_vectors, axis=1)
            per_item = 1 + separate.astype(np.int64)
            vector_slots = vector_rows + np.concatenate([[0], np.cumsum(per_item)[:-1]]).astype(np.int64)
            decode_slots = vector_slots + separate
            rows = np.empty((int(per_item.sum()), dim), np_dtype)
            rows[vector_slots - vector_rows] = vectors
            rows[decode_slots[separate] - vector_rows] = decode_vectors[separate]
        _append_rows(folder / VECTORS_FILE, vector_rows * _row_bytes(dtype, dim), rows.tobytes())
        latent_slots: list[int | None] = [None] * len(latents)
        present = [i for i, lat in enumerate(latents) if lat is not None]
        if present:
            shape = list(np.shape(latents[present[0]]))
            if latent_shape is None:
                latent_shape = json.dumps(shape)
            want = json.loads(latent_shape)
            if any(list(np.shape(latents[i])) != want for i in present):
                raise ValueError(f"map {map_id} holds latents of shape {want}")
            block = np.stack([np.asarray(latents[i], np.float32) for i in present])
            _append_rows(folder / LATENTS_FILE, latent_rows * _latent_width(latent_shape) * 4, block.tobytes())
            for k, i in enumerate(present):
                latent_slots[i] = latent_rows + k
            latent_rows += len(present)
        self._db.execute(
            "UPDATE map_arrays SET vector_rows = ?, latent_shape = ?, latent_rows = ? WHERE map_id = ?",
            (vector_rows + len(rows), latent_shape, latent_rows, map_id),
        )
        return vector_slots.tolist(), decode_slots.tolist(), latent_slots

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
        """New positions of the items `ids` (an item deleted since is left out), one transaction. Rows are
        updated by rowid in the table's own order: each page is read and written once (by id, a random
        order, a 1M-item refit spent most of its update looking items up)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                rows = self._db.execute(
                    "SELECT rowid, id FROM items WHERE map_id = ? ORDER BY seq", (map_id,)
                ).fetchall()
                rowids = np.array([r[0] for r in rows], dtype=np.int64)
                if len(rows) == len(ids) and all(r[1] == i for r, i in zip(rows, ids)):
                    picked = xy
                else:  # the map changed since `ids` were read: the items still there
                    where = {item_id: k for k, item_id in enumerate(ids)}
                    keep = [(n, where[r[1]]) for n, r in enumerate(rows) if r[1] in where]
                    rowids = rowids[[n for n, _ in keep]]
                    picked = xy[[k for _, k in keep]].reshape(-1, 2)
                order = np.argsort(rowids, kind="stable")
                self._db.executemany(
                    "UPDATE items SET x = ?, y = ? WHERE rowid = ?",
                    zip(picked[order, 0].tolist(), picked[order, 1].tolist(), rowids[order].tolist()),
                )
                version = self._map_version(map_id)
                self._bump(map_id, projection)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # The map's cached arrays with the new positions (the same items): not read back from SQLite again
            key = (version, self._images_done.get(map_id, 0))
            cached = self._arrays_cache.get(map_id)
            if picked is xy and cached is not None and cached[0] == key and cached[1].ids == list(ids):
                moved = dataclasses.replace(cached[1], xy=xy.astype(np.float32))
                self._arrays_cache[map_id] = ((version + 1, key[1]), moved)

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
            write_atomic(self.thumb_dir / f"{item_id}.png", thumbnail_png)
        with self._lock:
            row = self._db.execute("SELECT map_id FROM items WHERE id = ? AND pending_image = 1", (item_id,)).fetchone()
            if row is None:
                changed = 0
            elif decode_vector is None:
                changed = self._db.execute(
                    "UPDATE items SET pending_image = 0 WHERE id = ? AND pending_image = 1", (item_id,)
                ).rowcount
            else:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    d = np.asarray(decode_vector, np.float32).reshape(1, -1)
                    _, (decode_slot,), (latent_slot,) = self._append_arrays(row[0], None, d, [latent])
                    changed = self._db.execute(
                        "UPDATE items SET decode_slot = ?, latent_slot = ?, has_thumbnail = ?, pending_image = 0 "
                        "WHERE id = ? AND pending_image = 1",
                        (decode_slot, latent_slot, int(thumbnail_png is not None), item_id),
                    ).rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            row = self._db.execute("SELECT map_id FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is not None:  # decode vectors changed: cached arrays of this map are stale
                self._images_done[row[0]] = self._images_done.get(row[0], 0) + 1
        if row is None and thumbnail_png is not None:  # deleted meanwhile (not: completed by someone else)
            (self.thumb_dir / f"{item_id}.png").unlink(missing_ok=True)
        return changed == 1

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
        """Vectors (float32), kinds and positions of the map's first `limit` items (bulk builds place against
        them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT vector_slot, kind, x, y FROM items WHERE map_id = ? ORDER BY seq LIMIT ?", (map_id, limit)
            ).fetchall()
            vectors = self._vector_file(map_id)
        slots = np.array([r[0] for r in rows], dtype=np.int64)
        return (
            np.asarray(_pick(vectors, slots), dtype=np.float32),
            [r[1] for r in rows],
            np.array([(r[2], r[3]) for r in rows], dtype=np.float32).reshape(-1, 2),
        )

    def _vector_file(self, map_id: str) -> np.ndarray:
        """The committed rows of the map's vectors.bin, memory-mapped (call under the lock)."""
        state = self._array_state(map_id)
        if state is None:
            return np.zeros((0, 0), np.float32)
        dtype, dim, vector_rows = state[:3]
        return _rows(self.array_dir / map_id / VECTORS_FILE, ARRAY_DTYPES[dtype], vector_rows, (dim,))

    def _latent_file(self, map_id: str) -> np.ndarray:
        state = self._array_state(map_id)
        if state is None or state[3] is None:
            return np.zeros((0,), np.float32)
        shape = tuple(json.loads(state[3]))
        return _rows(self.array_dir / map_id / LATENTS_FILE, np.float32, state[4], shape)

    def neighbor_index_path(self, map_id: str, version: int) -> Path:
        """Where the map's saved neighbour index of this version lives (app/maps/index.py)."""
        return self._derived_file(map_id, "neighbors-v*.faiss", f"neighbors-v{int(version)}.faiss")

    def tile_index_path(self, map_id: str, version: int, fingerprint: str) -> Path:
        """Where the map's saved point-tile index of this version and tile settings lives (app/maps/tiles.py)."""
        return self._derived_file(map_id, "tiles-v*.npz", f"tiles-v{int(version)}-{fingerprint}.npz")

    def _derived_file(self, map_id: str, pattern: str, name: str) -> Path:
        """A file derived from one version of the map's items, beside its arrays; the other files of the same
        kind (`pattern`: older versions, other settings) are removed when one is asked for (they can never be
        used again)."""
        folder = self.array_dir / check_id(map_id, "map id")
        folder.mkdir(exist_ok=True)
        path = folder / name
        for old in folder.glob(pattern):
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def map_vectors_file(self, map_id: str, made_of: Sequence[bytes], rows: int, dim: int, make) -> np.ndarray:
        """The map's projection vectors (rows × dim float32), memory-mapped read-only: a server holds none of
        them in its own memory (4 GB at 1M × 1024). The file is named by what they are made of (`made_of`: the
        items' vector rows, the space). Made by `make()` (an iterator of row blocks, in order) when the file is
        not there yet: written to a temp name, fsynced and renamed. The files of other keys are removed
        (_derived_file; a process still reading one keeps its open map)."""
        h = hashlib.sha256()
        for part in made_of:
            h.update(len(part).to_bytes(8, "little") + part)
        path = self._derived_file(map_id, "map-vectors-*.bin", f"map-vectors-{h.hexdigest()[:32]}.bin")
        if not (path.is_file() and path.stat().st_size == rows * dim * 4):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".bin")
            try:
                with os.fdopen(fd, "wb") as f:
                    written = 0
                    for block in make():
                        block = np.ascontiguousarray(block, dtype=np.float32)
                        f.write(block.tobytes())
                        written += len(block)
                    f.flush()
                    os.fsync(f.fileno())
                if written != rows:
                    raise ValueError(f"map {map_id}: {written} projection vectors made for {rows} items")
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return _rows(path, np.float32, rows, (dim,))

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
                "SELECT id, kind, label, x, y, vector_slot, decode_slot, latent_slot "
                "FROM items WHERE map_id = ? ORDER BY seq",
                (map_id,),
            ).fetchall()
            # after the rows: the committed counts cover every slot they name, whoever appended since
            vector_file, latent_file = self._vector_file(map_id), self._latent_file(map_id)
        columns = list(zip(*rows)) if rows else [[]] * 8
        vector_slots, decode_slots = (np.array(columns[k], dtype=np.int64) for k in (5, 6))
        latent_slots = np.array([-1 if s is None else s for s in columns[7]], dtype=np.int64)
        content = hashlib.sha256(vector_slots.tobytes())
        content.update("\n".join(columns[1]).encode())
        arrays = MapArrays(
            content_key=content.hexdigest()[:32],
            ids=list(columns[0]),
            kinds=list(columns[1]),
            labels=list(columns[2]),
            xy=np.column_stack([np.array(columns[3], np.float32), np.array(columns[4], np.float32)]).reshape(-1, 2),
            vectors=_pick(vector_file, vector_slots) if rows else np.zeros((0, 0), np.float32),
            decode_vectors=_pick(vector_file, decode_slots) if rows else np.zeros((0, 0), np.float32),
            latents=LatentRows(latent_file, latent_slots),
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


def write_atomic(path: Path, data: bytes) -> None:
    """A whole file or none: written to a temp name beside it, fsynced, renamed over it."""
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
