"""``pointkd export --to triton|kserve``: the repository's config parsed by Triton's own protobuf, the exported
model opened by ONNX Runtime as Triton's ORT backend opens it (the config's op library registered), giving the
artifact's logits; the KServe manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format

import pointkd
from pointkd.cli import main
from pointkd.runtime.errors import KnnOpUnavailable


def triton_model_config():
    """``tritonclient.grpc.model_config_pb2``, Triton's ModelConfig protobuf, read from its file: the package's
    ``__init__`` needs grpcio (tritonclient[grpc]), the generated module only protobuf."""
    import importlib.util

    tritonclient = pytest.importorskip("tritonclient")
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


model_config_pb2 = triton_model_config()


@pytest.fixture(scope="module")
def fused_artifact(tiny_checkpoint, tmp_path_factory):
    from pointkd.export.compile import CompileOptions, compile_checkpoint
    from pointkd.export.knn_op import build_knn_op

    try:
        build_knn_op()
    except KnnOpUnavailable as err:
        pytest.skip(f"fused kNN operator not buildable here: {err}")
    out = tmp_path_factory.mktemp("fused") / "student_fused"
    compile_checkpoint(tiny_checkpoint, out, CompileOptions("onnx-fused", data="synthetic", log=lambda *_: None))
    return out


def parse_config(folder: Path):
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def triton_session(folder: Path, config):
    """What Triton's onnxruntime backend does: register each model_operations library, open 1/model.onnx."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    for lib in config.model_operations.op_library_filename:
        opts.register_custom_ops_library(lib)
    return ort.InferenceSession(str(folder / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def check_model(folder: Path, artifact: Path, clouds: list[np.ndarray]):
    config = parse_config(folder)
    model = pointkd.load(artifact, threads=1)
    assert config.name == folder.name and config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
    (inp,) = config.input
    (out,) = config.output
    assert inp.name == "points" and list(inp.dims) == [model.num_points, 3]
    assert inp.data_type == model_config_pb2.TYPE_FP32 and out.data_type == model_config_pb2.TYPE_FP32
    assert out.name == "logits" and list(out.dims) == [len(model.classes)]
    assert (
        config.HasField("dynamic_batching")
        and config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    )
    assert (folder / out.label_filename).read_text().split() == list(model.classes)
    session = triton_session(folder, config)
    batch = np.stack([model.prepare(c)[0] for c in clouds])
    (logits,) = session.run([out.name], {inp.name: batch})
    from serving.predictor import softmax

    np.testing.assert_allclose(softmax(logits), model.probabilities(batch), atol=1e-6)
    return config


def test_triton_repository_of_onnx_and_fused_artifacts(tiny_artifact, fused_artifact, tiny_data, tmp_path):
    clouds = [c.numpy() for c in tiny_data.test_x[:4]]
    repo = tmp_path / "repo"
    assert main(["export", "--to", "triton", str(tiny_artifact), str(fused_artifact), "--out", str(repo)]) == 0
    plain = check_model(repo / "student", tiny_artifact, clouds)
    assert not plain.HasField("model_operations")
    fused = check_model(repo / "student_fused", fused_artifact, clouds)
    (name,) = fused.model_operations.op_library_filename
    library = Path(name)
    assert library.is_absolute() and library.parent == (repo / "student_fused").resolve() and library.is_file()


def test_kserve_manifest_serves_the_repository_with_triton(tiny_artifact, fused_artifact, tmp_path):
    out = tmp_path / "kserve"
    args = ["export", "--to", "kserve", str(tiny_artifact), str(fused_artifact), "--out", str(out)]
    assert main([*args, "--name", "points", "--storage-uri", "s3://bucket/pointkd"]) == 0
    doc = yaml.safe_load((out / "inferenceservice.yaml").read_text())
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    model = doc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "s3://bucket/pointkd" and doc["metadata"]["name"] == "points"
    (lib,) = parse_config(out / "student_fused").model_operations.op_library_filename
    assert lib == "/mnt/models/student_fused/libpointkd_knn.so" and (out / "student_fused" / Path(lib).name).is_file()


def test_export_refuses_a_checkpoint_format(tiny_artifact, tmp_path, capsys):
    import json
    import shutil

    from pointkd.runtime.manifest import write_manifest

    copy = tmp_path / "cuda"
    shutil.copytree(tiny_artifact, copy)
    m = json.loads((copy / "manifest.json").read_text())
    (copy / "model.pt").write_bytes(b"x")
    m |= {"artifact_format": "torch-cuda", "model_file": "model.pt"}
    m.pop("files"), m.pop("format")
    write_manifest(copy, m)
    assert main(["export", "--to", "triton", str(copy), "--out", str(tmp_path / "r")]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
