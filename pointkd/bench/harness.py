"""The shared harness of the maintained benchmarks (``benchmarks/*.py``): their common flags, the device header, the
warm-up and timing loops, and writing the JSON + Markdown pair.

Built on :mod:`pointkd.timing` (the timing loop and percentiles) and :mod:`pointkd.bench.device` (which machine), so
that every benchmark says the same things the same way::

    parser = argparse.ArgumentParser()
    harness.add_common_args(parser, threads=[1, 2], repeats=400, warmup=30, rounds=10)
    args = parser.parse_args()
    info = harness.device_header(args.threads)
    times = harness.interleaved({"a": run_a, "b": run_b}, args.repeats, args.rounds, args.warmup)
    report = {"device": info, "rows": [{name: harness.summary(t) for name, t in times.items()}]}
    harness.write(harness.out_folder(args.out, info), "name", report, markdown(report))

A report keeps its own schema (docs/results.md reads it): the harness gives the pieces, the benchmark the layout.
Timings are valid only on a quiet machine; each report records how busy the cores were before it started.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pointkd.documents import write_result
from pointkd.timing import percentile, time_ms

from .device import device_id, device_info

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"  # the maintained benchmarks' results


def add_common_args(
    parser: argparse.ArgumentParser,
    *,
    out: str = "folder (default benchmarks/results/<device-id>)",
    threads: Sequence[int] | None = (1, 2),
    repeats: int | None = None,
    warmup: int | None = None,
    rounds: int | None = None,
    repeats_flags: Sequence[str] = ("--repeats",),
) -> argparse.ArgumentParser:
    """The flags every maintained benchmark spells the same way: ``--out`` (a folder; ``--out-dir`` is the same
    flag), ``--threads`` (one or more), and where given a default, ``--repeats`` (timed runs; ``repeats_flags``
    names it for a script whose users know another spelling, e.g. ``--runs``), ``--warmup`` (untimed runs first) and
    ``--rounds`` (interleaved rounds). ``out`` is the help text (its default is None: :func:`out_folder`)."""
    parser.add_argument("--out", "--out-dir", dest="out", type=Path, default=None, help=out)
    if threads is not None:
        parser.add_argument("--threads", type=int, nargs="+", default=list(threads), help="thread counts timed")
    if repeats is not None:
        parser.add_argument(*repeats_flags, dest="repeats", type=int, default=repeats, help="timed runs")
    if warmup is not None:
        parser.add_argument("--warmup", type=int, default=warmup, help="untimed runs first")
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds of the timed runs")
    return parser


def device_header(threads: list[int] | None = None) -> dict[str, Any]:
    """The report's ``device`` block (:func:`pointkd.bench.device.device_info`: CPU model, microarchitecture, SIMD
    level, cores, GPU, library versions, the thread counts timed)."""
    return device_info(threads)


def out_folder(out: Path | None, info: dict[str, Any], results: Path = RESULTS) -> Path:
    """``out`` when given, else ``results/<device-id>`` for the device ``info`` describes."""
    return out if out is not None else results / device_id(info)


def out_stem(out: str | Path | None, default: Path) -> tuple[Path, str]:
    """For a benchmark whose ``--out`` names its files rather than their folder (``--out DIR/NAME`` writes
    ``DIR/NAME.json`` and ``DIR/NAME.md``, as its users' command lines spell it): ``(folder, name)`` of ``out``, a
    ``.json`` or ``.md`` suffix dropped, else of ``default``; pass them to :func:`write`."""
    path = Path(out) if out is not None else default
    if path.suffix in (".json", ".md"):
        path = path.with_suffix("")
    return path.parent, path.name


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of each named callable: ``warmup`` untimed calls of each, then ``rounds`` rounds in which each
    runs ``repeats // rounds`` times in turn (a, b, c, a, b, c, ...), so that a change in the machine's load falls
    on all of them alike."""
    for fn in fns.values():
        time_ms(fn, 0, warmup)
    times: dict[str, list[float]] = {name: [] for name in fns}
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += time_ms(fn, per_round, warmup=1)
    return times


def summary(times: list[float], quantiles: Sequence[int] = (50, 90), digits: int = 4, low: bool = False) -> dict:
    """``{"p50_ms": .., "p90_ms": .., ["min_ms": ..,] "runs": n}``: the named percentiles of ``times`` rounded to
    ``digits``, with the minimum when ``low``."""
    out: dict[str, float | int] = {f"p{q}_ms": round(percentile(times, q), digits) for q in quantiles}
    if low:
        out["min_ms"] = round(min(times), digits)
    out["runs"] = len(times)
    return out


def latency(fn: Callable[[], object], repeats: int, warmup: int, max_seconds: float | None = None) -> dict:
    """One row's latency: ``warmup`` untimed calls, then ``repeats`` timed ones (fewer, at least 10, past
    ``max_seconds``): ``{"runs", "p50_ms", "p95_ms", "p99_ms"}`` unrounded."""
    times = time_ms(fn, repeats, warmup=warmup, max_seconds=max_seconds)
    return {"runs": len(times), **{f"p{q}_ms": percentile(times, q) for q in (50, 95, 99)}}


def write(folder: Path, name: str, report: dict[str, Any], markdown: str) -> Path:
    """``folder/name.json`` and ``folder/name.md`` (:func:`pointkd.documents.write_result`); says where."""
    md = write_result(folder, name, report, markdown)
    print(f"wrote {md.with_suffix('.json')} and {md}", flush=True)
    return md
