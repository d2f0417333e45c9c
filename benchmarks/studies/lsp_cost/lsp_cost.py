"""What LSP costs: its three implementations on a real batch, and a distillation step with and without it.

Method: real ModelNet40 test clouds (a fixed subset of ``--points`` points), the teacher from ``--teacher`` (or an
untrained ``dgcnn_teacher`` if none: timing does not depend on the weights) and a fresh ``dgcnn_student``; the
teacher's and the student's per-layer features and kNN graphs come from one forward pass. Every timing is a
median over ``--repeats`` runs after one warm-up, with the thread count fixed, all in one process so the rows
are comparable as ratios.

Rows:
* LSP forward + backward over all matched layer pairs, per implementation (padded / sparse / dense reference),
  with the largest absolute difference of each loss from the dense reference;
* a full distillation step (teacher forward, student forward + backward, SGD) for ``scratch`` (CE only), ``kd``,
  ``lsp`` and ``lsp+kd``: the LSP term's share of a step.

Run: ``python benchmarks/studies/lsp_cost/lsp_cost.py [--teacher runs/teacher_cpu/best.pt]``; writes
``lsp_cost.{json,md}`` beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from pointkd.checkpoint import model_from_checkpoint
from pointkd.config import DistillSection
from pointkd.data import fixed_subset, load_modelnet40
from pointkd.distill import Distill, Kernel, lsp_loss_dense, lsp_loss_padded, lsp_loss_sparse
from pointkd.models import create_model
from pointkd.process import cpu_model, jemalloc_active
from pointkd.timing import median_ms

RESULTS = Path(__file__).resolve().parent  # this study's folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=None, help="teacher checkpoint (default: an untrained dgcnn_teacher)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = load_modelnet40(args.data)
    x = fixed_subset(data.test_x[: args.batch_size], args.points)
    y = data.test_y[: args.batch_size]
    teacher = model_from_checkpoint(args.teacher) if args.teacher else create_model("dgcnn_teacher").eval()
    student = create_model("dgcnn_student")
    settings = DistillSection(teacher=args.teacher or "untrained", method="lsp")
    pairs = Distill(teacher, student, settings).pairs
    with torch.no_grad():
        t_out = teacher.forward_features(x)
    s_out = student.forward_features(x)
    feats = [(s_out.features[s].detach(), s_out.graphs[s], t_out.features[t], t_out.graphs[t]) for t, s in pairs]
    kernel = Kernel("rbf")

    rows = []
    reference = [float(lsp_loss_dense(zs, gs, zt, gt, kernel)) for zs, gs, zt, gt in feats]
    for name, impl in (("padded", lsp_loss_padded), ("sparse", lsp_loss_sparse), ("dense", lsp_loss_dense)):

        def run(impl=impl) -> list[float]:
            values = []
            for zs, gs, zt, gt in feats:
                zs = zs.clone().requires_grad_()
                loss = impl(zs, gs, zt, gt, kernel)
                loss.backward()
                values.append(float(loss.detach()))
            return values

        ms, times = median_ms(run, args.repeats)
        diff = max(abs(a - b) for a, b in zip(run(), reference, strict=True))
        rows.append({"kind": "lsp_impl", "name": name, "ms_p50": ms, "times_ms": times, "max_abs_diff_vs_dense": diff})

    for method in ("scratch", "kd", "lsp", "lsp+kd"):
        torch.manual_seed(0)
        stud = create_model("dgcnn_student")
        objective = Distill(teacher, stud, DistillSection(teacher=settings.teacher, method=method))
        opt = torch.optim.SGD(list(stud.parameters()) + list(objective.parameters()), lr=0.01, momentum=0.9)

        def step(objective=objective, opt=opt, stud=stud) -> None:
            out = objective(stud, x, y)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()

        ms, times = median_ms(step, args.repeats)
        rows.append({"kind": "distill_step", "name": method, "ms_p50": ms, "times_ms": times})

    step_ms = {r["name"]: r["ms_p50"] for r in rows if r["kind"] == "distill_step"}
    host = {
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "jemalloc": jemalloc_active(),
        "points": args.points,
        "batch_size": args.batch_size,
        "teacher": args.teacher or "untrained dgcnn_teacher",
        "layer_pairs": pairs,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "lsp_cost.json").write_text(json.dumps({"host": host, "rows": rows}, indent=2))
    lines = [
        f"# LSP cost ({host['cpu']}, {args.threads} threads, batch {args.batch_size} × {args.points} points, "
        f"teacher: {host['teacher']}, jemalloc: {host['jemalloc']})",
        "",
        f"Layer pairs (teacher, student): {pairs}. Medians of {args.repeats} runs after one warm-up.",
        "",
        "| LSP implementation (fwd + bwd, all layer pairs) | ms p50 | max abs diff vs dense |",
        "| --- | ---: | ---: |",
    ]
    for r in rows:
        if r["kind"] == "lsp_impl":
            lines.append(f"| {r['name']} | {r['ms_p50']:.1f} | {r['max_abs_diff_vs_dense']:.2e} |")
    lines += ["", "| distillation step | ms p50 | vs scratch |", "| --- | ---: | ---: |"]
    for name, ms in step_ms.items():
        lines.append(f"| {name} | {ms:.0f} | {ms / step_ms['scratch']:.2f}× |")
    lines += ["", f"LSP term: {step_ms['lsp'] - step_ms['scratch']:.0f} ms per step over CE-only distillation."]
    (args.out_dir / "lsp_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
