"""Dependencies in one place: the objects the lifespan created, and the edit-key check."""

from __future__ import annotations

from fastapi import Header, HTTPException, Request

from ..maps.service import MapService
from ..maps.store import InvalidId, NotFound, Store, check_id


def get_service(request: Request) -> MapService:
    return request.app.state.service


def get_store(request: Request) -> Store:
    return request.app.state.service.store


def existing_map_id(map_id: str, request: Request) -> str:
    """Path parameter → a map that exists (404 otherwise, 404 too for ids that cannot exist)."""
    try:
        check_id(map_id, "map id")
        get_store(request).get_map(map_id)
    except (InvalidId, NotFound):
        raise HTTPException(404, f"map {map_id!r} not found") from None
    return map_id


def require_edit_key(map_id: str, request: Request, x_edit_key: str | None = Header(None)) -> str:
    existing_map_id(map_id, request)
    if not x_edit_key:
        raise HTTPException(403, "this change needs the map's edit key in the X-Edit-Key header")
    if not get_store(request).check_edit_key(map_id, x_edit_key):
        raise HTTPException(403, "the edit key is not valid for this map")
    return map_id
