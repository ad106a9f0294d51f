"""Synthetic unit vectors with real structure, shared by the projection/placement/neighbour benchmarks.

`clustered(n, dim, clusters)`: each cluster is a random centre on the sphere plus a random 6-d linear
manifold plus a little isotropic noise, so there is local structure inside clusters (not only between them).
"""

from __future__ import annotations

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def clustered(
    n: int,
    dim: int = 512,
    clusters: int = 20,
    seed: int = 0,
    manifold_dim: int = 6,
    spread: float = 0.6,
    noise: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(clusters, dim)))
    bases = rng.normal(size=(clusters, manifold_dim, dim)) / np.sqrt(dim)
    labels = rng.integers(0, clusters, size=n)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 20_000):  # in chunks: 10^6 × 512 fits in memory only as float32
        lab = labels[start : start + 20_000]
        z = rng.normal(size=(len(lab), manifold_dim)) * spread
        x = centres[lab] + np.einsum("nk,nkd->nd", z, bases[lab])
        x += rng.normal(size=(len(lab), dim)) * (noise / np.sqrt(dim))
        out[start : start + len(lab)] = unit(x)
    return out, labels


def random_unit(n: int, dim: int = 512, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, dim)))


def trustworthiness(x: np.ndarray, y: np.ndarray, k: int = 10, block: int = 512) -> float:
    """sklearn.manifold.trustworthiness(x, y, n_neighbors=k) for unit vectors x (cosine ranks), in memory-bounded
    blocks: the same formula (checked against sklearn in tests), usable at 10^4–10^5 points."""
    n = len(x)
    x = unit(x)
    y = np.asarray(y, dtype=np.float64)
    penalty = 0.0
    sq = (y**2).sum(1)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = np.arange(start, stop)
        d2 = sq[start:stop, None] - 2 * y[start:stop] @ y.T + sq[None]
        d2[np.arange(stop - start), rows] = np.inf
        emb_nn = np.argpartition(d2, k - 1, axis=1)[:, :k]  # k nearest in 2D (self excluded)
        sims = x[start:stop] @ x.T
        sims[np.arange(stop - start), rows] = np.inf
        s_ij = np.take_along_axis(sims, emb_nn, axis=1)
        # rank of j among i's neighbours in the original space (1 = nearest), self excluded
        ranks = (
            (sims[:, None, :] > s_ij[:, :, None]).sum(2)
            if stop - start <= 64
            else np.stack([(sims > s_ij[:, c : c + 1]).sum(1) for c in range(k)], axis=1)
        )
        ranks = ranks - 1 + 1  # minus self (inf > s), plus one for 1-based ranks
        penalty += np.maximum(ranks - k, 0).sum()
    return float(1.0 - penalty * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))))
