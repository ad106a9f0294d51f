"""Maps: create, list, read, refit, delete."""

from __future__ import annotations

from fastapi import APIRouter, Header, HTTPException, Response

from . import schemas
from .deps import ClassroomDep, EditableMap, ExistingMap, ExplorerDep, ServiceDep, SettingsDep, StoreDep, TerrainDep
from .limits import BoundedJSONRoute
from .responses import map_info

router = APIRouter(prefix="/api", tags=["maps"], route_class=BoundedJSONRoute)


@router.post("/maps", status_code=201, response_model=schemas.MapCreated)
def create_map(body: schemas.MapCreate, service: ServiceDep):
    record, key = service.create_map(body.title)
    return {**map_info(record, service.store, can_edit=True), "edit_key": key}


@router.get("/maps", response_model=list[schemas.MapInfo])
def list_maps(store: StoreDep, settings: SettingsDep):
    if not settings.list_maps:
        raise HTTPException(403, "this server does not list its maps (LATENTMAP_LIST_MAPS=0): open a map by its link")
    return [map_info(r, store) for r in store.list_maps()]


@router.get("/maps/{map_id}", response_model=schemas.MapInfo)
def get_map(map_id: ExistingMap, store: StoreDep, terrain: TerrainDep, x_edit_key: str | None = Header(None)):
    return map_info(store.get_map(map_id), store, can_edit=store.check_edit_key(map_id, x_edit_key), terrain=terrain)


@router.post("/maps/{map_id}/refit", response_model=schemas.MapInfo)
def refit(map_id: EditableMap, service: ServiceDep, terrain: TerrainDep):
    return map_info(service.refit(map_id), service.store, can_edit=True, terrain=terrain)


@router.delete("/maps/{map_id}", status_code=204, response_class=Response)
def delete_map(map_id: EditableMap, service: ServiceDep, explorer: ExplorerDep, classroom: ClassroomDep):
    """The map, its items, thumbnails, tours, columns and cached decodes; its live presentations end and its
    quiz rounds go. Needs the edit key. Cannot be undone (export a bundle first to keep a copy)."""
    service.delete_map(map_id)
    explorer.forget(map_id)
    classroom.forget_map(map_id)  # point tiles of the map age out of their bounded cache (every route 404s now)
    return Response(status_code=204)
