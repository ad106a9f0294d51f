"""From vectors to 2D and back.

- fit: UMAP (cosine) for maps with enough items, PCA (exact, deterministic) below `umap_min_items`.
- place: new items land without moving anyone — exactly through the stored PCA basis, or (UMAP maps) at the
  similarity-weighted mean of their nearest existing items in the original space.
- blend: a clicked 2D point becomes a vector by inverse-distance blending of the nearest items in 2D
  (measured: cosine 0.74 to the truth in milliseconds, vs 0.41 in seconds for UMAP.inverse_transform).

Coordinates are scaled into [-0.95, 0.95] at fit time (what WebGL scatter plots draw without a transform).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXTENT = 0.95


@dataclass
class Fit:
    xy: np.ndarray  # (n, 2) float32
    state: dict  # JSON-serialisable: method, fitted_count, and for PCA the basis


def fit(map_vectors: np.ndarray, umap_min_items: int, revision: int, seed: int = 42) -> Fit:
    n = len(map_vectors)
    if n == 0:
        return Fit(np.zeros((0, 2), np.float32), {"method": "none", "revision": revision, "fitted_count": 0})
    if n < umap_min_items:
        return _fit_pca(map_vectors, revision)
    import umap  # imported here: pulls in numba (seconds) and is only needed for fits

    reducer = umap.UMAP(n_neighbors=min(15, n - 1), metric="cosine", random_state=seed, init="spectral")
    raw = reducer.fit_transform(map_vectors).astype(np.float64)
    centre, scale = _normaliser(raw)
    xy = ((raw - centre) * scale).astype(np.float32)
    return Fit(xy, {"method": "umap", "revision": revision, "fitted_count": n, "seed": seed})


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
    state = {"method": "pca", "revision": revision, "fitted_count": len(vectors), "mean": mean.tolist(),
             "components": components.tolist(), "centre": centre.tolist(), "scale": scale}
    return Fit(xy, state)


def _normaliser(raw: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = raw.min(0), raw.max(0)
    centre = (lo + hi) / 2
    half = float(np.max(hi - lo)) / 2
    return centre, (EXTENT / half if half > 1e-12 else 1.0)


def place(new_vectors: np.ndarray, existing_vectors: np.ndarray, existing_xy: np.ndarray, state: dict,
          k: int) -> np.ndarray:
    """2D positions for new items; existing positions are never touched."""
    if state.get("method") == "pca":
        raw = (new_vectors - np.asarray(state["mean"])) @ np.asarray(state["components"]).T
        xy = (raw - np.asarray(state["centre"])) * state["scale"]
        return np.clip(xy, -1.0, 1.0).astype(np.float32)
    sims = new_vectors @ existing_vectors.T  # unit vectors: cosine similarity
    k = min(k, existing_vectors.shape[0])
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    nearest_sims = np.take_along_axis(sims, nearest, axis=1)
    weights = 1.0 / np.square(1.0 - nearest_sims + 1e-3)  # closer in the original space counts far more
    weights /= weights.sum(1, keepdims=True)
    return np.einsum("nk,nkd->nd", weights, existing_xy[nearest]).astype(np.float32)


def blend_weights(point: tuple[float, float], xy: np.ndarray, k: int, power: float) -> tuple[np.ndarray,
                                                                                              np.ndarray]:
    """Indices and weights (summing to 1) of the items that make up a 2D point."""
    d = np.linalg.norm(xy - np.asarray(point, dtype=np.float32), axis=1)
    k = min(k, len(xy))
    idx = np.argpartition(d, k - 1)[:k]
    idx = idx[np.argsort(d[idx], kind="stable")]
    if d[idx[0]] < 1e-6:  # on top of an item: that item, exactly
        return idx[:1], np.ones(1)
    w = 1.0 / np.power(d[idx], power)
    return idx, w / w.sum()
