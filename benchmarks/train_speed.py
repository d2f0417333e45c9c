"""Training-step speed of the DGCNN teacher and student: EdgeConv impl x kNN backend x memory allocator.

What is timed: one real training step as in :func:`pointkd.train.trainer.train`: model in train mode,
``zero_grad`` + forward + ``cross_entropy(label_smoothing=0.2)`` + backward + SGD step (momentum 0.9,
weight decay 1e-4), on ModelNet40 training clouds from :func:`pointkd.data.load_modelnet40` passed through
:class:`pointkd.data.TrainAugment` at ``--points`` points (``--data synthetic`` for the small built-in set).

Method:

* Every configuration runs in its own child process (``python train_speed.py --worker ...``), because the
  allocator can only be chosen when a process starts: jemalloc rows get ``LD_PRELOAD`` + ``MALLOC_CONF``
  from :func:`pointkd.process.jemalloc_env`, glibc rows an environment with both removed and
  ``POINTKD_JEMALLOC=0``. The child checks ``/proc/self/maps`` to confirm which allocator it really got and
  prints one JSON line that the parent collects. A child that fails (exception, OOM kill, timeout) becomes a
  row with status ``failed: <reason>``; configurations that cannot run here (no torch-cluster, no jemalloc)
  become ``skipped: <why>`` rows.
* Threads are fixed (``--threads``, default 2) with ``torch.set_num_threads`` and ``OMP_NUM_THREADS``.
* Every configuration sees the same model initialisation (``torch.manual_seed(--seed)``), the same batches
  (sample order and augmentation drawn from seeded generators and prepared before timing) and the same
  dropout masks, so rows differ only in the implementation under test; the first-step losses are recorded
  as a check.
* ``--warmup`` untimed steps first (allocator pools, oneDNN primitive caches, lazy init), then ``--steps``
  timed steps; reported are the median (p50), p10 and p90 of the per-step wall time and clouds/s at the
  median. Medians, because background load on a shared machine only ever adds time.

Default grid, per model: (naive, dense, glibc), (naive, dense, jemalloc), (fast, dense, glibc),
(fast, dense, jemalloc), (fast, cluster, jemalloc); ``--full`` runs the whole product. Speed-ups are relative
to each model's (naive, dense, glibc) row.

Run (one teacher step takes seconds on a small CPU, so keep ``--steps`` modest)::

    python benchmarks/train_speed.py                         # both models, default grid, real ModelNet40
    python benchmarks/train_speed.py --models dgcnn_student --full --steps 10
    python benchmarks/train_speed.py --data synthetic --steps 1 --warmup 0 --batch-size 4 --points 128

Writes ``<out-dir>/train_speed.json`` (host info + one record per row) and ``<out-dir>/train_speed.md``
(the table, also printed), ``--out-dir`` defaulting to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODELS = ("dgcnn_teacher", "dgcnn_student")
IMPLS = ("naive", "fast")
KNNS = ("dense", "cluster-xyz", "cluster")  # cluster-xyz: torch-cluster on the xyz layer, dense after it
ALLOCATORS = ("glibc", "jemalloc")
BASELINE = ("naive", "dense", "glibc")
DEFAULT_GRID: tuple[tuple[str, str, str], ...] = (
    ("naive", "dense", "glibc"),
    ("naive", "dense", "jemalloc"),
    ("fast", "dense", "glibc"),
    ("fast", "dense", "jemalloc"),
    ("fast", "cluster-xyz", "jemalloc"),
    ("fast", "cluster", "jemalloc"),
)
# The recipe's optimiser (pointkd.config.TrainSection defaults); the lr value does not change the step's cost.
LR, MOMENTUM, WEIGHT_DECAY, LABEL_SMOOTHING = 0.1, 0.9, 1e-4, 0.2
_ALLOC_VARS = ("LD_PRELOAD", "MALLOC_CONF", "POINTKD_JEMALLOC_ACTIVE")


@dataclass(frozen=True)
class BenchConfig:
    """One row of the benchmark."""

    model: str
    edgeconv: str
    knn: str
    allocator: str


@dataclass(frozen=True)
class BenchOptions:
    """Settings shared by every row (and passed on to each child)."""

    points: int = 512
    batch_size: int = 32
    steps: int = 5
    warmup: int = 2
    threads: int = 2
    seed: int = 1
    data: str | None = None  # None: load_modelnet40()'s default (the shared real copy / $POINTKD_DATA)
    timeout: float = 1800.0  # seconds per child


# ----------------------------------------------------------------------------------------------- worker


def _loaded_allocator() -> str:
    """``"jemalloc"`` if libjemalloc is mapped into this process, else ``"glibc"``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc"
    return "jemalloc" if "libjemalloc" in maps else "glibc"


def run_worker(cfg: BenchConfig, opts: BenchOptions) -> dict[str, Any]:
    """Time ``opts.steps`` training steps of ``cfg`` in this process; the record the child prints."""
    import torch

    from pointkd.data import TrainAugment, load_modelnet40
    from pointkd.distill import Supervised
    from pointkd.models import create_model
    from pointkd.timing import percentile

    torch.set_num_threads(opts.threads)
    data = load_modelnet40(opts.data, num_points=max(opts.points, 1024), seed=opts.seed)
    n_train = int(data.train_x.shape[0])
    total = opts.warmup + opts.steps
    augment = TrainAugment(num_points=opts.points)
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(opts.seed))
    batches = []
    for i in range(total):
        sel = order[torch.arange(i * opts.batch_size, (i + 1) * opts.batch_size) % n_train]
        x = augment(data.train_x[sel], torch.Generator().manual_seed(opts.seed * 100_003 + i))
        batches.append((x.contiguous(), data.train_y[sel]))

    torch.manual_seed(opts.seed)
    backend = "auto" if cfg.knn == "cluster-xyz" else cfg.knn  # auto: torch-cluster on the 3-d xyz layer only
    model = create_model(cfg.model, num_classes=data.num_classes, edgeconv_impl=cfg.edgeconv, knn_backend=backend)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    objective = Supervised(LABEL_SMOOTHING)

    times_ms: list[float] = []
    losses: list[float] = []
    for i, (x, y) in enumerate(batches):
        torch.manual_seed(opts.seed * 100_003 + i)  # dropout masks, as the trainer seeds them per step
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = objective(model, x, y).loss  # the trainer's own step objective
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        losses.append(float(loss.detach()))
        if i >= opts.warmup:
            times_ms.append(elapsed * 1e3)

    p50 = statistics.median(times_ms)
    return {
        "status": "ok",
        "ms_p50": p50,
        "ms_p10": percentile(times_ms, 10),
        "ms_p90": percentile(times_ms, 90),
        "clouds_per_s": opts.batch_size / (p50 / 1e3),
        "times_ms": times_ms,
        "losses": losses,
        "allocator_loaded": _loaded_allocator(),
        "torch_threads": torch.get_num_threads(),
        "num_parameters": model.num_parameters,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "data_source": data.source,
    }


def worker_main(cfg: BenchConfig, opts: BenchOptions) -> int:
    """Child entry point: run one configuration and print its record as one JSON line on stdout."""
    try:
        record = run_worker(cfg, opts)
        if record["allocator_loaded"] != cfg.allocator:
            record["status"] = f"failed: asked for {cfg.allocator} but {record['allocator_loaded']} is loaded"
    except Exception as e:  # reported as a row, not a crash
        first = (str(e).strip().splitlines() or [""])[0][:300]
        record = {"status": f"failed: {type(e).__name__}: {first}"}
    print(json.dumps(record), flush=True)
    return 0 if record["status"] == "ok" else 1


# ----------------------------------------------------------------------------------------------- parent


def grid(
    models: Sequence[str], full: bool = False, rows: Sequence[tuple[str, str, str]] | None = None
) -> list[BenchConfig]:
    """Configurations to run: ``rows`` if given, else the full product or the default grid, per model."""
    if rows:
        combos = list(rows)
    else:
        combos = list(itertools.product(IMPLS, KNNS, ALLOCATORS)) if full else list(DEFAULT_GRID)
    return [BenchConfig(m, *c) for m in models for c in combos]


def parse_row(text: str) -> tuple[str, str, str]:
    """``"fast,dense,jemalloc"`` -> ``("fast", "dense", "jemalloc")`` (argparse type for ``--rows``)."""
    parts = tuple(p.strip() for p in text.split(","))
    if len(parts) != 3 or parts[0] not in IMPLS or parts[1] not in KNNS or parts[2] not in ALLOCATORS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected EDGECONV,KNN,ALLOCATOR with EDGECONV in {IMPLS}, KNN in {KNNS}, "
            f"ALLOCATOR in {ALLOCATORS}"
        )
    return parts[0], parts[1], parts[2]


def child_env(allocator: str, threads: int) -> dict[str, str] | None:
    """Environment for a child using ``allocator``; None if that allocator is not available here."""
    from pointkd.process import jemalloc_env

    env = {k: v for k, v in os.environ.items() if k not in _ALLOC_VARS}
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    if allocator == "glibc":
        env["POINTKD_JEMALLOC"] = "0"
        return env
    env.pop("POINTKD_JEMALLOC", None)
    return jemalloc_env(env)


def skip_reason(cfg: BenchConfig) -> str | None:
    from pointkd.models.knn import torch_cluster_available
    from pointkd.process import find_jemalloc

    if cfg.knn.startswith("cluster") and not torch_cluster_available():
        return "skipped: torch-cluster not installed (pip install --no-build-isolation torch-cluster)"
    if cfg.allocator == "jemalloc" and find_jemalloc() is None:
        return "skipped: libjemalloc.so.2 not found (apt-get install libjemalloc2)"
    return None


def worker_args(cfg: BenchConfig, opts: BenchOptions) -> list[str]:
    args = [
        "--worker",
        "--models", cfg.model,
        "--edgeconv", cfg.edgeconv,
        "--knn", cfg.knn,
        "--allocator", cfg.allocator,
        "--points", str(opts.points),
        "--batch-size", str(opts.batch_size),
        "--steps", str(opts.steps),
        "--warmup", str(opts.warmup),
        "--threads", str(opts.threads),
        "--seed", str(opts.seed),
    ]  # fmt: skip
    if opts.data is not None:
        args += ["--data", opts.data]
    return args


def _failure_reason(proc: subprocess.CompletedProcess[str]) -> str:
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        hint = " (out of memory?)" if sig == signal.SIGKILL else ""
        return f"failed: killed by {sig.name}{hint}"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    last = lines[-1].strip()[:300] if lines else "no output"
    return f"failed: exit {proc.returncode}: {last}"


def run_config(cfg: BenchConfig, opts: BenchOptions) -> dict[str, Any]:
    """Run one configuration in a child process; always returns a record (ok, skipped or failed)."""
    row: dict[str, Any] = asdict(cfg)
    reason = skip_reason(cfg)
    env = None if reason else child_env(cfg.allocator, opts.threads)
    if reason or env is None:
        row["status"] = reason or f"skipped: {cfg.allocator} unavailable"
        return row
    from pointkd.process import busy_cores

    row["busy_cores_before"] = round(busy_cores(0.5), 2)
    cmd = [sys.executable, str(Path(__file__).resolve()), *worker_args(cfg, opts)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=opts.timeout, check=False)
    except subprocess.TimeoutExpired:
        row["status"] = f"failed: timed out after {opts.timeout:g} s"
        return row
    finally:
        row["child_wall_s"] = round(time.perf_counter() - start, 2)
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            break
    if result is None:
        row["status"] = _failure_reason(proc)
    else:
        row.update(result)
    return row


def host_info(opts: BenchOptions) -> dict[str, Any]:
    import torch

    from pointkd.models.knn import torch_cluster_available
    from pointkd.process import MALLOC_CONF, busy_cores, cpu_model, find_jemalloc

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": opts.threads,
        "points": opts.points,
        "batch_size": opts.batch_size,
        "steps": opts.steps,
        "warmup": opts.warmup,
        "seed": opts.seed,
        "data": opts.data or "modelnet40 (default source)",
        "jemalloc": find_jemalloc(),
        "malloc_conf": MALLOC_CONF,
        "torch_cluster": torch_cluster_available(),
        "busy_cores": round(busy_cores(1.0), 2),
        "command": " ".join(["python", *sys.argv]),
    }


def _speedups(rows: list[dict[str, Any]]) -> dict[int, float]:
    base = {
        r["model"]: r["ms_p50"]
        for r in rows
        if (r["edgeconv"], r["knn"], r["allocator"]) == BASELINE and r["status"] == "ok"
    }
    return {i: base[r["model"]] / r["ms_p50"] for i, r in enumerate(rows) if r["status"] == "ok" and r["model"] in base}


def markdown(host: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    speed = _speedups(rows)
    out = [
        "# Training-step speed",
        "",
        f"{host['cpu_model']}, {host['cores']} cores, torch {host['torch']}, {host['threads']} threads; "
        f"batch {host['batch_size']} x {host['points']} points, median of {host['steps']} steps after "
        f"{host['warmup']} warm-up; data: {host['data']}; {host['date']}.",
        "",
    ]
    busy = max([host["busy_cores"], *(r.get("busy_cores_before", 0.0) for r in rows)])
    if busy > 0.3:
        out += [
            f"**Warning:** other processes kept up to {busy:.2f} cores busy just before a row started, so these "
            "timings may not be representative (oversubscribed OpenMP threads can slow a step by orders of "
            "magnitude). Rerun on an idle machine.",
            "",
        ]
    else:
        out += [f"The machine was idle before every row (at most {busy:.2f} cores busy elsewhere).", ""]
    out += [
        "| model | edgeconv | knn | allocator | ms/step p50 | p10–p90 | clouds/s | speed-up |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows):
        head = f"| {r['model']} | {r['edgeconv']} | {r['knn']} | {r['allocator']} |"
        if r["status"] != "ok":
            out.append(f"{head} {r['status'].replace('|', '/')} | | | |")
            continue
        up = f"{speed[i]:.2f}x" if i in speed else "–"
        spread = f"{r['ms_p10']:.1f}–{r['ms_p90']:.1f}"
        out.append(f"{head} {r['ms_p50']:.1f} | {spread} | {r['clouds_per_s']:.1f} | {up} |")
    out += ["", "Speed-up: the (naive, dense, glibc) row's median over this row's, per model."]
    for model in dict.fromkeys(r["model"] for r in rows):
        first = [r["losses"][0] for r in rows if r["model"] == model and r["status"] == "ok" and r.get("losses")]
        if len(first) > 1:
            rel = (max(first) - min(first)) / max(abs(statistics.mean(first)), 1e-12)
            mean = statistics.mean(first)
            out.append(f"{model}: first-step loss {mean:.4f}, relative spread across rows {rel:.1e}.")
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--models", nargs="+", default=list(MODELS), help="registered model names (default: %(default)s)")
    p.add_argument("--full", action="store_true", help="every edgeconv x knn x allocator combination")
    p.add_argument(
        "--rows",
        nargs="+",
        type=parse_row,
        metavar="EDGECONV,KNN,ALLOCATOR",
        help="run only these combinations per model, e.g. --rows naive,dense,glibc fast,dense,jemalloc",
    )
    p.add_argument("--points", type=int, default=512, help="points per cloud (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="clouds per step (default: %(default)s)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per row (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="model init, sample order, augmentation (default: %(default)s)")
    p.add_argument("--data", default=None, help="ModelNet40 source for load_modelnet40(), or 'synthetic'")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per child (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the .json and .md go")
    # Child mode (internal): one configuration, one JSON line on stdout.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--edgeconv", choices=IMPLS, default="fast", help=argparse.SUPPRESS)
    p.add_argument("--knn", choices=KNNS, default="dense", help=argparse.SUPPRESS)
    p.add_argument("--allocator", choices=ALLOCATORS, default="glibc", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1 or args.points < 1 or args.threads < 1:
        p.error("need --steps >= 1, --warmup >= 0, and positive --batch-size, --points, --threads")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    opts = BenchOptions(
        points=args.points,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads,
        seed=args.seed,
        data=args.data,
        timeout=args.timeout,
    )
    if args.worker:
        return worker_main(BenchConfig(args.models[0], args.edgeconv, args.knn, args.allocator), opts)

    from pointkd.data import DataError, resolve_data_path
    from pointkd.models import list_models

    unknown = sorted(set(args.models) - set(list_models()))
    if unknown:
        print(f"unknown model(s) {unknown}; available: {', '.join(list_models())}", file=sys.stderr)
        return 2
    try:
        resolve_data_path(args.data)
    except DataError as e:
        print(f"{e}", file=sys.stderr)
        return 2

    host = host_info(opts)
    configs = grid(args.models, args.full, args.rows)
    rows = []
    for n, cfg in enumerate(configs, 1):
        label = f"[{n}/{len(configs)}] {cfg.model} {cfg.edgeconv} {cfg.knn} {cfg.allocator}"
        print(label, "...", end=" ", flush=True, file=sys.stderr)
        row = run_config(cfg, opts)
        ok = row["status"] == "ok"
        print(f"{row['ms_p50']:.1f} ms/step" if ok else row["status"], flush=True, file=sys.stderr)
        rows.append(row)

    from pointkd.bench import harness  # here, not at the top: a worker process measures its own peak RSS

    table = markdown(host, rows)
    print(table)
    harness.write(args.out_dir, "train_speed", {"host": host, "rows": rows}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
