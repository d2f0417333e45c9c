"""Wall-clock timing for benchmarks: warm-up, then repeated runs; medians, because load only adds time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 1, max_seconds: float | None = None) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones; with ``max_seconds``, fewer calls
    when they would take longer than that (at least 10)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
        if deadline is not None and len(times) >= 10 and time.perf_counter() > deadline:
            break
    return times


def percentile(times: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``times``, linearly interpolated."""
    ordered = sorted(times)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """``(median, all times)`` in milliseconds; see :func:`time_ms`."""
    times = time_ms(fn, repeats, warmup)
    return statistics.median(times), times
