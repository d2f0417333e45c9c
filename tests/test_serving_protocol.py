"""Open Inference Protocol completeness in-process: server metadata, model readiness, versions, a model repository,
and the binary tensor data extension's edge cases (every bad one a 4xx with the error shape)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving import ServeSettings, create_app
from serving.repository import model_folders

HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def repo(tiny_artifact, tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    for name in ("alpha", "beta"):
        shutil.copytree(tiny_artifact, root / name)
    return root


@pytest.fixture(scope="module")
def client(repo):
    with TestClient(create_app(repo, ServeSettings(threads=1, parse_workers=1, max_body_bytes=1 << 20))) as c:
        yield c


def binary_infer(client, header: dict, data: bytes, url: str = "/v2/models/alpha/infer", length: int | None = None):
    head = json.dumps(header).encode()
    size = str(len(head) if length is None else length)
    return client.post(url, content=head + data, headers={HEADER: size, "content-type": "application/octet-stream"})


def points(shape, datatype="FP32", **params) -> dict:
    return {"inputs": [{"name": "points", "shape": shape, "datatype": datatype, "parameters": params}]}


def test_repository_folders(repo, tiny_artifact, tmp_path):
    assert model_folders(tiny_artifact) == [(None, tiny_artifact)]
    assert [name for name, _ in model_folders(repo)] == ["alpha", "beta"]
    with pytest.raises(ValueError, match="neither an artifact folder"):
        model_folders(tmp_path)


def test_server_metadata_readiness_and_versions(client):
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    version = client.get("/v2/models/beta").json()["versions"][0]
    assert client.get("/v2/models/beta/ready").json() == {"name": "beta", "ready": True}
    assert client.get(f"/v2/models/beta/versions/{version}/ready").status_code == 200
    assert client.get(f"/v2/models/beta/versions/{version}").json()["name"] == "beta"
    for url in ("/v2/models/beta/versions/0/ready", "/v2/models/gamma/ready", "/v2/models/beta/versions/0"):
        r = client.get(url)
        assert r.status_code == 404 and set(r.json()) == {"error"}
    assert client.head("/v2/models/beta/ready").status_code == 200


def test_predict_names_the_model_when_there_are_several(client, cloud):
    r = client.post("/predict", json={"points": cloud.tolist()})
    assert r.status_code == 422 and "?model=" in r.json()["error"]
    a = client.post("/predict?model=alpha", json={"points": cloud.tolist()}).json()
    b = client.post("/predict?model=beta", json={"points": cloud.tolist()}).json()
    assert (a["model"], b["model"]) == ("alpha", "beta") and a["top_k"] == b["top_k"]
    assert client.post("/predict?model=gamma", json={"points": cloud.tolist()}).status_code == 404


def test_binary_and_json_infer_agree(client, cloud):
    version = client.get("/v2/models/alpha").json()["versions"][0]
    plain = {
        "inputs": [{"name": "points", "shape": [1, *cloud.shape], "datatype": "FP32", "data": cloud.ravel().tolist()}]
    }
    want = np.asarray(client.post("/v2/models/alpha/infer", json=plain).json()["outputs"][0]["data"])
    for datatype, dtype in (("FP32", "<f4"), ("FP64", "<f8")):
        data = cloud.astype(dtype).tobytes()
        header = points([1, *cloud.shape], datatype, binary_data_size=len(data))
        header["outputs"] = [{"name": "probabilities", "parameters": {"binary_data": True}}]
        r = binary_infer(client, header, data, f"/v2/models/alpha/versions/{version}/infer")
        assert r.status_code == 200, r.text
        n = int(r.headers[HEADER])
        head = json.loads(r.content[:n])
        assert head["outputs"][0]["parameters"]["binary_data_size"] == len(r.content) - n == want.size * 4
        np.testing.assert_allclose(np.frombuffer(r.content[n:], "<f4"), want, atol=1e-6)
    header = points([1, *cloud.shape], binary_data_size=cloud.nbytes)  # binary in, JSON out
    r = binary_infer(client, header, cloud.tobytes())
    assert HEADER not in r.headers and np.allclose(r.json()["outputs"][0]["data"], want, atol=1e-6)


@pytest.mark.parametrize(
    "header, data, length, status, message",
    [
        (points([1, 10, 3], binary_data_size=120), bytes(120), 10**6, 400, "body has only"),
        (points([1, 10, 3], binary_data_size=119), bytes(120), None, 400, "binary_data_size is 119"),
        (points([1, 10, 3], binary_data_size=True), bytes(120), None, 400, "binary_data_size is true"),
        (points([1, 10, 3], binary_data_size=96), bytes(96), None, 422, "needs 120"),
        (points([1, 10, 3]), bytes(120), None, 400, "no input has a binary_data_size"),
        (points([2**62, 4, 3], binary_data_size=48), bytes(48), None, 422, "batch of"),
        ({**points([1, 10, 3], binary_data_size=120), "outputs": [{"name": "x"}]}, bytes(120), None, 400, "'x'"),
        ({**points([1, 10, 3], binary_data_size=120), "id": 5}, bytes(120), None, 400, "id must be a string"),
        (points([1, 10, 3], binary_data_size=120), np.full(30, np.nan, "<f4").tobytes(), None, 422, "NaN"),
    ],
)
def test_bad_binary_requests_are_4xx(client, header, data, length, status, message):
    r = binary_infer(client, header, data, length=length)
    assert r.status_code == status and message in r.json()["error"], r.text


def test_bad_header_length_values(client):
    for value in ("-1", "abc", "1e3", "9" * 40):
        r = client.post("/v2/models/alpha/infer", content=b"{}", headers={HEADER: value})
        assert r.status_code == 400 and HEADER in r.json()["error"], value
