"""Park an unfinished run's resume state in the committed records, and restore it on another machine.

A run folder lives outside the checkout and can vanish with the machine. :func:`park` copies what a resume needs
(``last.pt`` with its optimizer, position and history; ``best.pt``; ``config.yaml``; ``code.txt``, the commit it
trains from) into ``<records>/inflight/<run>/``, which is committed at a session's stop. When the runner finds
the run's folder without a checkpoint and a parked copy exists, :func:`restore` lays it back and the run resumes
where it was saved. ``metrics.jsonl`` is rebuilt from the checkpoint's own history, so it matches the checkpoint
even when the live file had moved on past it.

A state over the size cap (a teacher's: ~28 MB with ``best.pt``) is parked compact when that fits: ``last.pt``
alone with its tensors in fp16 (:func:`pointkd.checkpoint.half_resume_state`; a 1.8 M-parameter teacher's weights
and momentum in ~7 MB). Its run resumes from fp16-rounded weights, close to but not bit for bit where it stopped,
and without ``best.pt`` (the headline is the last epoch; ``best.pt`` is written again at the next best epoch).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .plan import Plan, RunSpec
from .state import CODE, inflight_dir, plan_states

FILES = ("last.pt", "best.pt", "config.yaml", CODE)
MAX_MB = 8.0  # a student's state (last.pt + best.pt) is ~1.6 MB; a teacher's parks compact (~7 MB)
COMPACT = "compact.json"  # in a parked folder: its last.pt is the fp16 form, and from what size
STAGING = ".parking"  # a new parked state is built beside the old one and swapped in when it is whole and fits


def park(plan: Plan, max_mb: float = MAX_MB, log=print) -> list[str]:
    """Copy every started, unrecorded run's resume state into the records; returns the runs parked. A state over
    ``max_mb`` is parked compact if that fits, else skipped with a message (commit weights over a few MB nowhere)."""
    parked = []
    for st in plan_states(plan):
        folder = plan.folder(st.spec)
        if st.state == "done" or not (folder / "last.pt").is_file():
            continue
        dest = inflight_dir(plan, st.spec)
        staging = dest.with_name(dest.name + STAGING)
        files = [folder / name for name in FILES if (folder / name).is_file()]
        mb = sum(f.stat().st_size for f in files) / 2**20
        how = f"{mb:.1f} MB"
        if mb > max_mb:
            small = _park_compact(folder, staging, [f for f in files if f.name not in ("last.pt", "best.pt")], mb)
            if small > max_mb:
                shutil.rmtree(staging, ignore_errors=True)
                kept = "its earlier parked state is kept" if (dest / "last.pt").is_file() else "nothing is parked"
                log(
                    f"[{st.spec.name}] not parked: its state is {mb:.1f} MB, {small:.1f} MB compact "
                    f"(> {max_mb:g} MB); {kept}"
                )
                continue
            how = f"compact: {small:.1f} MB of {mb:.1f}, fp16, no best.pt"
        else:
            _copy_into(staging, files)
        (staging / "metrics.jsonl").write_text(_history_lines(staging / "last.pt"))
        _swap_in(staging, dest)
        parked.append(st.spec.name)
        log(f"[{st.spec.name}] parked at epoch {st.epochs_done}/{st.epochs} ({how}) in {dest}")
    return parked


def _swap_in(staging: Path, dest: Path) -> None:
    """Replace the earlier stop's parked state with the one built in ``staging``, only once that one is whole."""
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)


def _copy_into(dest: Path, files: list[Path]) -> None:
    """``dest`` holding exactly ``files`` (a stale folder of a crashed park is replaced whole)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, dest / f.name)  # last.pt is replaced atomically by the trainer: a copy is whole


def _park_compact(folder: Path, dest: Path, others: list[Path], full_mb: float) -> float:
    """Park ``folder``'s last.pt in fp16, without best.pt, beside ``others``; returns the parked size in MB."""
    from ..checkpoint import half_resume_state, load_checkpoint, save_checkpoint  # torch: only when parking

    _copy_into(dest, others)
    save_checkpoint(half_resume_state(load_checkpoint(folder / "last.pt")), dest / "last.pt")
    mb = sum(f.stat().st_size for f in dest.iterdir()) / 2**20
    (dest / COMPACT).write_text(json.dumps({"mb": round(mb, 2), "full_mb": round(full_mb, 2)}) + "\n")
    return mb


def restore(plan: Plan, spec: RunSpec, log=print) -> bool:
    """Lay a parked state back into the run's folder when the folder has no checkpoint; True if it did."""
    src, folder = inflight_dir(plan, spec), plan.folder(spec)
    if (folder / "last.pt").is_file() or not (src / "last.pt").is_file():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*FILES, "metrics.jsonl"):
        if (src / name).is_file():
            shutil.copy2(src / name, folder / name)
    compact = " (compact: fp16 weights, no best.pt)" if (src / COMPACT).is_file() else ""
    log(f"[{spec.name}] restored its parked state from {src}{compact}")
    return True


def discard(plan: Plan, spec: RunSpec) -> None:
    """A finished run's parked state is obsolete: its record and shipped checkpoint replace it."""
    shutil.rmtree(inflight_dir(plan, spec), ignore_errors=True)


def _history_lines(checkpoint: Path) -> str:
    from ..checkpoint import load_checkpoint  # torch: only when parking

    history = load_checkpoint(checkpoint).get("history", [])
    return "".join(json.dumps(entry) + "\n" for entry in history)
