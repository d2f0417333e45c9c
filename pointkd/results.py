"""The pieces every section of docs/results.md is written with: which result files count, reading them, links and
Markdown tables.

``scripts/results_doc.py`` assembles the document from sections that each benchmark or study renders beside its own
code (``section(root) -> list[str]``, the section's Markdown lines); they all read the committed JSON under
``benchmarks/results/`` and ``benchmarks/studies/`` through :func:`load` / :func:`glob`, so a file git does not
track yet is left out (and named by :func:`untracked_results`). Torch-free: the generator imports no model code.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path("benchmarks/results")  # the maintained benchmarks' and the commands' result files
STUDIES = Path("benchmarks/studies")  # finished one-question studies: benchmarks/studies/<name>/ with their results
RESULT_ROOTS = (RESULTS, STUDIES)

_TRACKED: dict[Path, set[Path] | None] = {}


def _git_files(root: Path, *extra: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", *extra, "--", *map(str, RESULT_ROOTS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [p for p in out.split("\0") if p]


def tracked(root: Path) -> set[Path] | None:
    """The result files git tracks in root (None outside a git checkout: every file counts). A file the campaign or
    a benchmark has just written counts once it is added, so the documents follow what is committed."""
    if root not in _TRACKED:
        try:
            files = _git_files(root)
            _TRACKED[root] = {Path(p) for p in files} if (root / ".git").exists() else None
        except (OSError, subprocess.CalledProcessError):
            _TRACKED[root] = None
    return _TRACKED[root]


def untracked_results(root: Path) -> list[str]:
    """Result JSON files under benchmarks/results/ and benchmarks/studies/ that git does not track yet: the documents
    leave them out until they are added (empty outside a git checkout)."""
    try:
        files = _git_files(root, "--others", "--exclude-standard")
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(p for p in files if p.endswith(".json"))


def exists(root: Path, rel: Path | str) -> bool:
    known = tracked(root)
    return (root / rel).is_file() and (known is None or Path(rel) in known)


def glob(root: Path, pattern: str, under: Path = RESULTS) -> list[Path]:
    """Result files matching pattern under ``under`` (benchmarks/results/ by default), relative to root, sorted."""
    return sorted(p.relative_to(root) for p in (root / under).glob(pattern) if exists(root, p.relative_to(root)))


def load(root: Path, rel: Path | str) -> Any | None:
    """A committed result file's JSON (None when it is missing or not tracked)."""
    return json.loads((root / rel).read_text()) if exists(root, rel) else None


def device_dirs(root: Path, name: str, under: Path = RESULTS) -> list[Path]:
    """``<under>/<device-id>/<name>``, relative to root, sorted."""
    return glob(root, f"*/{name}", under)


def repo_path(path: Path, root: Path) -> str:
    """``path`` relative to the repository ``root`` where it lies inside it, else as given resolved (result files
    name the committed files they measured so, whatever the working directory)."""
    path = path.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def link(rel: Path | str) -> str:
    """A Markdown link from docs/ to a file of the repository."""
    return f"[`{rel}`](../{rel})"


def source(*rels: Path | str) -> str:
    return "Source: " + ", ".join(link(r) for r in rels) + "."


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}"


def num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def mean_sd(values: list[float]) -> str:
    """Percent, with the standard deviation when there are several seeds (as the campaign summary writes it)."""
    from pointkd.campaign.report import pct as campaign_pct

    return campaign_pct(values, empty="–")


def table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    """Markdown table; align is one letter per column (l or r), left by default."""
    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not - or _), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def voting_table(d: dict[str, Any]) -> list[str]:
    """``benchmarks/voting.py``'s result as a table: a row per checkpoint, OA and mAcc with one pass and with the
    vote, and the OA difference (the script's Markdown and docs/results.md both render it here)."""
    v, rows = d["votes"], []
    for r in d["rows"]:
        s, m = r["single"], r["voting"]
        cells = [pct(s["oa"]), pct(s["macc"]), pct(m["oa"]), pct(m["macc"]), signed((m["oa"] - s["oa"]) * 100)]
        rows.append([f"`{r['run']}`", r["model"], r["k"], *cells])
    header = ["checkpoint", "model", "k", "OA", "mAcc", f"OA, {v} votes", f"mAcc, {v} votes", "ΔOA"]
    return table(header, rows, "llrrrrrr")


def per_class_lines(d: dict[str, Any], command: str = "python benchmarks/per_class.py") -> list[str]:
    """The served student's accuracy per class beside its teacher's, worst difference first, from
    ``benchmarks/per_class.py``'s report ``d``: the paragraph and the table (no heading, no source line), the one
    rendering of that report (its own Markdown and docs/results.md's section)."""
    t, s = d["teacher"], d["student"]
    lines = [
        f"`{command}`: the whole test split at {d['points']} points, no voting. Teacher "
        f"`{Path(t['checkpoint']).name}` (k {t['k']}) OA {pct(t['oa'])} / mAcc {pct(t['macc'])}; served student "
        f"`{Path(s['checkpoint']).name}` (k {s['k']}) OA {pct(s['oa'])} / mAcc {pct(s['macc'])}. Sorted by the "
        "difference, the student's worst classes first; with 4 to 100 test clouds a class, read the counts.",
        "",
    ]
    rows = [
        [
            r["class"],
            r["clouds"],
            f"{r['teacher']} ({r['teacher'] / r['clouds'] * 100:.1f} %)",
            f"{r['student']} ({r['student'] / r['clouds'] * 100:.1f} %)",
            signed(r["delta"] * 100),
        ]
        for r in d["rows"]
    ]
    return lines + table(["class", "test clouds", "teacher correct", "student correct", "Δ points"], rows, "lrrrr")


def section_module(code: Path, name: str) -> Any:
    """The section module of a maintained benchmark or command (``benchmarks/sections/<name>.py``) or, as
    ``study:<name>``, of a study (``benchmarks/studies/<name>/section.py``), in the checkout ``code``."""
    if name.startswith("study:"):
        study = name.split(":", 1)[1]
        return load_section(code / STUDIES / study / "section.py", f"results_study_{study}")
    return load_section(code / "benchmarks" / "sections" / f"{name}.py", f"results_section_{name}")


def load_section(path: Path, name: str) -> Any:
    """The module at ``path`` (a study's ``section.py``, a benchmark script) loaded as ``name``, for its
    ``section(root)``."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
