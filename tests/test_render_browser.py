"""The deck.gl map renderer (static/js/render/) in headless Chromium against a real server: pictures drawn at their
items' places at close zoom, dots far out, tiles fetched for the view only.

Real pictures: crops of sklearn's two sample photographs (a temple and a flower), uploaded as a folder would be.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from browser_util import browser, live_server, new_page, screenshot  # noqa: F401  (fixtures)
from PIL import Image


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
        Image.fromarray(im[y:y + size, x:x + size]).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


@pytest.fixture(scope="module")
def photo_map(live_server):  # noqa: F811
    created = live_server.create_map("photos")
    key = {"X-Edit-Key": created["edit_key"]}
    crops = photo_crops(40)
    for start in range(0, len(crops), 20):
        files = [("files", (f"crop{start + i}.png", data, "image/png")) for i, data in enumerate(crops[start:start + 20])]
        r = live_server.http.post(f"/api/maps/{created['id']}/images", files=files, headers=key)
        assert r.status_code == 201, r.text
    live_server.add_prompts(created["id"], created["edit_key"], ["a red temple roof", "an orange flower"])
    return created["id"]


def canvas_crop(page, size: int) -> Image.Image:
    """The size × size square of the page's pixels around the map's centre (viewport = map in the harness)."""
    png = page.screenshot()
    im = Image.open(io.BytesIO(png)).convert("RGB")
    cx, cy = im.width // 2, im.height // 2
    return im.crop((cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2))


def mae(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a.resize((48, 48)), float) - np.asarray(b.resize((48, 48)), float)).mean())


def test_picture_drawn_at_its_item_close_up_and_dots_far_out(live_server, browser, photo_map):  # noqa: F811
    points = live_server.points(photo_map)
    images = [p for p in points if p["kind"] == "image"]
    xy = np.array([[p["x"], p["y"]] for p in points])
    # The item farthest from its nearest neighbour: close up nothing else is drawn over it.
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 1e9
    item = max(images, key=lambda p: dist[points.index(p)].min())
    gap = dist[points.index(item)].min()
    thumbs = {p["id"]: Image.open(io.BytesIO(live_server.http.get(f"/api/items/{p['id']}/thumbnail").content))
              .convert("RGB") for p in images}
    context, page, problems = new_page(browser)
    try:
        zoom = 1 / (gap * 4)  # the visible height spans four gaps: the item alone at the centre, large
        page.goto(live_server.url(f"/static/js/render/harness.html?map={photo_map}&view={item['x']},{item['y']},{zoom}"))
        page.wait_for_selector("body[data-ready='1']")
        stats = page.evaluate("window.renderer.stats()")
        assert stats["pictures"] >= 1 and stats["picturePx"] >= 28, stats
        # What is under the centre is that item's picture, by the renderer's own picking.
        hit = page.evaluate("(() => { const r = document.getElementById('map').getBoundingClientRect();"
                            " return window.renderer.pickAt(r.width / 2, r.height / 2); })()")
        assert hit and hit["picture"] and points[hit["index"]]["id"] == item["id"], hit
        assert hit["sizePx"] >= stats["picturePx"]
        # And the pixels there are that picture's (the closest match among all the map's pictures).
        drawn = canvas_crop(page, int(hit["sizePx"] * 0.9))
        screenshot(page, "render-close-up")
        errors = {pid: mae(drawn, t.crop((t.width * 0.05, t.height * 0.05, t.width * 0.95, t.height * 0.95)))
                  for pid, t in thumbs.items()}
        best = min(errors, key=errors.get)
        assert best == item["id"], (errors[best], errors[item["id"]])
        assert errors[item["id"]] < 25, errors[item["id"]]

        # Far out: the whole map is a few hundred pixels wide; pictures would be unreadable, so dots.
        page.evaluate("(b) => { window.renderer.fitBounds(b); const v = window.renderer.getView();"
                      " window.renderer.setView({...v, zoom: v.zoom / 5}); return window.renderer.whenSettled(); }",
                      live_server.http.get(f"/api/maps/{photo_map}").json()["bounds"])
        stats = page.evaluate("window.renderer.stats()")
        assert stats["pictures"] == 0 and stats["points"] == len(points), stats
        far = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        screenshot(page, "render-far-out")
        arr = np.asarray(far, int)
        image_blue = np.array([76, 195, 217])
        prompt_yellow = np.array([242, 184, 75])
        assert (np.abs(arr - image_blue).sum(axis=2) < 40).sum() >= 150  # the 40 image items as their kind's dots
        assert (np.abs(arr - prompt_yellow).sum(axis=2) < 60).sum() >= 8  # and the prompts (near each other)
        assert mae(canvas_crop(page, int(hit["sizePx"])), thumbs[item["id"]]) > errors[item["id"]] + 10
        assert not problems.errors and not problems.console_errors, (problems.errors, problems.console_errors)
    finally:
        context.close()
