from __future__ import annotations

import time

from pointkd.timing import median_ms, time_ms


def test_warmup_calls_are_not_timed_and_medians_are_real():
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.002 if len(calls) > 2 else 0.05)  # the two warm-up calls are slow

    times = time_ms(work, repeats=5, warmup=2)
    assert len(calls) == 7 and len(times) == 5
    assert all(1.5 <= t < 40 for t in times)
    med, all_times = median_ms(lambda: time.sleep(0.001), repeats=3, warmup=0)
    assert len(all_times) == 3 and min(all_times) <= med <= max(all_times) and med >= 0.9


def test_time_budget_stops_early_but_keeps_ten_runs():
    times = time_ms(lambda: time.sleep(0.003), repeats=1000, warmup=0, max_seconds=0.01)
    assert 10 <= len(times) < 1000


def test_percentile_matches_numpy():
    import numpy as np

    from pointkd.timing import percentile

    data = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    for q in (0, 50, 95, 99, 100):
        assert percentile(data, q) == np.percentile(data, q)
