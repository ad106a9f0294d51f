"""The pages under their strict Content-Security-Policy (no inline script, no eval) in real headless Chromium: the
map page loads, decodes a click and pans and zooms, and Swagger UI starts, without one CSP violation."""

from __future__ import annotations

import pytest

from tests.browser_util import empty_spot, open_map

# Runs before any page script: every CSP violation the page raises is kept where the test can read it.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture(scope="module")
def prompt_map(live_server):
    created = live_server.create_map("csp")
    live_server.add_prompts(created["id"], created["edit_key"], ["a red bicycle", "a cat asleep", "a blue door"])
    return created


def test_the_policy_allows_no_eval_and_no_inline_script(live_server, prompt_map):
    csp = live_server.http.get(f"/m/{prompt_map['id']}").headers["content-security-policy"]
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src"))
    assert "'unsafe-eval'" not in script_src and "'unsafe-inline'" not in script_src, script_src


def test_map_page_decodes_and_pans_with_no_csp_violation(live_server, pages, prompt_map):
    page = pages()
    page.add_init_script(RECORD_VIOLATIONS)
    # The owner's page (edit key in the fragment) loads every panel, owner controls included.
    open_map(page, live_server, prompt_map["id"], 3, key=prompt_map["edit_key"])
    x, y = empty_spot(page)
    page.mouse.click(x, y)
    page.wait_for_function("document.getElementById('map-root').dataset.decodeState === 'done'")
    view = page.evaluate("window.latentmap.currentView()")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 60, steps=8)
    page.mouse.up()
    page.mouse.wheel(0, -400)
    page.wait_for_function("(v) => JSON.stringify(window.latentmap.currentView()) !== JSON.stringify(v)", arg=view)
    for tab in ("explore", "decoders", "teach"):
        if page.is_visible(f"#tab-{tab}"):
            page.click(f"#tab-{tab}")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert page.evaluate("window.__cspViolations") == []


def test_swagger_ui_starts_under_the_policy(live_server, pages):
    page = pages()
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(live_server.url("/docs"))
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.evaluate("window.__cspViolations") == []
