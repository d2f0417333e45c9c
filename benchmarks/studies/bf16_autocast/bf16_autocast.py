"""Is a training step faster under CPU bf16 autocast on a CPU with AVX-512 BF16 (Zen 4, Zen 5, Sapphire Rapids)?

One SGD step (forward, cross-entropy, backward, update) of the teacher at 1024 points and of the paper student at 512
points, batch 32, real ModelNet40 clouds, fp32 against ``torch.autocast("cpu", dtype=torch.bfloat16)``, interleaved
rounds. pointkd's EdgeConv has no bf16 path: its CSR SpMM (MKL has no bf16 sparse kernel) and its BatchNorm running
statistics fail on bf16 tensors, and its neighbour argmax falls back to a slow form. This study runs them and the
neighbour max in fp32 inside the autocast region (:func:`fp32_islands`), the cheapest a bf16 path could be made;
every other op runs as autocast casts it. Where that is not faster, a bf16 training path is not worth writing.

Run (nothing else on the cores): ``python benchmarks/studies/bf16_autocast/bf16_autocast.py`` ->
``<device-id>/bf16_autocast.{md,json}`` beside it.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from pointkd.bench import harness
from pointkd.data import load_modelnet40
from pointkd.models import create_model, edgeconv

HERE = Path(__file__).resolve().parent
CASES = (("dgcnn_teacher", 1024), ("dgcnn_student", 512))


@contextmanager
def fp32_islands():
    """EdgeConv's SpMM, neighbour max and argmax, and running-statistics update in fp32 within an autocast region
    (restored on exit). bf16 to fp32 is exact and keeps the order, so the max and argmax are those of the bf16
    values; the argmax's one-SpMM form needs fp32's spare mantissa bits (in bf16 it falls back to a gather and a
    max over ``[B, N, k, C]``, which took 37 % of a bf16 teacher step)."""
    spmm_f, spmm_b, stats = edgeconv._SpMM.forward, edgeconv._SpMM.backward, edgeconv._update_running_stats
    nmax, nargmax = edgeconv.neighbor_max, edgeconv.neighbor_argmax

    def forward(ctx, a, at, x):
        ctx.dtype = x.dtype
        with torch.autocast("cpu", enabled=False):
            return spmm_f(ctx, a.to(torch.float32), at.to(torch.float32), x.float()).to(x.dtype)

    def backward(ctx, grad):
        with torch.autocast("cpu", enabled=False):
            _, _, g = spmm_b(ctx, grad.float())
        return None, None, g.to(ctx.dtype)

    edgeconv._SpMM.forward, edgeconv._SpMM.backward = staticmethod(forward), staticmethod(backward)
    edgeconv._update_running_stats = lambda bn, mean, var, n: stats(bn, mean.float(), var.float(), n)
    edgeconv.neighbor_max = lambda a, adj, sign=None: nmax(a.float(), adj.to(torch.float32), sign).to(a.dtype)
    edgeconv.neighbor_argmax = lambda a, idx, adj, sign=None: nargmax(a.float(), idx, adj.to(torch.float32), sign)
    try:
        yield
    finally:
        edgeconv._SpMM.forward, edgeconv._SpMM.backward = staticmethod(spmm_f), staticmethod(spmm_b)
        edgeconv._update_running_stats = stats
        edgeconv.neighbor_max, edgeconv.neighbor_argmax = nmax, nargmax


def step_fn(name: str, clouds: torch.Tensor, labels: torch.Tensor, bf16: bool):
    model = create_model(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(clouds).float(), labels)
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
    info = harness.device_header([torch.get_num_threads()])
    splits = load_modelnet40(args.data)  # default: the shared real ModelNet40
    rows = []
    with fp32_islands():
        for name, points in CASES:
            clouds, labels = splits.train_x[:32, :points].contiguous(), splits.train_y[:32]
            fns = {mode: step_fn(name, clouds, labels, mode == "bf16") for mode in ("fp32", "bf16")}
            times = harness.interleaved(fns, args.repeats, args.rounds, warmup=2)
            s = {mode: harness.summary(t, (50, 90), digits=1) for mode, t in times.items()}
            ratio = round(s["fp32"]["p50_ms"] / s["bf16"]["p50_ms"], 2)
            rows.append({"model": name, "points": points, "batch": 32, **s, "fp32_over_bf16": ratio})
            print(f"{name} {points}: fp32 {s['fp32']['p50_ms']} ms, bf16 {s['bf16']['p50_ms']} ms ({ratio:.2f}x)")
    lines = [
        "# bf16 autocast against fp32: one training step",
        "",
        f"{info['cpu']} ({info.get('microarch')}, {info.get('simd')}), {torch.get_num_threads()} threads; batch 32,",
        "SGD step with cross-entropy; in the bf16 rows EdgeConv's SpMM, neighbour max and argmax and BatchNorm "
        "statistics in fp32.",
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
