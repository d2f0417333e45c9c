"""Training-step cost of the campaign's steps, today's code against an earlier commit, in one run.

Rows: a teacher step (``dgcnn_teacher``), a scratch-student step, and distillation steps of the LSP paper student
from the committed budget teacher (``benchmarks/checkpoints/teacher_cpu.pt``) with KD, AT, FitNet and LSP, and LSP
over a random subset of centre nodes (``--centres``). Each row runs in its own child process with the source tree
it measures first on ``PYTHONPATH`` (``--baseline REV`` is checked out as a temporary git worktree), jemalloc as
the trainer uses it, ``--threads`` threads, the same seeded batches (real ModelNet40, the trainer's augmentation)
and the same initial weights; ``--warmup`` untimed steps, then the median of ``--steps`` timed steps (zero_grad,
forward, loss, backward, SGD step with momentum).

    python benchmarks/studies/train_step_levers/train_step_levers.py --baseline 3c68585  # writes <device>/ beside it

Output: ``<device-id>/train_step_levers.{json,md}`` beside this script; the Markdown states the issue #16 goals
(a LSP step <= 2x a scratch-student step; a teacher step >= 1.3x faster than the baseline) against the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
RESULTS = Path(__file__).resolve().parent  # this study's folder: <device-id>/
TEACHER = REPO / "benchmarks" / "checkpoints" / "teacher_cpu.pt"
# (label, step, code, LSP centres): the rows, in order. "scratch" and "teacher" are supervised steps.
ROWS = (
    ("teacher", "teacher", "baseline", None),
    ("teacher", "teacher", "current", None),
    ("scratch student", "scratch", "baseline", None),
    ("scratch student", "scratch", "current", None),
    ("KD", "kd", "baseline", None),
    ("KD", "kd", "current", None),
    ("AT", "at", "baseline", None),
    ("AT", "at", "current", None),
    ("FitNet", "fitnet", "current", None),
    ("LSP, all centres", "lsp", "baseline", None),
    ("LSP, all centres", "lsp", "current", None),
    ("LSP, {centres} centres", "lsp", "current", "centres"),
)
# The same steps with every kNN graph (student's and teacher's) built by the fused kernel (knn backend "fused").
FUSED_ROWS = (
    ("teacher", "teacher", "fused kNN", None),
    ("scratch student", "scratch", "fused kNN", None),
    ("KD", "kd", "fused kNN", None),
    ("LSP, {centres} centres", "lsp", "fused kNN", "centres"),
)


def worker(step: str, centres: int | None, opts: argparse.Namespace) -> dict[str, Any]:
    """Time one step kind in this process (the source tree on PYTHONPATH is the one measured)."""
    import torch
    import torch.nn.functional as F

    from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
    from pointkd.config import DistillSection
    from pointkd.data import TrainAugment, load_modelnet40
    from pointkd.distill import Distill
    from pointkd.models import create_model

    torch.set_num_threads(opts.threads)
    data = load_modelnet40(None, num_points=1024, seed=1)
    augment = TrainAugment(num_points=opts.points)
    total = opts.warmup + opts.steps
    batches = [
        (
            augment(data.train_x[i * 32 : (i + 1) * 32], torch.Generator().manual_seed(i)),
            data.train_y[i * 32 : (i + 1) * 32],
        )
        for i in range(total)
    ]
    torch.manual_seed(0)
    backend = {"knn_backend": opts.knn_backend} if opts.knn_backend else {}
    model = create_model("dgcnn_teacher" if step == "teacher" else "dgcnn_student", num_classes=40, **backend)
    model.train()
    objective = None
    if step not in ("teacher", "scratch"):
        settings = {"method": step, **({"lsp_centres": centres} if centres else {})}
        teacher = model_from_checkpoint(load_checkpoint(TEACHER))
        if opts.knn_backend:
            teacher.config = dataclasses.replace(teacher.config, knn_backend=opts.knn_backend)
        objective = Distill(teacher, model, DistillSection(**settings), 0.2)
    params = list(model.parameters()) + (list(objective.parameters()) if objective else [])
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    times = []
    for i, (x, y) in enumerate(batches):
        torch.manual_seed(i)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        if objective is None:
            loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
        else:
            loss = objective(model, x, y).loss
        loss.backward()
        optimizer.step()
        if i >= opts.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return {"ms_p50": statistics.median(times), "ms_min": min(times), "ms_max": max(times), "times_ms": times}


def run_row(
    step: str, centres: int | None, code: Path, opts: argparse.Namespace, knn_backend: str | None = None
) -> dict[str, Any]:
    from pointkd.process import busy_cores, jemalloc_env

    env = jemalloc_env() or dict(os.environ)
    env.update(PYTHONPATH=str(code), OMP_NUM_THREADS=str(opts.threads))
    args = ["--worker", step, "--threads", str(opts.threads), "--steps", str(opts.steps), "--warmup", str(opts.warmup)]
    args += ["--points", str(opts.points)] + (["--centres", str(centres)] if centres else [])
    args += ["--knn-backend", knn_backend] if knn_backend else []
    busy = busy_cores(0.5)
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"status": f"failed: {tail}", "busy_cores_before": busy}
    return {"status": "ok", "busy_cores_before": busy, **json.loads(lines[-1])}


def markdown(host: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    def p50(label: str, code: str) -> float | None:
        return next(
            (r["ms_p50"] for r in rows if r["label"] == label and r["code"] == code and r["status"] == "ok"), None
        )

    out = [
        "# Training-step cost: today's code against the baseline",
        "",
        f"{host['cpu']}, {host['cores']} cores, {host['threads']} threads, jemalloc; batch 32 x {host['points']} "
        f"points; median of {host['steps']} steps after {host['warmup']} warm-up; baseline {host['baseline']}, "
        f"current {host['current']}; {host['date']}. Most other work on the machine was paused; the busiest "
        f"moment before a row saw {max(r['busy_cores_before'] for r in rows):.2f} other cores busy.",
        "",
        "| step | code | ms p50 | min–max | vs baseline |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['label']} | {r['code']} | {r['status']} | | |")
            continue
        base, current = p50(r["label"], "baseline"), p50(r["label"], "current")
        ratio = f"{base / r['ms_p50']:.2f}x faster" if base and r["code"] == "current" else ""
        if r["code"] == "fused kNN" and current:
            ratio = f"{current / r['ms_p50']:.2f}x faster than current" + (
                f", {base / r['ms_p50']:.2f}x than baseline" if base else ""
            )
        out.append(
            f"| {r['label']} | {r['code']} | {r['ms_p50']:.0f} | {r['ms_min']:.0f}–{r['ms_max']:.0f} | {ratio} |"
        )
    teacher_b, teacher_c = p50("teacher", "baseline"), p50("teacher", "current")
    scratch = p50("scratch student", "current")
    lsp_sub = p50(f"LSP, {host['centres']} centres", "current")
    lsp_all = p50("LSP, all centres", "current")
    out += ["", "Goals (issue #16):"]
    if teacher_b and teacher_c:
        out.append(f"- teacher step >= 1.3x faster than the baseline: {teacher_b / teacher_c:.2f}x")
    if scratch and lsp_sub and lsp_all:
        out.append(
            f"- LSP step <= 2x a scratch-student step: {lsp_sub / scratch:.2f}x with {host['centres']} centres, "
            f"{lsp_all / scratch:.2f}x over all centres"
        )
    fused_scratch, fused_lsp = p50("scratch student", "fused kNN"), p50(f"LSP, {host['centres']} centres", "fused kNN")
    fused_teacher = p50("teacher", "fused kNN")
    if teacher_b and fused_teacher:
        out.append(f"- with the fused kNN: teacher step {teacher_b / fused_teacher:.2f}x faster than the baseline")
    if fused_scratch and fused_lsp:
        out.append(
            f"- with the fused kNN: LSP step ({host['centres']} centres) {fused_lsp / fused_scratch:.2f}x a "
            "scratch-student step"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--baseline", default="3c68585", help="git revision to compare with (default: %(default)s)")
    p.add_argument("--centres", type=int, default=128, help="LSP centres in the subset row (default: %(default)s)")
    p.add_argument("--points", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--fused", action="store_true", help="add rows with the fused kNN kernel (knn backend 'fused')")
    p.add_argument("--knn-backend", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out-dir", type=Path, default=None, help="default: <device-id>/ beside this script")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.worker:
        centres = opts.centres if "--centres" in sys.argv else None
        print(json.dumps(worker(opts.worker, centres, opts)), flush=True)
        return 0
    from pointkd.bench.device import device_id, device_info

    info = device_info([opts.threads])
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    host = {**info, "threads": opts.threads, "points": opts.points, "steps": opts.steps, "warmup": opts.warmup,
            "baseline": opts.baseline, "current": rev.stdout.strip(), "centres": opts.centres,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    if opts.fused:
        from pointkd.export.knn_op.build import build_knn_c

        build_knn_c()  # compiled here, once, not inside a timed worker
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), opts.baseline], check=True)
        try:
            for label, step, code, centres in ROWS + (FUSED_ROWS if opts.fused else ()):
                n = opts.centres if centres else None
                fused = "fused" if code == "fused kNN" else None
                row = run_row(step, n, base if code == "baseline" else REPO, opts, fused)
                rows.append(
                    {"label": label.format(centres=opts.centres), "step": step, "code": code, "centres": n, **row}
                )
                print(f"{rows[-1]['label']:<22} {code:<9} {row.get('ms_p50', float('nan')):8.0f} ms  {row['status']}")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    out = opts.out_dir or RESULTS / device_id(info)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_step_levers.json").write_text(json.dumps({"host": host, "rows": rows}, indent=1) + "\n")
    (out / "train_step_levers.md").write_text(markdown(host, rows))
    print(markdown(host, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
