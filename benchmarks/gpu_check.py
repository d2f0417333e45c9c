"""GPU check: the teacher and both students on an NVIDIA GPU in every runtime that imports, and a training step.

One prepared script for a machine lent for minutes: it runs the shipped teacher and LSP student
(:data:`pointkd.demo.SHIPPED`, the one list of shipped models) and ``benchmarks/checkpoints/student_fast_lsp.pt``
(the latency-aware student), each at the point count it was trained at, at batch 1 (p50/p95/p99) and batch 32
(clouds/s) as

* ``torch-cuda``: the torch-cuda artifact's model (:mod:`pointkd.runtime.torch_runner`), eagerly;
* ``torch-cuda-graphs``: the same model replayed from a CUDA graph captured per batch size;
* ``torch-cuda-compile`` (only with ``--torch-compile``; compiling takes minutes): ``torch.compile`` of it;
* ``onnx-cuda``: the exported ONNX on ONNX Runtime's CUDA execution provider (needs onnx, onnxscript and
  onnxruntime-gpu);
* ``trt-fp16``: a TensorRT fp16 engine built from that ONNX (needs tensorrt);

each checked against the torch model as trained (on the same device, dense kNN, edge-wise EdgeConv): top-1
agreement and, when test data is at hand, OA. Rows that cannot run say why (❌). It also times one training step
(SGD, batch 32) of the teacher and the paper student with each EdgeConv implementation. It writes
``OUT/<device-id>/bench.{json,md[,png]}`` (the ``pointkd bench`` report format, readable by ``pointkd select``) and
``train_step.{json,md}``, and copies them to ``$OUT/<device-id>/`` when ``$OUT`` is set.

Needs only Python >= 3.10, torch (a CUDA build), numpy and pyyaml: everything else is imported only where a row
needs it (a missing tqdm gets a silent stand-in; a missing matplotlib skips the PNG). No network. Under 8 minutes
on a bare machine: rows are skipped, with that reason, once ``--budget-s`` (default 420 s) is spent.

Test data: the machine has no ModelNet40, so carry the test split (30 MB at 1024 points; each model takes the
same fixed subset of it that compile and bench take). Make it here with
``python benchmarks/gpu_check.py --save-test-split .gpu_data/modelnet40_test_1024.npz``; the check then finds it
there (or pass ``--data``). Without it, the rows are timed on random unit-sphere clouds and validated by agreement
with the reference only.

Run, from the repository root::

    python3 benchmarks/gpu_check.py                       # on the GPU machine (or: bash benchmarks/gpu_check.sh)
    python3 benchmarks/gpu_check.py --dry-run --out /tmp/gpu-dry   # CPU, tiny sizes, the same code path
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pointkd.demo import SHIPPED  # noqa: E402 (after ROOT joins sys.path; pointkd.demo imports only numpy)

TRAIN_MODELS = tuple(Path(SHIPPED[role]).stem for role in ("teacher", "student"))
CHECKPOINTS = (*TRAIN_MODELS, "student_fast_lsp")
FORMATS = ("torch-cuda", "torch-cuda-graphs", "torch-cuda-compile", "onnx-cuda", "trt-fp16")
DEFAULT_DATA = ROOT / ".gpu_data" / "modelnet40_test_1024.npz"
MIN_AGREEMENT = 0.98  # top-1 agreement with the reference; fp32 kNN ties flip a few clouds, fp16 a few more
OA_TOLERANCE = {"trt-fp16": 0.01}  # OA points (as a fraction) a row may differ from the reference; default below
DEFAULT_OA_TOLERANCE = 0.005
LR, MOMENTUM, WEIGHT_DECAY, LABEL_SMOOTHING = 0.1, 0.9, 1e-4, 0.2  # the recipe's (pointkd.config.TrainSection)


@dataclass(frozen=True)
class Settings:
    points: int | None = None  # None: each checkpoint's own
    clouds: int | None = None  # cap on the evaluation clouds (None: the whole test split)
    random_clouds: int = 256  # evaluation clouds when there is no test data
    timing_clouds: int = 64
    repeats: int = 200
    warmup: int = 10
    max_seconds: float = 5.0
    batch_size: int = 32
    train_batch: int = 32
    train_steps: int = 10
    train_warmup: int = 3
    budget_s: float = 420.0


# 48 points: the shipped teacher's k is 40
DRY = Settings(points=48, clouds=8, random_clouds=8, timing_clouds=2, repeats=10, warmup=1, max_seconds=0.2)
DRY = replace(DRY, batch_size=4, train_batch=4, train_steps=2, train_warmup=0)


def ensure_tqdm() -> None:
    """pointkd.train imports tqdm; where it is not installed, a silent stand-in will do for this script."""
    try:
        import tqdm  # noqa: F401
    except ImportError:

        class _Quiet:
            def __init__(self, iterable=None, *args, **kwargs):
                self.iterable = iterable if iterable is not None else []

            def __iter__(self):
                return iter(self.iterable)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def __getattr__(self, name):
                return lambda *args, **kwargs: None

        stub = types.ModuleType("tqdm")
        stub.__spec__ = importlib.machinery.ModuleSpec("tqdm", None)  # torch._dynamo looks modules up by spec
        stub.tqdm = _Quiet
        sys.modules["tqdm"] = stub


class Budget:
    """The check's time budget; ``left()`` in seconds."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def spent_reason(self) -> str:
        return f"skipped: the check's time budget ({self.seconds:.0f} s) was spent"


# ------------------------------------------------------------------------------------------------------ data


def save_test_split(source: str | None, path: Path, points: int = 1024) -> Path:
    """Write the test split (``points`` per cloud, the same subset compile and bench use) as a small npz."""
    import numpy as np

    from pointkd.data import fixed_subset, load_modelnet40

    data = load_modelnet40(source, num_points=1024)
    path.parent.mkdir(parents=True, exist_ok=True)
    clouds = fixed_subset(data.test_x, points).numpy().astype(np.float32)
    np.savez(path, test_x=clouds, test_y=data.test_y.numpy(), classes=np.array(data.classes))
    return path


def find_data(explicit: str | None) -> Path | None:
    """``--data``, else ``$POINTKD_DATA``, else the carried test split, else the shared copy beside the checkout."""
    from pointkd.data.modelnet40 import default_data_candidates

    if explicit:
        return Path(explicit)
    env = os.environ.get("POINTKD_DATA")
    candidates = [Path(env)] if env else []
    candidates += [DEFAULT_DATA, *default_data_candidates()]
    return next((c for c in candidates if c.suffix == ".npz" and c.is_file()), None)


def eval_clouds(data: Path | None, classes: list[str], points: int, s: Settings, seed: int = 0):
    """``(clouds [M, points, 3] float32, labels or None, source)``: the test split when ``data`` holds this
    checkpoint's classes, else random unit-sphere clouds."""
    import numpy as np
    import torch

    from pointkd.data import fixed_subset
    from pointkd.data.resample import normalize_unit_sphere

    if data is not None:
        with np.load(data) as z:
            if list(z["classes"]) == list(classes):
                x, y = z["test_x"][: s.clouds], z["test_y"][: s.clouds]
                clouds = fixed_subset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), points).numpy()
                return np.ascontiguousarray(clouds), y.astype(np.int64), f"{data} (test split)"
    rng = np.random.default_rng(seed)
    clouds = normalize_unit_sphere(rng.normal(size=(s.random_clouds, points, 3)).astype(np.float32))
    return clouds, None, "random unit-sphere clouds (no test data here)"


# ------------------------------------------------------------------------------------------------ inference


@dataclass
class Model:
    """One checkpoint prepared for the rows: its model, reference logits, evaluation clouds and exported files."""

    label: str
    path: Path
    model_name: str | None
    model: Any
    points: int
    clouds: Any
    labels: Any
    data_source: str
    reference: Any  # logits of the model as trained, on the check's device
    work: Path
    onnx_file: Path | None = None

    @property
    def torch_file(self) -> Path:
        return self.work / "model.pt"

    def onnx(self) -> Path:
        """The exported ONNX (fp32, the rewritten graph), exported on first use."""
        from pointkd.export.onnx_export import export_onnx

        if self.onnx_file is None:
            self.onnx_file = export_onnx(self.model, self.work / "model.onnx", self.points)
        return self.onnx_file


def prepare(path: Path, device: str, data: Path | None, s: Settings, work: Path) -> Model:
    """Load ``path``, pick its evaluation clouds, compute the reference logits and save its torch-cuda model."""
    import numpy as np
    import torch

    from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
    from pointkd.export.onnx_export import naive_model
    from pointkd.export.torch_export import save_torch_model
    from pointkd.runtime.ort import run_in_batches

    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt).float()
    points = s.points or int(ckpt.get("num_points") or 1024)
    clouds, labels, source = eval_clouds(data, list(ckpt.get("classes") or []), points, s)
    # The model as trained, edge-wise: the default EdgeConv's max-reduce sparse matmul exists on the CPU only.
    ref_model = naive_model(model).to(device)

    @torch.no_grad()
    def ref_run(x: np.ndarray) -> np.ndarray:
        return ref_model(torch.from_numpy(x).to(device)).cpu().numpy()

    reference = run_in_batches(ref_run, clouds, s.batch_size)
    folder = work / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    save_torch_model(model, folder / "model.pt")
    return Model(path.stem, path, ckpt.get("model_name"), model, points, clouds, labels, source, reference, folder)


def open_row(fmt: str, m: Model, device: str) -> tuple[Callable, float]:
    """``(runner, model file MB)`` for one format; raises (a RuntimeUnavailable says why) where it cannot run."""
    import torch

    from pointkd.export.tensorrt_engine import EngineSpec, build_engine
    from pointkd.runtime.errors import TensorRTUnavailable
    from pointkd.runtime.ort import make_session
    from pointkd.runtime.tensorrt import TensorRTRunner
    from pointkd.runtime.torch_runner import TorchRunner, load_torch_model

    size = m.torch_file.stat().st_size / 1e6
    if fmt in ("torch-cuda", "torch-cuda-graphs"):
        return TorchRunner(m.torch_file, device, graphs=fmt == "torch-cuda-graphs"), size
    if fmt == "torch-cuda-compile":
        compiled = torch.compile(load_torch_model(m.torch_file, device))

        @torch.no_grad()
        def run(x):
            return compiled(torch.from_numpy(x).to(device)).cpu().numpy()

        return run, size
    if fmt == "onnx-cuda":
        from pointkd.runtime.errors import RuntimeUnavailable
        from pointkd.runtime.ort import ort_cuda_status

        if (reason := ort_cuda_status()) is not None:
            raise RuntimeUnavailable(reason)
        session = make_session(m.onnx(), device="cuda")
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})[0]), m.onnx().stat().st_size / 1e6
    if fmt == "trt-fp16":
        from pointkd.runtime.tensorrt import tensorrt_status

        if (reason := tensorrt_status()) is not None or not torch.cuda.is_available():
            raise TensorRTUnavailable(reason or "TensorRT: no CUDA device")
        spec = EngineSpec("fp16", m.points, max_batch=32)
        engine = build_engine(m.onnx(), m.work / "model.fp16.engine", spec)
        return TensorRTRunner(engine), engine.stat().st_size / 1e6
    raise ValueError(f"unknown format {fmt!r}")


def measure_row(fmt: str, m: Model, device: str, s: Settings):
    """One :class:`~pointkd.bench.BenchRow`: open the runtime, check it against the reference, time it."""
    import numpy as np

    from pointkd.bench import BenchRow
    from pointkd.bench.measure import accuracy, latency
    from pointkd.runtime.errors import RuntimeUnavailable

    common = dict(model=m.label, format=fmt, model_name=m.model_name, source=str(m.path))
    common.update(points=m.points, params=m.model.num_parameters)
    try:
        run, size = open_row(fmt, m, device)
        labels = m.labels if m.labels is not None else np.zeros(len(m.clouds), dtype=np.int64)
        acc = accuracy(run, m.clouds, labels, m.model.config.num_classes, s.batch_size)
        timing = m.clouds[: s.timing_clouds]
        lat = latency(run, timing, s.batch_size, s.repeats, s.warmup, s.max_seconds)
    except RuntimeUnavailable as err:
        return BenchRow(status="failed", reason=str(err), **common)
    except Exception as err:  # a runtime that broke is a row, not the end of the check
        first = (str(err).strip().splitlines() or [""])[0][:300]
        return BenchRow(status="failed", reason=f"{type(err).__name__}: {first}", **common)
    status, reason = verdict(fmt, acc, m)
    oa = acc["oa"] if m.labels is not None else None
    macc = acc["macc"] if m.labels is not None else None
    return BenchRow(status=status, reason=reason, size_mb=size, oa=oa, macc=macc, **lat, **common)


def verdict(fmt: str, acc: dict[str, Any], m: Model) -> tuple[str, str]:
    """``(status, note)``: top-1 agreement with the reference, and OA against the reference's when labelled."""
    import numpy as np

    agree = float((acc["logits"].argmax(1) == m.reference.argmax(1)).mean())
    diff = float(np.abs(acc["logits"] - m.reference).max())
    note = f"top-1 agreement with the torch reference {agree * 100:.2f} %, max |Δlogit| {diff:.1e}"
    ok = agree >= MIN_AGREEMENT
    if m.labels is not None:
        ref_oa = float((m.reference.argmax(1) == m.labels).mean())
        ok = ok and abs(acc["oa"] - ref_oa) <= OA_TOLERANCE.get(fmt, DEFAULT_OA_TOLERANCE)
        note += f"; reference OA {ref_oa * 100:.2f} %"
    return ("ok" if ok else "check_failed"), note


# ---------------------------------------------------------------------------------------------- training step


def train_step(label: str, impl: str, device: str, clouds, s: Settings) -> dict[str, Any]:
    """Time ``s.train_steps`` SGD steps (after ``s.train_warmup``) of a fresh model with ``label``'s config and
    EdgeConv ``impl``, as :func:`pointkd.train.trainer.train` takes them (cross-entropy with label smoothing)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from pointkd.checkpoint import load_checkpoint
    from pointkd.models import model_from_config
    from pointkd.timing import percentile

    ckpt = load_checkpoint(ROOT / "benchmarks" / "checkpoints" / f"{label}.pt")
    config = {**ckpt["model_config"], "edgeconv_impl": impl, "knn_backend": "dense"}
    torch.manual_seed(0)
    model = model_from_config(config).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    rng = np.random.default_rng(0)
    b = s.train_batch
    x = torch.from_numpy(clouds[rng.integers(0, len(clouds), b)]).to(device)
    y = torch.from_numpy(rng.integers(0, config["num_classes"], b)).to(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = []
    for i in range(s.train_warmup + s.train_steps):
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, label_smoothing=LABEL_SMOOTHING)
        loss.backward()
        optimizer.step()
        sync()
        if i >= s.train_warmup:
            times.append((time.perf_counter() - start) * 1000)
    p50 = statistics.median(times)
    return {
        "ms_p50": p50,
        "ms_p10": percentile(times, 10),
        "ms_p90": percentile(times, 90),
        "steps": len(times),
        "clouds_per_s": b / (p50 / 1000),
        "loss": float(loss.detach()),
    }


def train_rows(models: dict[str, Model], device: str, s: Settings, budget: Budget) -> list[dict[str, Any]]:
    """One record per (model, EdgeConv implementation); a failure (e.g. an op with no CUDA kernel) is a record."""
    rows = []
    for label in TRAIN_MODELS:
        if label not in models:
            continue
        m = models[label]
        for impl in ("fast", "naive"):
            row = {
                "model": label,
                "model_name": m.model_name,
                "edgeconv": impl,
                "batch": s.train_batch,
                "points": m.points,
                "device": device,
            }
            if budget.left() <= 0:
                rows.append({**row, "status": "failed", "reason": budget.spent_reason()})
                continue
            try:
                rows.append({**row, "status": "ok", "reason": "", **train_step(label, impl, device, m.clouds, s)})
            except Exception as err:
                first = (str(err).strip().splitlines() or [""])[0][:300]
                rows.append({**row, "status": "failed", "reason": f"{type(err).__name__}: {first}"})
    return rows


def train_markdown(rows: list[dict[str, Any]], device_text: str) -> str:
    lines = [
        f"# Training step: {device_text}",
        "",
        f"SGD (momentum {MOMENTUM}, weight decay {WEIGHT_DECAY}), cross-entropy with label smoothing "
        f"{LABEL_SMOOTHING}, dense kNN, one fixed batch; warm-up steps first, then the median (p10–p90) of the "
        "timed steps, each between two device synchronisations.",
        "",
        "| model | EdgeConv | batch × points | status | ms / step (p50) | p10–p90 ms | clouds/s | note |",
        "| --- | --- | ---: | :---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        ok = r["status"] == "ok"
        lines.append(
            f"| {r['model']} | {r['edgeconv']} | {r['batch']} × {r['points']} | {'✅' if ok else '❌'} | "
            + (
                f"{r['ms_p50']:.1f} | {r['ms_p10']:.1f}–{r['ms_p90']:.1f} | {r['clouds_per_s']:.0f}"
                if ok
                else "– | – | –"
            )
            + f" | {r['reason'].replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ main


def write_outputs(folder: Path, device: dict, rows: list, train: list, settings: dict) -> list[Path]:
    """The bench report, the training-step table, and their copies under ``$OUT/<device-id>/`` when ``$OUT`` is set."""
    from pointkd.bench import write_report

    try:
        import matplotlib  # noqa: F401

        plot = True
    except ImportError:
        plot = False
    paths = list(write_report(folder, device, rows, settings, plot=plot).values())
    (folder / "train_step.json").write_text(json.dumps({"device": device, "rows": train}, indent=2) + "\n")
    (folder / "train_step.md").write_text(train_markdown(train, device.get("gpu") or device["cpu"]))
    paths += [folder / "train_step.json", folder / "train_step.md"]
    if os.environ.get("OUT"):
        copy = Path(os.environ["OUT"]) / folder.name
        copy.mkdir(parents=True, exist_ok=True)
        for p in paths:
            shutil.copy2(p, copy / p.name)
    return paths


def run_check(args: argparse.Namespace) -> Path:
    """Everything; returns the report folder."""
    import torch

    from pointkd.bench import device_id, device_info

    s = DRY if args.dry_run else Settings(budget_s=args.budget_s)
    budget = Budget(s.budget_s)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.dry_run:
        raise SystemExit("no CUDA device here (torch.cuda.is_available() is False); use --dry-run to check the path")
    formats = [f for f in FORMATS if f != "torch-cuda-compile" or args.torch_compile]
    data = find_data(args.data)
    info = device_info([])
    info["versions"]["cuda"] = str(torch.version.cuda)
    folder = Path(args.out) / device_id(info)
    rows, models = [], {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name in args.checkpoints:
            m = prepare(ROOT / "benchmarks" / "checkpoints" / f"{name}.pt", device, data, s, Path(tmp))
            models[name] = m
            print(f"{name}: {len(m.clouds)} clouds × {m.points} points from {m.data_source}", flush=True)
            for fmt in formats:
                if budget.left() <= 0:
                    from pointkd.bench import BenchRow

                    rows.append(BenchRow(name, fmt, "failed", reason=budget.spent_reason(), points=m.points))
                    continue
                rows.append(measure_row(fmt, m, device, s))
                r = rows[-1]
                print(f"  {fmt}: {r.status} p50 {r.p50_ms} ms, {r.clouds_per_s} clouds/s; {r.reason}", flush=True)
        train = train_rows(models, device, s, budget)
    sources = sorted({m.data_source for m in models.values()})
    settings = {
        "formats": formats,
        "threads": [],
        "repeats": s.repeats,
        "warmup": s.warmup,
        "max_seconds": s.max_seconds,
        "batch_size": s.batch_size,
        "timing_clouds": s.timing_clouds,
        "test_clouds": max((len(m.clouds) for m in models.values()), default=0),
        "data": "; ".join(sources),
        "sources": [str(m.path) for m in models.values()],
        "device": device,
        "dry_run": args.dry_run,
        "process": f"every row in one process (benchmarks/gpu_check.py) on {device}, no thread count",
        "peak": "Peak memory: not measured.",
        "notes": "each row is checked against the model as trained, on the same device (top-1 agreement, and OA "
        f"when the test split is at hand); the whole check took {s.budget_s - budget.left():.0f} s.",
    }
    write_outputs(folder, info, rows, train, settings)
    return folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, the same code path (for the tests)")
    parser.add_argument("--out", default=None, help="results root (default benchmarks/results; dry run: runs/)")
    parser.add_argument("--data", default=None, help=f"test split npz (default: $POINTKD_DATA, {DEFAULT_DATA.name})")
    parser.add_argument("--checkpoints", nargs="+", default=list(CHECKPOINTS), choices=CHECKPOINTS)
    parser.add_argument("--torch-compile", action="store_true", help="also a torch.compile row (slow to compile)")
    parser.add_argument("--budget-s", type=float, default=Settings.budget_s, help="time budget for the rows (420 s)")
    parser.add_argument("--save-test-split", metavar="NPZ", default=None, help="write the test split there and stop")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = str(ROOT / ("runs/gpu_check-dry" if args.dry_run else "benchmarks/results"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_tqdm()
    if args.save_test_split:
        path = save_test_split(args.data, Path(args.save_test_split))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    start = time.monotonic()
    folder = run_check(args)
    print((folder / "bench.md").read_text())
    print((folder / "train_step.md").read_text())
    print(f"wrote {folder} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
