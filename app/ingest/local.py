"""The in-process ingest, three stages running at once:

- reader processes (one per core) read each file once, hash it, decode, reduce and thumbnail it, a few
  batches ahead. Processes, not threads: Python-level work in image threads holds the GIL, and the model's
  many small torch calls in the main thread each wait for it (bench/encode.py measured 4x slower that way);
- the main thread prepares each batch (the space's own preprocess) and runs the model (CLIP + VAE);
- a writer thread places and stores the previous batch (thumbnail files, one SQLite transaction).
Each batch is stored in one transaction, so a build killed at any moment leaves whole batches only, and the
same command run again skips what is already there (by content hash)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..maps.service import MapService, Rejected
from ..maps.store import NewItem
from . import stages
from .sources import Record, Skip, Source, record_kind

PREFETCH_BATCHES = 2  # batches read and decoded ahead of the one being encoded
READ_CHUNK = 8  # records a reader process handles per task (fewer round trips than one by one)


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
    return run_build(
        service,
        source,
        title,
        map_id,
        strict,
        refit,
        lambda result, present: _add_here(service, source, result, present, progress, refit),
    )


def run_build(
    service: MapService,
    source: Source,
    title: str,
    map_id: str | None,
    strict: bool,
    refit: bool,
    add: Callable[[BuildResult, set[str]], None],
) -> BuildResult:
    """What every build does around adding the records (`add(result, content hashes already present)`, the
    local pipeline's or Ray's): --strict check, the map to add to (new or continued), its columns, the final
    refit, the time it took."""
    started = time.perf_counter()
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
    add(result, service.store.content_hashes(the_map) if continued else set())
    if refit and result.added and service.store.get_map(the_map).count:
        service.refit(the_map)
    result.seconds = time.perf_counter() - started
    return result


def store_batch(service: MapService, result: BuildResult, items: list[NewItem], refit: bool) -> None:
    """One batch, one transaction. With a final refit, each batch is placed against a bounded reference: the
    same cost per batch at any map size (the refit places everyone anyway)."""
    if items:
        service.add_items(result.map_id, items, service.settings.ingest_reference_items if refit else None)
        result.added += len(items)


def _add_here(
    service: MapService, source: Source, result: BuildResult, present: set[str], progress: bool, refit: bool
) -> None:
    settings = service.settings
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
        reader_pool(settings, frozenset(present), any(r.image_path for r in pending), service.space) as readers,
        ThreadPoolExecutor(1, "ingest-writer") as writer,
    ):
        written: Future | None = None

        def store(items: list[NewItem], n: int) -> None:
            store_batch(service, result, items, refit)
            bar.update(n)
            bar.set_postfix(added=result.added, skipped=len(result.skipped), refresh=False)

        for batch, loaded in read_ahead(readers, pending, settings):
            items = _encode(service, batch, loaded, result)
            if written is not None:
                written.result()  # one batch stored at a time, in order; its error stops the build here
            written = writer.submit(store, items, len(batch))
        if written is not None:
            written.result()


def reader_workers(settings) -> int:
    return settings.ingest_workers or os.cpu_count() or 1


def reader_pool(
    settings, present: frozenset, needed: bool = True, space=None
) -> ProcessPoolExecutor | ThreadPoolExecutor:
    """The reader processes (stages.read_images); with `space`, they prepare the model's input too (its
    image_preparer). Forked, as torch's DataLoader workers are (and, like them, one torch thread each): they
    start at once with everything imported; all of them start at the first task, before the writer thread
    does anything. With nothing to read, an idle thread pool (no processes started)."""
    if not needed:
        return ThreadPoolExecutor(1)
    prepare = space.image_preparer() if space is not None else None
    context = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(
        reader_workers(settings), context, initializer=stages.init_reader, initargs=(settings, present, prepare)
    )


def read_ahead(
    readers: ProcessPoolExecutor, records: Sequence[Record], settings
) -> Iterator[tuple[list[Record], list[stages.Decoded | Skip | None] | None]]:
    """Batches of records (each of one kind: pictures, prompts or vectors) with their pictures read (a list
    parallel to the batch; None for a batch without pictures), read PREFETCH_BATCHES batches ahead."""
    batches: list[list[Record]] = []
    for r in records:
        kind = record_kind(r)
        size = (
            settings.ingest_vector_batch_size
            if kind == "vector" and r.image_path is None
            else settings.ingest_batch_size
        )
        if not batches or len(batches[-1]) >= size or record_kind(batches[-1][0]) != kind:
            batches.append([])
        batches[-1].append(r)
    futures: list[list[Future] | None] = []

    def submit(k: int) -> None:
        pictures = [r for r in batches[k] if r.image_path]
        if len(pictures) != len(batches[k]):  # prompts and vectors without pictures: nothing to read
            futures.append(None)
            return
        futures.append(
            [
                readers.submit(stages.read_images, pictures[i : i + READ_CHUNK])
                for i in range(0, len(pictures), READ_CHUNK)
            ]
        )

    for k in range(min(PREFETCH_BATCHES + 1, len(batches))):
        submit(k)
    try:
        for k, batch in enumerate(batches):
            if k + PREFETCH_BATCHES + 1 < len(batches):
                submit(k + PREFETCH_BATCHES + 1)
            chunks = futures[k]
            futures[k] = None
            yield batch, None if chunks is None else [got for f in chunks for got in f.result()]
    finally:
        for chunks in futures:
            for f in chunks or ():
                f.cancel()


def _encode(
    service: MapService, batch: list[Record], loaded: list[stages.Decoded | Skip | None] | None, result: BuildResult
) -> list[NewItem]:
    decoded: list[stages.Decoded | None] = []
    kept: list[Record] = []
    for record, got in zip(batch, loaded or [None] * len(batch)):
        if isinstance(got, Skip):
            result.skipped.append(got)
        elif loaded is not None and got is None:
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
    # Prepared by the readers, or (a space without an image_preparer) in this thread, not a pool's: see the
    # module docstring (the GIL).
    vectors, latents = stages.encode_images(
        service.space,
        [d.model_input() for d in decoded],
        service.settings.encode_batch_size,
        run=service.queue.run,
    )
    return stages.image_items(decoded, vectors, latents)


def _check_strict(service: MapService, source: Source) -> None:
    """--strict: every record must be readable before anything is added (pictures are decoded once to know)."""
    skipped = list(source.skipped)
    pictures = [r for r in source.records if r.image_path]
    with reader_pool(service.settings, frozenset(), bool(pictures)) as readers:
        chunks = [pictures[i : i + READ_CHUNK] for i in range(0, len(pictures), READ_CHUNK)]
        for got in (g for gots in readers.map(stages.read_images, chunks) for g in gots):
            if isinstance(got, Skip):
                skipped.append(got)
    if skipped:
        raise StrictFailure(
            f"--strict: {len(skipped)} would be skipped, nothing was added:\n"
            + "\n".join(f"  {s.name}: {s.reason}" for s in skipped[:50])
            + (f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else "")
        )
