"""Projection: exact small maps, UMAP maps, placement without refit, and 2D → vector blending."""

import numpy as np

from app.maps import projection
from app.settings import Settings
from app.spaces.base import unit


def clusters(n_per=30, k=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(k, dim)))
    vecs = np.concatenate([unit(c + 0.08 * rng.normal(size=(n_per, dim))) for c in centres])
    return vecs, np.repeat(np.arange(k), n_per)


def test_small_maps_use_exact_pca_and_place_exactly():
    vecs, _ = clusters(n_per=3, k=3)
    fit = projection.fit(vecs, umap_min_items=20, revision=1)
    assert fit.state["method"] == "pca" and np.abs(fit.xy).max() <= 0.95 + 1e-6
    # a point already on the map is placed where the fit put it
    again = projection.place(vecs[:2], vecs, fit.xy, fit.state, k=4)
    assert np.allclose(again, fit.xy[:2], atol=1e-5)


def test_single_item_map():
    fit = projection.fit(unit(np.ones((1, 8))), umap_min_items=20, revision=1)
    assert fit.xy.shape == (1, 2) and np.isfinite(fit.xy).all()


def test_umap_keeps_clusters_and_placement_lands_in_the_right_cluster():
    vecs, labels = clusters()
    fit = projection.fit(vecs[:-4], umap_min_items=20, revision=1)
    assert fit.state["method"] == "umap"
    placed = projection.place(vecs[-4:], vecs[:-4], fit.xy, fit.state, k=8)
    # What a user sees: each new item is drawn among its own cluster's items (the labels of its 5 nearest
    # points on the map; a cluster's centroid would depend on the shape UMAP gives the island on this machine).
    near = np.argsort(np.linalg.norm(placed[:, None] - fit.xy[None], axis=2), axis=1)[:, :5]
    majority = [np.bincount(labels[:-4][row], minlength=4).argmax() for row in near]
    assert (np.array(majority) == labels[-4:]).all()


def test_refined_placement_lands_beside_items_not_in_the_gap_between_clusters():
    """A new item half like cluster 0, half like cluster 1: the weighted mean of its neighbours' positions is
    empty space between the two islands; the UMAP refinement puts it at the edge of one of them."""
    vecs, labels = clusters(n_per=40, k=4)
    fit = projection.fit(vecs, umap_min_items=20, revision=1)
    xy_before = fit.xy.copy()
    c0, c1 = (unit(vecs[labels == i].mean(0, keepdims=True))[0] for i in (0, 1))
    rng = np.random.default_rng(3)
    new = unit(np.stack([0.5 * c0 + 0.5 * c1 + 0.02 * rng.normal(size=vecs.shape[1]) for _ in range(10)]))

    def gap(xy):  # median distance from a placed point to the nearest existing item
        return float(np.median(np.linalg.norm(xy[:, None] - fit.xy[None], axis=2).min(1)))

    spacing = float(np.median(np.sort(np.linalg.norm(fit.xy[:, None] - fit.xy[None], axis=2), axis=1)[:, 1]))
    mean_only = projection.place(new, vecs, fit.xy, fit.state, k=8, refine_epochs=0)
    epochs = Settings().place_refine_epochs  # what ships
    refined = projection.place(new, vecs, fit.xy, fit.state, k=8, refine_epochs=epochs)
    assert gap(mean_only) > 10 * spacing  # the problem is real on this data
    assert gap(refined) < gap(mean_only) / 3
    assert np.array_equal(refined, projection.place(new, vecs, fit.xy, fit.state, k=8, refine_epochs=epochs))
    assert np.array_equal(fit.xy, xy_before)


def test_maps_fitted_without_a_recorded_scale_still_place():
    """Maps stored before the layout scale was recorded fall back to the weighted mean."""
    vecs, labels = clusters()
    fit = projection.fit(vecs[:-4], umap_min_items=20, revision=1)
    legacy = {k: v for k, v in fit.state.items() if k != "scale"}
    placed = projection.place(vecs[-4:], vecs[:-4], fit.xy, legacy, k=8, refine_epochs=500)
    assert np.array_equal(placed, projection.place(vecs[-4:], vecs[:-4], fit.xy, fit.state, k=8, refine_epochs=0))


def test_blend_weights():
    xy = np.array([[0, 0], [1, 0], [0, 1], [5, 5]], dtype=np.float32)
    idx, w = projection.blend_weights((0, 0), xy, k=3, power=2)
    assert list(idx) == [0] and list(w) == [1.0]  # on an item: that item
    idx, w = projection.blend_weights((0.5, 0), xy, k=3, power=2)
    assert set(idx[:2]) == {0, 1} and np.isclose(w.sum(), 1) and np.isclose(w[0], w[1])
    assert 3 not in idx
