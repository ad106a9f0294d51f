"""The decode cache: every decoded picture (clicks, path frames and strips, compare columns, variations,
upscales, terrain tiles) on disk under its key, within a byte budget, oldest written first out.

Everything in it can be made again bit for bit (its key names every input: decode_keys.py), so evicting only
costs time. The accounting is a small SQLite index beside the files (one row per file, a running total):
a write costs one indexed insert, never a directory scan. Writes and evictions of all threads and processes
sharing the directory are serialised by SQLite's write lock (BEGIN IMMEDIATE), so the total stays right with
concurrent writers. Reads touch only the file. An existing directory without an index is adopted once
(one scan at start).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from pathlib import Path

INDEX_NAME = "index.sqlite3"  # beside the directory (<dir>-index.sqlite3): the directory holds only pictures
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- write order: the smallest is evicted first
    name TEXT NOT NULL UNIQUE,              -- file name in the directory: <key>.png / <key>.json
    map_id TEXT,                            -- the map it was decoded from (delete_map), NULL if none
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_map ON entries(map_id);
CREATE TABLE IF NOT EXISTS total (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
"""


class DecodeCache:
    def __init__(self, directory: str | Path, budget_bytes: int, index_path: str | Path | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.budget = int(budget_bytes)
        self._lock = threading.Lock()  # one connection, shared by this process's threads
        index = Path(index_path) if index_path is not None else self.dir.parent / f"{self.dir.name}-{INDEX_NAME}"
        self._db = sqlite3.connect(index, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(SCHEMA)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT bytes FROM total").fetchone() is None:
                    self._adopt()
                self._unlink(self._evict(keep=None))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ reading
    def get(self, name: str) -> bytes | None:
        """The file's bytes, or None if it was never written or has been evicted."""
        try:  # O_NOFOLLOW: a symlink planted in the directory is never followed out of it
            fd = os.open(self.dir / name, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def map_of(self, name: str) -> str | None:
        """The map an entry was decoded from (None if unknown or not cached)."""
        with self._lock:
            row = self._db.execute("SELECT map_id FROM entries WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) the index counts."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            total = self._db.execute("SELECT bytes FROM total").fetchone()[0]
        return count, total

    # ------------------------------------------------------------------ writing
    def put(self, name: str, data: bytes, map_id: str | None = None) -> None:
        """Store `data` under `name` (atomically: readers see the old file or the new one, never half), then
        evict the oldest entries until the total is within the budget (never the one just written)."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=Path(name).suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    os.replace(tmp, self.dir / name)
                    row = self._db.execute("SELECT bytes FROM entries WHERE name = ?", (name,)).fetchone()
                    if row is None:
                        self._db.execute(
                            "INSERT INTO entries(name, map_id, bytes) VALUES (?, ?, ?)", (name, map_id, len(data))
                        )
                    else:
                        self._db.execute("UPDATE entries SET bytes = ? WHERE name = ?", (len(data), name))
                    self._db.execute("UPDATE total SET bytes = bytes + ?", (len(data) - (row[0] if row else 0),))
                    self._unlink(self._evict(keep=name))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete_map(self, map_id: str) -> int:
        """Drop every entry decoded from `map_id` (the map is being deleted); returns how many."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute("SELECT name, bytes FROM entries WHERE map_id = ?", (map_id,)).fetchall()
                self._db.execute("DELETE FROM entries WHERE map_id = ?", (map_id,))
                self._db.execute("UPDATE total SET bytes = bytes - ?", (sum(r[1] for r in rows),))
                self._unlink([r[0] for r in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    # ------------------------------------------------------------------ inside a write transaction
    def _evict(self, keep: str | None) -> list[str]:
        """Delete the oldest rows until the total fits; returns their file names. The caller unlinks them
        before committing, under the write lock, so no writer re-creates a file between the two (a reader that
        loses the race sees a miss and decodes again)."""
        total = self._db.execute("SELECT bytes FROM total").fetchone()[0]
        doomed: list[str] = []
        while total > self.budget:
            rows = self._db.execute(
                "SELECT seq, name, bytes FROM entries WHERE name IS NOT ? ORDER BY seq LIMIT 64", (keep,)
            ).fetchall()
            if not rows:
                break
            for seq, name, size in rows:
                if total <= self.budget:
                    break
                self._db.execute("DELETE FROM entries WHERE seq = ?", (seq,))
                total -= size
                doomed.append(name)
        self._db.execute("UPDATE total SET bytes = ?", (total,))
        return doomed

    def _adopt(self) -> None:
        """First start on a directory written before the index existed: count what is there, oldest first."""
        files = []
        for entry in os.scandir(self.dir):
            if (
                entry.is_file(follow_symlinks=False)
                and entry.name.endswith((".png", ".json"))
                and not entry.name.startswith(".")
            ):
                st = entry.stat(follow_symlinks=False)
                files.append((st.st_mtime_ns, entry.name, st.st_size))
        files.sort()
        self._db.executemany(
            "INSERT OR IGNORE INTO entries(name, map_id, bytes) VALUES (?, NULL, ?)",
            [(name, size) for _, name, size in files],
        )
        self._db.execute("INSERT INTO total(id, bytes) VALUES (0, ?)", (sum(f[2] for f in files),))

    def _unlink(self, names: list[str]) -> None:
        for name in names:
            (self.dir / name).unlink(missing_ok=True)
