"""benchmarks/edge_memory.py against a real server on the tiny artifact, at small limits: the budget admits its
uploads and refuses one more, every upload is answered, and the report's bound is built from its own figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "edge_memory.py"


def test_edge_memory_reports_the_burst_and_its_bound(tiny_artifact, tmp_path):
    out = tmp_path / "edge_memory"
    cmd = [sys.executable, str(SCRIPT), str(tiny_artifact), "--max-body-mb", "2", "--budget-mb", "4"]
    cmd += ["--max-connections", "100", "--connections", "20", "--json-mb", "1", "--out", str(out)]
    cmd += ["--variant", "default=", "--variant", "no spool=--spool-body-mb 0"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    report = json.loads(out.with_suffix(".json").read_text())
    assert list(report["variants"]) == ["default", "no spool"]
    for r in report["variants"].values():
        b = r["burst"]
        assert b["uploads"] == 2 and b["statuses"] == [200, 200] and b["one_more"] == 503
        assert r["one_json"]["status"] == 200 and r["idle"]["connections"] == 20
        assert b["rss_peak_mb"] >= max(b["rss_held_mb"], b["rss_after_mb"]) > 0
        parse = 2 * r["one_json"]["json_factor"] * 2
        conns = 100 * r["idle"]["per_connection_kib"] / 1024
        assert r["bound_mb"] == pytest.approx(r["base_mb"] + 4 + parse + conns)
    assert "| no spool --spool-body-mb 0 |" in out.with_suffix(".md").read_text()
