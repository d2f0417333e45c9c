"""``pointkd select``: the most accurate benchmarked model whose latency meets a budget, with the reasons.

Among the rows of one report at one thread count (default: the most threads measured), a row is eligible when it
ran and was validated (✅) and its latency metric (default p95 at batch 1) is within the budget. GPU rows have no
thread count and compete at every one; a report of GPU rows only is judged as a whole. The most accurate
eligible row wins; equal OA goes to the lower latency, then the smaller file. Every other row gets the reason it
lost: not validated, over the budget, or less accurate than the winner.
"""

from __future__ import annotations

from dataclasses import dataclass

from .report import STATUS, BenchRow

METRICS = ("p50_ms", "p95_ms", "p99_ms")


@dataclass
class Selection:
    chosen: BenchRow | None
    budget_ms: float
    metric: str
    threads: int | None  # None: a report with GPU rows only
    verdicts: list[tuple[BenchRow, str]]  # every row at ``threads``, with "chosen" or why it lost

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
            lines.append(f"No validated model meets {name} ≤ {self.budget_ms:g} ms.")
        else:
            c = self.chosen
            lines.append(
                f"Chosen: {c.model} as {c.format} ({c.model_name or 'model'}): OA {c.oa * 100:.2f} %, "
                f"{name} {getattr(c, self.metric):.2f} ms (budget {self.budget_ms:g} ms)"
                + (f", artifact {c.artifact}" if c.artifact else "")
                + "."
            )
        return "\n".join(lines)


def select_model(
    rows: list[BenchRow],
    budget_ms: float,
    metric: str = "p95_ms",
    threads: int | None = None,
    models: list[str] | None = None,
) -> Selection:
    """See the module docstring; ``models`` keeps only the rows of these model labels (e.g. the students)."""
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
    eligible = [r for r in at if r.status == "ok" and r.oa is not None and getattr(r, metric) <= budget_ms]
    chosen = min(eligible, key=lambda r: (-r.oa, getattr(r, metric), r.size_mb or 0.0), default=None)
    verdicts = []
    for r in sorted(at, key=lambda r: (-(r.oa or -1.0), getattr(r, metric) or float("inf"))):
        if r is chosen:
            verdict = "**chosen**: most accurate within the budget"
        elif r.status != "ok":
            verdict = f"not validated: {r.reason}" if r.reason else "not validated"
        elif getattr(r, metric) > budget_ms:
            verdict = f"over the budget ({getattr(r, metric):.2f} > {budget_ms:g} ms)"
        elif chosen is not None and r.oa < chosen.oa:
            verdict = f"within the budget, but {(chosen.oa - r.oa) * 100:.2f} OA points less accurate"
        else:
            verdict = "as accurate, but slower or larger"
        verdicts.append((r, verdict))
    return Selection(chosen, budget_ms, metric, threads, verdicts)
