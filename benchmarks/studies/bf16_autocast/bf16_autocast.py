"""Is a training step faster under bf16 mixed precision (``train.precision: bf16``) on a CPU with AVX-512 BF16
(Zen 4, Zen 5, Sapphire Rapids)?

One SGD step (forward, cross-entropy, backward, update) of the teacher at 1024 points and of the paper student at 512
points, batch 32, real ModelNet40 clouds, through the trainer's own objective (:class:`pointkd.distill.Supervised`)
in ``fp32`` against ``bf16``, interleaved rounds. In ``bf16`` the model's dense matmuls run in bfloat16 and
EdgeConv's edge part (BatchNorm moments, CSR SpMM, neighbour max and argmax) in fp32
(:mod:`pointkd.models.precision`). The study's first version patched those fp32 islands in from outside; they are
now EdgeConv's own code.

Gradient agreement: on the shipped trained models (the teacher, the served student), per real batch of 32 at 1024
points, the cosine between the bf16 and the fp32 gradient of one step with the same dropout masks, against the
cosine between two fp32 gradients with other dropout masks (the noise SGD lives with anyway), and the loss's
relative change. BatchNorm statistics are restored before each step, so the three steps see the same model.

Run (nothing else on the cores): ``python benchmarks/studies/bf16_autocast/bf16_autocast.py`` ->
``<device-id>/bf16_autocast.{md,json}`` beside it.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from pointkd.bench import harness
from pointkd.checkpoint import model_from_checkpoint
from pointkd.data import load_modelnet40
from pointkd.distill import Supervised
from pointkd.models import create_model
from pointkd.process import jemalloc_active, reexec_with_jemalloc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CASES = (("dgcnn_teacher", 1024), ("dgcnn_student", 512))
TRAINED = ("teacher_tail1024b.pt", "student_lsp_fast2_robust.pt")  # benchmarks/checkpoints/


def step_fn(name: str, clouds: torch.Tensor, labels: torch.Tensor, precision: str):
    model = create_model(name).train()
    objective = Supervised(0.2, precision=precision)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        loss = objective(model, clouds, labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def gradient(model: torch.nn.Module, clouds: torch.Tensor, labels: torch.Tensor, precision: str, mask_seed: int):
    """The loss and the flat gradient of one step, the model's BatchNorm statistics left as they were."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(mask_seed)
    model.zero_grad(set_to_none=True)
    loss = Supervised(0.2, precision=precision)(model, clouds, labels).loss
    loss.backward()
    model.load_state_dict(state)
    flat = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), flat


def agreement(checkpoint: str, splits, batches: int) -> dict:
    model = model_from_checkpoint(ROOT / "benchmarks" / "checkpoints" / checkpoint).train()
    order = torch.randperm(len(splits.train_y), generator=torch.Generator().manual_seed(0))
    per_batch = []
    for b in range(batches):
        idx = order[32 * b : 32 * (b + 1)]
        clouds, labels = splits.train_x[idx].contiguous(), splits.train_y[idx]
        loss32, g32 = gradient(model, clouds, labels, "fp32", mask_seed=b)
        loss16, g16 = gradient(model, clouds, labels, "bf16", mask_seed=b)
        _, g_other = gradient(model, clouds, labels, "fp32", mask_seed=1000 + b)
        per_batch.append(
            {
                "cos_bf16_fp32": float(F.cosine_similarity(g16, g32, dim=0)),
                "cos_other_mask_fp32": float(F.cosine_similarity(g_other, g32, dim=0)),
                "loss_rel_change": abs(loss16 - loss32) / loss32,
            }
        )
    keys = per_batch[0]
    med = {k: round(statistics.median(r[k] for r in per_batch), 4) for k in keys}
    worst = round(min(r["cos_bf16_fp32"] for r in per_batch), 4)
    return {
        "checkpoint": checkpoint,
        "batches": batches,
        "median": med,
        "min_cos_bf16_fp32": worst,
        "per_batch": per_batch,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=12, help="timed steps per case and mode")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=None)
    ap.add_argument("--grad-batches", type=int, default=8, help="real batches of 32 for the gradient agreement")
    args = ap.parse_args()
    reexec_with_jemalloc()  # as `pointkd train` does: without it a teacher step here is ~1.7x slower
    info = harness.device_header([torch.get_num_threads()])
    splits = load_modelnet40(args.data)  # default: the shared real ModelNet40
    rows = []
    for name, points in CASES:
        clouds, labels = splits.train_x[:32, :points].contiguous(), splits.train_y[:32]
        fns = {mode: step_fn(name, clouds, labels, mode) for mode in ("fp32", "bf16")}
        times = harness.interleaved(fns, args.repeats, args.rounds, warmup=2)
        s = {mode: harness.summary(t, (50, 90), digits=1) for mode, t in times.items()}
        ratio = round(s["fp32"]["p50_ms"] / s["bf16"]["p50_ms"], 2)
        rows.append({"model": name, "points": points, "batch": 32, **s, "fp32_over_bf16": ratio})
        print(f"{name} {points}: fp32 {s['fp32']['p50_ms']} ms, bf16 {s['bf16']['p50_ms']} ms ({ratio:.2f}x)")
    grads = [agreement(c, splits, args.grad_batches) for c in TRAINED]
    for g in grads:
        print(
            f"{g['checkpoint']}: cos(bf16, fp32) {g['median']['cos_bf16_fp32']}, "
            f"cos(other mask, fp32) {g['median']['cos_other_mask_fp32']}"
        )
    lines = [
        "# bf16 autocast against fp32: one training step",
        "",
        f"{info['cpu']} ({info.get('microarch')}, {info.get('simd')}), {torch.get_num_threads()} threads, "
        f"{'jemalloc' if jemalloc_active() else 'glibc malloc'}; batch 32,",
        "SGD step with label-smoothed cross-entropy (pointkd.distill.Supervised); bf16 rows: `train.precision: "
        "bf16` (dense matmuls in bf16, EdgeConv's edge part in fp32).",
        "",
        "| model | points | fp32 p50 ms | bf16 p50 ms | fp32 / bf16 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cells = (r["model"], r["points"], r["fp32"]["p50_ms"], r["bf16"]["p50_ms"], f"{r['fp32_over_bf16']:.2f}")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += [
        "",
        f"## Gradient agreement (trained models, train mode, {args.grad_batches} real batches of 32 at 1024 points)",
        "",
        "Cosine between one step's gradient in bf16 and in fp32 (same dropout masks), against the cosine between",
        "two fp32 gradients with other dropout masks; medians over the batches.",
        "",
        "| checkpoint | cos(bf16, fp32) | min over batches | cos(other mask, fp32) | loss rel. change |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for g in grads:
        m = g["median"]
        cells = (
            g["checkpoint"],
            m["cos_bf16_fp32"],
            g["min_cos_bf16_fp32"],
            m["cos_other_mask_fp32"],
            f"{m['loss_rel_change']:.2e}",
        )
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "Command: `python benchmarks/studies/bf16_autocast/bf16_autocast.py`", ""]
    folder = harness.out_folder(None, info, HERE)
    harness.write(folder, "bf16_autocast", {"device": info, "rows": rows, "gradients": grads}, "\n".join(lines))


if __name__ == "__main__":
    main()
