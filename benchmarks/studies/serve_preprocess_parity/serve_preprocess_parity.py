"""Does a cloud prepared by the server classify as ``pointkd eval`` classifies it? Accuracy only, no timings.

On the test split (real ModelNet40: 2468 clouds of 1024 points) and one checkpoint (default: the shipped student,
``benchmarks/checkpoints/student_lsp.pt``, 512 points), each raw test cloud goes two ways into the same torch model:

* serve: its raw little-endian float32 bytes through the server's parse job (``serving.jobs.prepare_upload``, the
  code a parse worker runs: read, validate, normalise, resample to the model's N);
* eval: ``pointkd eval``'s path (the loaded split, then ``pointkd.train.evaluate.predict``, which reduces each cloud
  to the model's N with ``fixed_subset``), with ``pointkd eval``'s default k (the trained k scaled by the points).

It reports both accuracies, how many predictions differ, how many prepared clouds differ bit for bit and by how much
at most, -> ``serve_preprocess_parity.{json,md}`` beside this script. Batches run in ``--jobs`` forked processes of one
thread each; results are rewritten after every batch (``"clouds"`` says how many are done), so an interrupted run
leaves an honest partial result.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/studies/serve_preprocess_parity/serve_preprocess_parity.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from pathlib import Path

import numpy as np
import torch

from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
from pointkd.data import load_modelnet40
from pointkd.data.transforms import fixed_subset
from pointkd.models.dgcnn import scaled_k
from pointkd.train.evaluate import predict
from serving.jobs import prepare_upload

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/
STUDY = Path(__file__).resolve().parent


def serve_clouds(clouds: np.ndarray, num_points: int, min_points: int) -> np.ndarray:
    """Each raw cloud as the server's parse job prepares a raw float32 ``/predict`` body."""
    meta = {"ctype": "application/octet-stream", "num_points": num_points, "min_points": min_points}
    meta["max_points"] = 1_000_000
    return np.stack([prepare_upload(meta, np.ascontiguousarray(c, dtype="<f4").tobytes())[1] for c in clouds])


WORK: dict = {}  # the model and the split, set before the pool forks


def batch_tally(start: int) -> dict:
    """Both paths on the test clouds ``start : start + batch_size``: counts and the largest input difference."""
    torch.set_num_threads(1)
    w = WORK
    raw, labels = w["x"][start : start + w["batch_size"]], w["y"][start : start + w["batch_size"]]
    served = torch.from_numpy(serve_clouds(raw.numpy(), w["num_points"], w["k"]))
    evaluated = fixed_subset(raw, w["num_points"])  # what predict() feeds the model
    diff = (served - evaluated).abs().amax(dim=(1, 2))
    eval_pred = predict(w["model"], raw, w["num_points"], w["batch_size"]).argmax(-1)
    serve_pred = predict(w["model"], served, w["num_points"], w["batch_size"]).argmax(-1)
    return {
        "clouds": len(labels),
        "eval_correct": int((eval_pred == labels).sum()),
        "serve_correct": int((serve_pred == labels).sum()),
        "differ": int((eval_pred != serve_pred).sum()),
        "bitwise": int((diff > 0).sum()),
        "max_abs": float(diff.max()),
    }


def summary(tally: dict, total: int, meta: dict) -> dict:
    n = tally["clouds"]
    return {
        **meta,
        "clouds": n,
        "complete": n == total,
        "eval_accuracy": tally["eval_correct"] / max(n, 1),
        "serve_accuracy": tally["serve_correct"] / max(n, 1),
        "eval_correct": tally["eval_correct"],
        "serve_correct": tally["serve_correct"],
        "predictions_differ": tally["differ"],
        "prepared_clouds_differ_bitwise": tally["bitwise"],
        "prepared_max_abs_difference": tally["max_abs"],
    }


def markdown(r: dict) -> str:
    state = "complete" if r["complete"] else f"PARTIAL: {r['clouds']} of {r['test_clouds']} clouds"
    return "\n".join(
        [
            "# Server preprocessing vs `pointkd eval`: same predictions?",
            "",
            f"`{r['checkpoint']}` ({r['num_points']} points, k {r['k']}) on {r['data']} ({state}); torch on the CPU,"
            " one thread. Serve: each raw test cloud's float32 bytes through the server's parse job"
            " (`serving.jobs.prepare_upload`); eval: `pointkd.train.evaluate.predict` on the loaded split.",
            "",
            "| path | correct | accuracy |",
            "| --- | ---: | ---: |",
            f"| eval | {r['eval_correct']} / {r['clouds']} | {r['eval_accuracy'] * 100:.2f} % |",
            f"| serve | {r['serve_correct']} / {r['clouds']} | {r['serve_accuracy'] * 100:.2f} % |",
            "",
            f"- predictions that differ: **{r['predictions_differ']}** of {r['clouds']}",
            f"- prepared clouds that differ bit for bit: {r['prepared_clouds_differ_bitwise']}"
            f" (largest difference {r['prepared_max_abs_difference']:.3g})",
            "",
            "Command: `OMP_NUM_THREADS=1 nice -n 19 python "
            "benchmarks/studies/serve_preprocess_parity/serve_preprocess_parity.py`",
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "student_lsp.pt"))
    ap.add_argument("--data", default=None, help="ModelNet40 source (default: the shared real copy)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=0, help="only the first N test clouds (0: all)")
    ap.add_argument("--jobs", type=int, default=3, help="worker processes, one thread each (default 3)")
    ap.add_argument("--out", default=str(STUDY / "serve_preprocess_parity"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    ckpt = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt).eval()
    num_points = int(ckpt.get("num_points") or 1024)
    k = scaled_k(int(ckpt["model_config"]["k"]), num_points, num_points)  # pointkd eval's --k auto at its N
    model.set_k(k)
    data = load_modelnet40(args.data, num_points=num_points)
    x, y = data.test_x, data.test_y
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    meta = {"checkpoint": Path(args.checkpoint).name, "data": Path(data.source).name, "test_clouds": len(y)}
    meta.update({"raw_points": int(x.shape[1]), "num_points": num_points, "k": k})
    tally = {"clouds": 0, "eval_correct": 0, "serve_correct": 0, "differ": 0, "bitwise": 0, "max_abs": 0.0}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    WORK.update(model=model, x=x, y=y, num_points=num_points, k=k, batch_size=args.batch_size)
    starts = range(0, len(y), args.batch_size)
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:  # children inherit the nice level
        for part in pool.imap_unordered(batch_tally, starts):
            tally = {key: max(v, part[key]) if key == "max_abs" else v + part[key] for key, v in tally.items()}
            result = summary(tally, len(y), meta)
            out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
            out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
