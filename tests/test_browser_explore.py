"""Exploration tools on the map page in a real headless Chromium against `latentmap serve --space tiny-random`:
paths (drawn, exported, restored from a share link), neighbours, search + similarity colouring, label filter,
clusters, lasso selection + export, and a bundle export -> import round trip through the pages.

Run: pytest -m browser tests/test_browser_explore.py   (screenshots: test-output/screenshots/explore-*.png)
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser_util import (
    click_item,
    open_map,
    open_tab,
    png_bytes,
    point_screen_positions,
    screenshot,
    wait_point_count,
    wait_ready,
)

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__xss=1">'
PROMPTS = [
    "a red bicycle",
    "a blue bicycle",
    "a green bicycle",
    "a cat asleep on a sofa",
    "a cat in the sun",
    "a dog in the snow",
    "snowy mountains at dawn",
    "mountains by a lake",
    "a city at night",
    "a yellow submarine",
    XSS,
    "a bowl of fruit",
]


@pytest.fixture(scope="module")
def filled_map(live_server):
    created = live_server.create_map("Explore map")
    map_id, key = created["id"], created["edit_key"]
    live_server.add_prompts(map_id, key, PROMPTS)
    files = [("files", (f"img{i}.png", png_bytes((40 + i * 50, 120, 220 - i * 50)), "image/png")) for i in range(4)]
    response = live_server.http.post(f"/api/maps/{map_id}/images", files=files, headers={"X-Edit-Key": key})
    assert response.status_code == 201, response.text
    return map_id, key, len(PROMPTS) + 4


def unquote_csv_cell(value: str) -> str:
    return value[1:] if value[:1] == "'" and value[1:2] in ("=", "+", "-", "@", "\t", "\r") else value


def canvas_box(page):
    return page.locator("#map-canvas").bounding_box()


def click_a_path(page) -> list:
    """Draw a 5-step path as a user does: "Draw a path", two clicks, a double-click to finish; its vertices."""
    page.fill("#explore-path-steps", "5")
    page.click("#explore-path-btn")
    assert page.get_attribute("#explore-path-btn", "aria-pressed") == "true"
    box = canvas_box(page)
    spots = [(0.25, 0.3), (0.5, 0.65), (0.75, 0.4)]
    for i, (fx, fy) in enumerate(spots):
        x, y = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
        if i < len(spots) - 1:
            page.mouse.click(x, y)
        else:
            page.mouse.dblclick(x, y)  # finishes the path
    page.wait_for_function("document.getElementById('map-root').dataset.pathState === 'done'")
    return page.evaluate("window.latentmap.explore.vertices")


def test_path_drawn_by_clicks_decodes_its_frames_and_exports(live_server, page, filled_map):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    vertices = click_a_path(page)
    frames = page.locator("#explore-path-frames li img")
    assert frames.count() == 5
    page.wait_for_function("""() => [...document.querySelectorAll('#explore-path-frames img')]
        .every((img) => img.complete && img.naturalWidth > 0)""")
    assert len(vertices) == 3  # the double-click's second click added no vertex
    # Clicks in path mode add vertices; they do not decode.
    assert page.evaluate("window.latentmap.state.current") is None
    assert page.get_attribute("#explore-path-btn", "aria-pressed") == "false"
    # The path is drawn on the map.
    assert len(page.get_attribute(".explore-path-line", "points").split()) == 3
    assert page.locator(".explore-path-frame").count() == 5

    # Export links serve a strip PNG, a GIF and a WebP.
    for link, magic in (
        ("#explore-strip-link", b"\x89PNG"),
        ("#explore-gif-link", b"GIF8"),
        ("#explore-webp-link", b"RIFF"),
    ):
        href = page.get_attribute(link, "href")
        body = live_server.http.get(href)
        assert body.status_code == 200 and body.content.startswith(magic), (link, body.status_code)
    page.mouse.move(5, 5)
    screenshot(page, "explore-path")

    # Clicking a frame decodes that spot.
    page.locator("#explore-path-frames li button").nth(2).click()
    page.wait_for_function("document.getElementById('map-root').dataset.decodeState === 'done'")


def test_path_share_link_restores_the_path(live_server, page, pages, filled_map):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    vertices = click_a_path(page)
    # The share link carries the path; map.js's own params are still there.
    query = parse_qs(urlsplit(page.url).query)
    assert query["steps"] == ["5"] and len(query["path"][0].split(";")) == 3
    assert "view" in query and "seed" in query
    assert page.input_value("#share-url").endswith(urlsplit(page.url).query)
    # Zooming keeps the path in the URL (map.js rewrites it on every view change).
    box = canvas_box(page)
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.mouse.wheel(0, -300)
    page.wait_for_function("(v) => new URLSearchParams(location.search).get('view') !== v", arg=query["view"][0])
    assert "path=" in page.url

    # Opening the share link restores the path and its images (for someone else).
    other = pages()
    other.goto(page.url)
    wait_ready(other)
    other.wait_for_function("document.getElementById('map-root').dataset.pathState === 'done'")
    assert other.locator("#explore-path-frames li img").count() == 5
    assert other.evaluate("window.latentmap.explore.vertices") == vertices


def test_path_with_the_keyboard_and_clear(live_server, page, filled_map):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    # Keyboard: Space adds the keyboard cursor's spot, Enter finishes; Clear removes the path from the URL.
    page.click("#explore-path-btn")
    page.focus("#map-frame")
    page.keyboard.press("Space")
    for _ in range(4):
        page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Space")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('map-root').dataset.pathState === 'done'")
    assert len(page.evaluate("window.latentmap.explore.vertices")) == 2
    page.wait_for_function("location.search.includes('path=')")
    page.click("#explore-path-clear")
    assert "path=" not in page.url
    assert page.evaluate("window.__xss") is None  # the XSS label, wherever it shows, is text


def test_neighbours_of_clicked_point(live_server, page, filled_map):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    target = click_item(page, "a red bicycle")
    page.wait_for_function("document.querySelectorAll('#explore-neighbors li').length === 8")
    assert "selected item" in page.inner_text("#explore-neighbors-note")
    ids = page.eval_on_selector_all("#explore-neighbors button", "bs => bs.map((b) => b.dataset.itemId)")
    assert target["id"] not in ids  # neighbours of the item: not itself
    sims = [
        float(s) for s in page.eval_on_selector_all(".explore-neighbor-sim", "ss => ss.map((s) => s.textContent)") if s
    ]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    labels = page.eval_on_selector_all(
        "#explore-neighbors .explore-neighbor-label", "ls => ls.map((l) => l.textContent)"
    )
    on_map = {p["id"]: p["label"] for p in live_server.points(map_id)}
    assert all(on_map[i] == lbl for i, lbl in zip(ids, labels, strict=True))  # real items, shown by their labels
    screenshot(page, "explore-neighbours")

    # Clicking one selects and centres it, and decodes there.
    first = page.locator("#explore-neighbors button").first
    chosen = first.get_attribute("data-item-id")
    chosen_label = first.locator(".explore-neighbor-label").inner_text()
    first.click()
    page.wait_for_function(
        f"window.latentmap.state.selected && window.latentmap.state.selected.id === {json.dumps(chosen)}"
    )
    assert chosen_label in page.inner_text("#selected-label")
    pos = page.evaluate(f"""() => {{
        const lm = window.latentmap, item = lm.state.items.find((p) => p.id === {json.dumps(chosen)});
        const r = document.getElementById('map-canvas').getBoundingClientRect();
        const [px, py] = lm.dataToScreen(item.x, item.y);
        return [px / r.width, py / r.height];
    }}""")
    assert abs(pos[0] - 0.5) < 0.05 and abs(pos[1] - 0.5) < 0.05
    page.wait_for_function("document.getElementById('map-root').dataset.decodeState === 'done'")
    # The XSS label, wherever it shows up, is text.
    assert page.evaluate("window.__xss") is None  # the XSS label, wherever it shows, is text


def test_search_and_similarity_colouring(live_server, page, filled_map):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    # Similarity colouring before any search explains itself.
    page.select_option("#explore-color-by", "similarity")
    assert page.is_visible("#explore-color-error")
    assert page.input_value("#explore-color-by") == "kind"

    page.fill("#explore-search-input", "a cat asleep on a sofa")
    page.click("#explore-search-btn")
    page.wait_for_selector(".explore-search-marker:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#explore-search-results li').length === 8")
    assert "would land" in page.inner_text("#explore-search-info")
    assert live_server.http.get(f"/api/maps/{map_id}").json()["count"] == n  # the prompt was not stored
    first = page.locator("#explore-search-results .explore-neighbor-label").first.inner_text()
    assert first == "a cat asleep on a sofa"  # the same prompt is its own nearest item

    page.select_option("#explore-color-by", "similarity")
    page.wait_for_function("document.getElementById('map-root').dataset.colorBy === 'similarity'")
    values = page.evaluate("window.latentmap.state.colors.values")
    assert len(values) == n and len(set(values)) > 2
    assert page.evaluate("window.latentmap.renderer().colorBy") == "value"
    assert page.is_visible(".explore-heat-bar")
    assert not page.is_visible(".legend .swatch-text")  # the kind legend is not shown for the heat map
    legend = page.inner_text("#explore-legend")
    assert "a cat asleep on a sofa" in legend
    page.mouse.move(5, 5)
    screenshot(page, "explore-search-similarity")

    page.click("#explore-search-clear")
    assert page.is_hidden(".explore-search-marker")
    assert page.evaluate("window.__xss") is None  # the XSS label, wherever it shows, is text


def test_label_filter_dims_the_other_points(live_server, page, filled_map):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    # Filter by label: non-matching points are dimmed (second half of the palette), kind colours kept.
    page.fill("#explore-filter-input", "bicycle")
    page.wait_for_function("!document.getElementById('explore-filter-info').hidden")
    assert page.inner_text("#explore-filter-info").startswith(f"3 of {n} points")
    values = page.evaluate("window.latentmap.state.colors.values")
    labels = page.evaluate("window.latentmap.state.items.map((p) => p.label)")
    palette = page.evaluate("window.latentmap.renderer().palette.length") // 2
    for value, label in zip(values, labels):
        assert (value < palette) == ("bicycle" in label), (value, label)
    assert page.input_value("#explore-color-by") == "kind" and page.is_visible(".legend .swatch-text")
    # An empty filter is no filter: plain kind colours again.
    page.fill("#explore-filter-input", "")
    page.wait_for_function("window.latentmap.state.colors.by === 'kind'")
    assert page.evaluate("window.latentmap.renderer().colorBy") == "kind"


def test_clusters_coloured_and_labelled(live_server, page, filled_map):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    # Clusters: colour by cluster and label them on the map.
    page.select_option("#explore-color-by", "cluster")
    page.wait_for_function("document.getElementById('map-root').dataset.colorBy === 'cluster'")
    clusters = live_server.http.get(f"/api/maps/{map_id}/clusters").json()
    assert "No cluster" in page.inner_text("#explore-legend")
    page.check("#explore-cluster-labels")
    page.wait_for_function(
        f"document.querySelectorAll('.explore-cluster-label').length === {len(clusters['clusters'])}"
    )
    for c in clusters["clusters"]:
        assert page.locator(f".explore-cluster-label[data-cluster='{c['id']}']").inner_text() == c["label"]
    screenshot(page, "explore-clusters")
    assert page.evaluate("window.__xss") is None  # the XSS label, wherever it shows, is text


def test_lasso_selection_and_export(live_server, page, filled_map):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    page.click("#explore-lasso-btn")
    assert page.get_attribute("#explore-lasso-btn", "aria-pressed") == "true"
    box = canvas_box(page)
    # A lasso around the left half of the canvas.
    left, top = box["x"] + 4, box["y"] + 4
    mid, bottom = box["x"] + box["width"] * 0.5, box["y"] + box["height"] - 4
    page.mouse.move(left, top)
    page.mouse.down()
    corners = [(left, top), (mid, top), (mid, bottom), (left, bottom), (left, top + 2)]
    for (x0, y0), (x1, y1) in zip(corners, corners[1:]):
        for t in range(1, 9):  # a hand-speed drag: the library samples the lasso every ~10 ms
            page.mouse.move(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8)
            page.wait_for_timeout(15)
    page.mouse.up()
    inside = [p for p in point_screen_positions(page) if p["x"] < mid and p["inside"]]
    assert inside, "no points in the left half"
    page.wait_for_function("Number(document.getElementById('explore-selection-info').dataset.count) > 0")
    selected = page.evaluate("window.latentmap.state.selection.map((i) => window.latentmap.state.items[i].id)")
    assert set(selected) == {p["id"] for p in inside}
    assert page.evaluate("window.latentmap.state.current") is None  # the lasso drag did not decode
    screenshot(page, "explore-lasso")

    with page.expect_download() as info:
        page.click("#explore-export-csv")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))
    # Cells that would start a spreadsheet formula (= + - @) come quoted with a leading apostrophe.
    assert {unquote_csv_cell(r["id"]) for r in rows} == set(selected)
    with page.expect_download() as info:
        page.click("#explore-export-json")
    data = json.loads(open(info.value.path(), encoding="utf-8").read())
    assert {r["id"] for r in data["items"]} == set(selected)
    with page.expect_download() as info:
        page.click("#explore-export-zip")
    with zipfile.ZipFile(info.value.path()) as z:
        assert "selection.csv" in z.namelist()

    # Keyboard route: select the label-filter matches.
    page.click("#explore-lasso-btn")
    page.fill("#explore-filter-input", "cat")
    page.wait_for_function("!document.getElementById('explore-select-matching').disabled")
    page.click("#explore-select-matching")
    page.wait_for_function("document.getElementById('explore-selection-info').dataset.count === '2'")
    page.click("#explore-selection-clear")
    assert page.inner_text("#explore-selection-info") == "Nothing selected."
    assert page.evaluate("window.__xss") is None  # the XSS label, wherever it shows, is text


def test_filter_and_export_on_a_map_loaded_without_labels(live_server, page, filled_map):
    """Large maps load /points.bin (no ids, no labels): the label filter and the selection export go to the
    server by index instead of fetching every point's label."""
    map_id, _, n = filled_map
    per_point = []
    page.on("request", lambda r: per_point.append(r.url) if re.search(r"/points/\d+$", r.url) else None)
    # ... and very large maps draw in regl-scatterplot's performance mode (forced here like points=bin).
    open_map(page, live_server, map_id, n, query="?points=bin&render=fast", tab="explore")
    assert page.evaluate("window.latentmap.state.pointsFormat") == "binary"
    assert page.evaluate("window.latentmap.renderer().mode") == "fast"
    assert page.evaluate("window.latentmap.state.items.every((p) => p.label === null)")
    page.fill("#explore-filter-input", "Bicycle")
    page.wait_for_function("!document.getElementById('explore-filter-info').hidden")
    assert page.inner_text("#explore-filter-info") == f"3 of {n} points match “Bicycle”."
    colours = page.evaluate("window.latentmap.renderer().palette")
    dimmed = colours[len(colours) // 2 :]
    assert all(c[3] == 1 for c in dimmed)  # no blending in this mode: dimmed by mixing, not by alpha
    assert all(max(c[:3]) < 0.25 for c in dimmed)
    screenshot(page, "explore-filter-fast-render")
    page.click("#explore-select-matching")
    page.wait_for_function("document.getElementById('explore-selection-info').dataset.count === '3'")
    with page.expect_download() as info:
        page.click("#explore-export-csv")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))
    assert sorted(r["label"] for r in rows) == ["a blue bicycle", "a green bicycle", "a red bicycle"]
    assert not per_point, per_point  # nothing fetched point by point
    assert page.evaluate("window.__xss") is None  # the XSS label, wherever it shows, is text


@pytest.mark.allow_page_problems(
    r"console error: .* status of 422 \(Unprocessable Entity\) \(http\S+/api/bundles\)$",  # the broken file
    r"console error: .* status of 409 \(Conflict\) \(http\S+/api/bundles\)$",  # the other space's bundle
)
def test_bundle_round_trip_through_the_pages(live_server, page, filled_map, tmp_path):
    map_id, _, n = filled_map
    open_map(page, live_server, map_id, n, tab="explore")
    with page.expect_download() as info:
        page.click("#explore-bundle-link")
    bundle = tmp_path / "bundle.zip"
    info.value.save_as(bundle)
    assert zipfile.is_zipfile(bundle)

    page.goto(live_server.url("/"))
    # A broken file is refused with a readable message.
    page.set_input_files("#import-file", {"name": "broken.zip", "mimeType": "application/zip", "buffer": b"not a zip"})
    page.click("#import-submit")
    page.wait_for_selector("#import-error:not([hidden])")
    assert "Could not import the bundle" in page.inner_text("#import-error")
    assert page.url.rstrip("/") == live_server.url("")
    screenshot(page, "explore-import-error")

    # A bundle from another space is refused with the server's explanation (409).
    other = io.BytesIO()
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(other, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "latentmap-bundle.json":
                manifest = json.loads(data)
                manifest["map"]["space"] = "some-other-space"
                data = json.dumps(manifest).encode()
            dst.writestr(name, data)
    page.set_input_files(
        "#import-file", {"name": "other.zip", "mimeType": "application/zip", "buffer": other.getvalue()}
    )
    page.click("#import-submit")
    page.wait_for_function("document.getElementById('import-error').textContent.includes('some-other-space')")
    assert "Conflict" in page.inner_text("#import-error")
    assert page.is_enabled("#import-submit")

    page.set_input_files("#import-file", str(bundle))
    page.click("#import-submit")
    page.wait_for_url(re.compile(r"/m/[A-Za-z0-9_-]+"))
    wait_ready(page)
    new_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    assert new_id != map_id
    wait_point_count(page, n)
    assert page.evaluate(f"localStorage.getItem('latentmap:key:{new_id}')")
    assert page.is_visible("#prompt-input")  # opened with its edit key
    old = sorted(p["label"] for p in live_server.points(map_id))
    assert sorted(p["label"] for p in live_server.points(new_id)) == old
    assert page.evaluate("window.__xss") is None  # the XSS label, wherever it shows, is text


def test_colours_follow_new_points(live_server, page):
    created = live_server.create_map("Growing map")
    map_id, key = created["id"], created["edit_key"]
    live_server.add_prompts(map_id, key, PROMPTS[:8])
    open_map(page, live_server, map_id, 8, key=key)
    open_tab(page, "explore")
    page.select_option("#explore-color-by", "cluster")
    page.wait_for_function("document.getElementById('map-root').dataset.colorBy === 'cluster'")
    page.fill("#explore-filter-input", "bicycle")
    page.wait_for_function("document.getElementById('explore-filter-info').textContent.startsWith('3 of 8')")
    open_tab(page, "decode")
    page.fill("#prompt-input", "a purple bicycle\na tram in the rain")
    page.click("#prompt-submit")
    wait_point_count(page, 10)
    # The new points get their clusters and the filter counts them.
    page.wait_for_function("document.getElementById('explore-filter-info').textContent.startsWith('4 of 10')")
    page.wait_for_function("(window.latentmap.state.colors.values || []).length === 10")
    assignments = live_server.http.get(f"/api/maps/{map_id}/clusters").json()["assignments"]
    assert page.evaluate("window.latentmap.explore.clusters.assignments") == assignments
    assert page.evaluate("window.__xss") is None  # the XSS label, wherever it shows, is text
