"""k nearest neighbours by cosine over a map's unit vectors: exact (one matrix-vector product) for maps below
`neighbor_index_min_items`, an approximate faiss index above, re-ranked exactly.

The approximate index is IVF with 8-bit scalar quantisation (inner product): ~1 byte per dimension per item
on top of the vectors the map already holds (0.5 GB at 1M × 512), trained deterministically. It returns
`rerank` × k candidates that are re-scored against the original float32 vectors, so the similarities handed
back are exact and the order is exact among the candidates. bench/neighbors.py measures p50 per query and
recall@10 against exact search. Without faiss installed, search is exact at every size.

An index is saved beside the map's arrays once built (`save`, `VectorIndex.load`; Explorer and `latentmap
build` do this), so a server start reads it in a second instead of rebuilding it for minutes while every
query at 1M items scans the whole map (273 ms p50 in bench/scale.py before).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401

        return True
    except ImportError:
        return False


class VectorIndex:
    """Build once per map version from unit vectors (n, d); `nearest(query, k)` → (indices, similarities)."""

    def __init__(
        self,
        unit_vectors: np.ndarray,
        min_items: int = 100_000,
        nprobe: int = 16,
        nlist: int = 0,
        rerank: int = 4,
        seed: int = 0,
        built=None,
    ):
        self.vectors = np.ascontiguousarray(unit_vectors, dtype=np.float32)  # no copy when already float32
        n, d = self.vectors.shape if self.vectors.ndim == 2 else (0, 0)
        self.rerank = max(1, rerank)
        self._index = None
        self.kind = "exact"
        if built is not None:  # read from a file (load)
            built.nprobe = min(nprobe, built.nlist)
            self._index = built
            self.kind = f"faiss IVF{built.nlist},SQ8 nprobe={built.nprobe} rerank×{self.rerank} (saved)"
        elif n >= max(1, min_items) and faiss_available():
            import faiss

            nlist = nlist or int(min(65536, max(16, 2 * np.sqrt(n))))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
            index.cp.seed = seed  # k-means initialisation: same vectors, same index
            train_n = min(n, 40 * nlist)  # faiss wants >= 39 per list
            sample = np.sort(np.random.default_rng(seed).choice(n, size=train_n, replace=False))
            index.train(self.vectors[sample])
            index.add(self.vectors)
            index.nprobe = min(nprobe, nlist)
            self._index = index
            self.kind = f"faiss IVF{nlist},SQ8 nprobe={index.nprobe} rerank×{self.rerank}"
        self._keep_quantizer = self._index.quantizer if self._index is not None else None

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def approximate(self) -> bool:
        return self._index is not None

    def save(self, path: Path) -> None:
        """Write the faiss index to `path` (a temp name, fsynced, renamed: never a half-written index)."""
        import faiss

        tmp = path.with_name(f".tmp-{path.name}")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, unit_vectors: np.ndarray, nprobe: int = 16, rerank: int = 4) -> VectorIndex | None:
        """The index saved at `path` for these vectors, or None (no file, no faiss, or not of these vectors)."""
        if not path.is_file() or not faiss_available():
            return None
        import faiss

        try:
            owner = faiss.read_index(str(path))
        except RuntimeError:  # unreadable: built again
            return None
        built = faiss.downcast_index(owner)  # a view of `owner`'s C++ object: `owner` must stay alive with it
        if built.ntotal != len(unit_vectors) or built.d != unit_vectors.shape[1] or not hasattr(built, "nlist"):
            return None
        index = cls(unit_vectors, nprobe=nprobe, rerank=rerank, built=built)
        index._owner = owner
        return index

    def nearest(self, query: np.ndarray, k: int, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine similarities of the k nearest items to one unit `query` (d,), best first;
        `exclude` (an item index) is never returned."""
        n = len(self.vectors)
        k = max(0, min(k, n - (exclude is not None)))
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        want = k + (exclude is not None)
        if self._index is None:
            sims = self.vectors @ q
            candidates = np.argpartition(-sims, want - 1)[:want] if want < n else np.arange(n)
            cand_sims = sims[candidates]
        else:
            _, found = self._index.search(q[None], min(n, want * self.rerank))
            candidates = found[0][found[0] >= 0]
            cand_sims = self.vectors[candidates] @ q  # exact re-rank
        if exclude is not None:
            keep = candidates != exclude
            candidates, cand_sims = candidates[keep], cand_sims[keep]
        order = np.lexsort((candidates, -cand_sims))[:k]  # by similarity, ties by index
        return candidates[order].astype(np.int64), cand_sims[order].astype(np.float32)
