"""Run a plan: start the next unfinished run, resume interrupted ones, finish each with its evaluations, its
shipped checkpoint and a committed record. Every run trains from one fixed commit (a git worktree), so editing
the checkout while a campaign runs cannot break a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..process import cpu_model
from .inflight import discard, restore
from .plan import Plan, RunSpec
from .report import write_summary
from .state import CODE, plan_states, read_history, release_lock, take_lock, train_seconds

Log = Callable[[str], None]


class CampaignError(RuntimeError):
    """A run failed or the plan cannot proceed; the message says which and where its log is."""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


# ``--code workdir``: run this process's own pointkd source in place, no worktree (tests; checkouts without git).
WORKDIR = "workdir"


INTERRUPTED = 130  # the exit status of a pointkd command stopped by SIGINT or SIGTERM (after saving its checkpoint)


def pinned_commit(plan: Plan, rev: str | None) -> str:
    """The commit new runs train from: ``rev`` when given (and pinned from then on), else the pinned one, else
    HEAD at the first run."""
    if rev == WORKDIR:
        return WORKDIR
    path = plan.runs_dir / "campaign.json"
    pinned = json.loads(path.read_text()).get("commit") if path.is_file() else None
    if rev is None and pinned:
        return pinned
    commit = git(plan.repo, "rev-parse", "--verify", f"{rev or 'HEAD'}^{{commit}}")
    plan.runs_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"commit": commit}))
    return commit


def worktree(plan: Plan, commit: str) -> Path:
    """A detached worktree of ``commit`` under the runs folder (made once)."""
    if commit == WORKDIR:
        return Path(__file__).resolve().parents[2]
    path = plan.runs_dir / "code" / commit[:12]
    if not (path / "pointkd" / "__init__.py").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        git(plan.repo, "worktree", "add", "--force", "--detach", str(path), commit)
    return path


def child_command(code: Path, args: list[str]) -> list[str]:
    """``python -m pointkd ARGS`` importing pointkd from ``code``. Not ``-m`` itself: it puts the working directory
    (the plan's checkout, whose own ``pointkd/`` may be edited meanwhile) first on ``sys.path``, ahead of PYTHONPATH,
    and ``-P`` needs Python 3.11."""
    boot = f"import runpy, sys; sys.path[0] = {str(code)!r}; "
    boot += "runpy.run_module('pointkd', run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", boot, *args]


def pointkd_command(code: Path, args: list[str], log_path: Path, cwd: Path) -> int:
    """``python -m pointkd ARGS`` with ``code`` first on the path, run in ``cwd`` (the plan's checkout, so the data
    beside it is found as from the checkout itself), output appended to ``log_path``; SIGTERM to this process
    reaches the child as SIGINT (it saves its checkpoint and stops)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(code), os.environ.get("PYTHONPATH")) if p)}
    with open(log_path, "a") as out:
        out.write(f"\n$ pointkd {' '.join(args)}   # code {code}\n")
        out.flush()
        child = subprocess.Popen(child_command(code, args), env=env, stdout=out, stderr=out, cwd=cwd)
        previous = signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            child.wait()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)


def train_args(plan: Plan, spec: RunSpec) -> list[str]:
    config = plan.resolve(spec.config)
    args = ["train", "--config", str(config) if config.is_file() else spec.config, "--out", str(plan.folder(spec))]
    args += ["--no-progress"]
    for item in spec.set_args():
        args += ["--set", item]
    if spec.teacher:
        args += ["--set", f"distill.teacher={run_checkpoint(plan, spec.teacher)}"]
    if spec.init:
        args += ["--set", f"train.init={run_checkpoint(plan, spec.init)}"]
    if (plan.folder(spec) / "last.pt").is_file():
        args.append("--resume")
    return args


def run_checkpoint(plan: Plan, name: str) -> Path:
    """A run of the plan (its shipped copy, else its last.pt) or a checkpoint path: a teacher or a warm start."""
    if name in {r.name for r in plan.runs}:
        spec = plan.run(name)
        candidates = [plan.resolve(spec.ship)] if spec.ship else []
        candidates.append(plan.folder(spec) / "last.pt")
    else:
        candidates = [plan.resolve(name)]
    for path in candidates:
        if path.is_file():
            return path
    raise CampaignError(f"checkpoint {name!r}: none of {[str(p) for p in candidates]} exists")


def run_code(plan: Plan, spec: RunSpec, commit: str) -> tuple[str, Path]:
    """The commit a run trains from: the one it started with (``code.txt`` in its folder), else ``commit``."""
    folder = plan.folder(spec)
    stamp = folder / CODE
    if stamp.is_file():
        commit = stamp.read_text().strip()
    else:
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(commit + "\n")
    return commit, worktree(plan, commit)


def train_run(plan: Plan, spec: RunSpec, commit: str, log: Log) -> None:
    folder = plan.folder(spec)
    run_commit, code = run_code(plan, spec, commit)
    take_lock(folder)
    try:
        log(f"[{spec.name}] training from {run_commit[:12]} (log: {folder / 'train.log'})")
        rc = pointkd_command(code, train_args(plan, spec), folder / "train.log", plan.repo)
    finally:
        release_lock(folder)
    if rc == INTERRUPTED:
        log(f"[{spec.name}] stopped; its checkpoint is kept and the same command resumes it")
        raise KeyboardInterrupt(spec.name)
    if rc != 0:
        raise CampaignError(f"[{spec.name}] training exited with status {rc}; see {folder / 'train.log'}")


def evaluate_run(plan: Plan, spec: RunSpec, code: Path, checkpoint: str, points: int) -> dict[str, Any]:
    folder = plan.folder(spec)
    out = folder / f"eval-{Path(checkpoint).stem}-{points}"
    if not (out / "metrics.json").is_file():
        args = ["eval", str(folder / checkpoint), "--num-points", str(points), "--out", str(out), "--no-progress"]
        source = (_resolved_config(folder).get("data") or {}).get("source")
        args += ["--data", source] if source else []
        if pointkd_command(code, args, folder / "eval.log", plan.repo) != 0:
            raise CampaignError(f"[{spec.name}] eval at {points} points failed; see {folder / 'eval.log'}")
    m = json.loads((out / "metrics.json").read_text())
    return {"oa": m["oa"], "macc": m["macc"], "k": m.get("k"), "points": points}


def finish_run(plan: Plan, spec: RunSpec, commit: str, log: Log) -> dict[str, Any]:
    """Evaluate the last (and the best, if another) epoch at each test point count, ship, write the record."""
    folder = plan.folder(spec)
    code = worktree(plan, commit)
    history = read_history(folder)
    evals = {str(n): evaluate_run(plan, spec, code, "last.pt", n) for n in spec.eval_points}
    scored = [h for h in history if "test_oa" in h]
    seconds = train_seconds(history)
    best = max(scored, key=lambda h: h["test_oa"]) if scored else history[-1]
    record: dict[str, Any] = {
        "name": spec.name,
        "role": spec.role,
        "config": _resolved_config(folder),
        "train_commit": (folder / CODE).read_text().strip(),
        "eval_commit": commit,
        "device": cpu_model(),
        "epochs": len(history),
        "seconds": seconds,
        "seconds_per_epoch": seconds / len(history),
        "last": {"epoch": history[-1]["epoch"], "test_oa": history[-1].get("test_oa"), "evals": evals},
        "best": {"epoch": best["epoch"], "test_oa": best.get("test_oa")},
        "history": history,
    }
    if best["epoch"] != history[-1]["epoch"] and (folder / "best.pt").is_file():
        top = max(spec.eval_points)
        record["best"]["evals"] = {str(top): evaluate_run(plan, spec, code, "best.pt", top)}
    if spec.ship:
        ship = plan.resolve(spec.ship)
        ship.parent.mkdir(parents=True, exist_ok=True)
        if pointkd_command(code, ["slim", str(folder / "last.pt"), str(ship)], folder / "eval.log", plan.repo) != 0:
            raise CampaignError(f"[{spec.name}] could not write {ship}; see {folder / 'eval.log'}")
        record["shipped"] = spec.ship
    path = plan.record_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    shown = ", ".join(f"{n} points (k {e['k']}): {e['oa'] * 100:.2f} %" for n, e in evals.items())
    log(f"[{spec.name}] done: OA {shown}; record {path}")
    return record


def run_campaign(
    plan: Plan,
    rev: str | None = None,
    only: list[str] | None = None,
    max_runs: int | None = None,
    log: Log = print,
    wait_s: float | None = None,
) -> int:
    """Work through the plan until every selected run is done, running elsewhere or waiting; returns the runs
    finished. With ``wait_s``, while another process holds a run, poll every ``wait_s`` seconds instead of stopping
    (the runs that wait for it start when it is done)."""
    commit = pinned_commit(plan, rev)
    finished = 0
    while max_runs is None or finished < max_runs:
        states = [s for s in plan_states(plan) if not only or s.spec.name in only]
        ready = [s for s in states if s.state in ("todo", "partial", "parked", "trained")]
        if not ready:
            if wait_s and any(s.state == "running" for s in states):
                time.sleep(wait_s)
                continue
            break
        st = ready[0]
        started = time.monotonic()
        if st.state == "parked":
            restore(plan, st.spec, log)
        if st.state != "trained":
            train_run(plan, st.spec, commit, log)
        finish_run(plan, st.spec, commit, log)
        discard(plan, st.spec)
        write_summary(plan)
        finished += 1
        log(f"[{st.spec.name}] {time.monotonic() - started:.0f} s in this sitting")
    return finished


def _resolved_config(folder: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((folder / "config.yaml").read_text())
