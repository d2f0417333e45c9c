"""``pointkd bench``: checkpoints and artifacts in, one report per device out.

A checkpoint is benchmarked in every requested format of the table (:mod:`pointkd.runtime.formats`): ``torch``
runs it as is, the others are compiled first with ``pointkd compile`` (cached under ``<out>/<device-id>/artifacts/``
and reused while the checkpoint's sha256 and the point count match), so they carry compile's own checks (fp32
parity, the int8 accuracy drop). An artifact folder is benchmarked in every format that runs it. Every (model,
format) is measured in a fresh worker process (:mod:`pointkd.bench.measure`) on the same test clouds and the same
timing clouds, once per thread count; the GPU formats (``needs_gpu`` in the table) once, with no thread count
(their row's is empty).

``torch-cuda`` and ``torch-cuda-graphs`` are two ways of running the same ``torch-cuda`` artifact: eagerly, and
through a CUDA graph captured per batch size. A row's status comes from the type of what compile raised: a failed
check (:class:`~pointkd.runtime.errors.ParityError`, :class:`~pointkd.runtime.errors.AccuracyDropError`) is
``check_failed``; a runtime that cannot run here (:class:`~pointkd.runtime.errors.RuntimeUnavailable`: no CUDA
device, no TensorRT, no fused-kNN library) and any other error is ``failed``, with the reason; the other rows are
measured as usual.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.errors import AccuracyDropError, ParityError
from ..runtime.formats import FORMAT_NAMES, get_format, runs_of
from .device import device_id, device_info
from .report import BenchRow, write_report

CHECK_FAILED = (ParityError, AccuracyDropError)  # compile errors that make a row check_failed (the rest: failed)
OA_TOLERANCE = 0.002  # measured vs compile-time OA; ORT thread counts may resolve a kNN near-tie differently


@dataclass
class BenchOptions:
    formats: tuple[str, ...] = FORMAT_NAMES
    threads: tuple[int, ...] = (1, 2)
    data: str | None = None
    num_points: int | None = None  # None: each checkpoint's training point count / each artifact's input
    repeats: int = 200
    warmup: int = 10
    max_seconds: float = 20.0  # cap on the batch-1 runs of one thread count
    batch_size: int = 32
    timing_clouds: int = 64
    calib_size: int = 1024
    max_drop: float = 1.0
    worker_timeout_s: float = 3600.0
    add: bool = False  # add the rows to the device's bench.json (same model and format replaced) instead of a new one
    progress: bool = True
    log: Callable[[str], None] = field(default=print)

    def validate(self) -> None:
        unknown = [f for f in self.formats if f not in FORMAT_NAMES]
        if unknown or not self.formats:
            raise ValueError(f"unknown format(s) {unknown}; choose from {', '.join(FORMAT_NAMES)}")
        if not self.threads or any(t < 1 for t in self.threads):
            raise ValueError(f"thread counts must be >= 1, got {list(self.threads)}")
        if self.repeats < 10 or self.timing_clouds < 1 or self.batch_size < 1:
            raise ValueError("need repeats >= 10, timing_clouds >= 1 and batch_size >= 1")


@dataclass
class Job:
    """One (model, format) to measure, or a row that is already decided (``status`` set: failed / check_failed)."""

    label: str
    fmt: str
    source: str
    path: str | None = None  # the model file (a checkpoint for the torch format)
    library: str | None = None  # the custom-op library the model needs, if any
    points: int | None = None
    model_name: str | None = None
    params: int | None = None
    size_mb: float | None = None
    artifact: str | None = None
    expected_oa: float | None = None
    classes: list[str] | None = None
    status: str | None = None
    reason: str = ""

    def row(self, **measured: Any) -> BenchRow:
        return BenchRow(
            model=self.label,
            format=self.fmt,
            status=measured.pop("status", self.status or "ok"),
            reason=measured.pop("reason", self.reason),
            model_name=self.model_name,
            source=self.source,
            artifact=self.artifact,
            points=self.points,
            params=self.params,
            size_mb=self.size_mb,
            **measured,
        )


def status_of(err: Exception) -> str:
    """A row's status from what compile raised: ``check_failed`` for a failed check, else ``failed``."""
    return "check_failed" if isinstance(err, CHECK_FAILED) else "failed"


def measured_once(fmt: str) -> bool:
    """Whether format ``fmt`` is measured once, without a thread count (a GPU runtime's)."""
    return get_format(fmt).needs_gpu


def _artifact_jobs(label: str, source: str, folder: Path) -> list[Job]:
    """The jobs of an artifact folder given as a source: every format that runs it (torch-cuda: eager and graphs)."""
    from ..runtime.manifest import read_manifest

    runs = runs_of(read_manifest(folder, verify=True)["artifact_format"])
    return [_artifact_job(label, source, folder, f.name) for f in runs]


def _artifact_job(label: str, source: str, folder: Path, fmt: str | None = None) -> Job:
    from ..runtime.manifest import custom_op_library, read_manifest

    m = read_manifest(folder, verify=True)
    fmt = fmt or m["artifact_format"]
    model_file = folder / m["model_file"]
    library = custom_op_library(folder, m)
    return Job(
        label=label,
        fmt=fmt,
        source=source,
        path=str(model_file),
        library=None if library is None else str(library),
        points=int(m["input"]["num_points"]),
        model_name=(m.get("model") or {}).get("name"),
        params=(m.get("model") or {}).get("parameters"),
        size_mb=model_file.stat().st_size / 1e6,
        artifact=str(folder),
        expected_oa=m["accuracy"]["oa"],
        classes=list(m["classes"]),
    )


def plan_jobs(sources: list[str], opts: BenchOptions, artifacts_dir: Path) -> list[Job]:
    """Resolve every source into jobs, compiling checkpoints as needed; failures become decided rows."""
    from ..checkpoint import CheckpointError, load_checkpoint
    from ..runtime.errors import ManifestError

    jobs: list[Job] = []
    used: dict[str, str] = {}

    def unique(label: str, source: str) -> str:
        n, name = 1, label
        while used.get(name, source) != source:
            n += 1
            name = f"{label}-{n}"
        used[name] = source
        return name

    for source in sources:
        path = Path(source)
        if path.is_dir():
            label = unique(path.name, source)
            try:
                jobs.extend(_artifact_jobs(label, source, path))
            except (ManifestError, OSError) as err:
                jobs.append(Job(label, "?", source, status="failed", reason=str(err)))
            continue
        label = unique(path.parent.name if path.stem in ("best", "last") and path.parent.name else path.stem, source)
        try:
            ckpt = load_checkpoint(path)
        except (CheckpointError, OSError) as err:
            jobs.append(Job(label, "?", source, status="failed", reason=f"not a checkpoint or artifact: {err}"))
            continue
        jobs.extend(_checkpoint_jobs(label, source, ckpt, opts, artifacts_dir))
    return jobs


def _checkpoint_jobs(label: str, source: str, ckpt: dict[str, Any], opts: BenchOptions, artifacts: Path) -> list[Job]:
    """A checkpoint's job per requested format: itself for a checkpoint format, else its compiled artifact (or the
    row that says why there is none)."""
    from ..checkpoint import model_from_checkpoint
    from ..runtime.runner import unavailable

    path = Path(source)
    points = opts.num_points or int(ckpt.get("num_points") or 1024)
    common: dict[str, Any] = dict(
        points=points, model_name=ckpt.get("model_name"), params=model_from_checkpoint(ckpt).num_parameters
    )
    jobs = []
    for fmt in opts.formats:
        row = get_format(fmt)
        if row.artifact is None:  # the checkpoint as is
            size = path.stat().st_size / 1e6
            classes = list(ckpt.get("classes") or []) or None
            jobs.append(Job(label, fmt, source, path=str(path), size_mb=size, classes=classes, **common))
        elif (why := unavailable(fmt)) is not None:
            jobs.append(Job(label, fmt, source, status="failed", reason=why, **common))
        else:
            jobs.append(_compiled_job(label, source, row.artifact, fmt, points, opts, artifacts, common))
    return jobs


def _compiled_job(
    label: str,
    source: str,
    artifact_fmt: str,
    fmt: str,
    points: int,
    opts: BenchOptions,
    artifacts: Path,
    common: dict[str, Any],
) -> Job:
    """The job of ``fmt`` on the checkpoint compiled to ``artifact_fmt`` (cached), or the row of why it failed: its
    status from the error's type (:func:`status_of`)."""
    from ..export.compile import CompileOptions, compile_cached
    from ..runtime.errors import ExportError, RuntimeUnavailable

    folder = artifacts / f"{label}-{points}-{artifact_fmt}"
    opts.log(f"compiling {label} to {artifact_fmt} ({points} points)")
    try:
        copts = CompileOptions(artifact_fmt, points, opts.data, opts.calib_size, max_drop=opts.max_drop)
        copts.log = lambda line: opts.log(f"  {line}")
        compile_cached(source, folder, copts)
        return _artifact_job(label, source, folder, fmt)
    except (ExportError, RuntimeUnavailable) as err:
        return Job(label, fmt, source, status=status_of(err), reason=str(err), **common)
    except (ValueError, OSError, RuntimeError) as err:
        return Job(label, fmt, source, status=status_of(err), reason=f"{type(err).__name__}: {err}", **common)


def _write_inputs(data, points: int, opts: BenchOptions, folder: Path) -> Path:
    from ..data import fixed_subset

    clouds = fixed_subset(data.test_x, points).numpy().astype(np.float32)
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(len(clouds), size=min(opts.timing_clouds, len(clouds)), replace=False))
    path = folder / f"inputs-{points}.npz"
    np.savez(path, clouds=clouds, labels=data.test_y.numpy(), timing=clouds[ids])
    return path


def worker_env() -> dict[str, str]:
    """The environment without pointkd's jemalloc preload: workers use the system allocator, as `pointkd serve`
    and most deployments do (jemalloc with decay off would also keep every freed page in the peak RSS)."""
    from ..process import MALLOC_CONF

    env = os.environ.copy()
    env["LD_PRELOAD"] = ":".join(p for p in env.get("LD_PRELOAD", "").split(":") if p and "jemalloc" not in p)
    if env.get("MALLOC_CONF") == MALLOC_CONF:
        del env["MALLOC_CONF"]
    env["POINTKD_JEMALLOC"] = "0"
    return env


def measure_job(job: Job, inputs: Path, num_classes: int, opts: BenchOptions, tmp: Path) -> list[BenchRow]:
    """Run the worker for ``job``; one row per thread count (one for a GPU format; one failed row if the worker
    failed)."""
    once = measured_once(job.fmt)
    worker_threads = [max(opts.threads)] if once else list(opts.threads)
    spec = {
        "format": job.fmt,
        "path": job.path,
        "library": job.library,
        "inputs": str(inputs),
        "num_classes": num_classes,
        "threads": worker_threads,
        "repeats": opts.repeats,
        "warmup": opts.warmup,
        "max_seconds": opts.max_seconds,
        "batch_size": opts.batch_size,
    }
    spec_path, out_path = tmp / f"{job.label}-{job.fmt}.spec.json", tmp / f"{job.label}-{job.fmt}.out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pointkd.bench.measure", str(spec_path), str(out_path)],
            capture_output=True,
            text=True,
            timeout=opts.worker_timeout_s,
            env=worker_env(),
        )
    except subprocess.TimeoutExpired:
        return [job.row(status="failed", reason=f"worker timed out after {opts.worker_timeout_s:.0f} s")]
    if not out_path.is_file():
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return [job.row(status="failed", reason=f"worker died: {tail[0]}")]
    result = json.loads(out_path.read_text())
    if not result["ok"]:
        return [job.row(status="failed", reason=result["error"])]
    status, reason = "ok", job.reason
    if job.expected_oa is not None and abs(result["oa"] - job.expected_oa) > OA_TOLERANCE:
        status = "check_failed"
        reason = f"OA {result['oa'] * 100:.2f} % here vs {job.expected_oa * 100:.2f} % measured by compile"
    rows = []
    for threads in worker_threads:
        t = result["per_threads"][str(threads)]
        rows.append(
            job.row(
                status=status,
                reason=reason,
                threads=None if once else threads,
                oa=result["oa"],
                macc=result["macc"],
                peak_mb=result["peak_mb"],
                **t,
            )
        )
    return rows


def run_bench(sources: list[str], out: str | os.PathLike, opts: BenchOptions) -> tuple[dict[str, Path], list[BenchRow]]:
    """Benchmark ``sources`` (checkpoints and artifact folders) into ``out/<device-id>/bench.{json,md,png}``."""
    from tqdm import tqdm

    from ..data import load_modelnet40
    from ..process import progress_interval

    opts.validate()
    if not sources:
        raise ValueError("give at least one checkpoint (.pt) or artifact folder")
    device = device_info(list(opts.threads))
    folder = Path(out) / device_id(device)
    jobs = plan_jobs(sources, opts, folder / "artifacts")
    runnable = [j for j in jobs if j.status is None]
    points = sorted({j.points for j in runnable if j.points})
    # Loaded per point count, as compile and training load it (mesh, HDF5 and synthetic sources resample to it).
    datasets = {p: load_modelnet40(opts.data, num_points=p) for p in points}
    data = datasets[points[-1]] if points else None
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="pointkd-bench-") as tmp_name:
        tmp = Path(tmp_name)
        inputs = {p: _write_inputs(datasets[p], p, opts, tmp) for p in points}
        bar = tqdm(jobs, desc="bench", unit="row", disable=not opts.progress, mininterval=progress_interval())
        for job in bar:
            bar.set_postfix_str(f"{job.label} {job.fmt}")
            if job.status is not None:
                rows.append(job.row())
            elif data is not None and job.classes and list(job.classes) != list(data.classes):
                rows.append(job.row(status="failed", reason="its class names differ from the data's"))
            else:
                rows.extend(measure_job(job, inputs[job.points], data.num_classes, opts, tmp))
    settings = {
        "formats": list(opts.formats),
        "threads": list(opts.threads),
        "repeats": opts.repeats,
        "warmup": opts.warmup,
        "max_seconds": opts.max_seconds,
        "batch_size": opts.batch_size,
        "timing_clouds": opts.timing_clouds,
        "test_clouds": 0 if data is None else len(data.test_y),
        "data": "–" if data is None else str(data.source),
        "sources": list(sources),
    }
    if opts.add and (folder / "bench.json").is_file():
        rows, settings = added_rows(folder / "bench.json", rows, settings)
    return write_report(folder, device, rows, settings), rows


# The settings that make two runs' rows comparable: a report holds rows of one setting only.
SAME_SETTINGS = ("repeats", "warmup", "max_seconds", "batch_size", "timing_clouds", "test_clouds", "data")


def added_rows(path: Path, rows: list[BenchRow], settings: dict[str, Any]) -> tuple[list[BenchRow], dict[str, Any]]:
    """``rows`` added to the report at ``path`` (``pointkd bench --add``): its rows of another (model, format) are
    kept, in their order, and followed by the new ones; sources and formats are the union. ValueError if the report
    was measured with other :data:`SAME_SETTINGS` (its rows and the new ones would not compare)."""
    from ..documents import read_document
    from .report import REPORT_FORMAT

    old = read_document(path, REPORT_FORMAT, "a pointkd bench report")
    differ = [k for k in SAME_SETTINGS if old["settings"].get(k) != settings.get(k)]
    if differ:
        pairs = ", ".join(f"{k} {old['settings'].get(k)!r} vs {settings.get(k)!r}" for k in differ)
        raise ValueError(f"{path} was measured with other settings ({pairs}); bench into another --out")
    new = {(r.model, r.format) for r in rows}
    kept = [r for r in (BenchRow.from_dict(d) for d in old["rows"]) if (r.model, r.format) not in new]
    merged = dict(settings)
    for key in ("sources", "formats"):
        merged[key] = list(dict.fromkeys([*old["settings"].get(key, []), *settings[key]]))
    return kept + rows, merged
