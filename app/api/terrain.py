"""Terrain tiles over HTTP (issue #18): GET /api/maps/{id}/terrain/{z}/{x}/{y}.png. The geometry and the
making of tiles live in app/maps/terrain.py; the tile's key (decode_keys.TerrainTile) is its ETag."""

from __future__ import annotations

import re

from fastapi import APIRouter, Header, Query, Request, Response

from .deps import DisconnectCheck, ExistingMap, TerrainDep
from .limits import BoundedJSONRoute
from .responses import IMMUTABLE, REVALIDATE, etag_matches

router = APIRouter(prefix="/api", tags=["terrain"], route_class=BoundedJSONRoute)
TILE_PNG = {
    200: {"content": {"image/png": {}}, "description": "cells x cells decoded cells of cell_px pixels"},
    304: {"description": "If-None-Match named this tile's ETag"},
}
CLIENT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def client_of(request: Request, named: str | None) -> str:
    """Whose tile budget a request counts against: the page's X-Terrain-Client id, else its address."""
    if named and CLIENT_PATTERN.fullmatch(named):
        return "id:" + named
    return "host:" + (request.client.host if request.client else "unknown")


@router.get("/maps/{map_id}/terrain/{z}/{x}/{y}.png", response_class=Response, responses=TILE_PNG)
def terrain_tile(
    z: int,
    x: int,
    y: int,
    map_id: ExistingMap,
    request: Request,
    terrain: TerrainDep,
    gone: DisconnectCheck,
    seed: int = Query(0, description="the decodes' seed, as in POST /decode"),
    variant: str | None = Query(None, description="decoder variant (GET /api/variants)"),
    lora_scale: float | None = Query(None, description="LoRA strength for a LoRA variant"),
    preview: bool = Query(False, description="the quick version (fewer steps), where the space has one"),
    revision: int | None = Query(
        None,
        description="the terrain revision of GET /api/maps/{id}: when it "
        "is the current one, the answer may be kept for good",
    ),
    if_none_match: str | None = Header(None),
    x_terrain_client: str | None = Header(None, description="the page's id, for its tile budget"),
):
    """Terrain tile (z, x, y): the decode of every cell's centre, exactly as a click there decodes it. A pure
    function of the map's content, projection revision, z/x/y, seed and variant (its ETag is its key)."""
    tile = terrain.tile_key(map_id, z, x, y, seed, variant, lora_scale, preview)
    key = tile.digest()
    headers = {
        "ETag": f'"{key}"',
        "Cache-Control": IMMUTABLE if revision == tile.revision else REVALIDATE,
        "X-Terrain-Revision": str(tile.revision),
    }
    if etag_matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    result = terrain.tile(tile, client_of(request, x_terrain_client), gone)
    return Response(
        result.png,
        media_type="image/png",
        headers={**headers, "X-Decode-Cache": "hit" if result.cached else "miss", "X-Decode-Key": key},
    )
