"""Decoder variants over HTTP: list them, decode one point (or one path) through several side by side, upscale
a decoded image, and align two maps of the same items. The work is app/maps/compare.py's."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import Rejected
from ..maps import compare
from ..maps.service import MapService
from . import schemas
from .deps import DisconnectCheck, ExistingMap, ServiceDep, existing_map_id
from .limits import BoundedJSONRoute
from .responses import decode_url

router = APIRouter(prefix="/api", tags=["variants"], route_class=BoundedJSONRoute)


def _decoders(service: MapService, choices: schemas.Choices) -> list[compare.Decoder]:
    pairs = [(c, None) if isinstance(c, str) else (c.variant, c.lora_scale) for c in choices]
    return compare.resolve_decoders(service, pairs)


@router.get("/variants", response_model=schemas.VariantsOut)
def variants(service: ServiceDep):
    """The loaded space's decoder variants (LoRAs, fine-tunes, upscalers) with their lineage."""
    space = service.space
    return {"space": space.name, "lineage": space.info.get("lineage"), "variants": space.variants()}


@router.post("/maps/{map_id}/compare", response_model=schemas.CompareOut)
def compare_point(body: schemas.CompareIn, map_id: ExistingMap, service: ServiceDep, gone: DisconnectCheck):
    """One clicked point decoded by each of `variants` (same blend, same seed); images served from the decode
    cache at /api/decodes/{key}.png."""
    decoders = _decoders(service, body.variants)
    images = compare.compare_point(service, map_id, body.x, body.y, body.seed, decoders, gone)
    return {
        "x": body.x,
        "y": body.y,
        "seed": body.seed,
        "images": [{**image, "url": decode_url(image["key"])} for image in images],
    }


@router.post("/maps/{map_id}/compare/path", response_model=schemas.ComparePathOut)
def compare_path(body: schemas.ComparePathIn, map_id: ExistingMap, service: ServiceDep, gone: DisconnectCheck):
    """One drawn path decoded by each of `variants`: `paths[i].frames` are the i-th decoder's images."""
    decoders = _decoders(service, body.variants)
    paths = compare.compare_path(service, map_id, body.points, body.steps, body.seed, decoders, gone)
    return {"paths": [{**p, "frames": [{**f, "url": decode_url(f["key"])} for f in p["frames"]]} for p in paths]}


@router.post("/decodes/{key}/upscale", response_model=schemas.UpscaleOut)
def upscale(key: str, service: ServiceDep, gone: DisconnectCheck, body: schemas.UpscaleIn | None = None):
    """A decoded image (from /decode, /compare or /path) through the space's upscaler, to show beside it."""
    out = compare.upscale_decode(service, key, body.upscaler if body else None, gone)
    return {**out, "url": decode_url(out["key"]), "source_url": decode_url(out["source_key"])}


@router.get("/maps/{map_id}/align/{other_id}", response_model=schemas.AlignOut)
def align(
    other_id: str, request: Request, map_id: ExistingMap, service: ServiceDep, gone: DisconnectCheck, k: int = 10
):
    """Side-by-side maps of the same items in two spaces: `other_id`'s positions Procrustes-aligned onto
    `map_id`'s, with per-item neighbourhood agreement between the two spaces (items matched by label). Runs in
    the work queue like the other expensive reads (an SVD and two k-NN over up to `max_align_items`): 429 with
    Retry-After when it is full."""
    existing_map_id(other_id, request)
    if not 1 <= k <= service.settings.max_neighbors:
        raise Rejected(f"k must be between 1 and {service.settings.max_neighbors}")
    limit = service.settings.max_align_items
    return service.queue.run(lambda: compare.align_maps(service.store, map_id, other_id, k, limit), gone)
