"""What the LSP target looks like per layer, with σ = 1 and with the median rule, on the campaign's teacher.

LSP matches, per centre node, the student's softmax over kernel similarities to its union neighbourhood ``U(i)``
with the teacher's (``pointkd.distill.lsp``). Whether that target carries structure depends on the RBF bandwidth:
when the teacher's neighbour distances are far above σ, ``exp K`` is flat at 1 (K ≈ 0 for every pair) and the
target is the uniform distribution; when they are of order σ it is peaked on the nearest neighbours. The
median rule puts σ at the median teacher distance of each layer. This script measures, on ``--clouds`` training
clouds and a fresh seeded student (the start of a distillation run), for each matched layer pair and rule:

* σ (the median rule's value, the distances it is set from),
* the spread of the teacher's kernel values ``K_ij`` over a node's other neighbours (their standard deviation,
  averaged over nodes) and the share of those below 0.01: the relative closeness of neighbours is what LSP
  transfers, and it is lost where every ``K_ij`` ≈ 0,
* the teacher target's entropy over ``U(i)`` divided by ``log |U(i)|`` (1 = uniform, nothing to match; 0 = one-hot)
  and its largest probability, averaged over centre nodes,
* ``L_LSP`` of that layer and the student's gradient norm of ``λ·L_LSP(layer)`` alone: where the loss pushes.

Run: ``python benchmarks/studies/lsp_target_shape/lsp_target_shape.py`` -> ``lsp_target_shape.{md,json}`` beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from pointkd.distill.kernels import Kernel, _sqdist
from pointkd.distill.layer_map import default_layer_map
from pointkd.distill.lsp import LSPLoss, _candidate_dots, union_candidates
from pointkd.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lsp_kernel_scale"))
from lsp_kernel_scale import add_batch_args, batch_header, teacher_batch  # the sibling script: the same real batch

RULES = {"σ = 1": Kernel("rbf", sigma=1.0), "median σ": Kernel("rbf", sigma_rule="median")}


def target_stats(z_t: torch.Tensor, idx_t: torch.Tensor, idx_s: torch.Tensor, kernel: Kernel) -> dict[str, float]:
    """σ, median teacher distance, normalised entropy and top-1 probability of the teacher's LSP target."""
    cand, valid = union_candidates(idx_t, idx_s)
    centre = torch.arange(z_t.shape[1]).view(1, -1, 1)
    dots = _candidate_dots(z_t, cand)  # the loss's own (z_i·z_j, ‖z_i‖², ‖z_j‖²) on the union candidates
    edges = valid & (cand != centre)
    kernel = kernel.with_median_sigma(*dots, edges)
    d2 = _sqdist(*dots)[edges]
    k = kernel.from_dots(*dots)
    k_others = k.masked_fill(~edges, float("nan"))
    spread = (k_others - k_others.nanmean(-1, keepdim=True)).pow(2).nanmean(-1).sqrt()
    logits = k.masked_fill(~valid, float("-inf"))
    log_p = logits.log_softmax(-1)
    p = log_p.exp()
    entropy = -(p * log_p.masked_fill(~valid, 0)).sum(-1)
    size = valid.sum(-1).float()
    return {
        "sigma": kernel.sigma,
        "median_distance": float(d2.median().sqrt()),
        "k_spread_others": float(spread.nanmean()),
        "k_below_1e-2_others": float((k[edges] < 1e-2).float().mean()),
        "entropy_over_log_u": float((entropy / size.log()).mean()),
        "top1_probability": float(p.amax(-1).mean()),
        "uniform_top1": float((1 / size).mean()),
    }


def layer_push(student_name: str, x: torch.Tensor, t, pair: tuple[int, int], kernel: Kernel, lam: float) -> tuple:
    """``(L_LSP, ‖∇ λ·L_LSP‖)`` of one layer pair for a fresh student (seed 1)."""
    torch.manual_seed(1)
    student = create_model(student_name)
    s = student.forward_features(x, first_graph=t.graphs[0])
    ti, si = pair
    loss = LSPLoss(kernel)(s.features[si], s.graphs[si], t.features[ti], t.graphs[ti])
    (lam * loss).backward()
    grad = torch.nn.utils.get_total_norm([p.grad for p in student.parameters() if p.grad is not None])
    return float(loss.detach()), float(grad), s.graphs[si]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_batch_args(parser, teacher="benchmarks/checkpoints/teacher_short.pt")
    args = parser.parse_args()
    x, t = teacher_batch(args)
    pairs = default_layer_map(len(t.features), len(create_model(args.student).convs))
    rows = []
    for pair in pairs:
        for rule, kernel in RULES.items():
            loss, grad, idx_s = layer_push(args.student, x, t, pair, kernel, args.lam)
            with torch.no_grad():
                stats = target_stats(t.features[pair[0]], t.graphs[pair[0]], idx_s, kernel)
            rows.append(
                {
                    "teacher_layer": pair[0],
                    "student_layer": pair[1],
                    "rule": rule,
                    "lsp": loss,
                    "grad_norm": grad,
                    **stats,
                }
            )
    report = {**batch_header(args), "rows": rows}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "lsp_target_shape.json").write_text(json.dumps(report, indent=2) + "\n")
    text = render(report)
    (args.out_dir / "lsp_target_shape.md").write_text(text)
    print(text)


def render(report: dict) -> str:
    lines = [
        f"# LSP target per layer: σ = 1 vs the median rule ({report['clouds']} training clouds × "
        f"{report['points']} points, teacher `{report['teacher']}`, fresh `{report['student']}` seed 1, "
        f"λ = {report['lambda']:g})",
        "",
        "Entropy / log|U| is 1 for a uniform target (nothing to match) and 0 for a one-hot one; top-1 is the "
        "teacher target's largest probability (uniform: the last column).",
        "",
        "| layers (t, s) | rule | σ | median teacher distance | std K (others) | K < 0.01 (others) | "
        "entropy / log\\|U\\| | top-1 | uniform top-1 | L_LSP | ‖∇ λ·L_LSP‖ |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['teacher_layer']}, {r['student_layer']} | {r['rule']} | {r['sigma']:.3g} | "
            f"{r['median_distance']:.3g} | {r['k_spread_others']:.3f} | {r['k_below_1e-2_others']:.1%} | "
            f"{r['entropy_over_log_u']:.3f} | {r['top1_probability']:.3f} | {r['uniform_top1']:.3f} | "
            f"{r['lsp']:.3g} | {r['grad_norm']:.3g} |"
        )
    assert all(math.isfinite(r["lsp"]) for r in report["rows"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
