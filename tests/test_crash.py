"""kill -9 in the middle of a large ingest: every acknowledged item survives whole, nothing half-written shows."""

import os
import signal
import sqlite3
import threading
import time

import httpx

from tests.browser_util import start_server, stop_server
from tests.helpers import png_bytes


def test_kill_9_during_ingest_loses_nothing_acknowledged(tmp_path):
    data = tmp_path / "data"
    server = start_server(data)
    proc, base = server.process, server.base_url
    try:
        made = httpx.post(base + "/api/maps", json={"title": "crash"}).json()
        map_id, key = made["id"], {"X-Edit-Key": made["edit_key"]}
        acknowledged: list[str] = []
        stop = threading.Event()

        def ingest():
            i = 0
            with httpx.Client(base_url=base, timeout=30) as http:
                while not stop.is_set():
                    files = [
                        ("files", (f"{i}-{j}.png", png_bytes((i * 7 % 255, j * 40, 90)), "image/png")) for j in range(4)
                    ]
                    try:
                        r = http.post(f"/api/maps/{map_id}/images", headers=key, files=files)
                    except httpx.TransportError:
                        return  # the server died mid-request: that request was never acknowledged
                    if r.status_code == 201:
                        acknowledged.extend(item["id"] for item in r.json()["items"])
                    i += 1

        worker = threading.Thread(target=ingest)
        worker.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 24 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-ingest: requests are in flight
        proc.wait(10)
        stop.set()
        worker.join(30)
    finally:
        stop_server(server)
    assert len(acknowledged) >= 24

    # The database is intact and every row points at a file that exists.
    db = sqlite3.connect(data / "latentmap.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute("SELECT id, has_thumbnail, vector_slot, decode_slot FROM items").fetchall()
    dtype, dim, vector_rows = db.execute(
        "SELECT dtype, dim, vector_rows FROM map_arrays WHERE map_id = ?", (map_id,)
    ).fetchone()
    db.close()
    # every row's vectors are in the committed part of the map's array file, which is on disk whole
    row_bytes = {"float16": 2, "float32": 4}[dtype] * dim
    assert (data / "arrays" / map_id / "vectors.bin").stat().st_size >= vector_rows * row_bytes
    for item_id, has_thumb, vector_slot, decode_slot in rows:
        assert 0 <= vector_slot < vector_rows and 0 <= decode_slot < vector_rows
        assert not has_thumb or (data / "thumbnails" / f"{item_id}.png").is_file()

    server = start_server(data)
    base = server.base_url
    try:
        kept = {p.stem for p in (data / "thumbnails").iterdir()}
        assert kept == {item_id for item_id, has_thumb, _, _ in rows if has_thumb}, "orphans are swept at start"
        points = {p["id"] for p in httpx.get(f"{base}/api/maps/{map_id}/points").json()["points"]}
        assert set(acknowledged) <= points
        for item_id in acknowledged[:: max(1, len(acknowledged) // 8)]:
            r = httpx.get(f"{base}/api/items/{item_id}/thumbnail")
            assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        r = httpx.post(f"{base}/api/maps/{map_id}/decode", json={"x": 0, "y": 0, "seed": 1}, timeout=60)
        assert r.status_code == 200
        r = httpx.post(
            f"{base}/api/maps/{map_id}/images", headers=key, files=[("files", ("after.png", png_bytes(), "image/png"))]
        )
        assert r.status_code == 201
    finally:
        stop_server(server)
