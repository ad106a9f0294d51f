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
import struct
import zipfile
from dataclasses import dataclass

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
    items = [
        {
            "kind": p.kind,
            "label": p.label,
            "x": p.x,
            "y": p.y,
            "thumbnail": p.has_thumbnail,
            "latent": arrays.latents[i] is not None,
            **({"columns": meta[p.id]} if p.id in meta else {}),
        }
        for i, p in enumerate(points)
    ]
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "map": {
            "title": record.title,
            "space": record.space,
            "projection": record.projection,
            "tours": [{"title": t["title"], "steps": t["steps"]} for t in store.tours(map_id)],
            "columns": [{"name": c.name, "type": c.type} for c in store.columns(map_id)],
        },
        "items": items,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
        z.writestr("vectors.npy", _npy(arrays.vectors))
        z.writestr("decode_vectors.npy", _npy(arrays.decode_vectors))
        latents = [latent for latent in arrays.latents if latent is not None]
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
    """Create a new map from a bundle. Raises Rejected (malformed) or SpaceMismatch; nothing is written then:
    every field is checked (type and range) before the map is created, and a failure while writing removes it."""
    checked = read_bundle(service, data, title)
    record, key = service.create_map(checked.title)
    try:
        service.store.declare_columns(record.id, checked.columns)
        if checked.items:
            service.store.add_items(record.id, checked.items, checked.xy, projection=checked.projection)
        for tour_title, steps in checked.tours:
            service.store.save_tour(record.id, tour_title, steps)
    except BaseException:
        service.store.delete_map(record.id)  # no half-imported map is left behind
        raise
    return service.store.get_map(record.id), key


@dataclass
class CheckedBundle:
    title: str
    items: list[NewItem]
    xy: np.ndarray
    projection: dict
    tours: list[tuple[str, list[dict]]]
    columns: dict[str, str]  # metadata columns: name -> type


def read_bundle(service: MapService, data: bytes, title: str | None = None) -> CheckedBundle:
    """Everything a bundle holds, checked against the settings and the space; Rejected / SpaceMismatch."""
    settings, space = service.settings, service.space
    entries = zip_entry_count(data)
    if entries is not None and entries > settings.max_bundle_entries:
        raise Rejected(f"bundle has more than {settings.max_bundle_entries} files")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise Rejected("not a latentmap bundle (not a zip file)") from None
    with z:
        if len(z.infolist()) > settings.max_bundle_entries:
            raise Rejected(f"bundle has more than {settings.max_bundle_entries} files")
        infos = {i.filename: i for i in z.infolist()}
        if sum(i.file_size for i in infos.values()) > settings.max_bundle_bytes:
            raise Rejected(f"bundle unpacks to more than {settings.max_bundle_bytes} bytes")

        def read(name: str) -> bytes:
            if name not in infos:
                raise Rejected(f"bundle is missing {name}")
            try:
                return z.read(infos[name])  # reads at most the member's declared size
            except Exception as e:  # CRC errors, unsupported compression, truncation
                raise Rejected(f"bundle member {name} is unreadable ({type(e).__name__})") from None

        if MANIFEST in infos and infos[MANIFEST].file_size > settings.max_manifest_bytes:
            raise Rejected(f"{MANIFEST} is larger than {settings.max_manifest_bytes} bytes")
        manifest = _parse_manifest(read(MANIFEST), settings.max_manifest_depth)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise Rejected("not a latentmap bundle (wrong format marker)")
        if manifest.get("version") != VERSION or isinstance(manifest.get("version"), bool):
            raise Rejected(f"bundle version {_short(manifest.get('version'))} is not supported (expected {VERSION})")
        meta, items = manifest.get("map"), manifest.get("items")
        if not isinstance(meta, dict) or not isinstance(items, list):
            raise Rejected("bundle manifest needs 'map' (an object) and 'items' (a list)")
        if meta.get("space") != space.name:
            raise SpaceMismatch(
                f"this bundle was made with space '{_short(meta.get('space'))}', but this server "
                f"runs '{space.name}'; import it into a server started with --space "
                f"{_short(meta.get('space'))}"
            )
        title = _check_title(title if title is not None else meta.get("title", "Imported map"), settings)
        if len(items) > settings.max_items_per_map:
            raise Rejected(f"a map holds at most {settings.max_items_per_map} items")
        columns = _columns(meta)
        if len(columns) > settings.max_columns:
            raise Rejected(f"bundle has {len(columns)} columns; the limit is {settings.max_columns}")
        n = len(items)
        xy = np.zeros((n, 2), np.float32)
        flags = []
        for i, it in enumerate(items):
            flags.append(_check_item(i, it, settings, xy))
        # An empty map has no vector width to check: its arrays are (0, anything).
        width = space.dim if n else None
        vectors = _load_array(read("vectors.npy"), "vectors.npy", (n, width))
        decode_vectors = _load_array(read("decode_vectors.npy"), "decode_vectors.npy", (n, width))
        with_latent = sum(latent for _, latent in flags)
        latents = None
        if with_latent:
            expected = latent_shape(space)
            if expected is None:
                raise Rejected(f"space '{space.name}' keeps no latents; this bundle has {with_latent}")
            latents = _load_array(read("latents.npy"), "latents.npy", (with_latent, *expected))
        projection = _check_projection(
            meta.get("projection"),
            n,
            settings,
            service._map_vectors(vectors[:1], [items[0]["kind"]]).shape[1] if n else 0,
        )
        tours = meta.get("tours", [])
        if tours is None:
            tours = []
        if not isinstance(tours, list) or not all(isinstance(t, dict) for t in tours):
            raise Rejected("bundle tours must be a list of objects")
        if len(tours) > settings.max_tours_per_map:
            raise Rejected(f"a map has at most {settings.max_tours_per_map} tours")
        try:
            tours = [check_tour(t.get("title"), t.get("steps"), settings) for t in tours]
        except ValueError as e:
            raise Rejected(f"bundle tour: {e}") from None

        new_items, li = [], 0
        for i, (it, (thumbnail, latent)) in enumerate(zip(items, flags)):
            thumb = None
            if thumbnail:
                try:
                    picture = imaging.open_image(
                        read(f"thumbnails/{i}.png"), settings.max_bundle_thumbnail_pixels, keep_alpha=True
                    )  # transparent thumbnails stay transparent
                    thumb = imaging.thumbnail_png(picture, settings.thumbnail_size)
                except imaging.ImageRejected as e:
                    raise Rejected(f"item {i}: thumbnail {e}") from None
            item_latent = None
            if latent:
                item_latent, li = latents[li], li + 1
            new_items.append(
                NewItem(
                    kind=it["kind"],
                    label=it["label"],
                    vector=vectors[i],
                    decode_vector=decode_vectors[i],
                    latent=item_latent,
                    thumbnail_png=thumb,
                    meta=_item_columns(it, columns, i),
                )
            )
    return CheckedBundle(title, new_items, xy, projection, tours, columns)


def zip_entry_count(data: bytes) -> int | None:
    """How many entries a zip's central directory holds, counted by their signature before zipfile parses them
    (it builds an object per entry: 1.4 million fit in a 64 MiB upload). None when there is no end record
    (then zipfile refuses the data). The count the end record states is not trusted: zipfile reads the
    directory by its size, so the entries in that span are counted."""
    try:
        end = zipfile._EndRecData(io.BytesIO(data))  # zipfile's own reader of the end records (zip64 too)
    except (zipfile.BadZipFile, OSError, struct.error):
        return None
    if not end:
        return None
    location, size = end[zipfile._ECD_LOCATION], end[zipfile._ECD_SIZE]
    # the directory ends at the end record (at the zip64 end records before it: 76 bytes, counted in as slack)
    return data.count(b"PK\x01\x02", max(0, location - size - 76), location)


def latent_shape(space) -> tuple[int, ...] | None:
    """The shape of one item's VAE latent in `space` (None: the space keeps none)."""
    pipeline = getattr(space, "pipeline", None)
    if pipeline is not None and hasattr(pipeline, "latent_shape"):
        return tuple(int(v) for v in pipeline.latent_shape)
    pipe, config = getattr(space, "pipe", None), getattr(space, "config", None)
    vae = getattr(pipe, "vae", None)
    if vae is not None and isinstance(config, dict) and "height" in config:
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        return (int(vae.config.latent_channels), int(config["height"]) // factor, int(config["width"]) // factor)
    return None


def _parse_manifest(raw: bytes, max_depth: int):
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Rejected(f"{MANIFEST} is not valid JSON") from None
    except RecursionError:
        raise Rejected(f"{MANIFEST} is nested deeper than {max_depth} levels") from None
    # Depth without recursion: a manifest of 100,000 nested lists must not exhaust the stack here either.
    stack = [(manifest, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise Rejected(f"{MANIFEST} is nested deeper than {max_depth} levels")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return manifest


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_title(value, settings) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > settings.max_title_chars:
        raise Rejected(f"the map title must be text of 1 to {settings.max_title_chars} characters")
    return value.strip()


def _number(value, what: str, lo: float, hi: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not np.isfinite(value)
        or not lo <= value <= hi
    ):
        raise Rejected(f"{what} must be a number from {lo:g} to {hi:g}")
    return float(value)


def _integer(value, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Rejected(f"{what} must be an integer from {lo} to {hi}")
    return value


def _check_item(i: int, it, settings, xy: np.ndarray) -> tuple[bool, bool]:
    """One manifest item (kind, label, x, y, thumbnail, latent) → its position in xy; (thumbnail, latent)."""
    if not isinstance(it, dict) or it.get("kind") not in KINDS:
        raise Rejected(f"item {i}: needs kind (text or image) and a label")
    label, limit = it.get("label"), settings.max_prompt_chars * 4
    if not isinstance(label, str) or len(label) > limit:
        raise Rejected(f"item {i}: the label must be text of at most {limit} characters")
    bound = settings.max_abs_coordinate
    xy[i] = [_number(it.get("x"), f"item {i}: x", -bound, bound), _number(it.get("y"), f"item {i}: y", -bound, bound)]
    flags = []
    for name in ("thumbnail", "latent"):
        value = it.get(name, False)
        if not isinstance(value, bool):
            raise Rejected(f"item {i}: {name} must be true or false")
        flags.append(value)
    return flags[0], flags[1]


def _check_projection(raw, n: int, settings, width: int) -> dict:
    """The stored projection state, rebuilt from known fields of known types (unknown fields are dropped): a
    bundle cannot make GET /api/maps fail, nor put megabytes into every read of the map."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Rejected("map.projection must be an object")
    revision = _integer(raw.get("revision", 0), "projection revision", 0, 2**53)
    method = raw.get("method", "none")
    if method not in ("none", "pca", "umap"):
        raise Rejected("projection method must be none, pca or umap")
    fitted_count = _integer(raw.get("fitted_count", n), "projection fitted_count", 0, settings.max_items_per_map)
    if n == 0 or method == "none":
        return {"method": "none", "revision": revision}
    state = {"method": method, "revision": revision, "fitted_count": fitted_count}
    if raw.get("scale") is not None or method == "pca":
        state["scale"] = _number(raw.get("scale"), "projection scale", 1e-12, 1e12)
    if method == "umap":
        for name in ("seed", "sampled"):
            if raw.get(name) is not None:
                state[name] = _integer(raw[name], f"projection {name}", 0, 2**32)
        if raw.get("backend") is not None:
            if not isinstance(raw["backend"], str) or len(raw["backend"]) > 40:
                raise Rejected("projection backend must be a short name")
            state["backend"] = raw["backend"]
        return state
    for name, shape in (("mean", (width,)), ("components", (2, width)), ("centre", (2,))):
        state[name] = _floats(raw.get(name), shape, f"projection {name}")
    return state


def _floats(value, shape: tuple, what: str) -> list:
    """A nested list of finite numbers of exactly `shape` (checked element by element: no strings, no bools)."""
    message = f"{what} must be {' x '.join(map(str, shape))} finite numbers"
    rows = value if len(shape) == 2 else [value]
    if not isinstance(rows, list) or len(rows) != (shape[0] if len(shape) == 2 else 1):
        raise Rejected(message)
    for row in rows:
        if (
            not isinstance(row, list)
            or len(row) != shape[-1]
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in row)
        ):
            raise Rejected(message)
    return [[float(v) for v in row] for row in rows] if len(shape) == 2 else [float(v) for v in value]


def _columns(meta: dict) -> dict[str, str]:
    """The bundle's metadata columns: name -> type (bundles from before columns have none)."""
    raw = meta.get("columns") or []
    if not isinstance(raw, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) and c.get("type") in COLUMN_TYPES for c in raw
    ):
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
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
            if columns[name] == "number"
            else isinstance(value, str) and len(value) <= 10_000
        )
        if not ok:
            raise Rejected(f"item {i}: column {name} must be a {'number' if columns[name] == 'number' else 'string'}")
        out[name] = value
    return out or None


def _load_array(raw: bytes, name: str, shape: tuple) -> np.ndarray:
    """A float .npy of `shape` (None in it: any size there), finite; Rejected otherwise."""
    try:
        buf = io.BytesIO(raw)
        version = np.lib.format.read_magic(buf)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        header_shape, _, dtype = read_header(buf)
        buf.seek(0)
        if not _fits(header_shape, shape) or dtype.kind != "f":
            raise Rejected(f"{name} has shape {header_shape} {dtype}; expected {_shape_text(shape)} float")
        a = np.load(buf, allow_pickle=False)
    except Rejected:
        raise
    except Exception:
        raise Rejected(f"{name} is not a valid .npy array (pickled or corrupt arrays are refused)") from None
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise Rejected(f"{name} holds non-finite values")
    return a


def _fits(actual: tuple, expected: tuple) -> bool:
    if len(actual) < 2 or actual[0] != expected[0]:
        return False
    if len(expected) == 2 and expected[1] is None:  # any trailing shape (empty maps)
        return True
    return tuple(actual[1:]) == tuple(expected[1:])


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("any" if v is None else str(v) for v in shape) + ")"
