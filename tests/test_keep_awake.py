"""``pointkd serve --keep-awake``: one pinned SCHED_IDLE spinner per CPU, gone when the server stops or dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from serving import ServeSettings, create_app
from serving.keep_awake import KeepAwake, server_cpus


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_a_spinner_per_cpu_pinned_at_idle_priority_and_stopped_by_close():
    cpu = server_cpus()[-1]
    keeper = KeepAwake([cpu])
    keeper.start()
    try:
        (pid,) = keeper.pids()
        deadline = time.monotonic() + 10
        while os.sched_getscheduler(pid) != os.SCHED_IDLE and time.monotonic() < deadline:
            time.sleep(0.02)  # the child sets its own class and affinity as it starts
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        assert os.sched_getaffinity(pid) == {cpu}
    finally:
        keeper.close()
    assert keeper.pids() == [] and not alive(pid)
    assert KeepAwake().cpus == server_cpus() == sorted(os.sched_getaffinity(0))


def test_spinners_end_by_themselves_when_the_server_dies_without_stopping_them():
    code = (
        "from serving.keep_awake import KeepAwake; import os; k = KeepAwake([0]); k.start(); "
        "print(*k.pids(), flush=True); os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 1 and wait_gone(pids)


def test_the_server_starts_spinners_only_when_asked_and_stops_them_on_shutdown(tiny_artifact):
    with TestClient(create_app(tiny_artifact, ServeSettings(threads=1, parse_workers=0))) as c:
        assert "keep_awake" not in c.app.state.serving
    with TestClient(create_app(tiny_artifact, ServeSettings(threads=1, parse_workers=0, keep_awake=True))) as c:
        pids = c.app.state.serving["keep_awake"].pids()
        assert len(pids) == len(server_cpus()) and all(alive(p) for p in pids)
        assert c.get("/v2/health/ready").status_code == 200
    assert wait_gone(pids, 2.0)
