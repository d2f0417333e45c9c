"""``pointkd demo``: the product end to end, in one bounded run on a CPU.

1. teacher: train a small DGCNN teacher (``demo_teacher`` config);
2. student: distil the LSP paper student from it with LSP (``demo_student``);
3. compile: the student to ONNX (parity-checked on the whole test split) and to int8 (calibrated on the train split);
4. bench: torch teacher and student, ONNX and int8 student, 1 and 2 threads (``pointkd bench``);
5. serve: start ``pointkd serve`` on the int8 artifact, send it real test clouds over HTTP, check its answers.

``--shipped`` skips the training: stages 1 and 2 take the repository's shipped models instead
(``benchmarks/checkpoints/``: :data:`SHIPPED`, the best teacher and LSP student of the training campaign), and the
rest runs on them: a few minutes on real ModelNet40, which they need.

Data: the shared real ModelNet40 when present (or ``--data``), else the built-in synthetic set. Everything goes to
``OUT`` (default ``runs/demo``); ``OUT/report.md`` sums it up. Each stage resumes or reuses what an earlier,
interrupted demo left: training continues from ``last.pt``, artifacts compiled from the same checkpoint are reused.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .data import PointCloudSplits

STAGES = ("teacher", "student", "compile", "bench", "serve")
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "checkpoints"
# The teacher is teacher_tail1024b of campaign plan modelnet40_paper (benchmarks/results/campaign/modelnet40_paper/
# records/). The student is outliers_quarter-s1 of plan robustness_outliers: the 2-graph dgcnn_student_fast2 (kNN
# graphs at layers 0 and 2 only: 1.7-1.9x faster as onnx-fused than 4, benchmarks/results/amd-epyc-unknown-avx2-2c/
# bench.md) fine-tuned with outliers on a quarter of each batch. It gave 0.21 point of clean OA against its control
# student_lsp_fast2.pt (lsp_fast2_tail-s1) for mCE 1.262 -> 0.921 (benchmarks/results/robustness.md).
SHIPPED = {"teacher": "teacher_tail1024b.pt", "student": "student_lsp_fast2_robust.pt"}


def demo_data_source(data: str | None) -> str:
    """``data`` if given, else the shared real copy when it exists, else ``synthetic``."""
    from .data import DataError
    from .data.modelnet40 import resolve_data_path

    if data:
        return data
    try:
        return str(resolve_data_path(None))
    except DataError:
        return "synthetic"


def serve_check(
    artifact: Path, clouds: np.ndarray, labels: np.ndarray, classes: list[str], progress: bool = True
) -> dict[str, Any]:
    """Start ``pointkd serve`` on ``artifact``, POST each cloud as raw float32, one at a time; accuracy of the
    answers and client-side latency percentiles."""
    import httpx
    from tqdm import tqdm

    from serving.launch import free_port, start_server, stop_server

    from .process import progress_interval, show_bars
    from .timing import percentile

    port = free_port()
    server = start_server(artifact, port, "--threads", "2", quiet=True)
    url = f"http://127.0.0.1:{port}/predict"
    latencies, server_ms, correct, errors = [], [], 0, 0
    try:
        with httpx.Client(timeout=30) as client:
            headers = {"content-type": "application/octet-stream"}
            for _ in range(5):  # warm-up
                client.post(url, content=clouds[0].astype("<f4").tobytes(), headers=headers)
            for cloud, label in tqdm(
                list(zip(clouds, labels, strict=True)),
                desc="serve",
                unit="req",
                disable=not show_bars(progress),
                mininterval=progress_interval(),
            ):
                body = np.ascontiguousarray(cloud, dtype="<f4").tobytes()
                start = time.perf_counter()
                response = client.post(url, content=body, headers=headers)
                latencies.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    errors += 1
                    continue
                answer = response.json()
                server_ms.append(answer["server_ms"])
                correct += answer["class"] == classes[int(label)]
    finally:
        stop_server(server)
    return {
        "artifact": str(artifact),
        "requests": len(clouds),
        "points_sent": int(clouds.shape[1]),
        "errors": errors,
        "accuracy": correct / max(len(clouds), 1),
        "client_p50_ms": percentile(latencies, 50),
        "client_p95_ms": percentile(latencies, 95),
        "client_p99_ms": percentile(latencies, 99),
        "server_p50_ms": percentile(server_ms, 50) if server_ms else None,
    }


@dataclass
class DemoRun:
    """What every stage of one demo reads and adds to: the output folder, the data, and ``record`` (``demo.json``)."""

    out: Path
    source: str
    splits: PointCloudSplits
    overrides: tuple[str, ...]
    progress: bool
    log: Callable[[str], None]
    record: dict[str, Any] = field(default_factory=dict)

    def stage(self, i: int, name: str, what: str) -> float:
        self.log(f"[{i}/{len(STAGES)}] {name}: {what}")
        return time.perf_counter()


def run_demo(
    out: str | os.PathLike,
    data: str | None = None,
    requests: int = 200,
    progress: bool = True,
    log: Callable[[str], None] = print,
    overrides: list[str] | tuple[str, ...] = (),
    bench_repeats: int = 100,
    shipped: bool = False,
) -> Path:
    """Run every stage into ``out``; returns the path of ``out/report.md``. ``overrides`` (``key=value``) apply to
    both the teacher's and the student's config, e.g. ``train.epochs=1``; ``shipped``: the shipped models instead of
    training (:func:`shipped_stage`)."""
    if requests < 1:
        raise ValueError(f"--requests must be at least 1, got {requests}")
    if shipped and overrides:
        raise ValueError("--set changes the training configs; --shipped trains nothing")
    run = start_demo(Path(out), data, tuple(overrides), progress, log)
    started = time.perf_counter()
    if shipped:
        teacher_ckpt = shipped_stage(run, 1, "teacher")
        student_ckpt = shipped_stage(run, 2, "student")
    else:
        teacher_ckpt = train_stage(run, 1, "teacher")
        student_ckpt = train_stage(run, 2, "student", teacher_ckpt)
    artifacts = compile_stage(run, student_ckpt)
    bench_md = bench_stage(run, [teacher_ckpt, student_ckpt, artifacts["onnx"], artifacts["onnx-int8"]], bench_repeats)
    serve_stage(run, artifacts["onnx-int8"], requests)
    run.record["total_seconds"] = time.perf_counter() - started
    (run.out / "demo.json").write_text(json.dumps(run.record, indent=2) + "\n")
    report = run.out / "report.md"
    report.write_text(demo_report(run.record, bench_md))
    log(report.read_text())
    return report


def start_demo(
    out: Path, data: str | None, overrides: tuple[str, ...], progress: bool, log: Callable[[str], None]
) -> DemoRun:
    """The output folder made, the data source chosen and loaded as ``pointkd train`` loads it."""
    from .config import load_config
    from .data import load_modelnet40

    out.mkdir(parents=True, exist_ok=True)
    source = demo_data_source(data)
    log(f"data: {source}")
    points = load_config("demo_student", list(overrides)).data.num_points
    splits = load_modelnet40(source, num_points=points)  # as `pointkd train` loads it (npz: stored 1024 points)
    record: dict[str, Any] = {"data": str(splits.source), "stages": {}}
    return DemoRun(out, source, splits, overrides, progress, log, record)


def train_stage(run: DemoRun, i: int, name: str, teacher_ckpt: Path | None = None) -> Path:
    """Train the teacher (``demo_teacher``), or distil the student from ``teacher_ckpt`` (``demo_student``), resuming
    an interrupted run; the best checkpoint's path."""
    from .config import load_config
    from .train import train

    if teacher_ckpt is None:
        t = run.stage(i, name, "train a small DGCNN teacher (demo_teacher)")
        cfg = load_config("demo_teacher", [f"data.source={run.source}", *run.overrides])
    else:
        t = run.stage(i, name, "distil the LSP paper student from it with LSP (demo_student)")
        extra = [f"data.source={run.source}", f"distill.teacher={teacher_ckpt}", *run.overrides]
        cfg = load_config("demo_student", extra)
    result = train(cfg, run.out / name, data=run.splits, resume=True, progress=run.progress, log=run.log)
    ckpt = run.out / name / "best.pt"
    label = "demo_teacher" if teacher_ckpt is None else "LSP paper student (LSP, RBF)"
    run.record["stages"][name] = {"checkpoint": str(ckpt), "oa": result.best_oa, "label": f"{label}: best test OA"}
    run.record["stages"][name]["seconds"] = time.perf_counter() - t
    return ckpt


def shipped_stage(run: DemoRun, i: int, name: str) -> Path:
    """The shipped ``name`` (``teacher`` or ``student``) checkpoint, checked against the demo's data: its test OA at
    the end of its training, as the checkpoint records it."""
    from .checkpoint import load_checkpoint

    path = SHIPPED_DIR / SHIPPED[name]
    t = run.stage(i, name, f"the shipped {path.name} (no training)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped checkpoints come with a checkout of the repository")
    ckpt = load_checkpoint(path)
    if list(ckpt.get("classes") or []) != list(run.splits.classes):
        raise ValueError(f"{path.name} was trained on ModelNet40; --shipped needs it (give --data), not {run.source}")
    oa = (ckpt.get("metrics") or {}).get("test_oa")
    points = ckpt.get("num_points")
    run.record["stages"][name] = {"checkpoint": str(path), "oa": oa, "label": f"{path.name} (shipped): test OA"}
    run.record["stages"][name] |= {"seconds": time.perf_counter() - t, "shipped": True, "points": points}
    return path


def compile_stage(run: DemoRun, student_ckpt: Path) -> dict[str, Path]:
    """The student compiled to ONNX and int8 (reused when already compiled from the same checkpoint)."""
    from .export.compile import CompileOptions, compile_cached

    t = run.stage(3, "compile", "the student to ONNX and int8, checking accuracy after each")
    artifacts = {}
    for fmt in ("onnx", "onnx-int8"):
        folder = run.out / "artifacts" / f"student-{fmt}"
        opts = CompileOptions(fmt, data=run.source, log=lambda line: run.log(f"  {line}"))
        manifest = compile_cached(student_ckpt, folder, opts)
        artifacts[fmt] = folder
        run.record["stages"].setdefault("compile", {})[fmt] = {
            "artifact": str(folder),
            "oa": manifest["accuracy"]["oa"],
            "oa_drop_pt": manifest["accuracy"]["oa_drop_pt"],
            "size_kib": (folder / manifest["model_file"]).stat().st_size / 1024,
        }
    run.record["stages"]["compile"]["seconds"] = time.perf_counter() - t
    return artifacts


def bench_stage(run: DemoRun, sources: list[Path], repeats: int) -> str:
    """``pointkd bench`` on the checkpoints and artifacts, 1 and 2 threads; its markdown report."""
    from .bench import BenchOptions, run_bench

    t = run.stage(4, "bench", "latency and accuracy per model and format (pointkd bench)")
    bench_opts = BenchOptions(
        formats=("torch",),
        threads=(1, 2),
        data=run.source,
        repeats=repeats,
        max_seconds=10.0,
        progress=run.progress,
        log=run.log,
    )
    paths, _ = run_bench([str(s) for s in sources], run.out / "bench", bench_opts)
    run.record["stages"]["bench"] = {"report": str(paths["md"]), "seconds": time.perf_counter() - t}
    return paths["md"].read_text()


def serve_stage(run: DemoRun, artifact: Path, requests: int) -> None:
    """``pointkd serve`` on ``artifact``, ``requests`` test clouds (a fixed random choice) over HTTP."""
    t = run.stage(5, "serve", f"pointkd serve on the int8 artifact; {requests} real test clouds over HTTP")
    splits = run.splits
    ids = np.sort(np.random.default_rng(0).permutation(len(splits.test_y))[:requests])
    clouds = splits.test_x[ids].numpy()
    served = serve_check(artifact, clouds, splits.test_y[ids].numpy(), list(splits.classes), run.progress)
    run.record["stages"]["serve"] = {**served, "seconds": time.perf_counter() - t}


def demo_report(record: dict[str, Any], bench_md: str) -> str:
    s = record["stages"]
    c = s["compile"]
    v = s["serve"]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# pointkd demo ({when})",
        "",
        f"Data: {record['data']}. Total {record['total_seconds'] / 60:.1f} min (stages that resumed or reused "
        "earlier work count only what they did this time).",
        "",
        "| stage | result | seconds |",
        "| --- | --- | ---: |",
        *[_model_line(name, s[name]) for name in ("teacher", "student")],
        f"| compile | ONNX {c['onnx']['oa'] * 100:.2f} % ({c['onnx']['size_kib']:.0f} KiB, parity-checked); int8 "
        f"{c['onnx-int8']['oa'] * 100:.2f} % ({c['onnx-int8']['oa_drop_pt']:+.2f} pt, "
        f"{c['onnx-int8']['size_kib']:.0f} KiB) | {c['seconds']:.0f} |",
        f"| bench | {s['bench']['report']} | {s['bench']['seconds']:.0f} |",
        f"| serve | {v['requests']} requests of {v['points_sent']} points: {v['errors']} errors, accuracy "
        f"{v['accuracy'] * 100:.2f} %, client p50/p95/p99 {v['client_p50_ms']:.1f} / {v['client_p95_ms']:.1f} / "
        f"{v['client_p99_ms']:.1f} ms | {v['seconds']:.0f} |",
        "",
        "## Benchmark",
        "",
        bench_md.split("\n", 2)[2] if bench_md.count("\n") >= 2 else bench_md,
    ]
    return "\n".join(lines)


def _model_line(name: str, stage: dict[str, Any]) -> str:
    oa = "–" if stage.get("oa") is None else f"{stage['oa'] * 100:.2f} %"
    return f"| {name} | {stage['label']} {oa} | {stage['seconds']:.0f} |"
