"""One benchmark row's measurements, in a process of its own: ``python -m pointkd.bench.measure SPEC OUT``.

A fresh process per (model, format) keeps each runtime's thread pools, allocator state and peak memory apart
from the others'. The spec (JSON) names the format (a row of :mod:`pointkd.runtime.formats`), its model file (a
checkpoint for ``torch``) and custom-op library if any, the inputs file written by the parent (test clouds at the
model's point count, their labels, and the timing clouds, identical for every format), the thread counts and the
timing settings. :func:`accuracy` and :func:`latency` are the measurements themselves, also used in-process by
``benchmarks/gpu_check.py``. The output (JSON) holds OA and
mAcc on the test clouds, p50/p95/p99 at batch 1 and clouds/s at batch ``batch_size`` per thread count, and the
peak RSS above the baseline taken once torch, ONNX Runtime and pointkd are imported and the inputs loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def rss_mb() -> float:
    """Resident set size now, MiB (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's RSS high-water mark, MiB: ``VmHWM`` (per address space, so it starts afresh at exec; the
    ``ru_maxrss`` of a child started from a big parent carries the parent's size), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Restart the high-water mark from the current RSS (Linux >= 4.0; silently nothing elsewhere)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _runner(spec: dict[str, Any], threads: int) -> Callable[[np.ndarray], np.ndarray]:
    from ..runtime.runner import RunOptions, open_runner

    opts = RunOptions(
        spec.get("input_name", "points"), spec.get("output_name", "logits"), threads, library=spec.get("library")
    )
    return open_runner(spec["path"], spec["format"], opts)


def accuracy(
    run: Callable[[np.ndarray], np.ndarray], clouds: np.ndarray, labels: np.ndarray, num_classes: int, batch: int
) -> dict[str, Any]:
    """``{"oa", "macc", "logits"}`` of ``run`` over ``clouds`` in batches of ``batch`` (mAcc over the classes
    present in ``labels``)."""
    from ..runtime.ort import run_in_batches

    logits = run_in_batches(run, clouds, batch)
    pred, labels = logits.argmax(1), np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    right = np.bincount(labels[pred == labels], minlength=num_classes)
    present = counts > 0
    return {
        "oa": float(right.sum()) / max(len(labels), 1),
        "macc": float((right[present] / counts[present]).mean()) if present.any() else float("nan"),
        "logits": logits,
    }


def latency(
    run: Callable[[np.ndarray], np.ndarray],
    timing: np.ndarray,
    batch: int,
    repeats: int,
    warmup: int,
    max_seconds: float,
) -> dict[str, Any]:
    """p50/p95/p99 ms of ``run`` at batch 1, cycling over the ``timing`` clouds (after ``warmup`` runs, at most
    ``repeats`` runs or ``max_seconds``), and clouds/s at batch ``batch`` from the median of up to 30 runs (fewer
    when ``repeats`` asks for fewer)."""
    from ..timing import percentile, time_ms

    times = time_ms(
        _cycling(run, [timing[i : i + 1] for i in range(len(timing))]), repeats, warmup=warmup, max_seconds=max_seconds
    )
    big = np.ascontiguousarray(np.resize(timing, (batch, *timing.shape[1:])))
    batch_times = time_ms(lambda: run(big), min(30, repeats), warmup=2, max_seconds=max_seconds / 2)
    return {
        "p50_ms": percentile(times, 50),
        "p95_ms": percentile(times, 95),
        "p99_ms": percentile(times, 99),
        "runs": len(times),
        "clouds_per_s": batch / (statistics.median(batch_times) / 1000),
    }


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    # Everything a runner imports is imported before the baseline, so the peak counts the model and its work only.
    with contextlib.suppress(ImportError):  # not needed by the torch and torch-cuda rows
        import onnxruntime  # noqa: F401

    import torch  # noqa: F401  (the torch runners)

    from .. import models, runtime  # noqa: F401  (the runners and the model code they rebuild)

    inputs = np.load(spec["inputs"])
    clouds = np.ascontiguousarray(inputs["clouds"], dtype=np.float32)
    labels = inputs["labels"]
    timing = np.ascontiguousarray(inputs["timing"], dtype=np.float32)
    base = rss_mb()
    reset_peak_rss()
    batch = int(spec["batch_size"])
    result: dict[str, Any] = {"baseline_mb": base, "per_threads": {}}
    # The highest thread count first: the accuracy pass and its timing make the peak of one runtime instance; the
    # other thread counts' instances come after the peak is read.
    for threads in sorted(spec["threads"], reverse=True):
        run = _runner(spec, threads)
        if "oa" not in result:
            acc = accuracy(run, clouds, labels, int(spec["num_classes"]), batch)
            result.update(oa=acc["oa"], macc=acc["macc"])
        result["per_threads"][str(threads)] = latency(
            run, timing, batch, spec["repeats"], spec["warmup"], spec["max_seconds"]
        )
        result.setdefault("peak_mb", max(peak_rss_mb() - base, 0.0))
        del run
    return result


def _cycling(run: Callable[[np.ndarray], np.ndarray], inputs: list[np.ndarray]) -> Callable[[], np.ndarray]:
    """A no-argument call that runs ``run`` on the next input each time, round robin."""
    position = 0

    def call() -> np.ndarray:
        nonlocal position
        x = inputs[position % len(inputs)]
        position += 1
        return run(x)

    return call


def main(argv: list[str] | None = None) -> int:
    spec_path, out_path = (argv if argv is not None else sys.argv[1:])[:2]
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = {"ok": True, **measure(spec)}
    except Exception as err:  # reported as the row's reason; the parent goes on with the other rows
        result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
    Path(out_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
