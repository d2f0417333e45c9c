"""Parse workers: where request bodies are read and resampled, off the event loop.

:class:`ProcessPool` (the default, ``--parse-workers N``): N worker processes (:mod:`serving.worker_main`), each
with an address-space cap and a per-request time limit. A request that crashes its worker (a native reader's
segfault, an exit), runs past the time limit, or needs more memory than the cap costs that request alone an error
(422 for a crash or a MemoryError, 503 for the time limit) and the worker is replaced in the background; the server
and every other request carry on. Bodies go to a worker as raw bytes, once; the prepared float32 clouds come back
the same way (nothing is pickled).

:class:`ThreadPool` (``--parse-workers 0``): the same jobs in threads of the server process, without that
isolation. Both have ``start()``, ``async run(job, meta, body) -> (info, clouds)`` and ``close()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import signal
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .jobs import REQUEST_ERRORS, run_job

log = logging.getLogger("pointkd.serve")
START_TIMEOUT_S = 120.0


class WorkerFailed(Exception):
    """A request its parse worker could not finish: the status and message go back to its caller only."""

    def __init__(self, status: int, message: str, replace: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.replace = replace  # why the worker is gone or cannot be trusted, so a new one takes its place


class WorkerProcess:
    """One parse worker process and the pipe to it; used by one request at a time."""

    def __init__(self, ctx, config: dict):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_entry, args=(child, config), daemon=True, name="pointkd-parse")
        self.process.start()
        child.close()
        self.info: dict = {}

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the worker has warmed up and capped its memory; RuntimeError if it does not."""
        try:
            if self.conn.poll(timeout_s):
                self.info = json.loads(self.conn.recv_bytes())
                return
        except (EOFError, OSError):
            pass
        code = self.kill()
        raise RuntimeError(f"a parse worker did not start ({describe_exit(code)})")

    def call(self, job: str, meta: dict, body: bytes, timeout_s: float) -> tuple[dict, np.ndarray]:
        """The job's ``(info, clouds)``; the request's own error, or :class:`WorkerFailed`."""
        try:
            self.conn.send_bytes(json.dumps({**meta, "job": job}).encode())
            self.conn.send_bytes(body)
            if not self.conn.poll(timeout_s):
                self.kill()
                raise WorkerFailed(
                    503, f"reading and resampling the body took over {timeout_s:g} s; try again", "timeout"
                )
            message = self.conn.recv_bytes()
        except (EOFError, OSError) as err:
            code = self.kill()
            message = f"the body crashed the worker reading it ({describe_exit(code)})"
            raise WorkerFailed(422, message, "crash") from err
        return decode_reply(message)

    def kill(self) -> int | None:
        """Stop the process (SIGKILL if it lives) and return its exit code."""
        if self.process.exitcode is None:
            self.process.join(0.2)  # a crashed worker: its exit code arrives in a moment
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(5)
        self.conn.close()
        return self.process.exitcode


def worker_entry(conn, config: dict) -> None:
    """The worker's target (imports the worker module there: the server process never loads open3d)."""
    from .worker_main import serve

    serve(conn, config)


def decode_reply(message: bytes) -> tuple[dict, np.ndarray]:
    (n,) = struct.unpack_from("<I", message)
    header = json.loads(message[4 : 4 + n])
    kind = header.get("error")
    if kind is None:
        return header["info"], np.frombuffer(message, "<f4", offset=4 + n).reshape(header["shape"])
    if kind in REQUEST_ERRORS:
        raise REQUEST_ERRORS[kind](header["message"])
    if kind == "MemoryError":
        raise WorkerFailed(422, "reading and resampling the body needed more memory than this server allows", "memory")
    raise WorkerFailed(500, f"internal server error ({header['message']})")


def describe_exit(code: int | None) -> str:
    if code is None:
        return "it did not exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class ProcessPool:
    """``size`` parse worker processes; each request borrows an idle one, a failed one is replaced."""

    def __init__(
        self,
        size: int,
        memory_limit_bytes: int,
        timeout_s: float,
        warm_points: int,
        faults: bool = False,
        on_replace: Callable[[str], None] | None = None,
    ):
        if size < 1 or timeout_s <= 0:
            raise ValueError("a process pool needs size >= 1 and timeout_s > 0")
        self.size = size
        self.timeout_s = timeout_s
        self.config = {"memory_limit_bytes": memory_limit_bytes, "warm_points": warm_points, "faults": faults}
        self.on_replace = on_replace
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["serving.worker_main", "serving.workers"])
        self.threads = ThreadPoolExecutor(max_workers=2 * size + 1, thread_name_prefix="pointkd-parse")
        self.workers: list[WorkerProcess] = []  # every live worker, idle or busy
        self.idle: asyncio.Queue[WorkerProcess] | None = None
        self.replacing: set[asyncio.Task] = set()
        self.closed = False
        self.lock = threading.Lock()

    def start(self) -> None:
        """Start and warm every worker (blocking: call before the server reports ready)."""
        started = [WorkerProcess(self.ctx, self.config) for _ in range(self.size)]
        for w in started:
            w.wait_ready(START_TIMEOUT_S)
        self.workers = started
        log.info("parse workers ready: %s", [w.info for w in started])

    async def run(self, job: str, meta: dict, body: bytes) -> tuple[dict, np.ndarray]:
        loop = asyncio.get_running_loop()
        if self.idle is None:
            self.idle = asyncio.Queue()
            for w in self.workers:
                self.idle.put_nowait(w)
        try:
            worker = await asyncio.wait_for(self.idle.get(), self.timeout_s)
        except asyncio.TimeoutError:
            raise WorkerFailed(
                503, f"all {self.size} parse workers stayed busy for {self.timeout_s:g} s; try again"
            ) from None
        future = loop.run_in_executor(self.threads, worker.call, job, meta, body, self.timeout_s)
        future.add_done_callback(lambda f: self._release(worker, f))
        return await asyncio.shield(future)  # a cancelled request still hands its worker back when the job ends

    def _release(self, worker: WorkerProcess, future: asyncio.Future) -> None:
        err = None if future.cancelled() else future.exception()
        if isinstance(err, WorkerFailed) and err.replace:
            task = asyncio.get_running_loop().create_task(self._replace(worker, err.replace))
            self.replacing.add(task)
            task.add_done_callback(self.replacing.discard)
        else:
            self.idle.put_nowait(worker)

    async def _replace(self, old: WorkerProcess, reason: str) -> None:
        loop = asyncio.get_running_loop()
        log.warning("replacing parse worker %s: %s", old.info.get("pid"), reason)
        if self.on_replace is not None:
            self.on_replace(reason)
        await loop.run_in_executor(self.threads, old.kill)
        while not self.closed:
            try:
                new = await loop.run_in_executor(self.threads, self._started)
            except Exception as err:  # the fork server itself failed: try again shortly
                log.error("starting a parse worker failed: %s", err)
                await asyncio.sleep(1.0)
                continue
            with self.lock:
                self.workers = [w for w in self.workers if w is not old] + [new]
            self.idle.put_nowait(new)
            return

    def _started(self) -> WorkerProcess:
        worker = WorkerProcess(self.ctx, self.config)
        worker.wait_ready(START_TIMEOUT_S)
        return worker

    def pids(self) -> list[int]:
        with self.lock:
            return [w.process.pid for w in self.workers]

    def close(self) -> None:
        self.closed = True
        for task in list(self.replacing):
            task.cancel()
        for w in self.workers:
            w.kill()
        self.threads.shutdown(wait=False, cancel_futures=True)


class ThreadPool:
    """The same jobs in ``size`` threads of the server process: off the event loop, but not isolated from it."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self.threads = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="pointkd-parse")

    def start(self) -> None:
        pass

    async def run(self, job: str, meta: dict, body: bytes) -> tuple[dict, np.ndarray]:
        return await asyncio.get_running_loop().run_in_executor(self.threads, run_job, job, meta, body)

    def pids(self) -> list[int]:
        return []

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
