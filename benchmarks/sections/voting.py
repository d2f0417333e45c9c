"""docs/results.md's section for ``benchmarks/voting.py``: each committed checkpoint's single pass against test-time
voting, from the same passes (issue #29: voting is its own column, never a headline)."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import RESULTS, load, source, voting_table

RESULT = RESULTS / "voting.json"


def section(root: Path) -> list[str]:
    """A row per checkpoint: OA and mAcc with one pass and with the vote, and the difference."""
    d = load(root, RESULT)
    if not d or not d.get("rows"):
        return []
    v = d["votes"]
    intro = (
        f"`python benchmarks/voting.py`: every committed checkpoint on the whole test split at {d['points']} points, "
        f"one pass against the mean probability of {v} copies (copy 0 the cloud itself, the rest scaled per axis by "
        "0.85-1.15, seeded), from the same passes. These are the fp16 ships, so a single pass may differ from its "
        "run's fp32 record by a few clouds. Voting is reported here, never as a model's headline."
    )
    return ["### Test-time voting", "", intro, "", *voting_table(d), "", source(RESULT), ""]
