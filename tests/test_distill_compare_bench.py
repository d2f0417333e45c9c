"""benchmarks/studies/distill_compare/distill_compare.py on a tiny synthetic budget: runs, skips finished runs,
reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pointkd.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "studies" / "distill_compare" / "distill_compare.py"
TINY = ["--set", "data.num_points=64", "--set", "train.batch_size=16", "--set", "train.epochs=1"]
TINY += ["--set", "train.max_batches_per_epoch=2"]


def test_compare_runs_then_skips_and_reports(tmp_path):
    teacher = ["train", "--config", "quickstart", "--data", "synthetic", "--out", str(tmp_path / "t"), "--no-progress"]
    teacher += [*TINY, "--set", "model.overrides={widths: [16, 16, 32, 32], k: 8, mlp: [32]}"]
    assert main(teacher) == 0
    cmd = [sys.executable, str(SCRIPT), "--teacher", str(tmp_path / "t" / "best.pt"), "--data", "synthetic"]
    cmd += ["--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out"), "--seeds", "3"]
    cmd += ["--only", "scratch-s3", "lsp-rbf-s3", *TINY, "--set", "model.overrides={widths: [8, 16], k: 4, mlp: [16]}"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    assert "scratch-s3:" in first.stdout and "lsp-rbf-s3:" in first.stdout
    report = json.loads((tmp_path / "out" / "distill_compare.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["scratch-s3", "lsp-rbf-s3"]
    for r in report["runs"]:
        assert 0 <= r["oa"] <= 1 and r["params"] > 0 and r["s_per_step"] > 0 and r["epochs"] == 1
    md = (tmp_path / "out" / "distill_compare.md").read_text()
    assert "| lsp-rbf | 1 |" in md
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    assert "scratch-s3:" not in again.stdout  # finished runs are not started again
