from __future__ import annotations

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
