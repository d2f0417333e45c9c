"""Park an unfinished run's resume state in the committed records, and restore it on another machine.

A run folder lives outside the checkout and can vanish with the machine. :func:`park` copies what a resume needs
(``last.pt`` with its optimizer, position and history; ``best.pt``; ``config.yaml``; ``code.txt``, the commit it
trains from) into ``<records>/inflight/<run>/``, which is committed at a session's stop. When the runner finds
the run's folder without a checkpoint and a parked copy exists, :func:`restore` lays it back and the run resumes
where it was saved. ``metrics.jsonl`` is rebuilt from the checkpoint's own history, so it matches the checkpoint
even when the live file had moved on past it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .plan import Plan, RunSpec
from .state import CODE, inflight_dir, plan_states

FILES = ("last.pt", "best.pt", "config.yaml", CODE)
MAX_MB = 8.0  # a student's state (last.pt + best.pt) is ~1.6 MB; a teacher's (~30 MB) is sized to a session instead


def park(plan: Plan, max_mb: float = MAX_MB, log=print) -> list[str]:
    """Copy every started, unrecorded run's resume state into the records; returns the runs parked. A state over
    ``max_mb`` is skipped with a message (commit weights over a few MB nowhere)."""
    parked = []
    for st in plan_states(plan):
        folder = plan.folder(st.spec)
        if st.state == "done" or not (folder / "last.pt").is_file():
            continue
        files = [folder / name for name in FILES if (folder / name).is_file()]
        mb = sum(f.stat().st_size for f in files) / 2**20
        if mb > max_mb:
            log(f"[{st.spec.name}] not parked: its state is {mb:.1f} MB (> {max_mb:g} MB)")
            continue
        dest = inflight_dir(plan, st.spec)
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, dest / f.name)  # last.pt is replaced atomically by the trainer: a copy is whole
        (dest / "metrics.jsonl").write_text(_history_lines(dest / "last.pt"))
        parked.append(st.spec.name)
        log(f"[{st.spec.name}] parked at epoch {st.epochs_done}/{st.epochs} ({mb:.1f} MB) in {dest}")
    return parked


def restore(plan: Plan, spec: RunSpec, log=print) -> bool:
    """Lay a parked state back into the run's folder when the folder has no checkpoint; True if it did."""
    src, folder = inflight_dir(plan, spec), plan.folder(spec)
    if (folder / "last.pt").is_file() or not (src / "last.pt").is_file():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*FILES, "metrics.jsonl"):
        if (src / name).is_file():
            shutil.copy2(src / name, folder / name)
    log(f"[{spec.name}] restored its parked state from {src}")
    return True


def discard(plan: Plan, spec: RunSpec) -> None:
    """A finished run's parked state is obsolete: its record and shipped checkpoint replace it."""
    shutil.rmtree(inflight_dir(plan, spec), ignore_errors=True)


def _history_lines(checkpoint: Path) -> str:
    from ..checkpoint import load_checkpoint  # torch: only when parking

    history = load_checkpoint(checkpoint).get("history", [])
    return "".join(json.dumps(entry) + "\n" for entry in history)
