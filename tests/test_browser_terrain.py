"""The terrain layer (issue #18) in a real headless Chromium against `latentmap serve --space digits`: a user turns
"Show the space" on, the decoded tiles fill the empty map between the items, and the share link reproduces the
layer (on, same opacity, same pixels) in a fresh page.

Small on purpose: ten prompts, tiles of 4 x 4 cells of 16 px and zoom 1 at most (four tiles, 64 decodes): the
shared digits server's settings (tests/browser_util.py DIGITS_ENV).

Run: pytest -m browser tests/test_browser_terrain.py   (screenshots: test-output/screenshots/terrain-*.png)
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.maps.demo import DIGIT_WORDS
from tests.browser_util import empty_spot, open_tab, screenshot, wait_ready

pytestmark = pytest.mark.browser

SETTLE_MS = 240_000  # 64 digits decodes on a loaded 2-core machine
PATCH = 24  # px each side of the empty spot that is compared


@pytest.fixture(scope="module")
def digits_map(digits_server):
    """This module's own map on the shared digits server (its tests save tours on it): (id, edit key)."""
    created = digits_server.create_map("Digits terrain")
    digits_server.add_prompts(created["id"], created["edit_key"], DIGIT_WORDS)
    return created["id"], created["edit_key"]


def canvas_pixels(page) -> np.ndarray:
    """What the map canvas shows, as an RGB array (a screenshot of its box: what the user sees)."""
    png = page.locator("#map-canvas").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def patch_at(pixels: np.ndarray, page, spot: tuple[float, float]) -> np.ndarray:
    box = page.locator("#map-canvas").bounding_box()
    cx, cy = int(spot[0] - box["x"]), int(spot[1] - box["y"])
    return pixels[cy - PATCH : cy + PATCH, cx - PATCH : cx + PATCH]


def spread(patch: np.ndarray) -> float:
    """How far a patch is from one flat colour: the largest per-channel standard deviation."""
    return float(patch.reshape(-1, 3).std(axis=0).max())


def wait_settled(page) -> None:
    page.wait_for_function("() => { const r = window.latentmap.renderer(); return r && r.settled; }", timeout=SETTLE_MS)


def wait_terrain_drawn(page, opacity: float | None = None, variant: str | None = None) -> None:
    """The layer is on (at `opacity`, through `variant`'s decoder) and every tile the view needs has arrived."""
    page.wait_for_function(
        """([opacity, variant]) => {
        const lm = window.latentmap, r = lm.renderer();
        return r && r.terrain && r.terrain.visible && r.settled && (opacity === null || r.terrain.opacity === opacity)
            && lm.terrain.variant === variant;
    }""",
        arg=[opacity, variant],
        timeout=SETTLE_MS,
    )


def wait_terrain_off(page) -> None:
    page.wait_for_function(
        "() => { const r = window.latentmap.renderer(); return r && r.terrain && !r.terrain.visible; }"
    )


def test_show_the_space_draws_tiles_and_the_share_link_reproduces_them(digits_server, pages, digits_map):
    map_id, _ = digits_map
    page = pages()
    page.goto(digits_server.url(f"/m/{map_id}"))
    wait_ready(page)
    wait_settled(page)
    toggle = page.locator("#terrain-toggle")
    assert toggle.is_visible() and not toggle.is_checked()
    assert page.locator("#terrain-opacity").is_disabled()  # nothing to fade while the layer is off
    spot = empty_spot(page, min_distance=3 * PATCH)
    background = patch_at(canvas_pixels(page), page, spot)
    assert spread(background) < 1, "the empty map should be plain background before the layer is on"

    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/terrain/" in r.url else None)
    toggle.check()  # as a user does: click "Show the space"
    wait_terrain_drawn(page)
    # The digits space has previews: each tile's preview is asked for first, the full tile after it.
    tiles = {url.split("/terrain/")[1].split(".png")[0] for url in asked}
    assert tiles
    for tile in tiles:
        mine = [url for url in asked if f"/terrain/{tile}.png" in url]
        assert ["preview=1" in url for url in mine] == [True, False], mine
    page.locator("#terrain-opacity").fill("60")
    page.wait_for_function("window.latentmap.renderer().terrain.opacity === 0.6")
    wait_terrain_drawn(page)
    owner = canvas_pixels(page)
    shown = patch_at(owner, page, spot)
    # Decoded digits there now: the patch is no longer the background, and it is not one flat colour.
    assert np.abs(shown - background).mean() > 8, np.abs(shown - background).mean()
    assert spread(shown) > 4, spread(shown)
    screenshot(page, "terrain-on")

    link = page.input_value("#share-url")
    assert "terrain=1" in link and "terrain_opacity=0.60" in link, link

    visitor = pages()
    visitor.goto(link)
    wait_ready(visitor)
    wait_terrain_drawn(visitor)
    assert visitor.locator("#terrain-toggle").is_checked()
    assert visitor.input_value("#terrain-opacity") == "60"
    assert visitor.evaluate("window.latentmap.renderer().terrain.opacity") == pytest.approx(0.6)
    again = canvas_pixels(visitor)
    screenshot(visitor, "terrain-shared")
    assert again.shape == owner.shape
    # The same view, seed and tiles: the same picture (a share link's view is rounded: allow for edges).
    assert np.abs(patch_at(again, visitor, spot) - shown).mean() < 3
    assert np.abs(again - owner).mean() < 3


def test_tour_steps_and_presentation_followers_show_the_layer(digits_server, pages, digits_map):
    map_id, key = digits_map
    owner = pages()
    owner.goto(digits_server.url(f"/m/{map_id}#key={key}"))
    wait_ready(owner)
    open_tab(owner, "teach")
    owner.click("#present-start-btn")
    owner.wait_for_selector("#present-dialog[open]")
    follow_path = owner.get_attribute("#present-link", "href")
    owner.click("#present-dialog button[value='close']")

    follower = pages()
    follower.goto(digits_server.url(follow_path))
    wait_ready(follower)
    follower.wait_for_selector("#map-root[data-follow='following']")
    assert not follower.locator("#terrain-toggle").is_checked()

    # The presenter shows the space: the follower's layer follows (on, opacity), tiles and all.
    owner.locator("#terrain-toggle").check()
    owner.locator("#terrain-opacity").fill("50")
    wait_terrain_drawn(follower, opacity=0.5)
    assert follower.locator("#terrain-toggle").is_checked()
    spot = empty_spot(follower, min_distance=3 * PATCH)
    assert spread(patch_at(canvas_pixels(follower), follower, spot)) > 4  # decoded digits, not background

    # The owner records a tour: one step with the space shown, one with the items only.
    owner.click("#tour-recorder summary")
    owner.fill("#tour-caption", "The space between the digits")
    owner.click("#tour-add-step")
    owner.locator("#terrain-toggle").uncheck()
    wait_terrain_off(follower)  # still following
    owner.fill("#tour-caption", "The items only")
    owner.click("#tour-add-step")
    owner.fill("#tour-title", "Show the space")
    owner.click("#tour-save")
    owner.wait_for_selector("#tour-list li[data-tour-id]")
    tours = digits_server.http.get(f"/api/maps/{map_id}/tours").json()["tours"]
    assert [s["terrain"] for s in tours[0]["steps"]] == [
        {"on": True, "opacity": 0.5, "variant": None},
        {"on": False, "opacity": 0.5, "variant": None},
    ]
    # A step through the space's thick LoRA, made through the API.
    made = digits_server.http.post(
        f"/api/maps/{map_id}/tours",
        headers={"X-Edit-Key": key},
        json={
            "title": "Thick",
            "steps": [{"caption": "Thick strokes", "terrain": {"on": True, "variant": "thick"}}],
        },
    )
    assert made.status_code == 201, made.text

    # A visitor plays the tours: each step sets the layer as it was recorded.
    visitor = pages()
    visitor.goto(digits_server.url(f"/m/{map_id}"))
    wait_ready(visitor)
    open_tab(visitor, "teach")
    visitor.locator("#tour-list li", has_text="Show the space").locator(".tour-play").click()
    wait_terrain_drawn(visitor, opacity=0.5)
    assert visitor.locator("#terrain-toggle").is_checked()
    assert "terrain=1" in visitor.input_value("#share-url")
    visitor.keyboard.press("ArrowRight")
    wait_terrain_off(visitor)
    assert not visitor.locator("#terrain-toggle").is_checked()
    visitor.click("#tour-close")
    visitor.locator("#tour-list li", has_text="Thick").locator(".tour-play").click()
    wait_terrain_drawn(visitor, variant="thick")
    assert visitor.input_value("#terrain-variant") == "thick"
    assert "terrain_variant=thick" in visitor.input_value("#share-url")
    screenshot(visitor, "terrain-tour-thick")


def test_terrain_tiles_the_view_has_left_are_aborted_and_asked_again_when_wanted(live_server, page):
    """Terrain tiles cost the server g² decodes: when the user pans away, the page aborts the requests of the tiles
    it no longer needs (the server then stops at its next slice), and asks again if the user comes back."""
    page.goto(live_server.url("/"))
    result = page.evaluate("""async () => {
        const { TileSet } = await import('/static/js/render/tileset.js');
        const started = [], aborted = [];
        const tiles = new TileSet({
            load: (t, signal) => new Promise((resolve, reject) => {
                started.push(`${t.z}/${t.x}/${t.y}`);
                signal.addEventListener('abort', () => {
                    aborted.push(`${t.z}/${t.x}/${t.y}`);
                    reject(new DOMException('left', 'AbortError'));
                });
            }),
            onChange: () => {}, maxRequests: 8, abortLeft: true,
        });
        tiles.reset({ origin: [0, 0], size: 8 }, 3);
        const left = [0.1, 0.1, 0.9, 0.9], right = [7.1, 7.1, 7.9, 7.9];
        tiles.update(8, left, 256);   // zoom 3, one tile at the bottom left
        tiles.update(8, right, 256);  // panned to the top right
        await new Promise((r) => setTimeout(r, 0));
        const afterPan = { started: [...started], aborted: [...aborted], cached: [...tiles.cache.keys()] };
        tiles.update(8, left, 256);   // back again
        return { afterPan, startedAgain: started.slice(afterPan.started.length) };
    }""")
    assert result["afterPan"]["started"] == ["3/0/7", "3/7/0"]
    assert result["afterPan"]["aborted"] == ["3/0/7"]
    assert result["afterPan"]["cached"] == ["3/7/0"]  # the aborted tile is forgotten, not stuck half-loaded
    assert result["startedAgain"] == ["3/0/7"]
