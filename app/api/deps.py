"""Dependencies in one place: the objects the lifespan created, and the edit-key check."""

from __future__ import annotations

from fastapi import Header, HTTPException, Request

from ..maps.classroom import Classroom
from ..maps.explore import Explorer
from ..maps.service import MapService
from ..maps.store import InvalidId, NotFound, Store, check_id


# Plain lookups are `async`: FastAPI runs sync dependencies in its thread pool, one hand-off each.
async def get_service(request: Request) -> MapService:
    return request.app.state.service


async def get_store(request: Request) -> Store:
    return store_of(request)


async def get_explorer(request: Request) -> Explorer:
    return request.app.state.explorer


async def get_classroom(request: Request) -> Classroom:
    return request.app.state.classroom


def store_of(request: Request) -> Store:
    return request.app.state.service.store


def existing_map_id(map_id: str, request: Request) -> str:
    """Path parameter → a map that exists (404 otherwise, 404 too for ids that cannot exist)."""
    try:
        check_id(map_id, "map id")
        store_of(request).get_map(map_id)
    except (InvalidId, NotFound):
        raise HTTPException(404, f"map {map_id!r} not found") from None
    return map_id


def require_edit_key(map_id: str, request: Request, x_edit_key: str | None = Header(None)) -> str:
    existing_map_id(map_id, request)
    if not x_edit_key:
        raise HTTPException(403, "this change needs the map's edit key in the X-Edit-Key header")
    if not store_of(request).check_edit_key(map_id, x_edit_key):
        raise HTTPException(403, "the edit key is not valid for this map")
    return map_id
