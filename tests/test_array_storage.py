"""A map's vectors and latents live in append-only array files beside SQLite (app/maps/store.py): killed in the
middle of a write nothing acknowledged is lost and nothing half-written shows; BLOB-era databases migrate on
open, also when that is interrupted; a big map's refit fits a sample and places the rest."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from app.maps.store import LATENTS_FILE, VECTORS_FILE, NewItem, Store

REPO = Path(__file__).resolve().parent.parent
DIM = 24


def vector_of(i: int) -> np.ndarray:
    """Item i's vector: known to every process, so a reader can check each row is the one written for it."""
    return (np.arange(DIM, dtype=np.float32) / DIM + i).astype(np.float32)


# A writer that adds batches of items forever (batch b: items b*500 .. b*500+499, labelled by their number),
# printing each committed batch. With PAUSE set it stops, forever, after the rows of batch 3 are in the file
# and before they are committed: the moment a kill -9 must not expose.
WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from app.maps import store as store_module
    from app.maps.store import NewItem, Store
    from tests.test_array_storage import vector_of
    if os.environ.get("PAUSE"):
        real = store_module._append_rows
        calls = []
        def paused(path, committed, data):
            real(path, committed, data)
            calls.append(path)
            if len(calls) == 8:  # two files a batch: after batch 3's rows
                print("WRITTEN", flush=True)
                time.sleep(3600)
        store_module._append_rows = paused
    store = Store(sys.argv[1], array_dtype="float32")
    map_id = sys.argv[3]
    b = store.get_map(map_id).count // 500
    while True:
        items = [NewItem("image", str(i), vector_of(i), vector_of(i), latent=np.full((2, 3), i, np.float32))
                 for i in range(b * 500, b * 500 + 500)]
        store.add_items(map_id, items, np.zeros((500, 2), np.float32))
        print("COMMITTED", b, flush=True)
        b += 1
    """
)


def _start_writer(data: Path, map_id: str, pause: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **({"PAUSE": "1"} if pause else {})}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data), str(REPO), map_id], stdout=subprocess.PIPE, text=True, env=env
    )


def _check_whole(data: Path, map_id: str) -> int:
    """Reopen the store: every committed item's vector and latent are the ones written for it; the array
    files hold no row past the committed count. Returns the item count."""
    store = Store(data)
    try:
        count = store.get_map(map_id).count
        arrays = store.get_arrays(map_id)
        assert len(arrays.vectors) == len(arrays.decode_vectors) == len(arrays.latents) == count
        labels = np.array([int(label) for label in arrays.labels])
        assert np.array_equal(labels, np.arange(count))  # whole batches, in order, no gap, no duplicate
        assert np.array_equal(arrays.vectors, np.stack([vector_of(i) for i in labels]).reshape(count, DIM))
        assert all(np.array_equal(arrays.latents[i], np.full((2, 3), i, np.float32)) for i in (0, count - 1))
        folder = data / "arrays" / map_id
        assert (folder / VECTORS_FILE).stat().st_size == count * DIM * 4
        assert (folder / LATENTS_FILE).stat().st_size == count * 6 * 4
        return count
    finally:
        store.close()


def test_kill_9_between_array_write_and_commit_exposes_nothing_and_loses_nothing(tmp_path):
    data = tmp_path / "data"
    store = Store(data, array_dtype="float32")
    map_id = store.create_map("crash", "tiny-random")[0].id
    store.close()
    writer = _start_writer(data, map_id, pause=True)
    try:
        lines = []
        while (line := writer.stdout.readline()) and not line.startswith("WRITTEN"):
            lines.append(line)
        assert line.startswith("WRITTEN"), "the writer stopped before pausing"
        folder = data / "arrays" / map_id
        assert (folder / VECTORS_FILE).stat().st_size == 2000 * DIM * 4  # batch 3's rows are in the file ...
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert lines == [f"COMMITTED {b}\n" for b in range(3)]
    assert _check_whole(data, map_id) == 1500  # ... but not on the map, and cut off at reopen
    # the next write goes where the lost tail was
    store = Store(data)
    store.add_items(map_id, [NewItem("image", "1500", vector_of(1500), vector_of(1500))], np.zeros((1, 2), np.float32))
    assert np.array_equal(store.get_arrays(map_id).vectors[-1], vector_of(1500))
    store.close()


def test_kill_9_at_random_moments_keeps_every_committed_batch(tmp_path):
    data = tmp_path / "data"
    store = Store(data, array_dtype="float32")
    map_id = store.create_map("crash", "tiny-random")[0].id
    store.close()
    rng = np.random.default_rng(7)
    acknowledged = 0  # batches a writer said were committed
    for _ in range(3):
        writer = _start_writer(data, map_id)
        deadline = time.monotonic() + rng.uniform(0.3, 1.5)
        try:
            while time.monotonic() < deadline:
                line = writer.stdout.readline()
                if not line:
                    break
                acknowledged = max(acknowledged, int(line.split()[1]) + 1)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        count = _check_whole(data, map_id)
        assert count >= 500 * acknowledged and count % 500 == 0  # every acknowledged batch, whole ones only


OLD_SCHEMA = """
CREATE TABLE maps (id TEXT PRIMARY KEY, title TEXT NOT NULL, space TEXT NOT NULL, edit_key_hash TEXT NOT NULL,
    created_at REAL NOT NULL, version INTEGER NOT NULL DEFAULT 0, projection TEXT NOT NULL DEFAULT '{}');
CREATE TABLE items (id TEXT PRIMARY KEY, map_id TEXT NOT NULL REFERENCES maps(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL,
    vector BLOB NOT NULL, decode_vector BLOB NOT NULL, latent BLOB, latent_shape TEXT,
    has_thumbnail INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
CREATE INDEX items_by_map ON items(map_id, seq);
CREATE TABLE tours (id TEXT PRIMARY KEY, map_id TEXT NOT NULL REFERENCES maps(id) ON DELETE CASCADE,
    title TEXT NOT NULL, steps TEXT NOT NULL, created_at REAL NOT NULL);
"""  # the items table before pending prompt images, ingest columns and array files


def _blob_era_data_dir(data: Path) -> dict:
    """A data directory as the BLOB-era store wrote it: two maps, prompts (own decode vectors), images with and
    without latents. Returns what each item held: id -> (map, label, x, y, vector, decode vector, latent)."""
    data.mkdir(parents=True)
    db = sqlite3.connect(data / "latentmap.sqlite3")
    db.executescript(OLD_SCHEMA)
    rng = np.random.default_rng(3)
    held = {}
    for m in ("mapAAAAAAAA", "mapBBBBBBBB"):
        db.execute("INSERT INTO maps VALUES (?, ?, 'tiny-random', 'h', 1.0, 5, ?)", (m, m, json.dumps({"revision": 2})))
        for seq in range(7):
            v = rng.normal(size=DIM).astype(np.float32)
            d = v if seq % 3 else rng.normal(size=DIM).astype(np.float32)
            lat = rng.normal(size=(2, 3)).astype(np.float32) if seq % 2 else None
            item = f"{m}-item{seq}"
            x, y = float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))
            db.execute(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1.0)",
                (
                    item,
                    m,
                    seq,
                    "image" if seq % 3 else "text",
                    f"label {seq}",
                    x,
                    y,
                    v.tobytes(),
                    d.tobytes(),
                    None if lat is None else lat.tobytes(),
                    None if lat is None else json.dumps([2, 3]),
                ),
            )
            held[item] = (m, f"label {seq}", x, y, v, d, lat)
    db.execute("INSERT INTO tours VALUES ('tourAAAAAA', 'mapAAAAAAAA', 't', '[]', 1.0)")
    db.commit()
    db.close()
    return held


def _assert_migrated(data: Path, held: dict) -> None:
    store = Store(data, array_dtype="float16")  # the setting is for new maps: migrated ones stay float32
    try:
        columns = {r[1] for r in store._db.execute("PRAGMA table_info(items)")}
        assert "vector" not in columns and {"vector_slot", "decode_slot", "latent_slot"} <= columns
        for m in ("mapAAAAAAAA", "mapBBBBBBBB"):
            record = store.get_map(m)
            assert record.count == 7 and record.version == 5 and record.projection == {"revision": 2}
            arrays = store.get_arrays(m)
            assert arrays.vectors.dtype == np.float32
            for i, item in enumerate(arrays.ids):
                hm, label, x, y, v, d, lat = held[item]
                assert hm == m and arrays.labels[i] == label
                assert np.allclose(arrays.xy[i], [x, y])
                assert np.array_equal(arrays.vectors[i], v) and np.array_equal(arrays.decode_vectors[i], d)
                assert (lat is None and arrays.latents[i] is None) or np.array_equal(arrays.latents[i], lat)
        assert [t["id"] for t in store.tours("mapAAAAAAAA")] == ["tourAAAAAA"]
        # the migrated maps take new items as any map does
        added = store.add_items(
            "mapAAAAAAAA", [NewItem("image", "new", vector_of(1), vector_of(1))], np.zeros((1, 2), np.float32)
        )
        assert np.array_equal(store.get_arrays("mapAAAAAAAA").vectors[-1], vector_of(1))
        store.delete_map("mapBBBBBBBB")
        assert not (data / "arrays" / "mapBBBBBBBB").exists() and store.get_item(added[0].id).label == "new"
    finally:
        store.close()


def test_blob_era_database_migrates_on_open(tmp_path):
    data = tmp_path / "old"
    held = _blob_era_data_dir(data)
    _assert_migrated(data, held)


def test_migration_interrupted_midway_leaves_the_old_database_and_runs_again(tmp_path, monkeypatch):
    data = tmp_path / "old"
    held = _blob_era_data_dir(data)
    real = Store._migrate_map
    done = []

    def dies_on_the_second_map(self, map_id):
        if done:
            raise KeyboardInterrupt  # what a kill looks like to the transaction: nothing of it commits
        real(self, map_id)
        done.append(map_id)

    monkeypatch.setattr(Store, "_migrate_map", dies_on_the_second_map)
    with pytest.raises(KeyboardInterrupt):
        Store(data)
    db = sqlite3.connect(data / "latentmap.sqlite3")
    assert "vector" in {r[1] for r in db.execute("PRAGMA table_info(items)")}  # still the old table, whole
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 14
    db.close()
    monkeypatch.setattr(Store, "_migrate_map", real)
    _assert_migrated(data, held)


def test_float16_maps_store_half_the_bytes_and_keep_images_in_one_row(tmp_path):
    store = Store(tmp_path / "data", array_dtype="float16")
    map_id = store.create_map("half", "tiny-random")[0].id
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(10, DIM)).astype(np.float32)
    items = [NewItem("image", str(i), vectors[i], vectors[i]) for i in range(8)]
    items += [NewItem("text", str(i), vectors[i], -vectors[i]) for i in (8, 9)]  # prompts: own decode vectors
    store.add_items(map_id, items, np.zeros((10, 2), np.float32))
    arrays = store.get_arrays(map_id)
    assert arrays.vectors.dtype == np.float16
    assert (tmp_path / "data" / "arrays" / map_id / VECTORS_FILE).stat().st_size == 12 * DIM * 2
    np.testing.assert_allclose(arrays.vectors, vectors, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(arrays.decode_vectors[8:], -vectors[8:], rtol=1e-3, atol=1e-3)
    store.close()


def test_refit_of_a_map_above_the_sample_size_fits_a_sample_and_places_the_rest(make_client, tiny_space):
    from tests.helpers import make_map

    client = make_client(umap_fit_sample=150)
    map_id, key = make_map(client)
    service = client.app.state.service
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, tiny_space.dim)).astype(np.float32) * 4
    group = np.repeat(np.arange(3), 150)
    vectors = centres[group] + rng.normal(size=(450, tiny_space.dim)).astype(np.float32) * 0.3
    items = [NewItem("image", f"g{g}", v, v) for g, v in zip(group, vectors)]
    service.add_items(map_id, items)
    r = client.post(f"/api/maps/{map_id}/refit", headers=key)
    assert r.status_code == 200
    assert r.json()["projection"]["fitted_count"] == 450
    assert service.store.get_map(map_id).projection.get("sampled") == 150  # fitted on 150, the rest placed
    arrays = service.store.get_arrays(map_id)
    assert np.isfinite(arrays.xy).all()
    # the placed items land with their own group: each item's nearest other item on the map is of its group
    d = np.linalg.norm(arrays.xy[:, None] - arrays.xy[None], axis=2)
    np.fill_diagonal(d, np.inf)
    labels = np.array(arrays.labels)
    assert np.mean(labels[d.argmin(1)] == labels) > 0.97


def test_a_saved_neighbour_index_is_read_back_and_answers_as_the_built_one(tmp_path):
    from app.maps.index import VectorIndex

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    built = VectorIndex(x, min_items=1)
    path = tmp_path / "neighbors-v1.faiss"
    built.save(path)
    loaded = VectorIndex.load(path, x)
    assert loaded is not None and loaded.approximate and loaded.kind.endswith("(saved)")
    for q in x[:20]:
        assert np.array_equal(loaded.nearest(q, 10)[0], built.nearest(q, 10)[0])
    assert VectorIndex.load(path, x[:-1]) is None  # not these vectors: built again instead


def test_refit_positions_are_the_ones_read_back_also_when_an_item_was_deleted_meanwhile(tmp_path):
    """set_positions writes by rowid and keeps the map's cached arrays (moved) instead of reading them back:
    what a fresh process reads from SQLite is the same; an item deleted after the refit read the map (an API
    delete does not wait for a refit) stays deleted and the others still get their positions."""
    store = Store(tmp_path / "data")
    map_id = store.create_map("refit", "tiny")[0].id
    store.add_items(
        map_id, [NewItem("image", str(i), vector_of(i), vector_of(i)) for i in range(60)], np.zeros((60, 2))
    )
    arrays = store.get_arrays(map_id)
    xy = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    store.set_positions(map_id, arrays.ids, xy, {"method": "umap", "revision": 2})
    fresh = Store(tmp_path / "data")
    for got in (store.get_arrays(map_id), fresh.get_arrays(map_id)):
        assert got.ids == arrays.ids and np.array_equal(got.xy, xy)
    assert store.get_map(map_id).projection["revision"] == 2
    store.delete_item(map_id, arrays.ids[10])
    store.set_positions(map_id, arrays.ids, xy + 1, {"method": "umap", "revision": 3})
    for got in (store.get_arrays(map_id), fresh.get_arrays(map_id)):
        assert got.ids == arrays.ids[:10] + arrays.ids[11:]
        assert np.array_equal(got.xy, np.delete(xy + 1, 10, axis=0))
    fresh.close()
    store.close()


def test_a_big_maps_projection_vectors_are_a_memory_mapped_file_and_answer_as_in_memory_ones(
    make_client, tmp_path, tiny_space, monkeypatch
):
    """From map_vectors_file_min_items a server reads a map's projection vectors from a file beside its arrays
    (memory-mapped: not a copy in its own memory, 4 GB at 1M × 1024), made once, kept across a refit and a
    restart; neighbours and decodes are the ones an in-memory server gives, bit for bit."""
    from tests.helpers import make_map

    data = tmp_path / "data"
    client = make_client(data, map_vectors_file_min_items=100)
    map_id, key = make_map(client)
    service = client.app.state.service
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(300, tiny_space.dim)).astype(np.float32)
    kinds = ["text" if i % 10 == 0 else "image" for i in range(300)]
    service.add_items(map_id, [NewItem(k, str(i), v, v) for i, (k, v) in enumerate(zip(kinds, vectors))])
    arrays, mv = service.item_map_vectors(map_id)
    assert isinstance(mv, np.memmap) and Path(mv.filename).parent == data / "arrays" / map_id
    expected = tiny_space.map_vectors(arrays.vectors, kinds)
    assert np.array_equal(np.asarray(mv), expected)  # the numbers the in-memory path computes, bit for bit
    assert client.post(f"/api/maps/{map_id}/refit", headers=key).status_code == 200
    moved, after = service.item_map_vectors(map_id)
    assert moved is not arrays and after.filename == mv.filename  # a new map version, the same file

    def answers(http, svc):
        x, y = (float(v) for v in moved.xy[:3].mean(0))
        neighbours = http.get(f"/api/maps/{map_id}/neighbors", params={"x": x, "y": y, "k": 10}).json()
        svc.store.delete_cached_decodes(map_id)  # decoded afresh, not served from the cache
        return neighbours, svc.decode_at(map_id, x, y, seed=7).png

    from_file = answers(client, service)

    def no_recompute(*a, **k):
        raise AssertionError("projection vectors computed again")

    with monkeypatch.context() as m:  # a restart reads the file
        m.setattr(tiny_space, "map_vectors", no_recompute)
        again = make_client(data, map_vectors_file_min_items=100)
        assert np.array_equal(again.app.state.service.item_map_vectors(map_id)[1], expected)
    in_memory = make_client(data)  # the default threshold: this small map's vectors in memory
    assert not isinstance(in_memory.app.state.service.item_map_vectors(map_id)[1], np.memmap)
    assert answers(in_memory, in_memory.app.state.service) == from_file
