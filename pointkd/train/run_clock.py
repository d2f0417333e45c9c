"""The training time of a sitting, without the time its process was stopped.

A training run on a shared machine gets paused: ``kill -STOP`` while latency timings are taken, a terminal job
suspended with Ctrl-Z, a frozen container. The monotonic clock keeps running through a stop, so wall time would
charge the pause to training (a campaign record once said 4347 s for a run whose epochs took 125 s each: 33 of
its minutes were pauses). Suspend to RAM is no problem: Linux's monotonic clock stops with the machine.

So a daemon thread ticks every ``tick_s``. A stopped process runs none of its threads, so the first tick after a
stop comes late; any lateness beyond ``slack_s`` is counted as paused. A busy machine delays a tick by milliseconds,
far under the slack, so only real stops count (to within one tick each).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RunClock:
    """``elapsed()``: seconds since :meth:`start` minus :attr:`paused_s`, the time the process was stopped."""

    def __init__(self, tick_s: float = 0.5, slack_s: float = 1.0, now: Callable[[], float] = time.monotonic):
        self.tick_s, self.slack_s, self.now = tick_s, slack_s, now
        self.started = self.last = now()
        self.paused_s = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RunClock:
        """Restart the count from now and run the ticking thread."""
        with self._lock:
            self.started = self.last = self.now()
            self.paused_s = 0.0
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pointkd-run-clock", daemon=True)
            self._thread.start()
        return self

    def tick(self) -> None:
        """Count the lateness of this tick beyond the slack as paused time."""
        with self._lock:
            t = self.now()
            late = t - self.last - self.tick_s
            if late > self.slack_s:
                self.paused_s += late
            self.last = t

    def elapsed(self) -> float:
        self.tick()  # a stop that has not been ticked yet (the caller woke first) is counted too
        with self._lock:
            return self.last - self.started - self.paused_s

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()
