"""Test-time voting for the committed checkpoints: each model's accuracy on the whole ModelNet40 test split with one
pass and with the mean of ``--votes`` anisotropically scaled copies (issue #29: voting is reported as its own
column, never as a model's headline).

Each checkpoint is evaluated at ``--points`` test points with k scaled from its training points (as ``pointkd eval
--k auto``); vote 0 is the cloud itself (:func:`pointkd.train.evaluate.vote_scales`), so the single-pass and the
voting figures come from the same weights and the same passes. Checkpoints: the shipped teacher and served student
and every campaign ship (``benchmarks/checkpoints/campaign2/*.pt``, the slimmed ``*_g02`` copies left out), or
``--checkpoint`` paths. The result file is written after each checkpoint and a checkpoint whose weights are already
in it is skipped, so an interrupted run resumes and a re-run measures only what is new.

Run (nothing else on the cores; a student ~3 min, a teacher ~12 min at 10 votes on 2 cores):
``python benchmarks/voting.py`` -> ``benchmarks/results/voting.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pointkd.checkpoint import CheckpointError, load_checkpoint, state_sha256
from pointkd.cli.eval import eval_model
from pointkd.data import load_modelnet40
from pointkd.demo import SHIPPED
from pointkd.process import reexec_with_jemalloc
from pointkd.results import repo_path, voting_table
from pointkd.train.evaluate import predict_votes
from pointkd.train.metrics import ClassificationReport

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
CHECKPOINTS = Path(__file__).parent / "checkpoints"


def default_checkpoints() -> list[Path]:
    ships = sorted(p for p in (CHECKPOINTS / "campaign2").glob("*.pt") if not p.stem.endswith("_g02"))
    return [CHECKPOINTS / SHIPPED["teacher"], CHECKPOINTS / SHIPPED["student"], *ships]


def metrics(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    report = ClassificationReport.from_predictions(pred, labels, num_classes)
    return {"oa": report.oa, "macc": report.macc}


def measure(path: Path, ckpt: dict, sha: str, splits, points: int, votes: int, batch_size: int) -> dict:
    """The checkpoint ``ckpt`` (read from ``path``, weights ``sha``): its single-pass and ``votes``-vote accuracy."""
    model = eval_model(ckpt, points)
    start = time.perf_counter()
    probs = predict_votes(model, splits.test_x, points, votes, batch_size)
    return {
        "checkpoint": repo_path(path, ROOT),
        "run": path.stem,
        "model": ckpt.get("model_name"),
        "sha256": sha,
        "k": model.config.k,
        "single": metrics(probs[0].argmax(-1), splits.test_y, splits.num_classes),
        "voting": metrics(probs.mean(0).argmax(-1), splits.test_y, splits.num_classes),
        "seconds": round(time.perf_counter() - start, 1),
    }


def markdown(result: dict) -> str:
    v = result["votes"]
    lines = [
        "# Test-time voting",
        "",
        f"Whole ModelNet40 test split at {result['points']} points, k scaled from each model's training points; "
        f"single pass against the mean probability of {v} copies (copy 0 the cloud, the rest scaled per axis by "
        "0.85-1.15, seeded). OA and mAcc in %. Voting is its own column, never a headline.",
        "",
        *voting_table(result),
    ]
    lines += ["", "Command: `python benchmarks/voting.py`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, action="append", default=None, help="repeatable (default: all)")
    parser.add_argument("--votes", type=int, default=10)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=None, help="the data source (default: the shared ModelNet40)")
    parser.add_argument("--out", type=Path, default=RESULTS / "voting")
    args = parser.parse_args(argv)
    if args.votes < 2:
        parser.error(f"--votes must be at least 2 (1 is the single pass), got {args.votes}")
    paths = args.checkpoint or default_checkpoints()
    for p in paths:
        if not p.is_file():
            parser.error(f"no checkpoint {p}")
    out_json = args.out.with_suffix(".json")
    settings = {"votes": args.votes, "points": args.points}
    old = json.loads(out_json.read_text()) if out_json.is_file() else {}
    rows = old.get("rows", []) if {k: old.get(k) for k in settings} == settings else []
    splits = load_modelnet40(args.data, num_points=args.points)
    for i, path in enumerate(paths, 1):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            parser.error(str(e))
        sha = state_sha256(ckpt["state_dict"])
        if any(r["sha256"] == sha for r in rows):
            print(f"[{i}/{len(paths)}] {path.name}: already measured")
            continue
        if list(ckpt["classes"]) != list(splits.classes):
            parser.error(f"{path}: its classes are not the data's")
        row = measure(path, ckpt, sha, splits, args.points, args.votes, args.batch_size)
        rows = [r for r in rows if r["run"] != row["run"]] + [row]
        s, v = row["single"], row["voting"]
        print(
            f"[{i}/{len(paths)}] {path.name}: OA {s['oa'] * 100:.2f} -> {v['oa'] * 100:.2f} with {args.votes} votes, "
            f"mAcc {s['macc'] * 100:.2f} -> {v['macc'] * 100:.2f} ({row['seconds']} s)",
            flush=True,
        )
        result = {**settings, "rows": sorted(rows, key=lambda r: r["run"])}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {out_json} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    reexec_with_jemalloc()  # as `pointkd train` does (here, not in main(): the tests call main() in-process)
    raise SystemExit(main())
