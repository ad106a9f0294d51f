"""HTTP API routes. HTTP only: parse, check access, call the map service, shape the response."""

from __future__ import annotations

import anyio
import numpy as np
from fastapi import APIRouter, Depends, File, Header, HTTPException, Request, Response, UploadFile

from ..maps.service import MapService, Upload
from ..maps.store import MapRecord, Store
from ..spaces.registry import describe_spaces
from . import schemas
from .deps import existing_map_id, get_service, get_store, require_edit_key

router = APIRouter(prefix="/api")


def client_gone(request: Request):
    """For sync endpoints (worker threads): ask the event loop whether the client has disconnected."""
    return lambda: anyio.from_thread.run(request.is_disconnected)


def map_info(record: MapRecord, store: Store, can_edit: bool = False) -> dict:
    bounds = store.bounds(record.id) if record.count else None
    proj = record.projection
    fitted = proj.get("fitted_count", 0)
    return {"id": record.id, "title": record.title, "space": record.space, "count": record.count,
            "created_at": record.created_at, "bounds": bounds, "can_edit": can_edit,
            "projection": {"method": proj.get("method", "none"), "revision": proj.get("revision", 0),
                           "fitted_count": fitted},
            "refit_recommended": record.count >= 2 * max(fitted, 10)}


MAP_VERSION_HEADER = "X-Map-Version"


def _points(items, meta: dict | None = None) -> list[dict]:
    return [_point(i, meta) for i in items]


def _point(item, meta: dict | None = None) -> dict:
    out = {"id": item.id, "kind": item.kind, "label": item.label, "x": item.x, "y": item.y,
           "thumbnail": item.has_thumbnail, "pending": item.pending_image}
    if meta is not None:  # the map's metadata columns (app/ingest): only those the item has a value in
        out["columns"] = meta.get(item.id, {})
    return out


@router.get("/health", response_model=schemas.Health)
def health(service: MapService = Depends(get_service)):
    return {"status": "ok", "space": service.space.name, "device": service.space.device,
            "preview": bool(service.space.info.get("preview"))}


@router.get("/spaces")
def spaces(request: Request, service: MapService = Depends(get_service)) -> list[dict]:
    return describe_spaces(request.app.state.settings, service.space)


@router.post("/maps", status_code=201, response_model=schemas.MapCreated)
def create_map(body: schemas.MapCreate, service: MapService = Depends(get_service)):
    record, key = service.create_map(body.title)
    return {**map_info(record, service.store, can_edit=True), "edit_key": key}


@router.get("/maps", response_model=list[schemas.MapInfo])
def list_maps(request: Request, store: Store = Depends(get_store)):
    if not request.app.state.settings.list_maps:
        raise HTTPException(403, "this server does not list its maps (LATENTMAP_LIST_MAPS=0): open a map by its link")
    return [map_info(r, store) for r in store.list_maps()]


@router.get("/maps/{map_id}", response_model=schemas.MapInfo)
def get_map(map_id: str = Depends(existing_map_id), store: Store = Depends(get_store),
            x_edit_key: str | None = Header(None)):
    return map_info(store.get_map(map_id), store, can_edit=store.check_edit_key(map_id, x_edit_key))


@router.post("/maps/{map_id}/prompts", status_code=201, response_model=schemas.ItemsOut)
def add_prompts(body: schemas.PromptsIn, request: Request, map_id: str = Depends(require_edit_key),
                service: MapService = Depends(get_service)):
    return {"items": _points(service.add_prompts(map_id, body.prompts, client_gone(request)))}


@router.post("/maps/{map_id}/images", status_code=201, response_model=schemas.ItemsOut)
def add_images(request: Request, files: list[UploadFile] = File(...), map_id: str = Depends(require_edit_key),
               service: MapService = Depends(get_service)):
    limit = service.settings.max_file_bytes
    uploads = []
    for f in files:
        data = f.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"{f.filename}: larger than {limit} bytes")
        uploads.append(Upload(f.filename or "image", data))
    return {"items": _points(service.add_images(map_id, uploads, client_gone(request)))}


@router.get("/maps/{map_id}/points", response_model=schemas.PointsOut)
def points(map_id: str = Depends(existing_map_id), store: Store = Depends(get_store)):
    items = store.points(map_id)
    meta = store.item_meta(map_id, [i.id for i in items]) if store.columns(map_id) else None
    return {"points": _points(items, meta)}


@router.get("/maps/{map_id}/points.bin", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def points_binary(map_id: str = Depends(existing_map_id), store: Store = Depends(get_store)):
    """Positions and kinds for large maps, 9 bytes a point, little-endian:
    b"LMP1", uint32 n, float32 x[n], float32 y[n], uint8 kind[n] (0 text, 1 image, 2 generated).
    The i-th point is the i-th of `/points`; `/points/{i}` gives its id and label. The `X-Map-Version` header
    names the map version the points belong to (see `/labels/match` and `/selection` by index)."""
    xy, kinds, version = store.positions(map_id)
    n = len(kinds)
    body = b"LMP1" + np.uint32(n).tobytes() + np.ascontiguousarray(xy[:, 0], "<f4").tobytes() + \
        np.ascontiguousarray(xy[:, 1], "<f4").tobytes() + kinds.tobytes()
    # The version lets a client that holds only indices ask by index later (label match, selection export).
    return Response(body, media_type="application/octet-stream", headers={MAP_VERSION_HEADER: str(version)})


@router.get("/maps/{map_id}/points/{index}", response_model=schemas.Point)
def point_at(index: int, map_id: str = Depends(existing_map_id), store: Store = Depends(get_store)):
    item = store.item_at(map_id, index)
    return _point(item, store.item_meta(map_id, [item.id]) if store.columns(map_id) else None)


@router.delete("/maps/{map_id}/items/{item_id}", status_code=204)
def delete_item(item_id: str, map_id: str = Depends(require_edit_key), store: Store = Depends(get_store)):
    store.delete_item(map_id, item_id)
    return Response(status_code=204)


@router.post("/maps/{map_id}/refit", response_model=schemas.MapInfo)
def refit(map_id: str = Depends(require_edit_key), service: MapService = Depends(get_service)):
    return map_info(service.refit(map_id), service.store, can_edit=True)


@router.post("/maps/{map_id}/decode", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "The decoded image"}})
def decode(body: schemas.DecodeIn, request: Request, map_id: str = Depends(existing_map_id),
           service: MapService = Depends(get_service)):
    result = service.decode_at(map_id, body.x, body.y, body.seed, client_gone(request), variant=body.variant,
                               lora_scale=body.lora_scale, preview=body.preview)
    return _decoded_png(result, {"X-Decode-Preview": "1" if body.preview else "0"})


def _decoded_png(result, extra: dict | None = None) -> Response:
    """A decoded picture: immutable (its key names everything that made it), cache hit or miss said."""
    return Response(result.png, media_type="image/png",
                    headers={"X-Decode-Cache": "hit" if result.cached else "miss", "X-Decode-Key": result.key,
                             "Cache-Control": "public, max-age=31536000, immutable", **(extra or {})})


@router.post("/maps/{map_id}/items/{item_id}/vary", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "A variation of the item's image"}})
def vary(item_id: str, body: schemas.VaryIn, request: Request, map_id: str = Depends(existing_map_id),
         service: MapService = Depends(get_service)):
    """Image-to-image: the item's own vector, starting from its VAE latent noised to `strength`. Same inputs,
    same bytes (cached)."""
    return _decoded_png(service.vary_item(map_id, item_id, body.seed, body.strength, client_gone(request)))


@router.get("/items/{item_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def thumbnail(item_id: str, store: Store = Depends(get_store)):
    item = store.get_item(item_id)  # the id is checked against the pattern and must exist in the database
    if not item.has_thumbnail:
        raise HTTPException(404, f"item {item_id} ({item.kind}) has no thumbnail")
    return Response(store.read_thumbnail(item.id), media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})
