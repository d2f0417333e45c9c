"""The parse worker process: reads request bodies and resamples clouds for the server, under a memory limit.

Started by :class:`serving.workers.ProcessPool` (forked from multiprocessing's fork server, which imports this
module once, so a replacement worker starts in a fraction of a second). A worker warms up (every reader and the
resampler once), measures its address space, then caps it with ``RLIMIT_AS`` at that baseline plus
``memory_limit_bytes``: a request that needs more gets a MemoryError, not the machine's memory. Then it answers
jobs, one at a time, over its pipe.

The pipe carries no pickles, in either direction: a request is a JSON header message then the body as raw bytes;
an answer is one message, a 4-byte header length, a JSON header (``info`` and the clouds' shape, or an error's
kind and message) and the float32 clouds' raw bytes.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import struct
import time
from multiprocessing.connection import Connection

import numpy as np
import open3d  # noqa: F401  (imported once in the fork server and shared by every worker, not once per worker)

from .jobs import REQUEST_ERRORS, run_job, warm_up

FAULT_CTYPE = "application/x-pointkd-worker-fault"  # a body naming a fault; read only when faults are enabled


def serve(conn: Connection, config: dict) -> None:
    """Warm up, cap the address space, report ready, then answer jobs until the parent closes the pipe."""
    warm_up(config["warm_points"])
    gc.collect()
    baseline = address_space_bytes()
    limit = cap_address_space(baseline + config["memory_limit_bytes"]) if config["memory_limit_bytes"] else None
    conn.send_bytes(json.dumps({"pid": os.getpid(), "baseline_bytes": baseline, "limit_bytes": limit}).encode())
    faults = bool(config.get("faults"))
    while True:
        try:
            meta = json.loads(conn.recv_bytes())
            body = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the server went away
        conn.send_bytes(answer(meta, body, faults))
        del body


def answer(meta: dict, body: bytes, faults: bool) -> bytes:
    """The reply message for one job: its clouds, or the error it raised."""
    try:
        if faults and meta.get("ctype") == FAULT_CTYPE:
            info, clouds = run_fault(body.decode())
        else:
            info, clouds = run_job(meta.pop("job"), meta, body)
        clouds = np.ascontiguousarray(clouds, dtype="<f4")
        return reply({"info": info, "shape": list(clouds.shape)}, clouds.tobytes())
    except MemoryError:  # the reply is built after this block, once what the job held is freed
        failure = {"error": "MemoryError", "message": "over the worker's memory limit"}
    except Exception as err:
        kind = type(err).__name__
        known = kind in REQUEST_ERRORS
        failure = {"error": kind if known else "internal", "message": str(err) if known else kind}
    return reply(failure)


def reply(header: dict, data: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + data


def address_space_bytes() -> int:
    """This process's virtual memory size (what ``RLIMIT_AS`` limits)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def cap_address_space(limit: int) -> int:
    """Set ``RLIMIT_AS`` (soft and hard: the worker cannot raise it again) to ``limit`` bytes."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def run_fault(name: str) -> tuple[dict, np.ndarray]:
    """Test faults, reachable only when the app was built with ``ServeSettings(worker_faults=True)`` (never from
    the command line): what a broken native reader could do to the worker."""
    if name == "segfault":
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if name == "exit":
        os._exit(3)
    if name == "hang":
        while True:
            time.sleep(1)
    if name == "memory":
        hog = []
        while True:  # 4 MiB at a time, touched, until the address-space cap says no
            hog.append(np.ones(1 << 19))
    if name == "raise":
        raise RuntimeError("a reader bug")
    raise ValueError(f"unknown fault {name!r}")
