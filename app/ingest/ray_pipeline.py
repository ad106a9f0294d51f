"""`latentmap build ... --ray [ADDRESS]`: the ingest's expensive part on Ray Data (docs/ray.md).

    from_items(picture records) -> map_batches(decode_batch)            CPU tasks: read, check, decode, thumbnail
                                -> map_batches(Encoder, ActorPoolStrategy) a pool of actors holding the space's
                                                                        models (one GPU each where CUDA is present)
                                -> iter_batches                          back to this machine as they are done
    and each batch is imported into the map here as it arrives (one transaction, placed as the local pipeline
    places them), while the cluster goes on: an interrupted run continues like a local one.

Not write_parquet and read back: on a cluster of several machines its write tasks put each shard on the disk of
whichever node ran them (Ray's docs say so), where this machine cannot read it; and the import could only start
once the last shard is written. Batches come back through Ray's object store, from any node.

The stage functions are the local pipeline's (stages.py): both give the same items and vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
from PIL import Image

from ..maps.service import MapService, Rejected
from ..maps.store import NewItem
from ..settings import Settings
from . import local, stages
from .sources import Record, Skip, Source, record_kind


def decode_batch(batch: dict, settings: Settings, present: frozenset, prepare: Callable | None) -> Iterator[dict]:
    """CPU stage: each record's file read, checked, decoded, thumbnailed and, with `prepare` (the space's
    image_preparer), made into the model's input (stages.read_prepared, as the local readers do): what travels
    to the encoders is that small input, not the picture. Plain columns only (no pickles): the skip reason
    (empty when decoded, "present" when already on the map), hash, thumbnail, and the model input as float32
    bytes with its shape, or (without `prepare`) the RGB picture's bytes with its size.

    Yields ingest_batch_size rows at a time: a task takes ray_decode_batch_size records, but holds only one
    encoder batch of model inputs (a ViT-H space's are 3.6 MB a picture) before Ray has it."""
    rows = settings.ingest_batch_size
    for start in range(0, len(batch["index"]), rows):
        out = {key: [] for key in _DECODED_COLUMNS}
        for path, name, identity in zip(*(batch[key][start : start + rows] for key in ("path", "name", "identity"))):
            record = Record(name=str(name), label="", image_path=Path(str(path)), identity=str(identity))
            got = stages.read_prepared(record, settings, present, prepare)
            decoded = got if isinstance(got, stages.Decoded) else None
            clip, vae = decoded.prepared if decoded is not None and decoded.prepared is not None else (None, None)
            image = decoded.image if decoded is not None else None
            out["skip"].append(_skip_reason(got))
            out["hash"].append(decoded.content_hash if decoded else "")
            out["thumbnail"].append(decoded.thumbnail_png if decoded else b"")
            for key, array in (("clip", clip), ("vae", vae)):
                out[key].append(b"" if array is None else np.ascontiguousarray(array, np.float32).tobytes())
                out[f"{key}_shape"].append("" if array is None else _shape_text(array.shape))
            out["pixels"].append(b"" if image is None else image.tobytes())
            out["size"].append("" if image is None else _shape_text(image.size))
        columns = {key: np.array(values, dtype=object) for key, values in out.items()}
        yield {"index": batch["index"][start : start + rows], **columns}


_DECODED_COLUMNS = ("skip", "hash", "thumbnail", "clip", "clip_shape", "vae", "vae_shape", "pixels", "size")


def _shape_text(shape) -> str:
    return ",".join(str(int(d)) for d in shape)


def _array(data: bytes, shape: str) -> np.ndarray | None:
    """float32 bytes with their _shape_text back as an array (writable: torch takes it as it is)."""
    return np.frombuffer(data, np.float32).reshape([int(d) for d in shape.split(",")]).copy() if data else None


def _model_input(batch: dict, i: int):
    """Row i of decode_batch's columns as what stages.encode_images takes."""
    if batch["clip"][i]:
        prepared = (_array(batch["clip"][i], batch["clip_shape"][i]), _array(batch["vae"][i], batch["vae_shape"][i]))
        return stages.Decoded(None, None, b"", "", prepared).model_input()
    width, height = (int(d) for d in batch["size"][i].split(","))
    return Image.frombytes("RGB", (width, height), batch["pixels"][i])


class Encoder:
    """Model stage: one actor holds the space (loaded once) and encodes batches of decoded pictures."""

    def __init__(self, settings: Settings):
        from ..spaces.registry import load_space

        self.settings = settings
        self.space = load_space(settings, decoder_variants=False)  # it only encodes

    def __call__(self, batch: dict) -> dict:
        keep = [i for i, skip in enumerate(batch["skip"]) if not skip]
        vectors, latents = stages.encode_images(
            self.space, [_model_input(batch, i) for i in keep], self.settings.encode_batch_size
        )
        # Plain binary columns (float32 bytes): nothing Ray-specific travels back, and nothing is unpickled.
        n = len(batch["skip"])
        vector_out, latent_out, shape_out = [b""] * n, [b""] * n, [""] * n
        for k, i in enumerate(keep):
            vector_out[i] = np.ascontiguousarray(vectors[k], np.float32).tobytes()
            if latents[k] is not None:
                latent_out[i] = np.ascontiguousarray(latents[k], np.float32).tobytes()
                shape_out[i] = _shape_text(np.shape(latents[k]))
        return {
            "index": batch["index"],
            "skip": batch["skip"],
            "hash": batch["hash"],
            "thumbnail": batch["thumbnail"],
            "vector": np.array(vector_out, dtype=object),
            "latent": np.array(latent_out, dtype=object),
            "latent_shape": np.array(shape_out, dtype=object),
        }


def _skip_reason(got: stages.Decoded | Skip | None) -> str:
    """The batches' `skip` column: empty for an encoded picture, "present" for one already on the map."""
    if isinstance(got, stages.Decoded):
        return ""
    return got.reason if isinstance(got, Skip) else "present"


def _init_ray(address: str | None, settings: Settings):
    """Ray, connected; and whether we started it (then we stop it when done)."""
    try:
        import ray
    except ImportError:
        raise Rejected("--ray needs Ray Data: pip install 'latentmap[ray]'") from None
    if ray.is_initialized():
        return ray, False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}  # our progress bar, not Ray's narration
    if address:
        ray.init(address=address, **quiet)
    else:  # a local Ray on this machine
        ray.init(num_cpus=settings.ray_num_cpus or None, include_dashboard=False, **quiet)
    return ray, True


def encode_on_ray(
    records: list[Record],
    settings: Settings,
    address: str | None,
    present: frozenset,
    prepare: Callable | None = None,
) -> Iterator[dict]:
    """Decode and encode on Ray; yields the encoded batches (Encoder's columns, numpy) as they come back, in the
    order they finish. `prepare`: the space's image_preparer (None: the encoders prepare the pictures)."""
    ray, started = _init_ray(address, settings)
    try:
        yield from _run(ray, records, settings, present, prepare)
    finally:
        if started:
            ray.shutdown()


def _run(ray, records: list[Record], settings: Settings, present: frozenset, prepare: Callable | None):
    # Back in batches of ingest_batch_size (one import transaction each), whatever the blocks' size.
    return _dataset(ray, records, settings, present, prepare).iter_batches(
        batch_size=settings.ingest_batch_size, batch_format="numpy", prefetch_batches=2
    )


def _dataset(ray, records: list[Record], settings: Settings, present: frozenset, prepare: Callable | None):
    """The pipeline as a Ray Dataset, not yet run: decode tasks, then the encoder actors."""
    import torch
    from ray.util.debug import log_once

    gpus = 1 if torch.cuda.is_available() else 0
    actors = settings.ray_encode_actors or max(1, int(ray.cluster_resources().get("GPU", 0)) if gpus else 1)
    items = [
        {"index": i, "path": str(r.image_path), "name": r.name, "identity": r.identity} for i, r in enumerate(records)
    ]
    # The build shows its own progress bar (rate, ETA); Ray Data's would print over it, or log every 10 s.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    log_once("ray_data_progress_manager_disabled")  # its one-time "progress bars disabled" warning: we know
    # One block per decode task: Ray takes ~0.1-0.2 s between one task's end and the next one's start here,
    # half of a 64-picture task (bench/README.md §1).
    decode_rows = settings.ray_decode_batch_size
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // decode_rows)))
    # A decode task is one CPU of single-threaded work. The two stages must ask for different resources: Ray Data
    # fuses a task stage into the actor stage after it when their resources are equal, and then every picture is
    # decoded inside the encoder actors, one at a time, whatever the cluster's size (so it was here, with 0.5 CPU
    # each, until 2026-12-02). Without a GPU the encoder holds half a CPU (Ray then gives its torch one thread).
    ds = ds.map_batches(
        decode_batch,
        batch_size=decode_rows,
        batch_format="numpy",
        num_cpus=1,
        fn_kwargs={"settings": settings, "present": present, "prepare": prepare},
    )
    return ds.map_batches(
        Encoder,
        batch_size=settings.ingest_batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus,
        num_cpus=0 if gpus else 0.5,
        fn_constructor_kwargs={"settings": settings},
    )


def build(
    service: MapService,
    source: Source,
    title: str,
    address: str | None,
    map_id: str | None = None,
    strict: bool = False,
    progress: bool = True,
    refit: bool = True,
) -> local.BuildResult:
    """The local build's contract (map choice, skips, resume by content hash, summary) with the pictures
    decoded and encoded on Ray."""
    if any(record_kind(r) != "image" or r.image_path is None for r in source.records):
        raise Rejected(
            "--ray encodes pictures: use it with --images DIR or --table FILE --image COL "
            "(prompts and precomputed vectors need no cluster)"
        )
    settings = service.settings

    def add(result: local.BuildResult, present: set[str]) -> None:
        if source.records:
            batches = encode_on_ray(
                source.records, settings, address, frozenset(present), service.space.image_preparer()
            )
            with closing(batches):  # an error here stops the run (and a Ray we started) at once
                _import_batches(service, source.records, batches, result, progress, refit)

    return local.run_build(service, source, title, map_id, strict, refit, add)


def _import_batches(
    service: MapService,
    records: list[Record],
    batches: Iterator[dict],
    result: local.BuildResult,
    progress: bool,
    refit: bool,
) -> None:
    """Each encoded batch into the map as it arrives: one transaction, in source order within the batch."""
    from tqdm import tqdm

    with tqdm(total=len(records), unit="item", desc="building on Ray", disable=not progress, dynamic_ncols=True) as bar:
        # Until the first batch: Ray starting, and its workers importing torch and loading the model (seconds).
        bar.set_postfix_str("starting Ray and its workers")
        for cols in batches:
            items = []
            for k in np.argsort(cols["index"], kind="stable"):
                record, skip = records[int(cols["index"][k])], str(cols["skip"][k])
                if skip == "present":
                    result.present += 1
                elif skip:
                    result.skipped.append(Skip(record.name, skip))
                else:
                    vector = np.frombuffer(cols["vector"][k], np.float32)
                    items.append(
                        NewItem(
                            kind="image",
                            label=record.label,
                            vector=vector,
                            decode_vector=vector,
                            latent=_array(cols["latent"][k], str(cols["latent_shape"][k])),
                            thumbnail_png=bytes(cols["thumbnail"][k]),
                            content_hash=str(cols["hash"][k]),
                            meta=record.meta or None,
                        )
                    )
            local.store_batch(service, result, items, refit)
            bar.set_postfix_str("", refresh=False)
            bar.update(len(cols["index"]))
