"""``pointkd data info``: what a ModelNet40 source holds, and checks that it is what training expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..hashing import sha256_file
from .modelnet40 import SHARED_NPZ_SHA256, detect_format, load_modelnet40, resolve_data_path
from .splits import PointCloudSplits


def data_report(source: str | None, num_points: int = 1024) -> dict[str, Any]:
    """Load ``source`` and report counts per class and split, plus a list of named checks."""
    path = resolve_data_path(source)
    report: dict[str, Any] = {"source": str(path)}
    if isinstance(path, Path):
        report["format"] = detect_format(path)
        if path.is_file():
            digest = sha256_file(path)
            report["sha256"] = digest
            report["is_shared_copy"] = digest == SHARED_NPZ_SHA256
    else:
        report["format"] = str(path)
    data = load_modelnet40(source, num_points=num_points)
    report["classes"] = list(data.classes)
    report["points_per_cloud"] = data.num_points
    report["counts"] = {s: data.class_counts(s) for s in ("train", "test")}
    report["checks"] = run_checks(data)
    report["ok"] = all(c["ok"] for c in report["checks"])
    return report


def run_checks(data: PointCloudSplits) -> list[dict[str, Any]]:
    checks = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    for split in ("train", "test"):
        x, _ = data.split(split)
        finite = bool(torch.isfinite(x).all())
        check(f"{split}: finite", finite, "no NaN/Inf" if finite else "NaN or Inf present")
        centroid = float(x.mean(1).norm(dim=-1).max()) if len(x) else 0.0
        check(f"{split}: centred", centroid < 1e-3, f"max |centroid| = {centroid:.2e}")
        radius = x.norm(dim=-1).amax(1) if len(x) else torch.ones(1)
        check(
            f"{split}: unit sphere",
            bool(((radius - 1).abs() < 1e-3).all()),
            f"max norm per cloud in [{float(radius.min()):.4f}, {float(radius.max()):.4f}]",
        )
        empty = [c for c, n in data.class_counts(split).items() if n == 0]
        check(
            f"{split}: every class present",
            not empty,
            f"missing: {empty}" if empty else f"{data.num_classes} classes",
        )
    if data.train_names and data.test_names:
        overlap = set(data.train_names) & set(data.test_names)
        check(
            "splits disjoint",
            not overlap,
            f"{len(overlap)} ids in both splits" if overlap else "no shared object id",
        )
    return checks


def format_data_report(report: dict[str, Any]) -> str:
    lines = [f"source: {report['source']}  (format: {report['format']})"]
    if "sha256" in report:
        tag = "the shared real ModelNet40 copy" if report["is_shared_copy"] else "not the known shared copy"
        lines.append(f"sha256: {report['sha256']}  ({tag})")
    train, test = report["counts"]["train"], report["counts"]["test"]
    lines.append(f"{len(report['classes'])} classes, {report['points_per_cloud']} points per cloud")
    lines.append(f"{'class':<16} {'train':>6} {'test':>6}")
    for c in report["classes"]:
        lines.append(f"{c:<16} {train[c]:>6} {test[c]:>6}")
    lines.append(f"{'total':<16} {sum(train.values()):>6} {sum(test.values()):>6}")
    lines.append("checks:")
    for c in report["checks"]:
        lines.append(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}")
    lines.append("all checks passed" if report["ok"] else "SOME CHECKS FAILED")
    return "\n".join(lines)
