"""Is an ensemble of the committed teachers a stronger teacher for distillation's logit term (issue #29's candidate
lever "a stronger teacher (an ensemble of the teacher's checkpoints)")?

Each ``--checkpoint`` teacher classifies the whole ModelNet40 test split in one pass at ``--points`` (k scaled from
its training points, as ``pointkd eval --k auto``); the ensemble's prediction is the mean of their class
probabilities. For each member and the ensemble:

* OA and mAcc (what the teacher bar reads),
* the mean negative log-likelihood of the true class, ``-log p(y | x)``, and the mean probability of the true class:
  what a soft target carries for the logit term, where an ensemble can be better calibrated without classifying
  better.

Between the members: the share of clouds on which they all predict the same class, and the "any member right"
share (an upper bound on what combining them can reach). An ensemble only helps where the members disagree.

Run (nothing else on the cores; ~35 s a teacher on 2 cores):
``python benchmarks/studies/teacher_ensemble/teacher_ensemble.py`` -> ``teacher_ensemble.{json,md}`` beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from pointkd.checkpoint import CheckpointError, load_checkpoint
from pointkd.cli.eval import eval_model
from pointkd.data import load_modelnet40
from pointkd.demo import SHIPPED_DIR
from pointkd.process import reexec_with_jemalloc
from pointkd.results import repo_path
from pointkd.train.evaluate import predict
from pointkd.train.metrics import ClassificationReport

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
# The two independent lineages: k scaling (512 -> 1024 points, restarted tails) and 1024 points, k 20 from the start.
DEFAULT = [SHIPPED_DIR / "teacher_tail1024b.pt", SHIPPED_DIR / "campaign2" / "teacher1024_scratch.pt"]


def scores(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """OA, mAcc, mean NLL and mean true-class probability of class probabilities ``probs`` ``[M, C]``."""
    report = ClassificationReport.from_predictions(probs.argmax(-1), labels, num_classes)
    true_p = probs.gather(1, labels[:, None]).squeeze(1)
    return {
        "oa": report.oa,
        "macc": report.macc,
        "nll": float(-true_p.clamp_min(1e-12).log().mean()),
        "p_true": float(true_p.mean()),
    }


def agreement(probs: list[torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """The share of clouds all members classify alike, and the share at least one member gets right."""
    preds = torch.stack([p.argmax(-1) for p in probs])
    return {
        "all_agree": float((preds == preds[0]).all(0).float().mean()),
        "any_right": float((preds == labels).any(0).float().mean()),
    }


def measure(paths: list[Path], ckpts: list[dict], splits, points: int, batch_size: int) -> dict:
    """Every member's single-pass scores, the mean-probability ensemble's and the members' agreement."""
    probs, members = [], []
    for path, ckpt in zip(paths, ckpts, strict=True):
        model = eval_model(ckpt, points)
        start = time.perf_counter()
        p = predict(model, splits.test_x, points, batch_size).softmax(-1)
        probs.append(p)
        row = {"checkpoint": repo_path(path, ROOT), "k": model.config.k, **scores(p, splits.test_y, splits.num_classes)}
        members.append({**row, "seconds": round(time.perf_counter() - start, 1)})
        print(f"{path.name}: OA {row['oa'] * 100:.2f} / mAcc {row['macc'] * 100:.2f}, NLL {row['nll']:.3f}", flush=True)
    return {
        "points": points,
        "members": members,
        "ensemble": scores(torch.stack(probs).mean(0), splits.test_y, splits.num_classes),
        "agreement": agreement(probs, splits.test_y),
    }


def markdown(result: dict) -> str:
    def row(name: str, s: dict) -> str:
        return f"| {name} | {s['oa'] * 100:.2f} | {s['macc'] * 100:.2f} | {s['nll']:.3f} | {s['p_true']:.3f} |"

    a = result["agreement"]
    lines = [
        "# Teacher ensemble",
        "",
        f"Whole ModelNet40 test split, one pass at {result['points']} points (k auto); the ensemble is the mean of the "
        "members' class probabilities. OA and mAcc in %; NLL and p(true) are means over the test clouds.",
        "",
        "| teacher | OA | mAcc | NLL | p(true) |",
        "|---|---|---|---|---|",
        *[row(f"`{Path(m['checkpoint']).stem}` (k {m['k']})", m) for m in result["members"]],
        row(f"ensemble of {len(result['members'])}", result["ensemble"]),
        "",
        f"The members classify {a['all_agree'] * 100:.2f} % of the clouds alike; at least one is right on "
        f"{a['any_right'] * 100:.2f} %.",
        "",
        "Command: `python benchmarks/studies/teacher_ensemble/teacher_ensemble.py`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=None,
        help="a teacher, repeatable, at least two (default: teacher_tail1024b and teacher1024_scratch)",
    )
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=None, help="the data source (default: the shared ModelNet40)")
    parser.add_argument("--out", type=Path, default=HERE / "teacher_ensemble", help="result stem (.json and .md)")
    args = parser.parse_args(argv)
    paths = args.checkpoint or DEFAULT
    if len(paths) < 2:
        parser.error("an ensemble needs at least two --checkpoint teachers")
    ckpts = []
    for p in paths:
        if not p.is_file():
            parser.error(f"no checkpoint {p}")
        try:
            ckpts.append(load_checkpoint(p))
        except CheckpointError as e:
            parser.error(str(e))
    splits = load_modelnet40(args.data, num_points=args.points)
    for p, ckpt in zip(paths, ckpts, strict=True):
        if list(ckpt["classes"]) != list(splits.classes):
            parser.error(f"{p}: its classes are not the data's")
    result = measure(paths, ckpts, splits, args.points, args.batch_size)
    e = result["ensemble"]
    print(f"ensemble: OA {e['oa'] * 100:.2f} / mAcc {e['macc'] * 100:.2f}, NLL {e['nll']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    reexec_with_jemalloc()  # as `pointkd train` does (here, not in main(): the tests call main() in-process)
    raise SystemExit(main())
