"""Metadata columns of a map (from `latentmap build`, app/ingest): what each column holds, and one column's
values for every point as a compact binary array the page can colour and filter by."""

from __future__ import annotations

import json
import struct

import numpy as np

from .service import Rejected
from .store import Store

VALUES_MAGIC = b"LMC1"
MISSING_CODE = 0xFFFFFFFF  # category code of a point without a value (or with a value beyond the listed ones)


def describe(store: Store, map_id: str, max_categories: int) -> list[dict]:
    """name, type, how many points have a value; categories with counts (most frequent first); numbers'
    min and max."""
    return [
        {"name": c.name, "type": c.type, **store.column_summary(c, map_id, max_categories)}
        for c in store.columns(map_id)
    ]


def values_payload(
    store: Store, map_id: str, name: str, max_categories: int, contains: str | None = None, version: int | None = None
) -> tuple[bytes, int]:
    """One column for all points, in points order (as /points.bin), little-endian:
    b"LMC1", uint32 header length, a JSON header ({name, type, n, encoding, categories?}), zero padding to a
    multiple of 4 bytes, then the values:
      number:   float32[n], NaN where a point has no value;
      category: uint32[n], an index into header.categories (0xFFFFFFFF: no value, or a rare one not listed);
      text:     uint8[n], 1 where the value contains `contains` (case-insensitive; required for text columns).
    Returns the body and the map version it belongs to (StaleVersion when `version` is given and old)."""
    column = store.column(map_id, name)
    values, current = store.column_values(map_id, column, version)
    header: dict = {"name": column.name, "type": column.type, "n": len(values)}
    if column.type == "number":
        body = np.array([np.nan if v is None else v for v in values], dtype="<f4").tobytes()
        header["encoding"] = "float32"
    elif column.type == "category":
        categories = [c["value"] for c in store.column_summary(column, map_id, max_categories)["categories"]]
        code = {v: i for i, v in enumerate(categories)}
        body = np.array([code.get(None if v is None else str(v), MISSING_CODE) for v in values], dtype="<u4").tobytes()
        header.update(encoding="uint32", categories=categories)
    else:
        if not contains:
            raise Rejected(f"column '{column.name}' is text: give contains= to get which points match")
        needle = contains.casefold()
        body = bytes(bytearray(int(v is not None and needle in str(v).casefold()) for v in values))
        header.update(encoding="uint8", contains=contains)
    head = json.dumps(header, ensure_ascii=False).encode()
    head += b" " * (-(len(VALUES_MAGIC) + 4 + len(head)) % 4)  # values start 4-byte aligned
    return VALUES_MAGIC + struct.pack("<I", len(head)) + head + body, current
