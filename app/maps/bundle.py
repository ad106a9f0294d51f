"""A whole map as one file: a zip of JSON, .npy arrays (loaded with allow_pickle=False) and PNG thumbnails.

    latentmap-bundle.json   format, version, map (title, space, projection, tours), items (kind, label, x, y, ...)
    vectors.npy             (n, dim) float32 raw CLIP vectors
    decode_vectors.npy      (n, dim) float32 image-side vectors
    latents.npy             (m, ...) float32, for the items whose `latent` is true, in item order
    thumbnails/<index>.png  for the items whose `thumbnail` is true

Import validates everything in memory first and writes nothing until it all checks out.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from .. import imaging
from .classroom import check_tour
from .service import MapService, Rejected, SpaceMismatch
from .store import COLUMN_TYPES, MapRecord, NewItem, Store

FORMAT = "latentmap-bundle"
VERSION = 1
MANIFEST = "latentmap-bundle.json"
KINDS = ("text", "image")


def export_bundle(store: Store, map_id: str) -> bytes:
    record = store.get_map(map_id)
    arrays = store.get_arrays(map_id)
    points = store.points(map_id)
    meta = store.item_meta(map_id, [p.id for p in points])
    items = [{"kind": p.kind, "label": p.label, "x": p.x, "y": p.y, "thumbnail": p.has_thumbnail,
              "latent": arrays.latents[i] is not None, **({"columns": meta[p.id]} if p.id in meta else {})}
             for i, p in enumerate(points)]
    manifest = {"format": FORMAT, "version": VERSION,
                "map": {"title": record.title, "space": record.space, "projection": record.projection,
                        "tours": [{"title": t["title"], "steps": t["steps"]} for t in store.tours(map_id)],
                        "columns": [{"name": c.name, "type": c.type} for c in store.columns(map_id)]},
                "items": items}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
        z.writestr("vectors.npy", _npy(arrays.vectors))
        z.writestr("decode_vectors.npy", _npy(arrays.decode_vectors))
        latents = [l for l in arrays.latents if l is not None]
        if latents:
            z.writestr("latents.npy", _npy(np.stack(latents)))
        for i, p in enumerate(points):
            if p.has_thumbnail:
                z.writestr(f"thumbnails/{i}.png", store.read_thumbnail(p.id))
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def import_bundle(service: MapService, data: bytes, title: str | None = None) -> tuple[MapRecord, str]:
    """Create a new map from a bundle. Raises Rejected (malformed) or SpaceMismatch; nothing is written then."""
    settings, space = service.settings, service.space
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise Rejected("not a latentmap bundle (not a zip file)") from None
    with z:
        infos = {i.filename: i for i in z.infolist()}
        if sum(i.file_size for i in infos.values()) > settings.max_bundle_bytes:
            raise Rejected(f"bundle unpacks to more than {settings.max_bundle_bytes} bytes")

        def read(name: str) -> bytes:
            if name not in infos:
                raise Rejected(f"bundle is missing {name}")
            try:
                return z.read(infos[name])
            except Exception as e:  # CRC errors, unsupported compression, truncation
                raise Rejected(f"bundle member {name} is unreadable ({type(e).__name__})") from None

        try:
            manifest = json.loads(read(MANIFEST))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Rejected(f"{MANIFEST} is not valid JSON") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise Rejected("not a latentmap bundle (wrong format marker)")
        if manifest.get("version") != VERSION:
            raise Rejected(f"bundle version {manifest.get('version')!r} is not supported (expected {VERSION})")
        meta, items = manifest.get("map"), manifest.get("items")
        if not isinstance(meta, dict) or not isinstance(items, list):
            raise Rejected("bundle manifest needs 'map' and 'items'")
        if meta.get("space") != space.name:
            raise SpaceMismatch(f"this bundle was made with space '{meta.get('space')}', but this server runs "
                                f"'{space.name}'; import it into a server started with --space {meta.get('space')}")
        if len(items) > settings.max_items_per_map:
            raise Rejected(f"a map holds at most {settings.max_items_per_map} items")
        columns = _columns(meta)
        n = len(items)
        # An empty map has no vector width to check: its arrays are (0, anything).
        width = space.dim if n else None
        vectors = _load_array(read("vectors.npy"), "vectors.npy", (n, width))
        decode_vectors = _load_array(read("decode_vectors.npy"), "decode_vectors.npy", (n, width))
        with_latent = [bool(isinstance(it, dict) and it.get("latent")) for it in items]
        latents = _load_array(read("latents.npy"), "latents.npy", (sum(with_latent), None)) if any(with_latent) else None

        new_items, xy, li = [], np.zeros((n, 2), np.float32), 0
        for i, it in enumerate(items):
            if not isinstance(it, dict) or it.get("kind") not in KINDS or not isinstance(it.get("label"), str):
                raise Rejected(f"item {i}: needs kind (text or image) and a label")
            try:
                xy[i] = [float(it["x"]), float(it["y"])]
            except (KeyError, TypeError, ValueError):
                raise Rejected(f"item {i}: x and y must be numbers") from None
            if not np.isfinite(xy[i]).all():
                raise Rejected(f"item {i}: x and y must be finite")
            thumb = None
            if it.get("thumbnail"):
                try:
                    picture = imaging.open_image(read(f"thumbnails/{i}.png"), settings.max_image_pixels,
                                                 keep_alpha=True)  # transparent thumbnails stay transparent
                    thumb = imaging.thumbnail_png(picture, settings.thumbnail_size)
                except imaging.ImageRejected as e:
                    raise Rejected(f"item {i}: thumbnail {e}") from None
            latent = None
            if with_latent[i]:
                latent, li = latents[li], li + 1
            new_items.append(NewItem(kind=it["kind"], label=it["label"][:settings.max_prompt_chars * 4],
                                     vector=vectors[i], decode_vector=decode_vectors[i], latent=latent,
                                     thumbnail_png=thumb, meta=_item_columns(it, columns, i)))
        projection = meta.get("projection") if isinstance(meta.get("projection"), dict) else {}
        if len(columns) > settings.max_columns:
            raise Rejected(f"bundle has {len(columns)} columns; the limit is {settings.max_columns}")
        projection = {**projection, "method": projection.get("method", "none")}
        tours = meta.get("tours") or []
        if not isinstance(tours, list) or not all(isinstance(t, dict) for t in tours):
            raise Rejected("bundle tours must be a list of objects")
        try:
            tours = [check_tour(t.get("title"), t.get("steps"), settings) for t in tours]
        except ValueError as e:
            raise Rejected(f"bundle tour: {e}") from None

    record, key = service.create_map(title or str(meta.get("title") or "Imported map"))
    try:
        service.store.declare_columns(record.id, columns)
        if new_items:
            service.store.add_items(record.id, new_items, xy, projection=projection)
        for tour_title, steps in tours:
            service.store.save_tour(record.id, tour_title, steps)
    except BaseException:
        service.store.delete_map(record.id)  # no half-imported map is left behind
        raise
    return service.store.get_map(record.id), key


def _columns(meta: dict) -> dict[str, str]:
    """The bundle's metadata columns: name -> type (bundles from before columns have none)."""
    raw = meta.get("columns") or []
    if not isinstance(raw, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str) and
                                            c.get("type") in COLUMN_TYPES for c in raw):
        raise Rejected("bundle columns must be a list of {name, type: number|category|text}")
    return {c["name"][:200]: c["type"] for c in raw}


def _item_columns(item: dict, columns: dict[str, str], i: int) -> dict | None:
    values = item.get("columns")
    if values is None:
        return None
    if not isinstance(values, dict) or any(k not in columns for k in values):
        raise Rejected(f"item {i}: columns must be an object of the bundle's columns")
    out = {}
    for name, value in values.items():
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
              if columns[name] == "number" else isinstance(value, str) and len(value) <= 10_000)
        if not ok:
            raise Rejected(f"item {i}: column {name} must be a {'number' if columns[name] == 'number' else 'string'}")
        out[name] = value
    return out or None


def _load_array(raw: bytes, name: str, shape: tuple) -> np.ndarray:
    try:
        a = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception:
        raise Rejected(f"{name} is not a valid .npy array (pickled or corrupt arrays are refused)") from None
    if a.dtype.kind != "f" or a.ndim < 2 or a.shape[0] != shape[0] or (shape[1] is not None and a.shape[1:] != shape[1:]):
        raise Rejected(f"{name} has shape {a.shape} {a.dtype}; expected {shape} float")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise Rejected(f"{name} holds non-finite values")
    return a
