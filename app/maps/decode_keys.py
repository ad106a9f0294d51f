"""What makes two decodes the same decode: one frozen dataclass per request kind, each naming every input its
pixels depend on, hashed by `digest()` into the decode-cache key (and the `/api/decodes/{key}.png` URL).

A decode is deterministic, so a key that names all of its inputs can always be made again bit for bit: that
is what lets the cache evict (decode_cache.py) without breaking a share link. Adding an input to decoding
means adding a field here, once, for every kind at the same time; a field left out of a key would serve a
stale picture under it.

Inputs every map decode shares (`MapDecodeState`): the space, the map, its projection revision, the map's
content version (bumped by every change to its items), the blend settings and the set of prompts still
waiting for their generated image (their vectors are provisional until then).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..errors import Rejected

DECODES_URL = "/api/decodes/{key}.png"


def decode_url(key: str) -> str:
    """Where a cached decode (click, path frame, compare column, upscale) is served."""
    return DECODES_URL.format(key=key)


def check_seed(seed: int, max_seed: int) -> int:
    """The one seed check of every decode: an integer in [0, max_seed] (Rejected, HTTP 422, otherwise)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= max_seed:
        raise Rejected(f"seed must be between 0 and {max_seed}")
    return seed


def pending_digest(item_ids: list[str]) -> str:
    """`MapDecodeState.pending` for these waiting prompts ("" when none)."""
    return hashlib.sha256(",".join(item_ids).encode()).hexdigest()[:16] if item_ids else ""


def _digest(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


@dataclass(frozen=True)
class MapDecodeState:
    """What every decode on a map depends on besides its own request."""

    space: str
    map_id: str
    revision: int  # projection revision: a refit moves every item
    content: int  # the map's version: adding or deleting items changes the blend near them
    blend: str  # blend_neighbors, blend_power, latent_strength (settings a decode depends on)
    pending: str = ""  # digest of the prompts still waiting for their image ("" when none)

    def parts(self) -> tuple:
        return (self.space, self.map_id, self.revision, self.content, self.blend, self.pending)


@dataclass(frozen=True)
class SpotDecode:
    """A click: the blend under (x, y) decoded with `seed` (also one column of /compare, one terrain cell)."""

    state: MapDecodeState
    x: float  # rounded to 6 decimals by the caller (spot())
    y: float
    seed: int
    variant: str | None = None  # canonical (Space.resolve_variant); None = the space's own decoder
    lora_scale: float | None = None
    preview: bool = False
    decoder: str = ""  # Space.decoder_identity(variant): a user's checkpoint / LoRA file ("" = default weights)

    def digest(self) -> str:
        return _digest(
            "spot",
            *self.state.parts(),
            f"{self.x:.6f}",
            f"{self.y:.6f}",
            self.seed,
            self.variant,
            self.lora_scale,
            int(self.preview),
            self.decoder,
        )


def spot(
    state: MapDecodeState,
    x: float,
    y: float,
    seed: int,
    variant: str | None = None,
    lora_scale: float | None = None,
    preview: bool = False,
    decoder: str = "",
) -> SpotDecode:
    """The click at (x, y), rounded as every decode of a point is (6 decimals)."""
    return SpotDecode(state, round(float(x), 6), round(float(y), 6), seed, variant, lora_scale, bool(preview), decoder)


@dataclass(frozen=True)
class VaryDecode:
    """A variation of one item: its own vector and latent (not the map's blend, so not the map's version)."""

    space: str
    map_id: str
    item_id: str
    seed: int
    strength: float  # rounded to 4 decimals
    pending: str = ""
    decoder: str = ""

    def digest(self) -> str:
        return _digest(
            "vary", self.space, self.map_id, self.item_id, self.seed, self.strength, self.pending, self.decoder
        )


@dataclass(frozen=True)
class PathFrameDecode:
    """Frame `index` of `steps` along a polyline (slerp between the blends at its vertices)."""

    state: MapDecodeState
    points: tuple[tuple[float, float], ...]  # vertices rounded to 6 decimals
    steps: int
    seed: int
    index: int
    variant: str | None = None
    lora_scale: float | None = None
    decoder: str = ""

    def digest(self) -> str:
        return _digest(
            "path",
            *self.state.parts(),
            json.dumps([list(p) for p in self.points]),
            self.steps,
            self.seed,
            self.index,
            self.variant,
            self.lora_scale,
            self.decoder,
        )


@dataclass(frozen=True)
class PathStrip:
    """A decoded path as one thing (its strip, GIF and WebP): the keys of its frames, in order."""

    frame_keys: tuple[str, ...]

    def digest(self) -> str:
        return _digest("strip", *self.frame_keys)


@dataclass(frozen=True)
class UpscaleDecode:
    """A cached decode through an upscaler."""

    space: str
    upscaler: str
    source_key: str
    decoder: str = ""  # Space.decoder_identity(upscaler)

    def digest(self) -> str:
        return _digest("upscale", self.space, self.upscaler, self.source_key, self.decoder)


@dataclass(frozen=True)
class TerrainTile:
    """Terrain tile (z, x, y): `cells` x `cells` spot decodes of `cell_px` pixels each, over the terrain square
    [x0, x0 + size] x [y0, y0 + size] (terrain.py)."""

    state: MapDecodeState
    origin: tuple[float, float]
    size: float
    cells: int
    cell_px: int
    z: int
    x: int
    y: int
    seed: int
    variant: str | None = None
    lora_scale: float | None = None
    preview: bool = False
    decoder: str = ""

    def digest(self) -> str:
        return _digest(
            "tile",
            *self.state.parts(),
            f"{self.origin[0]:.6f}",
            f"{self.origin[1]:.6f}",
            f"{self.size:.6f}",
            self.cells,
            self.cell_px,
            self.z,
            self.x,
            self.y,
            self.seed,
            self.variant,
            self.lora_scale,
            int(self.preview),
            self.decoder,
        )

    @property
    def revision(self) -> int:
        """The terrain's revision (GET /api/maps/{id}): one number for everything every tile depends on but its
        own z/x/y/seed/variant; it changes whenever any tile of the map can change (52 bits: exact in JS)."""
        return int(
            _digest(
                "terrain",
                *self.state.parts(),
                f"{self.origin[0]:.6f}",
                f"{self.origin[1]:.6f}",
                f"{self.size:.6f}",
                self.cells,
                self.cell_px,
            )[:13],
            16,
        )

    def cell_spot(self, cx: float, cy: float) -> SpotDecode:
        """The click a cell is the decode of (same blend, same latent start, same seed)."""
        return spot(self.state, cx, cy, self.seed, self.variant, self.lora_scale, self.preview, self.decoder)
