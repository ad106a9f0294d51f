"""What a build adds: records from a folder tree or a table, and what was skipped (named, with the reason).

Nothing here touches a model or the store. Files are only listed and stat-ed; reading and decoding happen in
stages.py, so a corrupt file is found (and named) there.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..settings import Settings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
# Pictures in formats we do not decode: skipped and named (other files in a folder are only counted).
UNSUPPORTED_IMAGE_SUFFIXES = (
    ".bmp",
    ".tif",
    ".tiff",
    ".svg",
    ".heic",
    ".heif",
    ".avif",
    ".ico",
    ".psd",
    ".jp2",
    ".raw",
    ".cr2",
    ".nef",
    ".dng",
    ".exr",
    ".tga",
)
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ROOT_FOLDER = "."  # the `folder` value of files directly in the built folder


class SourceError(ValueError):
    """The source as a whole cannot be read (missing folder, unknown column, unreadable table)."""


@dataclass(slots=True)
class Record:
    """One item to add: an image file, a prompt, or a precomputed vector; plus its metadata."""

    name: str  # how the summary names it: relative path, or "row N"
    label: str
    image_path: Path | None = None
    text: str | None = None
    vector: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    identity: str = ""  # what makes two records the same (see content_hash in stages.py)


@dataclass
class Skip:
    name: str
    reason: str


@dataclass
class Source:
    description: str  # "images:/abs/dir" or "table:/abs/file" (with its columns): finds the map to continue
    records: list[Record]
    skipped: list[Skip]
    columns: dict[str, str]  # metadata column -> number, category or text
    ignored: list[str] = field(default_factory=list)  # files in a folder that are not pictures (counted only)


def prompts_source(path: str | Path, settings: Settings) -> Source:
    """A text file, one prompt per line (blank lines ignored)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"prompts file {path} is not readable: {e}") from None
    records, skipped = [], []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if len(text) > settings.max_prompt_chars:
            skipped.append(
                Skip(
                    f"line {n}",
                    f"prompt is longer than {settings.max_prompt_chars} characters (LATENTMAP_MAX_PROMPT_CHARS)",
                )
            )
            continue
        records.append(Record(name=f"line {n}", label=text, text=text, identity=f"prompt:{text}"))
    return Source(description=f"prompts:{path.resolve()}", records=records, skipped=skipped, columns={})


def combine(parts: list[Source]) -> Source:
    """Several sources built into one map (e.g. --prompts and --images), in the order given."""
    if len(parts) == 1:
        return parts[0]
    columns: dict[str, str] = {}
    for part in parts:
        columns.update({k: v for k, v in part.columns.items() if k not in columns})
    return Source(
        description="+".join(p.description for p in parts),
        records=[r for p in parts for r in p.records],
        skipped=[s for p in parts for s in p.skipped],
        columns=columns,
        ignored=[n for p in parts for n in p.ignored],
    )


def record_kind(record: Record) -> str:
    return "vector" if record.vector is not None else "text" if record.text is not None else "image"


# ---------------------------------------------------------------------- folder trees
def folder_source(root: str | Path, settings: Settings) -> Source:
    """Every picture under `root`, recursively. A symlink is followed only when it resolves inside `root` (each
    real folder once, so link cycles end); one pointing outside, or nowhere, is skipped and named when it has a
    picture's name or points at a folder (otherwise it is not a picture: ignored). Hidden files and folders
    (".name") are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"images directory {root} does not exist")
    real_root = root.resolve()
    records, skipped, ignored = [], [], []
    seen_dirs: set[Path] = {real_root}

    def walk(folder: Path, rel: str) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            skipped.append(Skip(rel or ROOT_FOLDER, f"folder not readable ({e.strerror or e})"))
            return
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.name.startswith("."):
                ignored.append(name)
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    target = None
                if target is None or not target.is_relative_to(real_root):
                    # Named when it would have been a picture or a folder; a link to a text file is just not a
                    # picture (/usr/share has dozens of links to man pages and configs outside it).
                    suffix = path.suffix.lower()
                    if (
                        suffix not in IMAGE_SUFFIXES
                        and suffix not in UNSUPPORTED_IMAGE_SUFFIXES
                        and not (target is not None and target.is_dir())
                    ):
                        ignored.append(name)
                    elif target is None:
                        skipped.append(Skip(name, "broken symlink"))
                    else:
                        skipped.append(Skip(name, "symlink to outside the folder (not followed)"))
                    continue
            else:
                target = path
            if target.is_dir():
                real = target.resolve()
                if real in seen_dirs:
                    continue  # reached again through a link: listed once
                seen_dirs.add(real)
                walk(path, name)
                continue
            suffix = path.suffix.lower()
            if suffix in UNSUPPORTED_IMAGE_SUFFIXES:
                skipped.append(Skip(name, f"unsupported format {suffix} (PNG, JPEG, WebP and GIF are read)"))
            elif suffix not in IMAGE_SUFFIXES:
                ignored.append(name)
            else:
                try:
                    size = target.stat().st_size
                except OSError as e:
                    skipped.append(Skip(name, f"not readable ({e.strerror or e})"))
                    continue
                if size > settings.max_ingest_file_bytes:
                    skipped.append(
                        Skip(
                            name,
                            f"file is {size:,} bytes; the limit is "
                            f"{settings.max_ingest_file_bytes:,} (LATENTMAP_MAX_INGEST_FILE_BYTES)",
                        )
                    )
                    continue
                records.append(
                    Record(
                        name=name, label=entry.name, image_path=path, meta={"folder": rel or ROOT_FOLDER}, identity=name
                    )
                )

    walk(root, "")
    return Source(
        description=f"images:{real_root}",
        records=records,
        skipped=skipped,
        columns={"folder": "category"},
        ignored=ignored,
    )


# ---------------------------------------------------------------------- tables
def table_source(
    path: str | Path,
    settings: Settings,
    *,
    image: str | None = None,
    text: str | None = None,
    label: str | None = None,
    vector: str | None = None,
    any_path: bool = False,
    dim: int | None = None,
) -> Source:
    """One record per row. `image` paths are relative to the table's folder and must stay inside it unless
    `any_path` (the operator allows absolute paths and ..). `vector` rows must have `dim` numbers. Every other
    column becomes metadata, typed from its values."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"table {path} does not exist")
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SourceError(f"table {path}: give a .csv, .parquet or .jsonl file")
    if not (image or text or vector):
        raise SourceError("a table needs --image COL, --text COL or --vector COL")
    names, cols, n_rows, vectors = _read_table(path, kind, vector)
    roles = {"--image": image, "--text": text, "--label": label, "--vector": vector}
    for flag, col in roles.items():
        if col is not None and col not in names:
            raise SourceError(f"{flag} {col}: the table has no such column (it has {', '.join(names) or 'none'})")
    # In the table's order; an image row's text is searchable metadata (the picture is the item).
    meta_names = [n for n in names if n not in roles.values() or (image and n == text)]
    if len(meta_names) > settings.max_columns:
        raise SourceError(
            f"the table has {len(meta_names)} metadata columns; the limit is {settings.max_columns} "
            "(LATENTMAP_MAX_COLUMNS)"
        )
    missing = [None] * n_rows

    def column(name: str | None) -> list:
        return missing if name is None else cols.get(name, missing)

    columns = {n: column_type(column(n), settings.max_category_values) for n in meta_names}
    # Column by column (a million rows: no dict per row, one numpy check of all the vectors at once)
    cells = [(n, [_cell(v, columns[n]) for v in column(n)]) for n in meta_names]
    vector_problems = None if vectors is None else _vector_problems(vectors, dim)
    images, texts, labels, given_vectors = column(image), column(text), column(label), column(vector)
    identity = json.JSONEncoder(sort_keys=True, default=str).encode  # what json.dumps(sort_keys=True) makes
    base = path.resolve().parent
    records, skipped = [], []
    for i in range(n_rows):
        name = f"row {i + 1}"
        meta = {n: values[i] for n, values in cells if values[i] is not None}
        rec = Record(name=name, label="", meta=meta)
        problem = None
        if vector:
            if vector_problems is None:
                rec.vector, problem = _vector(given_vectors[i], dim)
            else:
                rec.vector, problem = vectors[i], vector_problems[i]
        if problem is None and image:
            rec.image_path, problem = _image_path(images[i], base, any_path)
            if rec.image_path is not None:
                rec.name = f"row {i + 1} ({images[i]})"
        if problem is None and text and not image:
            value = texts[i]
            rec.text = None if _missing(value) else str(value).strip()
            if not rec.text:
                problem = f"no text in column {text}"
            elif len(rec.text) > settings.max_prompt_chars:
                problem = f"text is longer than {settings.max_prompt_chars} characters (LATENTMAP_MAX_PROMPT_CHARS)"
        if problem:
            skipped.append(Skip(rec.name, problem))
            continue
        given = labels[i] if label else None
        rec.label = (
            str(given) if not _missing(given) else rec.image_path.name if rec.image_path else rec.text or name
        )[:200]
        rec.identity = identity(
            {
                "image": str(images[i]) if image else None,
                "text": rec.text,
                "label": rec.label,
                "meta": meta,
                "vector": None if rec.vector is None else hashlib.sha256(rec.vector.tobytes()).hexdigest(),
            }
        )
        records.append(rec)
    description = f"table:{path.resolve()}|image={image}|text={text}|label={label}|vector={vector}"
    return Source(description=description, records=records, skipped=skipped, columns=columns)


def _read_table(path: Path, kind: str, vector: str | None = None) -> tuple[list[str], dict[str, list], int, object]:
    """Column names, each column's values (a list; a row without the column: None), the row count, and for a
    Parquet `vector` column of equal-length float lists, the (n, dim) float32 array of them (else None)."""
    try:
        if kind == "csv":
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                rows = [{k: (None if v == "" else v) for k, v in r.items() if k is not None} for r in reader]
                return _columns(list(reader.fieldnames or []), rows)
        if kind == "jsonl":
            rows, names = [], {}
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise SourceError(f"table {path}: line {n} is not a JSON object")
                    rows.append(row)
                    names.update(dict.fromkeys(row))
            return _columns(list(names), rows)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise SourceError("reading Parquet needs pyarrow: pip install pyarrow") from None
        try:
            table = pq.read_table(path)
            vectors = _vector_array(table, vector)
        except pa.ArrowException as e:
            raise SourceError(f"table {path} is not readable as parquet: {e}") from None
        # A million rows of floats as Python lists would be gigabytes: the vector column stays one array.
        cols = {n: table.column(n).to_pylist() for n in table.column_names if vectors is None or n != vector}
        return table.column_names, cols, table.num_rows, vectors
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as e:
        raise SourceError(f"table {path} is not readable as {kind}: {e}") from None


def _columns(names: list[str], rows: list[dict]) -> tuple[list[str], dict[str, list], int, None]:
    return names, {n: [r.get(n) for r in rows] for n in names}, len(rows), None


def _vector_problems(vectors: np.ndarray, dim: int | None) -> list[str | None]:
    """What _vector says of each row of an (n, d) array, for all rows at once."""
    if dim is not None and vectors.shape[1] != dim:
        return [f"vector has {vectors.shape[1]} numbers; this space's vectors have {dim}"] * len(vectors)
    bad = ~(np.isfinite(vectors).all(axis=1) & vectors.any(axis=1))
    problems: list[str | None] = [None] * len(vectors)
    for i in np.flatnonzero(bad):
        problems[i] = "vector has non-finite numbers or is all zeros"
    return problems


def _vector_array(table, column: str | None) -> np.ndarray | None:
    """A Parquet list column of equal-length, null-free float lists as one (n, dim) float32 array (no Python
    floats); None when it is not one (rows are then checked one by one)."""
    if column is None or column not in table.column_names:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(column).combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        return None
    if col.null_count or len(col) == 0:
        return None
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max() or lengths[0] == 0:
        return None
    flat = pc.list_flatten(col)
    if flat.null_count or not pa.types.is_floating(flat.type) and not pa.types.is_integer(flat.type):
        return None
    return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(col), int(lengths[0]))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        f = float(str(value).strip())
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def column_type(values: list, max_categories: int) -> str:
    """number when every present value reads as a finite number; category when values repeat (at most
    `max_categories` distinct ones, and at most half as many as values, in small tables fewer); text otherwise."""
    present = [v for v in values if not _missing(v)]
    if present and all(_number(v) is not None for v in present):
        return "number"
    distinct = {str(v) for v in present}
    repeats = len(distinct) * 2 <= len(present) or (len(present) <= 20 and len(distinct) < len(present))
    if len(distinct) <= max_categories and repeats:
        return "category"
    return "text"


def _cell(value, kind: str):
    if _missing(value):
        return None
    if kind == "number":
        return _number(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _vector(value, dim: int | None) -> tuple[np.ndarray | None, str | None]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None, "vector is not a JSON list of numbers"
    try:
        v = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        return None, "vector is not a list of numbers"
    if v.ndim != 1 or v.size == 0:
        return None, "vector is not a list of numbers"
    if dim is not None and v.size != dim:
        return None, f"vector has {v.size} numbers; this space's vectors have {dim}"
    if not np.isfinite(v).all() or not np.any(v):
        return None, "vector has non-finite numbers or is all zeros"
    return v, None


def _image_path(value, base: Path, any_path: bool) -> tuple[Path | None, str | None]:
    if _missing(value):
        return None, "no image path"
    path = Path(str(value))
    full = path if path.is_absolute() else base / path
    if not any_path:
        try:
            inside = full.resolve().is_relative_to(base)
        except (OSError, RuntimeError):
            inside = False
        if path.is_absolute() or not inside:
            return None, "image path leads outside the table's folder (--any-path allows it)"
    if full.suffix.lower() not in IMAGE_SUFFIXES:
        return None, f"unsupported format {full.suffix or '(none)'} (PNG, JPEG, WebP and GIF are read)"
    return full, None
