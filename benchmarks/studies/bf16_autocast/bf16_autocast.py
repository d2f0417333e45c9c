"""Is a training step faster under bf16 mixed precision (``train.precision: bf16``) on a CPU with AVX-512 BF16
(Zen 4, Zen 5, Sapphire Rapids)?

One SGD step (forward, cross-entropy, backward, update) of the teacher at 1024 points and of the paper student at 512
points, batch 32, real ModelNet40 clouds, through the trainer's own objective (:class:`pointkd.distill.Supervised`)
in ``fp32`` against ``bf16``, interleaved rounds. In ``bf16`` the model's dense matmuls run in bfloat16 and
EdgeConv's edge part (BatchNorm moments, CSR SpMM, neighbour max and argmax) in fp32
(:mod:`pointkd.models.precision`). The study's first version patched those fp32 islands in from outside; they are
now EdgeConv's own code.

Run (nothing else on the cores): ``python benchmarks/studies/bf16_autocast/bf16_autocast.py`` ->
``<device-id>/bf16_autocast.{md,json}`` beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pointkd.bench import harness
from pointkd.data import load_modelnet40
from pointkd.distill import Supervised
from pointkd.models import create_model
from pointkd.process import jemalloc_active, reexec_with_jemalloc

HERE = Path(__file__).resolve().parent
CASES = (("dgcnn_teacher", 1024), ("dgcnn_student", 512))


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=12, help="timed steps per case and mode")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=None)
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
    lines += ["", "Command: `python benchmarks/studies/bf16_autocast/bf16_autocast.py`", ""]
    folder = harness.out_folder(None, info, HERE)
    harness.write(folder, "bf16_autocast", {"device": info, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
