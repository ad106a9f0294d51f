"""One Settings object. Every limit is a named field with a documented default.

Values come from (lowest to highest priority): the defaults below, `LATENTMAP_<NAME>` environment variables,
then CLI flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO_ROOT / "templates"
STATIC_DIR = REPO_ROOT / "static"
DIGITS_SPACE_DIR = Path(__file__).resolve().parent / "spaces" / "weights" / "digits"
DEFAULT_DECODE_CACHE_BYTES = 2 * 1024**3
DEFAULT_ARRAY_DTYPE = "float32"  # of new maps' vector files (app/maps/store.py; float16: bench/README.md)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"  # bind address; loopback unless asked otherwise
    port: int = 8000
    data_dir: Path = Path("./data")  # SQLite database, thumbnails, decode cache, built spaces
    space: str = "auto"  # space name; "auto" = digits (CPU) unless configured otherwise
    device: str = "auto"  # "auto" = cuda if available, else cpu
    cors_origins: str = ""  # comma-separated origins; empty = CORS off
    list_maps: bool = True  # GET /api/maps lists every map; off = only people holding a map's link find it

    # Limits (HTTP 4xx beyond them)
    max_prompts_per_request: int = 200
    max_prompt_chars: int = 300
    max_files_per_request: int = 64
    max_file_bytes: int = 10 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024  # whole request body, checked while it streams in
    max_image_pixels: int = 40_000_000  # decompression-bomb guard
    max_title_chars: int = 200
    max_items_per_map: int = 2_000_000  # bench/scale.py builds and serves 1,000,000
    # `latentmap build` (app/ingest): local collections
    max_ingest_file_bytes: int = 256 * 1024 * 1024  # a bigger file in a built folder or table is skipped and named
    ingest_batch_size: int = 64  # records read, encoded and stored (one transaction) at a time
    ingest_workers: int = 0  # processes that read, decode and thumbnail pictures while building; 0 = one per core
    ingest_max_side: int = 1024  # decoded pictures are reduced to this many pixels a side before the model stages
    ingest_vector_batch_size: int = 4096  # rows of precomputed vectors (--vector) stored per transaction
    ingest_reference_items: int = 5000  # while building, new items are placed against the map's first this many
    ingest_fit_sample: int = 20_000  # a build's final fit: bigger maps are fitted on a sample this size, the rest
    # placed (used when umap_fit_sample is 0; 0 here too = fit every item)
    # `latentmap build --ray` (app/ingest/ray_pipeline.py, docs/ray.md)
    ray_num_cpus: int = 0  # CPUs of a local Ray (no address given); 0 = all of this machine's
    ray_encode_actors: int = 0  # encoder actors (each holds the models); 0 = one per GPU of the cluster, else 1
    ray_decode_batch_size: int = 256  # pictures one Ray decode task reads: Ray spends ~0.1-0.2 s between tasks
    max_columns: int = 64  # metadata columns of a map (table columns besides --image/--text/--vector/--label)
    max_category_values: int = 1000  # a column with more distinct values is text, not a category
    max_seed: int = 2**31 - 1
    max_neighbors: int = 100  # k of /neighbors and /search
    max_path_points: int = 32  # vertices of a drawn path
    max_path_steps: int = 24  # images decoded along a path
    max_bundle_bytes: int = 512 * 1024 * 1024  # uncompressed size of an imported bundle
    # files in an imported bundle (its thumbnails and a few more), counted before the zip is opened
    max_bundle_entries: int = 100_000
    max_tour_steps: int = 50
    max_caption_chars: int = 500
    max_presentation_seconds: int = 3 * 3600  # a presentation ends by itself after this
    max_followers: int = 200  # SSE connections per presentation

    # Hardening (issue 16; README "Limits and guarantees")
    max_json_bytes: int = 1024 * 1024  # body of any request that is not a multipart upload (413 beyond)
    body_timeout_seconds: float = 60.0  # a request body must arrive within this (408): no trickled bodies
    # JSON bodies this big or bigger are parsed off the event loop, one at a time (app/api/limits.py): parsing holds
    # the GIL (~25-80 ms a MiB of small lists). Ordinary requests are far smaller (a 64-point path is ~1.5 kB).
    large_json_bytes: int = 64 * 1024
    max_large_json_in_flight: int = 4  # large JSON bodies read or parsed at once; 429 with Retry-After beyond
    # large JSON bodies parsed per second at most (the loop reads each one through h11, in Python, first)
    max_large_json_per_second: int = 20
    # `[` and `{` in a large JSON body (422 beyond, before parsing): valid requests hold at most a few thousand
    # (a 2,000-vertex lasso, a 50-step tour of 32-point paths); 87,000 pairs took 150 ms to parse and free
    max_json_containers: int = 10_000
    max_error_chars: int = 300  # validation errors answer one short message, at most this long
    max_selection_items: int = 100_000  # item ids or indices in one selection export
    coordinate_margin: float = 10.0  # x, y further than this many map widths outside the map's points: 422
    max_manifest_bytes: int = 16 * 1024 * 1024  # a bundle's latentmap-bundle.json
    max_manifest_depth: int = 8  # nesting of objects and lists in a bundle manifest
    max_bundle_thumbnail_pixels: int = 512 * 512  # each thumbnail in a bundle (ours are thumbnail_size²)
    max_abs_coordinate: float = 10_000.0  # no stored or asked-for x, y beyond ±this (maps span about ±1)
    max_tours_per_map: int = 200
    max_upload_pixels_in_flight: int = 120_000_000  # decoded upload pixels a request holds at once (~360 MB RGB)
    max_quiz_rounds: int = 1000  # live quiz rounds on the server; beyond, a new round is refused (429)
    max_quiz_rounds_per_map: int = 20  # beyond, the map's own oldest round is dropped
    max_quiz_round_seconds: int = 3 * 3600  # a quiz round is forgotten after this
    max_guesses_per_round: int = 500  # players in one quiz round (a player may change their guess)
    max_presentations: int = 200  # live presentations on the server (429 beyond)
    max_presentations_per_map: int = 5  # live presentations of one map (429 beyond: end one first)
    cluster_cache_maps: int = 16  # maps whose clusters stay in memory
    # Above this many points HDBSCAN fits a sample of this size (seeded by the map's positions) and the rest take
    # their nearest sampled point's cluster: seconds on a 1M map instead of unbounded time; below, all points.
    cluster_fit_sample: int = 20_000
    expensive_read_min_items: int = 5_000  # neighbours on maps from this size go through the work queue

    # Work queue in front of the model: requests waiting beyond this get 429 with Retry-After.
    max_queued_jobs: int = 16
    # Threads that decode uploads, prepare model inputs and make thumbnails beside the model work
    # (0 = one per CPU core, at most 8).
    image_workers: int = 0
    encode_batch_size: int = 16  # images a model call encodes; the next batch is prepared meanwhile

    # Projection and decoding
    umap_min_items: int = 20  # below this a map is projected with PCA (exact, deterministic)
    place_neighbors: int = 8  # existing items used to place a new one without a refit
    place_refine_epochs: int = 50  # UMAP layout epochs for new points against the fixed map (0 = weighted mean only)
    blend_neighbors: int = 8  # items blended to turn a clicked 2D point into a vector
    blend_power: float = 2.0  # inverse-distance weight exponent
    latent_strength: float = 0.8  # noise put on the blended VAE latent (1.0 = ignore latents)
    thumbnail_size: int = 128
    # Spaces that generate an image per prompt (unclip-h, turbo-h): add the prompt at once and generate its image
    # in the background (off = the request waits for every image)
    defer_prompt_images: bool = True
    create_demo_map: bool = True  # create the "Digits" map on first start of the digits space
    warm_umap: bool = True  # compile UMAP's numba code in the background at start
    # UMAP fit speed (bench/projection.py; figures in bench/README.md)
    # "auto" = cuML's UMAP where importable with a CUDA device, else umap-learn; or "umap-learn" / "cuml"
    umap_backend: str = "auto"
    # up to this many items the neighbour graph is exact (blocked matmul), above it NN-descent
    umap_exact_knn_max_items: int = 30_000
    # maps with more items are fitted (refit, first fit) on a deterministic sample of this many and the rest placed
    # through it: a refit of 1M items takes minutes, not hours (bench/scale.py); 0 = fit every item
    umap_fit_sample: int = 20_000
    # layout epochs; 0 = auto: 500 below 4,096 items, 200 from 4,096 (the layout is single-threaded: seeded)
    umap_epochs: int = 0
    # Decoder variants: LoRAs, fine-tunes, upscalers (app/spaces/variants.py, docs/variants.md)
    max_lora_scale: float = 2.0  # largest LoRA strength a decode may ask for (0 = LoRA off)
    max_compare_variants: int = 6  # decoders in one /compare request (each one is a decode)
    max_compare_path_steps: int = 12  # images per decoder along a compared path
    max_upscale_input_pixels: int = 512 * 512  # larger decoded images are refused by /upscale
    max_align_items: int = 4000  # shared items two maps may have for /align (k-NN is n x n in memory)
    # Point tiles and thumbnail atlases (app/maps/tiles.py): what the map page draws of big maps
    tile_points: int = 4096  # most points in one point tile (the page draws about 4-9 tiles at once)
    tile_cells_log2: int = 5  # a tile's points are spread over 2^5 x 2^5 cells (round-robin) so no cluster vanishes
    tile_max_zoom: int = 16  # deepest tile zoom; points beyond tile_points in one tile at this zoom are not drawn
    tile_thumbs_side: int = 8  # at most 8 x 8 pictures per tile (one per cell): they never pile up
    tile_thumb_px: int = 64  # a picture's cell in a tile's atlas, pixels
    tile_index_maps: int = 4  # maps whose tile index (Morton order + levels, ~30 B/point) stays in memory
    # from this many points a map's tile index is saved beside its arrays (arrays/<map>/tiles-v*.npz, ~40 B a
    # point; `latentmap build` writes it): a server's first visitor reads it instead of waiting for it to be built
    tile_index_file_min_items: int = 100_000
    tile_cache_bytes: int = 256 * 1024 * 1024  # made tiles and atlases kept in memory (oldest dropped first)
    max_selection_polygon_vertices: int = 2000  # vertices of a lasso sent to POST /selection
    # Your own model files (app/spaces/own_models.py, docs/own-models.md); CLI: serve --checkpoint/--base/--lora
    checkpoint: str = (
        ""  # single-file SD checkpoint (.safetensors path or hub "owner/repo/file") replacing the space's base weights
    )
    base: str = (
        ""  # hub id or diffusers folder replacing the space's base pipeline (turbo-h: SD 1.5, unclip-h: SD 2.1 unCLIP)
    )
    loras: str = ""  # LoRAs decoded as variants beside the base: "[NAME=]FILE[:STRENGTH]" entries separated by "|" (CLI: --lora, repeatable)
    max_model_header_bytes: int = (
        100 * 1024 * 1024
    )  # safetensors header a model file may have (the safetensors library's own cap)
    # Neighbours in the original space (app/maps/index.py; bench/neighbors.py)
    # from this many items an approximate faiss index (if installed), below it exact search
    neighbor_index_min_items: int = 100_000
    neighbor_index_nprobe: int = 16  # IVF lists searched per query (recall vs speed)
    # from this many items a map's projection vectors (what neighbours and placement compare) are read from a
    # memory-mapped file beside its arrays (arrays/<map>/map-vectors-*.bin) instead of held in the server's memory
    map_vectors_file_min_items: int = 100_000
    # Decode cache (app/maps/decode_cache.py): decoded clicks, paths, variants, upscales and terrain tiles on disk,
    # oldest written evicted first beyond this many bytes; anything evicted is decoded again, bit for bit.
    decode_cache_bytes: int = DEFAULT_DECODE_CACHE_BYTES
    # Array files (app/maps/store.py): "float32" or "float16" for new maps' vectors and decode vectors (half the disk
    # and page cache; bench/storage_precision.py measures neighbour recall@10 and decoded pixels against float32:
    # recall 0.999+, but pixels change by up to 1/255, so float32 is the default). Latents, BLOB-era maps: float32.
    array_dtype: str = DEFAULT_ARRAY_DTYPE
    # Terrain (app/maps/terrain.py): web-map tiles of decoded cells over the map's square
    terrain_cells: int = 8  # cells across a tile (a tile is cells^2 decodes)
    terrain_cell_px: int = 32  # pixels across a cell in the tile image (decodes are resized to it)
    terrain_max_zoom: int = 8  # deepest tile zoom served (404 beyond)
    terrain_batch_size: int = 16  # cells decoded per batched model call
    max_tiles_per_client: int = 8  # tiles one client may have waiting or decoding; its oldest waiting one is dropped
    max_tile_jobs: int = 32  # tiles waiting or decoding in total; beyond it 429 with Retry-After

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        values = {}
        for f in fields(cls):
            raw = os.environ.get(f"LATENTMAP_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)

    def __post_init__(self):
        # Fail at start with the setting's name rather than deep inside a request.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", "float") and value < (1 if f.name in _AT_LEAST_ONE else 0):
                floor = "at least 1" if f.name in _AT_LEAST_ONE else "0 or more"
                raise ValueError(f"setting {f.name} (LATENTMAP_{f.name.upper()}) must be {floor}, got {value}")

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


# Settings where 0 means nothing sensible (everything else that is a number must not be negative).
_AT_LEAST_ONE = {
    "cluster_fit_sample",
    "port",
    "max_queued_jobs",
    "thumbnail_size",
    "encode_batch_size",
    "place_neighbors",
    "blend_neighbors",
    "umap_min_items",
    "max_items_per_map",
    "max_file_bytes",
    "max_request_bytes",
    "max_image_pixels",
    "neighbor_index_nprobe",
    "map_vectors_file_min_items",
    "tile_points",
    "tile_thumbs_side",
    "tile_thumb_px",
    "tile_index_maps",
    "tile_index_file_min_items",
    "max_selection_polygon_vertices",
    "max_ingest_file_bytes",
    "ingest_batch_size",
    "ray_decode_batch_size",
    "ingest_max_side",
    "ingest_vector_batch_size",
    "ingest_reference_items",
    "max_json_bytes",
    "large_json_bytes",
    "max_large_json_in_flight",
    "max_json_containers",
    "max_large_json_per_second",
    "max_error_chars",
    "max_manifest_bytes",
    "max_manifest_depth",
    "max_bundle_thumbnail_pixels",
    "max_bundle_entries",
    "max_upload_pixels_in_flight",
    "cluster_cache_maps",
    "decode_cache_bytes",
    "terrain_cells",
    "terrain_cell_px",
    "terrain_batch_size",
    "max_tiles_per_client",
    "max_tile_jobs",
}


def _parse(type_name: str, raw: str):
    kind = str(type_name)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind == "Path":
        return Path(raw)
    return raw
