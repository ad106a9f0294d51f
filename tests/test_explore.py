"""Paths, neighbours, search, clusters, selections and bundles through the API (tiny-random space)."""

import csv
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.helpers import png_bytes

PROMPTS = [f"prompt {i}" for i in range(12)]


@pytest.fixture
def filled_map(client, new_map):
    map_id, key = new_map
    client.post(f"/api/maps/{map_id}/prompts", json={"prompts": PROMPTS}, headers=key)
    client.post(
        f"/api/maps/{map_id}/images",
        headers=key,
        files=[("files", (f"{i}.png", png_bytes((i * 60, 100, 200 - i * 50)), "image/png")) for i in range(4)],
    )
    return map_id, key


def test_path_is_deterministic_and_exports(client, filled_map):
    map_id, _ = filled_map
    body = {"points": [[-0.5, -0.5], [0.1, 0.2], [0.6, 0.4]], "steps": 5, "seed": 3}
    first = client.post(f"/api/maps/{map_id}/path", json=body)
    assert first.status_code == 200, first.text
    out = first.json()
    assert len(out["frames"]) == 5
    assert (out["frames"][0]["x"], out["frames"][0]["y"]) == pytest.approx((-0.5, -0.5))
    assert (out["frames"][-1]["x"], out["frames"][-1]["y"]) == pytest.approx((0.6, 0.4))
    images = [client.get(f["url"]).content for f in out["frames"]]
    assert all(i.startswith(b"\x89PNG") for i in images)
    assert client.post(f"/api/maps/{map_id}/path", json=body).json() == out  # same request, same frames
    strip = Image.open(io.BytesIO(client.get(out["strip_url"]).content))
    frame = Image.open(io.BytesIO(images[0]))
    assert strip.size == (frame.width * 5, frame.height)
    gif = Image.open(io.BytesIO(client.get(out["gif_url"]).content))
    assert gif.format == "GIF" and gif.n_frames >= 2
    assert client.get(out["webp_url"]).content[8:12] == b"WEBP"
    # the path's first frame equals a click at the same point
    click = client.post(f"/api/maps/{map_id}/decode", json={"x": -0.5, "y": -0.5, "seed": 3}).content
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(click))), np.asarray(frame))


@pytest.mark.parametrize(
    "body",
    [
        {"points": [[0, 0]], "steps": 4},
        {"points": [[0, 0], [1, 1]], "steps": 1},
        {"points": [[0, 0], [1, 1]], "steps": 1000},
        {"points": [[0, 0, 0], [1, 1, 1]]},
    ],
)
def test_bad_paths_are_422(client, filled_map, body):
    map_id, _ = filled_map
    r = client.post(f"/api/maps/{map_id}/path", json=body)
    assert r.status_code == 422 and r.json()["detail"]


def test_neighbors_by_point_and_item(client, filled_map):
    map_id, _ = filled_map
    points = client.get(f"/api/maps/{map_id}/points").json()["points"]
    target = points[0]
    by_item = client.get(f"/api/maps/{map_id}/neighbors", params={"item": target["id"], "k": 5}).json()["neighbors"]
    assert len(by_item) == 5 and target["id"] not in [n["id"] for n in by_item]
    sims = [n["similarity"] for n in by_item]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    # on top of an item: that item is its own nearest neighbour
    at_item = client.get(f"/api/maps/{map_id}/neighbors", params={"x": target["x"], "y": target["y"], "k": 3})
    assert at_item.json()["neighbors"][0]["id"] == target["id"]
    assert at_item.json()["neighbors"][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    image = next(
        n
        for n in client.get(f"/api/maps/{map_id}/neighbors", params={"x": 0, "y": 0, "k": 16}).json()["neighbors"]
        if n["kind"] == "image"
    )
    assert client.get(image["thumbnail_url"]).status_code == 200
    assert client.get(f"/api/maps/{map_id}/neighbors", params={"k": 5}).status_code == 422
    assert client.get(f"/api/maps/{map_id}/neighbors", params={"item": "nosuchitem", "k": 5}).status_code == 422
    assert client.get(f"/api/maps/{map_id}/neighbors", params={"x": 0, "y": 0, "k": 0}).status_code == 422


def test_search_places_without_storing(client, filled_map):
    map_id, _ = filled_map
    count = client.get(f"/api/maps/{map_id}").json()["count"]
    r = client.get(f"/api/maps/{map_id}/search", params={"q": PROMPTS[3], "k": 3})
    assert r.status_code == 200
    out = r.json()
    assert out["neighbors"][0]["label"] == PROMPTS[3]  # the same prompt is its own best match
    point = next(p for p in client.get(f"/api/maps/{map_id}/points").json()["points"] if p["label"] == PROMPTS[3])
    assert (out["x"], out["y"]) == pytest.approx((point["x"], point["y"]), abs=1e-4)
    assert len(out["similarity"]) == count
    light = client.get(f"/api/maps/{map_id}/search", params={"q": PROMPTS[3], "k": 3, "similarity": "false"}).json()
    assert light["similarity"] == [] and light["neighbors"] == out["neighbors"]
    assert client.get(f"/api/maps/{map_id}").json()["count"] == count
    assert client.get(f"/api/maps/{map_id}/search", params={"q": "  "}).status_code == 422


def test_clusters_cover_points(client, filled_map):
    map_id, _ = filled_map
    out = client.get(f"/api/maps/{map_id}/clusters").json()
    assert len(out["assignments"]) == 16
    for c in out["clusters"]:
        assert c["label"] and c["size"] == out["assignments"].count(c["id"])


def test_selection_export(client, filled_map):
    map_id, _ = filled_map
    points = client.get(f"/api/maps/{map_id}/points").json()["points"]
    chosen = [points[0]["id"], points[-1]["id"]]  # a prompt and an image
    as_json = client.post(f"/api/maps/{map_id}/selection", json={"item_ids": chosen}).json()
    assert [i["id"] for i in as_json["items"]] == chosen
    as_csv = client.post(f"/api/maps/{map_id}/selection", json={"item_ids": chosen, "format": "csv"}).text
    assert [row["id"] for row in csv.DictReader(io.StringIO(as_csv))] == chosen
    zipped = client.post(f"/api/maps/{map_id}/selection", json={"item_ids": chosen, "format": "zip"}).content
    names = zipfile.ZipFile(io.BytesIO(zipped)).namelist()
    assert "selection.csv" in names and f"images/{points[-1]['id']}.png" in names
    r = client.post(f"/api/maps/{map_id}/selection", json={"item_ids": ["notonthismap1"]})
    assert r.status_code == 422


def _version(client, map_id) -> int:
    return int(client.get(f"/api/maps/{map_id}/points.bin").headers["X-Map-Version"])


def _match_bits(response) -> list[bool]:
    body = response.content
    assert body[:4] == b"LMM1"
    n = int(np.frombuffer(body[4:8], "<u4")[0])
    return np.unpackbits(np.frombuffer(body[8:], np.uint8), bitorder="little")[:n].astype(bool).tolist()


def test_label_match_for_maps_loaded_without_labels(client, filled_map):
    map_id, key = filled_map
    points = client.get(f"/api/maps/{map_id}/points").json()["points"]
    version = _version(client, map_id)
    r = client.get(f"/api/maps/{map_id}/labels/match", params={"q": "PROMPT 1", "version": version})
    assert r.status_code == 200 and r.headers["X-Map-Version"] == str(version)
    # "prompt 1", "prompt 10", "prompt 11": case-insensitive substring, in points order
    assert _match_bits(r) == ["prompt 1" in p["label"] for p in points]
    assert sum(_match_bits(r)) == 3
    assert sum(_match_bits(client.get(f"/api/maps/{map_id}/labels/match", params={"q": ".png"}))) == 4
    assert client.get(f"/api/maps/{map_id}/labels/match", params={"q": ""}).status_code == 422
    assert client.get(f"/api/maps/{map_id}/labels/match", params={"q": "x" * 301}).status_code == 422

    client.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["prompt 12"]}, headers=key)
    stale = client.get(f"/api/maps/{map_id}/labels/match", params={"q": "prompt", "version": version})
    assert stale.status_code == 409 and "reload" in stale.json()["detail"]


def test_selection_by_index_for_maps_loaded_without_ids(client, filled_map):
    map_id, key = filled_map
    points = client.get(f"/api/maps/{map_id}/points").json()["points"]
    version = _version(client, map_id)
    url = f"/api/maps/{map_id}/selection"
    r = client.post(url, json={"indices": [2, 0, 15], "version": version})
    assert r.status_code == 200
    assert [i["id"] for i in r.json()["items"]] == [points[0]["id"], points[2]["id"], points[15]["id"]]
    assert client.post(url, json={"indices": [0]}).status_code == 422  # no version
    assert client.post(url, json={"indices": [0], "item_ids": [points[0]["id"]], "version": version}).status_code == 422
    assert client.post(url, json={"indices": [16], "version": version}).status_code == 404
    client.delete(f"/api/maps/{map_id}/items/{points[0]['id']}", headers=key)
    stale = client.post(url, json={"indices": [0], "version": version})
    assert stale.status_code == 409  # index 0 is another item now: refused, not silently exported


def test_bundle_round_trip(client, filled_map):
    map_id, _ = filled_map
    data = client.get(f"/api/maps/{map_id}/bundle").content
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "latentmap-bundle.json" in names and "vectors.npy" in names
    assert not any(n.endswith((".pkl", ".pickle")) for n in names)
    assert b"edit_key" not in data
    r = client.post("/api/bundles", files={"file": ("b.zip", data, "application/zip")})
    assert r.status_code == 201, r.text
    copy = r.json()
    assert copy["id"] != map_id and copy["count"] == 16 and copy["edit_key"]
    original = client.get(f"/api/maps/{map_id}/points").json()["points"]
    imported = client.get(f"/api/maps/{copy['id']}/points").json()["points"]

    def strip(pts):
        return [(p["kind"], p["label"], round(p["x"], 5), round(p["y"], 5)) for p in pts]

    assert strip(imported) == strip(original)
    body = {"x": 0.05, "y": -0.1, "seed": 9}
    a = client.post(f"/api/maps/{map_id}/decode", json=body).content
    b = client.post(f"/api/maps/{copy['id']}/decode", json=body).content
    assert a == b  # same vectors, same positions: same pixels


def _rezip(data: bytes, change) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in src.namelist():
            content = change(name, src.read(name))
            if content is not None:
                z.writestr(name, content)
    return out.getvalue()


def test_malformed_bundles_are_refused_without_side_effects(client, filled_map):
    map_id, _ = filled_map
    good = client.get(f"/api/maps/{map_id}/bundle").content
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(good)).read("latentmap-bundle.json"))
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    other_space = dict(manifest, map=dict(manifest["map"], space="digits"))
    bad = {
        "not a zip": b"hello",
        "truncated": good[: len(good) // 2],
        "missing vectors": _rezip(good, lambda n, c: None if n == "vectors.npy" else c),
        "pickled array": _rezip(good, lambda n, c: pickled.getvalue() if n == "vectors.npy" else c),
        "wrong shape": _rezip(good, lambda n, c: _npy(np.zeros((3, 3))) if n == "decode_vectors.npy" else c),
        "bad manifest": _rezip(good, lambda n, c: b"{not json" if n == "latentmap-bundle.json" else c),
        "bad thumbnail": _rezip(good, lambda n, c: b"GIF89a-broken" if n.startswith("thumbnails/") else c),
    }
    before = len(client.get("/api/maps").json())
    for name, data in bad.items():
        r = client.post("/api/bundles", files={"file": ("b.zip", data, "application/zip")})
        assert r.status_code == 422 and r.json()["detail"], name
    r = client.post(
        "/api/bundles",
        files={
            "file": (
                "b.zip",
                _rezip(good, lambda n, c: json.dumps(other_space).encode() if n == "latentmap-bundle.json" else c),
                "application/zip",
            )
        },
    )
    assert r.status_code == 409 and "digits" in r.json()["detail"]
    assert len(client.get("/api/maps").json()) == before


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()
