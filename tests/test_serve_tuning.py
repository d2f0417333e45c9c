"""The server-timing benchmarks' pieces that need no server (serve_tuning.py: the process tree it charges CPU to,
the pooling of rounds, the report; idle_gap.py's timed runs; fresh_clone.py's pytest summary), the
--spin/--no-spin switch serve_tuning passes to `pointkd serve`, and its --loop/--http choice of uvicorn's stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from scriptload import ROOT, load_script

from pointkd.cli import build_parser, serve
from pointkd.process import descendants
from serving.launch import server_stack

tuning = load_script(ROOT / "benchmarks" / "serve_tuning.py", "serve_tuning")


def test_descendants_finds_children_and_grandchildren_and_cpu_seconds_skips_gone_pids():
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
    code += "time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while len(descendants(child.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        below = descendants(child.pid)
        assert len(below) == 1 and below[0] != child.pid  # the grandchild
        assert set(descendants(os.getpid())) >= {child.pid, below[0]}
        assert tuning.cpu_seconds([child.pid, 2**22 + 7]).keys() == {child.pid}  # a gone pid is skipped
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, 9)
        child.kill()
        child.wait()


def _round(latencies, errors=0, main=2.0, workers=0.5):
    lat = list(latencies)
    return {"latencies": lat, "errors": errors, "p99_ms": max(lat), "cpu_main_ms": main, "cpu_workers_ms": workers}


def test_pooled_percentiles_are_over_all_rounds_and_the_worst_round_is_kept():
    rounds = [_round(range(1, 101)), _round([200.0] * 10, errors=1, main=4.0)]
    p = tuning.pooled(rounds)
    assert p["requests"] == 110 and p["errors"] == 1
    assert p["p50_ms"] == pytest.approx(55.5, abs=1)
    assert p["p99_ms"] == 200.0 and p["worst_round_p99_ms"] == 200.0 and p["round_p99_ms"] == [100, 200.0]
    assert p["cpu_main_ms_per_request"] == 3.0


def test_report_names_the_setting_with_the_lowest_pooled_p99():
    row = {"requests": 10, "errors": 0, "p50_ms": 5.0, "p95_ms": 6.0, "worst_round_p99_ms": 9.0}
    row |= {"cpu_main_ms_per_request": 3.0, "cpu_workers_ms_per_request": 1.0, "parse_workers": 2}
    report = {
        "device": {"cpu": "Test CPU", "cores": 2},
        "busy_cores_before": 0.0,
        "rate": 50.0,
        "seconds": 15.0,
        "rounds": 2,
        "command": "a b",
        "rows": [
            {"format": "onnx", "threads": 2, "spin": True, "p99_ms": 12.0, **row},
            {"format": "onnx-fused", "threads": 1, "spin": False, "p99_ms": 8.5, **row},
        ],
    }
    md = tuning.markdown(report)
    assert "Lowest pooled p99: onnx-fused, 1 thread(s), spinning off, 2 parse workers: 8.50 ms" in md
    assert md.count("\n| – | onnx") == 2  # an older report: no artifact column values
    # two artifacts of one format are told apart by folder, with each one's test-split OA
    report["rows"] = [
        {"artifact": "a", "model": "m", "format": "onnx-fused", "oa": 0.8, "threads": 1, "spin": True, "p99_ms": 11.0}
        | row,
        {"artifact": "b", "model": "m", "format": "onnx-fused", "oa": 0.7, "threads": 1, "spin": True, "p99_ms": 9.0}
        | row,
    ]
    md = tuning.markdown(report)
    assert "| a | onnx-fused | 80.00 | 1 | on | off | c |" in md and "| b | onnx-fused | 70.00 | 1 | on | off |" in md
    assert "Lowest pooled p99: b (onnx-fused), 1 thread(s), spinning on, 2 parse workers: 9.00 ms" in md
    # the keep-awake spinners and uvicorn's stack are columns, and named in the verdict when they win
    report["rows"][1] |= {"keep_awake": True, "stack": "python"}
    md = tuning.markdown(report)
    assert "| a | onnx-fused | 80.00 | 1 | on | off | c | 2 |" in md
    assert "| b | onnx-fused | 70.00 | 1 | on | on | python | 2 |" in md
    assert "spinning on, keep-awake, asyncio + h11, 2 parse workers: 9.00 ms" in md


@pytest.mark.parametrize(("flag", "spin"), [([], True), (["--spin"], True), (["--no-spin"], False)])
def test_serve_spin_switch(flag, spin):
    args = build_parser().parse_args(["serve", "some/artifact", *flag])
    assert args.spin is spin


def test_serve_passes_its_loop_and_parser_to_uvicorn(monkeypatch, tiny_artifact):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    parser = build_parser()
    serve.run(parser.parse_args(["serve", str(tiny_artifact), "--loop", "asyncio", "--http", "h11"]), parser)
    assert (seen["loop"], seen["http"]) == ("asyncio", "h11")
    serve.run(parser.parse_args(["serve", str(tiny_artifact)]), parser)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    # auto: uvloop, and httptools under the network edge's deadlines and limits (serving/edge.py)
    assert seen["loop"] == "uvloop" and issubclass(seen["http"], HttpToolsProtocol)
    assert seen["http"].__name__ == "EdgeProtocol"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", str(tiny_artifact), "--http", "h2"])


def test_server_stack_auto_is_the_c_stack_the_serve_extra_installs():
    assert server_stack() == ("uvloop", "httptools")  # both are in pyproject's serve extra
    assert server_stack("asyncio", "h11") == ("asyncio", "h11")


idle_gap = load_script(ROOT / "benchmarks" / "studies" / "idle_gap" / "idle_gap.py", "idle_gap")


def test_idle_gap_times_each_run_without_the_gap_and_counts_cpu_per_run():
    calls = []

    def run(x):
        calls.append(x)
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:  # 2 ms of CPU
            pass

    start = time.perf_counter()
    times, cpu = idle_gap.timed_runs(run, [1, 2, 3, 4, 5], gap_s=0.05)
    assert calls == [1, 2, 3, 4, 5] and len(times) == 5
    assert time.perf_counter() - start >= 5 * 0.052  # the gaps were slept
    assert min(times) >= 1.9  # each run's own 2 ms...
    assert sorted(times)[2] < 40  # ...and not its 50 ms gap (the median, so one preempted run cannot fail this)
    assert 0 <= cpu < 50


fresh_clone = load_script(ROOT / "benchmarks" / "fresh_clone.py", "fresh_clone")


def test_fresh_clone_reads_pytests_last_summary_line():
    out = "3 failed, 1 passed in 2.00s\n...\n603 passed, 3 skipped, 312 warnings in 241.22s (0:04:01)\n"
    s = fresh_clone.pytest_summary(out)
    assert s == {"counts": {"passed": 603, "skipped": 3, "warnings": 312}, "suite_seconds": 241.22}
    assert fresh_clone.pytest_summary("make: *** [Makefile:19: test] Error 1") == {}
    failed = fresh_clone.pytest_summary("== 1 failed, 578 passed, 3 skipped in 294.65s (0:04:54) ==")
    assert failed["counts"] == {"failed": 1, "passed": 578, "skipped": 3}


def test_fresh_clone_reads_the_durations_table_slowest_first():
    out = (
        "============================= slowest 3 durations ==============================\n"
        "12.05s call     tests/test_bench.py::test_rows[onnx]\n"
        "30.50s setup    tests/test_bench.py::test_rows[onnx]\n"
        "0.51s teardown tests/test_cli.py::test_help\n"
        "1.00s call tests/not a duration line\n"
        "600 passed in 200.00s (0:03:20)\n"
    )
    rows = fresh_clone.slowest(out)
    assert [(r["seconds"], r["phase"]) for r in rows] == [(30.5, "setup"), (12.05, "call"), (0.51, "teardown")]
    assert rows[0]["test"] == "tests/test_bench.py::test_rows[onnx]"
    table = fresh_clone.markdown(
        {
            "device": {"cpu": "x", "cores": 2},
            "busy_cores_before": 0.0,
            "commit": "0" * 40,
            "wall_seconds": 60,
            "status": 0,
            "pytest": fresh_clone.pytest_summary(out),
            "slowest": rows,
        }
    )
    assert "| 30.5 | setup | `tests/test_bench.py::test_rows[onnx]` |" in table and "200 s" in table
    assert fresh_clone.slowest("no table here") == []


@pytest.mark.parametrize("script", ["serve_tuning", "idle_gap"])
def test_a_folder_that_is_not_an_artifact_is_refused_before_any_run(script, tmp_path, capsys):
    module = {"serve_tuning": tuning, "idle_gap": idle_gap}[script]
    with pytest.raises(SystemExit) as stop:
        module.main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "not a pointkd artifact" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
