"""Clusters of large maps: HDBSCAN fits a sample, the other points take their nearest sampled point's cluster."""

import numpy as np
from sklearn.metrics import adjusted_rand_score

from app.maps.explore import cluster_positions

CENTRES = np.array([[-6.0, -6.0], [6.0, -6.0], [-6.0, 6.0], [6.0, 6.0]])


def _blobs(per_blob: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(CENTRES)), per_blob)
    return (CENTRES[truth] + rng.normal(scale=0.8, size=(len(truth), 2))).astype(np.float32), truth


def test_sampled_clusters_are_the_whole_maps():
    xy, truth = _blobs(1000)
    full = cluster_positions(xy, fit_sample=len(xy))  # below the setting: HDBSCAN on every point
    sampled = cluster_positions(xy, fit_sample=500)
    assert sampled.shape == (len(xy),)
    assert len(set(sampled) - {-1}) == len(CENTRES)
    assert adjusted_rand_score(truth, sampled) >= 0.95
    assert adjusted_rand_score(full, sampled) >= 0.95
    for blob in range(len(CENTRES)):  # each blob is (nearly all) one cluster of its own
        ids, counts = np.unique(sampled[truth == blob], return_counts=True)
        assert ids[np.argmax(counts)] != -1 and counts.max() >= 0.95 * (truth == blob).sum()
    np.testing.assert_array_equal(sampled, cluster_positions(xy.copy(), fit_sample=500))  # same map, same clusters


def test_small_clusters_stay_found_when_sampled():
    """min_cluster_size scales with the sample: a blob holding 1/20 of the map is still a cluster."""
    xy, truth = _blobs(1000)
    small = (np.array([0.0, 0.0]) + np.random.default_rng(1).normal(scale=0.3, size=(200, 2))).astype(np.float32)
    xy, truth = np.concatenate([xy, small]), np.concatenate([truth, np.full(len(small), len(CENTRES))])
    sampled = cluster_positions(xy, fit_sample=500)
    assert len(set(sampled) - {-1}) == len(CENTRES) + 1
    assert adjusted_rand_score(truth, sampled) >= 0.95
