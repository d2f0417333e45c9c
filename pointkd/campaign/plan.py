"""A campaign plan: an ordered list of training runs, each one config plus overrides, that may wait for others.

.. code-block:: yaml

    name: modelnet40
    records: benchmarks/results/campaign   # committed: one JSON per finished run, and the summary
    runs:
      - name: teacher_short
        config: teacher_short               # a shipped config name or a YAML path (relative to the repository)
        role: teacher
        ship: benchmarks/checkpoints/teacher_short.pt   # fp16 copy of the final weights, written when done
      - name: lsp-s1
        config: distill_campaign
        teacher: teacher_short              # a run of this plan (its shipped copy) or a checkpoint path
        set: {distill.method: lsp, seed: 1}
        after: [teacher_short]
      - name: teacher_tail1024
        config: teacher_tail1024            # a warm start: train.init from a run of this plan (listed in 'after')
        init: teacher_short                 # or a checkpoint path
        after: [teacher_short]

Run folders live outside the checkout (``runs_dir``, default ``$POINTKD_CAMPAIGNS`` or
``~/.cache/pointkd/campaigns``, then the plan's name); only the small records are committed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
EVAL_POINTS = (512, 1024)


@dataclass(frozen=True)
class RunSpec:
    name: str
    config: str
    overrides: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    teacher: str | None = None
    role: str = "student"  # teacher | student
    ship: str | None = None
    eval_points: tuple[int, ...] = EVAL_POINTS
    init: str | None = None  # train.init: a run of the plan (its shipped copy, else its last.pt) or a checkpoint

    def set_args(self) -> list[str]:
        """The overrides as ``pointkd train --set`` arguments (JSON values, which YAML reads back unchanged)."""
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]


@dataclass(frozen=True)
class Plan:
    name: str
    path: Path
    repo: Path  # the checkout the plan belongs to: configs, ship paths and records are relative to it
    runs_dir: Path
    records: Path
    runs: tuple[RunSpec, ...]

    def run(self, name: str) -> RunSpec:
        for spec in self.runs:
            if spec.name == name:
                return spec
        raise KeyError(f"no run {name!r} in plan {self.name!r}; runs: {[r.name for r in self.runs]}")

    def folder(self, spec: RunSpec) -> Path:
        return self.runs_dir / spec.name

    def record_path(self, spec: RunSpec) -> Path:
        return self.records / "records" / f"{spec.name}.json"  # not runs/: that name is git-ignored

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.repo / p


def default_runs_root() -> Path:
    return Path(os.environ.get("POINTKD_CAMPAIGNS") or Path.home() / ".cache" / "pointkd" / "campaigns")


def load_plan(path: str | Path, runs_dir: str | Path | None = None) -> Plan:
    """Read and check a plan file: unique names, known keys, dependencies that name earlier runs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"plan {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("runs"), list) or not raw["runs"]:
        raise ConfigError(f"{path}: a plan is a mapping with a non-empty 'runs' list")
    unknown = set(raw) - {"name", "records", "runs_dir", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown plan key(s) {sorted(unknown)}")
    name = str(raw.get("name") or path.stem)
    repo = _repo_root(path)
    runs = _parse_runs(raw["runs"], path)
    root = Path(runs_dir or raw.get("runs_dir") or default_runs_root() / name).expanduser()
    records = Path(raw.get("records", f"benchmarks/results/campaign/{name}"))
    return Plan(name, path.resolve(), repo, root, records if records.is_absolute() else repo / records, runs)


def _parse_runs(items: list[Any], path: Path) -> tuple[RunSpec, ...]:
    keys = {"name", "config", "set", "after", "teacher", "role", "ship", "eval_points", "init"}
    runs: list[RunSpec] = []
    for i, item in enumerate(items):
        where = f"{path}: run {i + 1}"
        if not isinstance(item, dict) or "name" not in item or "config" not in item:
            raise ConfigError(f"{where}: each run needs at least 'name' and 'config'")
        if set(item) - keys:
            raise ConfigError(f"{where}: unknown key(s) {sorted(set(item) - keys)}; valid: {sorted(keys)}")
        name = str(item["name"])
        if not _NAME.match(name) or name in {r.name for r in runs}:
            raise ConfigError(f"{where}: run name {name!r} is not a unique file-safe name")
        after = tuple(str(a) for a in item.get("after", []))
        missing = [a for a in after if a not in {r.name for r in runs}]
        if missing:
            raise ConfigError(f"{where}: 'after' names {missing}, which are not earlier runs of the plan")
        role = str(item.get("role", "student"))
        if role not in ("teacher", "student"):
            raise ConfigError(f"{where}: role must be teacher or student, got {role!r}")
        overrides = item.get("set") or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: 'set' must be a mapping of config keys to values")
        points = tuple(int(p) for p in item.get("eval_points", EVAL_POINTS))
        teacher, init = item.get("teacher"), item.get("init")
        if init in {r.name for r in runs} and init not in after:
            raise ConfigError(f"{where}: 'init' starts from run {init!r}: list it in 'after' too")
        spec = RunSpec(name, str(item["config"]), dict(overrides), after, teacher, role, item.get("ship"), points, init)
        runs.append(spec)
    return tuple(runs)


def _repo_root(path: Path) -> Path:
    for parent in path.resolve().parents:
        if (parent / ".git").exists():
            return parent
    return path.resolve().parent
