"""The state of the house: how the code itself measures, for one git revision.

    python benchmarks/house.py --label now                    # the working tree
    python benchmarks/house.py --rev c4d65bf --label before   # another commit, in a temporary git worktree

Per revision: the longest functions in product code (pointkd/, serving/, calibration/: the top 10 with their
lengths, and how many are over 80 lines), README.md's line count, which ``pointkd.train*`` and
``pointkd.export.compile`` modules importing the server app loads (``python -X importtime`` in a subprocess with
that revision first on sys.path), and the number of duplicate pairs ``duplicates --most 200 --seconds 60`` reports
(null when the command is not on PATH). Each label's measurement is merged into benchmarks/results/house.json and
house.md is rewritten from it. Nothing is timed; nothing of pointkd is imported here.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "house.json"
PRODUCT = ("pointkd", "serving", "calibration")
LONG = 80  # lines
TOP = 10
SERVER_MODULE = "serving.app"
HEAVY = re.compile(r"^pointkd\.train(\.|$)|^pointkd\.export\.compile$")
DUPLICATES = ["--most", "200", "--seconds", "60"]


# ------------------------------------------------------------------ function lengths


def function_lengths(source: str, path: str) -> list[dict[str, Any]]:
    """Every function and method (nested ones too) with its length in lines, def line to last line."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append(
                    {"path": path, "name": name, "line": child.lineno, "lines": child.end_lineno - child.lineno + 1}
                )
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return out


def product_functions(tree: Path) -> list[dict[str, Any]]:
    funcs = []
    for package in PRODUCT:
        for file in sorted((tree / package).rglob("*.py")):
            rel = file.relative_to(tree).as_posix()
            try:
                funcs += function_lengths(file.read_text(), rel)
            except SyntaxError as err:  # a file mid-edit in the working tree
                print(f"warning: {rel} does not parse ({err}); left out", file=sys.stderr)
    return sorted(funcs, key=lambda f: (-f["lines"], f["path"], f["line"]))


# ------------------------------------------------------------------ the server's imports


def server_imports(tree: Path) -> dict[str, Any]:
    """Modules matching HEAVY that importing the server app loads, with `tree` first on sys.path.

    ``python -c`` with sys.path set explicitly (``-m`` would put the current directory first), run from a
    temporary folder so nothing else shadows the tree; the editable install's finder comes after sys.path."""
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); import {SERVER_MODULE} as m; "
        "import serving; print(serving.__file__)"
    )
    with tempfile.TemporaryDirectory() as cwd:
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=cwd, timeout=600
        )
    modules = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                modules.append(name)
    loaded_from = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else None
    errors = [ln for ln in result.stderr.splitlines() if not ln.startswith("import time:")]
    return {
        "module": SERVER_MODULE,
        "ok": result.returncode == 0,
        "error": None if result.returncode == 0 else "\n".join(errors[-5:]),
        "loaded_from_tree": bool(loaded_from) and Path(loaded_from).resolve().is_relative_to(tree.resolve()),
        "pointkd_modules": sum(1 for m in modules if m == "pointkd" or m.startswith("pointkd.")),
        "heavy_modules": sorted({m for m in modules if HEAVY.search(m)}),
    }


# ------------------------------------------------------------------ duplicates


def parse_duplicates(output: str) -> dict[str, Any]:
    """The pair count, files read and any `incomplete:` line from the `duplicates` command's output."""
    first = output.strip().splitlines()[0] if output.strip() else ""
    m = re.match(r"(\d+) pairs? of places \((\d+) files? read\)", first)
    n = re.match(r"no duplicates.*?\((\d+) files? read\)", first)
    incomplete = [ln for ln in output.splitlines() if ln.startswith("incomplete:")]
    return {
        "pairs": int(m.group(1)) if m else (0 if n else None),
        "files_read": int(m.group(2)) if m else (int(n.group(1)) if n else None),
        "incomplete": incomplete[0] if incomplete else None,
        "first_line": first,
    }


def duplicates(tree: Path) -> dict[str, Any] | None:
    exe = shutil.which("duplicates")
    if exe is None:
        return None
    result = subprocess.run([exe, "--repo", str(tree), *DUPLICATES], capture_output=True, text=True, timeout=900)
    return {"command": "duplicates " + " ".join(DUPLICATES), **parse_duplicates(result.stdout)}


# ------------------------------------------------------------------ one revision


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def measure(tree: Path, with_duplicates: bool = True) -> dict[str, Any]:
    funcs = product_functions(tree)
    readme = tree / "README.md"
    return {
        "functions": len(funcs),
        "functions_over_80_lines": sum(1 for f in funcs if f["lines"] > LONG),
        "longest_functions": funcs[:TOP],
        "readme_lines": len(readme.read_text().splitlines()) if readme.is_file() else None,
        "server_imports": server_imports(tree),
        "duplicates": duplicates(tree) if with_duplicates else None,
    }


def measure_rev(rev: str | None, with_duplicates: bool = True) -> dict[str, Any]:
    """The working tree (rev None) or a commit checked out in a temporary worktree, removed afterwards."""
    if rev is None:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        head = git("rev-parse", "HEAD")
        return {"rev": "working tree", "commit": head, "dirty": dirty, **measure(ROOT, with_duplicates)}
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tmp = Path(tempfile.mkdtemp(prefix="pointkd-house-"))
    tree = tmp / "tree"
    try:
        git("worktree", "add", "--detach", str(tree), commit)
        return {"rev": rev, "commit": commit, "dirty": False, **measure(tree, with_duplicates)}
    finally:
        if tree.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ report


def merge(path: Path, label: str, result: dict[str, Any]) -> dict[str, Any]:
    report = json.loads(path.read_text()) if path.is_file() else {}
    report.setdefault("format", "pointkd-house/1")
    report.setdefault("measurements", {})[label] = result
    return report


def markdown(report: dict[str, Any]) -> str:
    ms = report.get("measurements", {})
    labels = list(ms)
    lines = [
        "# House: the code's own measurements",
        "",
        "Written by `benchmarks/house.py`: product code is pointkd/, serving/ and calibration/; a function's length "
        "runs from its `def` line to its last line. Nothing here is timed.",
        "",
        "| | " + " | ".join(labels) + " |",
        "| --- |" + " ---: |" * len(labels),
    ]

    def row(what: str, values: list[Any]) -> None:
        lines.append(f"| {what} | " + " | ".join("–" if v is None else str(v) for v in values) + " |")

    def dup(m: dict, key: str) -> Any:
        return (m.get("duplicates") or {}).get(key)

    row("revision", [f"{m['rev']} (`{m['commit'][:7]}`{', modified' if m.get('dirty') else ''})" for m in ms.values()])
    row("measured", [m.get("measured_at", "")[:16] for m in ms.values()])
    row("functions", [m["functions"] for m in ms.values()])
    row(f"functions over {LONG} lines", [m["functions_over_80_lines"] for m in ms.values()])
    row(
        "longest function (lines)",
        [m["longest_functions"][0]["lines"] if m["longest_functions"] else None for m in ms.values()],
    )
    row("README.md lines", [m["readme_lines"] for m in ms.values()])
    row(
        f"`import {SERVER_MODULE}` loads",
        [
            (", ".join(f"`{x}`" for x in m["server_imports"]["heavy_modules"]) or "no training module")
            if m["server_imports"]["ok"]
            else "import failed"
            for m in ms.values()
        ],
    )
    row("duplicate pairs", [dup(m, "pairs") for m in ms.values()])
    row("duplicates: files read", [dup(m, "files_read") for m in ms.values()])
    for label, m in ms.items():
        lines += ["", f"## Longest functions: {label}", "", "| lines | function | where |", "| ---: | --- | --- |"]
        lines += [f"| {f['lines']} | `{f['name']}` | {f['path']}:{f['line']} |" for f in m["longest_functions"]]
        if dup(m, "incomplete"):
            lines += ["", f"duplicates: {dup(m, 'incomplete')} (the pair count covers only the files read)."]
        if not m["server_imports"]["ok"]:
            lines += ["", f"`import {SERVER_MODULE}` failed: `{m['server_imports']['error']}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=None, help="commit to measure (default: the working tree)")
    parser.add_argument("--label", default=None, help="name of this measurement in the report (default: the rev)")
    parser.add_argument("--out", type=Path, default=OUT, help="house.json to merge into (house.md beside it)")
    parser.add_argument("--no-duplicates", action="store_true", help="skip the duplicates command")
    args = parser.parse_args(argv)
    result = measure_rev(args.rev, with_duplicates=not args.no_duplicates)
    result["measured_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report = merge(args.out, args.label or args.rev or "working tree", result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
