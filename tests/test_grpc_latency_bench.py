"""benchmarks/grpc_latency.py against a live server (HTTP and gRPC) on a tiny artifact: every client answers, the
same probabilities, a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "grpc_latency.py"


def test_grpc_latency_reports_every_client_with_the_same_answers(tiny_artifact, tmp_path):
    cmd = [sys.executable, str(SCRIPT), str(tiny_artifact), "--data", "synthetic", "--requests", "10"]
    cmd += ["--warmup", "2", "--rate", "100", "--threads", "1", "--out-dir", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "grpc_latency.json").read_text())
    assert set(report["rows"]) == {"grpc", "grpc-stub", "http-binary", "http"}
    for row in report["rows"].values():
        assert row["requests"] == 10 and row["errors"] == 0 and 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["max_abs_diff"] < 1e-6
    assert "| tritonclient.grpc" in (tmp_path / "grpc_latency.md").read_text()
