"""The HTTP API through the real app and lifespan, on the tiny-random space."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_map, png_bytes


def add_prompts(client, map_id, headers, prompts):
    r = client.post(f"/api/maps/{map_id}/prompts", json={"prompts": prompts}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["items"]


def add_images(client, map_id, headers, files):
    r = client.post(
        f"/api/maps/{map_id}/images",
        headers=headers,
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )
    assert r.status_code == 201, r.text
    return r.json()["items"]


def test_health_and_spaces(client):
    assert client.get("/api/health").json() == {
        "status": "ok",
        "space": "tiny-random",
        "device": "cpu",
        "preview": True,
    }
    spaces = {s["name"]: s for s in client.get("/api/spaces").json()}
    assert spaces["tiny-random"]["loaded"] is True
    assert spaces["digits"]["loaded"] is False


def test_create_and_list_maps(client):
    r = client.post("/api/maps", json={"title": "  My map "})
    assert r.status_code == 201
    body = r.json()
    assert body["title"] == "My map" and body["count"] == 0 and body["space"] == "tiny-random"
    assert len(body["edit_key"]) >= 32
    listed = client.get("/api/maps").json()
    assert [m["id"] for m in listed] == [body["id"]]
    assert "edit_key" not in listed[0]
    assert client.get(f"/api/maps/{body['id']}").json()["can_edit"] is False
    assert client.get(f"/api/maps/{body['id']}", headers={"X-Edit-Key": body["edit_key"]}).json()["can_edit"]


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
def test_bad_title_is_422(client, title):
    r = client.post("/api/maps", json={"title": title})
    assert r.status_code == 422 and r.json()["detail"]


def test_prompts_and_images_become_points(client, new_map):
    map_id, key = new_map
    texts = add_prompts(client, map_id, key, ["a red square", "a blue square", "a green square"])
    assert [i["kind"] for i in texts] == ["text"] * 3
    assert [i["label"] for i in texts] == ["a red square", "a blue square", "a green square"]
    images = add_images(
        client, map_id, key, [("red.png", png_bytes((255, 0, 0))), ("blue.jpg", png_bytes((0, 0, 255), fmt="JPEG"))]
    )
    assert [(i["kind"], i["label"]) for i in images] == [("image", "red.png"), ("image", "blue.jpg")]
    points = client.get(f"/api/maps/{map_id}/points").json()["points"]
    assert len(points) == 5
    for p in points:
        assert np.isfinite([p["x"], p["y"]]).all() and -1 <= p["x"] <= 1 and -1 <= p["y"] <= 1
    meta = client.get(f"/api/maps/{map_id}").json()
    assert meta["count"] == 5 and meta["projection"]["method"] == "pca"


def test_thumbnails(client, new_map):
    map_id, key = new_map
    image = add_images(client, map_id, key, [("a.png", png_bytes())])[0]
    text = add_prompts(client, map_id, key, ["words"])[0]
    r = client.get(f"/api/items/{image['id']}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/items/{text['id']}/thumbnail").status_code == 404


@pytest.mark.parametrize("key", ["missing", "wrong", "another map's"])
def test_mutations_need_the_edit_key(client, new_map, key):
    map_id, _ = new_map
    headers = {"missing": {}, "wrong": {"X-Edit-Key": "wrong-key"}}.get(key) or make_map(client, "other")[1]
    r = client.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["x"]}, headers=headers)
    assert r.status_code == 403 and "edit key" in r.json()["detail"]
    assert client.post(f"/api/maps/{map_id}/refit", headers=headers).status_code == 403
    r = client.post(
        f"/api/maps/{map_id}/images", files=[("files", ("a.png", png_bytes(), "image/png"))], headers=headers
    )
    assert r.status_code == 403
    assert client.get(f"/api/maps/{map_id}").json()["count"] == 0


@pytest.mark.parametrize("path", ["/api/maps/doesnotexist", "/api/maps/doesnotexist/points"])
def test_unknown_map_is_404_json(client, path):
    r = client.get(path)
    assert r.status_code == 404 and "not found" in r.json()["detail"]


def test_unknown_map_decode_is_404(client):
    r = client.post("/api/maps/doesnotexist/decode", json={"x": 0, "y": 0, "seed": 0})
    assert r.status_code == 404 and r.json()["detail"]


def test_decode_is_deterministic_and_cached(client, new_map):
    map_id, key = new_map
    add_prompts(client, map_id, key, ["a", "b", "c"])
    add_images(client, map_id, key, [("a.png", png_bytes((10, 200, 10)))])
    first = client.post(f"/api/maps/{map_id}/decode", json={"x": 0.123, "y": -0.2, "seed": 7})
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.headers["x-decode-cache"] == "miss"
    again = client.post(f"/api/maps/{map_id}/decode", json={"x": 0.123, "y": -0.2, "seed": 7})
    assert again.headers["x-decode-cache"] == "hit" and again.content == first.content
    other_seed = client.post(f"/api/maps/{map_id}/decode", json={"x": 0.123, "y": -0.2, "seed": 8})
    assert other_seed.content != first.content


def test_decode_recomputes_identically_without_cache(make_client, tmp_path, new_map, client):
    """Determinism is real, not only the cache: a fresh data dir with the same items gives the same bytes."""
    map_id, key = new_map
    add_prompts(client, map_id, key, ["a", "b", "c"])
    body = {"x": 0.3, "y": 0.1, "seed": 5}
    first = client.post(f"/api/maps/{map_id}/decode", json=body).content
    for f in (tmp_path / "data" / "decodes").glob("*.png"):
        f.unlink()
    second = client.post(f"/api/maps/{map_id}/decode", json=body)
    assert second.headers["x-decode-cache"] == "miss" and second.content == first


def test_decode_empty_space_between_items(client, new_map):
    map_id, key = new_map
    items = add_prompts(client, map_id, key, ["one", "two", "three"])
    mid = {"x": (items[0]["x"] + items[1]["x"]) / 2, "y": (items[0]["y"] + items[1]["y"]) / 2, "seed": 0}
    r = client.post(f"/api/maps/{map_id}/decode", json=mid)
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "body", [{"x": 0, "y": 0, "seed": -1}, {"x": 0, "y": 0, "seed": 2**40}, {"x": "a", "y": 0}, {"y": 0}]
)
def test_decode_bad_input_is_422(client, new_map, body):
    map_id, key = new_map
    add_prompts(client, map_id, key, ["a"])
    r = client.post(f"/api/maps/{map_id}/decode", json=body)
    assert r.status_code == 422 and r.json()["detail"]


def test_decode_on_empty_map_is_422(client, new_map):
    map_id, _ = new_map
    r = client.post(f"/api/maps/{map_id}/decode", json={"x": 0, "y": 0, "seed": 0})
    assert r.status_code == 422 and "no items" in r.json()["detail"]


def test_new_items_do_not_move_existing_ones(client, new_map):
    map_id, key = new_map
    add_prompts(client, map_id, key, [f"prompt number {i}" for i in range(25)])  # UMAP-sized first fit
    assert client.get(f"/api/maps/{map_id}").json()["projection"]["method"] == "umap"
    before = {p["id"]: (p["x"], p["y"]) for p in client.get(f"/api/maps/{map_id}/points").json()["points"]}
    add_prompts(client, map_id, key, ["one more", "and another"])
    add_images(client, map_id, key, [("a.png", png_bytes())])
    after = {p["id"]: (p["x"], p["y"]) for p in client.get(f"/api/maps/{map_id}/points").json()["points"]}
    assert len(after) == 28
    assert all(after[i] == xy for i, xy in before.items())


def test_refit_is_explicit_and_bumps_revision(client, new_map):
    map_id, key = new_map
    add_prompts(client, map_id, key, ["a", "b", "c", "d"])
    rev = client.get(f"/api/maps/{map_id}").json()["projection"]["revision"]
    r = client.post(f"/api/maps/{map_id}/refit", headers=key)
    assert r.status_code == 200 and r.json()["projection"]["revision"] == rev + 1


def test_corrupt_image_is_422_naming_the_file_and_adds_nothing(client, new_map):
    map_id, key = new_map
    r = client.post(
        f"/api/maps/{map_id}/images",
        headers=key,
        files=[
            ("files", ("good.png", png_bytes(), "image/png")),
            ("files", ("broken.png", png_bytes()[:40], "image/png")),
        ],
    )
    assert r.status_code == 422 and "broken.png" in r.json()["detail"]
    assert client.get(f"/api/maps/{map_id}").json()["count"] == 0
    r = client.post(
        f"/api/maps/{map_id}/images", headers=key, files=[("files", ("notes.png", b"just some text", "image/png"))]
    )
    assert r.status_code == 422 and "notes.png" in r.json()["detail"]


@pytest.mark.parametrize("prompts", [[], [""], ["x" * 301], ["p"] * 201], ids=["none", "empty", "too long", "too many"])
def test_prompt_limits(client, new_map, prompts):
    map_id, key = new_map
    r = client.post(f"/api/maps/{map_id}/prompts", json={"prompts": prompts}, headers=key)
    assert r.status_code == 422 and r.json()["detail"]
    assert client.get(f"/api/maps/{map_id}").json()["count"] == 0


def test_delete_item(client, new_map):
    map_id, key = new_map
    items = add_prompts(client, map_id, key, ["keep", "drop"])
    assert client.delete(f"/api/maps/{map_id}/items/{items[1]['id']}").status_code == 403
    assert client.delete(f"/api/maps/{map_id}/items/{items[1]['id']}", headers=key).status_code == 204
    labels = [p["label"] for p in client.get(f"/api/maps/{map_id}/points").json()["points"]]
    assert labels == ["keep"]
    assert client.delete(f"/api/maps/{map_id}/items/{items[1]['id']}", headers=key).status_code == 404


def test_maps_survive_a_restart(make_client, tmp_path):
    first = make_client(tmp_path / "persist")
    body = first.post("/api/maps", json={"title": "kept"}).json()
    key = {"X-Edit-Key": body["edit_key"]}
    add_prompts(first, body["id"], key, ["alpha", "beta", "gamma"])
    add_images(first, body["id"], key, [("a.png", png_bytes())])
    points = first.get(f"/api/maps/{body['id']}/points").json()
    decoded = first.post(f"/api/maps/{body['id']}/decode", json={"x": 0.2, "y": 0.2, "seed": 1}).content
    first.__exit__(None, None, None)

    second = make_client(tmp_path / "persist")
    assert second.get(f"/api/maps/{body['id']}").json()["title"] == "kept"
    assert second.get(f"/api/maps/{body['id']}/points").json() == points
    assert second.post(f"/api/maps/{body['id']}/decode", json={"x": 0.2, "y": 0.2, "seed": 1}).content == decoded
    assert second.post(f"/api/maps/{body['id']}/prompts", json={"prompts": ["delta"]}, headers=key).status_code == 201


def test_map_from_another_space_is_refused_clearly(make_client, tmp_path):
    from app.maps.store import Store

    store = Store(tmp_path / "mixed")
    record, key = store.create_map("made elsewhere", "digits")
    store.close()
    client = make_client(tmp_path / "mixed")
    r = client.post(f"/api/maps/{record.id}/prompts", json={"prompts": ["x"]}, headers={"X-Edit-Key": key})
    assert r.status_code == 409 and "digits" in r.json()["detail"]


def test_openapi_docs(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/health", "/api/maps", "/api/maps/{map_id}/decode", "/api/items/{item_id}/thumbnail"):
        assert path in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_binary_points_match_json_points(client, new_map):
    map_id, key = new_map
    add_prompts(client, map_id, key, ["a", "b", "c"])
    add_images(client, map_id, key, [("a.png", png_bytes())])
    points = client.get(f"/api/maps/{map_id}/points").json()["points"]
    r = client.get(f"/api/maps/{map_id}/points.bin")
    assert r.headers["content-type"] == "application/octet-stream"
    raw = r.content
    assert raw[:4] == b"LMP1"
    n = int(np.frombuffer(raw[4:8], "<u4")[0])
    assert n == 4 and len(raw) == 8 + 9 * n  # 9 bytes a point
    x = np.frombuffer(raw[8 : 8 + 4 * n], "<f4")
    y = np.frombuffer(raw[8 + 4 * n : 8 + 8 * n], "<f4")
    kinds = np.frombuffer(raw[8 + 8 * n :], "u1")
    assert np.allclose(x, [p["x"] for p in points]) and np.allclose(y, [p["y"] for p in points])
    assert list(kinds) == [0, 0, 0, 1]
    assert client.get(f"/api/maps/{map_id}/points/3").json() == points[3]
    assert client.get(f"/api/maps/{map_id}/points/4").status_code == 404


def test_preview_decode_is_fast_path_cached_apart(client, new_map):
    map_id, key = new_map
    add_prompts(client, map_id, key, ["a", "b", "c"])
    body = {"x": 0.1, "y": 0.1, "seed": 2}
    preview = client.post(f"/api/maps/{map_id}/decode", json={**body, "preview": True})
    assert preview.status_code == 200 and preview.headers["x-decode-preview"] == "1"
    full = client.post(f"/api/maps/{map_id}/decode", json=body)
    assert full.headers["x-decode-cache"] == "miss", "a preview never stands in for the full picture"
    assert full.content != preview.content
    again = client.post(f"/api/maps/{map_id}/decode", json={**body, "preview": True})
    assert again.headers["x-decode-cache"] == "hit" and again.content == preview.content


def test_parallel_ingest_keeps_every_image_with_its_own_vector_and_thumbnail(make_client, tiny_space):
    """Uploads are opened, prepared and thumbnailed in worker threads; nothing may be swapped or reordered."""
    client = make_client(image_workers=4)
    made = client.post("/api/maps", json={"title": "many"}).json()
    key = {"X-Edit-Key": made["edit_key"]}
    colours = [(20 * i, 255 - 20 * i, (70 * i) % 256) for i in range(12)]
    files = [("files", (f"c{i}.png", png_bytes(c, size=(30 + i, 24)), "image/png")) for i, c in enumerate(colours)]
    r = client.post(f"/api/maps/{made['id']}/images", headers=key, files=files)
    assert r.status_code == 201
    items = r.json()["items"]
    assert [it["label"] for it in items] == [f"c{i}.png" for i in range(12)]

    arrays = client.app.state.service.store.get_arrays(made["id"])
    expected = tiny_space.encode_images([Image.new("RGB", (30 + i, 24), c) for i, c in enumerate(colours)])
    np.testing.assert_allclose(arrays.vectors, expected.vectors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.stack(arrays.latents), expected.latents, rtol=1e-5, atol=1e-6)
    for i, it in enumerate(items):
        thumb = Image.open(io.BytesIO(client.get(f"/api/items/{it['id']}/thumbnail").content))
        assert thumb.convert("RGB").getpixel((0, 0)) == colours[i]


def test_first_bad_file_in_upload_order_is_named(make_client):
    client = make_client(image_workers=4)
    made = client.post("/api/maps", json={"title": "bad"}).json()
    files = [("files", (f"ok{i}.png", png_bytes(), "image/png")) for i in range(6)]
    files[2] = ("files", ("first-bad.png", b"not an image", "image/png"))
    files[5] = ("files", ("second-bad.png", png_bytes()[:30], "image/png"))
    r = client.post(f"/api/maps/{made['id']}/images", headers={"X-Edit-Key": made["edit_key"]}, files=files)
    assert r.status_code == 422 and "first-bad.png" in r.json()["detail"]
    assert client.get(f"/api/maps/{made['id']}").json()["count"] == 0


def test_a_data_dir_from_before_pending_images_is_migrated_in_place(make_client, tmp_path):
    """Data directories written before the `pending_image` column existed open, keep their items, and gain it."""
    import sqlite3

    from app.maps.store import Store

    data = tmp_path / "old"
    client = make_client(data)
    made = client.post("/api/maps", json={"title": "old"}).json()
    add_prompts(client, made["id"], {"X-Edit-Key": made["edit_key"]}, ["an old prompt"])
    client.__exit__(None, None, None)
    db = sqlite3.connect(data / "latentmap.sqlite3")  # rebuild the items table as it was, without the column
    (dim,) = db.execute("SELECT dim FROM map_arrays").fetchone()
    db.executescript(
        "DROP INDEX IF EXISTS items_pending; ALTER TABLE items RENAME TO items_new; DROP TABLE map_arrays;"
        "CREATE TABLE items (id TEXT PRIMARY KEY, map_id TEXT NOT NULL REFERENCES maps(id) ON DELETE CASCADE, "
        "seq INTEGER NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, "
        "vector BLOB NOT NULL, decode_vector BLOB NOT NULL, latent BLOB, latent_shape TEXT, "
        "has_thumbnail INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);"
        f"INSERT INTO items SELECT id, map_id, seq, kind, label, x, y, zeroblob({4 * dim}), zeroblob({4 * dim}), "
        "NULL, NULL, has_thumbnail, created_at FROM items_new; DROP TABLE items_new;"
    )
    assert "pending_image" not in {r[1] for r in db.execute("PRAGMA table_info(items)")}
    db.close()

    store = Store(data)
    assert [p.label for p in store.points(made["id"])] == ["an old prompt"]
    assert store.points(made["id"])[0].pending_image is False and store.pending_image_ids(made["id"]) == []
    store.close()
