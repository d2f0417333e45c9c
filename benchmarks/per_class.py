"""Per-class accuracy of the served student against its teacher on the whole ModelNet40 test split.

Mean class accuracy is where the student trails the teacher most (issue #29): this table shows which classes carry
the gap. Each checkpoint is evaluated at ``--points`` test points with k scaled from its training points (as
``pointkd eval --k auto``); a row per class gives its test clouds, each model's accuracy and the difference, the
rows sorted by that difference (the student's worst classes first). With 4 to 100 test clouds a class, one cloud
is 1 to 25 points of a class's accuracy: read small classes as counts, which the table also gives.

Run: ``python benchmarks/per_class.py --teacher T.pt --student S.pt`` -> ``benchmarks/results/per_class.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from pointkd.checkpoint import load_checkpoint
from pointkd.cli.eval import eval_k, evaluate_checkpoint
from pointkd.demo import SHIPPED
from pointkd.results import per_class_lines

RESULTS = Path(__file__).parent / "results"
CHECKPOINTS = Path(__file__).parent / "checkpoints"


def measure(path: Path, data: str | None, points: int) -> dict:
    ckpt = load_checkpoint(path)
    k = eval_k("auto", ckpt, points)
    report, split = evaluate_checkpoint(ckpt, data, points, k)
    correct = report.confusion.diagonal().tolist()
    return {
        "checkpoint": str(path),
        "k": k,
        "oa": report.oa,
        "macc": report.macc,
        "classes": list(split.classes),
        "support": list(report.support),
        "correct": correct,
    }


def rows(teacher: dict, student: dict) -> list[dict]:
    """One dict per class, sorted by student minus teacher accuracy (ascending), then by name."""
    out = []
    for i, name in enumerate(teacher["classes"]):
        n = teacher["support"][i]
        t, s = teacher["correct"][i], student["correct"][i]
        out.append({"class": name, "clouds": n, "teacher": t, "student": s, "delta": (s - t) / n if n else math.nan})
    return sorted(out, key=lambda r: (r["delta"], r["class"]))


def markdown(result: dict) -> str:
    """The report as Markdown: docs/results.md's per-class rendering (:func:`pointkd.results.per_class_lines`)."""
    lines = ["# Per-class accuracy: served student against its teacher", "", *per_class_lines(result)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=CHECKPOINTS / SHIPPED["teacher"])
    parser.add_argument("--student", type=Path, default=CHECKPOINTS / SHIPPED["student"])
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--data", default=None, help="the data source (default: the shared ModelNet40)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "per_class")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = measure(args.teacher, args.data, args.points)
    student = measure(args.student, args.data, args.points)
    if teacher["classes"] != student["classes"]:
        parser.error("the teacher and the student name different classes")
    result = {"points": args.points, "teacher": teacher, "student": student, "rows": rows(teacher, student)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
