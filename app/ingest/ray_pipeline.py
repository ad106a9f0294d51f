"""`latentmap build ... --ray [ADDRESS]`: the ingest's expensive part on Ray Data (docs/ray.md).

    from_items(picture records) -> map_batches(decode_batch)            CPU tasks: read, check, decode, thumbnail
                                -> map_batches(Encoder, ActorPoolStrategy) a pool of actors holding the space's
                                                                        models (one GPU each where CUDA is present)
                                -> write_parquet(shards)                 one folder per run, under the data dir
    then the shards are imported into the map on this machine, batch by batch (each batch one transaction,
    placed as the local pipeline places them), so an interrupted run continues like a local one.

The stage functions are the local pipeline's (stages.py): both give the same items and vectors.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from ..maps.service import MapService, Rejected
from ..maps.store import NewItem
from ..settings import Settings
from . import local, stages
from .sources import Record, Skip, Source, record_kind


def decode_batch(batch: dict, settings: Settings, present: frozenset) -> dict:
    """CPU stage: each record's file read, checked and decoded (stages.read_image); pictures travel on as raw
    RGB bytes (lossless, exactly what the local pipeline encodes), skips as their reason."""
    out = {"index": [], "skip": [], "hash": [], "thumbnail": [], "pixels": [], "width": [], "height": []}
    for index, path, name, identity in zip(batch["index"], batch["path"], batch["name"], batch["identity"]):
        got = stages.read_image(
            Record(name=str(name), label="", image_path=Path(str(path)), identity=str(identity)), settings, present
        )
        out["index"].append(int(index))
        if isinstance(got, stages.Decoded):
            out["skip"].append("")
            out["hash"].append(got.content_hash)
            out["thumbnail"].append(got.thumbnail_png)
            out["pixels"].append(got.image.tobytes())
            out["width"].append(got.image.width)
            out["height"].append(got.image.height)
        else:  # a Skip, or None: already on the map
            out["skip"].append(got.reason if isinstance(got, Skip) else "present")
            for key in ("hash", "thumbnail", "pixels"):
                out[key].append(b"" if key != "hash" else "")
            out["width"].append(0)
            out["height"].append(0)
    return {
        "index": np.array(out["index"], np.int64),
        "skip": np.array(out["skip"], dtype=object),
        "hash": np.array(out["hash"], dtype=object),
        "thumbnail": np.array(out["thumbnail"], dtype=object),
        "pixels": np.array(out["pixels"], dtype=object),
        "width": np.array(out["width"], np.int32),
        "height": np.array(out["height"], np.int32),
    }


class Encoder:
    """Model stage: one actor holds the space (loaded once) and encodes batches of decoded pictures."""

    def __init__(self, settings: Settings):
        from ..spaces.registry import load_space

        self.settings = settings
        self.space = load_space(settings)

    def __call__(self, batch: dict) -> dict:
        keep = [i for i, s in enumerate(batch["skip"]) if not s]
        images = [
            Image.frombytes("RGB", (int(batch["width"][i]), int(batch["height"][i])), batch["pixels"][i]) for i in keep
        ]
        vectors, latents = stages.encode_images(self.space, images, self.settings.encode_batch_size)
        # Plain binary columns (float32 bytes): shards any Parquet reader understands, nothing Ray-specific.
        n = len(batch["index"])
        vector_out, latent_out, shape_out = [b""] * n, [b""] * n, [""] * n
        for k, i in enumerate(keep):
            vector_out[i] = np.ascontiguousarray(vectors[k], np.float32).tobytes()
            if latents[k] is not None:
                latent_out[i] = np.ascontiguousarray(latents[k], np.float32).tobytes()
                shape_out[i] = ",".join(str(d) for d in np.shape(latents[k]))
        return {
            "index": batch["index"],
            "skip": batch["skip"],
            "hash": batch["hash"],
            "thumbnail": batch["thumbnail"],
            "vector": np.array(vector_out, dtype=object),
            "latent": np.array(latent_out, dtype=object),
            "latent_shape": np.array(shape_out, dtype=object),
        }


def _init_ray(address: str | None, settings: Settings):
    """Ray, connected; and whether we started it (then we stop it when done)."""
    try:
        import ray
    except ImportError:
        raise Rejected("--ray needs Ray Data: pip install 'latentmap[ray]'") from None
    if ray.is_initialized():
        return ray, False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # a local Ray on this machine
        ray.init(num_cpus=settings.ray_num_cpus or None, include_dashboard=False, log_to_driver=False)
    return ray, True


def encode_on_ray(
    records: list[Record], settings: Settings, address: str | None, shard_dir: Path, present: frozenset
) -> Path:
    """Run decode and encode on Ray; the results as Parquet shards in `shard_dir`."""
    ray, started = _init_ray(address, settings)
    try:
        return _run(ray, records, settings, shard_dir, present)
    finally:
        if started:
            ray.shutdown()


def _run(ray, records: list[Record], settings: Settings, shard_dir: Path, present: frozenset) -> Path:
    import torch

    gpus = 1 if torch.cuda.is_available() else 0
    actors = settings.ray_encode_actors or max(1, int(ray.cluster_resources().get("GPU", 0)) if gpus else 1)
    items = [
        {"index": i, "path": str(r.image_path), "name": r.name, "identity": r.identity} for i, r in enumerate(records)
    ]
    ds = ray.data.from_items(items)
    ds = ds.map_batches(
        decode_batch,
        batch_size=settings.ingest_batch_size,
        batch_format="numpy",
        fn_kwargs={"settings": settings, "present": present},
    )
    ds = ds.map_batches(
        Encoder,
        batch_size=settings.ingest_batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus,
        num_cpus=0 if gpus else 1,
        fn_constructor_kwargs={"settings": settings},
    )
    ds.write_parquet(str(shard_dir))
    return shard_dir


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
        shard_dir = settings.data_dir / "ingest" / f"{result.map_id}-{uuid.uuid4().hex[:8]}"
        try:
            if source.records:
                encode_on_ray(source.records, settings, address, shard_dir, frozenset(present))
                _import_shards(service, source.records, shard_dir, result, progress, refit)
        finally:
            shutil.rmtree(shard_dir, ignore_errors=True)

    return local.run_build(service, source, title, map_id, strict, refit, add)


def _import_shards(
    service: MapService,
    records: list[Record],
    shard_dir: Path,
    result: local.BuildResult,
    progress: bool,
    refit: bool,
) -> None:
    import pyarrow.parquet as pq
    from tqdm import tqdm

    settings = service.settings
    files = sorted(shard_dir.glob("*.parquet"))
    with tqdm(total=len(records), unit="item", desc="importing", disable=not progress, dynamic_ncols=True) as bar:
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=settings.ingest_batch_size):
                rows = batch.to_pylist()
                items = []
                for row in sorted(rows, key=lambda r: r["index"]):  # source order within a batch
                    record = records[row["index"]]
                    if row["skip"] == "present":
                        result.present += 1
                    elif row["skip"]:
                        result.skipped.append(Skip(record.name, row["skip"]))
                    else:
                        vector = np.frombuffer(row["vector"], np.float32).copy()
                        latent = (
                            None
                            if not row["latent"]
                            else np.frombuffer(row["latent"], np.float32)
                            .reshape([int(d) for d in row["latent_shape"].split(",")])
                            .copy()
                        )
                        items.append(
                            NewItem(
                                kind="image",
                                label=record.label,
                                vector=vector,
                                decode_vector=vector,
                                latent=latent,
                                thumbnail_png=row["thumbnail"],
                                content_hash=row["hash"],
                                meta=record.meta or None,
                            )
                        )
                local.store_batch(service, result, items, refit)
                bar.update(len(rows))
