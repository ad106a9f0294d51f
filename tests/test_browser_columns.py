"""Colour by a metadata column on the map page (a map built from a table), in a real headless Chromium:
categories with a legend whose entries hide (dim) their points, a numeric ramp, and share links that keep both.

Run: pytest -m browser tests/test_browser_columns.py   (screenshot: test-output/screenshots/columns-*.png)
"""

from __future__ import annotations

import csv

import pytest

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


@pytest.fixture(scope="module")
def table_map(tmp_path_factory, tiny_space):
    root = tmp_path_factory.mktemp("columns")
    (root / "pics").mkdir()
    rows = []
    for i in range(12):
        (root / "pics" / f"p{i}.png").write_bytes(png_bytes((20 * i, 200 - 15 * i, 90)))
        rows.append({"path": f"pics/p{i}.png", "shop": SHOPS[i % 3], "price": str(i * 2)})
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
    page.wait_for_function("location.href.includes('hide=south')")
    shared = page.url

    other = pages()
    other.goto(shared)
    wait_ready(other)
    other.wait_for_function("document.getElementById('map-root').dataset.colorBy === 'column:shop'")
    assert other.evaluate("window.latentmap.state.colors.values") == values

    # A number column: a colour ramp, low to high.
    page.select_option("#explore-color-by", "column:price")
    page.wait_for_function("document.getElementById('map-root').dataset.colorBy === 'column:price'")
    values = page.evaluate("window.latentmap.state.colors.values")
    ramp = dict(zip(labels, values))
    assert ramp["p0.png"] == 0 and ramp["p11.png"] == 15 and ramp["p3.png"] < ramp["p8.png"]
    assert page.is_visible(".explore-heat-bar")
