"""kNN backends: dense pairwise scores + top-k (plain torch) vs torch-cluster's KD-tree, per input shape.

Method: real ModelNet40 test clouds for the xyz rows (a fixed subset of N points) and random features for the
feature-space rows; every backend and shape timed in one process (the ratios are what matter), median of
``--repeats`` runs after one warm-up, fixed threads. The ``auto`` column says which backend
``pointkd.models.knn.knn(backend="auto")`` picks for that shape, so the rule can be checked against the timings.

Run: ``python benchmarks/studies/knn_backends/knn_backends.py``; writes ``knn_backends.{json,md}`` beside it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import torch

from pointkd.data import fixed_subset, load_modelnet40
from pointkd.models.knn import knn_cluster, knn_dense, torch_cluster_available
from pointkd.process import cpu_model, jemalloc_active
from pointkd.timing import median_ms

RESULTS = Path(__file__).resolve().parent  # this study's folder
knn_module = importlib.import_module("pointkd.models.knn")  # pointkd.models.knn, the attribute, is a function
SHAPES = [(1, 1024, 3), (16, 1024, 3), (32, 512, 3), (1, 1024, 64), (32, 512, 64)]


def auto_choice(x: torch.Tensor) -> str:
    small = x.shape[-1] <= knn_module.CLUSTER_MAX_DIM
    return "cluster" if small and torch_cluster_available() else "dense"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clouds = load_modelnet40(args.data).test_x
    rows = []
    for b, n, c in SHAPES:
        x = fixed_subset(clouds[:b], n) if c == 3 else torch.randn(b, n, c, generator=torch.Generator().manual_seed(0))
        dense = median_ms(lambda x=x: knn_dense(x, args.k), args.repeats)[0]
        cluster = median_ms(lambda x=x: knn_cluster(x, args.k), args.repeats)[0] if torch_cluster_available() else None
        same = None
        if cluster is not None:
            a, z = knn_dense(x, args.k).sort(-1).values, knn_cluster(x, args.k).sort(-1).values
            same = float((a == z).all(-1).float().mean())
        rows.append(
            {"shape": [b, n, c], "dense_ms": dense, "cluster_ms": cluster, "auto": auto_choice(x), "same_sets": same}
        )
    host = {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__, "k": args.k,
            "jemalloc": jemalloc_active(), "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "knn_backends.json").write_text(json.dumps({"host": host, "rows": rows}, indent=2))
    lines = [
        f"# kNN backends ({host['cpu']}, {args.threads} threads, k = {args.k}, jemalloc: {host['jemalloc']})",
        "",
        f"Median of {args.repeats} runs after one warm-up. xyz rows: real ModelNet40 test clouds; 64-d rows: random.",
        "",
        "| B × N × C | dense ms | torch-cluster ms | cluster / dense | same neighbour sets | auto picks |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        b, n, c = r["shape"]
        if r["cluster_ms"] is None:
            lines.append(f"| {b} × {n} × {c} | {r['dense_ms']:.1f} | not installed | – | – | {r['auto']} |")
        else:
            lines.append(
                f"| {b} × {n} × {c} | {r['dense_ms']:.1f} | {r['cluster_ms']:.1f} | "
                f"{r['cluster_ms'] / r['dense_ms']:.2f} | {r['same_sets'] * 100:.1f} % | {r['auto']} |"
            )
    (args.out_dir / "knn_backends.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
