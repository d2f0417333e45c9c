"""pointkd.bench.harness: the maintained benchmarks' common flags, interleaved timing, summaries and report writing,
and pointkd.results' shared per-class rendering (one function for benchmarks/per_class.py and docs/results.md) and
its repository-relative naming of measured files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pointkd.bench import harness
from pointkd.bench.device import device_id
from pointkd.results import per_class_lines


def test_common_flags_keep_each_benchmarks_spelling():
    parser = harness.add_common_args(argparse.ArgumentParser(), repeats=200, warmup=5, repeats_flags=("--runs",))
    args = parser.parse_args(["--out-dir", "/tmp/x", "--runs", "12", "--threads", "1"])
    assert (args.out, args.repeats, args.warmup, args.threads) == (Path("/tmp/x"), 12, 5, [1])
    args = harness.add_common_args(argparse.ArgumentParser(), threads=None, rounds=3).parse_args([])
    assert args.out is None and args.rounds == 3 and not hasattr(args, "threads") and not hasattr(args, "repeats")


def test_out_folder_defaults_to_the_devices_results_folder(tmp_path):
    info = {"cpu": "Test CPU", "microarch": "zen9", "simd": "avx2", "cores": 2}
    assert harness.out_folder(None, info, results=tmp_path) == tmp_path / device_id(info)
    assert harness.out_folder(tmp_path / "mine", info) == tmp_path / "mine"


def test_interleaved_warms_up_then_alternates_rounds():
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b")}
    times = harness.interleaved(fns, repeats=6, rounds=3, warmup=2)
    assert calls[:4] == ["a", "a", "b", "b"]  # the warm-up, each in turn
    # each round: one untimed call, then repeats // rounds timed ones, a then b
    assert calls[4:] == (["a"] * 3 + ["b"] * 3) * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6}


def test_summary_and_latency_give_the_report_keys():
    s = harness.summary([1.0, 2.0, 3.0, 4.0, 5.0], low=True)
    assert s == {"p50_ms": 3.0, "p90_ms": 4.6, "min_ms": 1.0, "runs": 5}
    assert list(harness.summary([2.0, 1.0])) == ["p50_ms", "p90_ms", "runs"]
    lat = harness.latency(lambda: None, repeats=12, warmup=1)
    assert list(lat) == ["runs", "p50_ms", "p95_ms", "p99_ms"] and lat["runs"] == 12
    assert 0 <= lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]


def test_write_puts_json_and_markdown_side_by_side(tmp_path):
    md = harness.write(tmp_path / "dev", "thing", {"rows": [1]}, "# Thing\n")
    assert md == tmp_path / "dev" / "thing.md" and md.read_text() == "# Thing\n"
    assert json.loads((tmp_path / "dev" / "thing.json").read_text()) == {"rows": [1]}


def test_per_class_rendering_writes_each_models_figures_and_each_class_counts_and_shares():
    model = {"checkpoint": "x/t.pt", "k": 20, "oa": 0.9, "macc": 0.85}
    report = {
        "points": 1024,
        "teacher": model,
        "student": {**model, "checkpoint": "x/s.pt"},
        "rows": [{"class": "cup", "clouds": 20, "teacher": 15, "student": 11, "delta": -0.2}],
    }
    lines = per_class_lines(report)
    assert lines[0].startswith("`python benchmarks/per_class.py`: the whole test split at 1024 points")
    assert "Teacher `t.pt` (k 20) OA 90.00 / mAcc 85.00; served student `s.pt`" in lines[0]
    assert lines[-1] == "| cup | 20 | 15 (75.0 %) | 11 (55.0 %) | -20.00 |"


def test_repo_path_names_files_inside_the_repository_relative_to_it(tmp_path, monkeypatch):
    from pointkd.results import repo_path

    root = tmp_path / "repo"
    (root / "benchmarks").mkdir(parents=True)
    monkeypatch.chdir(root / "benchmarks")
    assert repo_path(Path("../benchmarks/x.pt"), root) == "benchmarks/x.pt"
    assert repo_path(Path("../../outside.pt"), root) == str(tmp_path / "outside.pt")
