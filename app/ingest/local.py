"""The in-process ingest: batches of records are read and decoded by a thread pool a few batches ahead while
the model encodes the current one; each batch is stored in one transaction, so a build killed at any moment
leaves whole batches only, and the same command run again skips what is already there (by content hash)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..maps.service import MapService, Rejected
from ..maps.store import NewItem
from . import stages
from .sources import Record, Skip, Source, record_kind

PREFETCH_BATCHES = 2  # batches read and decoded ahead of the one being encoded


class StrictFailure(Rejected):
    """--strict and some records would be skipped: nothing was added."""


@dataclass
class BuildResult:
    map_id: str
    title: str
    edit_key: str | None  # None when an existing map was continued (its key was shown when it was made)
    added: int = 0
    present: int = 0  # already on the map (an earlier, interrupted run)
    skipped: list[Skip] = field(default_factory=list)
    ignored: int = 0  # files in the folder that are not pictures
    seconds: float = 0.0
    continued: bool = False

    def summary(self) -> str:
        return (
            f"added {self.added}, skipped {len(self.skipped)}, already present {self.present}, "
            f"took {self.seconds:.1f} s"
        )


def choose_map(service: MapService, source: Source, title: str, map_id: str | None) -> tuple[str, str | None, bool]:
    """(map id, new edit key or None, continued): `map_id` if given, else the map of the same title and
    source in this space, else a new one."""
    if map_id:
        record = service.usable_map(map_id)
        return record.id, None, True
    found = service.store.find_map(title.strip(), service.space.name, source.description)
    if found is not None:
        return found.id, None, True
    record, key = service.store.create_map(_checked_title(service, title), service.space.name, source.description)
    return record.id, key, False


def _checked_title(service: MapService, title: str) -> str:
    title = title.strip()
    if not title:
        raise Rejected("title must not be empty")
    if len(title) > service.settings.max_title_chars:
        raise Rejected(f"title is longer than {service.settings.max_title_chars} characters")
    return title


def build(
    service: MapService,
    source: Source,
    title: str,
    map_id: str | None = None,
    strict: bool = False,
    progress: bool = True,
    refit: bool = True,
) -> BuildResult:
    started = time.perf_counter()
    settings = service.settings
    if strict:
        _check_strict(service, source)
    the_map, key, continued = choose_map(service, source, title, map_id)
    result = BuildResult(
        the_map,
        service.store.get_map(the_map).title,
        key,
        skipped=list(source.skipped),
        ignored=len(source.ignored),
        continued=continued,
    )
    service.store.declare_columns(the_map, source.columns)
    present = service.store.content_hashes(the_map) if continued else set()
    pending: list[Record] = []
    for r in source.records:
        if r.image_path is None and stages.content_hash(r) in present:
            result.present += 1  # prompts and vectors: known without reading anything
        else:
            pending.append(r)
    from tqdm import tqdm

    with (
        tqdm(
            total=len(source.records),
            initial=result.present,
            unit="item",
            desc="building",
            disable=not progress,
            dynamic_ncols=True,
        ) as bar,
        ThreadPoolExecutor(service.image_workers, "ingest") as pool,
    ):
        for batch, loaded in _read_ahead(pool, pending, settings, frozenset(present)):
            items = _encode(service, pool, batch, loaded, result)
            if items:
                # With a final refit, each batch is placed against a bounded reference: the same cost per batch
                # at any map size (the refit places everyone anyway).
                service.add_items(the_map, items, settings.ingest_reference_items if refit else None)
                result.added += len(items)
            bar.update(len(batch))
            bar.set_postfix(added=result.added, skipped=len(result.skipped), refresh=False)
    if refit and result.added and service.store.get_map(the_map).count:
        service.refit(the_map)
    result.seconds = time.perf_counter() - started
    return result


def _read_ahead(
    pool: ThreadPoolExecutor, records: Sequence[Record], settings, present: frozenset
) -> Iterator[tuple[list[Record], list[Future | None]]]:
    batches: list[list[Record]] = []
    for r in records:  # each batch holds one kind of record (pictures, prompts or vectors)
        kind = record_kind(r)
        size = (
            settings.ingest_vector_batch_size
            if kind == "vector" and r.image_path is None
            else settings.ingest_batch_size
        )
        if not batches or len(batches[-1]) >= size or record_kind(batches[-1][0]) != kind:
            batches.append([])
        batches[-1].append(r)
    futures: list[list[Future | None]] = []

    def submit(k: int) -> None:
        futures.append(
            [pool.submit(stages.read_image, r, settings, present) if r.image_path else None for r in batches[k]]
        )

    for k in range(min(PREFETCH_BATCHES + 1, len(batches))):
        submit(k)
    try:
        for k, batch in enumerate(batches):
            if k + PREFETCH_BATCHES + 1 < len(batches):
                submit(k + PREFETCH_BATCHES + 1)
            yield batch, futures[k]
    finally:
        for fs in futures:
            for f in fs:
                if f is not None:
                    f.cancel()


def _encode(
    service: MapService, pool: ThreadPoolExecutor, batch: list[Record], loaded: list[Future | None], result: BuildResult
) -> list[NewItem]:
    decoded: list[stages.Decoded | None] = []
    kept: list[Record] = []
    for record, future in zip(batch, loaded):
        got = future.result() if future is not None else None
        if isinstance(got, Skip):
            result.skipped.append(got)
        elif future is not None and got is None:
            result.present += 1
        else:
            kept.append(record)
            decoded.append(got)
    if not kept:
        return []
    if kept[0].vector is not None:  # a table of precomputed vectors (pictures, if any, give thumbnails)
        return stages.vector_items(kept, decoded)
    if kept[0].text is not None:
        return stages.text_items(service.space, kept, service.queue.run, service.settings.thumbnail_size)
    vectors, latents = stages.encode_images(
        service.space, [d.image for d in decoded], service.settings.encode_batch_size, pool.map, service.queue.run
    )
    return stages.image_items(decoded, vectors, latents)


def _check_strict(service: MapService, source: Source) -> None:
    """--strict: every record must be readable before anything is added (pictures are decoded once to know)."""
    skipped = list(source.skipped)
    with ThreadPoolExecutor(service.image_workers, "check") as pool:
        for got in pool.map(lambda r: stages.read_image(r, service.settings) if r.image_path else None, source.records):
            if isinstance(got, Skip):
                skipped.append(got)
    if skipped:
        raise StrictFailure(
            f"--strict: {len(skipped)} would be skipped, nothing was added:\n"
            + "\n".join(f"  {s.name}: {s.reason}" for s in skipped[:50])
            + (f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else "")
        )
