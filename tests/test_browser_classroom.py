"""Classroom mode in a real headless Chromium against `latentmap serve --space tiny-random`: present / follow over
server-sent events, guided tours (record, play, bundle round trip) and the quiz.

Run: pytest -m browser tests/test_browser_classroom.py   (screenshots: test-output/screenshots/classroom-*.png)
"""

from __future__ import annotations

import base64
import time

import pytest

from tests.browser_util import (
    decoded_image_base64,
    draw_path,
    empty_spot,
    open_tab,
    screenshot,
    wait_ready,
)

pytestmark = pytest.mark.browser

PROMPTS = [
    "a red bicycle",
    "a cat asleep on a sofa",
    "snowy mountains at dawn",
    "a bowl of ramen",
    "a lighthouse in a storm",
    "an old typewriter",
]


def make_map(live_server, title: str) -> tuple[str, str]:
    created = live_server.create_map(title)
    live_server.add_prompts(created["id"], created["edit_key"], PROMPTS)
    return created["id"], created["edit_key"]


def current_view(page) -> dict:
    return page.evaluate("window.latentmap.currentView()")


def wait_same_view(page, view: dict, timeout: float = 10_000) -> None:
    """The page's view matches `view` (centre within 1% of the visible height, zoom within 1%)."""
    page.wait_for_function(
        """(v) => {
        const c = window.latentmap.currentView();
        const tol = 0.01 / v.zoom;
        return Math.abs(c.x - v.x) <= tol && Math.abs(c.y - v.y) <= tol && Math.abs(c.zoom / v.zoom - 1) <= 0.01;
    }""",
        arg=view,
        timeout=timeout,
    )


def wait_following(follower, presenter, timeout_s: float = 10) -> dict:
    """Until the follower shows the presenter's view, read anew each time (a wheel zoom may still be settling on
    the presenter's side); that view."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = current_view(presenter)
        if views_match(view, current_view(follower)):
            return view
        assert time.monotonic() < deadline, (view, current_view(follower))
        follower.wait_for_timeout(50)


def views_match(a: dict, b: dict) -> bool:
    tol = 0.01 / a["zoom"]
    return abs(a["x"] - b["x"]) <= tol and abs(a["y"] - b["y"]) <= tol and abs(a["zoom"] / b["zoom"] - 1) <= 0.01


def drag_map(page, dx: float, dy: float) -> None:
    box = page.locator("#map-canvas").bounding_box()
    x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.55
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=4)
    page.mouse.move(x + dx, y + dy, steps=4)
    page.mouse.up()


def decoded_at(page) -> list:
    page.wait_for_function("document.getElementById('map-root').dataset.decodeState === 'done'")
    return page.evaluate("(() => { const c = window.latentmap.state.current; return [c.x, c.y, c.seed]; })()")


def start_presenting(page) -> str:
    """Owner page: start a presentation (Teach tab); returns the follow path (/p/{code})."""
    open_tab(page, "teach")
    page.click("#present-start-btn")
    page.wait_for_selector("#present-dialog[open]")
    page.wait_for_function("document.getElementById('present-dialog-qr').naturalWidth > 0")
    follow_path = page.get_attribute("#present-link", "href")
    assert follow_path.startswith("/p/")
    return follow_path


def open_follower(pages, live_server, follow_path: str):
    """A follower's page (a person of their own) on the presentation's link, once it follows."""
    page = pages()
    page.goto(live_server.url(follow_path))
    wait_ready(page)
    page.wait_for_selector("#map-root[data-follow='following']")
    return page


def present(live_server, pages, title: str, followers: int = 2, tour: dict | None = None):
    """The owner presenting a new map (with `tour` saved on it first) and `followers` people following its link:
    (map id, presenter page, follow path, follower pages)."""
    map_id, key = make_map(live_server, title)
    if tour:
        saved = live_server.http.post(f"/api/maps/{map_id}/tours", headers={"X-Edit-Key": key}, json=tour)
        assert saved.status_code == 201, saved.text
    presenter = pages()
    presenter.goto(live_server.url(f"/m/{map_id}#key={key}"))
    wait_ready(presenter)
    follow_path = start_presenting(presenter)
    presenter.click("#present-dialog button[value='close']")
    following = [open_follower(pages, live_server, follow_path) for _ in range(followers)]
    presenter.wait_for_selector(f"#present-followers[data-count='{followers}']", timeout=10_000)
    return map_id, presenter, follow_path, following


def test_followers_mirror_the_presenters_view_decodes_and_seed(live_server, pages):
    map_id, presenter, _, followers = present(live_server, pages, "Classroom: present")
    for page in followers:
        assert page.evaluate(f"localStorage.getItem('latentmap:key:{map_id}')") is None  # no edit key
        open_tab(page, "teach")
        assert not page.is_visible("#present-start-btn")

    # Pan and zoom on the presenter's map, then decode a spot: both followers mirror it.
    put_times = presenter.evaluate("performance.now()")
    drag_map(presenter, 140, -60)
    for _ in range(6):
        presenter.mouse.wheel(0, -50)
        presenter.wait_for_timeout(30)
    presenter.wait_for_timeout(400)
    # Throttled: at most one update every 200 ms, the last (trailing) one after the gesture ended.
    starts = presenter.evaluate(
        """(t0) => performance.getEntriesByType('resource')
        .filter((e) => e.name.endsWith('/state') && e.startTime >= t0).map((e) => e.startTime)""",
        put_times,
    )
    assert starts, "no presentation update was sent"
    assert len(starts) <= 2 + (starts[-1] - starts[0]) / 200, starts
    assert all(b - a >= 150 for a, b in zip(starts, starts[1:])), starts
    for page in followers:
        wait_following(page, presenter)
    x, y = empty_spot(presenter)
    presenter.mouse.click(x, y)
    presenter_image = decoded_image_base64(presenter)
    presenter_at = decoded_at(presenter)
    for page in followers:
        page.wait_for_function(
            "(at) => { const c = window.latentmap.state.current; "
            "return c && c.x === at[0] && c.y === at[1] && c.seed === at[2]; }",
            arg=presenter_at,
        )
        assert decoded_image_base64(page) == presenter_image
        wait_following(page, presenter)
    screenshot(followers[0], "classroom-02-follower-following")

    # A new seed on the presenter's side reaches the followers too.
    presenter.fill("#seed-input", "7")
    presenter.press("#seed-input", "Enter")
    presenter.wait_for_function(
        "window.latentmap.state.current.seed === 7 && "
        "document.getElementById('map-root').dataset.decodeState === 'done'"
    )
    presenter_image = decoded_image_base64(presenter)
    for page in followers:
        page.wait_for_function("window.latentmap.state.current.seed === 7")
        assert decoded_image_base64(page) == presenter_image


def test_a_follower_who_steps_away_can_follow_again(live_server, pages):
    _, presenter, _, (away, stay) = present(live_server, pages, "Classroom: stepping away")
    # Follower 1 steps away (a pan): it stops following, follower 2 keeps following.
    drag_map(away, -120, 80)
    away.wait_for_selector("#map-root[data-follow='paused']")
    assert away.is_visible("#follow-again-btn")
    drag_map(presenter, -80, -40)
    view = wait_following(stay, presenter)
    away.wait_for_timeout(500)  # what the presenter sends meanwhile does not move a follower who stepped away
    assert not views_match(current_view(away), view)
    screenshot(away, "classroom-03-follower-paused")
    away.click("#follow-again-btn")
    away.wait_for_selector("#map-root[data-follow='following']")
    wait_same_view(away, view)
    assert not away.is_visible("#follow-again-btn")


LIVE_TOUR = {
    "title": "Live tour",
    "steps": [{"caption": "Look here", "view": [0.0, 0.0, 0.8], "at": [0.1, 0.1], "seed": 2}],
}


def test_presenting_survives_a_reload_shows_tours_to_followers_and_ends(live_server, pages):
    map_id, presenter, follow_path, followers = present(live_server, pages, "Classroom: tour", tour=LIVE_TOUR)
    # The presentation's link and QR code, and the presenter key kept for this tab.
    presenter.click("#present-qr-btn")
    presenter.wait_for_selector("#present-dialog[open]")
    presenter.wait_for_function("document.getElementById('present-dialog-qr').naturalWidth > 0")
    assert presenter.is_visible("#present-dialog-url")
    screenshot(presenter, "classroom-01-present-qr")
    presenter.keyboard.press("Escape")
    code = follow_path.rsplit("/", 1)[1]
    assert presenter.evaluate(f"JSON.parse(sessionStorage.getItem('latentmap:presenting:{map_id}')).code") == code

    # A reload keeps presenting (the presenter key is in sessionStorage).
    presenter.reload()
    wait_ready(presenter)
    open_tab(presenter, "teach")
    presenter.wait_for_selector("#present-box:not([hidden])")
    assert presenter.get_attribute("#present-link", "href") == follow_path

    # A tour played by the presenter shows its caption on the followers' screens.
    presenter.locator("#tour-list li", has_text="Live tour").locator(".tour-play").click()
    for page in followers:
        page.wait_for_selector("#tour-player.is-remote:not([hidden])")
        page.wait_for_function("document.getElementById('tour-caption-text').textContent === 'Look here'")
        page.wait_for_function(
            "(() => { const c = window.latentmap.state.current; "
            "return c && c.x === 0.1 && c.y === 0.1 && c.seed === 2; })()"
        )
        assert not page.is_visible("#tour-next")  # followers see the caption, the presenter drives
    screenshot(followers[1], "classroom-04-follower-tour-caption")
    presenter.click("#tour-close")
    for page in followers:
        page.wait_for_selector("#tour-player", state="hidden")

    # The presenter ends it: followers are told.
    presenter.click("#present-end-btn")
    presenter.wait_for_selector("#present-box", state="hidden")
    for page in followers:
        page.wait_for_selector("#map-root[data-follow='ended']")
        assert "The presentation has ended" in page.inner_text("#follow-status")
    screenshot(followers[1], "classroom-05-follower-ended")
    assert live_server.http.get(f"/api/presentations/{code}").status_code == 404


def test_owner_records_a_tour(live_server, pages):
    map_id, key = make_map(live_server, "Classroom: tours")
    owner = pages()
    owner.goto(live_server.url(f"/m/{map_id}#key={key}"))
    wait_ready(owner)
    open_tab(owner, "teach")
    owner.click("#tour-recorder summary")

    # Step 1: the whole map, nothing decoded.
    owner.fill("#tour-caption", "The whole map <b>at once</b>")
    owner.click("#tour-add-step")
    # Step 2: zoomed in, a decoded spot with seed 3.
    owner.mouse.wheel(0, -250)
    owner.wait_for_timeout(300)
    owner.fill("#seed-input", "3")
    owner.press("#seed-input", "Enter")
    x, y = empty_spot(owner)
    owner.mouse.click(x, y)
    step2_at = decoded_at(owner)
    decoded_image_base64(owner)  # the decode is shown before the step is added
    step2_view = current_view(owner)
    owner.fill("#tour-caption", "Between two clusters")
    owner.click("#tour-add-step")
    # Step 3: with the path drawn on the map.
    owner.check("#tour-include-path")
    owner.click("#tour-add-step")
    assert owner.is_visible("#tour-error")  # no path drawn yet
    draw_path(owner, [(-0.4, 0.1), (0.1, 0.3), (0.4, -0.2)], decode=False)
    open_tab(owner, "teach")
    owner.fill("#tour-caption", "Along a path")
    owner.click("#tour-add-step")
    assert owner.locator("#tour-draft li").count() == 3
    owner.locator("#tour-draft li").nth(2).get_by_role("button", name="Remove step 3").click()
    assert owner.locator("#tour-draft li").count() == 2
    owner.check("#tour-include-path")
    owner.fill("#tour-caption", "Along a path")
    owner.click("#tour-add-step")
    assert owner.locator("#tour-draft li").count() == 3
    owner.fill("#tour-title", "First lesson")
    owner.locator("#tour-save").scroll_into_view_if_needed()
    screenshot(owner, "classroom-06a-tour-recorder")
    owner.click("#tour-save")
    owner.wait_for_selector("#tour-list li[data-tour-id]")
    assert owner.locator("#tour-draft li").count() == 0
    tours = live_server.http.get(f"/api/maps/{map_id}/tours").json()["tours"]
    assert [t["title"] for t in tours] == ["First lesson"]
    steps = tours[0]["steps"]
    assert [s["caption"] for s in steps] == ["The whole map <b>at once</b>", "Between two clusters", "Along a path"]
    assert steps[0]["at"] is None and steps[1]["at"] == step2_at[:2] and steps[1]["seed"] == 3
    assert steps[0]["path"] is None
    # The clicked path, to within the zoom's rounding of a click (a tenth of a pixel or so).
    assert len(steps[2]["path"]) == 3
    for got, want in zip(steps[2]["path"], [[-0.4, 0.1], [0.1, 0.3], [0.4, -0.2]]):
        assert got == pytest.approx(want, abs=0.01)

    view = dict(zip(("x", "y", "zoom"), steps[1]["view"]))
    assert views_match(view, step2_view)  # played back below (test_anyone_plays_a_tour) from such a tour


STEP2 = {"caption": "Between two clusters", "view": [0.05, -0.1, 2.0], "at": [0.05, -0.1], "seed": 3}
TOURS = [
    {
        "title": "First lesson",
        "steps": [
            {"caption": "The whole map <b>at once</b>"},
            STEP2,
            {"caption": "Along a path", "path": [[-0.4, 0.1], [0.1, 0.3], [0.4, -0.2]], "seed": 0},
        ],
    },
    {"title": "A walk", "steps": [{"caption": "Walk across", "path": [[-0.5, 0.0], [0.5, 0.2]], "seed": 1}]},
]


@pytest.fixture(scope="module")
def toured_map(live_server):
    """A map with the tours above, as the recorder saves them (test_owner_records_a_tour); only played here."""
    map_id, key = make_map(live_server, "Classroom: tours")
    for tour in TOURS:
        saved = live_server.http.post(f"/api/maps/{map_id}/tours", headers={"X-Edit-Key": key}, json=tour)
        assert saved.status_code == 201, saved.text
    return map_id


def play_tour(page, live_server, map_id: str, title: str) -> None:
    page.goto(live_server.url(f"/m/{map_id}"))
    wait_ready(page)
    open_tab(page, "teach")
    page.locator("#tour-list li", has_text=title).locator(".tour-play").click()
    page.wait_for_selector("#tour-player:not([hidden])")


def test_anyone_plays_a_tour(live_server, pages, toured_map):
    # A viewer without the key: no recorder, no delete buttons, both tours listed.
    viewer = pages()
    play_tour(viewer, live_server, toured_map, "First lesson")
    assert viewer.locator("#tour-list li").count() == 2
    assert not viewer.is_visible("#tour-recorder") and viewer.locator(".tour-delete").count() == 0
    assert viewer.inner_text("#tour-caption-text") == "The whole map <b>at once</b>"  # text, not HTML
    assert viewer.inner_text("#tour-player-count") == "1 / 3"
    assert viewer.is_disabled("#tour-prev")
    viewer.keyboard.press("ArrowRight")  # the player has focus
    viewer.wait_for_function("document.getElementById('tour-caption-text').textContent === 'Between two clusters'")
    # The step's spot, seed and view: the same pixels as a click there with that seed.
    assert decoded_at(viewer) == STEP2["at"] + [STEP2["seed"]]
    direct = live_server.http.post(f"/api/maps/{toured_map}/decode", json={"x": 0.05, "y": -0.1, "seed": 3})
    assert base64.b64decode(decoded_image_base64(viewer)) == direct.content
    wait_same_view(viewer, dict(zip(("x", "y", "zoom"), STEP2["view"])))
    screenshot(viewer, "classroom-06-tour-step")
    viewer.keyboard.press("ArrowRight")
    viewer.wait_for_function("document.querySelectorAll('#tour-frames img').length === 8")
    assert viewer.is_disabled("#tour-next")
    viewer.keyboard.press("ArrowLeft")
    viewer.keyboard.press("ArrowLeft")
    viewer.wait_for_function("document.getElementById('tour-player-count').textContent === '1 / 3'")
    assert viewer.is_hidden("#tour-frames")
    viewer.keyboard.press("Escape")
    viewer.wait_for_selector("#tour-player", state="hidden")

    # The path step shows its frames.
    viewer.locator("#tour-list li", has_text="A walk").locator(".tour-play").click()
    viewer.wait_for_function(
        "document.querySelectorAll('#tour-frames img').length === 8 && "
        "[...document.querySelectorAll('#tour-frames img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    screenshot(viewer, "classroom-07-tour-path")


def test_tours_travel_with_the_bundle(live_server, page, toured_map):
    # Export / import: the tours travel with the bundle.
    bundle = live_server.http.get(f"/api/maps/{toured_map}/bundle")
    assert bundle.status_code == 200
    copy = live_server.http.post("/api/bundles", files={"file": ("b.zip", bundle.content, "application/zip")})
    assert copy.status_code == 201, copy.text
    play_tour(page, live_server, copy.json()["id"], "First lesson")
    page.click("#tour-next")
    page.wait_for_function("document.getElementById('tour-caption-text').textContent === 'Between two clusters'")
    assert decoded_at(page) == STEP2["at"] + [STEP2["seed"]]  # the imported map keeps the positions


def test_quiz_round(live_server, pages):
    _, presenter, _, followers = present(live_server, pages, "Classroom: quiz")
    players = list(zip(("Ada", "Grace"), followers))

    presenter.click("#quiz-start-btn")
    presenter.wait_for_selector("#quiz-box:not([hidden])")
    round_id = presenter.get_attribute("#quiz-box", "data-round-id")
    assert presenter.is_visible("#quiz-reveal-btn") and not presenter.is_visible("#quiz-player")

    for n, (name, page) in enumerate(players):
        page.wait_for_selector(f"#quiz-box[data-round-id='{round_id}']")
        page.wait_for_function("document.getElementById('quiz-img').naturalWidth > 0")
        assert page.evaluate("window.latentmap.mode === 'guess'")
        page.fill("#quiz-name", name)
        before = page.evaluate("window.latentmap.state.current")
        box = page.locator("#map-canvas").bounding_box()
        page.mouse.click(box["x"] + box["width"] * (0.35 + 0.3 * n), box["y"] + box["height"] * 0.4)
        page.wait_for_selector("#quiz-guess-marker:not([hidden])")
        # The click placed a guess instead of decoding, and did not stop following.
        assert page.evaluate("window.latentmap.state.current") == before
        assert page.get_attribute("#map-root", "data-follow") == "following"
        page.click("#quiz-confirm-btn")
        page.wait_for_selector("#quiz-status[data-sent='1']")
        assert page.evaluate("localStorage.getItem('latentmap:player')") == name
    screenshot(players[0][1], "classroom-08-quiz-guess")
    presenter.wait_for_selector("#quiz-players[data-count='2']", timeout=10_000)

    presenter.click("#quiz-reveal-btn")
    presenter.wait_for_selector("#quiz-ranking:not([hidden])")
    answer = live_server.http.get(f"/api/quiz/{round_id}").json()["answer"]
    for page in [presenter] + [p for _, p in players]:
        page.wait_for_selector("#quiz-ranking li.quiz-rank", timeout=10_000)
        names = page.locator("#quiz-ranking .quiz-rank-name").all_inner_texts()
        assert sorted(names) == ["Ada", "Grace"]
        page.wait_for_selector("#quiz-answer-marker:not([hidden])")
        assert page.locator(".cr-guess").count() == 2
    # Everyone following sees the hidden image's spot decoded.
    for _, page in players:
        page.wait_for_function(
            "(a) => { const c = window.latentmap.state.current; "
            "return c && c.x === a.x && c.y === a.y && c.seed === a.seed; }",
            arg=answer,
        )
    screenshot(presenter, "classroom-09-quiz-revealed")
    assert (
        live_server.http.post(f"/api/quiz/{round_id}/guess", json={"player": "late", "x": 0, "y": 0}).status_code == 403
    )


def test_projector_size_with_large_text_and_high_contrast(live_server, pages):
    _, presenter, _, (page,) = present(live_server, pages, "Classroom: projector", followers=1)
    # Projector: 1024x768, large text + high contrast, remembered across a reload.
    page.set_viewport_size({"width": 1024, "height": 768})
    page.click("#large-text-toggle")
    page.click("#high-contrast-toggle")
    assert page.evaluate("document.documentElement.className").split() == ["large-text", "high-contrast"]
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    screenshot(page, "classroom-10-projector-1024")
    assert page.evaluate("document.documentElement.scrollWidth <= 1024")
    presenter.set_viewport_size({"width": 1024, "height": 768})
    presenter.click("#large-text-toggle")
    presenter.click("#present-qr-btn")
    presenter.wait_for_selector("#present-dialog[open]")
    box = presenter.locator("#present-dialog").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 768 and box["width"] <= 1024
    screenshot(presenter, "classroom-11-present-qr-1024")
    presenter.keyboard.press("Escape")
    page.reload()
    wait_ready(page)
    assert page.evaluate("document.documentElement.classList.contains('high-contrast')")
    assert page.get_attribute("#high-contrast-toggle", "aria-pressed") == "true"
