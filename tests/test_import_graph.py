"""No import circles in the product code: every module-level or deferred import inside pointkd/ and serving/ is an
arrow, and the arrows form no loop (a deferred import in a function is still a dependency)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pointkd", "serving")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, resolved to the longest known module name."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != here:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "csrc" not in p.parts]
    known = {module_name(p) for p in files}
    return {module_name(p): imported(p, known) for p in files}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def is_package_face(module: str) -> bool:
    """An ``__init__`` only hands names on: a package importing its own submodules is no dependency loop."""
    return (ROOT / module.replace(".", "/") / "__init__.py").is_file()


def test_the_cycle_finder_finds_a_loop_and_only_loops():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_the_product_code():
    edges = graph()
    # arrows into a package face (``from ..models import DGCNN``) stand for the submodule that defines the name:
    # drop the faces' own outgoing arrows so that only module-to-module loops count
    edges = {m: deps for m, deps in edges.items() if not is_package_face(m)}
    assert "pointkd.config" in edges["pointkd.distill.kernels"]  # the graph holds the arrows it should
    assert "pointkd.distill.registry" in edges["pointkd.config"]  # deferred imports count
    assert cycles(edges) == []  # on 3e6d4c7: config <-> distill.registry and models.knn <-> models.knn_fused


def test_the_command_line_starts_without_torch():
    """Building every command's parser (what ``pointkd --help`` does) imports no heavy library: each command imports
    what it needs inside its ``run``."""
    heavy = ("torch", "numpy", "onnxruntime", "fastapi", "uvicorn")
    code = (
        "import sys\nfrom pointkd.cli import build_parser\nbuild_parser()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)!r}))"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
