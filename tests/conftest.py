import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from app.spaces import tiny_random
from app.spaces.clip_decoder import ClipDecoderSpace


@pytest.fixture(scope="session")
def tiny_space_dir(tmp_path_factory) -> Path:
    return tiny_random.build(tmp_path_factory.mktemp("spaces") / "tiny-random")


@pytest.fixture(scope="session")
def tiny_space(tiny_space_dir):
    return ClipDecoderSpace.from_pretrained(tiny_space_dir, device="cpu")


def make_settings(data_dir, **overrides) -> Settings:
    return Settings(data_dir=Path(data_dir), space="tiny-random", warm_umap=False, **overrides)


@pytest.fixture
def make_client(tiny_space, tmp_path):
    """Start the real app (lifespan included) on a data dir; call again with the same dir to 'restart'."""
    clients = []

    def start(data_dir=None, **overrides) -> TestClient:
        client = TestClient(create_app(make_settings(data_dir or tmp_path / "data", **overrides), space=tiny_space))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def png_bytes(color=(200, 30, 30), size=(40, 32), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def new_map(client):
    """A fresh map: (id, headers carrying its edit key)."""
    body = client.post("/api/maps", json={"title": "test map"}).json()
    return body["id"], {"X-Edit-Key": body["edit_key"]}


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


@pytest.fixture
def live_url(tiny_space, tmp_path):
    """The real app served by uvicorn on a free loopback port, in this process (for streaming/SSE tests)."""
    url, stop = serve_live(create_app(make_settings(tmp_path / "live"), space=tiny_space))
    yield url
    stop()
