import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.spaces import tiny_random
from app.spaces.clip_decoder import ClipDecoderSpace
from tests.helpers import make_map, make_settings, serve_live

# The browser fixtures (browser, live_server) for every test module that names them.
pytest_plugins = ["tests.browser_util"]


@pytest.fixture(scope="session")
def tiny_space_dir(tmp_path_factory) -> Path:
    return tiny_random.build(tmp_path_factory.mktemp("spaces") / "tiny-random")


@pytest.fixture(scope="session")
def tiny_space(tiny_space_dir):
    return ClipDecoderSpace.from_pretrained(tiny_space_dir, device="cpu")


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


@pytest.fixture
def new_map(client):
    """A fresh map: (id, headers carrying its edit key)."""
    return make_map(client)


@pytest.fixture
def live_url(tiny_space, tmp_path):
    """The real app served by uvicorn on a free loopback port, in this process (for streaming/SSE tests)."""
    url, stop = serve_live(create_app(make_settings(tmp_path / "live"), space=tiny_space))
    yield url
    stop()
