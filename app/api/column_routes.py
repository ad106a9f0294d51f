"""Metadata columns of a map's items (app/maps/columns.py): what they hold, and one column for all points."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from ..maps import columns
from ..maps.store import Store
from . import schemas
from .deps import existing_map_id, get_store

router = APIRouter(prefix="/api")

MapId = Annotated[str, Depends(existing_map_id)]
StoreDep = Annotated[Store, Depends(get_store)]


@router.get("/maps/{map_id}/columns", response_model=schemas.ColumnsOut)
def list_columns(request: Request, map_id: MapId, store: StoreDep):
    """The map's metadata columns: type, how many points have a value; categories with counts; numbers' range."""
    return {"columns": columns.describe(store, map_id, request.app.state.settings.max_category_values)}


@router.get(
    "/maps/{map_id}/columns/values.bin",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def column_values(
    request: Request,
    map_id: MapId,
    store: StoreDep,
    name: Annotated[str, Query(description="the column")],
    contains: Annotated[
        str | None, Query(max_length=300, description="text columns: which points' value contains this")
    ] = None,
    version: Annotated[
        int | None, Query(description="the map version the client holds (409 when it has changed)")
    ] = None,
):
    """One column for all points, in points order (the order of /points.bin); the format is in
    app/maps/columns.py `values_payload`. `X-Map-Version` names the version the values belong to."""
    body, current = columns.values_payload(
        store, map_id, name, request.app.state.settings.max_category_values, contains, version
    )
    return Response(body, media_type="application/octet-stream", headers={"X-Map-Version": str(current)})
