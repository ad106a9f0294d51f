"""Decoder variants on the map page (static/js/variants.js) in a real headless Chromium against
`latentmap serve --space digits` (its `thick` LoRA, `italic` fine-tune and `x4` upscaler): compare grid with a
LoRA strength, lineage, upscale (decoded image and compare tiles), the share link, readable errors, and a
space without variants (panel hidden).

Run: pytest -m browser tests/test_browser_variants.py   (screenshots: test-output/screenshots/variants-*.png)
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from app.maps.demo import DIGIT_WORDS
from tests.browser_util import (
    decoded_image_base64,
    draw_path,
    open_map,
    open_tab,
    screenshot,
)

pytestmark = pytest.mark.browser

PROMPTS = DIGIT_WORDS  # the shared digits_map (tests/browser_util.py)


def answer_json(page, url_pattern: str, status: int, body: dict) -> None:
    """The page's requests to `url_pattern` get this answer instead of the server's (a server we cannot make fail)."""
    page.route(
        url_pattern, lambda route: route.fulfill(status=status, content_type="application/json", body=json.dumps(body))
    )


def click_point(page, label):
    """Click on the item `label` (a spot that always has something to decode)."""
    pos = page.evaluate(
        """(label) => {
        const lm = window.latentmap;
        const rect = document.getElementById('map-canvas').getBoundingClientRect();
        const item = lm.state.items.find((p) => p.label === label);
        const [px, py] = lm.dataToScreen(item.x, item.y);
        return [rect.left + px, rect.top + py];
    }""",
        label,
    )
    page.mouse.click(pos[0], pos[1])


def wait_grid(page, n):
    page.wait_for_function(
        """(n) => {
        const tiles = [...document.querySelectorAll('#variants-grid .variants-tile img')];
        return document.getElementById('map-root').dataset.variantsState === 'done' && tiles.length === n
            && tiles.every((img) => img.complete && img.naturalWidth > 0);
    }""",
        arg=n,
    )


def image_bytes(page, url):
    return page.evaluate(
        """async (url) => {
        const buf = await (await fetch(url)).arrayBuffer();
        return Array.from(new Uint8Array(buf)).join(',');
    }""",
        url,
    )


def open_decoders(page, server, map_id: str, query: str = "") -> None:
    """The map on its Decoders tab, once the page knows the server's variants."""
    open_map(page, server, map_id, len(PROMPTS), query=query)
    page.wait_for_selector("#map-root[data-variants='ready']")
    open_tab(page, "decoders")


def test_lineage_lists_every_decoder_with_its_provenance(digits_server, page, digits_map):
    open_decoders(page, digits_server, digits_map)
    assert page.is_visible("#variants-section")
    # Lineage: the base decoder and every variant, with provenance rows.
    names = page.eval_on_selector_all(".variants-lineage-item", "els => els.map(e => e.dataset.variant)")
    assert names == ["base", "italic", "thick", "x4"]
    page.click(".variants-lineage-item[data-variant='italic'] summary")
    italic = page.inner_text(".variants-lineage-item[data-variant='italic']")
    assert "Fine-tune of" in italic and "digits" in italic and "Licence" in italic and "CC BY 4.0" in italic
    page.click(".variants-lineage-item[data-variant='thick'] summary")
    thick = page.inner_text(".variants-lineage-item[data-variant='thick']")
    assert "LoRA of" in thick and "LoRAs applied" in thick


def test_compare_decoders_at_a_lora_strength_and_share_it(digits_server, page, digits_map):
    open_decoders(page, digits_server, digits_map)
    # Decoders to compare: base and thick are ticked by default; add italic with the keyboard.
    checks = page.eval_on_selector_all("#variants-checks input", "els => els.map(e => [e.value, e.checked])")
    assert checks == [["base", True], ["italic", False], ["thick", True]]
    page.focus("#variants-check-italic")
    page.keyboard.press("Space")
    assert page.is_checked("#variants-check-italic")

    # LoRA strength with the keyboard: 1.0 -> 0.5.
    page.focus("#variants-lora")
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    assert page.inner_text("#variants-lora-value") == "0.5"

    page.focus("#variants-compare-btn")
    page.keyboard.press("Enter")
    assert page.get_attribute("#variants-compare-btn", "aria-pressed") == "true"

    click_point(page, "three")
    wait_grid(page, 3)
    captions = page.eval_on_selector_all("#variants-grid figcaption", "els => els.map(e => e.textContent)")
    assert captions == ["base", "italic", "thick ×0.5"]
    urls = page.eval_on_selector_all("#variants-grid img", "els => els.map(e => e.getAttribute('src'))")
    blobs = [image_bytes(page, u) for u in urls]
    assert len(set(blobs)) == 3, "each decoder should draw its own picture"
    # The base tile is the same picture as the decoded image (same cache entry).
    shown = base64.b64decode(decoded_image_base64(page))  # the page's CSP refuses fetching its blob: URL
    assert ",".join(str(b) for b in shown) == blobs[0]

    # Share link carries the comparison (test_a_share_link_restores_the_comparison opens one).
    page.wait_for_function("window.location.search.includes('compare=')")
    query = parse_qs(urlsplit(page.url).query)
    assert query["compare"] == ["base,italic,thick"] and query["lora"] == ["0.5"]
    assert "compare=base,italic,thick" in page.input_value("#share-url")

    # Changing the strength re-decodes the LoRA tile.
    page.focus("#variants-lora")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "[...document.querySelectorAll('#variants-grid figcaption')].some(e => e.textContent === 'thick ×1.0')"
    )
    wait_grid(page, 3)
    assert parse_qs(urlsplit(page.url).query)["lora"] == ["1.0"]
    screenshot(page, "variants-compare")


def test_a_share_link_restores_the_comparison(digits_server, page, digits_map):
    # What the page above shares: the compared decoders, the strength and the decoded spot.
    three = next(p for p in digits_server.points(digits_map) if p["label"] == "three")
    link = f"?compare=base,italic,thick&lora=1.0&at={three['x']},{three['y']}&seed=0"
    open_decoders(page, digits_server, digits_map, query=link)
    wait_grid(page, 3)
    assert page.is_checked("#variants-check-italic") and page.is_checked("#variants-check-thick")
    assert page.get_attribute("#variants-compare-btn", "aria-pressed") == "true"
    assert page.inner_text("#variants-lora-value") == "1.0"
    captions = page.eval_on_selector_all("#variants-grid figcaption", "els => els.map(e => e.textContent)")
    assert captions == ["base", "italic", "thick ×1.0"]
    # Turning compare off drops it from the link.
    page.click("#variants-compare-btn")
    page.wait_for_function("!window.location.search.includes('compare=')")
    assert page.locator("#variants-grid li").count() == 0


def test_upscale_a_compare_tile_and_the_decoded_image(digits_server, page, digits_map):
    open_decoders(page, digits_server, digits_map, query="?compare=base,thick")
    click_point(page, "three")
    wait_grid(page, 2)
    # Upscale a compare tile: 16 px original beside the 64 px upscale, with a download link.
    page.click(".variants-tile[data-variant='thick'] button:has-text('Upscale')")
    page.wait_for_selector("#map-root[data-upscale-state='done']")
    page.wait_for_function("""() => {
        const a = document.getElementById('variants-upscale-src'), b = document.getElementById('variants-upscale-img');
        return !document.getElementById('variants-upscale').hidden && a.complete && b.complete
            && a.naturalWidth > 0 && b.naturalWidth > 0;
    }""")
    sizes = page.evaluate("""() => [document.getElementById('variants-upscale-src').naturalWidth,
                                    document.getElementById('variants-upscale-img').naturalWidth]""")
    assert sizes == [16, 64]
    assert page.inner_text("#variants-upscale-heading").lower().startswith("upscaled: thick")
    href = page.get_attribute("#variants-upscale-download", "href")
    assert href.startswith("/api/decodes/") and page.get_attribute("#variants-upscale-download", "download")
    rendering = page.eval_on_selector("#variants-upscale-src", "e => getComputedStyle(e).imageRendering")
    assert rendering == "pixelated"

    # Upscale the decoded image itself (button next to "Download PNG").
    page.evaluate("document.getElementById('variants-upscale').hidden = true")
    assert page.is_visible("#variants-upscale-btn")
    page.focus("#variants-upscale-btn")
    page.keyboard.press("Enter")
    page.wait_for_function("""() => !document.getElementById('variants-upscale').hidden
        && document.getElementById('map-root').dataset.upscaleState === 'done'
        && document.getElementById('variants-upscale-heading').textContent === 'Upscaled: base'""")
    page.wait_for_function("document.getElementById('variants-upscale-img').naturalWidth === 64")
    page.locator("#variants-section").scroll_into_view_if_needed()
    screenshot(page, "variants-upscale")


@pytest.mark.allow_page_problems(r"console error: .* status of 422 \(Unprocessable Entity\) \(http\S+/compare\)$")
def test_errors_are_readable(digits_server, page, digits_map):
    detail = "unknown decoder variant 'zzz'; choose 'base' or one of italic, thick"
    answer_json(page, "**/compare", 422, {"detail": detail})
    open_decoders(page, digits_server, digits_map, query="?compare=base,thick&lora=0.8")
    assert page.inner_text("#variants-lora-value") == "0.8"
    click_point(page, "seven")
    page.wait_for_selector("#variants-error:not([hidden])")
    text = page.inner_text("#variants-error")
    assert "Could not compare" in text and "unknown decoder variant 'zzz'" in text


def test_space_without_variants_hides_the_panel(digits_server, page, digits_map):
    """What tiny-random answers (no variants): the panel and the Upscale button stay hidden, nothing breaks."""
    answer_json(page, "**/api/variants", 200, {"space": "digits", "lineage": None, "variants": []})
    open_map(page, digits_server, digits_map, len(PROMPTS), query="?compare=base,thick")
    click_point(page, "one")
    page.wait_for_function("document.getElementById('map-root').dataset.decodeState === 'done'")
    assert page.is_hidden("#variants-section") and page.is_hidden("#tab-decoders")
    assert page.locator("#variants-upscale-btn").count() == 0
    assert "compare=" not in page.url
    screenshot(page, "variants-none")


def test_compare_along_a_drawn_path(digits_server, page, digits_map):
    open_decoders(page, digits_server, digits_map)
    assert page.is_disabled("#variants-path-btn")
    ends = page.evaluate("""() => {
        const items = window.latentmap.state.items;
        const a = items.find((p) => p.label === 'one'), b = items.find((p) => p.label === 'seven');
        return [[a.x, a.y], [b.x, b.y]];
    }""")
    draw_path(page, ends, steps=4)
    open_tab(page, "decoders")
    page.wait_for_selector("#variants-path-btn:not([disabled])")
    page.click("#variants-path-btn")
    page.wait_for_selector("#map-root[data-variants-path-state='done']")
    rows = page.eval_on_selector_all(
        ".variants-path-row", "els => els.map(e => [e.dataset.variant, e.querySelectorAll('img').length])"
    )
    assert rows == [["base", 4], ["thick", 4]]
    page.wait_for_function(
        "[...document.querySelectorAll('.variants-path-row img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.locator("#variants-path-rows").scroll_into_view_if_needed()
    screenshot(page, "variants-path")
    # Clearing the path clears the comparison.
    open_tab(page, "explore")
    page.click("#explore-path-clear")
    open_tab(page, "decoders")
    page.wait_for_function("document.querySelectorAll('.variants-path-row').length === 0")
    assert page.is_disabled("#variants-path-btn")


@pytest.mark.allow_page_problems(r"console error: .* status of 404 \(Not Found\) \(http\S+/align/nosuchmap123\?")
def test_two_maps_aligned_with_linked_hover(digits_server, page, digits_map):
    other = digits_server.create_map("Digits again")
    digits_server.add_prompts(other["id"], other["edit_key"], list(reversed(PROMPTS)))
    open_decoders(page, digits_server, digits_map)
    page.click("#variants-align summary")
    # A readable error first (an unknown map), then the real one by its link.
    page.fill("#variants-align-input", "nosuchmap123")
    page.click("#variants-align-btn")
    page.wait_for_selector("#variants-align-error:not([hidden])")
    assert "Could not align" in page.inner_text("#variants-align-error")
    page.fill("#variants-align-input", digits_server.url(f"/m/{other['id']}"))
    page.press("#variants-align-input", "Enter")
    page.wait_for_selector("#variants-align-dialog[open]")
    assert "10 items matched" in page.inner_text("#variants-align-summary")
    assert page.locator("#variants-align-plot-a circle[data-index]").count() == 10
    assert page.locator("#variants-align-plot-b circle[data-index]").count() == 10
    # Linked hover: the same item lights up in both plots.
    page.hover("#variants-align-plot-a circle[data-index='3']")
    assert page.locator("#variants-align-plot-b circle.is-linked").get_attribute("data-index") == "3"
    assert page.inner_text("#variants-align-hover").startswith(PROMPTS[3])
    # Keyboard: focusing a point links it too.
    page.mouse.move(5, 5)
    page.focus("#variants-align-plot-b circle[data-index='5']")
    assert page.locator("#variants-align-plot-a circle.is-linked").get_attribute("data-index") == "5"
    assert page.inner_text("#variants-align-hover").startswith(PROMPTS[5])
    screenshot(page, "variants-align")
    page.keyboard.press("Escape")
    page.wait_for_selector("#variants-align-dialog:not([open])", state="attached")
