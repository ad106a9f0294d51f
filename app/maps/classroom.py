"""Classroom mode: live presentations that followers' browsers mirror, and the "where did this come from?"
quiz. Both live in memory: they last one lesson, not across restarts (tours, which are saved, live in the
store).

A presentation fans the presenter's state (view, decoded point, seed, path) out to every follower over
server-sent events. Each follower has a small queue; only the latest state matters, so a slow follower drops
stale states instead of slowing the presenter.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import Forbidden, LatentmapError, NotFound, Rejected
from .decode_keys import check_seed
from .store import hash_key


class Gone(NotFound):
    """The presentation or quiz round does not exist (any more)."""


class Full(LatentmapError, RuntimeError):
    """A classroom cap is reached (live presentations, quiz rounds, players, followers); the message says which."""

    status = 429


@dataclass
class Presentation:
    code: str
    map_id: str
    key_hash: str
    expires_at: float
    state: dict = field(default_factory=dict)
    version: int = 0
    followers: set = field(default_factory=set)  # one asyncio.Queue per connected follower
    ended: bool = False


@dataclass
class QuizRound:
    id: str
    map_id: str
    key_hash: str
    x: float
    y: float
    seed: int
    image_key: str
    guesses: dict = field(default_factory=dict)  # player name → (x, y)
    revealed: bool = False
    created_at: float = field(default_factory=time.time)


def new_code() -> str:
    # short enough to type from a projector, long enough not to be guessed during a lesson (~41 bits)
    return "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(8))


def _check_key(key_hash: str, key: str | None) -> None:
    if not key or not hmac.compare_digest(key_hash, hash_key(key)):
        raise Forbidden("this needs the presenter key in the X-Presenter-Key header")


class Classroom:
    """Caps (from `limits`, a Settings; defaults when not given) keep one client from crowding out every class:
    live presentations per map and on the server, quiz rounds per map (the map's own oldest round goes) and on
    the server (a new one is refused), players per round, followers per presentation (counted as they join,
    so concurrent joins cannot pass it together). `check_point(map_id, x, y)` refuses guesses far off the map."""

    def __init__(
        self,
        max_presentation_seconds: int,
        max_followers: int,
        limits=None,
        check_point: Callable[[str, float, float], None] | None = None,
    ):
        from ..settings import Settings

        self.max_seconds, self.max_followers = max_presentation_seconds, max_followers
        self.limits = limits or Settings()
        self.check_point = check_point
        self.presentations: dict[str, Presentation] = {}
        self.rounds: dict[str, QuizRound] = {}

    # ------------------------------------------------------------------ presentations
    def start(self, map_id: str, seconds: int | None = None) -> tuple[Presentation, str]:
        self._expire()
        live = sum(1 for p in self.presentations.values() if p.map_id == map_id)
        if live >= self.limits.max_presentations_per_map:
            raise Full(f"this map already has {live} live presentations; end one first")
        if len(self.presentations) >= self.limits.max_presentations:
            raise Full("this server runs as many presentations as it allows; try again later")
        key = secrets.token_urlsafe(24)
        code = new_code()
        duration = min(seconds or self.max_seconds, self.max_seconds)
        p = Presentation(code=code, map_id=map_id, key_hash=hash_key(key), expires_at=time.time() + duration)
        self.presentations[code] = p
        return p, key

    def get(self, code: str) -> Presentation:
        self._expire()
        p = self.presentations.get(code)
        if p is None:
            raise Gone(f"presentation {code} is not running (it ended or never existed)")
        return p

    def update(self, code: str, key: str | None, state: dict) -> Presentation:
        p = self.get(code)
        _check_key(p.key_hash, key)
        p.state, p.version = state, p.version + 1
        event = self._event("state", p)
        for q in list(p.followers):
            _offer(q, event)
        return p

    def end(self, code: str, key: str | None) -> None:
        p = self.get(code)
        _check_key(p.key_hash, key)
        self._close(p)

    def forget_map(self, map_id: str) -> None:
        """A deleted map: its presentations end (followers get "end") and its quiz rounds are gone."""
        for p in [p for p in self.presentations.values() if p.map_id == map_id]:
            self._close(p)
        for round_id in [r.id for r in self.rounds.values() if r.map_id == map_id]:
            self.rounds.pop(round_id)

    def _close(self, p: Presentation) -> None:
        p.ended = True
        self.presentations.pop(p.code, None)
        for q in list(p.followers):
            _offer(q, self._event("end", p))

    def _expire(self) -> None:
        now = time.time()
        for p in [p for p in self.presentations.values() if p.expires_at <= now]:
            self._close(p)

    @staticmethod
    def _event(kind: str, p: Presentation) -> str:
        data = {"version": p.version, "state": p.state, "followers": len(p.followers), "sent_at": time.time()}
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n"

    def join(self, p: Presentation) -> asyncio.Queue:
        """A follower's place, taken at once (no await between the count and the add): Full beyond the cap.
        Give it back with `leave` (follow does, when its stream ends)."""
        if len(p.followers) >= self.max_followers:
            raise Forbidden(f"this presentation already has {self.max_followers} followers")
        queue: asyncio.Queue = asyncio.Queue(maxsize=4)
        p.followers.add(queue)
        return queue

    @staticmethod
    def leave(p: Presentation, queue: asyncio.Queue) -> None:
        p.followers.discard(queue)

    async def follow(
        self, p: Presentation, is_disconnected, heartbeat: float = 15.0, queue: asyncio.Queue | None = None
    ):
        """Server-sent events for one follower: the current state at once, then every change. `queue` is the
        place `join` reserved (joined here when not given)."""
        if queue is None:
            queue = self.join(p)
        try:
            yield self._event("state", p)
            while True:
                if p.ended and queue.empty():  # ended, and its "end" is not waiting in the queue: say it now
                    yield self._event("end", p)
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=heartbeat)
                except TimeoutError:
                    if await is_disconnected() or time.time() >= p.expires_at:
                        self._expire()
                        if p.ended:
                            yield self._event("end", p)
                        break
                    yield ": keep-alive\n\n"
                    continue
                yield event
                if event.startswith("event: end"):
                    break
        finally:
            self.leave(p, queue)

    # ------------------------------------------------------------------ quiz
    @staticmethod
    def pick_target(
        points: np.ndarray, seed: int | None = None, rng: random.Random | None = None
    ) -> tuple[float, float, int]:
        """Where a round's hidden picture comes from: part way from one item towards another (so not always on
        an item), and the seed to decode it with (`seed` if given)."""
        if not len(points):
            raise Rejected("this map has no items yet: add prompts or images first")
        rng = rng or random.Random()
        a, b = points[rng.randrange(len(points))], points[rng.randrange(len(points))]
        t = rng.uniform(0.0, 0.5)
        x, y = round(float(a[0] + t * (b[0] - a[0])), 6), round(float(a[1] + t * (b[1] - a[1])), 6)
        return x, y, seed if seed is not None else rng.randrange(1 << 20)

    def new_round(self, map_id: str, x: float, y: float, seed: int, image_key: str) -> tuple[QuizRound, str]:
        self._expire_rounds()
        mine = [r.id for r in self.rounds.values() if r.map_id == map_id]
        if len(mine) >= self.limits.max_quiz_rounds_per_map:  # this map's own oldest rounds make room
            for old in mine[: len(mine) - self.limits.max_quiz_rounds_per_map + 1]:
                self.rounds.pop(old)
        elif len(self.rounds) >= self.limits.max_quiz_rounds:  # never another class's live round
            raise Full("this server holds as many live quiz rounds as it allows; try again later")
        key = secrets.token_urlsafe(24)
        r = QuizRound(id=new_code(), map_id=map_id, key_hash=hash_key(key), x=x, y=y, seed=seed, image_key=image_key)
        self.rounds[r.id] = r
        return r, key

    def _expire_rounds(self) -> None:
        cutoff = time.time() - self.limits.max_quiz_round_seconds
        for old in [r.id for r in self.rounds.values() if r.created_at <= cutoff]:
            self.rounds.pop(old)

    def round(self, round_id: str) -> QuizRound:
        r = self.rounds.get(round_id)
        if r is None or r.created_at <= time.time() - self.limits.max_quiz_round_seconds:
            raise Gone(f"quiz round {round_id} does not exist")
        return r

    def guess(self, round_id: str, player: str, x: float, y: float) -> None:
        player = player.strip()
        if not 1 <= len(player) <= 40:
            raise Rejected("player names are 1 to 40 characters")
        r = self.round(round_id)
        if r.revealed:
            raise Forbidden("this round has been revealed; guesses are closed")
        if not (isinstance(x, (int, float)) and isinstance(y, (int, float)) and np.isfinite(x) and np.isfinite(y)):
            raise Rejected("x and y must be finite numbers")
        if self.check_point is not None:
            self.check_point(r.map_id, x, y)
        if player not in r.guesses and len(r.guesses) >= self.limits.max_guesses_per_round:
            raise Full(f"this round already has {self.limits.max_guesses_per_round} players")
        r.guesses[player] = (float(x), float(y))

    def reveal(self, round_id: str, key: str | None) -> QuizRound:
        r = self.round(round_id)
        _check_key(r.key_hash, key)
        r.revealed = True
        return r

    @staticmethod
    def score(distance: float) -> int:
        """100 points on the spot, 0 from a quarter of the map's width (the map spans [-1, 1])."""
        return int(round(100 * max(0.0, 1.0 - distance / 0.5)))

    def result(self, r: QuizRound) -> dict:
        """What players may see of a round (the hidden point and the ranking once revealed). The picture is
        named by its decode key, `image_key`."""
        out = {
            "id": r.id,
            "map_id": r.map_id,
            "image_key": r.image_key,
            "revealed": r.revealed,
            "players": len(r.guesses),
        }
        if r.revealed:
            ranking = []
            for name, (gx, gy) in r.guesses.items():
                d = float(np.hypot(gx - r.x, gy - r.y))
                ranking.append({"player": name, "x": gx, "y": gy, "distance": round(d, 4), "score": self.score(d)})
            ranking.sort(key=lambda g: (-g["score"], g["distance"], g["player"]))
            out.update({"answer": {"x": r.x, "y": r.y, "seed": r.seed}, "ranking": ranking})
        return out


def check_tour(title: str, steps: list, settings) -> tuple[str, list[dict]]:
    """A tour's title and steps, validated (from the API or a bundle). Raises Rejected with the reason."""
    title = title.strip() if isinstance(title, str) else ""
    if not title or len(title) > settings.max_title_chars:
        raise Rejected(f"a tour needs a title of 1 to {settings.max_title_chars} characters")
    if not isinstance(steps, list) or not 1 <= len(steps) <= settings.max_tour_steps:
        raise Rejected(f"a tour has 1 to {settings.max_tour_steps} steps")
    clean = []
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            raise Rejected(f"step {i}: must be an object")
        caption = step.get("caption") or ""
        if not isinstance(caption, str) or len(caption) > settings.max_caption_chars:
            raise Rejected(f"step {i}: captions are text of at most {settings.max_caption_chars} characters")
        bound = settings.max_abs_coordinate
        out = {
            "caption": caption,
            "view": _numbers(step.get("view"), 3, f"step {i}: view is [x, y, zoom]", bound),
            "at": _numbers(step.get("at"), 2, f"step {i}: at is [x, y]", bound),
            "seed": None,
            "path": None,
            "terrain": None,
        }
        if step.get("seed") is not None:
            try:
                out["seed"] = check_seed(step["seed"], settings.max_seed)
            except Rejected as e:
                raise Rejected(f"step {i}: {e}") from None
        if step.get("path") is not None:
            path = step["path"]
            if not isinstance(path, list) or not 2 <= len(path) <= settings.max_path_points:
                raise Rejected(f"step {i}: path is 2 to {settings.max_path_points} [x, y] points")
            out["path"] = [_numbers(p, 2, f"step {i}: path points are [x, y]", bound) for p in path]
        if step.get("terrain") is not None:
            out["terrain"] = _terrain(step["terrain"], f"step {i}: terrain")
        clean.append(out)
    return title, clean


TERRAIN_OPACITY = (0.1, 1.0)  # the page's slider: 10 % to 100 %
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")  # spaces/variants.NAME_RE (that module loads torch)


def _terrain(value, where: str) -> dict:
    """A tour step's terrain layer: {"on": bool, "opacity": 0.1-1 or None, "variant": a variant name or None}."""
    if not isinstance(value, dict) or not isinstance(value.get("on"), bool):
        raise Rejected(f"{where} is {{on: true or false, opacity, variant}}")
    opacity = value.get("opacity")
    if opacity is not None:
        low, high = TERRAIN_OPACITY
        if isinstance(opacity, bool) or not isinstance(opacity, (int, float)) or not low <= opacity <= high:
            raise Rejected(f"{where}: opacity is a number from {low:g} to {high:g}")
        opacity = round(float(opacity), 2)
    variant = value.get("variant")
    if variant in ("", "base"):
        variant = None
    if variant is not None and not (isinstance(variant, str) and VARIANT_NAME.fullmatch(variant)):
        raise Rejected(f"{where}: variant is a decoder variant's name (GET /api/variants)")
    return {"on": value["on"], "opacity": opacity, "variant": variant}


def _numbers(value, n: int, message: str, bound: float) -> list[float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != n
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and abs(v) <= bound
            for v in value
        )
    ):
        raise Rejected(f"{message} (finite numbers within ±{bound:g})")
    return [float(v) for v in value]


def _offer(queue: asyncio.Queue, event: str) -> None:
    """Put without waiting; a full queue drops its oldest (stale) state first."""
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        queue.put_nowait(event)
