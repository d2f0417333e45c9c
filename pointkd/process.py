"""Process set-up for long-running commands: jemalloc preloading and thread counts.

glibc malloc returns big freed blocks to the OS, so every large torch tensor is page-faulted in again on
each step; jemalloc with decay disabled keeps them (measured 2-3.5x faster training steps here). A library
can only be preloaded before the process starts, so :func:`reexec_with_jemalloc` re-executes the command
once with ``LD_PRELOAD`` set. Opt out with ``POINTKD_JEMALLOC=0``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

JEMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
_MARK = "POINTKD_JEMALLOC_ACTIVE"


def find_jemalloc() -> str | None:
    for cand in JEMALLOC_CANDIDATES:
        if Path(cand).is_file():
            return cand
    return None


def jemalloc_active() -> bool:
    return "jemalloc" in os.environ.get("LD_PRELOAD", "")


def jemalloc_env(env: dict[str, str] | None = None) -> dict[str, str] | None:
    """``env`` with jemalloc preloaded, or None when it is unavailable."""
    lib = find_jemalloc()
    if lib is None:
        return None
    env = dict(os.environ if env is None else env)
    env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    env["MALLOC_CONF"] = MALLOC_CONF
    env[_MARK] = "1"
    return env


def reexec_command() -> list[str]:
    """This process's own command line, as the interpreter got it (``-m``, ``-c`` or a script, and their
    arguments): rebuilding it as ``python -m pointkd`` would put the working directory first on ``sys.path`` and could
    import another checkout's pointkd than the one running (the campaign's pinned worktree)."""
    return [sys.executable, *sys.orig_argv[1:]]


def reexec_with_jemalloc() -> None:
    """Replace this process with the same command under jemalloc, once; return if not possible or disabled."""
    if os.environ.get("POINTKD_JEMALLOC", "1") == "0" or jemalloc_active() or os.environ.get(_MARK):
        return
    env = jemalloc_env()
    if env is None:
        return
    args = reexec_command()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, args, env)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so a long command saves its checkpoint and stops. A command started
    in the background by a non-interactive shell inherits SIGINT ignored, and Python then leaves it ignored."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``signum`` when the process that started it
    dies, however it dies (SIGKILL, a ``timeout``), so a benchmark's server never outlives the benchmark. Linux only
    (``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``); None elsewhere. The libc call is looked up here, before the
    fork, so the child runs no Python imports before it execs.

    Linux sends the signal when the *thread* that forked the child ends, not the process: off the main thread the
    child would be signalled as soon as that thread returns, so there this returns None too (no hook)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signum)

    return arm


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from each process's parent in /proc; empty
    where /proc cannot be read. A server's parse workers and their fork server, for example."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    below, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        below.append(p)
        todo.extend(children.get(p, []))
    return below


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores other processes kept busy over the next ``seconds`` (from /proc/stat; 0.0 if unreadable).

    Unlike the load average, which lags by minutes, this tells whether the machine is idle right now."""
    import time

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    cores = os.cpu_count() or 1
    return cores * (1.0 - (idle1 - idle0) / max(total1 - total0, 1))


def show_bars(progress: bool) -> bool:
    """Progress bars only on a terminal: into a log file a bar rewrites itself step after step (MBs of carriage
    returns); there the commands print one line per epoch or stage instead."""
    import sys

    return progress and sys.stderr.isatty()


def progress_interval() -> float:
    """Seconds between progress-bar refreshes: live on a terminal, every 30 s into a log file."""
    import sys

    return 0.1 if sys.stderr.isatty() else 30.0
