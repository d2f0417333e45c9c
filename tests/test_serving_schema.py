"""Schemathesis against the server's own OpenAPI schema: no generated request may get a 5xx or break the schema."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from serving import ServeSettings, create_app

# schemathesis passes cookies per request to Starlette's TestClient, which deprecates that (one warning per case).
pytestmark = pytest.mark.filterwarnings("ignore:Setting per-request cookies:DeprecationWarning")


@pytest.fixture(scope="module")
def live_client(tiny_artifact):
    with TestClient(create_app(tiny_artifact, ServeSettings(threads=1))) as client:
        yield client


# The schema does not depend on the artifact (loaded only in the lifespan), so it is built at import time.
schema = schemathesis.openapi.from_dict(create_app("unused-for-the-schema").openapi())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_breaks_the_server(case, live_client):
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    response = live_client.request(
        **{
            k: v
            for k, v in kwargs.items()
            if k in ("method", "url", "headers", "params", "json", "content", "data", "files", "cookies")
        }
    )
    assert response.status_code < 500, (case.method, case.path, response.text)
    case.validate_response(response, checks=[not_a_server_error])
