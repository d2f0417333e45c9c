"""Wall-clock timing for benchmarks: warm-up, then repeated runs; medians, because load only adds time."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable


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


async def on_schedule(one: Callable[[int], Awaitable[None]], rate: float, seconds: float) -> float:
    """Start ``one(i)`` at ``i / rate`` s for every ``i < rate * seconds``, whatever the answers (an open loop);
    the elapsed seconds once all have finished."""
    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - start
