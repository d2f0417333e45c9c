"""`pointkd serve` on a model repository, checked with Triton's own HTTP client (tritonclient): server and model
metadata, readiness, JSON and binary (Inference-Header-Content-Length) inference, versions, errors it can decode."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from serving.launch import free_port, start_server, stop_server  # noqa: E402
from serving.predictor import Predictor  # noqa: E402
from serving.preprocess import prepare  # noqa: E402


@pytest.fixture(scope="module")
def repository(tiny_artifact, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    for name in ("student", "student_b"):
        shutil.copytree(tiny_artifact, repo / name)
    (repo / "notes").mkdir()  # a folder without a manifest is not a model
    return repo


@pytest.fixture(scope="module")
def triton(repository):
    port = free_port()
    args = ("--threads", "1", "--parse-workers", "1")
    server = start_server(repository, port, *args, quiet=True, ready_timeout_s=600)  # shared, busy cores: be patient
    try:
        yield httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def clouds(tiny_data):
    return tiny_data.test_x[:3].numpy().astype(np.float32)


@pytest.fixture(scope="module")
def expected(tiny_artifact, clouds):
    """The model's probabilities computed here, without the server."""
    p = Predictor(tiny_artifact, threads=1)
    return p.predict(np.stack([prepare(c, p.num_points, p.min_points, 10**6) for c in clouds]))


def test_server_metadata_and_health(triton):
    meta = triton.get_server_metadata()
    assert meta["name"] == "pointkd" and "binary_tensor_data" in meta["extensions"]
    assert triton.is_server_live() and triton.is_server_ready()


def test_model_metadata_and_readiness(triton):
    for name in ("student", "student_b"):
        meta = triton.get_model_metadata(name)
        assert meta["name"] == name and meta["inputs"][0]["name"] == "points"
        version = meta["versions"][0]
        assert triton.is_model_ready(name) and triton.is_model_ready(name, version)
        assert triton.get_model_metadata(name, version)["versions"] == [version]
        assert not triton.is_model_ready(name, "0")
    assert not triton.is_model_ready("notes") and not triton.is_model_ready("resnet50")
    with pytest.raises(InferenceServerException, match="no model 'resnet50'"):
        triton.get_model_metadata("resnet50")


def points_input(clouds: np.ndarray, binary: bool):
    tensor = httpclient.InferInput("points", list(clouds.shape), "FP32")
    tensor.set_data_from_numpy(clouds, binary_data=binary)
    return tensor


def test_json_infer(triton, clouds, expected):
    out = [httpclient.InferRequestedOutput("probabilities", binary_data=False)]
    result = triton.infer("student", [points_input(clouds, binary=False)], outputs=out, request_id="r1")
    response = result.get_response()
    assert response["id"] == "r1" and "data" in response["outputs"][0]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)


def test_binary_infer_is_the_default_and_matches(triton, clouds, expected):
    result = triton.infer("student_b", [points_input(clouds, binary=True)])  # binary in, binary out
    output = result.get_response()["outputs"][0]
    assert output["parameters"]["binary_data_size"] == expected.size * 4 and "data" not in output
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)
    version = triton.get_model_metadata("student_b")["versions"][0]
    again = triton.infer("student_b", [points_input(clouds, binary=True)], model_version=version)
    np.testing.assert_array_equal(again.as_numpy("probabilities"), result.as_numpy("probabilities"))


def test_errors_reach_the_client_decoded(triton, clouds):
    with pytest.raises(InferenceServerException, match="has no version '7'"):
        triton.infer("student", [points_input(clouds, binary=True)], model_version="7")
    bad = clouds.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InferenceServerException, match="NaN"):
        triton.infer("student", [points_input(bad, binary=True)])
    wrong = httpclient.InferRequestedOutput("logits", binary_data=True)
    with pytest.raises(InferenceServerException, match="unknown output 'logits'"):
        triton.infer("student", [points_input(clouds, binary=True)], outputs=[wrong])
