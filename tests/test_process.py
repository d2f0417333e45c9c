"""pointkd.process: a child started with ``exit_with_parent`` does not outlive its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pointkd.process import exit_with_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")

PARENT = """
import subprocess, sys
from pointkd.process import exit_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True, {hook})
print(child.pid, flush=True)
sys.stdin.read()
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_child_in_its_own_session_dies_when_its_parent_is_killed():
    code = PARENT.format(hook="preexec_fn=exit_with_parent()")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        parent.kill()  # SIGKILL: no finally, no atexit in the parent
        parent.wait()
        assert wait_gone(child), "the child outlived its SIGKILLed parent"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_without_it_the_child_outlives_its_parent():
    """The control: the same set-up without ``exit_with_parent`` leaves an orphan (what a killed benchmark did)."""
    code = PARENT.format(hook="")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        parent.kill()
        parent.wait()
        assert not wait_gone(child, timeout_s=1.0)
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_hook_runs_in_this_process_without_side_effects_on_a_live_parent():
    hook = exit_with_parent()
    assert callable(hook)
    out = subprocess.run([sys.executable, "-c", "print('ok')"], preexec_fn=hook, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "ok\n"
