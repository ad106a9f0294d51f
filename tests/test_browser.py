"""End-to-end tests of the web pages in a real headless Chromium against a real `latentmap serve --space tiny-random`.

Run: pytest -m browser tests/test_browser.py   (screenshots land in test-output/screenshots/)
"""

from __future__ import annotations

import base64
import io
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from tests.browser_util import (
    click_item,
    decoded_image_base64,
    empty_spot,
    hover_until_tooltip,
    open_map,
    open_tab,
    png_bytes,
    point_count,
    point_screen_positions,
    screenshot,
    wait_point_count,
    wait_ready,
)

pytestmark = pytest.mark.browser

XSS_ALERT = "<img src=x onerror=alert(1)>"
XSS_FLAG = '<img src=x onerror="window.__xss=1">'


def test_index_lists_maps_and_creates_one(live_server, page):
    existing = live_server.create_map("<script>window.__xss=2</script> listed map")
    page.goto(live_server.url("/"))
    link = page.locator(f"a[href='/m/{existing['id']}']")
    link.wait_for()
    assert link.inner_text() == existing["title"]  # shown as text, not run
    screenshot(page, "01-index")

    page.fill("#create-title", "Created in the browser")
    page.click("#create-submit")
    page.wait_for_url(re.compile(r"/m/[A-Za-z0-9_-]+"))
    wait_ready(page)
    map_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    assert "key=" not in page.url  # the key left the address bar...
    stored = page.evaluate(f"localStorage.getItem('latentmap:key:{map_id}')")
    assert stored  # ...and lives in localStorage
    assert page.is_visible("#prompt-input")
    assert page.inner_text("#map-title") == "Created in the browser"
    assert page.evaluate("window.__xss") is None


OWNER_PROMPTS = ["a red bicycle", "a cat asleep on a sofa", XSS_ALERT, XSS_FLAG, "snowy mountains at dawn"]
OWNER_IMAGES = [("red.png", (220, 40, 40)), ("blue <b>.png", (40, 60, 220))]


def test_owner_adds_prompts_and_images(live_server, page):
    created = live_server.create_map("Owner flow")
    map_id, key = created["id"], created["edit_key"]
    page.goto(live_server.url(f"/m/{map_id}#key={key}"))
    wait_ready(page)
    assert "key=" not in page.url
    assert page.evaluate(f"localStorage.getItem('latentmap:key:{map_id}')") == key
    assert page.is_visible("#prompt-input") and page.is_visible("#file-input")

    # Prompts through the prompt box, one per line (blank lines ignored).
    page.fill("#prompt-input", "\n".join(OWNER_PROMPTS[:2] + [""] + OWNER_PROMPTS[2:]))
    page.click("#prompt-submit")
    wait_point_count(page, 5)
    page.wait_for_function("document.getElementById('prompt-input').value === ''")

    # Two images through the file picker.
    before = {p["id"]: (p["x"], p["y"]) for p in live_server.points(map_id)}
    page.set_input_files(
        "#file-input", [{"name": n, "mimeType": "image/png", "buffer": png_bytes(c)} for n, c in OWNER_IMAGES]
    )
    page.click("#upload-submit")
    wait_point_count(page, 7)
    page.wait_for_selector("#add-progress", state="hidden")
    after = {p["id"]: (p["x"], p["y"]) for p in live_server.points(map_id)}
    assert all(after[i] == xy for i, xy in before.items())  # new points did not move the old ones
    kinds = page.evaluate("window.latentmap.state.items.map((p) => p.kind)")
    assert kinds.count("text") == 5 and kinds.count("image") == 2
    page.mouse.move(5, 5)
    page.wait_for_timeout(150)
    screenshot(page, "02-map-with-points")
    assert page.evaluate("window.__xss") is None


@pytest.fixture(scope="module")
def owner_map(live_server):
    """The map the owner builds above, made through the API: five prompts (two XSS attempts) and two images. The
    tests on it only read it (decodes change no map)."""
    created = live_server.create_map("Owner map")
    map_id, key = created["id"], created["edit_key"]
    live_server.add_prompts(map_id, key, OWNER_PROMPTS)
    files = [("files", (n, png_bytes(c), "image/png")) for n, c in OWNER_IMAGES]
    response = live_server.http.post(f"/api/maps/{map_id}/images", files=files, headers={"X-Edit-Key": key})
    assert response.status_code == 201, response.text
    return map_id, key


def open_owner_map(page, live_server, owner_map, owner: bool = True) -> None:
    map_id, key = owner_map
    open_map(page, live_server, map_id, 7, key=key if owner else None)


def zoom_in(page) -> None:
    """Zoom in with the wheel, so that what follows goes through a non-trivial camera."""
    view_before = page.evaluate("window.latentmap.currentView()")
    box = page.locator("#map-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.45)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"window.latentmap.currentView().zoom > {view_before['zoom']} * 1.2")
    page.mouse.move(5, 5)


def test_tooltips_show_labels_as_text_and_thumbnails(live_server, page, owner_map):
    open_owner_map(page, live_server, owner_map)
    points = live_server.points(owner_map[0])
    # Hover: tooltip with the prompt text or the image thumbnail.
    hover_until_tooltip(page)
    assert page.inner_text("#tooltip .tooltip-label").strip()

    # Labels are text: the XSS prompt shows literally, nothing runs.
    xss_item = next(p for p in points if p["label"] == XSS_ALERT)
    hover_until_tooltip(page, xss_item["id"])
    assert page.inner_text("#tooltip .tooltip-label") == XSS_ALERT
    assert page.locator("#tooltip img").count() == 0
    screenshot(page, "03-tooltip-escaped")
    image_item = next(p for p in points if p["kind"] == "image")
    hover_until_tooltip(page, image_item["id"])
    page.wait_for_function(
        "() => { const i = document.querySelector('#tooltip img'); return i && i.complete && i.naturalWidth > 0; }"
    )
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert page.evaluate("window.__xss") is None


def test_points_drawn_where_computed_and_a_click_decodes_there(live_server, page, owner_map):
    open_owner_map(page, live_server, owner_map)
    zoom_in(page)
    # Our data -> pixel conversion agrees with where the renderer draws each point under this camera: the
    # screen pixel at every point's computed position shows a point, not the map's background.
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    drawn = [p for p in point_screen_positions(page) if p["inside"]]
    assert drawn
    for p in drawn:
        r, g, b = shot.getpixel((round(p["x"]), round(p["y"])))
        assert max(abs(r - 0x14), abs(g - 0x17), abs(b - 0x1C)) > 60, (p, (r, g, b))

    # Click empty space: crosshair, spinner, then the decoded image.
    x, y = empty_spot(page)
    page.mouse.click(x, y)
    page.wait_for_selector("#crosshair:not([hidden])")
    first_png = decoded_image_base64(page)
    assert base64.b64decode(first_png)[:8] == b"\x89PNG\r\n\x1a\n"
    at = page.evaluate("[window.latentmap.state.current.x, window.latentmap.state.current.y]")
    # The click's pixel maps to the data point the crosshair sits on.
    crosshair = page.evaluate("""() => { const r = document.getElementById('crosshair').getBoundingClientRect();
                                 return [r.left + r.width / 2, r.top + r.height / 2]; }""")
    assert abs(crosshair[0] - x) < 2 and abs(crosshair[1] - y) < 2
    assert page.locator("#history li").count() == 1
    screenshot(page, "04-decoded")

    # The server caches: the same (map, x, y, seed) gives the same bytes.
    again = live_server.http.post(f"/api/maps/{owner_map[0]}/decode", json={"x": at[0], "y": at[1], "seed": 0})
    assert again.status_code == 200 and again.headers["X-Decode-Cache"] == "hit"
    assert again.content == base64.b64decode(first_png)


def test_share_link_shows_a_visitor_the_same_view_and_pixels(live_server, page, pages, owner_map):
    map_id, key = owner_map
    open_owner_map(page, live_server, owner_map)
    zoom_in(page)
    page.mouse.click(*empty_spot(page))
    first_png = decoded_image_base64(page)
    at = page.evaluate("[window.latentmap.state.current.x, window.latentmap.state.current.y]")

    # The URL reflects the state; the share field holds the same read-only link.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.base_url)
    page.click("#share-btn")
    share_url = page.input_value("#share-url")
    assert "key" not in share_url
    assert page.evaluate("navigator.clipboard.readText()") == share_url
    page.click("#copy-edit-btn")
    page.wait_for_function("navigator.clipboard.readText().then((t) => t.includes('#key='))")
    assert page.evaluate("navigator.clipboard.readText()").endswith(f"#key={key}")
    query = parse_qs(urlsplit(share_url).query)
    assert query["at"] == [f"{at[0]},{at[1]}"] or [float(v) for v in query["at"][0].split(",")] == at
    assert query["seed"] == ["0"] and len(query["view"][0].split(",")) == 3
    assert urlsplit(page.evaluate("location.href")).query == urlsplit(share_url).query
    owner_view = page.evaluate("window.latentmap.currentView()")

    # A visitor with the share link: same view, same pixels, no editing controls.
    visitor = pages()
    visitor.goto(share_url)
    wait_ready(visitor)
    assert decoded_image_base64(visitor) == first_png
    visitor_view = visitor.evaluate("window.latentmap.currentView()")
    assert visitor_view["x"] == pytest.approx(owner_view["x"], abs=1e-3)
    assert visitor_view["y"] == pytest.approx(owner_view["y"], abs=1e-3)
    assert visitor_view["zoom"] == pytest.approx(owner_view["zoom"], rel=1e-3)
    assert visitor.is_hidden("#prompt-input") and visitor.is_hidden("#file-input")
    assert visitor.is_hidden("#refit-btn") and visitor.is_hidden("#copy-edit-btn")
    assert visitor.is_visible("#readonly-note")
    assert point_count(visitor) == 7
    screenshot(visitor, "05-read-only")

    # Without the key the API refuses changes.
    denied = live_server.http.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["sneaky"]})
    assert denied.status_code == 403
    wrong = live_server.http.post(
        f"/api/maps/{map_id}/prompts", json={"prompts": ["sneaky"]}, headers={"X-Edit-Key": "not-the-key"}
    )
    assert wrong.status_code == 403


def test_new_seed_and_recent_decodes(live_server, page, owner_map):
    open_owner_map(page, live_server, owner_map)
    # The page's state is the page's: window.latentmap only mirrors it, and refuses writes.
    refused = page.evaluate(
        "() => { try { window.latentmap.state.seed = 5; return 'written'; } catch (e) { return e.name; } }"
    )
    assert refused == "TypeError"
    page.mouse.click(*empty_spot(page))
    first_png = decoded_image_base64(page)
    assert page.locator("#history li").count() == 1
    # New seed: a different decode at the same spot, recorded in the URL.
    page.fill("#seed-input", "7")
    page.dispatch_event("#seed-input", "change")
    page.wait_for_function("window.latentmap.state.current.seed === 7")
    assert decoded_image_base64(page) != first_png
    assert parse_qs(urlsplit(page.url).query)["seed"] == ["7"]
    assert page.locator("#history li").count() == 2
    # The strip of recent decodes returns to an earlier spot and seed (same pixels).
    page.locator("#history li button").nth(1).click()
    page.wait_for_function("window.latentmap.state.current.seed === 0")
    assert decoded_image_base64(page) == first_png
    assert page.input_value("#seed-input") == "0"
    assert parse_qs(urlsplit(page.url).query)["seed"] == ["0"]
    assert page.evaluate("window.__xss") is None


def test_drag_and_drop_images(live_server, page):
    created = live_server.create_map("Drop target")
    map_id, key = created["id"], created["edit_key"]
    live_server.add_prompts(map_id, key, ["a lighthouse", "a forest"])
    open_map(page, live_server, map_id, 2, key=key)
    payloads = [base64.b64encode(png_bytes(c)).decode() for c in ((30, 160, 90), (200, 200, 40))]
    page.evaluate(
        """(payloads) => {
        const transfer = new DataTransfer();
        payloads.forEach((b64, i) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], `dropped-${i}.png`, {type: 'image/png'}));
        });
        const frame = document.getElementById('map-frame');
        for (const type of ['dragenter', 'dragover', 'drop']) {
            frame.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
    }""",
        payloads,
    )
    wait_point_count(page, 4)
    labels = [p["label"] for p in live_server.points(map_id)]
    assert "dropped-0.png" in labels and "dropped-1.png" in labels
    assert page.is_hidden("#drop-overlay")


def test_empty_map_says_there_is_nothing_to_decode(live_server, page):
    empty = live_server.create_map("Empty for now")
    page.goto(live_server.url(f"/m/{empty['id']}#key={empty['edit_key']}"))
    wait_ready(page)
    assert page.is_visible("#map-empty")
    page.mouse.click(*empty_spot(page))
    page.wait_for_selector("#decode-error:not([hidden])")  # nothing to decode yet: said, not swallowed
    assert page.inner_text("#decode-error").strip()
    screenshot(page, "09-empty-map")


OWNER_ONLY = (
    "#edit-section, #delete-btn, #copy-edit-btn, #present-start-btn, #tour-recorder, #quiz-start-btn, "
    ".tour-delete, .owner-only"
)
SHOWN = "els => els.filter((e) => e.checkVisibility()).map((e) => e.id || e.className)"


def test_visitor_sees_no_owner_control_and_may_decode(live_server, page, pages, owner_map):
    open_owner_map(page, live_server, owner_map, owner=False)
    assert page.is_visible("#share-btn")
    # No edit control anywhere: in every tab of the side panel, nothing only the owner may use is shown...
    for tab in ("decode", "explore", "teach"):
        open_tab(page, tab)
        assert page.eval_on_selector_all(OWNER_ONLY, SHOWN) == [], tab
    open_tab(page, "decode")
    page.mouse.click(*empty_spot(page))  # visitors may decode
    decoded_image_base64(page)
    # ...while the same check finds the owner's controls on the owner's page.
    owner = pages()
    open_owner_map(owner, live_server, owner_map)
    for tab in ("decode", "teach"):
        open_tab(owner, tab)
        assert owner.eval_on_selector_all(OWNER_ONLY, SHOWN) != [], tab


def test_binary_points_bring_labels_on_demand(live_server, page, owner_map):
    # Large maps load the compact binary points (forced here with ?points=bin): labels come on demand.
    open_map(page, live_server, owner_map[0], 7, query="?points=bin")
    assert page.evaluate("window.latentmap.state.pointsFormat") == "binary"
    assert page.evaluate("window.latentmap.state.items.every((p) => p.label === null)")
    labels = {p["label"] for p in live_server.points(owner_map[0])}
    hover_until_tooltip(page)
    assert page.inner_text("#tooltip .tooltip-label") in labels
    target = next(p for p in point_screen_positions(page) if p["inside"])
    click_item(page, index=target["index"])
    page.wait_for_function("/^(Prompt|Image): ./.test(document.getElementById('selected-label').textContent)")
    assert page.inner_text("#selected-label").split(": ", 1)[1] in labels


@pytest.mark.allow_page_problems(
    r"console error: Failed to load resource: .* 404 \(Not Found\) \(http\S+/api/maps/doesNotExist123\b"
)
def test_unknown_map_says_not_found(live_server, page):
    page.goto(live_server.url("/m/doesNotExist123"))
    page.wait_for_selector("#map-error:not([hidden])")
    assert "not found" in page.inner_text("#map-error").lower()
    screenshot(page, "08-unknown-map")
    assert live_server.http.get("/m/bad!id").status_code == 404
    assert live_server.http.get("/m/abc").status_code == 404


def test_owner_controls_keyboard_refit_delete(live_server, page):
    created = live_server.create_map("Controls")
    map_id, key = created["id"], created["edit_key"]
    items = live_server.add_prompts(map_id, key, ["an owl", "a lighthouse at night", "a bowl of fruit"])
    open_map(page, live_server, map_id, 3, key=key)

    # Keyboard: the map takes focus, arrows move the cursor, Enter decodes there.
    page.focus("#map-frame")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    decoded_image_base64(page)
    assert page.evaluate("window.latentmap.state.current !== null")

    # Large-text toggle, remembered across reloads.
    page.click("#large-text-toggle")
    assert page.evaluate("document.documentElement.classList.contains('large-text')")
    assert page.get_attribute("#large-text-toggle", "aria-pressed") == "true"
    screenshot(page, "06-large-text")
    page.reload()
    wait_ready(page)
    assert page.evaluate("document.documentElement.classList.contains('large-text')")
    page.click("#large-text-toggle")

    # Click a point: it is selected; the owner can delete it.
    target = click_item(page, label="an owl")
    page.wait_for_selector("#selected-section:not([hidden])")
    assert page.inner_text("#selected-label").endswith(target["label"])
    # The click also asked for the item's neighbours (Explore tab): delete once they came, as a person would.
    page.wait_for_function(
        "document.getElementById('explore-neighbors-note').textContent.startsWith('Nearest to the selected item')"
    )
    page.click("#delete-btn")
    wait_point_count(page, 2)
    assert target["id"] not in [p["id"] for p in live_server.points(map_id)]
    # Its neighbour list is asked again at the decoded spot (not of the deleted item), and it is not in it.
    page.wait_for_function("document.getElementById('explore-neighbors-note').textContent.startsWith('Nearest to x')")
    shown = page.eval_on_selector_all("#explore-neighbors button", "bs => bs.map((b) => b.dataset.itemId)")
    assert shown and target["id"] not in shown

    # Re-project: asks first; cancel keeps, confirm refits (revision goes up).
    revision = live_server.http.get(f"/api/maps/{map_id}").json()["projection"]["revision"]
    page.click("#refit-btn")
    page.wait_for_selector("#refit-dialog[open]")
    screenshot(page, "07-refit-dialog")
    page.keyboard.press("Escape")
    page.wait_for_selector("#refit-dialog", state="hidden")
    assert live_server.http.get(f"/api/maps/{map_id}").json()["projection"]["revision"] == revision
    page.click("#refit-btn")
    page.click("#refit-confirm")
    page.wait_for_function(f"document.getElementById('map-meta').textContent.includes('revision {revision + 1}')")
    wait_point_count(page, 2)
    assert items  # created through the API above


def test_slow_decodes_show_a_preview_first(live_server, page):
    created = live_server.create_map("Preview")
    live_server.add_prompts(created["id"], created["edit_key"], ["a lighthouse", "a harbour", "a gull"])
    decode_bodies = []
    page.on("request", lambda r: decode_bodies.append(r.post_data_json) if r.url.endswith("/decode") else None)
    open_map(page, live_server, created["id"], 3)
    page.wait_for_function("window.latentmap.state.previewAvailable === true")

    # A slow server (tiny-random decodes in milliseconds: full decodes held back for a second here).
    def slow_full_decode(route):
        if not (route.request.post_data_json or {}).get("preview"):
            time.sleep(1.0)
        route.continue_()

    page.route("**/decode", slow_full_decode)
    # The first decode has nothing to go by: no preview.
    x, y = empty_spot(page)
    page.mouse.click(x, y)
    page.wait_for_function("window.latentmap.state.decodeState === 'done'")
    assert [b.get("preview", False) for b in decode_bodies] == [False]
    # It took over the preview threshold: the next one shows a quick preview first, then the full image.
    page.mouse.click(x + 25, y + 10)
    page.wait_for_selector("#decode-img.is-preview")
    page.wait_for_function("window.latentmap.state.decodeState === 'done'")
    assert [b.get("preview", False) for b in decode_bodies] == [False, True, False]
    assert not page.eval_on_selector("#decode-img", "img => img.classList.contains('is-preview')")
    full = live_server.http.post(
        f"/api/maps/{created['id']}/decode", json={k: decode_bodies[2][k] for k in ("x", "y", "seed")}
    )
    assert full.headers["x-decode-cache"] == "hit"  # the page ended on the full, cached picture


def test_vary_a_selected_image(live_server, page):
    created = live_server.create_map("Variations")
    map_id, key = created["id"], created["edit_key"]
    files = [("files", (f"c{i}.png", png_bytes((200 - 60 * i, 80, 60 * i)), "image/png")) for i in range(3)]
    assert (
        live_server.http.post(f"/api/maps/{map_id}/images", files=files, headers={"X-Edit-Key": key}).status_code == 201
    )
    live_server.add_prompts(map_id, key, ["a prompt has no picture to vary here"])
    open_map(page, live_server, map_id, 4)  # a visitor may vary: like decoding, it changes nothing
    click_item(page, "a prompt has no picture to vary here")
    page.wait_for_function("document.getElementById('selected-label').textContent.startsWith('Prompt:')")
    assert page.is_hidden("#vary-controls")  # tiny-random prompts have no picture

    click_item(page, "c1.png")
    page.wait_for_function("document.getElementById('selected-label').textContent === 'Image: c1.png'")
    assert page.is_visible("#vary-controls")
    page.fill("#vary-strength", "0.4")
    assert page.inner_text("#vary-strength-value") == "0.40"
    for n in (1, 2):
        page.click("#vary-btn")
        page.wait_for_function(f"document.querySelectorAll('#variations li img').length === {n}")
    page.wait_for_function(
        "[...document.querySelectorAll('#variations img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    seeds = page.eval_on_selector_all("#variations li", "(els) => els.map((e) => e.dataset.seed)")
    assert len(set(seeds)) == 2
    assert "change 0.40" in page.get_attribute("#variations li img", "alt")
    screenshot(page, "11-variations")

    click_item(page, "c0.png")  # another item: its own list
    page.wait_for_function("document.getElementById('selected-label').textContent === 'Image: c0.png'")
    assert page.eval_on_selector_all("#variations li", "(els) => els.length") == 0
