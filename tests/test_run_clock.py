"""A training sitting's clock leaves out the time its process was stopped, and nothing else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pointkd.train.run_clock import RunClock


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_only_lateness_beyond_the_slack_counts_as_paused():
    now = FakeTime()
    clock = RunClock(tick_s=0.5, slack_s=1.0, now=now)
    clock.started = clock.last = now.t
    for late in (0.0, 0.3, 0.9):  # a busy machine: ticks a little late, nothing paused
        now.t += 0.5 + late
        clock.tick()
    assert clock.paused_s == 0.0
    now.t += 0.5 + 30.0  # stopped for 30 s
    clock.tick()
    assert clock.paused_s == pytest.approx(30.0)
    now.t += 0.2  # a read between ticks is not a pause either
    assert clock.elapsed() == pytest.approx((now.t - 100.0) - 30.0)
    now.t += 12.0  # stopped again, and elapsed() is asked before the next tick: counted as well
    assert clock.elapsed() == pytest.approx((now.t - 100.0) - 30.0 - 11.5)


CHILD = """
import json, sys, time
from pointkd.train.run_clock import RunClock
clock = RunClock(tick_s=0.1, slack_s=0.5).start()
wall = time.monotonic()
print("ready", flush=True)
sys.stdin.readline()  # the parent stops and continues us meanwhile
print(json.dumps({"wall": time.monotonic() - wall, "elapsed": clock.elapsed(), "paused": clock.paused_s}), flush=True)
"""


def test_a_real_sigstop_is_left_out_of_the_elapsed_time():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(2.0)
        os.kill(child.pid, signal.SIGCONT)
        time.sleep(0.5)
        child.stdin.write("go\n")
        child.stdin.flush()
        out = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    assert out["paused"] == pytest.approx(2.0, abs=0.5)
    assert out["elapsed"] == pytest.approx(out["wall"] - out["paused"], abs=0.2)
    assert out["elapsed"] < out["wall"] - 1.4
