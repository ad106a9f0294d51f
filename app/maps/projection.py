"""From vectors to 2D and back.

- fit: UMAP (cosine) for maps with enough items, PCA (exact, deterministic) below `umap_min_items`.
- place: new items land without moving anyone — exactly through the stored PCA basis, or (UMAP maps) at the
  similarity-weighted mean of their nearest existing items in the original space, then (maps fitted with the
  layout's scale on record) a short UMAP layout optimisation of the new points alone against the fixed map,
  as `UMAP.transform` does: a point whose neighbours sit in two islands moves into one instead of the gap.
- blend: a clicked 2D point becomes a vector by inverse-distance blending of the nearest items in 2D
  (measured: cosine 0.74 to the truth in milliseconds, vs 0.41 in seconds for UMAP.inverse_transform).

Coordinates are scaled into [-0.95, 0.95] at fit time (what WebGL scatter plots draw without a transform).

Speed (bench/projection.py, bench/README.md): umap-learn computes the neighbour graph of a map under 4,096
items through sklearn's `pairwise_distances` with a Python-called numba metric (~80% of a 2,000-item fit), and
above that with NN-descent. We hand it the *exact* cosine kNN instead (a blocked float32 matrix product,
`precomputed_knn`): the same graph (so the same quality), in a fraction of the time. Very large maps are fitted
on a deterministic sample and the rest is placed with `place` (`umap_fit_sample`). cuML's UMAP is used
automatically where it is importable and a CUDA device is present (`umap_backend`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

EXTENT = 0.95
UMAP_NEIGHBORS = 15  # n_neighbors of every fit (and of placement refinement)
REFINE_LEARNING_RATE = 0.05  # placement refinement: UMAP.transform uses 0.25, which needs 4x the epochs to settle


@dataclass
class Fit:
    xy: np.ndarray  # (n, 2) float32
    state: dict  # JSON-serialisable: method, fitted_count, and for PCA the basis


def fit(map_vectors: np.ndarray, umap_min_items: int, revision: int, seed: int = 42, *, settings=None) -> Fit:
    """2D positions for every vector. `settings` (an app.settings.Settings) carries the UMAP knobs; when it is
    not given they come from `Settings.from_env()` (defaults plus LATENTMAP_* variables)."""
    n = len(map_vectors)
    if n == 0:
        return Fit(np.zeros((0, 2), np.float32), {"method": "none", "revision": revision, "fitted_count": 0})
    if n < umap_min_items:
        return _fit_pca(map_vectors, revision)
    if settings is None:
        from ..settings import Settings

        settings = Settings.from_env()
    vectors = _unit(map_vectors)
    sample_size = max(int(settings.umap_fit_sample), umap_min_items, 16) if settings.umap_fit_sample > 0 else 0
    if 0 < sample_size < n:
        # Fit a deterministic sample, then place everyone else through it (existing code path, kNN in the
        # original space): the layout is the sample's, the cost is the sample's plus one blocked matmul.
        chosen = np.sort(np.random.default_rng(seed).choice(n, size=sample_size, replace=False))
        raw = np.empty((n, 2), np.float64)
        raw[chosen], backend = _umap_raw(vectors[chosen], seed, settings)
        rest = np.setdiff1d(np.arange(n), chosen)
        raw[rest] = _place_blocked(vectors, rest, vectors[chosen], raw[chosen], settings.place_neighbors)
    else:
        raw, backend = _umap_raw(vectors, seed, settings)
    centre, scale = _normaliser(raw)
    xy = ((raw - centre) * scale).astype(np.float32)
    # `scale` maps UMAP's own units to the stored ones: placement refinement works in UMAP's units.
    state = {
        "method": "umap",
        "revision": revision,
        "fitted_count": n,
        "seed": seed,
        "backend": backend,
        "scale": scale,
    }
    if 0 < sample_size < n:
        state["sampled"] = sample_size
    return Fit(xy, state)


def _unit(v: np.ndarray, block: int = 65_536) -> np.ndarray:
    """Rows scaled to length 1, float32; a block of rows at a time (no temporaries the size of a 1M map)."""
    v = np.asarray(v, dtype=np.float32)
    out = np.empty(v.shape, np.float32)
    for start in range(0, len(v), block):
        rows = v[start : start + block]
        out[start : start + block] = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return out


def _cuml_umap():
    try:
        import cupy  # noqa: F401
        from cuml.manifold import UMAP

        return UMAP if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # not installed, no driver, no device
        return None


def _umap_raw(vectors: np.ndarray, seed: int, settings) -> tuple[np.ndarray, str]:
    """Unnormalised UMAP coordinates of unit vectors, and the backend that made them."""
    n = len(vectors)
    n_neighbors = min(UMAP_NEIGHBORS, n - 1)
    # 0 = auto: umap-learn's 500 epochs below 4,096 items (cheap there), 200 from there on (umap-learn itself
    # switches at 10,000); measured Δ trustworthiness ≤ 0.002 at 10k for 2.5x less layout time (bench/README.md).
    n_epochs = int(settings.umap_epochs) or (None if n < 4096 else 200)
    backend = settings.umap_backend
    if backend in ("auto", "cuml"):
        gpu_umap = _cuml_umap()
        if gpu_umap is not None:
            reducer = gpu_umap(
                n_neighbors=n_neighbors,
                metric="cosine",
                random_state=seed,
                init="spectral",
                **({"n_epochs": n_epochs} if n_epochs else {}),
            )
            return np.asarray(reducer.fit_transform(vectors), dtype=np.float64), "cuml"
        if backend == "cuml":
            raise RuntimeError("umap_backend is 'cuml' but cuML (or a CUDA device) is not available")
    import warnings

    umap = _umap()
    knn = None
    if n <= settings.umap_exact_knn_max_items:
        knn = exact_knn(vectors, n_neighbors)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        metric="cosine",
        random_state=seed,
        init="spectral",
        n_epochs=n_epochs,
        precomputed_knn=(knn[0], knn[1], None) if knn else (None, None, None),
    )
    with warnings.catch_warnings():
        # "n_jobs overridden by random_state" and "no search index: transform unavailable": both expected
        # (we place new items ourselves and never call UMAP.transform).
        warnings.simplefilter("ignore", UserWarning)
        raw = reducer.fit_transform(vectors)
    return np.asarray(raw, dtype=np.float64), "umap-learn" + ("+exact-knn" if knn else "")


@functools.cache
def _umap():
    """umap-learn, with numba's on-disk cache turned on for its compiled functions: umap-learn asks for none,
    so every `latentmap build` and server start compiled them again before its first fit. Cached (in umap's
    __pycache__, or NUMBA_CACHE_DIR), a new process's first fit takes 2.1 s instead of 4.9 s, most of it now
    importing umap (bench/umap_start.py). The machine code, hence the layout, is the same either way; numba
    keys each entry by source file, signature and CPU."""
    import umap  # imported here: pulls in numba (seconds) and is only needed for fits
    import umap.layouts
    import umap.spectral
    import umap.utils
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    for module in (umap.umap_, umap.layouts, umap.spectral, umap.utils, umap.distances):
        for fn in vars(module).values():
            if isinstance(fn, CPUDispatcher) and isinstance(fn._cache, NullCache):
                try:
                    fn.enable_caching()
                except RuntimeError:  # no writable cache location: compiled in memory, as before
                    return umap
    return umap


def exact_knn(unit_vectors: np.ndarray, k: int, block_bytes: int = 16 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k nearest neighbours of every row (itself first, at distance 0), in row blocks so memory
    stays at ~`block_bytes`. Returns (indices int32 (n, k), cosine distances float32 (n, k)), umap's layout."""
    n = len(unit_vectors)
    k = min(k, n)
    rows = max(16, min(n, block_bytes // (4 * max(n, 1))))
    indices = np.empty((n, k), np.int32)
    dists = np.empty((n, k), np.float32)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        sims = unit_vectors[start:stop] @ unit_vectors.T
        sims[np.arange(stop - start), np.arange(start, stop)] = np.inf  # itself first, whatever rounding says
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -top_sims), axis=1)  # by similarity, ties by index: deterministic
        indices[start:stop] = np.take_along_axis(top, order, axis=1)
        d = 1.0 - np.take_along_axis(top_sims, order, axis=1)
        d[:, 0] = 0.0
        dists[start:stop] = np.maximum(d, 0.0)
    return indices, dists


def _place_blocked(vectors, which, existing_vectors, existing_xy, k, block_bytes: int = 64 << 20) -> np.ndarray:
    """Positions of vectors[which], a block of rows at a time (gathered per block: no copy of them all)."""
    rows = max(16, block_bytes // (4 * max(len(existing_vectors), 1)))
    out = np.empty((len(which), 2), np.float64)
    state = {"method": "umap"}
    for start in range(0, len(which), rows):
        block = vectors[which[start : start + rows]]
        out[start : start + rows] = place(block, existing_vectors, existing_xy, state, k)
    return out


def _fit_pca(vectors: np.ndarray, revision: int) -> Fit:
    mean = vectors.mean(0)
    centred = vectors - mean
    components = np.zeros((2, vectors.shape[1]), dtype=np.float64)
    if len(vectors) > 1:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        k = min(2, vt.shape[0])
        components[:k] = vt[:k]
        # SVD signs are arbitrary: fix them so a refit of the same data gives the same picture.
        for i in range(k):
            j = np.argmax(np.abs(components[i]))
            components[i] *= np.sign(components[i, j]) or 1.0
    raw = centred @ components.T
    centre, scale = _normaliser(raw)
    xy = ((raw - centre) * scale).astype(np.float32)
    state = {
        "method": "pca",
        "revision": revision,
        "fitted_count": len(vectors),
        "mean": mean.tolist(),
        "components": components.tolist(),
        "centre": centre.tolist(),
        "scale": scale,
    }
    return Fit(xy, state)


def _normaliser(raw: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = raw.min(0), raw.max(0)
    centre = (lo + hi) / 2
    half = float(np.max(hi - lo)) / 2
    return centre, (EXTENT / half if half > 1e-12 else 1.0)


def place(
    new_vectors: np.ndarray,
    existing_vectors: np.ndarray,
    existing_xy: np.ndarray,
    state: dict,
    k: int,
    refine_epochs: int = 0,
) -> np.ndarray:
    """2D positions for new items; existing positions are never touched. Deterministic."""
    if state.get("method") == "pca":
        raw = (new_vectors - np.asarray(state["mean"])) @ np.asarray(state["components"]).T
        xy = (raw - np.asarray(state["centre"])) * state["scale"]
        return np.clip(xy, -1.0, 1.0).astype(np.float32)
    k = min(k, existing_vectors.shape[0])
    scale = state.get("scale")
    refine = refine_epochs > 0 and scale and len(existing_xy) > UMAP_NEIGHBORS
    if refine:
        sims = new_vectors @ existing_vectors.T  # unit vectors: cosine similarity
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        nearest_sims = np.take_along_axis(sims, nearest, axis=1)
    else:
        nearest, nearest_sims = top_k_similar(new_vectors, existing_vectors, k)
    weights = 1.0 / np.square(1.0 - nearest_sims + 1e-3)  # closer in the original space counts far more
    weights /= weights.sum(1, keepdims=True)
    xy = np.einsum("nk,nkd->nd", weights, existing_xy[nearest])
    if refine:
        xy = _refine(sims, existing_xy / scale, xy / scale, refine_epochs) * scale
    return xy.astype(np.float32)


def top_k_similar(queries: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of each query's k most similar items (dot products of unit vectors).
    torch's matmul + topk: numpy's argpartition over every item was 70% of a 100k-item build
    (bench/README.md, scale); same result, ~50x faster."""
    import torch

    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    x = torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32))
    with torch.no_grad():
        sims, idx = torch.topk(q @ x.T, k, dim=1, sorted=False)
    return idx.numpy(), sims.numpy()


def _refine(sims: np.ndarray, existing_raw: np.ndarray, init_raw: np.ndarray, n_epochs: int) -> np.ndarray:
    """UMAP.transform's layout step for new points against a fixed embedding (in UMAP units): the fuzzy
    neighbour graph of each new point to its 15 nearest existing items, optimised with the existing points held
    still (`move_other=False`), with a gentle learning rate. Measured (bench/placement.py, digits, 6 splits):
    10-NN agreement with a refit 55.5% (mean only) → 55.8% (50 epochs at 0.05; 56.5% at 200 epochs and
    UMAP.transform's 0.25, 4x the time; 51% at 50 epochs and 0.25); and an item between two clusters lands
    beside items instead of in the gap (tests/test_projection.py).
    """
    import scipy.sparse
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import compute_membership_strengths, make_epochs_per_sample, smooth_knn_dist

    k = min(UMAP_NEIGHBORS, sims.shape[1])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    d = np.clip(1.0 - np.take_along_axis(sims, idx, axis=1), 0.0, None).astype(np.float32)
    order = np.argsort(d, axis=1, kind="stable")
    idx, d = np.take_along_axis(idx, order, axis=1).astype(np.int32), np.take_along_axis(d, order, axis=1)
    sigmas, rhos = smooth_knn_dist(d, float(k), local_connectivity=0.0)  # transform's adjusted connectivity
    rows, cols, vals, _ = compute_membership_strengths(idx, d, sigmas, rhos, bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(sims), len(existing_raw)))
    graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
    graph.eliminate_zeros()
    a, b = _umap_ab()
    rng_state = np.array([12345, 67890, 13579], dtype=np.int64)  # fixed: the same input gives the same place
    return optimize_layout_euclidean(
        np.ascontiguousarray(init_raw, dtype=np.float32),
        np.ascontiguousarray(existing_raw, dtype=np.float32),
        graph.row,
        graph.col,
        n_epochs,
        len(existing_raw),
        make_epochs_per_sample(graph.data, n_epochs),
        a,
        b,
        rng_state,
        1.0,
        REFINE_LEARNING_RATE,
        5.0,
        False,
        move_other=False,
    ).astype(np.float64)


@functools.cache
def _umap_ab() -> tuple[float, float]:
    """umap-learn's curve parameters for its defaults (spread 1, min_dist 0.1), as in every fit (a curve fit:
    computed once)."""
    from umap.umap_ import find_ab_params

    a, b = find_ab_params(1.0, 0.1)
    return float(a), float(b)


BLEND_TREE_MIN_ITEMS = 20_000  # from this many points the nearest ones to a click come from a 2D k-d tree
_blend_trees: dict[int, tuple[np.ndarray, object]] = {}  # id(positions) -> (positions, tree); a few maps


def _nearest_2d(point: np.ndarray, xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k points nearest to `point`, nearest first, and their distances. Big maps: a k-d tree
    (built once per positions array) picks candidates in microseconds instead of a scan of every point (~20 ms
    at 1M); their distances are worked out as the scan does them."""
    global _blend_trees
    if len(xy) < BLEND_TREE_MIN_ITEMS:
        d = np.linalg.norm(xy - point, axis=1)
        idx = np.argpartition(d, k - 1)[:k]
        idx = idx[np.argsort(d[idx], kind="stable")]
        return idx, d[idx]
    entry = _blend_trees.get(id(xy))
    if entry is None or entry[0] is not xy:
        from scipy.spatial import cKDTree

        entry = (xy, cKDTree(xy))
        _blend_trees = {**dict(list(_blend_trees.items())[-3:]), id(xy): entry}
    _, cand = entry[1].query(point.astype(np.float64), k=min(len(xy), k + 8))
    cand = np.asarray(cand, dtype=np.int64).reshape(-1)
    d = np.linalg.norm(xy[cand] - point, axis=1)
    order = np.lexsort((cand, d))[:k]  # by distance, ties by index
    return cand[order], d[order]


def blend_weights(point: tuple[float, float], xy: np.ndarray, k: int, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights (summing to 1) of the items that make up a 2D point."""
    k = min(k, len(xy))
    idx, d = _nearest_2d(np.asarray(point, dtype=np.float32), xy, k)
    if d[0] < 1e-6:  # on top of an item: that item, exactly
        return idx[:1], np.ones(1)
    w = 1.0 / np.power(d, power)
    return idx, w / w.sum()
