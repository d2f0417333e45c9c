"""What the repeated points of a short corrupted cloud do to the served student (issue #31).

``dropout_global`` (768 to 256 points) and ``dropout_local`` (924 to 524) clouds reach a 1024-point model through
:func:`pointkd.data.resample.prepare_cloud`, which repeats every point in order (``i % P'``) up to 1024: a point
and its copies are at distance 0 from each other, and each neighbour's copies are at one distance from every
point, so kNN rows have exact ties. A row is **tied** when its ``k``-th and ``(k+1)``-th smallest squared
distances (the point itself included, as the models' kNN counts it) are equal: its ``k`` nearest are then not one
set, and which copies a backend keeps is the backend's choice (``torch.topk`` and ONNX Runtime's TopK may differ;
``pointkd compile``'s parity check allows exactly that). Measured on the input (xyz) graph, the one every model
builds; the copies have equal features at every layer, so the later graphs tie the same rows.

On the robustness sample (the same 80 seeded test clouds and corruption seeds as ``benchmarks/robustness.py``),
``dropout_global`` by default (``--corruptions dropout_global dropout_local`` for both), for the served 2-graph
student (torch, 1 thread) at each level, OA with three preparations:

* ``repeat``: ``prepare_cloud`` as served (the committed robustness rows);
* ``repeat + 1e-6 jitter``: the same cloud with every repeated copy (rows ``P'`` and on) moved by
  ``1e-6 N(0, I)`` (seeded): no exact ties left, the same duplicated geometry, so it isolates the tie-breaking;
* ``native (k scaled)``: no resampling: the ``P'`` distinct points fed as they are, ``k = round(20 P' / 1024)``
  (:func:`pointkd.models.dgcnn.scaled_k`; the official ModelNet-C evaluation feeds each cloud at its own size).
  Only a torch model takes a variable point count; the served ONNX artifacts are fixed at 1024.

with the share of tied rows and of copied input rows -> ``benchmarks/results/knn_ties.{json,md}``.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/knn_ties.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pointkd.bench.robustness import sample_indices
from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
from pointkd.data import load_modelnet40, normalize_unit_sphere, prepare_cloud
from pointkd.data.corruptions import LEVELS, corrupt_split
from pointkd.models.dgcnn import scaled_k

ROOT = Path(__file__).resolve().parent
MODEL = "student_lsp_tail1024_g02.pt"
CORRUPTIONS = ("dropout_global", "dropout_local")  # the corruptions that shorten a cloud below 1024 points
PREPS = ("repeat", "repeat + 1e-6 jitter", "native (k scaled)")


def tied_rows(cloud: np.ndarray, k: int) -> float:
    """The share of rows of ``cloud`` ``[N, 3]`` whose ``k``-th and ``(k+1)``-th smallest squared distances are
    equal (the point itself counted, at 0)."""
    x = cloud.astype(np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    part = np.partition(d, (k - 1, k), axis=1)
    return float((part[:, k - 1] == part[:, k]).mean())


def distinct_neighbours(cloud: np.ndarray, k: int) -> float:
    """The mean number of distinct points (as coordinates) among each row's ``k`` nearest rows of ``cloud``
    ``[N, 3]`` (the row itself included; ties broken by row order): ``k`` without copies, about ``k / r`` when every
    point is there ``r`` times."""
    x = cloud.astype(np.float64)
    _, ids = np.unique(cloud, axis=0, return_inverse=True)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    nearest = ids.reshape(-1)[np.argsort(d, axis=1, kind="stable")[:, :k]]
    return float(np.mean([np.unique(r).size for r in nearest]))


def jitter_copies(cloud: np.ndarray, distinct: int, seed: int) -> np.ndarray:
    """``cloud`` ``[N, 3]`` with rows ``distinct`` and on (the repeats) moved by ``1e-6 N(0, I)``."""
    out = cloud.astype(np.float32, copy=True)
    rng = np.random.default_rng([seed, 6])
    out[distinct:] += (1e-6 * rng.standard_normal(out[distinct:].shape)).astype(np.float32)
    return out


def measure(args: argparse.Namespace) -> dict:
    data = load_modelnet40(args.data)
    idx = sample_indices(len(data.test_y), args.samples, args.seed)
    x, y = data.test_x.numpy()[idx], data.test_y.numpy()[idx]
    ckpt = load_checkpoint(ROOT / "checkpoints" / MODEL)
    n = int(ckpt.get("num_points") or 1024)
    k0 = int(ckpt["model_config"]["k"])
    model = model_from_checkpoint(ckpt).float().eval()

    def predict(batch: np.ndarray, k: int) -> np.ndarray:
        model.set_k(k)
        with torch.inference_mode():
            return np.concatenate(
                [model(torch.from_numpy(batch[i : i + 32])).argmax(-1).numpy() for i in range(0, len(batch), 32)]
            )

    rows = []
    cases = [("clean", 0, list(x))] + [
        (c, lv, corrupt_split(x, c, lv, idx, args.seed)) for c in args.corruptions for lv in range(LEVELS)
    ]
    for name, level, clouds in cases:
        t0 = time.perf_counter()
        sizes = {len(c) for c in clouds}
        (p,) = sizes  # each of these corruptions gives every cloud one size at a level
        served = np.stack([prepare_cloud(c, n) for c in clouds])
        jittered = np.stack([jitter_copies(s, min(p, n), int(i)) for s, i in zip(served, idx, strict=True)])
        native = np.stack([normalize_unit_sphere(c) for c in clouds])
        k_native = scaled_k(k0, n, p)
        oa = {
            "repeat": float((predict(served, k0) == y).mean()),
            "repeat + 1e-6 jitter": float((predict(jittered, k0) == y).mean()),
            "native (k scaled)": float((predict(native, k_native) == y).mean()),
        }
        row = {
            "corruption": name,
            "level": level,
            "points": p,
            "k_native": k_native,
            "copied_rows": max(0, n - p) / n,
            "tied_rows": float(np.mean([tied_rows(s, k0) for s in served])),
            "tied_rows_jittered": float(np.mean([tied_rows(s, k0) for s in jittered])),
            "clouds_with_ties": float(np.mean([tied_rows(s, k0) > 0 for s in served])),
            "distinct_in_k": float(np.mean([distinct_neighbours(s, k0) for s in served])),
            "oa": oa,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(
            f"{name} L{level} ({p} points): tied rows {row['tied_rows'] * 100:.1f} %, OA "
            + ", ".join(f"{k} {v * 100:.1f}" for k, v in oa.items()),
            flush=True,
        )
    return {
        "model": MODEL,
        "corruptions": list(args.corruptions),
        "clouds": len(idx),
        "seed": args.seed,
        "k": k0,
        "num_points": n,
        "rows": rows,
    }


def markdown(r: dict) -> str:
    lines = [
        "# kNN ties from repeated points: the served student on short corrupted clouds",
        "",
        f"`{r['model']}` (torch, k {r['k']}, {r['num_points']} points), the {r['clouds']} seeded test clouds of "
        "benchmarks/results/robustness.md (seed "
        f"{r['seed']}). Tied rows: input-graph rows whose k-th and (k+1)-th nearest distances are equal (its k "
        "nearest are not one set). Distinct in k: distinct points among a row's k nearest. OA % with the served "
        "repeat, the repeats jittered by 1e-6, and the cloud fed at its own size with k scaled.",
        "",
        "| corruption | level | points | copied rows % | tied rows % | clouds with ties % | tied rows after jitter % | "
        "distinct in k | " + " | ".join(f"OA {p} %" for p in PREPS) + " | k native |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in PREPS) + " | ---: |",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['corruption']} | {row['level']} | {row['points']} | {row['copied_rows'] * 100:.1f} | "
            f"{row['tied_rows'] * 100:.1f} | {row['clouds_with_ties'] * 100:.0f} | "
            f"{row['tied_rows_jittered'] * 100:.1f} | {row['distinct_in_k']:.1f} | "
            + " | ".join(f"{row['oa'][p] * 100:.1f}" for p in PREPS)
            + f" | {row['k_native']} |"
        )
    for c in r["corruptions"]:
        rs = [row for row in r["rows"] if row["corruption"] == c]
        means = {p: np.mean([row["oa"][p] for row in rs]) * 100 for p in PREPS}
        lines.append(f"| {c} | mean | – | – | – | – | – | " + " | ".join(f"{means[p]:.1f}" for p in PREPS) + " | – |")
    lines += ["", "Command: `OMP_NUM_THREADS=1 nice -n 19 python benchmarks/knn_ties.py`", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--samples", type=int, default=80, help="test clouds in the seeded sample (as robustness.py)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corruptions", nargs="+", default=["dropout_global"], choices=CORRUPTIONS)
    ap.add_argument("--out", default=str(ROOT / "results" / "knn_ties"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = measure(args)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
