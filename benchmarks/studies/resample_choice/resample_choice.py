"""Which resampling should the server, ``pointkd eval`` and ``pointkd compile`` share? Measured on the test split.

A 1024-point test cloud reaches a 512-point model through one resampling. Two candidates:

* ``random``: :func:`pointkd.data.resample.resample`, a seeded random subset of the distinct points (what the
  models saw in training: :class:`pointkd.data.transforms.TrainAugment` draws random subsets), seeds 0, 1, 2;
* ``fps``: farthest-point sampling (open3d's ``farthest_point_down_sample``, from the first point), an evenly
  spread subset, which the server used before it shared ``resample`` with evaluation.

For each committed checkpoint it reports the test-split OA and mAcc of each option (same model, same k), the
prediction agreement with ``random`` seed 0, and the median cost of preparing one cloud (interleaved, same run;
the cost is a ratio on a shared machine, not a latency claim) -> ``resample_choice.{json,md}`` beside this script.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/studies/resample_choice/resample_choice.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import torch

from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
from pointkd.data import load_modelnet40
from pointkd.data.resample import resample
from pointkd.models.dgcnn import scaled_k

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/
STUDY = Path(__file__).resolve().parent
CHECKPOINTS = ("student_lsp.pt", "teacher_short.pt")
RANDOM_SEEDS = (0, 1, 2)


def fps(cloud: np.ndarray, num_points: int) -> np.ndarray:
    """Farthest-point sampling of ``cloud`` ``[P, 3]`` to ``[num_points, 3]`` float32 (open3d, start index 0)."""
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.astype(np.float64)))
    return np.asarray(pcd.farthest_point_down_sample(num_points).points, dtype=np.float32)


def options(num_points: int) -> dict:
    """Name -> ``f(cloud [P, 3]) -> [num_points, 3]`` for every candidate."""
    out = {f"random (seed {s})": (lambda c, s=s: resample(c, num_points, s)) for s in RANDOM_SEEDS}
    out["fps"] = lambda c: fps(c, num_points)
    return out


def scores(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Overall accuracy and mean per-class accuracy, in %."""
    per_class = [float((pred[labels == c] == c).mean()) for c in range(num_classes) if (labels == c).any()]
    return float((pred == labels).mean()) * 100, float(np.mean(per_class)) * 100


def prep_cost_ms(opts: dict, clouds: np.ndarray, rounds: int) -> dict:
    """Median ms to prepare one cloud with each option, the options interleaved cloud by cloud."""
    times: dict[str, list[float]] = {name: [] for name in opts}
    for _ in range(rounds):
        for cloud in clouds:
            for name, f in opts.items():
                t = time.perf_counter()
                f(cloud)
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) * 1000 for name, t in times.items()}


@torch.inference_mode()
def evaluate(path: Path, x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int) -> dict:
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt).eval()
    num_points = int(ckpt.get("num_points") or 1024)
    k = scaled_k(int(ckpt["model_config"]["k"]), num_points, num_points)
    model.set_k(k)
    rows, preds = [], {}
    for name, f in options(num_points).items():
        prepared = torch.from_numpy(np.stack([f(c) for c in x]))
        logits = [model(prepared[i : i + batch_size]) for i in range(0, len(prepared), batch_size)]
        preds[name] = torch.cat(logits).argmax(-1).numpy()
        oa, macc = scores(preds[name], y, num_classes)
        rows.append({"option": name, "oa": oa, "macc": macc})
        print(f"{path.name}: {name}: OA {oa:.2f} %, mAcc {macc:.2f} %", flush=True)
    ref = preds[f"random (seed {RANDOM_SEEDS[0]})"]
    for row in rows:
        row["agree_with_random_seed0"] = float((preds[row["option"]] == ref).mean()) * 100
    return {"checkpoint": path.name, "num_points": num_points, "k": k, "rows": rows}


def verdict(models: list[dict]) -> dict:
    """Per model: the random options' mean OA and spread, FPS's OA, and FPS minus the random mean."""
    out = {}
    for m in models:
        rand = [r["oa"] for r in m["rows"] if r["option"].startswith("random")]
        f = next(r["oa"] for r in m["rows"] if r["option"] == "fps")
        out[m["checkpoint"]] = {
            "random_mean_oa": float(np.mean(rand)),
            "random_spread_oa": float(max(rand) - min(rand)),
            "fps_oa": f,
            "fps_minus_random_mean": f - float(np.mean(rand)),
        }
    return out


def markdown(r: dict) -> str:
    lines = [
        "# Resampling a test cloud to the model's N: random subset or farthest-point sampling?",
        "",
        f"Test split of {r['data']} ({r['test_clouds']} clouds of {r['raw_points']} points), torch on the CPU.",
        "",
        "| checkpoint | N | k | option | OA % | mAcc % | agree with random seed 0 % |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for m in r["models"]:
        for row in m["rows"]:
            lines.append(
                f"| {m['checkpoint']} | {m['num_points']} | {m['k']} | {row['option']} | {row['oa']:.2f} | "
                f"{row['macc']:.2f} | {row['agree_with_random_seed0']:.2f} |"
            )
    lines += [
        "",
        "| checkpoint | random: mean OA (spread over seeds) | FPS OA | FPS − random mean |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, v in r["verdict"].items():
        lines.append(
            f"| {name} | {v['random_mean_oa']:.2f} ({v['random_spread_oa']:.2f}) | {v['fps_oa']:.2f} | "
            f"{v['fps_minus_random_mean']:+.2f} |"
        )
    cost = r["prep_cost_ms"]
    lines += [
        "",
        "Median cost of preparing one cloud (same run, interleaved; shared machine, a ratio only): "
        + ", ".join(f"{name} {ms:.3f} ms" for name, ms in cost.items())
        + ".",
        "",
        "Command: `OMP_NUM_THREADS=1 nice -n 19 python benchmarks/studies/resample_choice/resample_choice.py`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", nargs="+", default=[str(ROOT / "checkpoints" / c) for c in CHECKPOINTS])
    ap.add_argument("--data", default=None, help="ModelNet40 source (default: the shared real copy)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=0, help="only the first N test clouds (0: all)")
    ap.add_argument("--cost-clouds", type=int, default=100, help="clouds timed per option for the cost column")
    ap.add_argument("--out", default=str(STUDY / "resample_choice"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_modelnet40(args.data)
    x, y = data.test_x.numpy(), data.test_y.numpy()
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    num_classes = len(data.classes)
    models = [evaluate(Path(p), x, y, num_classes, args.batch_size) for p in args.checkpoints]
    n = models[0]["num_points"]
    result = {
        "data": Path(data.source).name,
        "test_clouds": len(y),
        "raw_points": int(x.shape[1]),
        "models": models,
        "verdict": verdict(models),
        "prep_cost_ms": prep_cost_ms(options(n), x[: args.cost_clouds], rounds=3),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
