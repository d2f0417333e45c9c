from __future__ import annotations

import numpy as np
import pytest
import torch

from pointkd.data import PointCloudSplits
from pointkd.data.synthetic import make_synthetic


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_data() -> PointCloudSplits:
    """8 synthetic classes, 6 train / 2 test clouds each, 128 points."""
    return make_synthetic(num_points=128, seed=3, train_per_class=6, test_per_class=2)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny student trained for 2 epochs on the synthetic set at 64 points (k=6)."""
    from pointkd.cli import main

    run = tmp_path_factory.mktemp("run")
    args = ["train", "--config", "quickstart", "--data", "synthetic", "--out", str(run), "--no-progress"]
    args += ["--set", "data.num_points=64", "--set", "train.epochs=2", "--set", "train.batch_size=16"]
    args += ["--set", "model.overrides={widths: [8, 16, 16], k: 6, mlp: [16]}"]
    assert main(args) == 0
    return run / "best.pt"


@pytest.fixture(scope="session")
def tiny_artifact(tiny_checkpoint, tmp_path_factory):
    """The tiny student compiled to an ONNX artifact folder."""
    from pointkd.export.compile import CompileOptions, compile_checkpoint

    out = tmp_path_factory.mktemp("artifact") / "student"
    compile_checkpoint(tiny_checkpoint, out, CompileOptions("onnx", data="synthetic", log=lambda *_: None))
    return out


@pytest.fixture(scope="module")
def client(tiny_artifact):
    """An in-process server on the tiny artifact (1 thread, 1 MiB bodies); serving tests with other settings
    define their own."""
    from fastapi.testclient import TestClient

    from serving import ServeSettings, create_app

    with TestClient(create_app(tiny_artifact, ServeSettings(threads=1, max_body_bytes=1 << 20))) as c:
        yield c


@pytest.fixture(scope="module")
def cloud(tiny_data):
    """One test cloud as float32: 128 points, which serving reduces (FPS) to the tiny model's 64."""
    return tiny_data.test_x[0].numpy().astype(np.float32)
