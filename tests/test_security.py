"""Hostile input, limits and overload: clear 4xx errors, nothing stored lost or corrupted."""

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from app.jobs import QueueFull, WorkQueue
from app.main import create_app
from app.maps.store import DataDirError, Store
from tests.helpers import make_settings, png_bytes


def upload(client, map_id, key, files):
    return client.post(
        f"/api/maps/{map_id}/images", headers=key, files=[("files", (name, data, ctype)) for name, data, ctype in files]
    )


# ---------------------------------------------------------------- paths and ids
TRAVERSAL = [
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/etc/passwd",
    "..\\..\\windows\\win.ini",
    "....//....//etc/passwd",
    "%252e%252e%252fetc%252fpasswd",
    "thumbnails/../../latentmap.sqlite3",
    "a" * 65,
    "x%00y",
]


@pytest.mark.parametrize("payload", TRAVERSAL)
def test_traversal_payloads_are_refused(client, payload):
    for url in (
        f"/api/items/{payload}/thumbnail",
        f"/api/maps/{payload}",
        f"/api/maps/{payload}/points",
        f"/static/{payload}",
        f"/m/{payload}",
    ):
        r = client.get(url)
        assert r.status_code in (400, 404, 422), (url, r.status_code)
        assert b"root:" not in r.content and b"SQLite format" not in r.content


def test_legitimate_thumbnail_and_static_requests_work(client, new_map):
    map_id, key = new_map
    item = upload(client, map_id, key, [("a.png", png_bytes(), "image/png")]).json()["items"][0]
    assert client.get(f"/api/items/{item['id']}/thumbnail").status_code == 200
    assert client.get("/static/css/style.css").status_code == 200


def test_symlinked_thumbnail_is_not_followed(client, new_map, tmp_path):
    map_id, key = new_map
    item = upload(client, map_id, key, [("a.png", png_bytes(), "image/png")]).json()["items"][0]
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    thumb = tmp_path / "data" / "thumbnails" / f"{item['id']}.png"
    thumb.unlink()
    thumb.symlink_to(secret)
    r = client.get(f"/api/items/{item['id']}/thumbnail")
    assert r.status_code >= 400 and b"root:" not in r.content


# ---------------------------------------------------------------- uploads
def test_images_are_recognised_by_content_not_name(client, new_map):
    map_id, key = new_map
    r = upload(client, map_id, key, [("photo.txt", png_bytes(fmt="WEBP"), "text/plain")])
    assert r.status_code == 201
    r = upload(client, map_id, key, [("evil.png", b"<svg onload=alert(1)></svg>", "image/png")])
    assert r.status_code == 422 and "evil.png" in r.json()["detail"]
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, format="BMP")
    r = upload(client, map_id, key, [("image.bmp", bmp.getvalue(), "image/bmp")])
    assert r.status_code == 422, "formats outside the allow-list are refused"


def test_gif_first_frame(client, new_map):
    map_id, key = new_map
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert upload(client, map_id, key, [("anim.gif", buf.getvalue(), "image/gif")]).status_code == 201


def test_decompression_bomb_is_refused(make_client, new_map, tmp_path):
    client = make_client(tmp_path / "bomb", max_image_pixels=10_000)
    body = client.post("/api/maps", json={"title": "b"}).json()
    key = {"X-Edit-Key": body["edit_key"]}
    big = io.BytesIO()
    Image.new("L", (400, 400)).save(big, format="PNG")  # compresses to ~1 kB, 160k pixels
    r = upload(client, body["id"], key, [("bomb.png", big.getvalue(), "image/png")])
    assert r.status_code == 422 and "bomb.png" in r.json()["detail"] and "pixels" in r.json()["detail"]


def test_size_and_count_limits(make_client, tmp_path):
    client = make_client(tmp_path / "lim", max_file_bytes=2000, max_files_per_request=2, max_request_bytes=50_000)
    body = client.post("/api/maps", json={"title": "l"}).json()
    map_id, key = body["id"], {"X-Edit-Key": body["edit_key"]}
    noisy = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noisy, "PNG")
    r = upload(client, map_id, key, [("big.png", noisy.getvalue(), "image/png")])
    assert r.status_code == 413 and "big.png" in r.json()["detail"]
    r = upload(client, map_id, key, [(f"{i}.png", png_bytes(), "image/png") for i in range(3)])
    assert r.status_code == 422 and "at most 2 files" in r.json()["detail"]
    r = client.post(
        f"/api/maps/{map_id}/images",
        headers={**key, "Content-Type": "multipart/form-data; boundary=x"},
        content=b"x" * 60_000,
    )
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert client.get(f"/api/maps/{map_id}").json()["count"] == 0


def test_streamed_body_without_length_is_cut_off(make_client, tmp_path):
    client = make_client(tmp_path / "stream", max_request_bytes=10_000)
    body = client.post("/api/maps", json={"title": "s"}).json()

    def chunks():
        for _ in range(100):
            yield b"y" * 1000

    r = client.post(
        f"/api/maps/{body['id']}/prompts",
        headers={"X-Edit-Key": body["edit_key"], "Content-Type": "application/json"},
        content=chunks(),
    )
    assert r.status_code == 413


def test_stored_images_are_reencoded_without_metadata(client, new_map):
    map_id, key = new_map
    im = Image.new("RGB", (40, 40), (1, 2, 3))
    exif = Image.Exif()
    exif[0x010E] = "secret description"
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    item = upload(client, map_id, key, [("meta.jpg", buf.getvalue(), "image/jpeg")]).json()["items"][0]
    thumb = client.get(f"/api/items/{item['id']}/thumbnail").content
    assert thumb.startswith(b"\x89PNG") and b"secret description" not in thumb


# ---------------------------------------------------------------- text
WEIRD = [
    "مرحبا بالعالم",
    "emoji 🧠🎨",
    "zero\u200bwidth",
    "nul\x00byte",
    "<script>alert(1)</script>",
    "' OR 1=1; --",
    "\u202eRTL override",
]


def test_any_unicode_round_trips(client, new_map):
    map_id, key = new_map
    r = client.post(f"/api/maps/{map_id}/prompts", json={"prompts": WEIRD}, headers=key)
    assert r.status_code == 201
    labels = [p["label"] for p in client.get(f"/api/maps/{map_id}/points").json()["points"]]
    assert labels == WEIRD
    assert client.post("/api/maps", json={"title": "<b>bold</b> \x00"}).json()["title"] == "<b>bold</b> \x00"


# ---------------------------------------------------------------- access
def test_edit_keys_and_ids_are_unguessable(client):
    maps = [client.post("/api/maps", json={"title": f"m{i}"}).json() for i in range(5)]
    assert len({m["id"] for m in maps}) == 5 and len({m["edit_key"] for m in maps}) == 5
    assert all(len(m["edit_key"]) >= 32 and len(m["id"]) >= 16 for m in maps)  # >= 192 / 96 random bits


def test_no_cors_by_default(client):
    r = client.get("/api/maps", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_asked_for_exposes_the_headers_pages_read(make_client, tmp_path):
    client = make_client(tmp_path / "cors", cors_origins="https://class.example")
    made = client.post("/api/maps", json={"title": "cors"}).json()
    r = client.get(f"/api/maps/{made['id']}/points.bin", headers={"Origin": "https://class.example"})
    assert r.headers["access-control-allow-origin"] == "https://class.example"
    assert "x-map-version" in r.headers["access-control-expose-headers"].lower()
    other = client.get("/api/maps", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


# ---------------------------------------------------------------- data directory
def test_unusable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirError, match="not usable"):
        Store(blocker / "data")


def test_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    def no_space(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("app.maps.store.write_atomic", no_space)
    with pytest.raises(DataDirError, match="No space left"):
        Store(tmp_path / "full")


# ---------------------------------------------------------------- overload
def test_work_queue_refuses_beyond_capacity():
    queue = WorkQueue(capacity=2)
    started, release = threading.Event(), threading.Event()
    results = []

    def slow():
        started.set()
        release.wait(5)
        return "done"

    threads = [threading.Thread(target=lambda: results.append(queue.run(slow))) for _ in range(2)]
    for t in threads:
        t.start()
    started.wait(5)
    time.sleep(0.05)
    with pytest.raises(QueueFull) as exc:
        queue.run(lambda: "never")
    assert exc.value.retry_after >= 1
    release.set()
    for t in threads:
        t.join()
    assert results == ["done", "done"]
    assert queue.run(lambda: "free again") == "free again"


def test_background_jobs_let_waiting_requests_go_first():
    """Prompt pictures are generated as background jobs: a click queued behind them runs before any of them."""
    queue = WorkQueue(capacity=8)
    started, release = threading.Event(), threading.Event()
    order = []

    def first():
        started.set()
        release.wait(5)
        order.append("running")

    threads = [threading.Thread(target=lambda: queue.run(first))]
    threads[0].start()
    started.wait(5)
    for i in range(3):  # queued while the device is busy: background work first, then a person's click
        threads.append(threading.Thread(target=lambda i=i: queue.run(lambda: order.append(f"bg{i}"), background=True)))
        threads[-1].start()
    time.sleep(0.05)
    threads.append(threading.Thread(target=lambda: queue.run(lambda: order.append("click"))))
    threads[-1].start()
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(5)
    assert order[:2] == ["running", "click"] and sorted(order[2:]) == ["bg0", "bg1", "bg2"]


def test_a_job_whose_client_left_does_not_run():
    from app.jobs import ClientGone

    ran = []
    with pytest.raises(ClientGone):
        WorkQueue(capacity=1).run(lambda: ran.append(1), gone=lambda: True)
    assert ran == []


class SlowSpace:
    """The tiny space with a decode that takes a while (to fill the queue)."""

    def __init__(self, inner, seconds):
        self._inner, self._seconds = inner, seconds

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def decode(self, requests):
        time.sleep(self._seconds)
        return self._inner.decode(requests)


def test_overload_answers_429_with_retry_after(tiny_space, tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(make_settings(tmp_path / "busy", max_queued_jobs=2), space=SlowSpace(tiny_space, 0.5))
    with TestClient(app) as client:
        body = client.post("/api/maps", json={"title": "busy"}).json()
        client.post(
            f"/api/maps/{body['id']}/prompts", json={"prompts": ["a", "b"]}, headers={"X-Edit-Key": body["edit_key"]}
        )
        responses = []

        def hit(i):
            responses.append(client.post(f"/api/maps/{body['id']}/decode", json={"x": 0.01 * i, "y": 0, "seed": i}))

        threads = [threading.Thread(target=hit, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 429 in codes and set(codes) <= {200, 429}
        busy = next(r for r in responses if r.status_code == 429)
        assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["detail"]


def test_map_listing_can_be_turned_off(make_client, tmp_path):
    client = make_client(tmp_path / "private", list_maps=False)
    made = client.post("/api/maps", json={"title": "unlisted"}).json()
    r = client.get("/api/maps")
    assert r.status_code == 403 and "link" in r.json()["detail"]
    assert client.get(f"/api/maps/{made['id']}").json()["title"] == "unlisted"  # the link still works


def test_a_client_that_disconnects_while_queued_frees_its_slot(tiny_space, tmp_path):
    import httpx

    from tests.helpers import serve_live

    slow = SlowSpace(tiny_space, 1.5)
    decoded = []
    inner_decode = slow.decode
    slow.decode = lambda requests: decoded.append(requests[0].seed) or inner_decode(requests)
    url, stop = serve_live(create_app(make_settings(tmp_path / "gone", max_queued_jobs=4), space=slow))
    try:
        made = httpx.post(f"{url}/api/maps", json={"title": "gone"}).json()
        httpx.post(
            f"{url}/api/maps/{made['id']}/prompts",
            json={"prompts": ["a", "b"]},
            headers={"X-Edit-Key": made["edit_key"]},
        )
        busy = threading.Thread(
            target=lambda: httpx.post(
                f"{url}/api/maps/{made['id']}/decode", json={"x": 0, "y": 0, "seed": 1}, timeout=30
            )
        )
        busy.start()
        time.sleep(0.3)  # seed 1 holds the model
        with pytest.raises(httpx.TimeoutException):  # seed 2 waits behind it, then its client gives up
            httpx.post(f"{url}/api/maps/{made['id']}/decode", json={"x": 0, "y": 0, "seed": 2}, timeout=0.5)
        busy.join(30)
        r = httpx.post(f"{url}/api/maps/{made['id']}/decode", json={"x": 0, "y": 0, "seed": 3}, timeout=30)
        assert r.status_code == 200
        assert decoded == [1, 3], "the abandoned request never ran"
    finally:
        stop()
