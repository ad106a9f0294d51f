"""The map renderer (static/js/render/) in headless Chromium against a real server: pictures drawn at their
items' places at close zoom, dots far out, tiles fetched for the view only.

Real pictures: crops of sklearn's two sample photographs (a temple and a flower), uploaded as a folder would be.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.browser_util import screenshot

pytestmark = pytest.mark.browser


def photo_crops(n: int, size: int = 96) -> list[bytes]:
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        im = images[i % 2]
        h, w, _ = im.shape
        y, x = rng.integers(0, h - size), rng.integers(0, w - size)
        buf = io.BytesIO()
        Image.fromarray(im[y : y + size, x : x + size]).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


@pytest.fixture(scope="module")
def photo_map(live_server):
    created = live_server.create_map("photos")
    key = {"X-Edit-Key": created["edit_key"]}
    crops = photo_crops(40)
    for start in range(0, len(crops), 20):
        files = [
            ("files", (f"crop{start + i}.png", data, "image/png")) for i, data in enumerate(crops[start : start + 20])
        ]
        r = live_server.http.post(f"/api/maps/{created['id']}/images", files=files, headers=key)
        assert r.status_code == 201, r.text
    live_server.add_prompts(created["id"], created["edit_key"], ["a red temple roof", "an orange flower"])
    return created["id"]


def canvas_box(page) -> dict:
    return page.evaluate(
        "(() => { const r = document.getElementById('map-canvas').getBoundingClientRect();"
        " return {x: r.left, y: r.top, w: r.width, h: r.height}; })()"
    )


def crop_at(page, cx: float, cy: float, size: float) -> Image.Image:
    im = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    half = size / 2
    return im.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))


CLOSE_UP_MAE = 25  # mean abs error (0-255) of a drawn close-up picture against its thumbnail


def mae(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a.resize((48, 48)), float) - np.asarray(b.resize((48, 48)), float)).mean())


def wait_drawn(page) -> dict:
    """Every tile the view needs has arrived and was drawn; the renderer's figures."""
    page.wait_for_function("(() => { const r = window.latentmap.renderer(); return r && r.settled; })()")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return page.evaluate("window.latentmap.renderer()")


@pytest.fixture(scope="module")
def isolated_item(live_server, photo_map) -> dict:
    """The image item farthest from its nearest neighbour (close up nothing else is drawn over it), that distance,
    and every image item's thumbnail."""
    points = live_server.points(photo_map)
    images = [p for p in points if p["kind"] == "image"]
    xy = np.array([[p["x"], p["y"]] for p in points])
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 1e9
    item = max(images, key=lambda p: dist[points.index(p)].min())
    # The renderer sizes a picture by its room: the max-norm distance to the nearest other picture.
    pictured = np.array([[p["x"], p["y"]] for p in images if p is not item])
    room = float(np.abs(pictured - [item["x"], item["y"]]).max(axis=1).min()) if len(pictured) else np.inf
    thumbs = {
        p["id"]: Image.open(io.BytesIO(live_server.http.get(f"/api/items/{p['id']}/thumbnail").content)).convert("RGB")
        for p in images
    }
    return {"item": item, "gap": dist[points.index(item)].min(), "room": room, "thumbs": thumbs, "count": len(points)}


def test_picture_drawn_at_its_item_close_up_and_clicks_decode(live_server, page, photo_map, isolated_item):
    item, gap, thumbs = isolated_item["item"], isolated_item["gap"], isolated_item["thumbs"]
    zoom = 1 / (gap * 4)  # the visible height spans four gaps: the item alone at the centre, large
    page.goto(live_server.url(f"/m/{photo_map}?view={item['x']},{item['y']},{zoom}"))
    page.wait_for_selector("body[data-ready='1']")
    info = wait_drawn(page)
    assert info["library"].startswith("latentmap") and info["pictures"] >= 1 and info["picturePx"] >= 28, info
    box = canvas_box(page)
    cx, cy = box["x"] + box["w"] / 2, box["y"] + box["h"] / 2
    # The picture is drawn larger than its cell when it has room: at least the cell size, at most 160 px.
    size = min(160, isolated_item["room"] * zoom * box["h"] * 0.9)
    assert size >= info["picturePx"]
    drawn = crop_at(page, cx, cy, size * 0.9)
    screenshot(page, "render-close-up")
    inner = {
        pid: t.crop((t.width * 0.05, t.height * 0.05, t.width * 0.95, t.height * 0.95)) for pid, t in thumbs.items()
    }
    errors = {pid: mae(drawn, t) for pid, t in inner.items()}
    best = min(errors, key=errors.get)
    assert best == item["id"], (errors[best], errors[item["id"]])
    assert errors[item["id"]] < CLOSE_UP_MAE, errors[item["id"]]

    # A click on the picture selects its item and decodes the spot.
    page.mouse.click(cx + size * 0.2, cy - size * 0.2)
    page.wait_for_function("document.getElementById('map-root').dataset.decodeState === 'done'")
    assert page.evaluate("window.latentmap.state.selected && window.latentmap.state.selected.id") == item["id"]
    first = page.evaluate("window.latentmap.state.current.x")
    # A click on empty space (a gap away from every item) decodes there and selects nothing.
    page.mouse.click(cx + box["h"] * 0.4, cy)
    page.wait_for_function(
        """(x0) => { const s = window.latentmap.state;
            return document.getElementById('map-root').dataset.decodeState === 'done' && !s.selected
                && s.current.x !== x0; }""",
        arg=first,
    )
    current = page.evaluate("window.latentmap.state.current")
    assert current["x"] == pytest.approx(item["x"] + 0.4 / zoom, rel=0.02, abs=0.02 / zoom)


def test_far_out_the_map_draws_dots(live_server, page, photo_map, isolated_item):
    # Far out: the whole map a few hundred pixels wide; pictures would be unreadable, so dots.
    bounds = live_server.http.get(f"/api/maps/{photo_map}").json()["bounds"]
    far = 1 / ((bounds[3] - bounds[1]) * 4)
    page.goto(live_server.url(f"/m/{photo_map}?view={(bounds[0] + bounds[2]) / 2},{(bounds[1] + bounds[3]) / 2},{far}"))
    page.wait_for_selector("body[data-ready='1']")
    info = wait_drawn(page)
    assert info["pictures"] == 0 and info["points"] == isolated_item["count"], info
    arr = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), int)
    screenshot(page, "render-far-out")
    image_blue, prompt_yellow = np.array([76, 195, 217]), np.array([242, 184, 75])
    assert (np.abs(arr - image_blue).sum(axis=2) < 60).sum() >= 150  # the 40 image items as their kind's dots
    assert (np.abs(arr - prompt_yellow).sum(axis=2) < 60).sum() >= 8  # and the prompts
    # Nowhere near the close-up's likeness: the middle of the view is no picture of the item.
    box = canvas_box(page)
    middle = crop_at(page, box["x"] + box["w"] / 2, box["y"] + box["h"] / 2, 96)
    assert mae(middle, isolated_item["thumbs"][isolated_item["item"]["id"]]) > CLOSE_UP_MAE + 10
