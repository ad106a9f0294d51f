"""Exporting a selection of a map's items (picked with the lasso, by id, by index or by the lasso's polygon):
as rows, a CSV file, or a zip of the CSV and the images' thumbnails. Whole maps travel as bundles (bundle.py)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence

import numpy as np

from ..errors import Rejected
from . import selection
from .store import ItemRecord, Store

SELECTION_COLUMNS = ["id", "kind", "label", "x", "y"]


def check_one_way(item_ids, indices, polygon) -> None:
    if sum(v is not None for v in (item_ids, indices, polygon)) != 1:
        raise Rejected("give one of item_ids, indices (with version) or polygon")


def polygon_indices(
    store: Store, map_id: str, polygon: list[list[float]], version: int | None, max_vertices: int
) -> tuple[np.ndarray, int]:
    """Positions (points order) of the items inside the polygon, and the map version they were found at; with
    `version`, a map changed since raises StaleVersion."""
    poly = selection.check_polygon(polygon, max_vertices)
    xy, _, current = store.positions(map_id)
    if version is not None and version != current:
        store.ids_at(map_id, [], version)  # raises the one stale-version error (409)
    return np.flatnonzero(selection.inside_polygon(xy, poly)), current


def selected_items(
    store: Store, map_id: str, item_ids: Sequence[str] | None, indices: Sequence[int] | None, version: int | None
) -> list[ItemRecord]:
    """The selected items in points order, picked by id or by position (positions need the map version they
    were read at: a changed map raises StaleVersion)."""
    if indices is not None:
        if version is None:
            raise Rejected("indices need the map version they refer to (the X-Map-Version of /points.bin)")
        wanted = set(store.ids_at(map_id, indices, version))
    else:
        wanted = set(item_ids)
    chosen = [p for p in store.points(map_id) if p.id in wanted]
    if len(chosen) != len(wanted):
        raise Rejected(f"{len(wanted) - len(chosen)} of the selected items are not on this map")
    return chosen


def selection_rows(store: Store, map_id: str, items: Sequence[ItemRecord]) -> list[dict]:
    """One row per item, with the metadata columns (app/ingest) it has a value in under `columns`."""
    meta = store.item_meta(map_id, [p.id for p in items])
    return [
        {"id": p.id, "kind": p.kind, "label": p.label, "x": p.x, "y": p.y, "columns": meta.get(p.id, {})} for p in items
    ]


def selection_csv(store: Store, map_id: str, items: Sequence[ItemRecord]) -> str:
    """The rows as CSV: one column per metadata column after the fixed ones (`column:NAME` where a name is
    taken by a fixed one)."""
    extra = {c.name: (c.name if c.name not in SELECTION_COLUMNS else f"column:{c.name}") for c in store.columns(map_id)}
    rows = []
    for row in selection_rows(store, map_id, items):
        values = row.pop("columns")
        rows.append({**row, **{extra[n]: v for n, v in values.items()}})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[spreadsheet_text(n) for n in SELECTION_COLUMNS + list(extra.values())])
    writer.writeheader()
    # Ids stay as they are (they are links into the map): server-made, [A-Za-z0-9_-] only, they cannot spell a
    # formula's call, and one in 64 starts with "-".
    writer.writerows(
        [{spreadsheet_text(k): (v if k == "id" else spreadsheet_text(v)) for k, v in row.items()} for row in rows]
    )
    return text.getvalue()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value):
    """A CSV cell a spreadsheet shows as text: labels and names that start like a formula (`=HYPERLINK(…)`,
    `+`, `-`, `@`, tab, carriage return) get a leading `'`. Numbers (negative coordinates) stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def selection_zip(store: Store, map_id: str, items: Sequence[ItemRecord]) -> bytes:
    """selection.csv and images/{id}.png for every item with a thumbnail."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("selection.csv", selection_csv(store, map_id, items))
        for p in items:
            if p.has_thumbnail:
                z.writestr(f"images/{p.id}.png", store.read_thumbnail(p.id))
    return buf.getvalue()
