"""TensorRT backend without TensorRT: the engine spec, the network / profile / flags that :func:`build_engine` asks
for, and :class:`TensorRTRunner`'s shapes, tensor addresses and errors, against a stand-in ``tensorrt`` module.

The stand-in records every builder call, and its execution context really reads the input from the address the
runner gives it and writes logits to the output address (host memory: the runner on ``device="cpu"``), so a
wrong shape, address or dtype shows up as wrong numbers. The real engine build and run is in
``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import ctypes
import json
import sys
import types

import numpy as np
import pytest
import torch

from pointkd.export.tensorrt_engine import EngineSpec, build_engine
from pointkd.runtime.errors import RuntimeUnavailable, TensorRTUnavailable
from pointkd.runtime.ort import run_in_batches
from pointkd.runtime.tensorrt import TensorRTRunner, tensorrt_status

CLASSES = 5
WEIGHTS = np.arange(3 * CLASSES, dtype=np.float32).reshape(3, CLASSES) / 7  # the stand-in engine's "model"


def _host(ptr: int, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 view of host memory at ``ptr``."""
    n = int(np.prod(shape))
    return np.frombuffer((ctypes.c_float * n).from_address(ptr), dtype=np.float32).reshape(shape)


class _Context:
    def __init__(self, engine: dict, fake: types.ModuleType):
        self.engine, self.fake = engine, fake
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.fake.calls.append(("set_input_shape", name, shape))
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        assert name == "logits", name
        return (self.shapes[self.engine["input"]][0], CLASSES)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream: int) -> bool:
        self.fake.calls.append(("execute", stream))
        if self.fake.fail_execute:
            return False
        shape = self.shapes[self.engine["input"]]
        x = _host(self.addresses[self.engine["input"]], shape)
        out = _host(self.addresses["logits"], (shape[0], CLASSES))
        out[:] = x.sum(1) @ WEIGHTS
        return True


def _fake_tensorrt(parse_errors: tuple[str, ...] = (), build_fails: bool = False) -> types.ModuleType:
    """A ``tensorrt`` module with the TensorRT 10 calls pointkd makes; ``trt.calls`` lists what was asked."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.fake"
    trt.calls = []
    trt.fail_execute = False

    class Logger:
        WARNING = "warning"

        def __init__(self, level):
            trt.calls.append(("logger", level))

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            trt.calls.append(("profile", name, lo, opt, hi))

    class Config:
        def set_memory_pool_limit(self, pool, size):
            trt.calls.append(("pool", pool, size))

        def set_flag(self, flag):
            trt.calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            trt.calls.append(("add_profile", type(profile).__name__))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            trt.calls.append(("network", flags))
            return "network"

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if build_fails:
                return None
            profile = next(c for c in trt.calls if c[0] == "profile")
            return b"FAKE" + json.dumps({"input": profile[1]}).encode()

    class OnnxParser:
        num_errors = len(parse_errors)

        def __init__(self, network, logger):
            assert network == "network"

        def parse_from_file(self, path):
            trt.calls.append(("parse", path))
            return not parse_errors

        def get_error(self, i):
            return parse_errors[i]

    class Engine:
        def __init__(self, spec: dict):
            self.spec = spec

        def create_execution_context(self):
            return _Context(self.spec, trt)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob: bytes):
            return Engine(json.loads(blob[4:])) if blob.startswith(b"FAKE") else None

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")
    return trt


@pytest.fixture
def fake_trt(monkeypatch):
    trt = _fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def test_engine_spec_profile_and_flags():
    spec = EngineSpec("int8", 512, min_batch=1, opt_batch=4, max_batch=32)
    assert spec.profile_shapes() == ((1, 512, 3), (4, 512, 3), (32, 512, 3))
    assert spec.builder_flags() == ["INT8", "FP16"] and EngineSpec("fp16", 64).builder_flags() == ["FP16"]
    with pytest.raises(ValueError, match="precision"):
        EngineSpec("fp8", 64)
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        EngineSpec("fp16", 64, opt_batch=8, max_batch=4)
    with pytest.raises(ValueError, match="min_batch"):
        EngineSpec("fp16", 64, min_batch=0)


@pytest.mark.parametrize("precision, flags", [("fp16", ["fp16"]), ("int8", ["int8", "fp16"])])
def test_build_engine_asks_for_the_spec(fake_trt, tmp_path, precision, flags):
    onnx = tmp_path / "model.onnx"
    spec = EngineSpec(precision, 256, opt_batch=2, max_batch=16, workspace_mib=512)
    engine = build_engine(onnx, tmp_path / "model.engine", spec)
    assert engine == tmp_path / "model.engine" and engine.read_bytes().startswith(b"FAKE")
    calls = fake_trt.calls
    assert ("network", 0) in calls  # explicit batch: TensorRT 10's only mode
    assert ("parse", str(onnx)) in calls
    assert ("pool", "workspace", 512 << 20) in calls
    assert [c[1] for c in calls if c[0] == "flag"] == flags
    assert ("profile", "points", (1, 256, 3), (2, 256, 3), (16, 256, 3)) in calls
    assert ("add_profile", "Profile") in calls


def test_build_engine_reports_parse_and_build_failures(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(parse_errors=("TopK: K must be constant", "x")))
    with pytest.raises(RuntimeError, match=r"could not parse .*: TopK: K must be constant; x"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", EngineSpec("fp16", 64))
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(build_fails=True))
    with pytest.raises(RuntimeError, match="failed to build a fp16 engine"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", EngineSpec("fp16", 64))
    assert not (tmp_path / "m.engine").exists()


def test_without_tensorrt_everything_says_why(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    reason = tensorrt_status()
    assert reason is not None and "not importable" in reason and "pypi.nvidia.com" in reason
    with pytest.raises(TensorRTUnavailable, match="not importable"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", EngineSpec("fp16", 64))
    with pytest.raises(RuntimeUnavailable, match="not importable"):
        TensorRTRunner(tmp_path / "m.engine")


def test_runner_feeds_the_engine_and_reads_its_logits(fake_trt, tmp_path):
    engine = build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", EngineSpec("fp16", 16, max_batch=8))
    assert tensorrt_status() is None
    run = TensorRTRunner(engine, device="cpu")
    clouds = np.random.default_rng(0).normal(size=(11, 16, 3)).astype(np.float64)  # float64 in: cast by the runner
    got = run_in_batches(run, clouds, batch_size=4)  # batches of 4, 4, 3
    np.testing.assert_allclose(got, clouds.astype(np.float32).sum(1) @ WEIGHTS, rtol=1e-5)
    shapes = [c[2] for c in fake_trt.calls if c[0] == "set_input_shape"]
    assert shapes == [(4, 16, 3), (4, 16, 3), (3, 16, 3)]
    assert [c[1] for c in fake_trt.calls if c[0] == "execute"] == [0, 0, 0]  # no CUDA stream on the host
    fake_trt.fail_execute = True
    with pytest.raises(RuntimeError, match="execution failed"):
        run(clouds[:1])


def test_runner_refuses_what_it_cannot_run(fake_trt, tmp_path):
    (tmp_path / "other.engine").write_bytes(b"not an engine")
    with pytest.raises(RuntimeError, match="could not deserialize"):
        TensorRTRunner(tmp_path / "other.engine", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TensorRTUnavailable, match="need a CUDA device"):
            TensorRTRunner(tmp_path / "other.engine")
