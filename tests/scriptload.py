"""A script of the checkout (benchmarks/*.py, scripts/*.py) loaded as a module, for tests of its functions."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path, name: str, register: Callable[[str, ModuleType], None] | None = None) -> ModuleType:
    """``path`` executed as module ``name``; ``register(name, module)`` runs first where the script needs to find
    itself in ``sys.modules`` (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if register is not None:
        register(name, module)
    spec.loader.exec_module(module)
    return module
