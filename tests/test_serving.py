"""The inference server: every input format, preprocessing, micro-batching, metrics, and every kind of bad input."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pointkd.data.resample import resample
from pointkd.runtime.tensorrt import tensorrt_status
from serving import ServeSettings, create_app
from serving.batcher import MicroBatcher
from serving.predictor import Predictor
from serving.preprocess import BadCloud, prepare


def probs_of(response) -> dict[str, float]:
    assert response.status_code == 200, response.text
    return {row["class"]: row["probability"] for row in response.json()["top_k"]}


def test_health_metadata_and_unknown_model(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    name = client.get("/v2/models/dgcnn_student").json()
    assert name["inputs"][0]["shape"] == [-1, -1, 3] and len(name["parameters"]["classes"]) == 8
    assert name["parameters"]["input_contract"]["num_points"] == 64
    missing = client.get("/v2/models/resnet50")
    assert missing.status_code == 404 and "dgcnn_student" in missing.json()["error"]


def test_startup_freezes_the_heap(client):
    """What startup allocated (libraries, the model, the warm-up's imports) is out of the collector's reach."""
    import gc

    assert gc.get_freeze_count() > 0


def test_every_format_gives_the_same_answer(client, cloud, tmp_path):
    via_json = client.post("/predict?top_k=8", json={"points": cloud.tolist()})
    want = probs_of(via_json)
    assert abs(sum(want.values()) - 1) < 1e-5 and via_json.json()["points_received"] == len(cloud)
    raw = client.post(
        "/predict?top_k=8", content=cloud.astype("<f4").tobytes(), headers={"content-type": "application/octet-stream"}
    )
    buf = io.BytesIO()
    np.save(buf, cloud)
    npy = client.post("/predict?top_k=8", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    n = str(len(cloud)).encode()
    xyz = "\n".join(" ".join(f"{v:.9g}" for v in p) for p in cloud).encode()
    ply = (
        b"ply\nformat ascii 1.0\nelement vertex " + n + b"\nproperty float x\nproperty float y\nproperty float z\n"
        b"end_header\n"
    )
    pcd = (
        b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH " + n + b"\nHEIGHT 1\n"
        b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS " + n + b"\nDATA binary\n"
    ) + cloud.astype("<f4").tobytes()
    for name, body in (("c.xyz", xyz), ("c.ply", ply + xyz + b"\n"), ("c.pcd", pcd), ("c.npy", buf.getvalue())):
        got = probs_of(client.post("/predict?top_k=8", files={"file": (name, body)}))
        assert got.keys() == want.keys()
        assert max(abs(got[k] - want[k]) for k in want) < 1e-5, name
    with_normals = io.BytesIO()
    np.save(with_normals, np.concatenate([cloud, np.ones((len(cloud), 3))], axis=1))  # [P, 6]: xyz + normals
    npy6 = client.post(
        "/predict?top_k=8", content=with_normals.getvalue(), headers={"content-type": "application/x-npy"}
    )
    upload6 = client.post("/predict?top_k=8", files={"file": ("c6.npy", with_normals.getvalue())})
    for r in (raw, npy, npy6, upload6):  # an x-npy body is read exactly as an uploaded .npy: first 3 columns
        assert max(abs(probs_of(r)[k] - want[k]) for k in want) < 1e-6


def test_mesh_upload_is_sampled(client):
    off = b"OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"
    r = client.post("/predict", files={"file": ("tetra.off", off)})
    assert r.status_code == 200 and r.json()["points_received"] > 6


def test_v2_infer_matches_predict(client, cloud):
    body = {
        "inputs": [
            {
                "name": "points",
                "shape": [2, len(cloud), 3],
                "datatype": "FP32",
                "data": np.stack([cloud, cloud[::-1]]).ravel().tolist(),
            }
        ]
    }
    r = client.post("/v2/models/dgcnn_student/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["shape"] == [2, 8]
    probs = np.asarray(out["data"]).reshape(2, 8)
    single = probs_of(client.post("/predict?top_k=8", json={"points": cloud.tolist()}))
    classes = client.get("/v2/models/dgcnn_student").json()["parameters"]["classes"]
    np.testing.assert_allclose(probs[0], [single[c] for c in classes], atol=1e-6)


def test_preprocessing_is_invariant_to_placement_and_deterministic(cloud):
    a = prepare(cloud, 64, 6, 10**6)
    b = prepare(cloud * 7.5 + np.array([3, -2, 10], np.float32), 64, 6, 10**6)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.array_equal(a, prepare(cloud, 64, 6, 10**6))
    small = resample(cloud[:10], 64)
    assert small.shape == (64, 3) and np.array_equal(small[10:20], cloud[:10])
    assert np.linalg.norm(a, axis=1).max() <= 1 + 1e-6  # a subset of the unit-sphere cloud


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"json": {"points": []}}, 422, "shape"),
        ({"json": {"points": [[0.1, 0.2, 0.3]]}}, 422, "at least 6"),
        ({"json": {"points": [[0, 0, 0]] * 5}}, 422, "at least 6"),
        ({"json": {"points": [[0, 0, 0]] * 10}}, 422, "no extent"),
        ({"json": {"points": [[1, 2]] * 10}}, 422, "[P, 3]"),
        ({"json": {"points": [[1, 2, 3], [1, 2]] * 5}}, 422, "rectangular"),
        ({"json": {"points": [["a", "b", "c"]] * 10}}, 422, "rectangular"),
        ({"json": {"pts": [[1, 2, 3]]}}, 422, '{"points"'),
        ({"content": b'{"points": [[1, 2', "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"\x00" * 13, "headers": {"content-type": "application/octet-stream"}}, 422, "12 bytes"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "not supported"),
        ({"content": b"garbage", "headers": {"content-type": "application/x-npy"}}, 422, ".npy"),
        ({"files": {"file": ("c.ply", b"ply\nformat ascii 1.0\nelement vertex 9\nproperty float x\n")}}, 422, "c.ply"),
        ({"files": {"file": ("c.stl", b"solid")}}, 422, "upload one of"),
        ({"files": {"other": ("c.xyz", b"1 2 3")}}, 422, "field named 'file'"),
    ],
)
def test_bad_input_is_a_4xx_with_a_reason(client, kwargs, status, message):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_nan_points_and_bad_top_k(client, cloud):
    bad = cloud.copy()
    bad[3, 1] = np.nan
    r = client.post("/predict", content=bad.tobytes(), headers={"content-type": "application/octet-stream"})
    assert r.status_code == 422 and "NaN" in r.json()["error"]
    assert client.post("/predict?top_k=0", json={"points": cloud.tolist()}).status_code == 422
    assert client.post("/predict?top_k=x", json={"points": cloud.tolist()}).status_code == 422


def test_oversized_bodies_and_clouds(client, tiny_artifact):
    huge = np.zeros((10**7, 3), np.float32).tobytes()[: (2 << 20)]  # the first 2 MiB of a 10^7-point body
    r = client.post("/predict", content=huge, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():
        for _ in range(40):
            yield b"\x00" * 65536

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413
    with TestClient(create_app(tiny_artifact, ServeSettings(max_points=1000))) as small:
        r = small.post(
            "/predict",
            content=np.ones((2000, 3), np.float32).tobytes(),
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 422 and "at most 1000" in r.json()["error"]


def test_v2_infer_rejects_bad_tensors(client):
    url = "/v2/models/dgcnn_student/infer"
    assert client.post(url, json={"inputs": []}).status_code == 400
    bad_type = {"inputs": [{"name": "points", "shape": [1, 10, 3], "datatype": "BYTES", "data": [0] * 30}]}
    assert client.post(url, json=bad_type).status_code == 400
    wrong_size = {"inputs": [{"name": "points", "shape": [1, 10, 3], "datatype": "FP32", "data": [0.0] * 29}]}
    r = client.post(url, json=wrong_size)
    assert r.status_code == 422 and "needs 30" in r.json()["error"]
    assert client.post(url, content=b"{", headers={"content-type": "application/json"}).status_code == 400


def test_metrics_count_requests_and_batches(client, cloud):
    client.post("/predict", json={"points": cloud.tolist()})
    text = client.get("/metrics").text
    assert 'pointkd_requests_total{endpoint="/predict",status="200"}' in text
    assert "pointkd_batch_size_count" in text and "pointkd_queue_seconds_bucket" in text


def test_micro_batches_equal_single_calls(tiny_artifact, tiny_data):
    predictor = Predictor(tiny_artifact, threads=1)
    clouds = [prepare(c.numpy(), 64, 6, 10**6) for c in tiny_data.test_x[:10]]
    sizes = []

    async def run():
        batcher = MicroBatcher(predictor.predict, max_batch=4, max_delay_ms=50, on_batch=lambda s: sizes.append(s.size))
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(c) for c in clouds))
        finally:
            await batcher.stop()

    batched = asyncio.run(run())
    assert max(sizes) == 4 and sum(sizes) == 10
    for c, row in zip(clouds, batched, strict=True):
        np.testing.assert_allclose(row, predictor.predict(c[None])[0], atol=1e-6)


def test_model_errors_reach_the_request_not_the_worker():
    def broken(batch):
        raise RuntimeError("runtime fell over")

    async def run():
        batcher = MicroBatcher(broken, max_batch=2, max_delay_ms=1)
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="fell over"):
                await batcher.submit(np.zeros((4, 3), np.float32))
            assert not batcher.worker.done()
        finally:
            await batcher.stop()

    asyncio.run(run())


def test_bad_cloud_messages():
    with pytest.raises(BadCloud, match="at most"):
        prepare(np.zeros((20, 3)), 8, 2, 10)


def test_tampered_artifact_refuses_to_load(tiny_artifact, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / manifest["model_file"]).write_bytes(b"not a model")
    from pointkd.runtime.errors import ManifestError

    with pytest.raises(ManifestError, match="sha256"), TestClient(create_app(copy)):
        pass


@pytest.mark.skipif(tensorrt_status() is None, reason="TensorRT is installed")
def test_tensorrt_artifact_says_why_it_cannot_run_here(tiny_artifact, tmp_path):
    import shutil

    from pointkd.runtime.manifest import write_manifest

    copy = tmp_path / "trt"
    shutil.copytree(tiny_artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "model.fp16.engine").write_bytes(b"engine bytes")
    manifest |= {"artifact_format": "trt-fp16", "model_file": "model.fp16.engine"}
    manifest.pop("files")
    manifest.pop("format")
    write_manifest(copy, manifest)
    with pytest.raises(ValueError, match="TensorRT engine, which cannot run here"):
        Predictor(copy)
