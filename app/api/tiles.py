"""Point tiles and thumbnail atlases (app/maps/tiles.py): the map page asks only for the tiles on screen.

A tile URL that names the map version (`?v=`) is immutable: `Cache-Control: immutable` for a year, so a proxy or
CDN can serve a popular map. Without `v` the current version is served and must be revalidated. Either way the
`ETag` names version, tile and tile settings, and `If-None-Match` answers 304.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from ..maps.tiles import TileIndex
from . import schemas
from .deps import ExistingMap, TilesDep
from .limits import BoundedJSONRoute
from .responses import IMMUTABLE, REVALIDATE, etag_matches

router = APIRouter(prefix="/api", tags=["tiles"], route_class=BoundedJSONRoute)

Version = Annotated[
    int | None,
    Query(description="the map version the tile belongs to (from GET .../tiles); 409 when the map has changed since"),
]
IfNoneMatch = Annotated[str | None, Header()]


def tile_response(
    index: TileIndex,
    tile: tuple[int, int, int],
    what: str,
    pinned: bool,
    if_none_match: str | None,
    media_type: str,
    make: Callable[[], bytes],
) -> Response:
    """A tile's bytes (made only when the client does not hold them), kept for good when its URL names the version."""
    headers = {"ETag": index.etag(*tile, what), "Cache-Control": IMMUTABLE if pinned else REVALIDATE}
    if etag_matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(make(), media_type=media_type, headers=headers)


@router.get("/maps/{map_id}/tiles", response_model=schemas.TileInfo)
def tile_info(map_id: ExistingMap, tiles: TilesDep):
    """The square the point tiles cut, how deep they go and what each holds, for the current map version."""
    index = tiles.index(map_id)
    s = tiles.settings
    return {
        "version": index.version,
        "count": index.count,
        "origin": list(index.origin),
        "size": index.size,
        "max_zoom": index.max_zoom,
        "tile_points": s.tile_points,
        "thumbs_side": s.tile_thumbs_side,
        "thumb_px": s.tile_thumb_px,
        "pictures": int(index.has_thumb.sum()),
    }


@router.get(
    "/maps/{map_id}/tiles/{z}/{x}/{y}.bin",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 304: {"description": "Not modified"}},
)
def point_tile(
    z: int, x: int, y: int, map_id: ExistingMap, tiles: TilesDep, v: Version = None, if_none_match: IfNoneMatch = None
):
    """At most `tile_points` points of tile (z, x, y) (y counted from the top), chosen so every cluster keeps its
    shape, and the items whose pictures its atlas holds. Little-endian: b"LMT1", uint32 n, uint32 m,
    uint32 index[n] (points order), float32 x[n], float32 y[n], uint32 thumb_index[m], float32 thumb_x[m],
    float32 thumb_y[m], uint8 kind[n]. Picture k is atlas slot k: column k % thumbs_side, row k // thumbs_side."""
    index = tiles.index(map_id, v)
    return tile_response(
        index,
        (z, x, y),
        "points",
        v is not None,
        if_none_match,
        "application/octet-stream",
        lambda: tiles.points_tile(index, z, x, y),
    )


@router.get(
    "/maps/{map_id}/tiles/{z}/{x}/{y}.webp",
    response_class=Response,
    responses={200: {"content": {"image/webp": {}}}, 304: {"description": "Not modified"}},
)
def atlas_tile(
    z: int, x: int, y: int, map_id: ExistingMap, tiles: TilesDep, v: Version = None, if_none_match: IfNoneMatch = None
):
    """The pictures of tile (z, x, y) in one image: `thumbs_side` columns of `thumb_px` square cells, each picture
    centred in its cell with its aspect kept. 404 when the tile has none (its .bin says m = 0)."""
    index = tiles.index(map_id, v)
    return tile_response(
        index, (z, x, y), "atlas", v is not None, if_none_match, "image/webp", lambda: tiles.atlas(index, z, x, y)
    )
