"""Fixtures and helpers for the browser tests: a real `latentmap serve` subprocess and a headless Chromium.

tests/conftest.py loads this module as a plugin, so its fixtures (`browser`, `live_server`, `page`, `pages`) reach
every test by name; the helpers are imported. Every browser test opens its pages through `page` / `pages`, which fail
the test on console errors, uncaught exceptions, dialogs and server errors.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.maps.demo import DIGIT_WORDS
from tests import helpers

REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_DIR = REPO_ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
SERVER_START_TIMEOUT_S = 120

# Pictures for pages: a square with a disc, so they differ by more than their colour.
png_bytes = partial(helpers.png_bytes, size=48, mark=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_executable() -> str | None:
    """Chromium to launch: $LATENTMAP_CHROMIUM, the Debian package, or None (Playwright's own download)."""
    explicit = os.environ.get("LATENTMAP_CHROMIUM")
    if explicit:
        return explicit
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    return None


class LiveServer:
    def __init__(self, base_url: str, process: subprocess.Popen, log_path: Path):
        self.base_url = base_url
        self.process = process
        self.log_path = log_path
        self.http = httpx.Client(base_url=base_url, timeout=60)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def create_map(self, title: str) -> dict:
        response = self.http.post("/api/maps", json={"title": title})
        assert response.status_code == 201, response.text
        return response.json()

    def add_prompts(self, map_id: str, key: str, prompts: list[str]) -> list[dict]:
        response = self.http.post(f"/api/maps/{map_id}/prompts", json={"prompts": prompts}, headers={"X-Edit-Key": key})
        assert response.status_code == 201, response.text
        return response.json()["items"]

    def points(self, map_id: str) -> list[dict]:
        response = self.http.get(f"/api/maps/{map_id}/points")
        assert response.status_code == 200, response.text
        return response.json()["points"]

    def url(self, path: str) -> str:
        return self.base_url + path


def start_server(data_dir: Path, space: str = "tiny-random", extra_env: dict | None = None) -> LiveServer:
    """`latentmap serve` as a subprocess on a free loopback port, returned once /api/health answers."""
    log_path = data_dir.parent / f"server-{data_dir.name}-{time.monotonic_ns()}.log"
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "LATENTMAP_WARM_UMAP": "0",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--space",
        space,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            stop_server(server)
            pytest.fail(f"server exited with {process.returncode} before answering:\n{server.log_tail()}")
        try:
            if server.http.get("/api/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            pytest.fail(f"server did not answer /api/health within {SERVER_START_TIMEOUT_S}s:\n{server.log_tail()}")
        time.sleep(0.3)


def stop_server(server: LiveServer) -> None:
    server.http.close()
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """One `latentmap serve --space tiny-random` for every browser module: each test makes its own maps, and a
    server start (imports, model load) costs more than most browser tests."""
    server = start_server(tmp_path_factory.mktemp("latentmap-data"))
    try:
        yield server
    finally:
        stop_server(server)


# The digits server of the browser tests: no demo map; terrain tiles small on purpose (4 x 4 cells of 16 px, zoom 1
# at most: four tiles, 64 decodes).
DIGITS_ENV = {
    "LATENTMAP_CREATE_DEMO_MAP": "0",
    "LATENTMAP_TERRAIN_CELLS": "4",
    "LATENTMAP_TERRAIN_CELL_PX": "16",
    "LATENTMAP_TERRAIN_MAX_ZOOM": "1",
}


@pytest.fixture(scope="session")
def digits_server(tmp_path_factory):
    """One `latentmap serve --space digits` (the trained space, its variants) for every browser module that needs
    it: a start loads the space, longer than most tests take."""
    server = start_server(tmp_path_factory.mktemp("latentmap-digits"), space="digits", extra_env=DIGITS_ENV)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def digits_map(digits_server) -> str:
    """A map of the ten digit words on the digits server; tests only read it (they make their own to change one)."""
    created = digits_server.create_map("Digits")
    digits_server.add_prompts(created["id"], created["edit_key"], DIGIT_WORDS)
    return created["id"]


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    executable = chromium_executable()  # None: Playwright's own download, if there is one
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as exc:  # no browser: a missing install step, not a reason to pass quietly
            pytest.fail(
                f"cannot launch Chromium ({exc}); install Debian's chromium (bash .ci/test does) "
                "or set LATENTMAP_CHROMIUM"
            )
        yield chromium
        chromium.close()


# The pages' CSP allows no eval, and Playwright's wait_for_function compiles its predicate with `new Function` inside
# the page, which that CSP refuses. This one polls the predicate with page.evaluate (compiled over CDP, outside the
# page's CSP) until it is truthy, so every browser test keeps running under the real policy.
FUNCTION_EXPRESSION = re.compile(r"^\s*(async\s+)?(function\b|\([^()]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)")
POLL_MS = 20


def wait_for_function_without_eval(page, expression: str, *, arg=None, timeout: float | None = None, polling=None):
    from playwright.sync_api import Error, TimeoutError

    if FUNCTION_EXPRESSION.match(expression):
        probe = f"async (arg) => !!(await ({expression})(arg))"
    else:
        probe = f"async () => !!(await ({expression}))"
    limit_ms = timeout if timeout is not None else page._impl_obj._timeout_settings.timeout(None)
    interval = polling if isinstance(polling, (int, float)) else POLL_MS
    deadline = time.monotonic() + limit_ms / 1000
    while True:
        try:
            if page.evaluate(probe, arg):
                return page.evaluate_handle("true")
        except Error as exc:  # a navigation replaced the page under the probe: try again in the new one
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
        if limit_ms and time.monotonic() > deadline:
            raise TimeoutError(f"Page.wait_for_function: Timeout {limit_ms:.0f}ms exceeded waiting for {expression}")
        page.wait_for_timeout(interval)


def _install_wait_for_function_without_eval() -> None:
    from playwright.sync_api import Page

    Page.wait_for_function = wait_for_function_without_eval


_install_wait_for_function_without_eval()


ALLOW_MARKER = "allow_page_problems"


class PageProblems:
    """What a page must never do, collected while a test runs: uncaught exceptions, console errors, alert() /
    confirm() dialogs, and answers with status >= 500 from the page's own server."""

    def __init__(self, page):
        self.found: list[str] = []

        def on_console(msg):
            if msg.type == "error":
                self.found.append(f"console error: {msg.text} ({msg.location.get('url') or 'page'})")

        def on_response(response):
            if response.status >= 500 and (
                same_origin(response.url, page.url) or response.request.is_navigation_request()
            ):
                self.found.append(f"server error: {response.status} {response.request.method} {response.url}")

        def on_dialog(dialog):
            self.found.append(f"dialog: {dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("pageerror", lambda exc: self.found.append(f"page error: {exc}"))
        page.on("console", on_console)
        page.on("response", on_response)
        page.on("dialog", on_dialog)


def same_origin(a: str, b: str) -> bool:
    return urlsplit(a)[:2] == urlsplit(b)[:2]


def unexpected_problems(found: list[str], allowed: list[re.Pattern]) -> list[str]:
    """The problems no allowed pattern covers, and each allowed pattern that covered none (a stale opt-out)."""
    left = [f for f in found if not any(p.search(f) for p in allowed)]
    stale = [f"allowed but did not happen: {p.pattern!r}" for p in allowed if not any(p.search(f) for f in found)]
    return left + stale


@pytest.fixture
def pages(browser, request):
    """Open pages, each in its own browser context (like separate people): `pages(**context_options)`.

    At teardown the test fails listing every problem (see PageProblems) any of its pages had. A test that
    provokes one on purpose says which with `@pytest.mark.allow_page_problems(r"regex", ...)`, each regex
    matched against lines like "console error: Failed to load resource: ... 404 (Not Found) (http://...)";
    an allowed pattern that matched nothing fails too, so the opt-out stays as narrow as the test."""
    marker = request.node.get_closest_marker(ALLOW_MARKER)
    allowed = [re.compile(p) for p in (marker.args if marker else ())]
    opened = []

    def open_page(**context_options):
        context = browser.new_context(viewport=VIEWPORT, **context_options)
        page = context.new_page()
        page.set_default_timeout(20_000)
        opened.append((context, PageProblems(page)))
        return page

    yield open_page
    found = []
    for n, (context, problems) in enumerate(opened, 1):
        found += [f"page {n}: {p}" for p in problems.found]
        context.close()
    problems = unexpected_problems(found, allowed)
    if problems:
        pytest.fail("the pages had problems:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def page(pages):
    """A 1280x800 page of its own browser context; the test fails at teardown on its problems (see `pages`)."""
    return pages()


def screenshot(page, name: str) -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def wait_ready(page) -> None:
    page.wait_for_selector("body[data-ready='1']")


def open_map(page, server, map_id: str, points: int, query: str = "", key: str | None = None, tab: str | None = None):
    """Open a map's page (as its owner when given the edit `key`) and wait until it is ready and counts `points`
    points; then open the side panel's `tab`."""
    page.goto(server.url(f"/m/{map_id}{query}" + (f"#key={key}" if key else "")))
    wait_ready(page)
    wait_point_count(page, points)
    if tab:
        open_tab(page, tab)


def point_count(page) -> int:
    return int(page.get_attribute("#point-count", "data-count") or 0)


def wait_point_count(page, n: int) -> None:
    page.wait_for_function(f"document.getElementById('point-count').dataset.count === '{n}'")


def point_screen_positions(page) -> list[dict]:
    """Page-coordinates of every drawn point, with its item (id, kind, label)."""
    return page.evaluate("""() => {
        const lm = window.latentmap;
        const rect = document.getElementById('map-canvas').getBoundingClientRect();
        return lm.state.items.map((item, index) => {
            const [px, py] = lm.dataToScreen(item.x, item.y);
            return {index, id: item.id, kind: item.kind, label: item.label, x: rect.left + px, y: rect.top + py,
                    inside: px > 0 && py > 0 && px < rect.width && py < rect.height};
        });
    }""")


def empty_spot(page, min_distance: float = 40.0) -> tuple[float, float]:
    """A page position on the canvas far from every point (empty space between items)."""
    spot = page.evaluate(
        """(minDistance) => {
        const lm = window.latentmap;
        const rect = document.getElementById('map-canvas').getBoundingClientRect();
        const pts = lm.state.items.map((item) => lm.dataToScreen(item.x, item.y));
        let best = null;
        for (let gx = 0.1; gx < 0.91; gx += 0.05) {
            for (let gy = 0.1; gy < 0.91; gy += 0.05) {
                const px = rect.width * gx, py = rect.height * gy;
                const d = Math.min(Infinity, ...pts.map(([x, y]) => Math.hypot(x - px, y - py)));
                if (!best || d > best.d) best = {x: rect.left + px, y: rect.top + py, d};
            }
        }
        return best;
    }""",
        min_distance,
    )
    assert spot["d"] >= min_distance, spot
    return spot["x"], spot["y"]


def decoded_image_base64(page) -> str:
    """The bytes of the decoded <img> (its blob: URL), base64-encoded, after checking it rendered."""
    # Read from the decode the page holds (the blob behind the <img>'s blob: URL): the page's CSP lets no script
    # fetch a blob: URL.
    page.wait_for_function("""() => {
        const img = document.getElementById('decode-img');
        const current = window.latentmap.state.current;
        return document.getElementById('map-root').dataset.decodeState === 'done'
            && !img.hidden && img.complete && img.naturalWidth > 0 && current && current.url === img.src;
    }""")
    return page.evaluate("""async () => {
        const buf = await window.latentmap.state.current.blob.arrayBuffer();
        let s = '';
        for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
        return btoa(s);
    }""")


def data_to_page(page, x: float, y: float) -> tuple[float, float]:
    """The page position of a map point (data coordinates), as the page itself computes it."""
    return tuple(
        page.evaluate(
            """([x, y]) => {
        const rect = document.getElementById('map-canvas').getBoundingClientRect();
        const [px, py] = window.latentmap.dataToScreen(x, y);
        return [rect.left + px, rect.top + py];
    }""",
            [x, y],
        )
    )


def draw_path(page, points: list[tuple[float, float]], steps: int | None = None, decode: bool = True) -> None:
    """Draw a path as a user does: the Explore tab's "Draw a path", a click per point, then "Decode along path" (or
    stop drawing)."""
    open_tab(page, "explore")
    if steps is not None:
        page.fill("#explore-path-steps", str(steps))
    page.click("#explore-path-btn")
    page.wait_for_function("window.latentmap.mode === 'path'")
    for x, y in points:
        before = page.evaluate("window.latentmap.explore.vertices.length")
        px, py = data_to_page(page, x, y)
        under = page.evaluate("([x, y]) => document.elementFromPoint(x, y).id", [px, py])
        assert under == "map-canvas", f"({x}, {y}) is at ({px}, {py}) on the page, under #{under}, not on the map"
        page.mouse.click(px, py)
        page.wait_for_function(f"window.latentmap.explore.vertices.length === {before + 1}")
    if decode:
        page.click("#explore-path-make")
        page.wait_for_function("document.getElementById('map-root').dataset.pathState === 'done'")
    else:
        page.click("#explore-path-btn")
        page.wait_for_function("window.latentmap.mode === 'decode'")


def hover_until_tooltip(page, target_id: str | None = None) -> dict:
    """Move the mouse over drawn points until the tooltip shows (for `target_id` if given)."""
    for point in point_screen_positions(page):
        if not point["inside"] or (target_id and point["id"] != target_id):
            continue
        page.mouse.move(point["x"] - 30, point["y"] - 30)
        page.mouse.move(point["x"], point["y"], steps=4)
        try:
            page.wait_for_selector("#tooltip:not([hidden])", timeout=2000)
        except Exception:
            continue
        return point
    raise AssertionError("no tooltip appeared over any point")


def click_item(page, label: str | None = None, index: int | None = None) -> dict:
    """Click a drawn item (by label, or by index on maps loaded without labels) as a user does: point at it, wait
    until the page sees it under the pointer (wherever layout and camera settled), click, and wait until it is the
    selected item. Returns the point."""

    def locate():
        return next(
            p
            for p in point_screen_positions(page)
            if p["inside"] and (p["label"] == label if index is None else p["index"] == index)
        )

    target = locate()
    page.mouse.move(target["x"] - 20, target["y"] - 20)
    page.mouse.move(target["x"], target["y"], steps=3)
    page.wait_for_function("(i) => window.latentmap.state.hovered === i", arg=target["index"])
    target = locate()
    page.mouse.click(target["x"], target["y"])
    page.wait_for_function(
        "(i) => window.latentmap.state.selected === window.latentmap.state.items[i]", arg=target["index"]
    )
    return target


def open_tab(page, name: str) -> None:
    """Open a tab of the side panel (decode, explore, decoders, teach) by clicking it, as a user does."""
    page.click(f"#tab-{name}")
    page.wait_for_selector(f"#map-root[data-tab='{name}']")
