"""benchmarks/load_test.py against a live server on a tiny artifact: rows, no errors, a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scriptload import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "load_test.py"


def test_load_test_reports_every_level_without_errors(tiny_artifact, tmp_path):
    cmd = [sys.executable, str(SCRIPT), str(tiny_artifact), "--data", "synthetic", "--concurrency", "1", "3"]
    cmd += ["--requests", "12", "--seconds", "5", "--rate", "40", "--rate-seconds", "0.5", "--rate-repeats", "2"]
    cmd += ["--out-dir", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "load_test.json").read_text())
    assert 0 < report["model_only"]["p50_ms"] <= report["model_only"]["p99_ms"]
    assert report["server"]["parse_workers"] == 2
    levels = [(r["payload"], r["mode"], r["concurrency"]) for r in report["rows"]]
    kinds = ("json", "v2-json", "binary", "v2-binary")  # JSON first: the default
    modes = (("closed", 1), ("closed", 3), ("open 40/s #1", None), ("open 40/s #2", None))
    assert levels == [(kind, mode, c) for kind in kinds for mode, c in modes]
    for r in report["rows"]:
        assert r["errors"] == 0 and r["requests"] >= 12 and 0 < r["p50_ms"] <= r["p99_ms"]
    open_rows = [r for r in report["rows"] if r["payload"] == "binary" and r["mode"].startswith("open")]
    assert report["goal"]["open_loop_requests"] == sum(r["requests"] for r in open_rows) == 40
    assert report["goal"]["open_loop_p99_ms_per_run"] == [r["p99_ms"] for r in open_rows]
    # pooled over both runs, it is no lower than either run's median (it can exceed both runs' own p99s: 20 samples)
    assert report["goal"]["open_loop_p99_ms"] >= max(r["p50_ms"] for r in open_rows)
    assert report["goal"]["client"].startswith("aiohttp")
    for r in report["rows"]:  # /predict answers report the server's own time; v2 answers do not
        if r["mode"].startswith("open") and not r["payload"].startswith("v2-"):
            assert 0 < r["server_p50_ms"] <= r["server_p99_ms"] and r["server_p50_ms"] < r["p50_ms"]
        else:
            assert "server_p50_ms" not in r
    assert report["server"]["raw_in_threads"] is True
    assert (report["server"]["loop"], report["server"]["http"]) == ("uvloop", "httptools")
    md = (tmp_path / "load_test.md").read_text()
    assert report["num_points"] == 64 and "| binary | closed | 3 |" in md and "| v2-binary | closed | 3 |" in md
    assert "raw float32 bodies parsed in threads, uvicorn on uvloop + httptools." in md and ", ," not in md
    assert set(report["goal"]["pooled_p99_ms"]) == set(kinds) and report["goal"]["payloads"] == ["json", "binary"]
    assert report["goal"]["requests"] == {kind: 40 for kind in kinds}
    assert report["goal"]["met"] == all(report["goal"]["pooled_p99_ms"][k] <= 10 for k in ("json", "binary"))
    assert "| json | closed | 1 |" in md and "server overhead p50 ms" in md and "v2 infer, JSON tensors" in md
    # the time split: every open-loop run was answered by runtime calls, and its three parts add up to the latency
    for r in open_rows:
        assert r["model_call_mean_ms"] > 0 and r["batch_mean"] >= 1 and r["queue_mean_ms"] >= 0
    split = report["time_split"]["binary"]
    parts = split["model_call_mean_ms"] + split["server_rest_mean_ms"] + split["http_and_client_mean_ms"]
    assert parts == pytest.approx(split["latency_mean_ms"]) and split["http_and_client_mean_ms"] > 0
    assert set(report["time_split"]) == {"binary", "json"}  # v2 answers carry no server_ms
    assert "Where an open-loop binary request's time went" in md and "open-loop json request's time" in md


def test_load_clients_compares_both_clients_on_one_server(tiny_artifact, tmp_path):
    script = SCRIPT.parent / "load_clients.py"
    cmd = [sys.executable, str(script), str(tiny_artifact), "--data", "synthetic", "--rate", "20", "--seconds", "1"]
    cmd += ["--repeats", "1", "--out-dir", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "load_clients.json").read_text())
    assert [(r["client"], r["run"]) for r in report["rows"]] == [("httpx", 1), ("aiohttp", 1)]
    for r in report["rows"]:
        assert r["errors"] == 0 and r["requests"] == 20 and 0 < r["p50_ms"] <= r["p99_ms"]
    assert "median p99" in (tmp_path / "load_clients.md").read_text()


def test_load_test_refuses_an_empty_open_loop(tiny_artifact, tmp_path, monkeypatch, capsys):
    """In-process: the refusal comes from its argument checks, before any server or data is touched."""
    module = load_script(SCRIPT, "load_test_bench")
    argv = [str(SCRIPT), str(tiny_artifact), "--rate-repeats", "0", "--out-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        module.main()
    assert done.value.code == 2 and "--rate-repeats must be positive" in capsys.readouterr().err
    assert not (tmp_path / "load_test.json").exists()


def test_runtime_share_is_the_mean_call_between_two_scrapes():
    module = load_script(SCRIPT, "load_test_bench")
    text = "\n".join(
        [
            "# HELP pointkd_inference_seconds Runtime call duration",
            'pointkd_inference_seconds_bucket{le="0.001"} 3.0',
            "pointkd_inference_seconds_sum 0.5",
            "pointkd_inference_seconds_count 100.0",
            "pointkd_batch_size_sum 150.0",
            "pointkd_batch_size_count 100.0",
            "pointkd_queue_seconds_sum 0.25",
        ]
    )
    before = module.runtime_counters(text)
    assert before == {
        "pointkd_inference_seconds_sum": 0.5,
        "pointkd_inference_seconds_count": 100.0,
        "pointkd_batch_size_sum": 150.0,
        "pointkd_queue_seconds_sum": 0.25,
    }
    after = {**before, "pointkd_inference_seconds_sum": 0.9, "pointkd_inference_seconds_count": 150.0}
    after |= {"pointkd_batch_size_sum": 200.0, "pointkd_queue_seconds_sum": 0.3}
    share = module.runtime_share(before, after)  # 50 calls: 400 ms, 50 clouds, 50 ms queued
    assert share == pytest.approx({"model_call_mean_ms": 8.0, "batch_mean": 1.0, "queue_mean_ms": 1.0})
    assert module.runtime_share(before, before) == {}
