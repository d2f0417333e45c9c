"""docs/results.md's index of the finished studies (``benchmarks/studies/<name>/``): each one's question, linked to
its folder's README (the answer, the device, the date) and result files. No numbers here: they are in the READMEs
and in the sections the studies render themselves."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import STUDIES, exists, table


def question(readme: str) -> str:
    """The README's question: its ``**Question.**`` paragraph, on one line."""
    lines = readme.split("**Question.**", 1)[1].split("\n\n", 1)[0].split()
    return " ".join(lines)


def section(root: Path) -> list[str]:
    rows = []
    for folder in sorted(p for p in (root / STUDIES).glob("*") if p.is_dir()):
        rel = STUDIES / folder.name / "README.md"
        if not exists(root, rel):
            continue
        text = (root / rel).read_text()
        if "**Question.**" in text:
            retired = " (retired: its script no longer runs)" if "**Retired**" in text else ""
            rows.append([f"[`{folder.name}`](../{rel}){retired}", question(text)])
    if not rows:
        return []
    return [
        "## Studies",
        "",
        "Finished one-question studies, each in its own folder with its script, its result files and a README "
        "giving the answer, the device and the date.",
        "",
        *table(["study", "question"], rows),
        "",
    ]
