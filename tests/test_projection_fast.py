"""The fast UMAP fit (exact kNN graph handed to umap-learn, optional sample-and-place) and the neighbour index:
behaviour only — quality against umap-learn's own graph, determinism, ranges. Timings live in bench/."""

import warnings

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from app.maps import index as neighbor_index
from app.maps import projection
from app.settings import Settings
from app.spaces.base import unit

warnings.filterwarnings("ignore", category=UserWarning)
FAST = Settings(umap_backend="umap-learn")


def clustered(n=400, k=8, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(k, dim)))
    bases = rng.normal(size=(k, 3, dim)) / np.sqrt(dim)
    labels = rng.integers(0, k, size=n)
    x = centres[labels] + np.einsum("nk,nkd->nd", rng.normal(size=(n, 3)) * 0.6, bases[labels])
    return unit(x + 0.2 / np.sqrt(dim) * rng.normal(size=(n, dim))), labels


def test_exact_knn_is_exact_with_self_first():
    x, _ = clustered(300)
    idx, dist = projection.exact_knn(x, 15, block_bytes=4 * 300 * 37)  # several blocks
    sims = x @ x.T
    np.fill_diagonal(sims, np.inf)
    truth = np.argsort(-sims, axis=1, kind="stable")[:, :15]
    assert (idx[:, 0] == np.arange(300)).all() and np.all(dist[:, 0] == 0)
    assert all(set(a) == set(b) for a, b in zip(idx, truth))
    assert np.all(np.diff(dist, axis=1) >= -1e-6)  # nearest first
    np.testing.assert_allclose(dist[:, 1:], 1 - np.take_along_axis(x @ x.T, idx[:, 1:], 1), atol=1e-5)


def test_fast_fit_keeps_umaps_quality_and_is_deterministic():
    import umap

    x, _ = clustered(400)
    reference = umap.UMAP(metric="cosine", random_state=42).fit_transform(x)  # the previous fit
    ours = projection.fit(x, umap_min_items=20, revision=3, settings=FAST)
    again = projection.fit(x, umap_min_items=20, revision=3, settings=FAST)
    q_ref = trustworthiness(x, reference, n_neighbors=10)
    q_ours = trustworthiness(x, ours.xy, n_neighbors=10)
    assert q_ours >= q_ref - 0.01
    assert ours.state["method"] == "umap" and ours.state["revision"] == 3 and ours.state["fitted_count"] == 400
    assert ours.state["backend"].startswith("umap-learn")
    assert ours.xy.dtype == np.float32 and ours.xy.shape == (400, 2)
    assert np.abs(ours.xy).max() <= 0.95 + 1e-6 and np.isclose(np.abs(ours.xy).max(), 0.95, atol=1e-4)
    np.testing.assert_array_equal(ours.xy, again.xy)


def test_fit_on_a_sample_places_the_rest_deterministically():
    x, labels = clustered(500)
    settings = FAST.with_(umap_fit_sample=200)
    a = projection.fit(x, umap_min_items=20, revision=1, settings=settings)
    b = projection.fit(x, umap_min_items=20, revision=1, settings=settings)
    assert a.state["sampled"] == 200 and a.xy.shape == (500, 2) and np.isfinite(a.xy).all()
    assert np.abs(a.xy).max() <= 0.95 + 1e-6
    np.testing.assert_array_equal(a.xy, b.xy)
    # placed points sit with their own cluster: nearest cluster centroid in 2D is their label's for most
    centroids = np.stack([a.xy[labels == c].mean(0) for c in range(8)])
    nearest = np.argmin(np.linalg.norm(a.xy[:, None] - centroids[None], axis=2), axis=1)
    assert (nearest == labels).mean() > 0.9


def test_small_maps_still_use_pca_and_settings_default_from_env(monkeypatch):
    x, _ = clustered(10)
    assert projection.fit(x, umap_min_items=20, revision=1).state["method"] == "pca"
    monkeypatch.setenv("LATENTMAP_UMAP_FIT_SAMPLE", "50")
    fitted = projection.fit(clustered(120)[0], umap_min_items=20, revision=1)
    assert fitted.state.get("sampled") == 50


def test_cuml_backend_refuses_clearly_when_absent(monkeypatch):
    monkeypatch.setattr(projection, "_cuml_umap", lambda: None)  # as on any machine without cuML
    with pytest.raises(RuntimeError, match="cuML"):
        projection.fit(clustered(50)[0], umap_min_items=20, revision=1, settings=FAST.with_(umap_backend="cuml"))


def test_vector_index_exact_and_approximate():
    x, _ = clustered(3000, k=20, dim=64, seed=1)
    exact = neighbor_index.VectorIndex(x, min_items=10**9)
    assert exact.kind == "exact"
    idx, sims = exact.nearest(x[5], 10, exclude=5)
    assert 5 not in idx and len(idx) == 10 and np.all(np.diff(sims) <= 1e-7)
    truth = np.argsort(-(x @ x[5]), kind="stable")
    assert set(idx) == set(truth[truth != 5][:10])
    assert neighbor_index.faiss_available(), "faiss-cpu is a test dependency (pip install -e .[test])"
    approx = neighbor_index.VectorIndex(x, min_items=1, nprobe=8)
    assert approx.kind.startswith("faiss")
    recall = np.mean([len(set(approx.nearest(q, 10)[0]) & set(exact.nearest(q, 10)[0])) / 10 for q in x[:100]])
    assert recall >= 0.95
    got, got_sims = approx.nearest(x[7], 10, exclude=7)
    assert 7 not in got
    np.testing.assert_allclose(got_sims, x[got] @ x[7], atol=1e-5)  # similarities are exact (re-ranked)


FIT_IN_A_NEW_PROCESS = """
import hashlib
import numpy as np
from app.maps import projection
from app.settings import Settings
v = np.random.default_rng(0).normal(size=(120, 16)).astype(np.float32)
print(hashlib.sha256(projection.fit(v, 20, 1, settings=Settings(umap_backend="umap-learn")).xy.tobytes()).hexdigest())
"""


def test_a_new_process_loads_umaps_compiled_layout_instead_of_compiling_it_again():
    """umap-learn recompiled its numba code in every process (4.6 s of each build's or server's first fit): with
    the cache on, a later process loads the layout's machine code from disk, and lays out the same map."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_DEBUG_CACHE": "1"}

    def run():
        out = subprocess.run([sys.executable, "-c", FIT_IN_A_NEW_PROCESS], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()

    first, second = run(), run()  # the first may compile and save (a fresh machine), the second must load
    layout = "layouts._optimize_layout_euclidean_single_epoch"
    assert any("data loaded" in line and layout in line for line in second), [x for x in second if layout in x]
    assert not any("data saved" in line and layout in line for line in second)
    assert first[-1] == second[-1]  # the same layout, bit for bit
