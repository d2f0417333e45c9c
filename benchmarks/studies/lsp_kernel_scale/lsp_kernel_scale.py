"""How large each LSP kernel's term and gradient are at the paper's λ = 100, on a real batch with the real teacher.

The kernels see raw node features, whose dot products grow layer by layer (the budget teacher's median |z_i·z_j|
is ~17 at layer 0 and ~140 at layer 3). RBF (σ = 1) squashes them; linear passes them on, polynomial squares them,
and L2 passes squared distances on: the softmax over a node's union neighbourhood then becomes one-hot and the
KL, and its gradient, explode. This script measures, for a fresh student (seeded) and ``--clouds`` training clouds,
each kernel's per-layer LSP value and the student's gradient norm of ``λ·Σ_l L_LSP(l)``, and the λ that gives the
same gradient norm as RBF at λ = 100 (the "gradient-matched λ" the comparison uses for the other kernels).

Run: ``python benchmarks/studies/lsp_kernel_scale/lsp_kernel_scale.py`` -> ``lsp_kernel_scale.{md,json}`` beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
from pointkd.data import fixed_subset, load_modelnet40
from pointkd.distill.kernels import KERNELS, Kernel
from pointkd.distill.lsp import LSPLoss
from pointkd.models import create_model
from pointkd.models.dgcnn import DGCNNOutput

RESULTS = Path(__file__).resolve().parent  # this study's folder


def add_batch_args(parser: argparse.ArgumentParser, teacher: str) -> None:
    """The options of a real training batch seen by a teacher checkpoint and a fresh student (shared with
    ``lsp_target_shape.py``)."""
    parser.add_argument("--teacher", default=teacher)
    parser.add_argument("--student", default="dgcnn_student")
    parser.add_argument("--clouds", type=int, default=32)
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--lambda", dest="lam", type=float, default=100.0)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)


def teacher_batch(args: argparse.Namespace) -> tuple[torch.Tensor, DGCNNOutput]:
    """``--clouds`` training clouds (a fixed draw) at ``--points`` points, and the teacher's outputs on them."""
    data = load_modelnet40(args.data)
    ids = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))[: args.clouds]
    x = fixed_subset(data.train_x[ids], args.points)
    teacher = model_from_checkpoint(load_checkpoint(args.teacher)).float().eval()
    with torch.no_grad():
        return x, teacher.forward_features(x)


def batch_header(args: argparse.Namespace) -> dict:
    """What a report says of its batch and models."""
    a = args
    return {"teacher": a.teacher, "student": a.student, "clouds": a.clouds, "points": a.points, "lambda": a.lam}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_batch_args(parser, teacher="benchmarks/checkpoints/teacher_cpu.pt")
    args = parser.parse_args()
    x, t = teacher_batch(args)
    dots = [float((f @ f.transpose(1, 2)).abs().median()) for f in t.features]
    rows = {}
    for name in KERNELS:
        torch.manual_seed(1)
        student = create_model(args.student)
        s = student.forward_features(x)
        loss = LSPLoss(Kernel(name))
        per_layer = [loss(s.features[i], s.graphs[i], t.features[i], t.graphs[i]) for i in range(len(t.features))]
        (args.lam * sum(per_layer)).backward()
        grad = torch.nn.utils.get_total_norm([p.grad for p in student.parameters() if p.grad is not None])
        rows[name] = {"lsp_per_layer": [float(v) for v in per_layer], "grad_norm": float(grad)}
    for r in rows.values():
        r["matched_lambda"] = args.lam * rows["rbf"]["grad_norm"] / r["grad_norm"]
    report = {
        **batch_header(args),
        "teacher_median_abs_dot_per_layer": dots,
        "kernels": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "lsp_kernel_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# LSP kernel scale at λ = {args.lam:g} ({args.clouds} training clouds × {args.points} points, teacher "
        f"`{args.teacher}`, fresh `{args.student}`, seed 1)",
        "",
        "Teacher median |z_i·z_j| per layer: " + ", ".join(f"{v:.1f}" for v in dots),
        "",
        "| kernel | L_LSP per layer | student gradient norm of λ·Σ L_LSP | × RBF | gradient-matched λ |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {', '.join(f'{v:.3g}' for v in r['lsp_per_layer'])} | {r['grad_norm']:.3g} | "
            f"{r['grad_norm'] / rows['rbf']['grad_norm']:.3g} | {r['matched_lambda']:.3g} |"
        )
    (args.out_dir / "lsp_kernel_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
