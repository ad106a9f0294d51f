"""Live presentations: the presenter's view mirrored to followers over server-sent events, a QR code to join,
and the short /p/{code} link."""

from __future__ import annotations

import io
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.background import BackgroundTask

from . import schemas
from .deps import ClassroomDep, EditableMap
from .limits import BoundedJSONRoute

router = APIRouter(tags=["classroom"], route_class=BoundedJSONRoute)


@router.post("/api/maps/{map_id}/presentations", status_code=201, response_model=schemas.PresentationStarted)
async def start_presentation(map_id: EditableMap, classroom: ClassroomDep, body: schemas.PresentationIn | None = None):
    p, key = classroom.start(map_id, body.seconds if body else None)
    return {
        "code": p.code,
        "presenter_key": key,
        "map_id": map_id,
        "follow_url": f"/p/{p.code}",
        "qr_url": f"/api/presentations/{p.code}/qr.svg",
        "expires_at": p.expires_at,
    }


@router.get("/api/presentations/{code}", response_model=schemas.PresentationOut)
async def presentation(code: str, classroom: ClassroomDep):
    p = classroom.get(code)
    return {
        "code": p.code,
        "map_id": p.map_id,
        "followers": len(p.followers),
        "state": p.state,
        "version": p.version,
        "expires_at": p.expires_at,
    }


@router.put("/api/presentations/{code}/state", response_model=schemas.PresentationUpdated)
async def update_presentation(
    code: str, state: dict[str, Any], classroom: ClassroomDep, x_presenter_key: str | None = Header(None)
):
    """The presenter's view, decoded point, seed or path; every follower receives it at once."""
    if len(str(state)) > 20_000:
        raise HTTPException(413, "presentation state is limited to 20,000 characters")
    p = classroom.update(code, x_presenter_key, state)
    return {"version": p.version, "followers": len(p.followers)}


@router.delete("/api/presentations/{code}", status_code=204)
async def end_presentation(code: str, classroom: ClassroomDep, x_presenter_key: str | None = Header(None)):
    classroom.end(code, x_presenter_key)
    return Response(status_code=204)


@router.get(
    "/api/presentations/{code}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def follow_presentation(code: str, request: Request, classroom: ClassroomDep):
    """Server-sent events: `state` (the presenter's state, at once and on every change) and `end`."""
    p = classroom.get(code)
    queue = classroom.join(p)  # counted now (403 beyond max_followers): concurrent joins cannot all pass the cap
    # The place is given back when the stream ends, or after it when it never started (the client left first).
    return StreamingResponse(
        classroom.follow(p, request.is_disconnected, queue=queue),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(classroom.leave, p, queue),
    )


@router.get(
    "/api/presentations/{code}/qr.svg", response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}}
)
async def presentation_qr(code: str, request: Request, classroom: ClassroomDep):
    import qrcode
    import qrcode.image.svg

    classroom.get(code)
    url = str(request.base_url).rstrip("/") + f"/p/{code}"
    buf = io.BytesIO()
    qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=12).save(buf)
    return Response(buf.getvalue(), media_type="image/svg+xml")


@router.get("/p/{code}", include_in_schema=False)
async def follow_link(code: str, classroom: ClassroomDep):
    p = classroom.get(code)
    return RedirectResponse(f"/m/{p.map_id}?follow={p.code}", status_code=303)
