"""How domain objects look over HTTP: the JSON rows shared by several routers, the URLs of decoded images,
and the headers of binary answers. Nothing here decides anything."""

from __future__ import annotations

from fastapi import Response

from ..maps.decode_keys import decode_url  # noqa: F401  (one definition: decode_keys.py)
from ..maps.store import ItemRecord, MapArrays, MapRecord, Store

MAP_VERSION_HEADER = "X-Map-Version"
IMMUTABLE = "public, max-age=31536000, immutable"  # a decode key names everything that made the picture
REVALIDATE = "public, no-cache"  # a URL that serves new bytes after the map changes: caches keep it and ask (ETag)
PNG = {200: {"content": {"image/png": {}}}}
BINARY = {200: {"content": {"application/octet-stream": {}}}}


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak or strong) or is `*`: the answer is then 304."""
    if not if_none_match:
        return False
    return if_none_match.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]


def thumbnail_url(item_id: str) -> str:
    return f"/api/items/{item_id}/thumbnail"


def map_info(record: MapRecord, store: Store, can_edit: bool = False, terrain=None) -> dict:
    """A map as the API shows it; with `terrain` (maps.terrain.Terrain), its terrain layer too."""
    bounds = store.bounds(record.id) if record.count else None
    proj = record.projection
    fitted = proj.get("fitted_count", 0)
    return {
        "id": record.id,
        "title": record.title,
        "space": record.space,
        "count": record.count,
        "created_at": record.created_at,
        "bounds": bounds,
        "can_edit": can_edit,
        "projection": {
            "method": proj.get("method", "none"),
            "revision": proj.get("revision", 0),
            "fitted_count": fitted,
        },
        "refit_recommended": record.count >= 2 * max(fitted, 10),
        "terrain": terrain.describe(record, bounds) if terrain is not None and bounds is not None else None,
    }


def point(item: ItemRecord, meta: dict | None = None) -> dict:
    out = {
        "id": item.id,
        "kind": item.kind,
        "label": item.label,
        "x": item.x,
        "y": item.y,
        "thumbnail": item.has_thumbnail,
        "pending": item.pending_image,
    }
    if meta is not None:  # the map's metadata columns (app/ingest): only those the item has a value in
        out["columns"] = meta.get(item.id, {})
    return out


def points(items, meta: dict | None = None) -> list[dict]:
    return [point(i, meta) for i in items]


def neighbors(arrays: MapArrays, found) -> list[dict]:
    """Neighbours (index, similarity) as rows of the map's items."""
    ids, kinds, labels, xy = arrays.ids, arrays.kinds, arrays.labels, arrays.xy
    return [
        {
            "id": ids[n.index],
            "kind": kinds[n.index],
            "label": labels[n.index],
            "x": float(xy[n.index, 0]),
            "y": float(xy[n.index, 1]),
            "similarity": round(n.similarity, 4),
            "thumbnail_url": thumbnail_url(ids[n.index]) if kinds[n.index] == "image" else None,
        }
        for n in found
    ]


def decoded_png(result, extra: dict | None = None) -> Response:
    """A decoded picture: immutable (its key names everything that made it), cache hit or miss said."""
    return Response(
        result.png,
        media_type="image/png",
        headers={
            "X-Decode-Cache": "hit" if result.cached else "miss",
            "X-Decode-Key": result.key,
            "Cache-Control": IMMUTABLE,
            **(extra or {}),
        },
    )
