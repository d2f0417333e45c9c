"""ONNX Runtime's TopK alone vs the seeded TopK (``pointkd.export.deploy_model.seeded_topk``) on real score rows.

For each kNN layer after the first of a trained student, the ``[N, N]`` kNN scores of real test clouds are computed
in torch, and two one-op-deep ONNX graphs are timed on them: plain ``TopK(k, sorted=0)``, and the seeded form
(GatherElements of the previous layer's neighbours' scores, ReduceMin, Concat of ``k`` copies of the floor, TopK,
Sub). Both must pick the same neighbour sets as ``torch.topk`` (``mismatched rows`` must be 0).

Run: ``python benchmarks/studies/seeded_topk/seeded_topk.py [--checkpoint CKPT]`` -> ``seeded_topk.{md,json}``
beside it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from pointkd.checkpoint import model_from_checkpoint
from pointkd.data import load_modelnet40
from pointkd.export.deploy_model import seeded_topk
from pointkd.process import busy_cores, cpu_model
from pointkd.runtime.ort import make_session
from pointkd.timing import percentile, time_ms

ROOT = Path(__file__).resolve().parents[3]
RESULTS = Path(__file__).resolve().parent  # this study's folder


class Plain(torch.nn.Module):
    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, score, seed):
        return score.topk(self.k, dim=-1, sorted=False).indices + 0 * seed[..., :1]  # same inputs as Seeded


class Seeded(Plain):
    def forward(self, score, seed):
        return seeded_topk(score, seed, self.k)


def layer_scores(checkpoint: Path, clouds: torch.Tensor) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]:
    """``k`` and, per kNN layer after the first: (scores ``[B, N, N]``, the previous layer's graph ``[B, N, k]``)."""
    model = model_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        out = model.forward_features(clouds)
    inputs = [clouds, *out.features[:-1]]
    pairs = []
    for layer in range(1, len(model.convs)):
        if not model.config.builds_graph(layer):
            continue
        x = inputs[layer]
        sq = (x * x).sum(-1, keepdim=True)
        score = torch.cat([x, torch.ones_like(sq)], -1) @ torch.cat([x, -0.5 * sq], -1).transpose(1, 2)
        pairs.append((score.contiguous(), out.graphs[layer - 1]))
    return model.config.k, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "benchmarks" / "checkpoints" / "student_lsp.pt")
    parser.add_argument("--points", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--clouds", type=int, default=4, help="test clouds per layer (median of their p50s)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    test_x = load_modelnet40(args.data).test_x[: args.clouds]
    rows = []
    busy = busy_cores()
    for n in args.points:
        k, pairs = layer_scores(args.checkpoint, test_x[:, :n].contiguous())
        for threads in (2, 1):
            for variant, module in (("plain", Plain(k)), ("seeded", Seeded(k))):
                with tempfile.TemporaryDirectory() as tmp:
                    onnx_path = Path(tmp) / f"{variant}.onnx"
                    torch.onnx.export(
                        module, tuple(t[:1] for t in pairs[0]), onnx_path, input_names=["score", "seed"], dynamo=False
                    )
                    session = make_session(onnx_path, threads=threads)
                for layer, (score, seed) in enumerate(pairs, start=1):
                    p50s, mismatched = [], 0
                    for c in range(len(score)):
                        feed = {"score": score[c : c + 1].numpy(), "seed": seed[c : c + 1].numpy()}
                        got = np.sort(session.run(None, feed)[0], -1)
                        want = np.sort(score[c : c + 1].topk(k, dim=-1).indices.numpy(), -1)
                        mismatched += int((got != want).any(-1).sum())
                        p50s.append(percentile(time_ms(lambda f=feed, s=session: s.run(None, f), args.runs, 10), 50))
                    row = {"points": n, "k": k, "threads": threads, "variant": variant, "layer": layer}
                    row |= {"p50_ms": float(np.median(p50s)), "mismatched_rows": mismatched}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    report = {"cpu": cpu_model(), "busy_cores_before": busy, "checkpoint": str(args.checkpoint), "rows": rows}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "seeded_topk.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Seeded TopK vs ONNX Runtime's TopK on a trained student's kNN scores",
        "",
        f"CPU: {report['cpu']} (busy cores before: {busy:.2f}); checkpoint `{args.checkpoint.name}`; "
        f"median over {args.clouds} test clouds of the p50 of {args.runs} runs; batch 1.",
        "",
        "| points | k | threads | layer | TopK ms | seeded ms | ratio | mismatched rows (TopK / seeded) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if r["variant"] != "plain":
            continue
        s = next(
            x for x in rows if x["variant"] == "seeded" and all(x[f] == r[f] for f in ("points", "threads", "layer"))
        )
        lines.append(
            f"| {r['points']} | {r['k']} | {r['threads']} | {r['layer']} | {r['p50_ms']:.3f} | {s['p50_ms']:.3f} | "
            f"{s['p50_ms'] / r['p50_ms']:.2f} | {r['mismatched_rows']} / {s['mismatched_rows']} |"
        )
    (args.out_dir / "seeded_topk.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
