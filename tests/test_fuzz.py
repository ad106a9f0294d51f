"""Schemathesis against our own OpenAPI schema: generated requests never get a 5xx (bounded examples)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.main import create_app
from tests.helpers import make_settings


@pytest.fixture(scope="module")
def api_schema(tiny_space, tmp_path_factory):
    from fastapi.testclient import TestClient

    app = create_app(make_settings(tmp_path_factory.mktemp("fuzz")), space=tiny_space)
    with TestClient(app) as client:  # runs the lifespan: app.state holds the service
        made = client.post("/api/maps", json={"title": "fuzz"}).json()
        client.post(
            f"/api/maps/{made['id']}/prompts",
            json={"prompts": ["a", "b", "c"]},
            headers={"X-Edit-Key": made["edit_key"]},
        )
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:300]}"
    )
