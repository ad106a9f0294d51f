"""Colour and filter by metadata columns on the map page (a map built from a CSV with text, number and category
columns), in a real headless Chromium: categories with a legend whose entries hide (dim, in the canvas) their
points, a numeric ramp, a number range and a text search that dim the points outside them, the columns in the
hover tooltip, and share links that keep colouring and filters.

Run: pytest -m browser tests/test_browser_columns.py   (screenshot: test-output/screenshots/columns-*.png)
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from app.ingest import local, sources
from app.jobs import WorkQueue
from app.maps.service import MapService
from app.maps.store import Store
from tests.browser_util import (
    open_map,
    open_tab,
    png_bytes,
    screenshot,
    start_server,
    stop_server,
    wait_ready,
)
from tests.helpers import make_settings

pytestmark = pytest.mark.browser
SHOPS = ["north", "south", "east"]
NOTES = [f"{'red' if i % 4 == 0 else 'blue'} mug no. {i}" for i in range(12)]  # unique: a text column


@pytest.fixture(scope="module")
def table_map(tmp_path_factory, tiny_space):
    root = tmp_path_factory.mktemp("columns")
    (root / "pics").mkdir()
    rows = []
    for i in range(12):
        (root / "pics" / f"p{i}.png").write_bytes(png_bytes((20 * i, 200 - 15 * i, 90)))
        rows.append({"path": f"pics/p{i}.png", "shop": SHOPS[i % 3], "price": str(i * 2), "note": NOTES[i]})
    with (root / "items.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    data = root / "data"
    service = MapService(Store(data), tiny_space, make_settings(data, place_refine_epochs=0), WorkQueue(1))
    result = local.build(
        service, sources.table_source(root / "items.csv", service.settings, image="path"), "Shops", progress=False
    )
    service.close()
    server = start_server(data)
    yield server, result.map_id
    stop_server(server)


def test_colour_by_category_and_number_hide_a_category_share_link(table_map, page, pages):
    server, map_id = table_map
    open_map(page, server, map_id, 12)
    open_tab(page, "explore")
    page.wait_for_selector("#explore-color-by option[value='column:shop']", state="attached")
    page.select_option("#explore-color-by", "column:shop")
    page.wait_for_function("document.getElementById('map-root').dataset.colorBy === 'column:shop'")
    labels = page.evaluate("window.latentmap.state.items.map((p) => p.label)")
    shop_of = {f"p{i}.png": SHOPS[i % 3] for i in range(12)}
    values = page.evaluate("window.latentmap.state.colors.values")
    by_shop = {}
    for value, label in zip(values, labels):
        by_shop.setdefault(shop_of[label], set()).add(value)
    assert all(len(v) == 1 for v in by_shop.values()) and len({min(v) for v in by_shop.values()}) == 3
    legend = page.inner_text("#explore-legend")
    assert all(s in legend for s in SHOPS)

    # Clicking a category in the legend hides (dims) its points; the share link keeps colouring and hiding.
    page.mouse.move(5, 5)
    south = labels.index("p7.png")  # a south point whose picture no other overlaps
    shown = _brightness_at(page, south)
    page.click("#explore-legend button[data-category='south']")
    page.wait_for_function(
        "document.querySelector(\"#explore-legend button[data-category='south']\")"
        ".getAttribute('aria-pressed') === 'false'"
    )
    half = page.evaluate("window.latentmap.renderer().palette.length") // 2
    values = page.evaluate("window.latentmap.state.colors.values")
    for value, label in zip(values, labels):
        assert (value >= half) == (shop_of[label] == "south"), (value, label)
    page.mouse.move(5, 5)
    screenshot(page, "columns-category-hidden")
    assert _brightness_at(page, south) < 0.5 * shown  # visibly dimmed in the canvas (its picture too)
    page.wait_for_function("location.href.includes('hide=south')")
    shared = page.url

    other = _open_shared(pages, shared, "document.getElementById('map-root').dataset.colorBy === 'column:shop'")
    assert other.evaluate("window.latentmap.state.colors.values") == values

    # A number column: a colour ramp, low to high.
    page.select_option("#explore-color-by", "column:price")
    page.wait_for_function("document.getElementById('map-root').dataset.colorBy === 'column:price'")
    values = page.evaluate("window.latentmap.state.colors.values")
    ramp = dict(zip(labels, values))
    assert ramp["p0.png"] == 0 and ramp["p11.png"] == 15 and ramp["p3.png"] < ramp["p8.png"]
    assert page.is_visible(".explore-heat-bar")


def _open_shared(pages, url: str, ready: str):
    """A share link opened in a fresh page, once `ready` (a JS condition) holds there."""
    other = pages()
    other.goto(url)
    wait_ready(other)
    other.wait_for_function(ready)
    return other


def _dimmed(page) -> list[bool]:
    """Per point in points order: drawn dimmed (its palette entry is in the palette's dimmed half)."""
    half = page.evaluate("window.latentmap.renderer().palette.length") // 2
    return [v >= half for v in page.evaluate("window.latentmap.state.colors.values")]


def _brightness_at(page, index) -> int:
    """The brightest pixel on screen around point `index` (what a user sees there; a WebGL canvas cannot be
    read back from script, so from a screenshot)."""
    px, py = page.evaluate(
        "(i) => { const p = window.latentmap.state.items[i]; return window.latentmap.dataToScreen(p.x, p.y); }", index
    )
    box = page.locator("#map-frame canvas").first.bounding_box()
    shot = page.screenshot(clip={"x": box["x"] + px - 2, "y": box["y"] + py - 2, "width": 5, "height": 5})
    return int(np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), np.int32).sum(axis=2).max())


def test_filter_by_number_range_and_text_search_dim_points_share_link_and_tooltip(table_map, page, pages):
    server, map_id = table_map
    open_map(page, server, map_id, 12, tab="explore")
    labels = page.evaluate("window.latentmap.state.items.map((p) => p.label)")
    price = {f"p{i}.png": i * 2 for i in range(12)}
    note = {f"p{i}.png": NOTES[i] for i in range(12)}

    # The tooltip names the item's columns.
    first = page.evaluate(
        "(() => { const p = window.latentmap.state.items[0]; return window.latentmap.dataToScreen(p.x, p.y); })()"
    )
    box = page.locator("#map-frame canvas").first.bounding_box()
    page.mouse.move(box["x"] + first[0], box["y"] + first[1])
    page.wait_for_selector("#tooltip:not([hidden]) .tooltip-columns")
    tip = page.inner_text("#tooltip")
    assert "shop" in tip and "price" in tip and note[labels[0]] in tip
    page.mouse.move(box["x"] + 3, box["y"] + 3)

    # A number range: points priced outside 6..14 dimmed, in the colours and in the canvas.
    bright = _brightness_at(page, labels.index("p8.png"))  # priced 16: outside the range
    page.select_option("#columns-filter-column", "price")
    page.fill("#columns-filter-min", "6")
    page.fill("#columns-filter-max", "14")
    page.wait_for_function("document.getElementById('map-root').dataset.columnFilter === 'price:5'")
    assert _dimmed(page) == [not (6 <= price[label] <= 14) for label in labels]
    assert "5 of 12" in page.inner_text("#columns-filter-info")
    screenshot(page, "columns-range-filter")
    assert _brightness_at(page, labels.index("p8.png")) < 0.5 * bright  # dimmed in the canvas
    page.wait_for_function("location.href.includes('fcol=price') && location.href.includes('fmin=6')")
    shared = page.url

    # The share link brings the same filter back in a fresh page.
    other = _open_shared(pages, shared, "document.getElementById('map-root').dataset.columnFilter === 'price:5'")
    assert _dimmed(other) == _dimmed(page)
    assert other.input_value("#columns-filter-min") == "6" and other.input_value("#columns-filter-max") == "14"

    # Text search within the text column, combined with colouring by a category (hidden category dimmed too).
    page.select_option("#columns-filter-column", "note")
    page.fill("#columns-filter-text", "RED")
    page.wait_for_function("document.getElementById('map-root').dataset.columnFilter === 'note:3'")
    assert _dimmed(page) == ["red" not in note[label] for label in labels]
    page.select_option("#explore-color-by", "column:shop")
    page.wait_for_function("document.getElementById('map-root').dataset.colorBy === 'column:shop'")
    page.click("#explore-legend button[data-category='north']")
    page.wait_for_function("location.href.includes('hide=north') && location.href.includes('fq=RED')")
    shop = {f"p{i}.png": SHOPS[i % 3] for i in range(12)}
    expected = [("red" not in note[label]) or shop[label] == "north" for label in labels]
    assert _dimmed(page) == expected
    shared = page.url
    other = _open_shared(
        pages,
        shared,
        "document.getElementById('map-root').dataset.colorBy === 'column:shop' && "
        "document.getElementById('map-root').dataset.columnFilter === 'note:3'",
    )
    other.wait_for_function("window.latentmap.state.colors.values.length === 12")
    assert _dimmed(other) == expected


def test_filter_by_category_checklist_without_colouring_by_it_share_link(table_map, page, pages):
    server, map_id = table_map
    open_map(page, server, map_id, 12, tab="explore")
    labels = page.evaluate("window.latentmap.state.items.map((p) => p.label)")
    shop = {f"p{i}.png": SHOPS[i % 3] for i in range(12)}
    south = labels.index("p7.png")  # a south point whose picture no other overlaps
    shown = _brightness_at(page, south)

    # Choosing the category column lists its values with their counts, all ticked; unticking one dims its points
    # while the map stays coloured by kind.
    page.select_option("#columns-filter-column", "shop")
    listed = page.inner_text("#columns-filter-category-list")
    assert all(f"{s} (4)" in listed for s in SHOPS), listed
    assert page.is_checked("#columns-filter-category-list input[data-category='south']")
    page.uncheck("#columns-filter-category-list input[data-category='south']")
    page.wait_for_function("document.getElementById('map-root').dataset.columnFilter === 'shop:8'")
    assert _dimmed(page) == [shop[label] == "south" for label in labels]
    assert page.evaluate("document.getElementById('map-root').dataset.colorBy") == "kind"
    assert "8 of 12" in page.inner_text("#columns-filter-info")
    page.mouse.move(5, 5)
    assert _brightness_at(page, south) < 0.5 * shown  # dimmed in the canvas, its picture too

    # "None", then tick one value: only its points stay bright; the share link keeps it.
    page.click("#columns-filter-none")
    page.check("#columns-filter-category-list input[data-category='east']")
    page.wait_for_function("document.getElementById('map-root').dataset.columnFilter === 'shop:4'")
    assert _dimmed(page) == [shop[label] != "east" for label in labels]
    screenshot(page, "columns-category-filter")
    page.wait_for_function("location.href.includes('fcol=shop') && location.href.includes('fhide=')")
    shared = page.url

    other = _open_shared(pages, shared, "document.getElementById('map-root').dataset.columnFilter === 'shop:4'")
    assert _dimmed(other) == _dimmed(page)
    ticked = other.eval_on_selector_all(
        "#columns-filter-category-list input", "(boxes) => boxes.filter((b) => b.checked).map((b) => b.value)"
    )
    assert ticked == ["east"]

    # "All" brings every point back.
    page.click("#columns-filter-all")
    page.wait_for_function("document.getElementById('map-root').dataset.columnFilter === ''")
    assert page.evaluate("window.latentmap.renderer().colorBy") == "kind"  # plain kind colours: nothing dimmed
