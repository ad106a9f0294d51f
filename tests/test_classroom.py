"""Classroom mode: presentations over SSE, tours (incl. bundles), and the quiz."""

import json
import threading
import time

import httpx
import pytest

from app.maps.classroom import Classroom
from tests.helpers import make_map

PROMPTS = ("zero", "one", "two", "three")


def read_events(url, count, out, ready):
    """Collect `count` SSE events (event name, data) from url."""
    with httpx.Client(timeout=30) as http, http.stream("GET", url) as r:
        ready.set()
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:]), time.time()))
                if len(out) >= count:
                    return


def test_followers_receive_the_presenters_state(live_url):
    http = httpx.Client(base_url=live_url, timeout=30)
    map_id, key = make_map(http, "class", PROMPTS)
    assert http.post(f"/api/maps/{map_id}/presentations").status_code == 403  # needs the edit key
    started = http.post(f"/api/maps/{map_id}/presentations", headers=key).json()
    code, presenter = started["code"], {"X-Presenter-Key": started["presenter_key"]}
    assert "edit_key" not in json.dumps(started) and started["follow_url"] == f"/p/{code}"

    n = 20
    inboxes = [[] for _ in range(n)]
    ready = [threading.Event() for _ in range(n)]
    threads = [
        threading.Thread(
            target=read_events, args=(f"{live_url}/api/presentations/{code}/events", 3, inboxes[i], ready[i])
        )
        for i in range(n)
    ]
    for t in threads:
        t.start()
    for r in ready:
        assert r.wait(20)
    deadline = time.time() + 20
    while http.get(f"/api/presentations/{code}").json()["followers"] < n and time.time() < deadline:
        time.sleep(0.05)
    assert http.get(f"/api/presentations/{code}").json()["followers"] == n

    state = {"view": [0.1, -0.2, 2.0], "at": [0.3, 0.4], "seed": 7}
    assert http.put(f"/api/presentations/{code}/state", json=state).status_code == 403
    assert http.put(f"/api/presentations/{code}/state", json=state, headers=presenter).json()["followers"] == n
    assert http.delete(f"/api/presentations/{code}", headers=presenter).status_code == 204
    for t in threads:
        t.join(20)
    for inbox in inboxes:
        assert [e[0] for e in inbox] == ["state", "state", "end"]
        assert inbox[1][1]["state"] == state
        assert "edit_key" not in json.dumps(inbox) and started["presenter_key"] not in json.dumps(inbox)
    assert http.get(f"/api/presentations/{code}").status_code == 404


def test_follow_link_and_qr(client):
    made = client.post("/api/maps", json={"title": "c"}).json()
    p = client.post(f"/api/maps/{made['id']}/presentations", headers={"X-Edit-Key": made["edit_key"]}).json()
    r = client.get(p["follow_url"], follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/m/{made['id']}?follow={p['code']}"
    qr = client.get(p["qr_url"])
    assert qr.headers["content-type"].startswith("image/svg") and b"<svg" in qr.content
    assert client.get("/p/nosuchcode").status_code == 404


def test_presentations_expire():
    classroom = Classroom(max_presentation_seconds=3600, max_followers=5)
    p, _ = classroom.start("map", seconds=1)
    p.expires_at = time.time() - 1
    with pytest.raises(LookupError):
        classroom.get(p.code)


@pytest.mark.parametrize(
    "bad",
    [
        {"title": "", "steps": [{"caption": "x"}]},
        {"title": "t", "steps": []},
        {"title": "t", "steps": [{"view": [1, 2]}]},
        {"title": "t", "steps": [{"caption": "x" * 501}]},
        {"title": "t", "steps": [{"terrain": {"opacity": 0.5}}]},
        {"title": "t", "steps": [{"terrain": {"on": True, "opacity": 2}}]},
        {"title": "t", "steps": [{"terrain": {"on": True, "variant": "../weights"}}]},
    ],
    ids=[
        "no title",
        "no steps",
        "view not x-y-zoom",
        "caption too long",
        "terrain without on",
        "terrain opacity",
        "terrain variant",
    ],
)
def test_invalid_tours_are_422_and_not_saved(client, new_map, bad):
    map_id, key = new_map
    r = client.post(f"/api/maps/{map_id}/tours", json=bad, headers=key)
    assert r.status_code == 422 and r.json()["detail"]
    assert client.get(f"/api/maps/{map_id}/tours").json()["tours"] == []


def test_tours_round_trip(client, new_map):
    map_id, key = new_map
    tour = {
        "title": "Five steps",
        "steps": [
            {"caption": "Clusters", "view": [0, 0, 1]},
            {"caption": "Between clusters", "view": [0.2, 0.1, 3], "at": [0.2, 0.1], "seed": 1},
            {"caption": "A walk", "path": [[-0.5, 0], [0.5, 0]], "seed": 2},
            {"caption": "The space itself", "view": [0, 0, 1], "seed": 3, "terrain": {"on": True, "opacity": 0.6}},
            {"caption": "Through the thick LoRA", "terrain": {"on": True, "variant": "thick"}},
            {"caption": "Items only", "terrain": {"on": False}},
        ],
    }
    assert client.post(f"/api/maps/{map_id}/tours", json=tour).status_code == 403
    saved = client.post(f"/api/maps/{map_id}/tours", json=tour, headers=key)
    assert saved.status_code == 201
    tour_id = saved.json()["id"]
    got = client.get(f"/api/maps/{map_id}/tours/{tour_id}").json()
    assert [s["caption"] for s in got["steps"]][:3] == ["Clusters", "Between clusters", "A walk"]
    assert got["steps"][2]["path"] == [[-0.5, 0], [0.5, 0]]
    # the terrain layer of a step (issue #18): on/off, opacity and variant; a step without one leaves it as it is
    assert [s["terrain"] for s in got["steps"]] == [
        None,
        None,
        None,
        {"on": True, "opacity": 0.6, "variant": None},
        {"on": True, "opacity": None, "variant": "thick"},
        {"on": False, "opacity": None, "variant": None},
    ]
    # tours travel in bundles
    client.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["a", "b"]}, headers=key)
    data = client.get(f"/api/maps/{map_id}/bundle").content
    copy = client.post("/api/bundles", files={"file": ("b.zip", data, "application/zip")}).json()
    tours = client.get(f"/api/maps/{copy['id']}/tours").json()["tours"]
    assert [t["title"] for t in tours] == ["Five steps"] and tours[0]["steps"] == got["steps"]
    assert client.delete(f"/api/maps/{map_id}/tours/{tour_id}", headers=key).status_code == 204
    assert client.get(f"/api/maps/{map_id}/tours").json()["tours"] == []


def test_quiz_scoring_and_reveal(client, new_map):
    map_id, key = new_map
    client.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["a", "b", "c", "d"]}, headers=key)
    assert client.post(f"/api/maps/{map_id}/quiz").status_code == 403
    round_ = client.post(f"/api/maps/{map_id}/quiz", json={"seed": 4}, headers=key).json()
    assert client.get(round_["image_url"]).content.startswith(b"\x89PNG")
    public = client.get(f"/api/quiz/{round_['id']}").json()
    assert "answer" not in public  # the hidden point stays hidden until the reveal
    classroom = client.app.state.classroom
    answer = classroom.round(round_["id"])
    for player, (dx, dy) in {"near": (0.0, 0.0), "close": (0.1, 0.0), "far": (1.5, 1.5)}.items():
        guess = {"player": player, "x": answer.x + dx, "y": answer.y + dy}
        r = client.post(f"/api/quiz/{round_['id']}/guess", json=guess)
        assert r.status_code == 204
    assert client.post(f"/api/quiz/{round_['id']}/reveal").status_code == 403
    presenter = {"X-Presenter-Key": round_["presenter_key"]}
    result = client.post(f"/api/quiz/{round_['id']}/reveal", headers=presenter).json()
    assert [g["player"] for g in result["ranking"]] == ["near", "close", "far"]
    assert [g["score"] for g in result["ranking"]] == [100, 80, 0]
    assert result["answer"]["seed"] == 4
    late = client.post(f"/api/quiz/{round_['id']}/guess", json={"player": "late", "x": 0, "y": 0})
    assert late.status_code == 403


def test_a_follower_busy_sending_a_state_still_gets_the_end():
    """The presenter ends right after a change, while a follower's stream is still sending that change: the
    follower must still receive "end" (it was lost when the loop re-checked `ended` before the queue)."""
    import asyncio

    async def scenario():
        classroom = Classroom(max_presentation_seconds=60, max_followers=5)
        p, key = classroom.start("mapid123")

        async def connected():
            return False

        stream = classroom.follow(p, connected, heartbeat=5)
        events = [await stream.__anext__()]  # the current state at once
        classroom.update(p.code, key, {"seed": 1})
        events.append(await stream.__anext__())  # the change: the stream is now suspended sending it...
        classroom.end(p.code, key)  # ...when the presentation ends
        events += [e async for e in stream]
        return [e.split("\n", 1)[0] for e in events]

    assert asyncio.run(scenario()) == ["event: state", "event: state", "event: end"]
