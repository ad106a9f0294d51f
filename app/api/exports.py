"""Taking data out and back in: a lasso selection as JSON, CSV or zip; a whole map as a bundle, and a new map
from a bundle."""

from __future__ import annotations

import json

from fastapi import APIRouter, File, Response, UploadFile

from ..maps import bundle, export
from . import schemas
from .deps import ExistingMap, ServiceDep, SettingsDep, StoreDep
from .limits import BoundedJSONRoute
from .responses import map_info

router = APIRouter(prefix="/api", tags=["export"], route_class=BoundedJSONRoute)


@router.post(
    "/maps/{map_id}/selection",
    response_class=Response,
    responses={
        200: {
            "model": schemas.SelectionOut,
            "content": {"text/csv": {}, "application/zip": {}},
            "description": "format json: the items and their count; count: the count; csv: "
            "the list; zip: the list and the images' thumbnails",
        }
    },
)
def export_selection(body: schemas.SelectionIn, map_id: ExistingMap, store: StoreDep, settings: SettingsDep):
    """Items picked with the lasso (by id, by index or by the lasso's polygon), as JSON (with their count), CSV, a
    zip of the list and the images' thumbnails, or only the count."""
    export.check_one_way(body.item_ids, body.indices, body.polygon)
    indices, version = body.indices, body.version
    if body.polygon is not None:
        inside, version = export.polygon_indices(
            store, map_id, body.polygon, body.version, settings.max_selection_polygon_vertices
        )
        if body.format == "count":
            return Response(json.dumps({"count": len(inside), "version": version}), media_type="application/json")
        indices = inside.tolist()
    chosen = export.selected_items(store, map_id, body.item_ids, indices, version)
    if body.format in ("json", "count"):
        rows = export.selection_rows(store, map_id, chosen)
        out = {"count": len(rows)} if body.format == "count" else {"count": len(rows), "items": rows}
        return Response(json.dumps(out, ensure_ascii=False), media_type="application/json")
    if body.format == "csv":
        return Response(
            export.selection_csv(store, map_id, chosen),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="selection.csv"'},
        )
    return Response(
        export.selection_zip(store, map_id, chosen),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="selection.zip"'},
    )


@router.get("/maps/{map_id}/bundle", response_class=Response, responses={200: {"content": {"application/zip": {}}}})
def export_bundle(map_id: ExistingMap, store: StoreDep):
    """The whole map as one file (zip of JSON, npy and PNG; no pickle). Edit keys are never included."""
    return Response(
        bundle.export_bundle(store, map_id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="latentmap-{map_id}.zip"'},
    )


@router.post("/bundles", status_code=201, response_model=schemas.MapCreated)
def import_bundle(service: ServiceDep, file: UploadFile = File(...)):
    """A new map from a bundle; refused (and nothing written) if malformed or made with another space."""
    limit = service.settings.max_request_bytes
    data = file.file.read(limit + 1)
    record, key = bundle.import_bundle(service, data)
    return {**map_info(record, service.store, can_edit=True), "edit_key": key}
