"""Terrain tiles (issue #18) on the tiny-random space: the public contract (square, tile geometry, cells as the
decode of their centres), byte-identical tiles with ETag / 304, revisions, bad requests, and fairness (clicks
before tiles, tile work bounded per client and in total). Meaning on the digits space: test_terrain_digits.py."""

import io
import threading

import numpy as np
import pytest
from PIL import Image

from app.jobs import CLICK, TILE, QueueFull, WorkQueue
from tests.helpers import png_bytes

CELLS, CELL_PX = 2, 16  # tiny-random decodes are 32 px: cells are averaged down, as real spaces' are


@pytest.fixture
def tclient(make_client):
    return make_client(terrain_cells=CELLS, terrain_cell_px=CELL_PX, terrain_max_zoom=4)


@pytest.fixture
def tmap(tclient):
    made = tclient.post("/api/maps", json={"title": "terrain"}).json()
    key = {"X-Edit-Key": made["edit_key"]}
    tclient.post(
        f"/api/maps/{made['id']}/prompts", json={"prompts": ["a red fox", "a blue car", "green hills"]}, headers=key
    ).raise_for_status()
    tclient.post(
        f"/api/maps/{made['id']}/images",
        headers=key,
        files=[
            ("files", ("warm.png", png_bytes((220, 120, 20)), "image/png")),
            ("files", ("cold.png", png_bytes((20, 60, 230)), "image/png")),
        ],
    ).raise_for_status()
    return made["id"], key


def tile_url(map_id, z, x, y, **query):
    params = "&".join(f"{k}={v}" for k, v in {"seed": 0, **query}.items())
    return f"/api/maps/{map_id}/terrain/{z}/{x}/{y}.png?{params}"


def cells(png: bytes) -> list[np.ndarray]:
    tile = Image.open(io.BytesIO(png)).convert("RGB")
    assert tile.size == (CELLS * CELL_PX, CELLS * CELL_PX)
    return [
        np.asarray(tile.crop((i * CELL_PX, j * CELL_PX, (i + 1) * CELL_PX, (j + 1) * CELL_PX)), np.float32)
        for j in range(CELLS)
        for i in range(CELLS)
    ]


def test_map_info_describes_a_square_around_the_map(tclient, tmap):
    map_id, _ = tmap
    info = tclient.get(f"/api/maps/{map_id}").json()
    terrain, (xmin, ymin, xmax, ymax) = info["terrain"], info["bounds"]
    (x0, y0), s = terrain["origin"], terrain["size"]
    assert x0 <= xmin and y0 <= ymin and x0 + s >= xmax and y0 + s >= ymax
    assert terrain["cells"] == CELLS and terrain["cell_px"] == CELL_PX and isinstance(terrain["revision"], int)
    empty = tclient.post("/api/maps", json={"title": "empty"}).json()
    assert tclient.get(f"/api/maps/{empty['id']}").json()["terrain"] is None
    r = tclient.get(tile_url(empty["id"], 0, 0, 0))
    assert r.status_code == 404 and "no items" in r.json()["detail"]


def test_each_cell_is_the_decode_of_its_centre(tclient, tmap):
    """The contract's geometry, computed here from the map info alone: tile (1, 1, 0) is the top right quarter;
    cell (i, j) resized back to the decode size matches POST /decode at its centre."""
    map_id, _ = tmap
    t = tclient.get(f"/api/maps/{map_id}").json()["terrain"]
    (x0, y0), s, g = t["origin"], t["size"], t["cells"]
    z, x, y, seed = 1, 1, 0, 5
    r = tclient.get(tile_url(map_id, z, x, y, seed=seed))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    side = s / 2**z
    for n, cell in enumerate(cells(r.content)):
        i, j = n % g, n // g
        cx, cy = x0 + (x + (i + 0.5) / g) * side, y0 + s - (y + (j + 0.5) / g) * side
        single = tclient.post(f"/api/maps/{map_id}/decode", json={"x": cx, "y": cy, "seed": seed})
        decoded = Image.open(io.BytesIO(single.content)).convert("RGB")
        back = np.asarray(
            Image.fromarray(cell.astype(np.uint8)).resize(decoded.size, Image.Resampling.NEAREST), np.float32
        )
        # the cell was averaged 2x2 down: compare it with the decode averaged the same way
        expect = np.asarray(decoded.resize((CELL_PX, CELL_PX), Image.Resampling.BOX), np.float32)
        assert np.abs(cell - expect).mean() <= 2.0, f"cell {i},{j} is not the decode of its centre"
        assert np.abs(back - np.asarray(decoded, np.float32)).mean() < 40
    other_seed = tclient.get(tile_url(map_id, z, x, y, seed=seed + 1)).content
    assert other_seed != r.content


def test_same_tile_twice_is_byte_identical_and_revalidates_with_304(tclient, tmap, make_client, tmp_path):
    map_id, _ = tmap
    first = tclient.get(tile_url(map_id, 1, 0, 1))
    again = tclient.get(tile_url(map_id, 1, 0, 1))
    assert first.status_code == again.status_code == 200 and first.content == again.content
    etag = first.headers["etag"]
    assert etag == again.headers["etag"] and "public" in first.headers["cache-control"]
    assert first.headers["x-decode-cache"] == "miss" and again.headers["x-decode-cache"] == "hit"
    not_modified = tclient.get(tile_url(map_id, 1, 0, 1), headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b"" and not_modified.headers["etag"] == etag
    assert tclient.get(tile_url(map_id, 1, 0, 1), headers={"If-None-Match": '"other"'}).status_code == 200
    # made again from nothing after a restart: the same bytes (a pure function of the map, not of the cache)
    tclient.__exit__(None, None, None)
    for f in (tmp_path / "data" / "decodes").glob("*.png"):
        f.unlink()
    restarted = make_client(terrain_cells=CELLS, terrain_cell_px=CELL_PX, terrain_max_zoom=4)
    remade = restarted.get(tile_url(map_id, 1, 0, 1))
    assert remade.headers["x-decode-cache"] == "miss" and remade.content == first.content
    assert remade.headers["etag"] == etag


def test_revision_changes_with_a_refit_and_with_new_items(tclient, tmap):
    map_id, key = tmap
    before = tclient.get(f"/api/maps/{map_id}").json()["terrain"]["revision"]
    etag = tclient.get(tile_url(map_id, 0, 0, 0)).headers["etag"]
    tclient.post(f"/api/maps/{map_id}/refit", headers=key).raise_for_status()
    after = tclient.get(f"/api/maps/{map_id}").json()["terrain"]["revision"]
    assert after != before
    refitted = tclient.get(tile_url(map_id, 0, 0, 0), headers={"If-None-Match": etag})
    assert refitted.status_code == 200 and refitted.headers["etag"] != etag
    tclient.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["a yellow kite"]}, headers=key).raise_for_status()
    assert tclient.get(f"/api/maps/{map_id}").json()["terrain"]["revision"] not in (before, after)


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("5/0/0.png?seed=0", 404, "deepest zoom"),
        ("1/2/0.png?seed=0", 404, "outside"),
        ("1/0/-1.png?seed=0", 404, "outside"),
        ("0/0/0.png?seed=-1", 422, "seed"),
        ("0/0/0.png?seed=2147483648", 422, "seed"),
        ("0/0/0.png?seed=0&variant=nope", 422, "variant"),
    ],
)
def test_bad_tiles_are_refused_with_a_message(tclient, tmap, path, status, message):
    map_id, _ = tmap
    r = tclient.get(f"/api/maps/{map_id}/terrain/{path}")
    assert r.status_code == status and message in r.json()["detail"]
    assert tclient.get("/api/maps/doesnotexist/terrain/0/0/0.png?seed=0").status_code == 404


def test_preview_tiles_are_their_own_tiles(tclient, tmap):
    map_id, _ = tmap
    assert tclient.get(f"/api/maps/{map_id}").json()["terrain"]["previews"] is True  # the page asks for them first
    full = tclient.get(tile_url(map_id, 0, 0, 0))
    preview = tclient.get(tile_url(map_id, 0, 0, 0, preview=1))
    assert preview.status_code == 200 and preview.content != full.content
    assert preview.headers["etag"] != full.headers["etag"]


def test_deleting_a_map_drops_its_cached_tiles(tclient, tmap):
    map_id, _ = tmap
    service = tclient.app.state.service
    key = tclient.get(tile_url(map_id, 0, 0, 0)).headers["x-decode-key"]
    assert service.store.cached_decode(key) is not None
    service.store.delete_map(map_id)
    assert service.store.cached_decode(key) is None


# ---------------------------------------------------------------------------------------------- fairness
def _steps(log, name, gate, slices):
    for i in range(slices):
        log.append(f"{name}{i}")
        gate.wait(5)
        yield None
    yield name


def test_a_click_goes_between_the_slices_of_a_tile():
    """A click that arrives while a tile is decoding runs after the tile's current slice, not after the tile;
    other tiles waiting meanwhile go after the click."""
    queue, log = WorkQueue(4), []
    slice_gate, started = threading.Event(), threading.Event()

    def tile_steps():
        for i in range(4):
            log.append(f"tile{i}")
            started.set()
            slice_gate.wait(5)
            yield None
        yield "tile"

    tile = threading.Thread(target=lambda: queue.run_steps(tile_steps(), lane=TILE))
    tile.start()
    started.wait(5)  # the tile's first slice holds the device
    second_tile = threading.Thread(
        target=lambda: queue.run_steps(_steps(log, "other", threading.Event(), 0), lane=TILE)
    )
    second_tile.start()
    click = threading.Thread(target=lambda: queue.run(lambda: log.append("click")))
    click.start()
    while queue.waiting(CLICK) == 0 or queue.waiting(TILE) == 0:
        threading.Event().wait(0.01)
    slice_gate.set()
    for t in (tile, second_tile, click):
        t.join(10)
    assert log.index("click") == 1, log  # right after the slice that was running
    assert log[-1] != "click" and log.count("click") == 1


def test_tile_work_is_bounded_per_client_and_in_total(make_client, tmp_path):
    client = make_client(terrain_cells=1, terrain_cell_px=8, max_tiles_per_client=2, max_tile_jobs=3)
    made = client.post("/api/maps", json={"title": "flood"}).json()
    client.post(
        f"/api/maps/{made['id']}/prompts", json={"prompts": ["a", "b", "c"]}, headers={"X-Edit-Key": made["edit_key"]}
    ).raise_for_status()
    service, terrain = client.app.state.service, client.app.state.terrain
    hold, holding = threading.Event(), threading.Event()

    def busy():
        holding.set()
        hold.wait(120)  # released below; the bound only ends a failed test (10 s passed by on a loaded machine)

    blocker = threading.Thread(target=lambda: service.queue.run(busy))  # the device is busy with a click
    blocker.start()
    holding.wait(5)
    results: dict[str, object] = {}

    def ask(name, client_id, x):
        try:
            results[name] = terrain.tile(terrain.tile_key(made["id"], 2, x, 0, 0), client_id)
        except QueueFull as e:
            results[name] = e

    waiters = []
    for admitted, (name, client_id, x) in enumerate([("a1", "A", 0), ("a2", "A", 1), ("b1", "B", 2)], start=1):
        waiters.append(threading.Thread(target=ask, args=(name, client_id, x)))
        waiters[-1].start()
        while terrain.admitted()[0] < admitted:  # one at a time: a1 is A's oldest tile, whatever the scheduler does
            threading.Event().wait(0.01)
    with pytest.raises(QueueFull) as full:  # three tiles waiting in total: a fourth client is told to retry
        terrain.tile(terrain.tile_key(made["id"], 2, 3, 0, 0), "C")
    assert full.value.retry_after >= 1 and terrain.admitted()[1] == {"A": 2, "B": 1}
    a1_ticket = terrain._admitted.by_client["A"][0]
    waiters.append(threading.Thread(target=ask, args=("a3", "A", 3)))  # A moved on: its oldest tile is dropped
    waiters[-1].start()
    for _ in range(3000):  # at most 30 s
        if a1_ticket.dropped:
            break
        threading.Event().wait(0.01)
    assert a1_ticket.dropped
    hold.set()  # the device is free again: the dropped tile leaves at its first slice, the others are made
    for t in [blocker, *waiters]:
        t.join(30)
    assert isinstance(results["a1"], QueueFull) and "dropped" in str(results["a1"])
    assert all(not isinstance(results[n], QueueFull) for n in ("a2", "a3", "b1")), results
    assert terrain.admitted() == (0, {})
    assert client.get(tile_url(made["id"], 2, 1, 0)).headers["x-decode-cache"] == "hit"  # a2 was made
    assert client.get(tile_url(made["id"], 2, 0, 0)).headers["x-decode-cache"] == "miss"  # a1 was dropped
