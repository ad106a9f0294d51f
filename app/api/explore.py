"""Exploring a map: walks between points (and their strips/animations), neighbours, prompt search, clusters."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from ..maps.store import check_key
from . import responses, schemas
from .deps import DisconnectCheck, ExistingMap, ExplorerDep, StoreDep
from .limits import BoundedJSONRoute
from .responses import decode_url

router = APIRouter(prefix="/api", tags=["explore"], route_class=BoundedJSONRoute)


@router.post("/maps/{map_id}/path", response_model=schemas.PathOut)
def path(body: schemas.PathIn, map_id: ExistingMap, explorer: ExplorerDep, gone: DisconnectCheck):
    """`steps` images along a drawn polyline, decoded (and cached) one by one."""
    result = explorer.path(map_id, body.points, body.steps, body.seed, gone)
    base = f"/api/paths/{result.key}"
    return {
        "key": result.key,
        "frames": [{"url": decode_url(k), "x": x, "y": y} for k, (x, y) in zip(result.frame_keys, result.points)],
        "strip_url": base + ".png",
        "gif_url": base + ".gif",
        "webp_url": base + ".webp",
    }


@router.get(
    "/paths/{key}.{fmt}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/gif": {}, "image/webp": {}}}},
)
def path_media(key: str, fmt: Literal["png", "gif", "webp"], explorer: ExplorerDep):
    data = explorer.path_media(check_key(key), fmt)
    return Response(
        data, media_type=f"image/{fmt}", headers={"Content-Disposition": f'attachment; filename="latentmap-path.{fmt}"'}
    )


@router.get("/maps/{map_id}/neighbors", response_model=schemas.NeighborsOut)
def neighbors(
    map_id: ExistingMap,
    explorer: ExplorerDep,
    store: StoreDep,
    x: float | None = None,
    y: float | None = None,
    item: str | None = Query(None, description="an item id instead of x, y"),
    k: int = 10,
):
    found = explorer.neighbors(map_id, k, x=x, y=y, item_id=item)
    return {"neighbors": responses.neighbors(store.get_arrays(map_id), found)}


@router.get("/maps/{map_id}/search", response_model=schemas.SearchOut)
def search(
    q: str,
    map_id: ExistingMap,
    explorer: ExplorerDep,
    store: StoreDep,
    gone: DisconnectCheck,
    k: int = 10,
    similarity: bool = Query(True, description="false: leave `similarity` empty (a 1M-item map's is ~20 MB of JSON)"),
):
    """Where a prompt would land (it is not stored), its nearest items, and every point's similarity to it
    (in points order: colour the map by it)."""
    found = explorer.search(map_id, q, k, gone)
    if not similarity:
        found = {**found, "similarity": []}
    return {**found, "neighbors": responses.neighbors(store.get_arrays(map_id), found["neighbors"])}


@router.get("/maps/{map_id}/clusters", response_model=schemas.ClustersOut)
def clusters(map_id: ExistingMap, explorer: ExplorerDep, gone: DisconnectCheck):
    """Clusters of the 2D map with short labels; `assignments` is in points order (-1: no cluster)."""
    return explorer.clusters(map_id, gone)
