"""benchmarks/studies/graph_reuse/graph_reuse.py: every graph choice, the same weights in each variant, overlap
counted right, and a run end to end on the tiny checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scriptload import load_script

from pointkd.checkpoint import model_from_checkpoint
from pointkd.models import create_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "studies" / "graph_reuse" / "graph_reuse.py"


@pytest.fixture(scope="module")
def reuse():
    return load_script(SCRIPT, "graph_reuse_bench")


def test_layer_sets_are_every_choice_with_layer_zero_the_dynamic_one_first(reuse):
    sets = reuse.layer_sets(4)
    assert sets[0] == (0, 1, 2, 3) and sets[-1] == (0,)
    assert len(sets) == len(set(sets)) == 8 and all(s[0] == 0 and list(s) == sorted(s) for s in sets)


def test_variants_keep_the_weights_and_reuse_the_graphs(reuse):
    torch.manual_seed(0)
    model = create_model("dgcnn_student", widths=(8, 8, 16, 16), k=6).eval()
    x = torch.randn(2, 64, 3)
    same = reuse.with_graphs(model, (0, 1, 2, 3), 6)
    with torch.inference_mode():
        assert torch.equal(same(x), model(x))
        static = reuse.with_graphs(model, (0,), 6).forward_features(x)
    assert all(torch.equal(g, static.graphs[0]) for g in static.graphs)
    assert reuse.graph_overlap(reuse.with_graphs(model, (0,), 6), x) == [1.0, 1.0, 1.0]  # each reuses the last
    overlap = reuse.graph_overlap(model, x, batch_size=1)
    with torch.inference_mode():
        graphs = model.forward_features(x).graphs
    first = (graphs[1][..., :, None] == graphs[0][..., None, :]).any(-1).float().mean().item()
    assert overlap[0] == pytest.approx(first) and all(0 <= v <= 1 for v in overlap)


def test_a_run_reports_every_variant(tiny_checkpoint, tmp_path):
    cmd = [sys.executable, str(SCRIPT), str(tiny_checkpoint), "--data", "synthetic", "--points", "64", "32"]
    cmd += ["--overlap-clouds", "4", "--out-dir", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "graph_reuse.json").read_text())
    [c] = report["checkpoints"]
    assert [(r["points"], tuple(r["knn_layers"])) for r in c["rows"]] == [
        (n, s) for n in (64, 32) for s in [(0, 1, 2), (0, 1), (0, 2), (0,)]
    ]
    assert {r["k"] for r in c["rows"] if r["points"] == 32} == {3}  # k 6 at 64 points, scaled
    assert all(0 <= r["oa"] <= 1 for r in c["rows"]) and set(c["overlap"]) == {"64", "32"}
    full = model_from_checkpoint(tiny_checkpoint)
    assert full.config.knn_layers is None  # the checkpoint on disk is untouched
    md = (tmp_path / "graph_reuse.md").read_text()
    assert "| 0, 1, 2 | 3 |" in md and "| 0 | 1 |" in md and "+0.00 |" in md


def test_run_folders_are_named_by_their_run_and_render_rewrites_the_markdown(reuse, tmp_path):
    assert reuse.label("/x/runs/lsp-s3/last.pt") == "lsp-s3/last"
    assert reuse.label("benchmarks/checkpoints/student_lsp_tail1024.pt") == "student_lsp_tail1024"
    rows = [{"points": 64, "k": 6, "knn_layers": s, "oa": oa, "macc": 0.5} for s, oa in [([0, 1], 0.5), ([0], 0.25)]]
    report = {"test_clouds": 16, "command": "c", "checkpoints": [{"checkpoint": "r/kd-s1/last.pt", "name": "last"}]}
    report["checkpoints"][0] |= {"rows": rows, "overlap": {"64": [0.5]}}
    (tmp_path / "graph_reuse.json").write_text(json.dumps(report))
    argv = [str(SCRIPT), "--render", "--out-dir", str(tmp_path)]
    subprocess.run([sys.executable, *argv], check=True, capture_output=True, text=True, timeout=120)
    md = (tmp_path / "graph_reuse.md").read_text()
    assert "## `kd-s1/last`" in md and "| 0 | 1 | 25.00 | -25.00 |" in md and "layer 1: 0.50" in md
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "give at least one checkpoint" in result.stderr
