"""How long does the README's test command take on a fresh clone? The CI run, timed, on this machine.

Clones this checkout's HEAD into a temporary folder with the shared data beside it (``../shared``, as CI has it),
runs ``.ci/run`` there (the set-up, lint and the whole suite: ``make test``), and records the wall time of the whole
run, the suite's own time and counts from pytest's summary line, the exit status, and how busy the cores were
before -> ``benchmarks/results/<device-id>/fresh_clone.{json,md}``. The set-up reuses this machine's pip cache, as a
CI runner with a warm cache would; a cold cache adds the downloads.

    python benchmarks/fresh_clone.py      # pause any background job first, or say in the report that it ran
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pointkd.bench import harness
from pointkd.process import busy_cores

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^(?:=+ )?((?:\d+ \w+, )*\d+ \w+) in ([\d.]+)s", re.MULTILINE)
DURATION = re.compile(r"^([\d.]+)s (setup|call|teardown) +(\S+)$", re.MULTILINE)


def pytest_summary(output: str) -> dict:
    """Counts (passed, failed, skipped, ...) and seconds from pytest's last summary line, or ``{}``."""
    found = SUMMARY.findall(output)
    if not found:
        return {}
    counts_text, seconds = found[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", counts_text)}
    return {"counts": counts, "suite_seconds": float(seconds)}


def slowest(output: str) -> list[dict]:
    """The rows of pytest's ``--durations`` table (seconds, phase, test id), slowest first, or ``[]``."""
    rows = [{"seconds": float(t), "phase": phase, "test": test} for t, phase, test in DURATION.findall(output)]
    return sorted(rows, key=lambda row: -row["seconds"])


def run_ci(shared: Path, keep: bool) -> dict:
    """Clone HEAD beside a link to ``shared``, run ``.ci/run`` there; wall time, status and pytest's summary."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    work = Path(tempfile.mkdtemp(prefix="pointkd-fresh-"))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "main")], check=True)
    (work / "shared").symlink_to(shared.resolve())
    start = time.perf_counter()
    done = subprocess.run([".ci/run"], cwd=work / "main", capture_output=True, text=True)
    wall = time.perf_counter() - start
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    tail = (done.stdout + done.stderr)[-4000:]
    output = done.stdout + "\n" + done.stderr
    return {
        "commit": head.stdout.strip(),
        "status": done.returncode,
        "wall_seconds": wall,
        "pytest": pytest_summary(output),
        "slowest": slowest(output),
        "tail": tail,
    }


def markdown(r: dict) -> str:
    s = r.get("pytest") or {}
    counts = ", ".join(f"{n} {w}" for w, n in (s.get("counts") or {}).items()) or "no pytest summary"
    suite = f"{s['suite_seconds']:.0f} s" if s else "?"
    return "\n".join(
        [
            "# Fresh clone: the README's test command, timed",
            "",
            f"{r['device']['cpu']}, {r['device']['cores']} cores (busy cores before: {r['busy_cores_before']:.2f}); "
            f"commit `{r['commit'][:7]}`; warm pip cache.",
            "",
            "| what | value |",
            "| --- | ---: |",
            f"| `.ci/run` (set-up, lint, suite) | {r['wall_seconds'] / 60:.1f} min |",
            f"| the suite (pytest's own time) | {suite} |",
            f"| exit status | {r['status']} |",
            f"| tests | {counts} |",
            "",
            *_slowest_table(r.get("slowest") or []),
            "Command: `python benchmarks/fresh_clone.py`",
            "",
        ]
    )


def _slowest_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [
        "Slowest test phases (pytest `--durations`, per worker):",
        "",
        "| s | phase | test |",
        "| ---: | --- | --- |",
    ]
    return lines + [f"| {r['seconds']:.1f} | {r['phase']} | `{r['test']}` |" for r in rows] + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    harness.add_common_args(parser, threads=None)
    args = parser.parse_args(argv)
    if not args.shared.is_dir():
        parser.error(f"{args.shared} is not a folder: the clone needs the shared data beside it")
    info, busy = harness.device_header(), busy_cores()
    result = run_ci(args.shared, args.keep)
    report = {"device": info, "busy_cores_before": busy, **result}
    harness.write(harness.out_folder(args.out, info), "fresh_clone", report, markdown(report))
    print(markdown(report))
    if result["status"] != 0:
        print(result["tail"])


if __name__ == "__main__":
    main()
