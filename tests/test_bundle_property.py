"""Property: any map survives export → import unchanged (labels, kinds, positions, vectors, latents)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.jobs import WorkQueue
from app.maps.bundle import export_bundle, import_bundle
from app.maps.service import MapService
from app.maps.store import NewItem, Store
from tests.helpers import make_settings

item_strategy = st.tuples(
    st.sampled_from(["text", "image"]),
    st.text(min_size=1, max_size=40),
    st.floats(-1, 1, allow_nan=False),
    st.floats(-1, 1, allow_nan=False),
    st.booleans(),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(items=st.lists(item_strategy, min_size=0, max_size=12), seed=st.integers(0, 2**16))
def test_bundle_round_trip(tiny_space, tmp_path_factory, items, seed):
    data_dir = tmp_path_factory.mktemp("bundle")
    service = MapService(Store(data_dir), tiny_space, make_settings(data_dir), WorkQueue(2))
    rng = np.random.default_rng(seed)
    record, _ = service.create_map("property")
    new = [
        NewItem(
            kind=k,
            label=label,
            vector=rng.normal(size=tiny_space.dim).astype(np.float32),
            decode_vector=rng.normal(size=tiny_space.dim).astype(np.float32),
            latent=rng.normal(size=(4, 16, 16)).astype(np.float32) if with_latent else None,
        )
        for k, label, _, _, with_latent in items
    ]
    xy = np.array([[x, y] for _, _, x, y, _ in items], dtype=np.float32).reshape(-1, 2)
    if new:
        service.store.add_items(record.id, new, xy, projection={"method": "umap", "revision": 3})
    copy, key = import_bundle(service, export_bundle(service.store, record.id))
    a, b = service.store.get_arrays(record.id), service.store.get_arrays(copy.id)
    assert copy.id != record.id and key
    assert a.kinds == b.kinds and a.labels == b.labels
    assert np.array_equal(a.xy, b.xy) and np.array_equal(a.vectors, b.vectors)
    assert np.array_equal(a.decode_vectors, b.decode_vectors)
    assert all((la is None and lb is None) or np.array_equal(la, lb) for la, lb in zip(a.latents, b.latents))
    assert copy.projection.get("revision") == (3 if new else 0)
    service.store.close()
