"""Comparing decoders and spaces on a map: one point or one path through several decoder variants side by
side, an upscale of a decoded image, and two maps of the same items aligned onto each other. The variants
themselves live in app/spaces/variants.py; see docs/variants.md."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from .. import imaging
from ..errors import Rejected
from .decode_keys import UpscaleDecode
from .explore import path_frames
from .service import MapService
from .store import Store, check_key

Decoder = tuple[str | None, float | None]  # (variant, lora_scale); (None, None) is the space's own decoder


def resolve_decoders(service: MapService, choices: Sequence[Decoder]) -> list[Decoder]:
    """Canonical (variant, lora_scale) pairs, checked against the space and the limits."""
    limit = service.settings.max_compare_variants
    if not 1 <= len(choices) <= limit:
        raise Rejected(f"compare takes 1 to {limit} variants")
    return [service.resolve_variant(name, scale) for name, scale in choices]


def decoder_label(variant: str | None, scale: float | None) -> dict:
    return {"variant": variant or "base", "lora_scale": scale}


def compare_point(
    service: MapService,
    map_id: str,
    x: float,
    y: float,
    seed: int,
    decoders: list[Decoder],
    gone: Callable[[], bool] | None,
) -> list[dict]:
    """One clicked point decoded by each decoder (same blend, same seed): label, decode `key`, `cached`."""
    images = []
    for variant, scale in decoders:
        result = service.decode_at(map_id, x, y, seed, gone, variant=variant, lora_scale=scale)
        images.append({**decoder_label(variant, scale), "key": result.key, "cached": result.cached})
    return images


def compare_path(
    service: MapService,
    map_id: str,
    points: Sequence[Sequence[float]],
    steps: int,
    seed: int,
    decoders: list[Decoder],
    gone: Callable[[], bool] | None,
) -> list[dict]:
    """The frames of one path (geometry and blending as POST /path) through each decoder. Base frames share
    /path's cache keys; a variant's key adds its name and strength."""
    frames = path_frames(service, map_id, points, steps, seed, service.settings.max_compare_path_steps)
    out = []
    for variant, scale in decoders:
        rows = []
        for frame in frames:
            key = service.through_decoder(frame.key, variant, scale).digest()
            request = dataclasses.replace(frame.request, variant=variant, lora_scale=scale)
            service.decode_cached(key, request, gone, map_id=map_id)
            rows.append({"key": key, "x": frame.point[0], "y": frame.point[1]})
        out.append({**decoder_label(variant, scale), "frames": rows})
    return out


def upscale_decode(service: MapService, key: str, upscaler: str | None, gone: Callable[[], bool] | None) -> dict:
    """Upscale a cached decode; the result is cached under its own decode key `key` (`source_key`: the
    decode it came from)."""
    png = service.store.cached_decode(check_key(key))
    if png is None:
        raise Rejected(f"no decoded image {key}: decode it first")
    image = Image.open(io.BytesIO(png))
    image.load()
    if image.width * image.height > service.settings.max_upscale_input_pixels:
        raise Rejected(f"images larger than {service.settings.max_upscale_input_pixels} pixels are not upscaled")
    names = [v["name"] for v in service.space.variants() if v["kind"] == "upscaler"]
    if not names:
        raise Rejected(f"space '{service.space.name}' has no upscaler")
    name = upscaler or names[0]
    if name not in names:
        raise Rejected(f"unknown upscaler {name!r}; choose one of {', '.join(names)}")
    out_key = UpscaleDecode(service.space.name, name, key, service.space.decoder_identity(name)).digest()
    cached = service.store.cached_decode(out_key)
    if cached is None:
        big = service.queue.run(lambda: service.space.upscale(image, name), gone)
        cached = imaging.to_png(big)
        service.store.store_decode(out_key, cached, service.store.decode_map(key))
        hit = False
    else:
        hit = True
    size = Image.open(io.BytesIO(cached)).size
    return {
        "key": out_key,
        "cached": hit,
        "upscaler": name,
        "source_key": key,
        "source_size": list(image.size),
        "size": list(size),
    }


def align_maps(store: Store, map_a: str, map_b: str, k: int, max_items: int) -> dict:
    """Two maps of the same items (matched by label; e.g. one prompt list mapped in two CLIP spaces): map B's
    2D positions rotated/scaled/shifted onto map A's (orthogonal Procrustes), and per item the share of its k
    nearest neighbours (cosine, in each map's own CLIP vectors) that the two spaces agree on. Reads stored
    vectors only: neither space needs to be loaded."""
    a, b = store.get_arrays(map_a), store.get_arrays(map_b)
    first_b = {}
    for i, label in enumerate(b.labels):
        first_b.setdefault(label, i)
    seen, pairs = set(), []
    for i, label in enumerate(a.labels):
        if label in first_b and label not in seen:
            seen.add(label)
            pairs.append((i, first_b[label]))
    if not k >= 1:
        raise Rejected("k must be at least 1")
    if len(pairs) < max(3, k + 1):
        raise Rejected(f"the maps share {len(pairs)} item labels; aligning needs at least {max(3, k + 1)}")
    if len(pairs) > max_items:
        raise Rejected(f"at most {max_items} shared items can be aligned")
    ia, ib = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    xa, xb = a.xy[ia].astype(np.float64), b.xy[ib].astype(np.float64)
    ma, mb = xa.mean(0), xb.mean(0)
    ca, cb = xa - ma, xb - mb
    u, sv, vt = np.linalg.svd(cb.T @ ca)
    rot = u @ vt  # may include a reflection: a map's handedness means nothing
    scale = float(sv.sum() / max((cb**2).sum(), 1e-12))
    aligned = cb @ rot * scale + ma
    disparity = float(((aligned - xa) ** 2).sum() / max((ca**2).sum(), 1e-12))

    def knn(vectors: np.ndarray) -> np.ndarray:
        u_ = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sim = u_ @ u_.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    na, nb = knn(a.vectors[ia].astype(np.float32)), knn(b.vectors[ib].astype(np.float32))
    agreement = np.array([len(set(x) & set(y)) / k for x, y in zip(na.tolist(), nb.tolist())])
    items = [
        {
            "label": a.labels[i],
            "a_id": a.ids[i],
            "b_id": b.ids[j],
            "a": [float(xa[n, 0]), float(xa[n, 1])],
            "b_aligned": [float(aligned[n, 0]), float(aligned[n, 1])],
            "agreement": round(float(agreement[n]), 4),
        }
        for n, (i, j) in enumerate(pairs)
    ]
    return {
        "a": map_a,
        "b": map_b,
        "matched": len(pairs),
        "k": k,
        "scale": round(scale, 6),
        "disparity": round(disparity, 6),
        "mean_agreement": round(float(agreement.mean()), 4),
        "items": items,
    }
