"""Schemathesis against the server's own OpenAPI document (:mod:`serving.openapi`), in process: no generated request
may get a 5xx, and every answer must be one the document promises (status code, content type, body schema, headers);
schema-valid requests are accepted and schema-invalid ones refused."""

from __future__ import annotations

import collections
import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving import ServeSettings, create_app

# schemathesis passes cookies per request to Starlette's TestClient, which deprecates that (one warning per case).
pytestmark = pytest.mark.filterwarnings("ignore:Setting per-request cookies:DeprecationWarning")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]
# A schema-valid request is accepted (2xx), names a model or version the server does not have (404), or is a cloud
# the model cannot take for reasons between values that JSON Schema cannot state (422: fewer points than the model's
# kNN k, all points equal, data that does not fill its shape, bytes that are not a cloud file).
# The tiny model's name for the path and query parameters that name one, so that generated requests reach it.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}},
        "parameters": {"name": "dgcnn_student", "model": "dgcnn_student"},
    }
)


@pytest.fixture(scope="module")
def live_client(tiny_artifact):
    with TestClient(create_app(tiny_artifact, ServeSettings(threads=1, parse_workers=0))) as client:
        yield client


STATUSES: collections.defaultdict[tuple[str, str], set[int]] = collections.defaultdict(set)  # what each route answered

# The document does not depend on the artifact (loaded only in the lifespan), so it is built at import time.
schema = schemathesis.openapi.from_dict(create_app("unused-for-the-schema").openapi(), config=CONFIG)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_one_the_document_promises(case, live_client):
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    if kwargs.get("files"):  # a generated non-binary "file" goes over the wire as its JSON text, as any client sends it
        kwargs["files"] = [(field, (name, wire(value))) for field, (name, value) in kwargs["files"]]
    response = live_client.request(
        **{
            k: v
            for k, v in kwargs.items()
            if k in ("method", "url", "headers", "params", "json", "content", "data", "files", "cookies")
        }
    )
    assert response.status_code < 500, (case.method, case.path, response.text)
    STATUSES[(case.method, case.path)].add(response.status_code)
    case.validate_response(response, checks=CHECKS)


def test_generated_requests_reached_the_model():
    """The run above (pytest keeps file order) sent requests the model answered, not only ones it refused."""
    for route in (("POST", "/predict"), ("POST", "/v2/models/{name}/infer"), ("GET", "/v2/models/{name}")):
        assert 200 in STATUSES[route], (route, STATUSES[route])


def wire(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def test_the_document_names_every_status_body_and_media_type():
    doc = create_app("unused-for-the-schema").openapi()
    error = {"$ref": "#/components/schemas/Error"}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status, answer in op["responses"].items():
                if status != "200" and not (path == "/v2/health/ready" and status == "503"):
                    assert answer["content"]["application/json"]["schema"] == error, (method, path, status)
            assert "413" in op["responses"], (method, path)
    predict = doc["paths"]["/predict"]["post"]
    assert set(predict["responses"]) == {"200", "400", "401", "404", "413", "415", "422", "503"}
    assert set(predict["requestBody"]["content"]) == {
        "application/json",
        "application/octet-stream",
        "application/x-npy",
        "multipart/form-data",
    }
    assert "points" in doc["components"]["schemas"]["PredictRequest"]["required"]
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert {"400", "404", "413", "422", "503"} <= set(infer["responses"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]
