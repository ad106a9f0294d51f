"""Classroom routes: live presentations (SSE), guided tours, and the quiz."""

from __future__ import annotations

import io
import random

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field

from ..maps.classroom import Classroom, Forbidden, Gone, check_tour
from ..maps.service import MapService, Rejected
from ..maps.store import Store
from .deps import existing_map_id, get_classroom, get_service, get_store, require_edit_key
from .routes import client_gone

router = APIRouter()


def _guard(fn, *args):
    try:
        return fn(*args)
    except Gone as e:
        raise HTTPException(404, str(e)) from None
    except Forbidden as e:
        raise HTTPException(403, str(e)) from None


# ---------------------------------------------------------------------- presentations
class PresentationIn(BaseModel):
    seconds: int | None = Field(None, description="ends by itself after this (capped by max_presentation_seconds)")


@router.post("/api/maps/{map_id}/presentations", status_code=201)
async def start_presentation(body: PresentationIn | None = None, map_id: str = Depends(require_edit_key),
                             classroom: Classroom = Depends(get_classroom)):
    p, key = classroom.start(map_id, body.seconds if body else None)
    return {"code": p.code, "presenter_key": key, "map_id": map_id, "follow_url": f"/p/{p.code}",
            "qr_url": f"/api/presentations/{p.code}/qr.svg", "expires_at": p.expires_at}


@router.get("/api/presentations/{code}")
async def presentation(code: str, classroom: Classroom = Depends(get_classroom)):
    p = _guard(classroom.get, code)
    return {"code": p.code, "map_id": p.map_id, "followers": len(p.followers), "state": p.state,
            "version": p.version, "expires_at": p.expires_at}


@router.put("/api/presentations/{code}/state")
async def update_presentation(code: str, state: dict, x_presenter_key: str | None = Header(None),
                              classroom: Classroom = Depends(get_classroom)):
    """The presenter's view, decoded point, seed or path; every follower receives it at once."""
    if len(str(state)) > 20_000:
        raise HTTPException(413, "presentation state is limited to 20,000 characters")
    p = _guard(classroom.update, code, x_presenter_key, state)
    return {"version": p.version, "followers": len(p.followers)}


@router.delete("/api/presentations/{code}", status_code=204)
async def end_presentation(code: str, x_presenter_key: str | None = Header(None),
                           classroom: Classroom = Depends(get_classroom)):
    _guard(classroom.end, code, x_presenter_key)
    return Response(status_code=204)


@router.get("/api/presentations/{code}/events")
async def follow_presentation(code: str, request: Request, classroom: Classroom = Depends(get_classroom)):
    """Server-sent events: `state` (the presenter's state, at once and on every change) and `end`."""
    p = _guard(classroom.get, code)
    if len(p.followers) >= classroom.max_followers:
        raise HTTPException(403, f"this presentation already has {classroom.max_followers} followers")
    return StreamingResponse(classroom.follow(p, request.is_disconnected), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/api/presentations/{code}/qr.svg", response_class=Response)
async def presentation_qr(code: str, request: Request, classroom: Classroom = Depends(get_classroom)):
    import qrcode
    import qrcode.image.svg

    _guard(classroom.get, code)
    url = str(request.base_url).rstrip("/") + f"/p/{code}"
    buf = io.BytesIO()
    qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=12).save(buf)
    return Response(buf.getvalue(), media_type="image/svg+xml")


@router.get("/p/{code}", include_in_schema=False)
async def follow_link(code: str, classroom: Classroom = Depends(get_classroom)):
    p = _guard(classroom.get, code)
    return RedirectResponse(f"/m/{p.map_id}?follow={p.code}", status_code=303)


# ---------------------------------------------------------------------- tours
class TourStep(BaseModel):
    caption: str = ""
    view: list[float] | None = Field(None, description="[x, y, zoom]")
    at: list[float] | None = Field(None, description="[x, y] of a decoded point")
    seed: int | None = None
    path: list[list[float]] | None = Field(None, description="[[x, y], ...] a walk to decode")


class TourIn(BaseModel):
    title: str
    steps: list[TourStep]


@router.post("/api/maps/{map_id}/tours", status_code=201)
def save_tour(body: TourIn, map_id: str = Depends(require_edit_key), service: MapService = Depends(get_service)):
    try:
        title, steps = check_tour(body.title, [s.model_dump() for s in body.steps], service.settings)
    except ValueError as e:
        raise Rejected(str(e)) from None
    return service.store.save_tour(map_id, title, steps)


@router.get("/api/maps/{map_id}/tours")
def list_tours(map_id: str = Depends(existing_map_id), store: Store = Depends(get_store)):
    return {"tours": store.tours(map_id)}


@router.get("/api/maps/{map_id}/tours/{tour_id}")
def get_tour(tour_id: str, map_id: str = Depends(existing_map_id), store: Store = Depends(get_store)):
    return store.get_tour(map_id, tour_id)


@router.delete("/api/maps/{map_id}/tours/{tour_id}", status_code=204)
def delete_tour(tour_id: str, map_id: str = Depends(require_edit_key), store: Store = Depends(get_store)):
    store.delete_tour(map_id, tour_id)
    return Response(status_code=204)


# ---------------------------------------------------------------------- quiz
class QuizIn(BaseModel):
    seed: int | None = None


class GuessIn(BaseModel):
    player: str = Field(..., description="a name shown on the scoreboard")
    x: float
    y: float


@router.post("/api/maps/{map_id}/quiz", status_code=201)
def start_quiz(request: Request, body: QuizIn | None = None, map_id: str = Depends(require_edit_key),
               service: MapService = Depends(get_service), classroom: Classroom = Depends(get_classroom)):
    """A hidden point near the map's items is decoded; players guess where it came from."""
    points = service.store.positions(map_id)[0]
    if not len(points):
        raise Rejected("this map has no items yet: add prompts or images first")
    rng = random.Random()
    a, b = points[rng.randrange(len(points))], points[rng.randrange(len(points))]
    t = rng.uniform(0.0, 0.5)  # on the way from one item towards another: not always on an item
    x, y = round(float(a[0] + t * (b[0] - a[0])), 6), round(float(a[1] + t * (b[1] - a[1])), 6)
    seed = body.seed if body and body.seed is not None else rng.randrange(1 << 20)
    decoded = service.decode_at(map_id, x, y, seed, client_gone(request))
    r, key = classroom.new_round(map_id, x, y, seed, decoded.key)
    return {**classroom.result(r), "presenter_key": key}


@router.post("/api/quiz/{round_id}/guess", status_code=204)
def guess(round_id: str, body: GuessIn, classroom: Classroom = Depends(get_classroom)):
    player = body.player.strip()
    if not 1 <= len(player) <= 40:
        raise Rejected("player names are 1 to 40 characters")
    _guard(classroom.guess, round_id, player, body.x, body.y)
    return Response(status_code=204)


@router.get("/api/quiz/{round_id}")
def quiz_round(round_id: str, classroom: Classroom = Depends(get_classroom)):
    return classroom.result(_guard(classroom.round, round_id))


@router.post("/api/quiz/{round_id}/reveal")
def reveal(round_id: str, x_presenter_key: str | None = Header(None), classroom: Classroom = Depends(get_classroom)):
    return _guard(classroom.reveal, round_id, x_presenter_key)
