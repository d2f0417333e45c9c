"""benchmarks/soak.py's machinery on a tiny artifact for a few seconds: every kind of traffic sent and tallied, the
valid answers checked against a reference, health and RSS watched, the report written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scriptload import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def soak():
    return load_script(SCRIPT, "soak_bench")


def test_process_tree_rss_counts_the_processes_below(soak):
    import os

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        own, below, count = soak.process_tree_rss_mb(os.getpid())
        assert own > 10 and below > 1 and count >= 1
    finally:
        child.kill()
        child.wait()


def test_hostile_requests_cover_every_body_kind(soak):
    hostile = soak.hostile_requests("m", max_body=1000)
    kinds = {h["content-type"].split(";")[0] for _, _, h in hostile if "content-type" in h}
    assert kinds >= {"multipart/form-data", "application/json", "application/octet-stream", "text/plain"}
    assert any(soak.HEADER in h for _, _, h in hostile)
    assert any(len(body) == 1001 for _, body, _ in hostile)  # one body just over the limit


def test_a_short_soak_reports_everything(tiny_artifact, tmp_path):
    cmd = [sys.executable, str(SCRIPT), str(tiny_artifact), "--seconds", "3", "--rate", "6", "--hostile-rate", "7"]
    cmd += ["--clouds", "4", "--data", "synthetic", "--sample-s", "0.5", "--out-dir", str(tmp_path)]
    cmd += ["--server-args", "--threads", "1", "--parse-workers", "2", "--max-body-mb", "1"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    (folder,) = tmp_path.iterdir()
    report = json.loads((folder / "soak.json").read_text())
    assert report["server_survived"] and report["server_errors_5xx"] == 0
    assert report["status_counts"]["valid"] == {"200": 18} and report["valid"]["wrong_class"] == 0
    hostile = report["status_counts"]["hostile"]
    assert sum(hostile.values()) == 21 and set(hostile) <= {"200", "400", "413", "415", "422"}
    assert report["health"]["probes"] >= 5 and report["health"]["failures"] == 0
    assert len(report["rss"]) >= 3 and all(r["workers"] >= 2 and r["server_mb"] > 0 for r in report["rss"])
    md = (folder / "soak.md").read_text()
    assert "server survived: **True**" in md and "| hostile |" in md
