"""A map's items: add prompts and images, read the points (JSON or binary), match labels, delete an item,
and an item's thumbnail."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile

from .. import imaging
from ..errors import Rejected
from ..maps.explore import match_labels
from ..maps.service import Upload
from . import schemas
from .deps import DisconnectCheck, EditableMap, ExistingMap, ServiceDep, SettingsDep, StoreDep
from .limits import BoundedJSONRoute
from .responses import BINARY, MAP_VERSION_HEADER, PNG, point, points

router = APIRouter(prefix="/api", tags=["items"], route_class=BoundedJSONRoute)


@router.post("/maps/{map_id}/prompts", status_code=201, response_model=schemas.ItemsOut)
def add_prompts(body: schemas.PromptsIn, map_id: EditableMap, service: ServiceDep, gone: DisconnectCheck):
    return {"items": points(service.add_prompts(map_id, body.prompts, gone))}


@router.post("/maps/{map_id}/images", status_code=201, response_model=schemas.ItemsOut)
def add_images(map_id: EditableMap, service: ServiceDep, gone: DisconnectCheck, files: list[UploadFile] = File(...)):
    limit = service.settings.max_file_bytes
    uploads = []
    for f in files:
        data = f.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"{f.filename}: larger than {limit} bytes")
        uploads.append(Upload(f.filename or "image", data))
    return {"items": points(service.add_images(map_id, uploads, gone))}


@router.get("/maps/{map_id}/points", response_model=schemas.PointsOut)
def list_points(map_id: ExistingMap, store: StoreDep):
    items = store.points(map_id)
    meta = store.item_meta(map_id, [i.id for i in items]) if store.columns(map_id) else None
    return {"points": points(items, meta)}


@router.get("/maps/{map_id}/points.bin", response_class=Response, responses=BINARY)
def points_binary(map_id: ExistingMap, store: StoreDep):
    """Positions and kinds for large maps, 9 bytes a point, little-endian:
    b"LMP1", uint32 n, float32 x[n], float32 y[n], uint8 kind[n] (0 text, 1 image, 2 generated).
    The i-th point is the i-th of `/points`; `/points/{i}` gives its id and label. The `X-Map-Version` header
    names the map version the points belong to (see `/labels/match` and `/selection` by index)."""
    xy, kinds, version = store.positions(map_id)
    n = len(kinds)
    body = (
        b"LMP1"
        + np.uint32(n).tobytes()
        + np.ascontiguousarray(xy[:, 0], "<f4").tobytes()
        + np.ascontiguousarray(xy[:, 1], "<f4").tobytes()
        + kinds.tobytes()
    )
    # The version lets a client that holds only indices ask by index later (label match, selection export).
    return Response(body, media_type="application/octet-stream", headers={MAP_VERSION_HEADER: str(version)})


@router.get("/maps/{map_id}/points/{index}", response_model=schemas.Point)
def point_at(index: int, map_id: ExistingMap, store: StoreDep):
    item = store.item_at(map_id, index)
    return point(item, store.item_meta(map_id, [item.id]) if store.columns(map_id) else None)


@router.get("/maps/{map_id}/labels/match", response_class=Response, responses=BINARY)
def label_match(
    map_id: ExistingMap,
    store: StoreDep,
    settings: SettingsDep,
    q: str = Query(..., min_length=1),
    version: int | None = None,
):
    """Which points' labels contain `q` (case-insensitive), for maps loaded from /points.bin without labels:
    b"LMM1", uint32 n, then n bits, point i in bit i % 8 of byte i // 8 (least significant first).
    With `version` (the X-Map-Version the client holds) a changed map answers 409 instead."""
    if len(q) > settings.max_prompt_chars:
        raise Rejected(f"q must be at most {settings.max_prompt_chars} characters")
    labels, current = store.labels(map_id, version)
    matches = match_labels(labels, q)
    body = b"LMM1" + np.uint32(len(labels)).tobytes() + np.packbits(matches, bitorder="little").tobytes()
    return Response(body, media_type="application/octet-stream", headers={MAP_VERSION_HEADER: str(current)})


@router.delete("/maps/{map_id}/items/{item_id}", status_code=204)
def delete_item(item_id: str, map_id: EditableMap, store: StoreDep):
    store.delete_item(map_id, item_id)
    return Response(status_code=204)


@router.get("/items/{item_id}/thumbnail", response_class=Response, responses=PNG)
def thumbnail(
    item_id: str,
    store: StoreDep,
    settings: SettingsDep,
    on: Annotated[
        Literal["any", "dark-map"],
        Query(description="dark-map: as the map draws it (dark ink with transparency on a light plate)"),
    ] = "any",
):
    item = store.get_item(item_id)  # the id is checked against the pattern and must exist in the database
    if not item.has_thumbnail:
        raise HTTPException(404, f"item {item_id} ({item.kind}) has no thumbnail")
    body = store.read_thumbnail(item.id)
    if on == "dark-map":
        picture = imaging.open_image(body, settings.max_image_pixels, keep_alpha=True)
        shown = imaging.for_dark_map(picture)
        body = body if shown is picture else imaging.sub_filtered_png(shown)
    return Response(body, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})
