"""Helpers shared by the test modules (fixtures live in conftest.py; browser helpers in browser_util.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from app.settings import Settings
from app.spaces.vith import CONFIG_DIR


def png_bytes(
    color: tuple[int, int, int] = (200, 30, 30),
    size: int | tuple[int, int] = (40, 32),
    fmt: str = "PNG",
    mark: bool = False,
) -> bytes:
    """An image file of one colour (`size` an int for a square); `mark` draws a disc in the opposite colour in
    the middle, so pictures on a page are told apart by more than their colour."""
    width, height = (size, size) if isinstance(size, int) else size
    image = Image.new("RGB", (width, height), color)
    if mark:
        ImageDraw.Draw(image).ellipse(
            (width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=tuple(255 - c for c in color)
        )
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def make_settings(data_dir, **overrides) -> Settings:
    """Settings for a test server on the tiny-random space (no UMAP warm-up thread)."""
    return Settings(data_dir=Path(data_dir), space="tiny-random", warm_umap=False, **overrides)


def make_map(http, title: str = "test map", prompts=()) -> tuple[str, dict[str, str]]:
    """A new map through the API (`http`: a TestClient or an httpx.Client on a server), with `prompts` added:
    (its id, headers carrying its edit key)."""
    made = http.post("/api/maps", json={"title": title})
    assert made.status_code == 201, made.text
    body = made.json()
    headers = {"X-Edit-Key": body["edit_key"]}
    if prompts:
        added = http.post(f"/api/maps/{body['id']}/prompts", json={"prompts": list(prompts)}, headers=headers)
        assert added.status_code == 201, added.text
    return body["id"], headers


def serve_live(app):
    """Serve an app with uvicorn on a free loopback port in this process; returns (url, stop)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


# Tiny real-space architectures (app/spaces/configs/arch/tiny.json) and the space settings the tests run them
# with: few steps, two reference prompts. Shared by the real-space and own-model tests.
TINY_ARCH = json.loads((CONFIG_DIR / "arch" / "tiny.json").read_text())
TINY_SIZE = TINY_ARCH["image_size"]
TINY_SPACE_CONFIG = {
    "height": TINY_SIZE,
    "width": TINY_SIZE,
    "steps": 2,
    "preview": {"steps": 1},
    "reference_prompts": 2,
    "prompt_images": {"steps": 2, "seed": 0},
}

# The settings that point a real space's components at local folders (LATENTMAP_<COMPONENT>_ID), by component.
REAL_SPACE_ENV = {
    "unclip-h": {"clip": "CLIP_H", "pipeline": "UNCLIP_H_PIPELINE", "taesd": "TAESD"},
    "turbo-h": {
        "clip": "CLIP_H",
        "sd15": "TURBO_H_SD15",
        "ip_adapter": "TURBO_H_IP_ADAPTER",
        "lcm_lora": "TURBO_H_LCM_LORA",
        "taesd": "TAESD",
    },
}


def real_space_env(name: str, paths: dict, config_file: Path) -> dict:
    """The environment that loads space `name` from the built folders `paths` (component -> folder) with the
    space settings in `config_file`: for a server subprocess, or monkeypatched in-process."""
    env = {f"LATENTMAP_{REAL_SPACE_ENV[name][k]}_ID": str(p) for k, p in paths.items()}
    env[f"LATENTMAP_{name.upper().replace('-', '_')}_CONFIG"] = str(config_file)
    return env
