"""pointkd.process: a child started with ``exit_with_parent`` does not outlive its parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pointkd.process import exit_with_parent

ROOT = Path(__file__).resolve().parents[1]
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


@contextlib.contextmanager
def orphaned_child(hook: str):
    """The pid of a child started (with ``hook``) by a parent that has been SIGKILLed: no finally, no atexit in it.
    The child is killed on the way out if it is still there."""
    code = PARENT.format(hook=hook)
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        child = int(p.stdout.readline())
        assert alive(child)
        p.kill()
    try:
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_child_in_its_own_session_dies_when_its_parent_is_killed():
    with orphaned_child("preexec_fn=exit_with_parent()") as child:
        assert wait_gone(child), "the child outlived its SIGKILLed parent"


def test_without_it_the_child_outlives_its_parent():
    """The control: the same set-up without ``exit_with_parent`` leaves an orphan (what a killed benchmark did)."""
    with orphaned_child("") as child:
        assert not wait_gone(child, timeout_s=1.0)


def test_a_child_of_a_live_parent_runs_to_completion_and_keeps_its_parent_pid():
    hook = exit_with_parent()
    assert callable(hook)
    code = "import os, time; time.sleep(0.3); print(os.getppid())"
    out = subprocess.run([sys.executable, "-c", code], preexec_fn=hook, capture_output=True, text=True)
    assert out.returncode == 0 and int(out.stdout) == os.getpid()


def test_off_the_main_thread_there_is_no_hook():
    """Linux would signal the child when the forking thread ends, so a worker thread's child gets no hook."""
    result = []
    worker = threading.Thread(target=lambda: result.append(exit_with_parent()))
    worker.start()
    worker.join()
    assert result == [None] and exit_with_parent() is not None


SERVING_PARENT = """
import sys
from serving.launch import free_port, start_server
server = start_server(sys.argv[1], free_port(), *sys.argv[2:], quiet=True, ready_timeout_s=600)
print(server.pid, flush=True)
sys.stdin.read()
"""


def session_members(sid: int) -> set[int]:
    """Live processes whose session is ``sid`` (a server started by ``start_server`` leads its own session)."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.add(int(stat.parent.name))
    return members


def test_a_killed_benchmark_takes_its_server_and_all_of_the_servers_processes_with_it(tiny_artifact):
    """The incident behind the hook: a benchmark killed by ``timeout`` left its server (parse workers, keep-awake
    spinners) running beside the training. SIGKILL the process that called ``start_server``: every process of the
    server's session is gone soon after."""
    args = [sys.executable, "-c", SERVING_PARENT, str(tiny_artifact), "--threads", "1", "--parse-workers", "1"]
    with subprocess.Popen(
        [*args, "--keep-awake"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as p:
        server = int(p.stdout.readline())
        members = session_members(server)
        p.kill()
    try:
        # the server, the forkserver, a parse worker and a spinner per CPU
        assert server in members and len(members) >= 4, members
        deadline = time.monotonic() + 60
        while session_members(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_members(server), f"still running: {session_members(server)}"
    finally:
        for pid in session_members(server):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
