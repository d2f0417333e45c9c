"""``pointkd select``: the most accurate benchmarked model whose latency meets a budget, with the reasons.

Among the rows of one report at one thread count (default: the most threads measured), a row is eligible when it
ran and was validated (✅) and its latency metric (default p95 at batch 1) is within the budget. GPU rows have no
thread count and compete at every one; a report of GPU rows only is judged as a whole. The most accurate
eligible row wins; equal OA goes to the lower latency, then the smaller file. Every other row gets the reason it
lost: not validated, over the budget, or less accurate than the winner.

A robustness floor (``max_mce``) also needs each row's ModelNet-C mean corruption error (``pointkd eval
--corruptions`` / ``benchmarks/robustness.py``, read by :func:`mce_index`): a row without one is not eligible,
because a floor that assumes a figure it never measured is no floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report import STATUS, BenchRow

METRICS = ("p50_ms", "p95_ms", "p99_ms")


@dataclass
class Selection:
    chosen: BenchRow | None
    budget_ms: float
    metric: str
    threads: int | None  # None: a report with GPU rows only
    verdicts: list[tuple[BenchRow, str]]  # every row at ``threads``, with "chosen" or why it lost
    max_mce: float | None = None  # the robustness floor, when one was set

    def explain(self) -> str:
        name = self.metric.removesuffix("_ms")
        lines = [
            f"Budget: {name} ≤ {self.budget_ms:g} ms at batch 1"
            + (" (GPU rows)." if self.threads is None else f" with {self.threads} thread(s)."),
            "",
            f"| model | format | status | OA % | {name} ms | size MB | verdict |",
            "| --- | --- | :---: | ---: | ---: | ---: | --- |",
        ]
        for r, verdict in self.verdicts:
            lat = getattr(r, self.metric)
            lines.append(
                f"| {r.model} | {r.format} | {STATUS[r.status]} | "
                f"{'–' if r.oa is None else f'{r.oa * 100:.2f}'} | {'–' if lat is None else f'{lat:.2f}'} | "
                f"{'–' if r.size_mb is None else f'{r.size_mb:.3f}'} | {verdict} |"
            )
        lines.append("")
        if self.chosen is None:
            floor = "" if self.max_mce is None else f" and mCE ≤ {self.max_mce:g}"
            lines.append(f"No validated model meets {name} ≤ {self.budget_ms:g} ms{floor}.")
        else:
            c = self.chosen
            lines.append(
                f"Chosen: {c.model} as {c.format} ({c.model_name or 'model'}): OA {c.oa * 100:.2f} %, "
                f"{name} {getattr(c, self.metric):.2f} ms (budget {self.budget_ms:g} ms)"
                + (f", artifact {c.artifact}" if c.artifact else "")
                + "."
            )
        return "\n".join(lines)


def mce_index(doc: dict[str, Any], outlier_filter: str = "none") -> dict[tuple[str, str], float]:
    """``{(model label, format): mCE}`` from a robustness report's rows measured with ``outlier_filter``; a row
    names a checkpoint (``x.pt``: format torch) or an artifact folder (its ``format`` field)."""
    out = {}
    for row in doc.get("rows") or []:
        if row.get("outlier_filter", "none") != outlier_filter or "mCE" not in (row.get("scores") or {}):
            continue
        name = Path(str(row["model"])).name
        label, fmt = (Path(name).stem, "torch") if name.endswith(".pt") else (row.get("label", name), row.get("format"))
        out[(label, fmt)] = float(row["scores"]["mCE"])
    return out


def _robust(rows: list[BenchRow], mce: dict[tuple[str, str], float], max_mce: float) -> dict[int, str]:
    """``{id(row): why it misses the floor}`` for the rows that do."""
    out = {}
    for r in rows:
        value = mce.get((r.model, r.format))
        if value is None:
            out[id(r)] = "no robustness figure (pointkd eval --corruptions)"
        elif value > max_mce:
            out[id(r)] = f"under the robustness floor (mCE {value:.3f} > {max_mce:g})"
    return out


def select_model(
    rows: list[BenchRow],
    budget_ms: float,
    metric: str = "p95_ms",
    threads: int | None = None,
    models: list[str] | None = None,
    mce: dict[tuple[str, str], float] | None = None,
    max_mce: float | None = None,
) -> Selection:
    """See the module docstring; ``models`` keeps only the rows of these model labels (e.g. the students);
    ``max_mce`` with ``mce`` (:func:`mce_index`) sets a robustness floor."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if budget_ms <= 0:
        raise ValueError(f"the budget must be positive, got {budget_ms} ms")
    if models is not None:
        unknown = sorted(set(models) - {r.model for r in rows})
        if unknown:
            raise ValueError(f"the report has no model(s) {unknown}; it has {sorted({r.model for r in rows})}")
        rows = [r for r in rows if r.model in models]
    measured = sorted({r.threads for r in rows if r.threads is not None})
    if threads is None:
        if not measured and not any(getattr(r, metric) is not None for r in rows):
            raise ValueError("the report has no measured rows to choose from")
        threads = measured[-1] if measured else None
    elif threads not in measured:
        raise ValueError(f"the report has no rows at {threads} thread(s); it has {measured}")
    at = [r for r in rows if r.threads == threads or r.threads is None]
    fragile = _robust(at, mce or {}, max_mce) if max_mce is not None else {}
    eligible = [
        r
        for r in at
        if r.status == "ok" and r.oa is not None and getattr(r, metric) <= budget_ms and id(r) not in fragile
    ]
    chosen = min(eligible, key=lambda r: (-r.oa, getattr(r, metric), r.size_mb or 0.0), default=None)
    verdicts = []
    for r in sorted(at, key=lambda r: (-(r.oa or -1.0), getattr(r, metric) or float("inf"))):
        if r is chosen:
            verdict = "**chosen**: most accurate within the budget"
        elif r.status != "ok":
            verdict = f"not validated: {r.reason}" if r.reason else "not validated"
        elif getattr(r, metric) > budget_ms:
            verdict = f"over the budget ({getattr(r, metric):.2f} > {budget_ms:g} ms)"
        elif id(r) in fragile:
            verdict = fragile[id(r)]
        elif chosen is not None and r.oa < chosen.oa:
            verdict = f"within the budget, but {(chosen.oa - r.oa) * 100:.2f} OA points less accurate"
        else:
            verdict = "as accurate, but slower or larger"
        verdicts.append((r, verdict))
    return Selection(chosen, budget_ms, metric, threads, verdicts, max_mce)
