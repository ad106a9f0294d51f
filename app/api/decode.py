"""Decoding: any point of a map to pixels, variations of an item's image, and the cached decodes by key."""

from __future__ import annotations

import json

from fastapi import APIRouter, Response

from ..maps.store import check_key
from . import schemas
from .deps import DisconnectCheck, ExistingMap, ServiceDep, StoreDep
from .limits import BoundedJSONRoute
from .responses import IMMUTABLE, PNG, decoded_png

router = APIRouter(prefix="/api", tags=["decode"], route_class=BoundedJSONRoute)


@router.post(
    "/maps/{map_id}/decode",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The decoded image"}},
)
def decode(body: schemas.DecodeIn, map_id: ExistingMap, service: ServiceDep, gone: DisconnectCheck):
    result = service.decode_at(
        map_id, body.x, body.y, body.seed, gone, variant=body.variant, lora_scale=body.lora_scale, preview=body.preview
    )
    return decoded_png(result, {"X-Decode-Preview": "1" if body.preview else "0"})


@router.post(
    "/maps/{map_id}/items/{item_id}/vary",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "A variation of the item's image"}},
)
def vary(item_id: str, body: schemas.VaryIn, map_id: ExistingMap, service: ServiceDep, gone: DisconnectCheck):
    """Image-to-image: the item's own vector, starting from its VAE latent noised to `strength`. Same inputs,
    same bytes (cached)."""
    return decoded_png(service.vary_item(map_id, item_id, body.seed, body.strength, gone))


@router.get("/decodes/{key}.png", response_class=Response, responses=PNG)
def decoded_image(key: str, store: StoreDep):
    """A decoded image by its key (from /decode, /path, /compare, /upscale)."""
    png = store.cached_decode(check_key(key))
    if png is None:
        return Response(json.dumps({"detail": "no such decoded image"}), 404, media_type="application/json")
    return Response(png, media_type="image/png", headers={"Cache-Control": IMMUTABLE})
