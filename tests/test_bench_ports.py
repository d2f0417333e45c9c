"""The benchmarks ported onto pointkd.bench.harness (issue #33) keep their reports and their users' flags:
``--out DIR/NAME`` still names the files of edge_attacks, edge_memory, edge_overhead, json_parse and robustness,
each report keeps its schema (plus the harness's device block where the report has a top level for it), and the
old flag spellings (``--requests``, ``--out-dir``) still run."""

from __future__ import annotations

import json
import subprocess
import sys

from scriptload import ROOT, load_script

from pointkd.bench import harness

BENCH = ROOT / "benchmarks"


def test_out_stem_names_the_files_or_falls_back_to_the_default(tmp_path):
    default = tmp_path / "results" / "robustness"
    assert harness.out_stem(None, default) == (tmp_path / "results", "robustness")
    assert harness.out_stem(str(tmp_path / "r_art"), default) == (tmp_path, "r_art")
    assert harness.out_stem(tmp_path / "r_art.json", default) == (tmp_path, "r_art")
    assert harness.out_stem(tmp_path / "x" / "r.md", default) == (tmp_path / "x", "r")


def test_json_parse_times_both_versions_and_keeps_its_schema(tmp_path):
    out = tmp_path / "jp"
    cmd = [sys.executable, str(BENCH / "json_parse.py"), "--before", str(ROOT), "--before-commit", "same"]
    cmd += ["--calls", "2", "--repeats", "3", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = json.loads(out.with_suffix(".json").read_text())
    committed = json.loads((BENCH / "results" / "json_parse.json").read_text())
    assert set(committed) <= set(report) and report["device"]["threads"] == [1]
    assert (report["calls"], report["repeats"], report["before_commit"]) == (2, 3, "same")
    names = [f"{body} / {version}" for body in ("json /predict", "v2 JSON infer") for version in ("before", "after")]
    assert list(report["rows"]) == names
    for name, row in report["rows"].items():
        whats = ["load_json", "load_json + numbers_of"] + ["load_json + rows_of_three"] * name.startswith("json")
        assert list(row) == ["bytes", *whats] and row["bytes"] > 60000
        for what in whats:
            assert list(row[what]) == ["min_ms", "median_ms"] and 0 < row[what]["min_ms"] <= row[what]["median_ms"]
    assert "| json /predict / after |" in out.with_suffix(".md").read_text()


def test_edge_overhead_keeps_its_rows_and_the_requests_flag(tmp_path):
    out = tmp_path / "eo"
    cmd = [sys.executable, str(BENCH / "edge_overhead.py"), "--requests", "20", "--rounds", "2", "--warmup", "3"]
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = json.loads(out.with_suffix(".json").read_text())
    committed = json.loads((BENCH / "results" / "edge_overhead.json").read_text())
    assert list(report) == list(committed) == ["device", "requests", "rounds", "rows"]
    assert "cpu" in report["device"] and (report["requests"], report["rounds"]) == (20, 2)
    assert list(report["rows"]) == list(committed["rows"]) == ["stock", "edge"]
    for kind, r in report["rows"].items():
        assert list(r) == list(committed["rows"][kind]) == ["requests", "p50_ms", "p99_ms", "min_ms"]
        assert r["requests"] == 20 and 0 < r["min_ms"] <= r["p50_ms"] <= r["p99_ms"]
    assert "`python benchmarks/edge_overhead.py --requests 20 --rounds 2`" in out.with_suffix(".md").read_text()


def test_edge_attacks_writes_its_report_where_out_names_it(tiny_artifact, tmp_path, monkeypatch):
    """In-process, the two quick attacks only (the others wait on the server's deadlines), on a real server."""
    module = load_script(BENCH / "edge_attacks.py", "edge_attacks_bench")
    every = module.attacks
    quick = ("one 64 MiB header", "200 header fields")
    monkeypatch.setattr(module, "attacks", lambda port, n: {k: v for k, v in every(port, n).items() if k in quick})
    out = tmp_path / "ea"
    argv = ["edge_attacks.py", str(tiny_artifact), "--connections", "8", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    module.main()
    report = json.loads(out.with_suffix(".json").read_text())
    committed = json.loads((BENCH / "results" / "edge_attacks.json").read_text())
    assert set(committed) <= set(report) and "cpu" in report["device"] and report["connections"] == 8
    assert list(report["attacks"]) == list(quick)
    for name, row in report["attacks"].items():
        assert set(committed["attacks"][name]) == set(row)
        assert row["still_open_at_limit"] == 0 and sum(row["statuses"].values()) == row["connections"]
    assert report["attacks"]["200 header fields"]["connections"] == 2
    assert "| 200 header fields | 2 |" in out.with_suffix(".md").read_text()


def test_load_test_takes_one_server_thread_count():
    """load_test's ``--threads`` (the harness's flag) is the server's one thread count: two are refused before any
    server or data is touched."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "load_test.py"), "x", "--threads", "1", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2 and "--threads takes one count here" in done.stderr


def test_robustness_prep_cost_writes_a_device_block_and_its_rows(tmp_path):
    """On the synthetic set (its clouds have the served student's 1024 points), 2 clouds: the report's schema."""
    out = tmp_path / "rc"
    cmd = [sys.executable, str(BENCH / "robustness.py"), "--prep-cost", "--cost-clouds", "2", "--data", "synthetic"]
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = json.loads(out.with_name("rc_prep_cost.json").read_text())
    committed = json.loads((BENCH / "results" / "robustness_prep_cost.json").read_text())
    assert list(report) == list(committed) == ["device", "model", "clouds", "rows"]
    assert report["device"]["threads"] == [1] and report["clouds"] == 2
    assert list(report["rows"]) == list(committed["rows"])
    assert all(r["n"] == 2 and r["median_ms"] > 0 for r in report["rows"].values())
