"""Metadata columns of a map's items (app/maps/columns.py): what they hold, and one column for all points."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from ..maps import columns
from . import schemas
from .deps import ExistingMap, SettingsDep, StoreDep
from .limits import BoundedJSONRoute
from .responses import BINARY, MAP_VERSION_HEADER

router = APIRouter(prefix="/api", tags=["columns"], route_class=BoundedJSONRoute)


@router.get("/maps/{map_id}/columns", response_model=schemas.ColumnsOut)
def list_columns(map_id: ExistingMap, store: StoreDep, settings: SettingsDep):
    """The map's metadata columns: type, how many points have a value; categories with counts; numbers' range."""
    return {"columns": columns.describe(store, map_id, settings.max_category_values)}


@router.get("/maps/{map_id}/columns/values.bin", response_class=Response, responses=BINARY)
def column_values(
    map_id: ExistingMap,
    store: StoreDep,
    settings: SettingsDep,
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
    body, current = columns.values_payload(store, map_id, name, settings.max_category_values, contains, version)
    return Response(body, media_type="application/octet-stream", headers={MAP_VERSION_HEADER: str(current)})
