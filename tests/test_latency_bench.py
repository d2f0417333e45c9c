"""benchmarks/latency.py end to end on a tiny synthetic model: every format, the profile, the targets table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pointkd.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"


def test_latency_report_has_a_row_per_format_batch_and_thread(tmp_path):
    args = ["train", "--config", "quickstart", "--data", "synthetic", "--out", str(tmp_path / "s"), "--no-progress"]
    args += ["--set", "data.num_points=64", "--set", "train.epochs=1", "--set", "train.batch_size=16"]
    args += ["--set", "train.max_batches_per_epoch=2"]
    args += ["--set", "model.overrides={widths: [8, 16], k: 6, mlp: [16]}"]
    assert main(args) == 0
    cmd = [sys.executable, str(SCRIPT), "--model", f"student_fast={tmp_path / 's' / 'best.pt'}@64"]
    cmd += ["--data", "synthetic", "--runs", "12", "--batch-runs", "10", "--threads", "1", "--batches", "1", "4"]
    cmd += ["--out-dir", str(tmp_path / "out")]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "out" / "latency.json").read_text())
    rows = report["rows"]
    assert {(r["format"], r["batch"]) for r in rows} == {
        (f, b) for f in ("torch", "onnx-naive", "onnx", "onnx-int8") for b in (1, 4)
    }
    for r in rows:
        assert r["runs"] >= 10 and 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["size_bytes"] > 0
        assert abs(r["fps"] - r["batch"] * 1000 / r["p50_ms"]) < 1e-6
    ops = {p["op"] for p in report["profiles"]["student_fast@64"]}
    assert {"TopK", "MatMul", "Gather"} <= ops
    assert any(t["target"].startswith("student_fast@64 int8 >= 3x smaller") for t in report["targets"])
    assert "| student_fast | 64 | onnx-int8 | 4 | 1 |" in (tmp_path / "out" / "latency.md").read_text()
