"""The server process's heap: give glibc's freed memory back to the system after a burst of large requests.

glibc keeps what a process frees for reuse. Two settings decide how much of a burst's memory a server keeps after it
(measured in benchmarks/edge_memory.py): glibc raises its mmap threshold to the largest block freed (up to 32 MiB), so
after the first large request the bodies and JSON parse buffers of the next ones come from the heaps, where their
freed pages stay resident and the worker threads' arenas are out of ``malloc_trim``'s reach;
:func:`set_mmap_threshold` fixes the threshold so that each large block is mapped on its own and unmapped when
freed. :func:`malloc_trim` returns what the heaps hold free (:class:`serving.edge.BodyBudget` calls it after a burst).
Both are glibc's: elsewhere (musl, macOS, Windows) they do nothing.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

M_MMAP_THRESHOLD = -3  # mallopt's parameter (glibc's malloc.h)
MAX_MMAP_THRESHOLD = 32 << 20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)`` (returns 1 if memory went back to the system), or None where the C library is
    not glibc (musl, macOS, Windows)."""
    libc = _glibc()
    if libc is None:
        return None
    trim = libc.malloc_trim
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def set_mmap_threshold(nbytes: int) -> bool:
    """``mallopt(M_MMAP_THRESHOLD, nbytes)``: blocks of at least ``nbytes`` are mapped on their own and unmapped
    when freed, and the threshold stays fixed (glibc's dynamic threshold off). Processes started afterwards (the
    parse workers' fork server) get it from ``MALLOC_MMAP_THRESHOLD_``. ``0 < nbytes <= 32 MiB``; False where the C
    library is not glibc."""
    if not 0 < nbytes <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"the mmap threshold must be in 1..{MAX_MMAP_THRESHOLD} bytes, got {nbytes}")
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)) != 1:
        return False
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(int(nbytes))
    return True
