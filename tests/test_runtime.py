"""The runtime layer: the format table, its runners, typed errors into bench statuses, the onnx-fused format end to
end, and that the server and the bench worker run without the trainer or the compiler."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pointkd.bench import BenchOptions, run_bench
from pointkd.bench import run as bench_run
from pointkd.cli import main
from pointkd.runtime.errors import (
    AccuracyDropError,
    ExportError,
    KnnOpUnavailable,
    ManifestError,
    ParityError,
    RuntimeUnavailable,
    UnknownFormat,
)
from pointkd.runtime.formats import ARTIFACT_FORMATS, FORMAT_NAMES, FORMATS, RUNTIMES, get_format, runs_of, runtime_of
from pointkd.runtime.runner import LOADERS, open_artifact, unavailable

QUICK = dict(data="synthetic", repeats=10, max_seconds=1.0, timing_clouds=4, progress=False, log=lambda *_: None)
FORBIDDEN = "bad = sorted(m for m in sys.modules if m.startswith('pointkd.train') or m == 'pointkd.export.compile')"


# ------------------------------------------------------------------------------------------------ the table


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_format_has_a_runner_and_a_consistent_row(fmt):
    assert fmt.loader in LOADERS and fmt.runtime in RUNTIMES and fmt.platform and fmt.description
    assert runtime_of(fmt.name) == fmt.runtime and get_format(fmt.name) is fmt
    if fmt.compiled:
        assert fmt.model_file and fmt.model_file.endswith(fmt.suffix) and fmt in runs_of(fmt.name)
    elif fmt.artifact is not None:  # another way of running a compiled format
        assert fmt.model_file is None and get_format(fmt.artifact).compiled and fmt in runs_of(fmt.artifact)
    assert fmt.needs_calibration == (fmt.precision == "int8")
    assert (fmt.custom_op is not None) == (fmt.loader == "ort-fused")
    assert unavailable(fmt.name) is None or isinstance(unavailable(fmt.name), str)


def test_the_table_names_each_format_once_and_onnx_fused_is_an_onnxruntime_cpu_format():
    assert len(set(FORMAT_NAMES)) == len(FORMATS) and len({f.marker for f in FORMATS}) == len(FORMATS)
    assert set(ARTIFACT_FORMATS) == {f.name for f in FORMATS if f.compiled}
    fused = get_format("onnx-fused")
    assert runtime_of("onnx-fused") == "onnxruntime" and not fused.needs_gpu and fused.compiled
    assert fused.custom_op == "libpointkd_knn.so" and fused.platform == "onnxruntime_onnx"


def test_an_unknown_format_lists_the_choices():
    with pytest.raises(UnknownFormat, match="unknown format 'tflite'; choose from torch, onnx, onnx-int8, onnx-fused"):
        get_format("tflite")
    with pytest.raises(UnknownFormat, match="choose from onnx, onnx-int8") as err:
        get_format("torch", among=ARTIFACT_FORMATS)  # a bench format, not a compile format
    assert isinstance(err.value, ValueError) and "torch-cuda-graphs" not in str(err.value)


# ------------------------------------------------------------------------------------------------ bench statuses


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ParityError("ONNX parity failed: off"), "check_failed"),
        (AccuracyDropError("int8 loses 3 OA points"), "check_failed"),
        (KnnOpUnavailable("no C++ compiler"), "failed"),
        (ExportError("the checkpoint's class names differ"), "failed"),
        (ValueError("bad option"), "failed"),
    ],
)
def test_a_compile_error_type_decides_the_bench_row(tiny_checkpoint, tmp_path, monkeypatch, error, status):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("pointkd.export.compile.compile_cached", fail)
    monkeypatch.setattr(bench_run, "measure_job", lambda *a, **k: pytest.fail("nothing to measure"))
    jobs = bench_run.plan_jobs([str(tiny_checkpoint)], BenchOptions(formats=("onnx",), **QUICK), tmp_path)
    assert [(j.fmt, j.status) for j in jobs] == [("onnx", status)] and str(error) in jobs[0].reason
    assert bench_run.status_of(error) == status


# ------------------------------------------------------------------------------------------------ onnx-fused


@pytest.fixture(scope="module")
def fused_artifact(tiny_checkpoint, tmp_path_factory):
    from pointkd.export.compile import CompileOptions, compile_checkpoint

    out = tmp_path_factory.mktemp("fused") / "student-fused"
    try:
        compile_checkpoint(tiny_checkpoint, out, CompileOptions("onnx-fused", data="synthetic", log=lambda *_: None))
    except KnnOpUnavailable as err:
        pytest.skip(f"the fused kNN operator cannot be built here: {err}")
    return out


def test_onnx_fused_compiles_to_a_self_contained_artifact(fused_artifact):
    from pointkd.hashing import sha256_file

    m = json.loads((fused_artifact / "manifest.json").read_text())
    assert m["artifact_format"] == "onnx-fused" and m["model_file"] == "model.fused.onnx"
    op = m["custom_op"]
    assert op["library"] == "libpointkd_knn.so" and op["domain"] == "pointkd" and op["op_type"] == "KnnTopK"
    assert op["sha256"] == sha256_file(fused_artifact / op["library"]) == m["files"][op["library"]]
    assert op["nodes"] >= 1 and m["parity"]["fused_vs_fp32"]["top1_agreement"] == 1.0
    assert op["op_types"] == {"KnnTopK": op["nodes"], "GatherMax": op["nodes"]}  # one kNN and one EdgeConv a layer


def test_onnx_fused_predicts_as_plain_onnx(fused_artifact, tiny_artifact, tiny_data):
    from pointkd.data import fixed_subset

    clouds = fixed_subset(tiny_data.test_x[:6], 64).numpy().astype(np.float32)
    fused, plain = open_artifact(fused_artifact, threads=1), open_artifact(tiny_artifact, threads=1)
    assert fused.format.name == "onnx-fused" and plain.format.name == "onnx"
    want, got = plain.run(clouds), fused.run(clouds)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_onnx_fused_refuses_another_library(fused_artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(fused_artifact, copy)
    (copy / "libpointkd_knn.so").write_bytes(b"not the library compiled with")
    with pytest.raises(ManifestError, match="sha256"):
        open_artifact(copy)
    with pytest.raises(ManifestError, match=r"libpointkd_knn\.so does not match its sha256"):
        open_artifact(copy, verify=False)  # the library is checked even without the full verification


def test_onnx_fused_is_served_and_benchmarked(fused_artifact, tmp_path):
    from serving.predictor import Predictor

    p = Predictor(fused_artifact, threads=1)
    assert p.platform == "onnxruntime_onnx" and p.format.name == "onnx-fused"
    probs = p.predict(np.random.default_rng(0).standard_normal((2, 64, 3)).astype(np.float32))
    assert probs.shape == (2, 8) and np.allclose(probs.sum(1), 1)
    _, rows = run_bench([str(fused_artifact)], tmp_path / "out", BenchOptions(threads=(1,), **QUICK))
    assert [(r.format, r.status) for r in rows] == [("onnx-fused", "ok")], rows[0].reason
    assert rows[0].oa == pytest.approx(json.loads((fused_artifact / "manifest.json").read_text())["accuracy"]["oa"])


def test_onnx_fused_without_a_compiler_is_a_typed_error(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from pointkd.export.compile import CompileOptions, compile_checkpoint

    monkeypatch.setenv("CXX", "/nonexistent/g++")
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ / c++ either
    opts = CompileOptions("onnx-fused", data="synthetic", log=lambda *_: None)
    with pytest.raises(KnnOpUnavailable, match="no C\\+\\+ compiler") as err:
        compile_checkpoint(tiny_checkpoint, tmp_path / "art", opts)
    assert isinstance(err.value, RuntimeUnavailable) and not (tmp_path / "art").exists()
    args = ["compile", str(tiny_checkpoint), "--format", "onnx-fused", "--data", "synthetic"]
    assert main([*args, "--out", str(tmp_path / "art")]) == 2
    assert "no C++ compiler" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ import hygiene


def _run_python(code: str) -> list[str]:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_server_never_imports_the_trainer_or_the_compiler(tiny_artifact):
    code = f"""
import json, sys
from fastapi.testclient import TestClient
from serving import ServeSettings, create_app
with TestClient(create_app({str(tiny_artifact)!r}, ServeSettings(threads=1, parse_workers=0))) as client:
    assert client.get("/v2/health/ready").json() == {{"ready": True}}
    assert client.post("/predict", json={{"points": [[0.1 * i, 0.2, -0.1 * i] for i in range(64)]}}).status_code == 200
{FORBIDDEN}
print(json.dumps(bad))
"""
    assert _run_python(code) == []


def test_the_bench_worker_never_imports_the_trainer_or_the_compiler(
    tiny_artifact, tiny_checkpoint, tiny_data, tmp_path
):
    from pointkd.data import fixed_subset

    clouds = fixed_subset(tiny_data.test_x, 64).numpy().astype(np.float32)
    np.savez(tmp_path / "inputs.npz", clouds=clouds, labels=tiny_data.test_y.numpy(), timing=clouds[:2])
    common = dict(inputs=str(tmp_path / "inputs.npz"), num_classes=8, threads=[1], repeats=10, warmup=1)
    specs = []
    for fmt, path in (("onnx", tiny_artifact / "model.onnx"), ("torch", tiny_checkpoint)):
        spec = tmp_path / f"{fmt}.json"
        spec.write_text(json.dumps({**common, "format": fmt, "path": str(path), "max_seconds": 1.0, "batch_size": 4}))
        specs.append((str(spec), str(tmp_path / f"{fmt}.out.json")))
    code = f"""
import json, sys
from pointkd.bench.measure import main
for spec, out in {specs!r}:
    main([spec, out])
    result = json.loads(open(out).read())
    assert result["ok"], result
{FORBIDDEN}
print(json.dumps(bad))
"""
    assert _run_python(code) == []
