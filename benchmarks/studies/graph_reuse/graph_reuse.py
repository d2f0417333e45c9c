"""How much accuracy a trained DGCNN keeps when its later EdgeConvs reuse an earlier layer's kNN graph.

A fully dynamic DGCNN builds a new kNN graph at every EdgeConv (an N x N distance matrix and a top-k per layer);
those graphs are most of the student's CPU latency (``benchmarks/results/<device>/int8_profile.md``: 85-93 % of
its kernel time with the gathers). ``DGCNNConfig.knn_layers`` names the layers that build a graph; every other
layer aggregates over the most recent one. This script takes trained checkpoints *as they are* (no retraining)
and evaluates every choice of graph layers (layer 0 always builds from xyz) on the whole test split at each
``--points`` (k scaled from the checkpoint's training points, as ``pointkd eval --k auto``), and, for the fully
dynamic model, how much each layer's graph overlaps the previous layer's (mean |N_l(i) ∩ N_(l-1)(i)| / k over
``--overlap-clouds`` test clouds): when a layer's neighbours are mostly its predecessor's, reusing them costs little.

The test split is the only held-out split of ModelNet40, so a variant picked by these numbers is picked on it;
the report gives the binomial standard error of an OA on this split next to the differences.

Run: ``python benchmarks/studies/graph_reuse/graph_reuse.py CKPT [CKPT ...]`` -> ``graph_reuse.{md,json}`` beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from pathlib import Path

import torch

from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
from pointkd.cli.eval import eval_k
from pointkd.data import fixed_subset, load_modelnet40
from pointkd.models.dgcnn import DGCNN
from pointkd.train import evaluate

RESULTS = Path(__file__).resolve().parent  # this study's folder


def layer_sets(layers: int) -> list[tuple[int, ...]]:
    """Every choice of graph-building layers that includes layer 0, the fully dynamic one first."""
    rest = range(1, layers)
    subsets = [(0, *c) for r in range(layers - 1, -1, -1) for c in itertools.combinations(rest, r)]
    return subsets


def with_graphs(model: DGCNN, knn_layers: tuple[int, ...], k: int) -> DGCNN:
    """A copy of ``model`` whose layers outside ``knn_layers`` reuse the previous graph, at ``k`` neighbours."""
    config = dataclasses.replace(model.config, knn_layers=knn_layers, k=k)
    copy = DGCNN(config)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def graph_overlap(model: DGCNN, clouds: torch.Tensor, batch_size: int = 32) -> list[float]:
    """Per layer l >= 1 of the fully dynamic ``model``: mean fraction of a node's k neighbours also in layer l-1's."""
    sums = None
    with torch.inference_mode():
        for start in range(0, len(clouds), batch_size):
            graphs = model.forward_features(clouds[start : start + batch_size]).graphs
            shared = [
                (g[..., :, None] == prev[..., None, :]).any(-1).float().mean(-1).sum()
                for prev, g in itertools.pairwise(graphs)
            ]
            sums = shared if sums is None else [a + b for a, b in zip(sums, shared, strict=True)]
    return [float(s) / (len(clouds) * clouds.shape[1]) for s in sums]


def measure(path: Path, data, points: list[int], overlap_clouds: int, batch_size: int) -> dict:
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    if model.config.knn_layers is not None:
        raise SystemExit(f"{path} is not fully dynamic (knn_layers {model.config.knn_layers}); give the original")
    rows, overlap = [], {}
    for n in points:
        k = eval_k("auto", ckpt, n)
        clouds = fixed_subset(data.test_x[:overlap_clouds], n)
        overlap[str(n)] = graph_overlap(with_graphs(model, tuple(range(len(model.config.widths))), k), clouds)
        for sets in layer_sets(len(model.config.widths)):
            started = time.perf_counter()
            with torch.inference_mode():
                r = evaluate(with_graphs(model, sets, k), data.test_x, data.test_y, n, data.num_classes, batch_size)
            rows.append({"points": n, "k": k, "knn_layers": list(sets), "oa": r.oa, "macc": r.macc})
            print(
                f"{path.name} {n} points k {k} graphs {sets}: OA {r.oa * 100:.2f} % "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return {"checkpoint": str(path), "name": label(path), "rows": rows, "overlap": overlap}


def label(path: str | Path) -> str:
    """A checkpoint's name in the report: its stem, or ``run/stem`` for a run folder's ``last.pt`` / ``best.pt``."""
    path = Path(path)
    return f"{path.parent.name}/{path.stem}" if path.stem in ("last", "best") else path.stem


def markdown(report: dict) -> str:
    n_test = report["test_clouds"]
    lines = [
        "# Reusing kNN graphs in trained DGCNN students (no retraining)",
        "",
        "Each checkpoint as trained (fully dynamic: a new kNN graph at every EdgeConv), then evaluated with only the "
        "listed layers building a graph; the others reuse the most recent one. Whole test split "
        f"({n_test} clouds), k scaled from each checkpoint's training points. Standard error of one OA near 88 % on "
        f"this split: {math.sqrt(0.88 * 0.12 / n_test) * 100:.2f} points (binomial); the same clouds are used for "
        "every variant, so differences between variants are less noisy than that.",
        "",
    ]
    for c in report["checkpoints"]:
        points = sorted({r["points"] for r in c["rows"]}, reverse=True)
        dynamic = c["rows"][0]["knn_layers"]  # layer_sets puts the fully dynamic model first
        full = {r["points"]: r["oa"] for r in c["rows"] if r["knn_layers"] == dynamic}
        ks = {r["points"]: r["k"] for r in c["rows"]}
        lines += [f"## `{label(c['checkpoint'])}`", "", f"`{c['checkpoint']}`", ""]
        header = "| graph layers | graphs |" + "".join(f" OA {n} (k {ks[n]}) | Δ {n} |" for n in points)
        lines += [header, "| --- | ---: |" + " ---: | ---: |" * len(points)]
        variants = [r["knn_layers"] for r in c["rows"] if r["points"] == points[0]]
        for sets in variants:
            cells = ""
            for n in points:
                oa = next(r["oa"] for r in c["rows"] if r["points"] == n and r["knn_layers"] == sets)
                cells += f" {oa * 100:.2f} | {(oa - full[n]) * 100:+.2f} |"
            lines.append(f"| {', '.join(map(str, sets))} | {len(sets)} |{cells}")
        lines += ["", "Graph overlap with the previous layer (fully dynamic model, mean shared fraction of k):", ""]
        for n, values in c["overlap"].items():
            per_layer = ", ".join(f"layer {i + 1}: {v:.2f}" for i, v in enumerate(values))
            lines.append(f"- {n} points: {per_layer}")
        lines.append("")
    lines += [f"Command: `python benchmarks/studies/graph_reuse/graph_reuse.py {report['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="*", help="fully dynamic checkpoints (.pt)")
    parser.add_argument("--points", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--overlap-clouds", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true", help="only rewrite graph_reuse.md from OUT_DIR's json")
    args = parser.parse_args()
    if args.render:
        report = json.loads((args.out_dir / "graph_reuse.json").read_text())
        (args.out_dir / "graph_reuse.md").write_text(markdown(report))
        return
    if not args.checkpoints:
        parser.error("give at least one checkpoint (or --render)")
    data = load_modelnet40(args.data)
    report = {
        "data": data.source,
        "test_clouds": len(data.test_y),
        "checkpoints": [measure(p, data, args.points, args.overlap_clouds, args.batch_size) for p in args.checkpoints],
        "command": " ".join([*map(str, args.checkpoints), "--points", *map(str, args.points)]),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "graph_reuse.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "graph_reuse.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
