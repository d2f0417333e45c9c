"""Where each run of a plan stands, read from its folder and the committed records (no torch import)."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .plan import Plan, RunSpec

LOCK = "campaign.lock"
CODE = "code.txt"


@dataclass
class RunState:
    spec: RunSpec
    state: str  # done | running | trained | partial | parked | waiting | todo
    epochs_done: int
    epochs: int | None
    seconds_per_epoch: float | None
    last_oa: float | None  # the trainer's latest test OA (its own eval points)

    @property
    def epochs_left(self) -> int | None:
        return None if self.epochs is None else self.epochs - self.epochs_done


def inflight_dir(plan: Plan, spec: RunSpec) -> Path:
    """Where :mod:`pointkd.campaign.inflight` parks a run's resume state (committed with the records)."""
    return plan.records / "inflight" / spec.name


def read_history(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_seconds(history: list[dict[str, Any]]) -> float:
    """Training time over all sittings of a run: each sitting's ``elapsed_s`` restarts from 0 on resume, so the
    total is the sum of each sitting's last value (work lost at a stop, after the last checkpoint, is not counted).
    Time the process spent stopped (SIGSTOP) is not in ``elapsed_s`` (:mod:`pointkd.train.run_clock`) for runs
    trained from a commit that has it; older runs' values include their pauses."""
    total, last = 0.0, 0.0
    for row in history:
        if row["elapsed_s"] < last:  # a resume
            total += last
        last = row["elapsed_s"]
    return total + last


def planned_epochs(folder: Path) -> int | None:
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    return int((yaml.safe_load(path.read_text()) or {}).get("train", {}).get("epochs", 0)) or None


def lock_owner(folder: Path) -> int | None:
    """PID of a live process that holds the run on this host, else None (stale locks are ignored)."""
    path = folder / LOCK
    try:
        lock = json.loads(path.read_text())
        pid = int(lock["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if lock.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def take_lock(folder: Path, pid: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK).write_text(json.dumps({"pid": pid or os.getpid(), "host": socket.gethostname()}))


def release_lock(folder: Path) -> None:
    (folder / LOCK).unlink(missing_ok=True)


def run_state(plan: Plan, spec: RunSpec, done: set[str]) -> RunState:
    """``done``: names of runs already known finished (their dependencies are judged against it)."""
    folder = plan.folder(spec)
    history = read_history(folder)
    epochs = planned_epochs(folder)
    per_epoch = train_seconds(history) / len(history) if history else None
    last_oa = next((h["test_oa"] for h in reversed(history) if "test_oa" in h), None)
    if plan.record_path(spec).is_file():
        record = json.loads(plan.record_path(spec).read_text())
        n = int(record.get("epochs", len(history)))
        return RunState(spec, "done", n, n, record.get("seconds_per_epoch"), record.get("last", {}).get("test_oa"))
    if lock_owner(folder) is not None:
        state = "running"
    elif epochs is not None and len(history) >= epochs:
        state = "trained"
    elif (folder / "last.pt").is_file():
        state = "partial"
    elif (inflight_dir(plan, spec) / "last.pt").is_file():
        state = "parked"
        history = read_history(inflight_dir(plan, spec))
        epochs = planned_epochs(inflight_dir(plan, spec))
    elif any(dep not in done for dep in spec.after):
        state = "waiting"
    else:
        state = "todo"
    return RunState(spec, state, len(history), epochs, per_epoch, last_oa)


def plan_states(plan: Plan) -> list[RunState]:
    done: set[str] = set()
    states = []
    for spec in plan.runs:
        st = run_state(plan, spec, done)
        if st.state == "done":
            done.add(spec.name)
        states.append(st)
    return states
