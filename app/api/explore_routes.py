"""Exploration and bundle routes: paths, neighbours, search, clusters, selections, export/import."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from ..maps import bundle, selection
from ..maps.explore import Explorer, Neighbor
from ..maps.service import MapService, Rejected
from ..maps.store import Store, check_key
from .deps import existing_map_id, get_explorer, get_service, get_store
from .routes import MAP_VERSION_HEADER, client_gone, map_info
from .schemas import MapCreated

router = APIRouter(prefix="/api")
PNG = {200: {"content": {"image/png": {}}}}


class PathIn(BaseModel):
    points: list[list[float]] = Field(..., description="[[x, y], ...] polyline on the map, 2 or more vertices")
    steps: int = Field(8, description="number of images along the path")
    seed: int = 0


class SelectionIn(BaseModel):
    item_ids: list[str] | None = Field(None, description="the selected items' ids")
    indices: list[int] | None = Field(None, description="or their positions in points order (maps loaded from "
                                      "/points.bin, which carry no ids); needs `version`")
    polygon: list[list[float]] | None = Field(None, description="or a lasso: [[x, y], ...] in map coordinates, "
                                              "every item inside it (even-odd rule); with `version`, 409 if the "
                                              "map changed")
    version: int | None = Field(None, description="the X-Map-Version the indices or polygon refer to (409 if the "
                                                  "map changed)")
    format: Literal["json", "csv", "zip", "count"] = Field("json", description="count: only how many were chosen")


def _neighbors_out(store_arrays, found: list[Neighbor]) -> list[dict]:
    ids, kinds, labels, xy = store_arrays.ids, store_arrays.kinds, store_arrays.labels, store_arrays.xy
    return [{"id": ids[n.index], "kind": kinds[n.index], "label": labels[n.index], "x": float(xy[n.index, 0]),
             "y": float(xy[n.index, 1]), "similarity": round(n.similarity, 4),
             "thumbnail_url": f"/api/items/{ids[n.index]}/thumbnail" if kinds[n.index] == "image" else None}
            for n in found]


@router.post("/maps/{map_id}/path")
def path(body: PathIn, request: Request, map_id: str = Depends(existing_map_id),
         explorer: Explorer = Depends(get_explorer)):
    result = explorer.path(map_id, body.points, body.steps, body.seed, client_gone(request))
    base = f"/api/paths/{result.key}"
    return {"key": result.key, "frames": [{"url": f"/api/decodes/{k}.png", "x": x, "y": y}
                                          for k, (x, y) in zip(result.frame_keys, result.points)],
            "strip_url": base + ".png", "gif_url": base + ".gif", "webp_url": base + ".webp"}


@router.get("/decodes/{key}.png", response_class=Response, responses=PNG)
def decoded_image(key: str, store: Store = Depends(get_store)):
    png = store.cached_decode(check_key(key))
    if png is None:
        return Response(json.dumps({"detail": "no such decoded image"}), 404, media_type="application/json")
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=31536000, immutable"})


@router.get("/paths/{key}.{fmt}", response_class=Response)
def path_media(key: str, fmt: Literal["png", "gif", "webp"], explorer: Explorer = Depends(get_explorer)):
    data = explorer.path_media(check_key(key), fmt)
    return Response(data, media_type=f"image/{fmt}",
                    headers={"Content-Disposition": f'attachment; filename="latentmap-path.{fmt}"'})


@router.get("/maps/{map_id}/neighbors")
def neighbors(map_id: str = Depends(existing_map_id), x: float | None = None, y: float | None = None,
              item: str | None = Query(None, description="an item id instead of x, y"), k: int = 10,
              explorer: Explorer = Depends(get_explorer), service: MapService = Depends(get_service)):
    found = explorer.neighbors(map_id, k, x=x, y=y, item_id=item)
    return {"neighbors": _neighbors_out(service.store.get_arrays(map_id), found)}


@router.get("/maps/{map_id}/search")
def search(request: Request, q: str, k: int = 10, map_id: str = Depends(existing_map_id),
           explorer: Explorer = Depends(get_explorer), service: MapService = Depends(get_service)):
    """Where a prompt would land (it is not stored), its nearest items, and every point's similarity to it
    (in points order: colour the map by it)."""
    found = explorer.search(map_id, q, k, client_gone(request))
    return {**found, "neighbors": _neighbors_out(service.store.get_arrays(map_id), found["neighbors"])}


@router.get("/maps/{map_id}/clusters")
def clusters(request: Request, map_id: str = Depends(existing_map_id), explorer: Explorer = Depends(get_explorer)):
    """Clusters of the 2D map with short labels; `assignments` is in points order (-1: no cluster)."""
    return explorer.clusters(map_id, client_gone(request))


@router.post("/maps/{map_id}/selection", response_class=Response)
def export_selection(body: SelectionIn, request: Request, map_id: str = Depends(existing_map_id),
                     store: Store = Depends(get_store)):
    """Items picked with the lasso (by id, by index or by the lasso's polygon), as JSON (with their count), CSV, a
    zip of the list and the images' thumbnails, or only the count."""
    if sum(v is not None for v in (body.item_ids, body.indices, body.polygon)) != 1:
        raise Rejected("give one of item_ids, indices (with version) or polygon")
    if body.indices is not None:
        if body.version is None:
            raise Rejected("indices need the map version they refer to (the X-Map-Version of /points.bin)")
        wanted = set(store.ids_at(map_id, body.indices, body.version))
    elif body.polygon is not None:
        poly = selection.check_polygon(body.polygon, request.app.state.settings.max_selection_polygon_vertices)
        xy, _, version = store.positions(map_id)
        if body.version is not None and body.version != version:
            store.ids_at(map_id, [], body.version)  # raises the one stale-version error (409)
        inside = np.flatnonzero(selection.inside_polygon(xy, poly))
        if body.format == "count":
            return Response(json.dumps({"count": len(inside), "version": version}),
                            media_type="application/json")
        wanted = set(store.ids_at(map_id, inside.tolist(), version))
    else:
        wanted = set(body.item_ids)
    chosen = [p for p in store.points(map_id) if p.id in wanted]
    if len(chosen) != len(wanted):
        raise Rejected(f"{len(wanted) - len(chosen)} of the selected items are not on this map")
    rows = [{"id": p.id, "kind": p.kind, "label": p.label, "x": p.x, "y": p.y} for p in chosen]
    meta = store.item_meta(map_id, [p.id for p in chosen])  # metadata columns (app/ingest) go along
    if body.format in ("json", "count"):
        for row in rows:
            row["columns"] = meta.get(row["id"], {})
        out = {"count": len(rows)} if body.format == "count" else {"count": len(rows), "items": rows}
        return Response(json.dumps(out, ensure_ascii=False), media_type="application/json")
    fields = ["id", "kind", "label", "x", "y"]
    extra = {c.name: (c.name if c.name not in fields else f"column:{c.name}") for c in store.columns(map_id)}
    for row in rows:
        row.update({extra[n]: v for n, v in meta.get(row["id"], {}).items()})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields + list(extra.values()))
    writer.writeheader()
    writer.writerows(rows)
    if body.format == "csv":
        return Response(text.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="selection.csv"'})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("selection.csv", text.getvalue())
        for p in chosen:
            if p.has_thumbnail:
                z.writestr(f"images/{p.id}.png", store.read_thumbnail(p.id))
    return Response(buf.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="selection.zip"'})


@router.get("/maps/{map_id}/labels/match", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def label_match(request: Request, q: str = Query(..., min_length=1), version: int | None = None,
                map_id: str = Depends(existing_map_id), store: Store = Depends(get_store)):
    """Which points' labels contain `q` (case-insensitive), for maps loaded from /points.bin without labels:
    b"LMM1", uint32 n, then n bits, point i in bit i % 8 of byte i // 8 (least significant first).
    With `version` (the X-Map-Version the client holds) a changed map answers 409 instead."""
    limit = request.app.state.settings.max_prompt_chars
    if len(q) > limit:
        raise Rejected(f"q must be at most {limit} characters")
    labels, current = store.labels(map_id, version)
    needle = q.strip().casefold()
    matches = np.fromiter((needle in label.casefold() for label in labels), dtype=bool, count=len(labels))
    body = b"LMM1" + np.uint32(len(labels)).tobytes() + np.packbits(matches, bitorder="little").tobytes()
    return Response(body, media_type="application/octet-stream", headers={MAP_VERSION_HEADER: str(current)})


@router.get("/maps/{map_id}/bundle", response_class=Response,
            responses={200: {"content": {"application/zip": {}}}})
def export_bundle(map_id: str = Depends(existing_map_id), service: MapService = Depends(get_service)):
    """The whole map as one file (zip of JSON, npy and PNG; no pickle). Edit keys are never included."""
    return Response(bundle.export_bundle(service.store, map_id), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="latentmap-{map_id}.zip"'})


@router.post("/bundles", status_code=201, response_model=MapCreated)
def import_bundle(file: UploadFile = File(...), service: MapService = Depends(get_service)):
    """A new map from a bundle; refused (and nothing written) if malformed or made with another space."""
    limit = service.settings.max_request_bytes
    data = file.file.read(limit + 1)
    record, key = bundle.import_bundle(service, data)
    return {**map_info(record, service.store, can_edit=True), "edit_key": key}
