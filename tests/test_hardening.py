"""Issue 16, finding by finding: the requests that stalled the server, broke the map list, took gigabytes or
answered 500 are sent again and must now be refused quickly with a short 4xx, and change nothing."""

import asyncio
import io
import json
import re
import socket
import threading
import time
import weakref
import zipfile

import httpx
import numpy as np
import pytest
from PIL import Image

from app.main import create_app
from app.maps.classroom import Classroom
from tests.helpers import make_map, make_settings, png_bytes, serve_live

PROMPTS = [f"prompt {i}" for i in range(12)]


@pytest.fixture
def filled(client, new_map):
    map_id, key = new_map
    r = client.post(f"/api/maps/{map_id}/prompts", json={"prompts": PROMPTS}, headers=key)
    assert r.status_code == 201
    client.post(
        f"/api/maps/{map_id}/images",
        headers=key,
        files=[("files", (f"{i}.png", png_bytes((i * 60, 100, 200 - i * 50)), "image/png")) for i in range(3)],
    )
    return map_id, key


def rezip(bundle: bytes, change) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in src.namelist():
            content = change(name, src.read(name))
            if content is not None:
                z.writestr(name, content)
    return out.getvalue()


def with_manifest(bundle: bytes, edit) -> bytes:
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("latentmap-bundle.json"))
    edit(manifest)
    return rezip(bundle, lambda n, c: json.dumps(manifest).encode() if n == "latentmap-bundle.json" else c)


def post_bundle(client, data: bytes):
    return client.post("/api/bundles", files={"file": ("b.zip", data, "application/zip")})


# ---------------------------------------------------------------- 1. a 1 MB request froze the server
def test_1_a_path_of_500000_zeros_is_refused_by_the_json_body_cap(client, filled):
    map_id, _ = filled
    body = '{"points": [' + ", ".join(["0"] * 500_000) + '], "steps": 2}'
    r = client.post(f"/api/maps/{map_id}/path", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 200 and "larger than" in r.json()["detail"]
    assert client.get("/api/health").status_code == 200


def test_1_uploads_keep_the_larger_cap(client, filled):
    """The JSON cap is separate: a multipart upload above it (but under max_request_bytes) still goes in."""
    map_id, key = filled
    noisy = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(noisy, "PNG")
    assert len(noisy.getvalue()) > client.app.state.settings.max_json_bytes
    r = client.post(
        f"/api/maps/{map_id}/images", headers=key, files=[("files", ("big.png", noisy.getvalue(), "image/png"))]
    )
    assert r.status_code == 201


def test_1_validation_errors_are_one_short_message(client, filled):
    map_id, _ = filled
    body = {"points": [["x" * 1000, "y" * 1000]] * 30, "steps": "two", "seed": "three"}  # 62 errors
    r = client.post(f"/api/maps/{map_id}/path", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert isinstance(detail, str) and len(detail) <= client.app.state.settings.max_error_chars
    assert "points" in detail and "more" in detail


def under_the_cap_of_bad_pairs(limit: int) -> bytes:
    """bench/load_test.py's second body: just under the JSON cap, every pair fails validation."""
    pair, head, tail = '["x", "y"], ', '{"points": [', '["x", "y"]], "steps": 2}'
    return (head + pair * ((limit - len(head) - len(tail) - 64) // len(pair)) + tail).encode()


def test_1_large_bodies_are_parsed_off_the_loop_with_the_same_answers(make_client, tmp_path, monkeypatch):
    """Bodies from `large_json_bytes` up go through the worker thread; a valid, an invalid and a malformed one
    answer exactly what the same bodies answer when FastAPI parses them itself."""
    from app.api.limits import LargeJSONParser

    parsed = []
    parse = LargeJSONParser._parse
    monkeypatch.setattr(
        LargeJSONParser, "_parse", lambda self, body, check: parsed.append(len(body)) or parse(self, body, check)
    )
    answers, urls = {}, {}
    json_type = {"Content-Type": "application/json"}
    for name, large_json_bytes in (("threaded", 64 * 1024), ("on the loop", 10 * 1024 * 1024)):
        client = make_client(tmp_path / name.replace(" ", "-"), large_json_bytes=large_json_bytes)
        map_id, _ = make_map(client, prompts=PROMPTS[:4])
        url = urls[name] = (client, f"/api/maps/{map_id}/path")
        padded = b'{"points": [[0, 0], [0.1, 0.1]], "steps": 2}' + b" " * 100_000  # valid JSON
        bad_pairs = b'{"points": [' + b'["xxxxxxxxxx", "yyyyyyyyyy"], ' * 5_000 + b'[0, 0]], "steps": 2}'  # 150 kB
        bodies = [padded, bad_pairs, b'{"points": [' + b"0, " * 40_000]  # the last one is cut short
        answers[name] = []
        for body in bodies:
            r = client.post(url[1], content=body, headers=json_type)
            answers[name].append((r.status_code, len(r.json()["frames"]) if r.status_code == 200 else r.json()))
    assert sorted(parsed) == sorted(len(b) for b in bodies)  # all three, only while the threshold was 64 KiB
    assert answers["threaded"] == answers["on the loop"]
    assert [status for status, _ in answers["threaded"]] == [200, 422, 422]
    assert "at most 32 items" in answers["threaded"][1][1]["detail"]
    assert "JSON decode error" in answers["threaded"][2][1]["detail"]
    # bench/load_test.py's body (87,000 pairs) is refused unparsed: more arrays than any valid request has
    client, url = urls["threaded"]
    r = client.post(url, content=under_the_cap_of_bad_pairs(1024 * 1024), headers=json_type)
    assert r.status_code == 422 and "at most 10000 arrays and objects" in r.json()["detail"]


def test_1_every_router_parses_large_bodies_off_the_loop():
    from app import api
    from app.api.limits import BoundedJSONRoute

    assert all(router.route_class is BoundedJSONRoute for router in api.ROUTERS)


def test_1_large_bodies_in_flight_are_bounded_and_health_answers_meanwhile(tiny_space, tmp_path, monkeypatch):
    """One large body held in the parser, one slot: the next large body is 429 with Retry-After before it is
    read, while /api/health and small requests answer at once."""
    from app.api.limits import LargeJSONParser

    release = threading.Event()
    parse = LargeJSONParser._parse
    monkeypatch.setattr(
        LargeJSONParser, "_parse", lambda self, body, check: release.wait(30) and parse(self, body, check)
    )
    settings = make_settings(tmp_path / "flight", max_large_json_in_flight=1)
    app = create_app(settings, space=tiny_space)
    url, stop = serve_live(app)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            map_id, _ = make_map(http, prompts=PROMPTS[:4])
            body = b'{"points": [[0, 0], [0.1, 0.1]], "steps": 2}' + b" " * 100_000
            json_type = {"Content-Type": "application/json"}
            held = {}
            first = threading.Thread(
                target=lambda: held.update(r=http.post(f"/api/maps/{map_id}/path", content=body, headers=json_type))
            )
            first.start()
            deadline = time.monotonic() + 20
            while app.state.large_json.in_flight < 1 and time.monotonic() < deadline:  # the first is in the parser
                time.sleep(0.02)
            refused = httpx.post(f"{url}/api/maps/{map_id}/path", content=body, headers=json_type)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert "large request bodies" in refused.json()["detail"]
            started = time.monotonic()
            assert http.get("/api/health").status_code == 200
            small = http.post(f"/api/maps/{map_id}/path", json={"points": [[0, 0], [0.1, 0.1]], "steps": 2})
            assert small.status_code == 200 and time.monotonic() - started < 10
            release.set()
            first.join(30)
            assert held["r"].status_code == 200 and len(held["r"].json()["frames"]) == 2
    finally:
        release.set()
        stop()


# ---------------------------------------------------------------- 2. one bundle broke the map list
@pytest.mark.parametrize(
    "projection",
    [
        {"fitted_count": "x"},
        {"revision": "x"},
        {"method": "pca", "mean": "x"},
        {"method": "umap", "scale": -1},
        "not an object",
        {"method": "tsne"},
    ],
)
def test_2_a_bundle_with_a_bad_projection_is_refused_and_leaves_no_map(client, filled, projection):
    map_id, _ = filled
    good = client.get(f"/api/maps/{map_id}/bundle").content
    before = client.get("/api/maps").json()
    r = post_bundle(client, with_manifest(good, lambda m: m["map"].update(projection=projection)))
    assert r.status_code == 422 and "projection" in r.json()["detail"]
    assert client.get("/api/maps").json() == before  # nothing added, and the list still answers
    assert client.get("/").status_code == 200


def test_2_junk_in_a_projection_is_not_stored(client, filled):
    map_id, _ = filled
    good = client.get(f"/api/maps/{map_id}/bundle").content
    r = post_bundle(client, with_manifest(good, lambda m: m["map"]["projection"].update(junk="x" * 2_000_000)))
    assert r.status_code == 201
    record = client.app.state.service.store.get_map(r.json()["id"])
    assert "junk" not in record.projection and len(json.dumps(record.projection)) < 100_000
    assert client.get(f"/api/maps/{r.json()['id']}").status_code == 200


def test_2_projection_is_parsed_once_per_map_version(client, filled, monkeypatch):
    map_id, _ = filled
    store = client.app.state.service.store
    store.get_map(map_id)
    calls = []
    real = json.loads
    monkeypatch.setattr("app.maps.store.json.loads", lambda text, *a, **k: calls.append(1) or real(text, *a, **k))
    for _ in range(20):
        assert store.get_map(map_id).projection["method"] in ("pca", "umap")
    assert calls == []


def test_2_latents_that_do_not_fit_the_space_are_refused(client, filled):
    map_id, _ = filled
    good = client.get(f"/api/maps/{map_id}/bundle").content
    latents = np.load(io.BytesIO(zipfile.ZipFile(io.BytesIO(good)).read("latents.npy")))
    wrong = io.BytesIO()
    np.save(wrong, np.zeros((len(latents), 3, 7, 7), np.float32))
    before = len(client.get("/api/maps").json())
    r = post_bundle(client, rezip(good, lambda n, c: wrong.getvalue() if n == "latents.npy" else c))
    assert r.status_code == 422 and "latents.npy" in r.json()["detail"]
    assert len(client.get("/api/maps").json()) == before


@pytest.mark.parametrize(
    "edit, word",
    [
        (lambda m: m["items"][0].update(x="1"), "x"),
        (lambda m: m["items"][0].update(x=1e300), "x"),
        (lambda m: m["items"][0].update(label=["a"]), "label"),
        (lambda m: m["items"][0].update(thumbnail="yes"), "thumbnail"),
        (lambda m: m["map"].update(title={"a": 1}), "title"),
        (lambda m: m["map"].update(tours=[{"title": "t", "steps": [{"at": [1e300, 0]}]}]), "tour"),
    ],
)
def test_2_every_manifest_field_is_checked(client, filled, edit, word):
    map_id, _ = filled
    good = client.get(f"/api/maps/{map_id}/bundle").content
    before = len(client.get("/api/maps").json())
    r = post_bundle(client, with_manifest(good, edit))
    assert r.status_code == 422 and word in r.json()["detail"]
    assert len(client.get("/api/maps").json()) == before


# ---------------------------------------------------------------- 3. uploads could take gigabytes
def test_3_uploads_are_decoded_in_chunks_of_bounded_pixels(make_client, monkeypatch):
    """At most `max_upload_pixels_in_flight` decoded pixels are alive at once (one file at least), however
    many files a request has; before, every file of a request was decoded before any was encoded."""
    budget = 3 * 200 * 200
    client = make_client(max_upload_pixels_in_flight=budget, image_workers=4)
    made = client.post("/api/maps", json={"title": "chunks"}).json()
    service = client.app.state.service
    alive, peak = [0], [0]
    lock = threading.Lock()
    real_open = service._open_upload

    def tracked(upload):
        im = real_open(upload)
        if isinstance(im, Image.Image):
            with lock:
                alive[0] += im.width * im.height
                peak[0] = max(peak[0], alive[0])

            def freed(pixels=im.width * im.height):
                with lock:
                    alive[0] -= pixels

            weakref.finalize(im, freed)
        return im

    monkeypatch.setattr(service, "_open_upload", tracked)
    files = [("files", (f"{i}.png", png_bytes((i * 20, 50, 90), size=(200, 200)), "image/png")) for i in range(10)]
    r = client.post(f"/api/maps/{made['id']}/images", headers={"X-Edit-Key": made["edit_key"]}, files=files)
    assert r.status_code == 201 and [it["label"] for it in r.json()["items"]] == [f"{i}.png" for i in range(10)]
    assert 0 < peak[0] <= budget


# ---------------------------------------------------------------- 4. bundle import burned CPU
def test_4_large_bundle_thumbnails_are_refused_before_decoding(client, filled):
    map_id, _ = filled
    good = client.get(f"/api/maps/{map_id}/bundle").content
    bomb = io.BytesIO()
    Image.new("L", (8000, 5000)).save(bomb, "PNG")  # 40 MP in a few kB
    r = post_bundle(client, rezip(good, lambda n, c: bomb.getvalue() if n.startswith("thumbnails/") else c))
    assert r.status_code == 422 and "pixels" in r.json()["detail"]


def test_4_a_huge_manifest_is_refused_unread(make_client):
    client = make_client(max_manifest_bytes=100_000)
    made = client.post("/api/maps", json={"title": "m"}).json()
    good = client.get(f"/api/maps/{made['id']}/bundle").content
    r = post_bundle(client, with_manifest(good, lambda m: m.update(padding=" " * 200_000)))
    assert r.status_code == 422 and "larger than" in r.json()["detail"]


def test_4_a_bundle_of_too_many_files_is_refused_before_it_is_opened(make_client, monkeypatch):
    """Entries are counted in the central directory (not trusting the count its end record states) before
    zipfile builds an object for each of them; the same bundle within the cap imports."""
    import struct

    from app.maps import bundle

    client = make_client(max_bundle_entries=40)
    map_id, _ = make_map(client, prompts=PROMPTS[:3])
    good = client.get(f"/api/maps/{map_id}/bundle").content
    extra = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(extra, "w") as z:
        for name in src.namelist():
            z.writestr(name, src.read(name))
        for i in range(50):
            z.writestr(f"junk/{i}", b"")
    crowded = extra.getvalue()
    end = crowded.rindex(b"PK\x05\x06")
    lying = crowded[: end + 8] + struct.pack("<HH", 1, 1) + crowded[end + 12 :]  # "1 entry", twice
    opened = []
    real_zipfile = zipfile.ZipFile
    monkeypatch.setattr(bundle.zipfile, "ZipFile", lambda *a, **k: opened.append(1) or real_zipfile(*a, **k))
    before = len(client.get("/api/maps").json())
    for data in (crowded, lying):
        r = post_bundle(client, data)
        assert r.status_code == 422 and r.json()["detail"] == "bundle has more than 40 files"
    assert opened == [] and len(client.get("/api/maps").json()) == before
    assert post_bundle(client, good).status_code == 201


def test_4_a_deeply_nested_manifest_is_422(client, filled):
    map_id, _ = filled
    good = client.get(f"/api/maps/{map_id}/bundle").content
    for depth in (20, 100_000):
        deep = '{"format": "latentmap-bundle", "version": 1, "x": ' + "[" * depth + "]" * depth + "}"
        r = post_bundle(
            client, rezip(good, lambda n, c, deep=deep: deep.encode() if n == "latentmap-bundle.json" else c)
        )
        assert r.status_code == 422 and "nested" in r.json()["detail"], depth


# ---------------------------------------------------------------- 5. clustering outside the work queue
def test_5_clusters_go_through_the_work_queue_and_their_cache_is_bounded(make_client):
    client = make_client(cluster_cache_maps=2)
    service, explorer = client.app.state.service, client.app.state.explorer
    ids = []
    for n in range(3):
        made = client.post("/api/maps", json={"title": f"c{n}"}).json()
        client.post(
            f"/api/maps/{made['id']}/prompts",
            json={"prompts": [f"{w} {n}" for w in PROMPTS]},
            headers={"X-Edit-Key": made["edit_key"]},
        )
        ids.append(made["id"])
    ran = []
    real_run = service.queue.run
    service.queue.run = lambda fn, gone=None, background=False: ran.append(1) or real_run(fn, gone, background)
    try:
        for map_id in ids:
            assert client.get(f"/api/maps/{map_id}/clusters").status_code == 200
        assert len(ran) == 3
        assert len(explorer._clusters) == 2 and ids[0] not in explorer._clusters
        assert client.get(f"/api/maps/{ids[2]}/clusters").status_code == 200 and len(ran) == 3  # cached
    finally:
        service.queue.run = real_run


def test_5_search_and_neighbours_on_big_maps_are_refused_when_the_queue_is_full(make_client):
    """From `expensive_read_min_items` items, neighbours run in the work queue (search always does): with its
    one slot taken both answer 429 with Retry-After; a map below the threshold still answers neighbours."""
    client = make_client(max_queued_jobs=1, expensive_read_min_items=10)
    big, _ = make_map(client, "big", PROMPTS)
    small, _ = make_map(client, "small", PROMPTS[:4])
    queue = client.app.state.service.queue
    started, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: queue.run(lambda: started.set() or release.wait(30)))
    holder.start()
    try:
        assert started.wait(10)
        for url in (f"/api/maps/{big}/neighbors?x=0&y=0&k=3", f"/api/maps/{big}/search?q=a%20cat"):
            r = client.get(url)
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, url
        assert client.get(f"/api/maps/{small}/neighbors?x=0&y=0&k=3").status_code == 200
    finally:
        release.set()
        holder.join(10)
    assert len(client.get(f"/api/maps/{big}/neighbors?x=0&y=0&k=3").json()["neighbors"]) == 3


def test_5_align_goes_through_the_work_queue_and_is_refused_when_it_is_full(make_client):
    """/align (an SVD and two k-NN over up to max_align_items) is bounded like the other expensive reads: with
    the queue's one slot taken it answers 429 with Retry-After, and runs once the slot is free."""
    client = make_client(max_queued_jobs=1)
    a, _ = make_map(client, "a", PROMPTS)
    b, _ = make_map(client, "b", PROMPTS)
    queue = client.app.state.service.queue
    ran = []
    real_run = queue.run
    queue.run = lambda fn, gone=None, **kw: ran.append(1) or real_run(fn, gone, **kw)
    started, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: real_run(lambda: started.set() or release.wait(30)))
    try:
        assert client.get(f"/api/maps/{a}/align/{b}?k=3").status_code == 200 and ran == [1]
        holder.start()
        assert started.wait(10)
        r = client.get(f"/api/maps/{a}/align/{b}?k=3")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    finally:
        release.set()
        holder.join(10)
        queue.run = real_run
    body = client.get(f"/api/maps/{a}/align/{b}?k=3").json()
    assert body["matched"] == len(PROMPTS) and body["mean_agreement"] == 1.0  # the same items in the same space


# ---------------------------------------------------------------- 7. classroom caps
def test_7_one_map_cannot_push_out_another_maps_quiz_rounds(make_client):
    client = make_client(max_quiz_rounds=4, max_quiz_rounds_per_map=2)
    maps = []
    for n in range(3):
        made = client.post("/api/maps", json={"title": f"q{n}"}).json()
        key = {"X-Edit-Key": made["edit_key"]}
        client.post(f"/api/maps/{made['id']}/prompts", json={"prompts": ["a", "b", "c"]}, headers=key)
        maps.append((made["id"], key))
    (a, key_a), (b, key_b), (c, key_c) = maps
    first = client.post(f"/api/maps/{a}/quiz", json={"seed": 1}, headers=key_a).json()
    for seed in range(6):  # map b starts many rounds: only its own old ones go
        assert client.post(f"/api/maps/{b}/quiz", json={"seed": seed}, headers=key_b).status_code == 201
    assert client.get(f"/api/quiz/{first['id']}").status_code == 200
    assert sum(r.map_id == b for r in client.app.state.classroom.rounds.values()) == 2
    client.post(f"/api/maps/{c}/quiz", json={"seed": 1}, headers=key_c)
    r = client.post(f"/api/maps/{a}/quiz", json={"seed": 2}, headers=key_a)  # server full: refused, not dropped
    assert r.status_code == 201 or r.status_code == 429
    full = client.post(f"/api/maps/{c}/quiz", json={"seed": 3}, headers=key_c)
    assert full.status_code in (201, 429)
    assert len(client.app.state.classroom.rounds) <= 4
    assert client.get(f"/api/quiz/{first['id']}").status_code == 200


def test_7_guesses_and_presentations_are_capped_per_map():
    from app.maps.classroom import Full
    from app.settings import Settings

    classroom = Classroom(3600, 5, Settings(max_guesses_per_round=3, max_presentations_per_map=2))
    r, _ = classroom.new_round("map", 0.0, 0.0, 1, "k" * 64)
    for player in ("a", "b", "c"):
        classroom.guess(r.id, player, 0.1, 0.1)
    classroom.guess(r.id, "a", 0.2, 0.2)  # a player may change their guess
    with pytest.raises(Full):
        classroom.guess(r.id, "d", 0.1, 0.1)
    classroom.start("map")
    classroom.start("map")
    with pytest.raises(Full):
        classroom.start("map")
    classroom.start("other map")  # another class is not affected


def test_7_the_follower_cap_holds_for_concurrent_joins(tiny_space, tmp_path):
    app = create_app(make_settings(tmp_path / "followers", max_followers=2), space=tiny_space)
    url, stop = serve_live(app)
    try:
        made = httpx.post(f"{url}/api/maps", json={"title": "f"}).json()
        p = httpx.post(f"{url}/api/maps/{made['id']}/presentations", headers={"X-Edit-Key": made["edit_key"]}).json()

        async def join(http):
            async with http.stream("GET", f"/api/presentations/{p['code']}/events") as r:
                if r.status_code != 200:
                    return r.status_code
                async for _ in r.aiter_lines():
                    await asyncio.sleep(1.0)  # hold the place while the others try
                    return 200

        async def everyone():
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                return await asyncio.gather(*[join(http) for _ in range(8)])

        codes = asyncio.run(everyone())
        assert codes.count(200) == 2 and set(codes) <= {200, 403, 429}
    finally:
        stop()


# ---------------------------------------------------------------- 8. 500 where a 4xx is due
def test_8_out_of_range_numbers_are_4xx(client, filled):
    map_id, _ = filled
    decodes = client.app.state.service.store.decode_dir
    before = sorted(decodes.iterdir())
    assert client.get(f"/api/maps/{map_id}/points/99999999999999999999999999").status_code == 404
    assert client.get(f"/api/maps/{map_id}/points/-1").status_code == 404
    assert client.get(f"/api/maps/{map_id}/neighbors", params={"x": 1e30, "y": 0}).status_code == 422
    r = client.post(f"/api/maps/{map_id}/path", json={"points": [[0, 0], [1e300, 0]], "steps": 2})
    assert r.status_code == 422 and ("outside the map" in r.json()["detail"] or "within" in r.json()["detail"])
    r = client.post(f"/api/maps/{map_id}/decode", json={"x": 1e300, "y": 0, "seed": 0})
    assert r.status_code == 422
    r = client.post(f"/api/maps/{map_id}/decode", json={"x": 50.0, "y": 0, "seed": 0})  # a margin of 10 widths
    assert r.status_code == 422 and "outside the map" in r.json()["detail"]
    assert client.post(f"/api/maps/{map_id}/decode", json={"x": 1.5, "y": -1.2, "seed": 0}).status_code == 200
    assert len(sorted(decodes.iterdir())) == len(before) + 1  # only the good decode was cached


def test_8_a_quiz_guess_with_nan_is_422(client, filled):
    map_id, key = filled
    round_ = client.post(f"/api/maps/{map_id}/quiz", json={"seed": 1}, headers=key).json()
    for x in ("NaN", "Infinity", "1e300"):
        r = client.post(
            f"/api/quiz/{round_['id']}/guess",
            content=f'{{"player": "p", "x": {x}, "y": 0}}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422, x


def test_8_no_nan_reaches_the_decoder_or_the_cache(client, filled):
    from app.maps.service import Rejected
    from app.spaces.base import DecodeRequest

    service = client.app.state.service
    request = DecodeRequest(vector=np.full(service.space.dim, np.nan, np.float32), seed=0)
    with pytest.raises(Rejected):
        service.decode_cached("0" * 64, request)
    assert service.store.cached_decode("0" * 64) is None


# ---------------------------------------------------------------- 9. headers, docs, timeouts, Host, CSV
def test_9_security_headers_on_every_response(client, filled):
    map_id, _ = filled
    for url in (
        "/",
        f"/m/{map_id}",
        "/api/health",
        f"/api/maps/{map_id}/points",
        "/docs",
        "/static/css/style.css",
        "/api/maps/nosuchmap0",
        "/openapi.json",
    ):
        r = client.get(url)
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, url
        assert re.search(r"script-src 'self'", csp), url
        assert r.headers.get("x-content-type-options") == "nosniff", url
        assert r.headers.get("referrer-policy") == "no-referrer", url
        assert r.headers.get("x-frame-options") == "DENY", url


def test_9_pages_run_no_inline_script(client, filled):
    """Every <script> of every page has a src, or is an import map whose hash the CSP names."""
    import base64
    import hashlib

    map_id, _ = filled
    for url in ("/", f"/m/{map_id}", "/docs"):
        r = client.get(url)
        csp = r.headers["content-security-policy"]
        for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", r.text, re.DOTALL):
            if "src=" in attrs:
                assert not body.strip(), url
                continue
            assert 'type="importmap"' in attrs, (url, attrs, body[:80])
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp
        assert not re.search(r"\son[a-z]+\s*=", r.text), f"{url}: inline event handler"


def test_9_swagger_ui_is_served_from_this_origin(client):
    page = client.get("/docs").text
    assert "cdn." not in page and "https://" not in page
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        assert client.get(src).status_code == 200, src
    assert re.search(r"/static/vendor/swagger-ui-bundle-\d+\.\d+\.\d+\.js", page)


def test_9_the_trailing_slash_redirect_does_not_echo_the_host(client):
    r = client.get("/api/maps/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code in (307, 308)
    assert "evil.example" not in r.headers["location"] and r.headers["location"].startswith("/api/maps")


def test_9_a_trickled_body_is_cut_off(tiny_space, tmp_path):
    url, stop = serve_live(create_app(make_settings(tmp_path / "slow", body_timeout_seconds=1.0), space=tiny_space))
    try:
        made = httpx.post(f"{url}/api/maps", json={"title": "slow"}).json()
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(
                f"POST /api/maps/{made['id']}/path HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: 1000\r\n\r\n{{".encode()
            )
            started = time.monotonic()
            reply = b""
            while b"\r\n\r\n" not in reply and time.monotonic() - started < 8:
                s.sendall(b" ")  # a byte at a time, never finishing
                time.sleep(0.2)
                s.setblocking(False)
                try:
                    reply += s.recv(4096)
                except BlockingIOError:
                    pass
                s.setblocking(True)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert httpx.get(f"{url}/api/health").status_code == 200
    finally:
        stop()


# ---------------------------------------------------------------- deleting a map
def test_the_operator_lists_and_deletes_a_map_with_everything_it_owns(client, filled, capsys):
    from app import cli

    map_id, key = filled
    service = client.app.state.service
    store, data_dir = service.store, service.settings.data_dir
    client.post(
        f"/api/maps/{map_id}/tours", json={"title": "t", "steps": [{"caption": "c", "at": [0, 0]}]}, headers=key
    )
    client.post(f"/api/maps/{map_id}/decode", json={"x": 0.1, "y": 0.1, "seed": 1})
    path = client.post(f"/api/maps/{map_id}/path", json={"points": [[0, 0], [0.5, 0.5]], "steps": 2}).json()
    other = client.post("/api/maps", json={"title": "kept"}).json()
    client.post(
        f"/api/maps/{other['id']}/prompts", json={"prompts": ["x", "y"]}, headers={"X-Edit-Key": other["edit_key"]}
    )
    kept_decode = client.post(f"/api/maps/{other['id']}/decode", json={"x": 0, "y": 0, "seed": 1}).headers[
        "x-decode-key"
    ]
    thumbs = [p for p in store.points(map_id) if p.has_thumbnail]
    assert thumbs and len(list(store.decode_dir.glob("*.png"))) >= 4

    assert cli.main(["maps", "list", "--json", "--data-dir", str(data_dir)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["id"] for m in listed} >= {map_id, other["id"]}
    assert cli.main(["maps", "delete", map_id, "--data-dir", str(data_dir)]) == 0
    assert "deleted" in capsys.readouterr().out

    assert client.get(f"/api/maps/{map_id}").status_code == 404
    assert all(not (store.thumb_dir / f"{p.id}.png").exists() for p in thumbs)
    assert client.get(f"/api/paths/{path['key']}.png").status_code == 404
    assert all(client.get(f["url"]).status_code == 404 for f in path["frames"])
    assert [p.name for p in store.decode_dir.iterdir()] == [f"{kept_decode}.png"]
    db = store._db
    assert db.execute("SELECT COUNT(*) FROM items WHERE map_id = ?", (map_id,)).fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM tours WHERE map_id = ?", (map_id,)).fetchone()[0] == 0
    assert client.get(f"/api/maps/{other['id']}").json()["count"] == 2
    assert cli.main(["maps", "delete", map_id, "--data-dir", str(data_dir)]) == 1


def test_delete_map_over_http_needs_the_edit_key_and_removes_everything(client, filled):
    map_id, key = filled
    client.post(f"/api/maps/{map_id}/decode", json={"x": 0.2, "y": 0.1, "seed": 2})
    presentation = client.post(f"/api/maps/{map_id}/presentations", headers=key).json()
    round_ = client.post(f"/api/maps/{map_id}/quiz", json={"seed": 1}, headers=key).json()
    store = client.app.state.service.store
    assert client.delete(f"/api/maps/{map_id}").status_code == 403
    assert client.delete(f"/api/maps/{map_id}", headers={"X-Edit-Key": "wrong" * 8}).status_code == 403
    assert client.get(f"/api/maps/{map_id}").status_code == 200
    assert client.delete(f"/api/maps/{map_id}", headers=key).status_code == 204
    assert client.get(f"/api/maps/{map_id}").status_code == 404
    assert client.get(f"/api/maps/{map_id}/points").status_code == 404
    assert map_id not in {m["id"] for m in client.get("/api/maps").json()}
    assert list(store.decode_dir.iterdir()) == [] and list(store.thumb_dir.iterdir()) == []
    assert client.get(f"/api/presentations/{presentation['code']}").status_code == 404
    assert client.get(f"/api/quiz/{round_['id']}").status_code == 404
    assert client.delete(f"/api/maps/{map_id}", headers=key).status_code == 404


def test_list_fields_have_a_maximum_length(client, filled):
    map_id, key = filled
    settings = client.app.state.settings
    too_many = [[0.0, 0.0]] * (settings.max_path_points + 1)
    for url, body in (
        (f"/api/maps/{map_id}/path", {"points": too_many, "steps": 2}),
        (f"/api/maps/{map_id}/compare/path", {"points": too_many, "steps": 2, "variants": ["base"]}),
        (f"/api/maps/{map_id}/compare", {"x": 0, "y": 0, "variants": ["base"] * 100}),
        (f"/api/maps/{map_id}/selection", {"indices": list(range(settings.max_selection_items + 1)), "version": 0}),
    ):
        r = client.post(url, json=body)
        assert r.status_code in (413, 422) and len(r.content) < 500, url
    r = client.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["p"] * 1000}, headers=key)
    assert r.status_code == 422 and "prompts" in r.json()["detail"]
    r = client.post(f"/api/maps/{map_id}/tours", headers=key, json={"title": "t", "steps": [{"caption": "c"}] * 500})
    assert r.status_code == 422


def test_csv_exports_neutralise_formulas(client, new_map):
    map_id, key = new_map
    labels = ['=HYPERLINK("http://evil.example","click")', "+1+2", "-3", "@SUM(A1)", "plain"]
    client.post(f"/api/maps/{map_id}/prompts", json={"prompts": labels}, headers=key)
    ids = [p["id"] for p in client.get(f"/api/maps/{map_id}/points").json()["points"]]
    text = client.post(f"/api/maps/{map_id}/selection", json={"item_ids": ids, "format": "csv"}).text
    import csv as csv_module

    rows = list(csv_module.DictReader(io.StringIO(text)))
    assert sorted(r["label"] for r in rows) == sorted(["'" + label for label in labels[:4]] + ["plain"])
    assert all(not r["label"].startswith(("=", "+", "-", "@")) for r in rows)
    assert any(r["x"].startswith("-") for r in rows) or all(float(r["x"]) >= 0 for r in rows)  # numbers stay numbers
    assert sorted(r["id"] for r in rows) == sorted(ids)  # server-made ids as they are, a leading "-" too
