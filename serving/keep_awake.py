"""``pointkd serve --keep-awake``: keep the server's CPUs from halting between requests.

On a virtual machine an idle vCPU halts, and the host runs other work on its physical core; the next request then
starts on a core whose caches and predictors are someone else's. ``benchmarks/studies/idle_gap/`` measures it: on the
2-core AVX2 EPYC VM the paper student (onnx-fused, 1 thread, no spinning) ran p50 4.18 ms after a 20 ms idle gap
against 2.62 ms back to back, and 3.09 ms after the gap with these spinners
(``benchmarks/studies/idle_gap/amd-epyc-unknown-avx2-2c/idle_gap.md``).
Whether that shortens a served request's tail depends on the machine: ``benchmarks/serve_tuning.py --keep-awake
both`` measures it end to end. On that VM, with its client on the same two cores, it lowered the p50 at 50
requests/s (6.80 -> 5.92 ms) but raised the p99 (9.62 -> 11.20 ms;
``benchmarks/results/amd-epyc-unknown-avx2-2c/serve_tuning_keep_awake/``): not a default.

So this starts one spinner process per CPU the server may run on: pinned to that CPU, under ``SCHED_IDLE`` (it runs
only when nothing else of this machine's kernel wants the CPU, and any waking thread preempts it at once), spinning in
a loop that touches almost no memory. The CPU then shows 100 % busy, and a cloud VM bills it as used, which is why it
is opt-in. Kernel parameters do the same job system-wide (``idle=poll``, or the ``haltpoll`` cpuidle driver where
the guest kernel has it); a process is what an unprivileged server can do alone, and it ends with the server. A
spinner exits when the server stops it and, should the server die without stopping it, by itself within a second
(its parent process changes).
"""

from __future__ import annotations

import os
import subprocess
import sys

# Pinned, lowest class, then spin; every ~0.1 s it checks that its parent is still the server.
SPINNER = """
import os, sys
cpu, parent = int(sys.argv[1]), int(sys.argv[2])
os.sched_setaffinity(0, {cpu})
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
n = 0
while True:
    n += 1
    if n == 1_000_000:
        n = 0
        if os.getppid() != parent:
            break
"""


def server_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), in order."""
    return sorted(os.sched_getaffinity(0))


class KeepAwake:
    """One ``SCHED_IDLE`` spinner process per CPU in ``cpus`` (default: :func:`server_cpus`), from :meth:`start`
    to :meth:`close`."""

    def __init__(self, cpus: list[int] | None = None):
        self.cpus = server_cpus() if cpus is None else list(cpus)
        self.spinners: list[subprocess.Popen] = []

    def start(self) -> None:
        me = str(os.getpid())
        cmd = [sys.executable, "-I", "-S", "-c", SPINNER]
        self.spinners = [subprocess.Popen([*cmd, str(cpu), me], stdin=subprocess.DEVNULL) for cpu in self.cpus]

    def pids(self) -> list[int]:
        return [p.pid for p in self.spinners]

    def close(self) -> None:
        for p in self.spinners:
            p.kill()
        for p in self.spinners:
            p.wait()
        self.spinners = []
