"""A map too large for the page to hold (200,000 points), in headless Chromium against a real server: the page
downloads no points (tile-only), hover tooltips come from the tiles on screen, the label filter is matched on the
server, and a lasso drawn with the mouse selects on the server by polygon — the count the page shows is the number
of points inside the polygon, counted here.

The map is written straight into the store (as bench/render.py does): 200,000 clustered points in a few seconds.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from tests.browser_util import open_tab, screenshot, start_server, stop_server

N_POINTS = 200_000


def clustered(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    centers = rng.uniform(-8, 8, (40, 2))
    which = rng.integers(0, 40, n)
    return (centers[which] + rng.normal(0, 1, (n, 2)) * rng.uniform(0.2, 0.8, 40)[which, None]).astype(np.float32)


@pytest.fixture(scope="module")
def big_map(tmp_path_factory):
    from app.maps.store import NewItem, Store

    data_dir = tmp_path_factory.mktemp("latentmap-big")
    store = Store(data_dir)
    record, _ = store.create_map("two hundred thousand", "tiny-random")
    xy = clustered(N_POINTS)
    vec = np.zeros(8, np.float32)
    step = 50_000
    for start in range(0, N_POINTS, step):
        items = [
            NewItem(kind="text", label=f"thing {i}", vector=vec, decode_vector=vec) for i in range(start, start + step)
        ]
        store.add_items(record.id, items, xy[start : start + step], projection={"method": "umap", "revision": 1})
    store.close()
    server = start_server(data_dir)
    try:
        yield server, record.id, xy
    finally:
        stop_server(server)


def canvas_origin(page) -> tuple[float, float]:
    box = page.evaluate(
        "(() => { const r = document.getElementById('map-canvas').getBoundingClientRect(); return [r.left, r.top]; })()"
    )
    return box[0], box[1]


def inside_convex(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Points strictly on the inner side of every edge of a convex polygon (either winding)."""
    sides = []
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0)):
        sides.append((b[0] - a[0]) * (xy[:, 1] - a[1]) - (b[1] - a[1]) * (xy[:, 0] - a[0]))
    sides = np.stack(sides)
    return (sides > 0).all(axis=0) | (sides < 0).all(axis=0)


def draw_lasso(page, screen: list[tuple[float, float]]) -> list[list[float]]:
    """Drag around the polygon as a user does (lasso mode on); returns its vertices in map coordinates."""
    left, top = canvas_origin(page)
    polygon = [page.evaluate("([x, y]) => window.latentmap.screenToData(x, y)", [x, y]) for x, y in screen]
    page.mouse.move(left + screen[0][0], top + screen[0][1])
    page.mouse.down()
    for x, y in screen[1:] + screen[:1]:
        page.mouse.move(left + x, top + y, steps=8)
    page.mouse.up()
    return polygon


def shown_count(page) -> int:
    page.wait_for_function("document.getElementById('explore-selection-info').dataset.count !== ''")
    return int(page.get_attribute("#explore-selection-info", "data-count"))


def test_tile_only_map_hover_filter_and_lasso_by_polygon(big_map, pages):
    server, map_id, xy = big_map
    page = pages(accept_downloads=True)
    whole = []
    page.on(
        "request", lambda r: whole.append(r.url) if r.url.split("?")[0].endswith(("/points", "/points.bin")) else None
    )
    page.goto(server.url(f"/m/{map_id}"))
    page.wait_for_selector("body[data-ready='1']", timeout=120_000)
    assert page.evaluate("window.latentmap.state.pointsFormat") == "tiles"
    assert page.evaluate("window.latentmap.state.items.length") == N_POINTS
    page.wait_for_function("window.latentmap.renderer().settled && window.latentmap.renderer().points > 0")
    info = page.evaluate("window.latentmap.renderer()")
    assert info["tiled"] and 0 < info["points"] < N_POINTS, info

    # A lasso around part of the map, drawn with the mouse: the count is what lies inside, counted here.
    open_tab(page, "explore")
    page.click("#explore-lasso-btn")
    w, h = page.evaluate(
        "(() => { const r = document.getElementById('map-canvas').getBoundingClientRect();"
        " return [r.width, r.height]; })()"
    )
    screen = [(w * 0.2, h * 0.25), (w * 0.75, h * 0.15), (w * 0.85, h * 0.8), (w * 0.3, h * 0.7)]
    polygon = np.array(draw_lasso(page, screen))
    expected = int(inside_convex(xy.astype(np.float64), polygon).sum())
    assert expected > 30_000  # a lasso over a large part of the map
    assert shown_count(page) == expected
    assert page.inner_text("#explore-selection-info").startswith(f"{expected} points selected")
    sent = page.evaluate("window.latentmap.state.selectionPolygon")
    assert len(sent) >= 4 and np.allclose(sent[0], polygon[0], atol=1e-3)
    screenshot(page, "pixels-lasso-200k")

    # A small lasso, exported: the CSV lists exactly the points inside it.
    cx, cy = w * 0.5, h * 0.5
    small = [(cx - 12, cy - 10), (cx + 12, cy - 10), (cx + 12, cy + 10), (cx - 12, cy + 10)]
    polygon = np.array(draw_lasso(page, small))
    inside = inside_convex(xy.astype(np.float64), polygon)
    assert shown_count(page) == int(inside.sum()) > 0
    with page.expect_download() as download:
        page.click("#explore-export-csv")
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert sorted(r["label"] for r in rows) == sorted(f"thing {i}" for i in np.flatnonzero(inside))
    page.click("#explore-lasso-btn")  # lasso off

    # The label filter is matched on the server: "thing 1999" is thing 1999, 19990-19999, 199900-199999.
    page.fill("#explore-filter-input", "thing 1999")
    page.wait_for_function("!document.getElementById('explore-filter-info').hidden")
    assert page.inner_text("#explore-filter-info") == f"111 of {N_POINTS} points match “thing 1999”."

    # Hover: the tooltip of the point under the cursor, from the tiles (an outlying point, close up).
    k = int(np.argmax(xy[:, 0]))
    gap = float(np.sort(np.abs(xy - xy[k]).max(axis=1))[1])
    page.goto(server.url(f"/m/{map_id}?view={xy[k, 0]},{xy[k, 1]},{1 / (gap * 20)}"))
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_function("window.latentmap.renderer().settled")
    left, top = canvas_origin(page)
    sx, sy = page.evaluate(f"window.latentmap.dataToScreen({float(xy[k, 0])}, {float(xy[k, 1])})")
    page.mouse.move(left + sx - 20, top + sy - 20)
    page.mouse.move(left + sx, top + sy, steps=4)
    page.wait_for_selector("#tooltip:not([hidden])")
    assert page.inner_text("#tooltip .tooltip-label") == f"thing {k}"
    assert not whole, whole  # nothing downloaded every point


def detailed_photos(n: int, size: int = 128) -> list[bytes]:
    """Crops of sklearn's sample photographs under a 2-pixel checkerboard: detail a 64 px cell cannot hold."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    rng = np.random.default_rng(3)
    checker = ((np.indices((size, size)) // 2).sum(axis=0) % 2).astype(bool)
    out = []
    for i in range(n):
        im = images[i % 2]
        y, x = rng.integers(0, im.shape[0] - size), rng.integers(0, im.shape[1] - size)
        crop = im[y : y + size, x : x + size].copy()
        crop[checker] = crop[checker] // 4
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def detail_of(a: np.ndarray) -> float:
    return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())


def test_close_up_picture_is_the_items_own_thumbnail_and_download_fits(live_server, pages):
    """Drawn larger than its 64 px atlas cell, a picture is replaced by its item's own (128 px) thumbnail: the
    canvas there is closer to the thumbnail than the atlas' cell enlarged would be. "Download PNG" fits the
    1280 px page."""
    from PIL import Image

    created = live_server.create_map("close-ups")
    files = [("files", (f"crop{i}.png", data, "image/png")) for i, data in enumerate(detailed_photos(10))]
    r = live_server.http.post(
        f"/api/maps/{created['id']}/images", files=files, headers={"X-Edit-Key": created["edit_key"]}
    )
    assert r.status_code == 201, r.text
    points = live_server.points(created["id"])
    xy = np.array([[p["x"], p["y"]] for p in points])
    dist = np.abs(xy[:, None] - xy[None]).max(axis=2) + np.eye(len(xy)) * 1e9
    k = int(dist.min(axis=1).argmax())  # the most isolated item: nothing else drawn over it close up
    item, gap = points[k], float(dist[k].min())
    thumb = Image.open(io.BytesIO(live_server.http.get(f"/api/items/{item['id']}/thumbnail").content)).convert("RGB")
    assert max(thumb.size) == 128
    page = pages()
    zoom = 1 / (gap * 3)
    page.goto(live_server.url(f"/m/{created['id']}?view={item['x']},{item['y']},{zoom}"))
    page.wait_for_selector("body[data-ready='1']")
    # Own thumbnails upload one a frame after the camera settles: wait for all those wanted, not the first.
    page.wait_for_function(
        "(() => { const r = window.latentmap.renderer(); return r.settled && r.sharp >= 1 && r.sharp === r.sharpWanted; })()"
    )
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    info = page.evaluate("window.latentmap.renderer()")
    assert info["sharp"] == info["sharpWanted"] >= 1, info
    left, top = canvas_origin(page)
    sx, sy = page.evaluate(f"window.latentmap.dataToScreen({item['x']}, {item['y']})")
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    size = min(160, gap * zoom * page.evaluate("document.getElementById('map-canvas').clientHeight") * 0.9)
    box = (left + sx - size * 0.45, top + sy - size * 0.45, left + sx + size * 0.45, top + sy + size * 0.45)
    drawn = np.asarray(shot.crop(tuple(round(v) for v in box)), float)
    side = drawn.shape[1], drawn.shape[0]
    inner = (thumb.width * 0.05, thumb.height * 0.05, thumb.width * 0.95, thumb.height * 0.95)
    sharp = np.asarray(thumb.crop(inner).resize(side, Image.Resampling.BILINEAR), float)
    soft = np.asarray(
        thumb.resize((64, 64), Image.Resampling.LANCZOS)
        .crop((3.2, 3.2, 60.8, 60.8))
        .resize(side, Image.Resampling.BILINEAR),
        float,
    )
    # Detail = mean step between neighbouring pixels: the drawn picture has the own thumbnail's, not the cell's.
    detail = {name: detail_of(a) for name, a in (("drawn", drawn), ("own", sharp), ("cell", soft))}
    assert abs(detail["drawn"] - detail["own"]) < abs(detail["drawn"] - detail["cell"]), detail
    assert detail["drawn"] > 1.3 * detail["cell"], detail

    # A click on it decodes; "Download PNG" lies wholly inside the 1280 px page.
    page.mouse.click(left + sx, top + sy)
    page.wait_for_function("document.getElementById('map-root').dataset.decodeState === 'done'")
    right = page.evaluate("document.getElementById('download-btn').getBoundingClientRect().right")
    assert page.is_visible("#download-btn") and right <= page.evaluate("window.innerWidth"), right
    screenshot(page, "pixels-close-up")


def test_tile_only_small_map_click_select_and_delete(live_server, pages):
    """`?points=tiles` puts a small map in the tile-only mode of big maps: a click on a point selects its item
    (label fetched on demand), the owner deletes it and the map's new tiles no longer hold it."""
    created = live_server.create_map("tile-only")
    labels = ["an owl", "a lighthouse at night", "a bowl of fruit"]
    live_server.add_prompts(created["id"], created["edit_key"], labels)
    points = live_server.points(created["id"])
    page = pages()
    page.goto(live_server.url(f"/m/{created['id']}?points=tiles#key={created['edit_key']}"))
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate("window.latentmap.state.pointsFormat") == "tiles"
    page.wait_for_function("window.latentmap.renderer().settled && window.latentmap.renderer().points === 3")
    version = page.evaluate("window.latentmap.renderer().tileVersion")
    target = points[1]
    left, top = canvas_origin(page)
    sx, sy = page.evaluate(f"window.latentmap.dataToScreen({target['x']}, {target['y']})")
    page.mouse.move(left + sx - 15, top + sy - 15)
    page.mouse.move(left + sx, top + sy, steps=3)
    page.wait_for_function("window.latentmap.state.hovered === 1")
    page.mouse.click(left + sx, top + sy)
    page.wait_for_function(f"document.getElementById('selected-label').textContent === 'Prompt: {target['label']}'")
    page.wait_for_function("document.getElementById('map-root').dataset.decodeState === 'done'")
    page.click("#delete-btn")
    page.wait_for_function(f"window.latentmap.renderer().tileVersion !== {version}")
    page.wait_for_function("window.latentmap.renderer().settled && window.latentmap.renderer().points === 2")
    assert sorted(p["label"] for p in live_server.points(created["id"])) == sorted(set(labels) - {target["label"]})
    assert page.evaluate("window.latentmap.state.items.length") == 2
