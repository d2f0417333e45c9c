"""Does the model get slower when requests leave the CPU idle between runs? Batch-1 latency back to back vs with gaps.

A server at 50 requests/s runs the model about every 20 ms and idles in between. For each artifact, ONNX Runtime
thread count and spinning setting this times batch-1 runs of real test clouds back to back and with a ``--gap-ms``
sleep before each run (the settings interleaved, medians over many runs), and the CPU time per run (a spinning
pool keeps its threads busy through the gap); each also with ``pointkd serve --keep-awake``'s spinners running
(:mod:`serving.keep_awake`: a ``SCHED_IDLE`` busy process per CPU, so an idle vCPU never halts).
-> ``benchmarks/studies/idle_gap/<device-id>/idle_gap.{json,md}``.

    python benchmarks/studies/idle_gap/idle_gap.py ARTIFACT [ARTIFACT ...]   # pause any background job first
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from pointkd.bench.device import device_id, device_info
from pointkd.data import load_modelnet40
from pointkd.data.resample import prepare_cloud
from pointkd.documents import write_result
from pointkd.process import busy_cores
from pointkd.runtime.manifest import read_manifest
from pointkd.runtime.runner import open_artifact
from pointkd.timing import percentile
from serving.keep_awake import KeepAwake

RESULTS = Path(__file__).resolve().parent  # this study's folder: <device-id>/idle_gap.*


def timed_runs(run, inputs: list[np.ndarray], gap_s: float) -> tuple[list[float], float]:
    """Wall ms of each run (sleeping ``gap_s`` before each) and the process CPU ms per run."""
    times = []
    cpu0 = os.times()
    for x in inputs:
        if gap_s:
            time.sleep(gap_s)
        t = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t) * 1000)
    cpu1 = os.times()
    # each counter's own difference, then the sum: never below 0 (a sum of both first could round to -1e-13)
    cpu = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) * 1000 / len(inputs)
    return times, cpu


def measure(
    artifact: Path, threads: int, spin: bool, inputs: list[np.ndarray], gap_s: float, rounds: int, awake: bool
) -> dict:
    keeper = KeepAwake()
    if awake:
        keeper.start()
    try:
        return _measure(artifact, threads, spin, inputs, gap_s, rounds)
    finally:
        keeper.close()


def _measure(artifact: Path, threads: int, spin: bool, inputs: list[np.ndarray], gap_s: float, rounds: int) -> dict:
    run = open_artifact(artifact, threads=threads, spin=spin).run
    for x in inputs[:20]:
        run(x)
    out: dict = {}
    for label, gap in (("back_to_back", 0.0), ("after_gap", gap_s)):
        times, cpus = [], []
        for _ in range(rounds):
            t, c = timed_runs(run, inputs, gap)
            times += t
            cpus.append(c)
        out[label] = {
            "p50_ms": percentile(times, 50),
            "p99_ms": percentile(times, 99),
            "cpu_ms": float(np.median(cpus)),
        }
    out["slowdown_p50"] = out["after_gap"]["p50_ms"] / out["back_to_back"]["p50_ms"]
    return out


def markdown(report: dict) -> str:
    lines = [
        "# Batch-1 model latency: back to back vs after an idle gap",
        "",
        f"{report['device']['cpu']}, {report['device']['cores']} cores; {report['runs']} test clouds x "
        f"{report['rounds']} rounds per cell, gap {report['gap_ms']:g} ms (a server at 50 requests/s). CPU ms: "
        "process CPU time per run, the gap included (not the keep-awake spinners'). Keep awake: `pointkd serve "
        "--keep-awake`'s idle-priority spinner on each CPU.",
        "",
        "| artifact | format | threads | spin | keep awake | p50 back to back | p50 after gap | slowdown "
        "| p99 after gap | CPU ms back to back | CPU ms with gap |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["rows"]:
        b, g = r["back_to_back"], r["after_gap"]
        lines.append(
            f"| `{r.get('artifact', '?')}` | {r['format']} | {r['threads']} | {'on' if r['spin'] else 'off'} | "
            f"{'on' if r.get('keep_awake') else 'off'} | {b['p50_ms']:.2f} | "
            f"{g['p50_ms']:.2f} | {r['slowdown_p50']:.2f}x | {g['p99_ms']:.2f} | {b['cpu_ms']:.2f} | "
            f"{g['cpu_ms']:.2f} |"
        )
    lines += ["", f"Command: `python benchmarks/studies/idle_gap/idle_gap.py {report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifacts", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=100, help="test clouds per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--keep-awake", nargs="+", choices=("off", "on"), default=["off", "on"], help="without and/or with spinners"
    )
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", type=Path, default=None, help="folder (default <device-id>/ beside this script)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.rounds < 1 or args.gap_ms <= 0:
        parser.error("--runs, --rounds and --gap-ms must be positive")
    try:
        manifests = {a: read_manifest(a) for a in args.artifacts}  # refuse a bad folder before any timing
    except ValueError as err:
        parser.error(str(err))
    clouds = load_modelnet40(args.data).test_x[: args.runs].numpy()
    info, busy = device_info([max(args.threads)]), busy_cores()
    rows = []
    for artifact in args.artifacts:
        manifest = manifests[artifact]
        inputs = [prepare_cloud(c, manifest["input"]["num_points"])[None] for c in clouds]
        for threads, spin, awake in itertools.product(args.threads, (True, False), args.keep_awake):
            r = measure(artifact, threads, spin, inputs, args.gap_ms / 1000, args.rounds, awake == "on")
            row = {"artifact": artifact.name, "format": manifest["artifact_format"], "threads": threads}
            row |= {"spin": spin, "keep_awake": awake == "on"}
            rows.append(row | r)
            print(json.dumps(rows[-1]), flush=True)
    report = {"device": info, "busy_cores_before": busy, "gap_ms": args.gap_ms, "runs": args.runs}
    report |= {"rounds": args.rounds, "command": " ".join(map(str, argv if argv is not None else sys.argv[1:]))}
    report["rows"] = rows
    out = args.out or RESULTS / device_id(info)
    write_result(out, "idle_gap", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
