"""Dependencies in one place: the objects the lifespan created, the map and edit-key checks, and the client's
disconnect check. Routes take them through the `Annotated` aliases at the bottom."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio
from fastapi import Depends, Header, HTTPException, Request

from ..maps.classroom import Classroom
from ..maps.explore import Explorer
from ..maps.service import MapService
from ..maps.store import InvalidId, NotFound, Store, check_id
from ..maps.terrain import Terrain
from ..maps.tiles import PointTiles
from ..settings import Settings


# Plain lookups are `async`: FastAPI runs sync dependencies in its thread pool, one hand-off each.
async def get_service(request: Request) -> MapService:
    return request.app.state.service


async def get_store(request: Request) -> Store:
    return store_of(request)


async def get_explorer(request: Request) -> Explorer:
    return request.app.state.explorer


async def get_classroom(request: Request) -> Classroom:
    return request.app.state.classroom


async def get_terrain(request: Request) -> Terrain:
    return request.app.state.terrain


async def get_tiles(request: Request) -> PointTiles:
    return request.app.state.tiles


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


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


async def client_gone(request: Request) -> Callable[[], bool]:
    """For sync endpoints (worker threads): ask the event loop whether the client has disconnected."""
    return lambda: anyio.from_thread.run(request.is_disconnected)


ServiceDep = Annotated[MapService, Depends(get_service)]
StoreDep = Annotated[Store, Depends(get_store)]
ExplorerDep = Annotated[Explorer, Depends(get_explorer)]
ClassroomDep = Annotated[Classroom, Depends(get_classroom)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TerrainDep = Annotated[Terrain, Depends(get_terrain)]
TilesDep = Annotated[PointTiles, Depends(get_tiles)]
ExistingMap = Annotated[str, Depends(existing_map_id)]
"""The path's `map_id`, checked to name a map (404 otherwise)."""
EditableMap = Annotated[str, Depends(require_edit_key)]
"""The path's `map_id`, checked to exist and to come with its edit key in X-Edit-Key (403 otherwise)."""
DisconnectCheck = Annotated[Callable[[], bool], Depends(client_gone)]
"""Asks whether the client has gone away: queued model work for it is then skipped."""
