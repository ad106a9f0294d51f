"""One home for what makes two decodes the same decode: every input changes the key, nothing else does, and
no other module builds decode keys or decode URLs."""

import dataclasses
from pathlib import Path

import pytest

from app.maps import decode_keys
from app.maps.decode_keys import MapDecodeState, PathFrameDecode, SpotDecode, TerrainTile, check_seed
from app.maps.service import Rejected

STATE = MapDecodeState(space="digits", map_id="abcdef", revision=2, content=7, blend="8,2.0,0.8", pending="")
OTHER_VALUES = {
    "space": "tiny-random",
    "map_id": "ghijkl",
    "revision": 3,
    "content": 8,
    "blend": "8,2.0,0.7",
    "pending": "0123456789abcdef",
    "x": 0.25,
    "y": -0.5,
    "seed": 8,
    "variant": "thick",
    "lora_scale": 0.5,
    "preview": True,
    "points": ((0.0, 0.0), (2.0, 1.0)),
    "steps": 5,
    "index": 2,
    "origin": (0.0, -1.0),
    "size": 3.0,
    "cells": 4,
    "cell_px": 16,
    "z": 2,
    "decoder": "my-checkpoint@sha256:abcd",
}


def _every_field_changes_the_key(made):
    for f in dataclasses.fields(made):
        if f.name == "state":
            for g in dataclasses.fields(STATE):
                changed = dataclasses.replace(made, state=dataclasses.replace(STATE, **{g.name: OTHER_VALUES[g.name]}))
                assert changed.digest() != made.digest(), f"state.{g.name} is not in the key"
            continue
        value = OTHER_VALUES[f.name] if f.name in OTHER_VALUES else getattr(made, f.name) + 1
        assert dataclasses.replace(made, **{f.name: value}).digest() != made.digest(), f"{f.name} is not in the key"
    assert dataclasses.replace(made).digest() == made.digest()


def test_every_input_of_a_spot_decode_is_in_its_key():
    _every_field_changes_the_key(decode_keys.spot(STATE, 0.1234567, 0.5, 7))


def test_every_input_of_a_path_frame_and_a_tile_is_in_its_key():
    _every_field_changes_the_key(PathFrameDecode(STATE, ((0.0, 0.0), (1.0, 1.0)), 4, 7, 1))
    tile = TerrainTile(STATE, (-1.0, -1.0), 2.0, 8, 32, 1, 0, 1, 7)
    _every_field_changes_the_key(dataclasses.replace(tile, x=1, y=0))
    assert TerrainTile(STATE, (-1.0, -1.0), 2.0, 8, 32, 1, 1, 0, 7).digest() != tile.digest()


def test_kinds_never_share_keys_and_points_are_rounded_as_clicks_are():
    spot = decode_keys.spot(STATE, 0.1234567, 0.5, 7)
    assert (spot.x, spot.y) == (0.123457, 0.5) and spot == decode_keys.spot(STATE, 0.12345699, 0.5, 7)
    tile = TerrainTile(STATE, (0.0, 0.0), 1.0, 1, 32, 0, 0, 0, 7)
    assert tile.cell_spot(0.1234567, 0.5) == spot
    assert len({spot.digest(), tile.digest(), PathFrameDecode(STATE, ((0.1, 0.5),), 1, 7, 0).digest()}) == 3
    assert isinstance(spot, SpotDecode) and len(spot.digest()) == 64


def test_one_seed_check():
    assert check_seed(0, 10) == 0 and check_seed(10, 10) == 10
    for bad in (-1, 11, True, 1.5):
        with pytest.raises(Rejected, match="seed must be between 0 and 10"):
            check_seed(bad, 10)


def test_no_other_module_builds_decode_keys_or_urls():
    """Modules that store or look up decodes take their keys from decode_keys.py; URLs come from decode_url()."""
    app_dir = Path(decode_keys.__file__).resolve().parent.parent
    for path in app_dir.rglob("*.py"):
        if path.name in ("decode_keys.py", "store.py", "decode_cache.py"):
            continue
        text = path.read_text()
        assert 'f"/api/decodes/' not in text, f"{path} builds a decode URL"
        if any(call in text for call in ("decode_cached(", "store_decode(", "cached_decode(")):
            assert "sha256" not in text, f"{path} hashes a decode key of its own"
