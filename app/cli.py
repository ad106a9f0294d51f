"""The `latentmap` command: serve, spaces, build, download, inspect, export, import, train-digits."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from .settings import DIGITS_SPACE_DIR, Settings

SKIPPED_NAMES_SHOWN = 20  # skipped files named for each reason at the end of a build (--list-skipped: all)


def _settings(args) -> Settings:
    loras = getattr(args, "lora", None)
    return Settings.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=getattr(args, "data_dir", None),
        space=getattr(args, "space", None),
        device=getattr(args, "device", None),
        checkpoint=getattr(args, "checkpoint", None),
        base=getattr(args, "base", None),
        loras="|".join(loras) if loras else None,
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        help="single-file .safetensors checkpoint of the space's family (turbo-h: SD 1.x) "
        "replacing its base weights (env LATENTMAP_CHECKPOINT)",
    )
    p.add_argument(
        "--base",
        help="hub id (already downloaded) or diffusers folder replacing the space's base pipeline (env LATENTMAP_BASE)",
    )
    p.add_argument(
        "--lora",
        action="append",
        metavar="FILE[:STRENGTH]",
        help="a LoRA (.safetensors file or cached hub id) decoded as a variant beside the base, at a default "
        "strength (1.0); repeatable (env LATENTMAP_LORAS, entries separated by |)",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where maps, thumbnails and caches live (env LATENTMAP_DATA_DIR; ./data)")
    p.add_argument(
        "--space",
        help="space name, local space directory or space file .toml/.json (env LATENTMAP_SPACE; auto = digits)",
    )
    p.add_argument("--device", help="auto, cpu or cuda (env LATENTMAP_DEVICE)")


def cmd_serve(args) -> int:
    import uvicorn

    from .main import create_app
    from .maps.store import Store
    from .spaces.own_models import precheck

    settings = _settings(args)
    Store.check_writable(settings.data_dir)  # a clear error now rather than a traceback from the lifespan
    precheck(settings)  # a checkpoint / LoRA of another family: one line now, before any model loads
    print(
        f"latentmap: serving on http://{settings.host}:{settings.port} (space: {settings.space}, "
        f"data: {settings.data_dir})",
        file=sys.stderr,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


def cmd_spaces(args) -> int:
    from .spaces.registry import describe_spaces, resolve_name

    settings = _settings(args)
    rows = describe_spaces(settings, None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    default = resolve_name(settings.space)
    for r in rows:
        mark = "*" if r["name"] == default else " "
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        print(f"{mark} {r['name']:<12} {state}\n    {r['description']}")
    return 0


def cmd_build(args) -> int:
    from .ingest import local, sources
    from .jobs import WorkQueue
    from .maps.service import MapService, Rejected
    from .maps.store import Store
    from .spaces.registry import load_space

    if not (args.prompts or args.images or args.table):
        print("latentmap build: give --prompts FILE, --images DIR and/or --table FILE", file=sys.stderr)
        return 2
    if not args.table and (args.image or args.text or args.label or args.vector):
        print("latentmap build: --image/--text/--label/--vector name columns of --table FILE", file=sys.stderr)
        return 2
    if args.prompts and not Path(args.prompts).is_file():
        print(f"latentmap build: prompts file {args.prompts} does not exist", file=sys.stderr)
        return 2
    if args.images and not Path(args.images).is_dir():
        print(f"latentmap build: images directory {args.images} does not exist", file=sys.stderr)
        return 2
    # A finished map when the command returns: prompt pictures are generated in line, not in the background.
    # Items are placed without layout epochs while building: the final fit places everything anyway.
    settings = _settings(args).with_(defer_prompt_images=False)
    if not args.no_refit:
        settings = settings.with_(place_refine_epochs=0)
        if not settings.umap_fit_sample:  # a million items: fit a sample, place the rest
            settings = settings.with_(umap_fit_sample=settings.ingest_fit_sample)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # its "Loading pipeline components" bar is not the build's progress
    space = load_space(settings)
    try:
        parts = []
        if args.prompts:
            parts.append(sources.prompts_source(args.prompts, settings))
        if args.images:
            parts.append(sources.folder_source(args.images, settings))
        if args.table:
            parts.append(
                sources.table_source(
                    args.table,
                    settings,
                    image=args.image,
                    text=args.text,
                    label=args.label,
                    vector=args.vector,
                    any_path=args.any_path,
                    dim=space.dim,
                )
            )
        source = sources.combine(parts)
    except sources.SourceError as e:
        print(f"latentmap build: {e}", file=sys.stderr)
        return 2
    store = Store(settings.data_dir, settings.decode_cache_bytes, settings.array_dtype)
    service = MapService(store, space, settings, WorkQueue(1))
    try:
        if args.ray is not None:
            from .ingest import ray_pipeline

            result = ray_pipeline.build(
                service,
                source,
                args.title,
                args.ray or None,
                map_id=args.map,
                strict=args.strict,
                progress=not args.quiet,
                refit=not args.no_refit,
            )
        else:
            result = local.build(
                service,
                source,
                args.title,
                map_id=args.map,
                strict=args.strict,
                progress=not args.quiet,
                refit=not args.no_refit,
            )
        from .maps.explore import Explorer
        from .maps.tiles import PointTiles

        # A big map's neighbour index and tile index, saved: a server's first visitor waits for neither.
        Explorer(service).prepare_index(result.map_id)
        if service.store.get_map(result.map_id).count >= settings.tile_index_file_min_items:
            PointTiles(service.store, settings).index(result.map_id)
    except KeyboardInterrupt:
        print(
            "latentmap build: interrupted; what was added is kept: run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    except Rejected as e:
        print(f"latentmap build: {e}", file=sys.stderr)
        return 1
    finally:
        service.close()
    _print_skipped(result.skipped, None if args.list_skipped else SKIPPED_NAMES_SHOWN)
    if result.ignored:
        print(f"ignored {result.ignored} files that are not pictures", file=sys.stderr)
    count = service.store.get_map(result.map_id).count
    url = f"/m/{result.map_id}" + (f"#key={result.edit_key}" if result.edit_key else "")
    print(
        json.dumps(
            {
                "id": result.map_id,
                "title": result.title,
                "edit_key": result.edit_key,
                "count": count,
                "added": result.added,
                "skipped": len(result.skipped),
                "present": result.present,
                "continued": result.continued,
                "url": url,
            },
            indent=2,
        )
    )
    serve = "latentmap serve" + (f" --data-dir {shlex.quote(args.data_dir)}" if args.data_dir else "")
    print(f"to open it: {serve}, then http://{settings.host}:{settings.port}{url}", file=sys.stderr)
    print(result.summary(), file=sys.stderr)
    return 0


def _print_skipped(skipped, names_shown: int | None) -> None:
    """Every skipped file named with its reason, grouped by reason: at most `names_shown` names a reason (None:
    all), then how many more, so that a folder of thousands of unsupported files stays readable."""
    by_reason: dict[str, list[str]] = {}
    for skip in skipped:
        by_reason.setdefault(skip.reason, []).append(skip.name)
    for reason, names in by_reason.items():
        for name in names[:names_shown]:
            print(f"skipped {name}: {reason}", file=sys.stderr)
        if names_shown is not None and len(names) > names_shown:
            print(f"skipped {len(names) - names_shown} more: {reason} (--list-skipped names all)", file=sys.stderr)


def _service(args):
    from .jobs import WorkQueue
    from .maps.service import MapService
    from .maps.store import Store
    from .spaces.registry import load_space

    settings = _settings(args)
    return MapService(
        Store(settings.data_dir, settings.decode_cache_bytes), load_space(settings), settings, WorkQueue(1)
    )


def cmd_export(args) -> int:
    from .maps.bundle import export_bundle
    from .maps.store import InvalidId, NotFound, Store

    settings = _settings(args)
    store = Store(settings.data_dir, settings.decode_cache_bytes)
    try:
        record = store.get_map(args.map_id)
    except (InvalidId, NotFound) as e:
        print(f"latentmap export: {e}", file=sys.stderr)
        return 1
    out = Path(args.out or f"latentmap-{record.id}.zip")
    out.write_bytes(export_bundle(store, record.id))  # needs no model: runs without loading the space
    print(f"exported map '{record.title}' ({record.count} items) to {out}")
    return 0


def cmd_import(args) -> int:
    from .maps.bundle import import_bundle
    from .maps.service import Rejected, SpaceMismatch

    path = Path(args.file)
    if not path.is_file():
        print(f"latentmap import: {path} does not exist", file=sys.stderr)
        return 2
    service = _service(args)
    try:
        record, key = import_bundle(service, path.read_bytes(), title=args.title)
    except (Rejected, SpaceMismatch) as e:
        print(f"latentmap import: {e}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "id": record.id,
                "title": record.title,
                "count": record.count,
                "edit_key": key,
                "url": f"/m/{record.id}#key={key}",
            },
            indent=2,
        )
    )
    return 0


def cmd_maps_list(args) -> int:
    from .maps.store import Store

    store = Store(_settings(args).data_dir)  # the store alone: no model is loaded
    try:
        rows = [
            {"id": r.id, "title": r.title, "space": r.space, "count": r.count, "created_at": r.created_at}
            for r in store.list_maps()
        ]
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no maps")
    for r in rows:
        print(f"{r['id']}  {r['space']:<12} {r['count']:>7} items  {r['title']}")
    return 0


def cmd_maps_delete(args) -> int:
    """For the operator of a server (no edit key): the map, its items, files, tours and cached decodes.
    Live presentations and quiz rounds of a running server end with it (they live in that process)."""
    from .maps.store import InvalidId, NotFound, Store

    store = Store(_settings(args).data_dir)
    try:
        record = store.get_map(args.map_id)
        store.delete_map(record.id)
    except (InvalidId, NotFound) as e:
        print(f"latentmap maps delete: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"deleted map {record.id} '{record.title}' ({record.count} items)")
    return 0


def cmd_train_digits(args) -> int:
    try:
        from training.digits import train
    except ModuleNotFoundError as e:
        if e.name != "training":
            raise
        print(
            "latentmap train-digits: the training recipes (training/) are not installed; run it from a "
            "checkout of the repository (pip install -e .)",
            file=sys.stderr,
        )
        return 2

    metrics = train(Path(args.out), seed=args.seed, threads=args.threads)
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def cmd_download(args) -> int:
    from .spaces import hub

    if args.space not in hub.SPACE_COMPONENTS:
        print(
            f"latentmap download: '{args.space}' has no weights to download; choose one of "
            f"{', '.join(hub.SPACE_COMPONENTS)}",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        for key, comp in hub.components(args.space).items():
            print(
                f"{key:<11} {comp.repo_id}@{comp.revision}  files: {', '.join(comp.allow_patterns)}  "
                f"(env LATENTMAP_{comp.env}_ID / _REVISION){'  [optional]' if comp.optional else ''}"
            )
        return 0
    paths = hub.download_space(args.space, progress=not args.quiet)
    print(json.dumps({key: str(path) for key, path in paths.items()}, indent=2))
    return 0


def cmd_inspect(args) -> int:
    from .spaces.model_files import ModelFileError, format_report, inspect

    settings = Settings.from_env()
    try:
        row = inspect(Path(args.file), hashes=not args.no_hash, max_header_bytes=settings.max_model_header_bytes)
    except ModelFileError as e:
        print(f"latentmap inspect: {e}", file=sys.stderr)
        return 1
    print(json.dumps(row, indent=2) if args.json else format_report(row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentmap", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the web app")
    p.add_argument("--host", help="bind address (env LATENTMAP_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env LATENTMAP_PORT; default 8000)")
    _add_common(p)
    _add_model_options(p)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("spaces", help="list the latent spaces and whether they can run here")
    _add_common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_spaces)

    p = sub.add_parser(
        "build",
        help="create (or continue) a map from prompts, a folder tree or a table",
        description="Create a map, or continue an interrupted build: run the same command again "
        "(or give --map ID) and what is already on the map is skipped.",
    )
    _add_common(p)
    p.add_argument("--title", default="Untitled map")
    p.add_argument("--prompts", help="text file, one prompt per line")
    p.add_argument(
        "--images",
        help="folder of PNG/JPEG/WebP/GIF images, read recursively; the relative folder "
        "becomes the 'folder' column (symlinks are followed only inside it)",
    )
    p.add_argument(
        "--table",
        help="CSV, Parquet or JSON Lines file, one item per row; other columns become "
        "metadata (number, category or text)",
    )
    p.add_argument("--image", metavar="COL", help="table column of image paths (relative to the table's folder)")
    p.add_argument("--text", metavar="COL", help="table column of prompts (with --image: searchable metadata)")
    p.add_argument("--label", metavar="COL", help="table column shown as the item's label")
    p.add_argument(
        "--vector",
        metavar="COL",
        help="table column of precomputed vectors of this space (a list of numbers): no model call",
    )
    p.add_argument(
        "--any-path", action="store_true", help="allow --image paths outside the table's folder (absolute or with ..)"
    )
    p.add_argument(
        "--map", metavar="ID", help="add to this map (default: the map of the same title and source, else a new one)"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="any file or row that would be skipped is an error: exit 1 and add nothing",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="decode and encode the pictures on Ray Data (pip install 'latentmap[ray]'): a cluster's "
        "address (ray://host:10001 or host:6379), or none for a local Ray (docs/ray.md)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--list-skipped",
        action="store_true",
        help=f"name every skipped file (default: at most {SKIPPED_NAMES_SHOWN} for each reason, and how many more)",
    )
    p.add_argument("--no-refit", action="store_true", help="keep the incremental placement; skip the final fit")
    p.set_defaults(fn=cmd_build)

    p = sub.add_parser("download", help="fetch a real space's weights (safetensors) into the Hugging Face cache")
    p.add_argument("space", help="unclip-h or turbo-h")
    p.add_argument("--dry-run", action="store_true", help="list repos, revisions and files; download nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_download)

    p = sub.add_parser(
        "inspect",
        help="what a .safetensors model file is: kind, family, lineage, sha256 (header "
        "only for kind and family; pickles are refused unopened)",
    )
    p.add_argument("file", help="a .safetensors file (checkpoint, LoRA/LyCORIS, VAE, embedding)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-hash", action="store_true", help="skip the sha256 (which reads the whole file)")
    p.set_defaults(fn=cmd_inspect)

    p = sub.add_parser("export", help="write a map as one bundle file (zip of JSON, npy, PNG)")
    p.add_argument("map_id")
    p.add_argument("--out", help="file to write (default latentmap-MAP_ID.zip)")
    _add_common(p)
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("import", help="create a map from a bundle file")
    p.add_argument("file")
    p.add_argument("--title", help="title for the new map (default: the bundle's)")
    _add_common(p)
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("maps", help="list or delete the maps of a data directory (for the server's operator)")
    maps_sub = p.add_subparsers(dest="maps_command", required=True)
    q = maps_sub.add_parser("list", help="every map: id, space, item count, title")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    _add_common(q)
    q.set_defaults(fn=cmd_maps_list)
    q = maps_sub.add_parser("delete", help="delete a map with its items, files, tours and cached decodes")
    q.add_argument("map_id")
    _add_common(q)
    q.set_defaults(fn=cmd_maps_delete)

    p = sub.add_parser("train-digits", help="train the digits space from scikit-learn's digits (~20 min CPU)")
    p.add_argument("--out", default=str(DIGITS_SPACE_DIR), help="space directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (results are bit-identical only for the same count)"
    )
    p.set_defaults(fn=cmd_train_digits)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Our own messages at INFO; libraries' only from WARNING (open_clip narrates every model load at INFO).
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for ours in ("latentmap", "app"):
        logging.getLogger(ours).setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, RuntimeError, FileNotFoundError, PermissionError) as e:
        print(f"latentmap {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
