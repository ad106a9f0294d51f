"""The `latentmap` command line: help, spaces, build, and clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser, main
from app.main import create_app
from app.settings import Settings

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run_cli(*args, env=ENV):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.parametrize("command", ["serve", "spaces", "build", "train-digits"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage: latentmap" in capsys.readouterr().out


def test_serve_flags_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTMAP_PORT", "9123")
    monkeypatch.setenv("LATENTMAP_SPACE", "tiny-random")
    s = Settings.from_env()
    assert (s.host, s.port, s.space) == ("127.0.0.1", 9123, "tiny-random")
    s = Settings.from_env(port=8001, data_dir=str(tmp_path), host=None)
    assert s.port == 8001 and s.data_dir == Path(tmp_path)


def test_spaces_lists_names(capsys):
    assert main(["spaces", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"digits", "tiny-random"} <= {r["name"] for r in rows}


def test_build_from_prompts_and_images(tmp_path, tiny_space):
    from tests.helpers import png_bytes

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n\na dog\na bird\n", encoding="utf-8")
    images = tmp_path / "images"
    images.mkdir()
    (images / "red.png").write_bytes(png_bytes((255, 0, 0)))
    (images / "readme.txt").write_text("not an image")
    data = tmp_path / "data"
    r = run_cli(
        "build",
        "--space",
        "tiny-random",
        "--data-dir",
        str(data),
        "--title",
        "Built",
        "--prompts",
        str(prompts),
        "--images",
        str(images),
        env={**ENV, "LATENTMAP_TILE_INDEX_FILE_MIN_ITEMS": "4"},  # as a big map: its tile index saved
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["count"] == 4 and out["url"].startswith(f"/m/{out['id']}#key=")
    assert len(list((data / "arrays" / out["id"]).glob("tiles-v*.npz"))) == 1  # a server's first visitor waits not
    # the map is there for the server
    from fastapi.testclient import TestClient

    with TestClient(create_app(Settings(data_dir=data, warm_umap=False), space=tiny_space)) as client:
        labels = sorted(p["label"] for p in client.get(f"/api/maps/{out['id']}/points").json()["points"])
        assert labels == ["a bird", "a cat", "a dog", "red.png"]


def test_build_errors_are_clear(tmp_path):
    r = run_cli("build", "--space", "tiny-random", "--data-dir", str(tmp_path), "--prompts", str(tmp_path / "nope"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_cli("build", "--space", "tiny-random", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "--prompts" in r.stderr
    r = run_cli("build", "--space", "no-such-space", "--data-dir", str(tmp_path), "--prompts", __file__)
    assert r.returncode == 1 and "unknown space" in r.stderr


def test_export_import_round_trip(tmp_path, tiny_space):
    from fastapi.testclient import TestClient

    data = tmp_path / "data"
    with TestClient(create_app(Settings(data_dir=data, warm_umap=False), space=tiny_space)) as client:
        made = client.post("/api/maps", json={"title": "to export"}).json()
        client.post(
            f"/api/maps/{made['id']}/prompts",
            json={"prompts": ["a", "b", "c"]},
            headers={"X-Edit-Key": made["edit_key"]},
        )
    bundle_file = tmp_path / "map.zip"
    r = run_cli("export", made["id"], "--out", str(bundle_file), "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "import", str(bundle_file), "--title", "copy", "--data-dir", str(tmp_path / "other"), "--space", "tiny-random"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["count"] == 3
    r = run_cli("import", str(bundle_file), "--data-dir", str(tmp_path / "digits"), "--space", "digits")
    assert r.returncode == 1 and ("tiny-random" in r.stderr or "not available" in r.stderr)
    r = run_cli("export", "nosuchmap", "--data-dir", str(data))
    assert r.returncode == 1 and "not found" in r.stderr


def test_a_new_id_never_reads_as_an_option(monkeypatch):
    # A map id drawn as "-r5bd…" made `latentmap export ID` fail: argparse took it for an option.
    from app.maps import store

    ids = [store.new_id() for _ in range(2000)]  # the old draw led with "-" once in 64
    assert len(set(ids)) == 2000 and all(len(i) == 16 for i in ids)
    assert all(build_parser().parse_args(["export", i]).map_id == i for i in ids)

    draws = iter(["-r5bdjby8-6HsvYy", "-second-dash-id", "r5bdjby8-6HsvYy"])
    monkeypatch.setattr(store.secrets, "token_urlsafe", lambda n: next(draws))
    assert store.new_id() == "r5bdjby8-6HsvYy"


def test_a_nonsense_setting_is_refused_at_start_by_name(monkeypatch, capsys):
    monkeypatch.setenv("LATENTMAP_ENCODE_BATCH_SIZE", "0")
    assert main(["serve", "--port", "1"]) == 1
    assert "encode_batch_size (LATENTMAP_ENCODE_BATCH_SIZE) must be at least 1, got 0" in capsys.readouterr().err
