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
