"""benchmarks/train_speed.py: the worker times real steps; the parent writes JSON + Markdown rows, including
skipped and failed ones. Tiny settings on the synthetic set, one thread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from scriptload import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
TINY = ["--data", "synthetic", "--points", "64", "--batch-size", "4", "--steps", "2", "--warmup", "0"]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(SCRIPT, "train_speed", sys.modules.__setitem__)  # dataclasses look their module up by name


def test_worker_in_process(bench: ModuleType) -> None:
    opts = bench.BenchOptions(points=64, batch_size=4, steps=2, warmup=1, threads=1, data="synthetic")
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng():  # the worker seeds the global RNG and sets threads: undo both
            naive = bench.run_worker(bench.BenchConfig("dgcnn_student", "naive", "dense", "glibc"), opts)
            fast = bench.run_worker(bench.BenchConfig("dgcnn_student", "fast", "dense", "glibc"), opts)
    finally:
        torch.set_num_threads(threads)
    for r in (naive, fast):
        assert r["status"] == "ok"
        assert len(r["times_ms"]) == 2 and all(t > 0 for t in r["times_ms"])
        assert 0 < r["ms_p10"] <= r["ms_p50"] <= r["ms_p90"]
        assert r["clouds_per_s"] == pytest.approx(4 / (r["ms_p50"] / 1e3))
        assert len(r["losses"]) == 3
    # Same seed, same batches, same init: the two implementations compute the same first step.
    assert naive["losses"][0] == pytest.approx(fast["losses"][0], rel=1e-4)


def test_default_grid(bench: ModuleType) -> None:
    rows = bench.grid(["dgcnn_teacher", "dgcnn_student"])
    assert len(rows) == 12
    assert rows[0] == bench.BenchConfig("dgcnn_teacher", "naive", "dense", "glibc")
    assert len(bench.grid(["dgcnn_student"], full=True)) == 12
    assert bench.parse_row("fast,cluster-xyz,glibc") == ("fast", "cluster-xyz", "glibc")
    assert bench.parse_row("fast,cluster,jemalloc") == ("fast", "cluster", "jemalloc")


def test_script_writes_json_and_markdown(tmp_path: Path) -> None:
    rows = ["naive,dense,glibc", "fast,dense,jemalloc", "fast,cluster,jemalloc"]
    cmd = [sys.executable, str(SCRIPT), *TINY, "--threads", "1", "--models", "dgcnn_student"]
    proc = subprocess.run(
        [*cmd, "--rows", *rows, "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "train_speed.json").read_text())
    host = data["host"]
    assert host["points"] == 64 and host["batch_size"] == 4 and host["threads"] == 1
    assert host["cpu_model"] and host["torch"] and host["cores"] >= 1
    got = [(r["edgeconv"], r["knn"], r["allocator"]) for r in data["rows"]]
    assert got == [tuple(r.split(",")) for r in rows]

    from pointkd.models.knn import torch_cluster_available
    from pointkd.process import find_jemalloc

    base, jem, cluster = data["rows"]
    assert base["status"] == "ok" and base["allocator_loaded"] == "glibc"
    assert base["ms_p50"] > 0 and base["clouds_per_s"] > 0 and base["torch_threads"] == 1
    if find_jemalloc() is None:
        assert jem["status"].startswith("skipped")
    else:
        assert jem["status"] == "ok" and jem["allocator_loaded"] == "jemalloc" and jem["ms_p50"] > 0
        assert jem["losses"][0] == pytest.approx(base["losses"][0], rel=1e-4)
    if not torch_cluster_available():
        assert cluster["status"].startswith("skipped: torch-cluster")

    md = (tmp_path / "train_speed.md").read_text()
    assert "| model | edgeconv | knn | allocator | ms/step p50 | p10–p90 | clouds/s | speed-up |" in md
    assert "| dgcnn_student | naive | dense | glibc |" in md and "1.00x" in md
    assert md.strip() in proc.stdout


def test_failing_child_becomes_a_row(bench: ModuleType) -> None:
    # 8 points < the student's k=10: the child raises, the parent records why instead of crashing.
    opts = bench.BenchOptions(points=8, batch_size=2, steps=1, warmup=0, threads=1, data="synthetic")
    row = bench.run_config(bench.BenchConfig("dgcnn_student", "fast", "dense", "glibc"), opts)
    assert row["status"].startswith("failed: ValueError")
    assert "k=10" in row["status"]
    md = bench.markdown(
        {"cpu_model": "x", "cores": 1, "torch": "t", "threads": 1, "batch_size": 2, "points": 8, "steps": 1,
         "warmup": 0, "data": "synthetic", "date": "d", "busy_cores": 0.0},
        [row],
    )  # fmt: skip
    assert "failed: ValueError" in md
