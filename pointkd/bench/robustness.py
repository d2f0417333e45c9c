"""``pointkd eval --corruptions``: accuracy under the ModelNet-C corruptions (:mod:`pointkd.data.corruptions`),
per corruption and level, and the benchmark's summary scores.

Every corrupted cloud (256 to 1,524 points) goes through :func:`pointkd.data.resample.prepare_cloud`, exactly as a
served upload does (normalised on the whole cloud, then a seeded subset or repeats to the model's ``N``, with the
same optional outlier filter). The official ModelNet-C evaluation feeds each cloud to DGCNN at its own size and
without re-normalising; this one measures the served contract instead (e.g. a 256-point ``dropout_global`` cloud
reaches a 1024-point model with every point four times, so a kNN row holds about k / 4 distinct points, and
exact ties wherever the copies do not divide k; ``benchmarks/results/knn_ties.md`` measured that the ties change no
prediction and that the repeat scores as the cloud fed at its own size with k scaled).

Scores (Ren, Pan, Liu 2022, with ``OA_c`` the mean OA over the 5 levels of corruption ``c``, 7 corruptions):

* ``mOA = mean_c OA_c``;
* ``CE_c = (1 - OA_c) / (1 - OA_c^ref)``, ``mCE = mean_c CE_c`` (the reference scores 1.000);
* ``RCE_c = (OA_clean - OA_c) / (OA_clean^ref - OA_c^ref)``, ``RmCE = mean_c RCE_c`` (the accuracy a model loses,
  relative to what the reference loses).

The reference is the published DGCNN (:data:`DGCNN_OA`) or any other model's measured figures (e.g. the project's
own teacher, read from its ``robustness.json``). The official script rounds each ``OA_c``, ``CE_c`` and ``RCE_c`` to
3 decimals before averaging; these are unrounded (the two differ by at most ~0.001).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.corruptions import CORRUPTION_NAMES, LEVELS, corrupt_split
from ..data.outliers import outlier_filter
from ..data.resample import prepare_cloud

Runner = Callable[[np.ndarray], np.ndarray]  # [B, N, 3] float32 -> logits [B, C]

DGCNN_OA: dict[str, float] = {
    "clean": 0.926,
    "scale": 0.906,
    "jitter": 0.684,
    "rotate": 0.785,
    "dropout_global": 0.752,
    "dropout_local": 0.793,
    "add_global": 0.705,
    "add_local": 0.725,
}
"""The published DGCNN OA on ModelNet-C (clean, and each corruption's mean over its 5 levels): mCE's reference."""

PUBLISHED_MCE: dict[str, float] = {"DGCNN": 1.000, "PointWOLF-DGCNN": 0.814, "WOLFMix-DGCNN": 0.590}
"""Published mCE on the official ModelNet-C files (Ren, Pan, Liu 2022), for the tables."""


def scores(clean: float, oa: dict[str, Sequence[float]], reference: dict[str, float] = DGCNN_OA) -> dict[str, Any]:
    """The summary of one model: ``clean`` OA and ``oa[c]`` its OA at each level of each corruption ``c`` (all 7)
    against ``reference`` (``clean`` and one OA per corruption): per corruption ``oa`` (mean over the levels),
    ``ce`` and ``rce``, and ``mOA``, ``mCE``, ``RmCE`` (see the module docstring)."""
    missing = [c for c in CORRUPTION_NAMES if c not in oa]
    if missing:
        raise ValueError(f"scores need every corruption; missing {missing}")
    per: dict[str, dict[str, float]] = {}
    for c in CORRUPTION_NAMES:
        mean = float(np.mean(oa[c]))
        per[c] = {
            "oa": mean,
            "ce": (1.0 - mean) / (1.0 - reference[c]),
            "rce": (clean - mean) / (reference["clean"] - reference[c]),
        }
    return {
        "corruptions": per,
        "mOA": float(np.mean([v["oa"] for v in per.values()])),
        "mCE": float(np.mean([v["ce"] for v in per.values()])),
        "RmCE": float(np.mean([v["rce"] for v in per.values()])),
    }


def reference_from(result: dict[str, Any]) -> dict[str, float]:
    """A reference for :func:`scores` from another model's :func:`evaluate_corruptions` result: its clean OA and
    its mean OA per corruption."""
    return {"clean": result["clean_oa"], **{c: float(np.mean(result["oa"][c])) for c in CORRUPTION_NAMES}}


def sample_indices(total: int, samples: int | None, seed: int) -> np.ndarray:
    """The sorted split indices ``[M]`` to evaluate: all ``total`` when ``samples`` is None or not below it, else a
    seeded uniformly random ``samples`` of them (the same for every model, given the seed)."""
    if samples is None or samples >= total:
        return np.arange(total)
    if samples < 1:
        raise ValueError(f"the number of clouds must be positive, got {samples}")
    return np.sort(np.random.default_rng([seed, 31]).choice(total, samples, replace=False))


def _accuracy(run: Runner, clouds: list[np.ndarray], labels: np.ndarray, num_points: int, prep: dict, batch: int):
    prepared = np.stack([prepare_cloud(c, num_points, **prep) for c in clouds])
    pred = np.concatenate([run(prepared[i : i + batch]).argmax(-1) for i in range(0, len(prepared), batch)])
    return float((pred == labels).mean()), pred


def evaluate_corruptions(
    run: Runner,
    clouds: np.ndarray,
    labels: np.ndarray,
    num_points: int,
    indices: np.ndarray | None = None,
    seed: int = 0,
    outliers: str = "none",
    batch_size: int = 32,
    corruptions: Sequence[str] = CORRUPTION_NAMES,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """OA of ``run`` on the clean clouds ``[M, P, 3]`` (labels ``[M]``, ``indices`` ``[M]`` their numbers in the
    split, default ``0..M-1``) and on each of ``corruptions`` at each level, every cloud prepared by
    :func:`prepare_cloud` to ``num_points`` with the filter ``outliers``; with :func:`scores` against DGCNN when
    all 7 corruptions ran. Returns a JSON-able dict (``clean_oa``, ``oa[c]`` = 5 OAs, ``points[c]`` = the mean
    input points per level, ``seconds``, ``scores``)."""
    ids = np.arange(len(clouds)) if indices is None else np.asarray(indices)
    labels = np.asarray(labels)
    prep = {"outliers": outlier_filter(outliers)}
    t0 = time.perf_counter()
    clean, clean_pred = _accuracy(run, list(clouds), labels, num_points, prep, batch_size)
    result: dict[str, Any] = {
        "clouds": len(ids),
        "num_points": num_points,
        "seed": seed,
        "outlier_filter": outliers,
        "clean_oa": clean,
        "oa": {},
        "agree_with_clean": {},
        "points": {},
    }
    for c in corruptions:
        result["oa"][c], result["agree_with_clean"][c], result["points"][c] = [], [], []
        for level in range(LEVELS):
            corrupted = corrupt_split(clouds, c, level, ids, seed)
            oa, pred = _accuracy(run, corrupted, labels, num_points, prep, batch_size)
            result["oa"][c].append(oa)
            result["agree_with_clean"][c].append(float((pred == clean_pred).mean()))
            result["points"][c].append(float(np.mean([len(x) for x in corrupted])))
        if log:
            log(f"{c}: OA " + " ".join(f"{v * 100:.1f}" for v in result["oa"][c]) + " %")
    result["seconds"] = time.perf_counter() - t0
    if set(CORRUPTION_NAMES) <= set(result["oa"]):
        result["scores"] = scores(clean, result["oa"])
    return result


def with_reference(result: dict[str, Any], name: str, reference: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``scores_vs[name]``: its scores against another model's result ``reference``."""
    vs = {**result.get("scores_vs", {}), name: scores(result["clean_oa"], result["oa"], reference_from(reference))}
    return {**result, "scores_vs": vs}


def markdown(result: dict[str, Any], title: str) -> str:
    """One model's table: OA per corruption and level, then CE / RCE per corruption, then the summary."""
    lines = [
        f"# {title}",
        "",
        f"{result['clouds']} test clouds (seed {result['seed']}), {result['num_points']} points per model input, "
        f"outlier filter {result['outlier_filter']}; clean OA {result['clean_oa'] * 100:.2f} %. "
        "ModelNet-C corruptions regenerated by pointkd.data.corruptions (not the official files).",
        "",
        "| corruption | L0 | L1 | L2 | L3 | L4 | mean OA % | CE | RCE | input points (L0..L4) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    sc = result.get("scores", {}).get("corruptions", {})
    for c, levels in result["oa"].items():
        s = sc.get(c)
        pts = ", ".join(f"{p:.0f}" for p in result["points"][c])
        ce, rce = ("–", "–") if s is None else (f"{s['ce']:.3f}", f"{s['rce']:.3f}")
        lines.append(
            f"| {c} | " + " | ".join(f"{v * 100:.1f}" for v in levels) + f" | {np.mean(levels) * 100:.1f} | "
            f"{ce} | {rce} | {pts} |"
        )
    if "scores" in result:
        s = result["scores"]
        lines += ["", f"Against DGCNN: mOA {s['mOA'] * 100:.1f} %, mCE {s['mCE']:.3f}, RmCE {s['RmCE']:.3f}."]
    for name, s in result.get("scores_vs", {}).items():
        lines.append(f"Against {name}: mCE {s['mCE']:.3f}, RmCE {s['RmCE']:.3f}.")
    return "\n".join(lines) + "\n"


def write_robustness(out: str | os.PathLike, result: dict[str, Any], title: str) -> Path:
    """``out/robustness.json`` and ``out/robustness.md``; returns the folder."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "robustness.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "robustness.md").write_text(markdown(result, title))
    return folder
