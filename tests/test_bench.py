"""`pointkd bench` / `select` / `demo`: real workers on a tiny model, checked against independent references."""

from __future__ import annotations

import json
import shutil

import pytest

from pointkd.bench import BenchOptions, BenchRow, read_report, run_bench, select_model
from pointkd.bench import run as bench_run
from pointkd.bench.device import device_id
from pointkd.bench.report import write_report
from pointkd.cli import build_parser, main
from pointkd.runtime.formats import ARTIFACT_FORMATS, FORMAT_NAMES
from pointkd.runtime.torch_runner import cuda_status

QUICK = dict(data="synthetic", repeats=10, max_seconds=1.0, timing_clouds=4, progress=False, log=lambda *_: None)


@pytest.fixture(scope="module")
def checkpoint_bench(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    opts = BenchOptions(
        formats=("torch", "onnx", "torch-cuda", "torch-cuda-graphs", "trt-fp16"), threads=(1, 2), **QUICK
    )
    paths, rows = run_bench([str(tiny_checkpoint)], out, opts)
    return paths, rows


def test_checkpoint_rows_match_an_independent_evaluation(checkpoint_bench, tiny_checkpoint):
    from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
    from pointkd.data import load_modelnet40
    from pointkd.train import evaluate

    _, rows = checkpoint_bench
    by = {(r.format, r.threads): r for r in rows}
    cuda = {("torch-cuda", None), ("torch-cuda-graphs", None)}
    assert set(by) == {("torch", 1), ("torch", 2), ("onnx", 1), ("onnx", 2), ("trt-fp16", None)} | cuda
    ckpt = load_checkpoint(tiny_checkpoint)
    data = load_modelnet40("synthetic", num_points=ckpt["num_points"])
    ref = evaluate(model_from_checkpoint(ckpt), data.test_x, data.test_y, ckpt["num_points"], data.num_classes)
    for fmt in ("torch", "onnx"):
        for threads in (1, 2):
            r = by[(fmt, threads)]
            assert r.status == "ok", r.reason
            assert r.oa == pytest.approx(ref.oa) and r.macc == pytest.approx(ref.macc)
            assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms
            assert r.runs >= 10 and r.clouds_per_s > 0 and r.peak_mb >= 0
            assert r.params == model_from_checkpoint(ckpt).num_parameters
    assert by[("torch", 1)].size_mb == pytest.approx(tiny_checkpoint.stat().st_size / 1e6)
    assert by[("onnx", 1)].artifact is not None
    trt = by[("trt-fp16", None)]
    assert trt.status == "failed" and trt.reason.startswith("TensorRT:")
    if cuda_status() is not None:  # no CUDA here: the torch-cuda rows say so instead of running
        for key in cuda:
            assert by[key].status == "failed" and by[key].reason.startswith("torch-cuda: no CUDA device here")


def test_report_files_round_trip(checkpoint_bench):
    paths, rows = checkpoint_bench
    device, back = read_report(paths["json"])
    assert back == rows
    assert paths["json"].parent.name == device_id(device)
    assert device["threads"] == [1, 2] and device["versions"]["onnxruntime"]
    md = paths["md"].read_text()
    assert device["cpu"] in md
    assert sum(line.startswith(f"| {rows[0].model} |") for line in md.splitlines()) == len(rows)
    assert "✅" in md and "❌" in md and "TensorRT:" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_artifacts_are_validated_and_bad_sources_become_rows(tiny_artifact, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_artifact, tampered)
    model = tampered / json.loads((tampered / "manifest.json").read_text())["model_file"]
    model.write_bytes(model.read_bytes() + b"\0")
    wrong_oa = tmp_path / "wrong_oa"
    shutil.copytree(tiny_artifact, wrong_oa)
    manifest = json.loads((wrong_oa / "manifest.json").read_text())
    manifest["accuracy"]["oa"] += 0.05
    (wrong_oa / "manifest.json").write_text(json.dumps(manifest))
    sources = [str(tiny_artifact), str(tmp_path / "missing.pt"), str(tampered), str(wrong_oa)]
    _, rows = run_bench(sources, tmp_path / "out", BenchOptions(threads=(1,), **QUICK))
    by = {r.model: r for r in rows}
    assert by[tiny_artifact.name].status == "ok"
    assert by[tiny_artifact.name].oa == pytest.approx(manifest["accuracy"]["oa"] - 0.05)
    assert by["missing"].status == "failed" and "not a checkpoint or artifact" in by["missing"].reason
    assert by["tampered"].status == "failed" and "sha256" in by["tampered"].reason
    assert by["wrong_oa"].status == "check_failed" and "measured by compile" in by["wrong_oa"].reason


def test_torch_cuda_artifact_runs_eager_and_graph_rows(tiny_checkpoint, tmp_path):
    """A torch-cuda artifact folder is benchmarked both ways; without CUDA each row fails with the reason."""
    from pointkd.export.compile import CompileOptions, compile_checkpoint

    folder = tmp_path / "tc"
    compile_checkpoint(
        tiny_checkpoint, folder, CompileOptions("torch-cuda", data="synthetic", device="cpu", log=lambda *_: None)
    )
    _, rows = run_bench([str(folder)], tmp_path / "out", BenchOptions(threads=(1, 2), **QUICK))
    assert [(r.format, r.threads) for r in rows] == [("torch-cuda", None), ("torch-cuda-graphs", None)]
    assert all(r.artifact == str(folder) and r.points == 64 for r in rows)
    if cuda_status() is not None:
        assert all(r.status == "failed" and "torch-cuda: no CUDA device here" in r.reason for r in rows)
    else:
        assert all(r.status == "ok" and r.p50_ms > 0 for r in rows), [r.reason for r in rows]


def test_gpu_rows_are_measured_once_without_a_thread_count(tiny_artifact, tmp_path, monkeypatch):
    """A GPU runtime's row (here: ONNX treated as one) is measured once, at the most threads, with no thread count;
    select then judges a GPU-only report as a whole."""
    monkeypatch.setattr(bench_run, "measured_once", lambda fmt: fmt == "onnx")
    paths, rows = run_bench([str(tiny_artifact)], tmp_path, BenchOptions(threads=(1, 2), **QUICK))
    assert len(rows) == 1 and rows[0].threads is None and rows[0].status == "ok" and rows[0].runs >= 10
    sel = select_model(rows, budget_ms=1000)
    assert sel.threads is None and sel.chosen is rows[0] and "(GPU rows)" in sel.explain()
    assert "| – |" in paths["md"].read_text()


def test_format_lists_agree():
    """The CLI's defaults and help name every format the code knows, in the same order."""
    assert build_parser().parse_args(["bench", "x.pt"]).formats == ",".join(FORMAT_NAMES)
    assert set(ARTIFACT_FORMATS) <= set(FORMAT_NAMES)  # every artifact format has its bench rows
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    fmt_help = next(a.help for a in sub.choices["compile"]._actions if a.dest == "fmt")
    assert fmt_help.replace(" (default)", "").split(" | ") == list(ARTIFACT_FORMATS)


def test_report_without_a_plot(tmp_path):
    rows = [BenchRow("m", "torch-cuda", "ok", oa=0.5, p50_ms=1.0, p95_ms=1.0, p99_ms=1.0)]
    device = {"cpu": "c", "cores": 1, "threads": [], "gpu": "g", "os": "o", "python": "3", "versions": {}}
    device["versions"] = {"pointkd": "0", "torch": "t", "onnxruntime": "-", "tensorrt": "-"}
    settings = {"warmup": 1, "repeats": 10, "max_seconds": 1, "timing_clouds": 1, "batch_size": 4, "test_clouds": 1}
    paths = write_report(tmp_path, device, rows, {**settings, "data": "d", "notes": "one process"}, plot=False)
    assert set(paths) == {"json", "md"} and not (tmp_path / "bench.png").exists()
    md = paths["md"].read_text()
    assert "threads measured: –" in md and "- Notes: one process" in md
    assert read_report(tmp_path)[1] == rows


def test_bench_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        run_bench(["x.pt"], tmp_path, BenchOptions(formats=("onnx", "tflite")))
    with pytest.raises(ValueError, match="thread counts"):
        run_bench(["x.pt"], tmp_path, BenchOptions(threads=(0,)))
    assert main(["bench", "x.pt", "--threads", "one"]) == 2


def _row(model, fmt, oa, p95, threads=2, status="ok", size=1.0, reason=""):
    lat = {} if p95 is None else {"p50_ms": p95 * 0.9, "p95_ms": p95, "p99_ms": p95 * 1.1}
    return BenchRow(model, fmt, status, threads=threads, oa=oa, size_mb=size, reason=reason, **lat)


ROWS = [
    _row("teacher", "onnx", 0.85, 30.0),
    _row("student", "onnx", 0.80, 8.0),
    _row("student", "onnx-int8", 0.80, 8.0, size=0.3),
    _row("fast", "onnx", 0.78, 3.0),
    _row("wide", "onnx-int8", 0.83, 9.0, status="check_failed", reason="int8 loses 2.0 OA points"),
    _row("student", "onnx", 0.80, 15.0, threads=1),
    _row("x", "trt-fp16", None, None, threads=None, status="failed", reason="TensorRT: no CUDA device"),
]


def test_select_picks_the_most_accurate_validated_model_within_the_budget():
    sel = select_model(ROWS, budget_ms=10)
    assert sel.threads == 2
    assert (sel.chosen.model, sel.chosen.format) == ("student", "onnx-int8")  # same OA and p95: smaller file
    verdicts = {(r.model, r.format): v for r, v in sel.verdicts}
    assert "over the budget" in verdicts[("teacher", "onnx")]
    assert "not validated: int8 loses" in verdicts[("wide", "onnx-int8")]
    assert "2.00 OA points less accurate" in verdicts[("fast", "onnx")]
    assert "TensorRT" in verdicts[("x", "trt-fp16")]
    assert ("student", "onnx") in verdicts and len(sel.verdicts) == 6  # the 1-thread row is judged separately
    assert "Chosen: student as onnx-int8" in sel.explain()
    assert select_model(ROWS, budget_ms=5).chosen.model == "fast"
    assert select_model(ROWS, budget_ms=40, metric="p50_ms").chosen.model == "teacher"
    assert select_model(ROWS, budget_ms=20, threads=1).chosen.threads == 1
    students = select_model(ROWS, budget_ms=40, models=["student", "fast"])
    assert students.chosen.model == "student" and {r.model for r, _ in students.verdicts} == {"student", "fast"}
    with pytest.raises(ValueError, match="no model"):
        select_model(ROWS, 10, models=["resnet"])


def test_a_robustness_floor_needs_a_measured_mce_under_it():
    from pointkd.bench.select import mce_index

    doc = {
        "rows": [
            {"model": "benchmarks/checkpoints/student.pt", "outlier_filter": "none", "scores": {"mCE": 1.38}},
            {"model": "runs/a/fast-onnx", "label": "fast", "format": "onnx", "scores": {"mCE": 0.95}},
            {"model": "student.pt", "outlier_filter": "sor", "scores": {"mCE": 1.04}},
        ]
    }
    assert mce_index(doc) == {("student", "torch"): 1.38, ("fast", "onnx"): 0.95}
    assert mce_index(doc, "sor") == {("student", "torch"): 1.04}
    rows = [*ROWS, _row("student", "torch", 0.81, 9.0)]
    assert select_model(rows, budget_ms=10).chosen.format == "torch"  # no floor: the most accurate
    sel = select_model(rows, budget_ms=10, mce=mce_index(doc), max_mce=1.2)
    verdicts = {(r.model, r.format): v for r, v in sel.verdicts}
    assert (sel.chosen.model, sel.chosen.format) == ("fast", "onnx")  # the only row measured under the floor
    assert verdicts[("student", "torch")] == "under the robustness floor (mCE 1.380 > 1.2)"
    assert verdicts[("student", "onnx-int8")] == "no robustness figure (pointkd eval --corruptions)"
    none = select_model(rows, budget_ms=10, mce=mce_index(doc), max_mce=0.5)
    assert none.chosen is None and "and mCE ≤ 0.5" in none.explain()


def test_select_explains_when_nothing_fits_and_rejects_bad_arguments():
    sel = select_model(ROWS, budget_ms=1)
    assert sel.chosen is None and "No validated model meets p95 ≤ 1 ms" in sel.explain()
    with pytest.raises(ValueError, match="metric"):
        select_model(ROWS, 10, metric="mean_ms")
    with pytest.raises(ValueError, match="no rows at 4"):
        select_model(ROWS, 10, threads=4)
    with pytest.raises(ValueError, match="positive"):
        select_model(ROWS, 0)


def test_select_cli(checkpoint_bench, capsys, tmp_path):
    paths, _ = checkpoint_bench
    assert main(["select", "--budget-ms", "1000", "--device-report", str(paths["json"].parent)]) == 0
    out = capsys.readouterr().out
    assert "**chosen**" in out and "Chosen:" in out
    assert main(["select", "--budget-ms", "0.0001", "--device-report", str(paths["json"])]) == 1
    assert main(["select", "--budget-ms", "10", "--device-report", str(tmp_path)]) == 2
    assert "no benchmark report" in capsys.readouterr().err


def test_add_merges_runs_into_one_report(tiny_checkpoint, tmp_path):
    """``--add``: a second run's rows join the first run's report (same model and format replaced), and a run with
    other settings is refused instead of mixed in."""
    first = BenchOptions(formats=("torch",), threads=(1,), **QUICK)
    paths, _ = run_bench([str(tiny_checkpoint)], tmp_path, first)
    _, before = read_report(paths["json"])
    second = BenchOptions(formats=("onnx", "torch"), threads=(1,), add=True, **QUICK)
    paths, rows = run_bench([str(tiny_checkpoint)], tmp_path, second)
    _, after = read_report(paths["json"])
    assert after == rows and [(r.format, r.threads) for r in after] == [("onnx", 1), ("torch", 1)]
    assert after[1] != before[0]  # torch measured again: the new row replaced the old one
    settings = json.loads(paths["json"].read_text())["settings"]
    assert settings["formats"] == ["torch", "onnx"] and settings["sources"] == [str(tiny_checkpoint)]
    other = BenchOptions(formats=("torch",), threads=(1,), add=True, **{**QUICK, "repeats": 11})
    with pytest.raises(ValueError, match=r"other settings \(repeats 10 vs 11\)"):
        run_bench([str(tiny_checkpoint)], tmp_path, other)


@pytest.mark.parametrize(
    "info, expected",
    [
        ({"cpu": "AMD EPYC 7B13 64-Core Processor", "cores": 2}, "amd-epyc-7b13-2c"),
        ({"cpu": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "cores": 16}, "intel-xeon-gold-6338-2-00ghz-16c"),
        ({"cpu": "AMD EPYC", "cores": 16, "gpu": "NVIDIA H100 80GB HBM3"}, "amd-epyc-16c-nvidia-h100-80gb-hbm3"),
    ],
)
def test_device_id(info, expected):
    assert device_id(info) == expected


def test_demo_runs_every_stage_end_to_end(tmp_path):
    from pointkd.checkpoint import load_checkpoint
    from pointkd.data.npz_splits import write_npz
    from pointkd.data.synthetic import make_synthetic
    from pointkd.demo import compile_stage, run_demo, start_demo, train_stage

    # a small stored set (8 classes, 64 train / 16 test clouds): every stage reads it as it reads the real npz
    data = tmp_path / "data.npz"
    write_npz(data, make_synthetic(num_points=64, seed=0, train_per_class=8, test_per_class=2))
    out = tmp_path / "demo"
    overrides = ["train.epochs=1", "train.max_batches_per_epoch=2", "data.num_points=64"]
    report = run_demo(
        out, data=str(data), requests=5, progress=False, log=lambda *_: None, overrides=overrides, bench_repeats=10
    )
    record = json.loads((out / "demo.json").read_text())
    s = record["stages"]
    assert record["data"] == str(data)
    assert (out / "teacher" / "best.pt").is_file() and (out / "student" / "best.pt").is_file()
    student = load_checkpoint(out / "student" / "best.pt")
    assert student["teacher"] == str(out / "teacher" / "best.pt")
    assert student["config"]["distill"]["method"] == "lsp" and student["model_name"] == "dgcnn_student"
    assert s["compile"]["onnx"]["oa"] == pytest.approx(s["student"]["oa"], abs=0.02)
    assert s["compile"]["onnx-int8"]["size_kib"] < s["compile"]["onnx"]["size_kib"]
    _, rows = read_report(s["bench"]["report"].replace("bench.md", "bench.json"))
    assert {(r.model, r.format) for r in rows} == {
        ("teacher", "torch"),
        ("student", "torch"),
        ("student-onnx", "onnx"),
        ("student-onnx-int8", "onnx-int8"),
    }
    assert all(r.status == "ok" for r in rows)
    assert s["serve"]["requests"] == 5 and s["serve"]["errors"] == 0 and 0 <= s["serve"]["accuracy"] <= 1
    text = report.read_text()
    assert "| serve | 5 requests" in text and "| student-onnx-int8 | onnx-int8 |" in text
    # a second run resumes: finished trainings are not repeated, compiled artifacts are reused (the stages that
    # resume, as run_demo calls them; bench and serve always run afresh and are checked above)
    logs: list[str] = []
    run = start_demo(out, str(data), tuple(overrides), False, logs.append)
    teacher = train_stage(run, 1, "teacher")
    assert train_stage(run, 2, "student", teacher) == out / "student" / "best.pt"
    assert compile_stage(run, out / "student" / "best.pt") == {
        "onnx": out / "artifacts" / "student-onnx",
        "onnx-int8": out / "artifacts" / "student-onnx-int8",
    }
    assert len((out / "teacher" / "metrics.jsonl").read_text().splitlines()) == 1
    assert len((out / "student" / "metrics.jsonl").read_text().splitlines()) == 1
    assert sum("reusing it" in line for line in logs) == 2


def test_cpu_flags_reads_the_wanted_flags_of_proc_cpuinfo(monkeypatch, tmp_path):
    from pathlib import Path

    from pointkd.bench import device

    fake = tmp_path / "cpuinfo"
    fake.write_text("processor : 0\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni\nbogomips : 1\n")
    real_path = Path

    monkeypatch.setattr(device, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    assert device.cpu_flags(("avx512_vnni", "avx2", "amx_int8")) == ["avx2", "avx512_vnni"]
    monkeypatch.setattr(device, "Path", lambda p: tmp_path / "missing")
    assert device.cpu_flags(("avx2",)) == []


def test_demo_shipped_takes_the_shipped_models_and_refuses_other_data(tmp_path):
    from types import SimpleNamespace

    from pointkd.checkpoint import load_checkpoint
    from pointkd.demo import SHIPPED, SHIPPED_DIR, DemoRun, demo_report, run_demo, shipped_stage

    ckpt = load_checkpoint(SHIPPED_DIR / SHIPPED["student"])
    classes = SimpleNamespace(classes=list(ckpt["classes"]))
    run = DemoRun(tmp_path, "modelnet40", classes, (), False, lambda *_: None, {"stages": {}})
    assert shipped_stage(run, 2, "student") == SHIPPED_DIR / SHIPPED["student"]
    assert shipped_stage(run, 1, "teacher") == SHIPPED_DIR / SHIPPED["teacher"]
    s = run.record["stages"]["student"]
    assert s["shipped"] and s["oa"] == ckpt["metrics"]["test_oa"] > 0.88 and s["points"] == 1024
    record = {"data": "d", "total_seconds": 60, "stages": run.record["stages"]}
    record["stages"] |= {
        "compile": {n: {"oa": 0.87, "oa_drop_pt": 0.0, "size_kib": 100} for n in ("onnx", "onnx-int8")}
        | {"seconds": 1},
        "bench": {"report": "b.md", "seconds": 1},
        "serve": {"requests": 1, "points_sent": 1024, "errors": 0, "accuracy": 1.0, "seconds": 1}
        | {f"client_{p}_ms": 5.0 for p in ("p50", "p95", "p99")},
    }
    text = demo_report(record, "# bench\n\n| table |")
    assert f"| student | {SHIPPED['student']} (shipped): test OA {s['oa'] * 100:.2f} % | 0 |" in text
    other = DemoRun(tmp_path, "synthetic", SimpleNamespace(classes=["a", "b"]), (), False, lambda *_: None)
    with pytest.raises(ValueError, match="trained on ModelNet40"):
        shipped_stage(other, 1, "teacher")
    with pytest.raises(ValueError, match="trains nothing"):
        run_demo(tmp_path / "x", data="synthetic", shipped=True, overrides=["train.epochs=1"], log=lambda *_: None)
