"""The map page against a space that generates a picture per prompt (turbo-h, tiny random weights, served by
`latentmap serve --space turbo-h` with every component overridden to local folders): prompts appear at once,
say their picture is on its way, and show it once it has been generated.

Run: pytest -m browser tests/test_browser_real_spaces.py   (screenshot: test-output/screenshots/real-*.png)
"""

from __future__ import annotations

import json

import pytest

from app.spaces import turbo
from tests.browser_util import (
    hover_until_tooltip,
    screenshot,
    start_server,
    stop_server,
    wait_point_count,
    wait_ready,
)
from tests.helpers import TINY_ARCH, TINY_SPACE_CONFIG, real_space_env

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def turbo_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("turbo-h")
    paths = turbo.build_random(root / "weights", TINY_ARCH)
    config_file = root / "turbo-h-config.json"
    config_file.write_text(json.dumps(TINY_SPACE_CONFIG))
    server = start_server(
        root / "data",
        space="turbo-h",
        extra_env={**real_space_env("turbo-h", paths, config_file), "OMP_NUM_THREADS": "1", "LATENTMAP_DEVICE": "cpu"},
    )
    try:
        yield server
    finally:
        stop_server(server)


def test_prompt_pictures_arrive_after_the_prompts(turbo_server, page):
    created = turbo_server.create_map("Pictures later")
    map_id, key = created["id"], created["edit_key"]
    page.goto(turbo_server.url(f"/m/{map_id}#key={key}"))
    wait_ready(page)
    page.fill("#prompt-input", "a red bicycle\na cat asleep on a sofa\nsnowy mountains at dawn")
    page.click("#prompt-submit")
    wait_point_count(page, 3)
    # On the map at once; the page knows the pictures are still coming (it asks again every 2.5 s).
    assert page.evaluate("window.latentmap.state.items.every((p) => p.pending === true)")
    page.wait_for_function(
        "window.latentmap.state.items.every((p) => p.pending === false && p.thumbnail)", timeout=60_000
    )
    hover_until_tooltip(page)
    page.wait_for_function(
        "(() => { const img = document.querySelector('#tooltip .tooltip-thumb');"
        " return img && img.complete && img.naturalWidth > 0; })()"
    )
    assert not page.is_visible("#tooltip .tooltip-pending")
    screenshot(page, "real-prompt-picture")
