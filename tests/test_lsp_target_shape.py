"""benchmarks/studies/lsp_target_shape/lsp_target_shape.py: the target statistics against hand-computed cases, and
one layer pair end to end on small models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from scriptload import load_script

from pointkd.distill.kernels import Kernel
from pointkd.models import create_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "studies" / "lsp_target_shape" / "lsp_target_shape.py"


@pytest.fixture(scope="module")
def shape():
    return load_script(SCRIPT, "lsp_target_shape_bench")


def line_graph(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points on a line at 0, 1, 2, ...; each node's k nearest (itself first) as a ``[1, n, k]`` graph."""
    z = torch.arange(n, dtype=torch.float32).view(1, n, 1)
    idx = (z - z.transpose(1, 2)).abs().argsort(dim=-1, stable=True)[..., :k]
    return z, idx


def test_far_neighbours_under_sigma_one_leave_nothing_to_match(shape):
    z, idx = line_graph(16, 4)
    stats = shape.target_stats(z * 100, idx, idx, Kernel("rbf", sigma=1.0))
    assert stats["sigma"] == 1.0
    assert stats["k_below_1e-2_others"] == 1.0 and stats["k_spread_others"] < 1e-6
    # only the self pair (K = 1) stands out: top-1 = e / (e + 3) for a 4-node neighbourhood
    assert stats["top1_probability"] == pytest.approx(math.e / (math.e + 3), rel=1e-5)
    assert stats["uniform_top1"] == pytest.approx(0.25)


def test_median_rule_sets_sigma_to_the_median_neighbour_distance(shape):
    z, idx = line_graph(16, 4)
    z = z * 100
    fixed = shape.target_stats(z, idx, idx, Kernel("rbf", sigma=1.0))
    median = shape.target_stats(z, idx, idx, Kernel("rbf", sigma_rule="median"))
    distances = (z[0, :, None, 0] - z[0, idx[0], 0]).abs()[:, 1:]  # self pairs left out
    assert median["sigma"] == pytest.approx(float(distances.flatten().median()), rel=1e-5)
    assert median["median_distance"] == pytest.approx(median["sigma"], rel=1e-5) == fixed["median_distance"]
    assert median["k_below_1e-2_others"] < 0.5 and median["k_spread_others"] > 0.05
    assert 0 < median["entropy_over_log_u"] < 1


def test_one_layer_pair_end_to_end(shape):
    torch.manual_seed(0)
    x = torch.randn(2, 64, 3)
    teacher = create_model("dgcnn_teacher").eval()
    with torch.no_grad():
        t = teacher.forward_features(x)
    loss, grad, idx_s = shape.layer_push("dgcnn_student", x, t, (3, 3), Kernel("rbf", sigma_rule="median"), 100.0)
    assert loss > 0 and grad > 0 and idx_s.shape[:2] == (2, 64)
    again = shape.layer_push("dgcnn_student", x, t, (3, 3), Kernel("rbf", sigma_rule="median"), 100.0)
    assert again[:2] == (loss, grad)  # the student is seeded
    rows = [
        {
            "teacher_layer": 3,
            "student_layer": 3,
            "rule": "median σ",
            "lsp": loss,
            "grad_norm": grad,
            **shape.target_stats(t.features[3], t.graphs[3], idx_s, Kernel("rbf", sigma_rule="median")),
        }
    ]
    text = shape.render(
        {"teacher": "t.pt", "student": "dgcnn_student", "clouds": 2, "points": 64, "lambda": 100.0, "rows": rows}
    )
    assert "| 3, 3 | median σ |" in text
