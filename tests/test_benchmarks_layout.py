"""benchmarks/ says what it holds: every maintained script and every study has its line in benchmarks/README.md, and
every study's folder has its script, a result file and a README giving the question, the answer, the device and
the date; every section module docs/results.md is assembled from exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def test_benchmarks_readme_lists_every_script_and_study():
    text = (BENCH / "README.md").read_text()
    listed = set(re.findall(r"\]\(([^)\s]+)\)", text))
    scripts = {p.name for p in BENCH.glob("*.py")} | {p.name for p in BENCH.glob("*.sh")}
    assert not scripts - listed, f"benchmarks/README.md does not list {sorted(scripts - listed)}"
    studies = {f"studies/{p.name}/" for p in (BENCH / "studies").iterdir() if p.is_dir()}
    assert not studies - listed, f"benchmarks/README.md does not list {sorted(studies - listed)}"


def test_every_study_keeps_its_script_results_and_readme():
    for folder in sorted(p for p in (BENCH / "studies").iterdir() if p.is_dir()):
        readme = (folder / "README.md").read_text()
        for part in ("**Question.**", "**Answer.**", "Device:", "Result"):
            assert part in readme, f"{folder.name}/README.md has no {part}"
        assert re.search(r"20\d\d-\d\d-\d\d", readme), f"{folder.name}/README.md gives no date"
        retired = "retired" in readme.lower()
        assert retired or (folder / f"{folder.name}.py").is_file(), f"{folder.name}: no script and not retired"
        assert list(folder.rglob("*.json")), f"{folder.name}: no result file"


def test_the_assembler_finds_every_section_it_lists():
    text = (ROOT / "scripts" / "results_doc.py").read_text()
    for name in re.findall(r'part\("([^"]+)"\)', text):
        if name.startswith("study:"):
            path = BENCH / "studies" / name.split(":", 1)[1] / "section.py"
        else:
            path = BENCH / "sections" / f"{name}.py"
        assert path.is_file(), f"results_doc.py lists {name}, but {path.relative_to(ROOT)} is missing"
