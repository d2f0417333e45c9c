"""Run configuration: one YAML file describes a run (model, data, optimisation, seed).

Shipped configs live in ``pointkd/configs/`` and are found by name (``--config teacher_cpu``) or by path.
Unknown keys are an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# The choice lists that the CLI's flags, the configs and the torch code share, here because this module is torch-free
KERNELS = ("rbf", "poly", "linear", "l2")  # LSP kernels
SIGMA_RULES = ("fixed", "median")  # the RBF bandwidth rule of pointkd.distill.kernels
CLASS_WEIGHT_RULES = ("none", "inverse_sqrt", "inverse")  # cross-entropy class weights (pointkd.train.class_weights)
PRECISIONS = ("fp32", "bf16")  # training precision (pointkd.models.precision)


@dataclass
class ModelSection:
    name: str = "dgcnn_teacher"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    source: str | None = None  # None: --data, $POINTKD_DATA, or the shared copy beside the checkout
    num_points: int = 1024  # points per training cloud (random subset each step)
    eval_num_points: int | None = None  # points per test cloud (a fixed subset); None = num_points
    jitter_sigma: float = 0.0
    rotate_up: bool = False
    # Corruption-style augmentations (pointkd.data.transforms.TrainAugment), off at these defaults:
    stretch: float = 1.0  # per-axis scale U(1/s, s), then back to the unit sphere (ModelNet-C scale)
    outliers: int = 0  # up to this many points per cloud replaced by uniform points in the unit ball
    drop_global: float = 0.0  # drop a U(0, r) fraction of the points, repeat the rest back to num_points
    drop_local: int = 0  # drop up to this many points in 1..7 clusters, repeat the rest back
    corrupt_fraction: float = 1.0  # the share of each batch's clouds that get the four above (each cloud by chance)

    @property
    def eval_points(self) -> int:
        return self.eval_num_points or self.num_points


@dataclass
class TrainSection:
    epochs: int = 250
    batch_size: int = 32
    lr: float = 0.1
    lr_min: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.2
    class_weights: str = "none"  # none | inverse_sqrt | inverse: cross-entropy weight per class from its train count
    swa_epochs: int = 0  # average the weights at the ends of the last N epochs (SWA); BatchNorm re-estimated after
    eval_every: int = 1  # epochs between test-split evaluations (the last epoch always evaluates)
    eval_batch_size: int = 64
    checkpoint_minutes: float = 10.0  # also save mid-epoch this often, so a crash loses little
    max_batches_per_epoch: int | None = None  # cap for smoke runs and benchmarks
    threads: int | None = None  # torch intra-op threads; None = all cores
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda; under torchrun, cuda:<LOCAL_RANK>
    sync_bn: bool = False  # torchrun on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm)
    init: str | None = None  # start from this checkpoint's weights (same model config); optimizer and schedule anew
    precision: str = "fp32"  # fp32 | bf16: the training forward under bf16 autocast (pointkd.models.precision)


# The distill fields that only parameterise the ``distill.method`` presets (pointkd.distill.presets); a config with
# ``distill.terms`` gives these in its terms instead.
_SHARED_DISTILL_FIELDS = ("teacher", "method", "terms", "share_first_graph", "layer_map", "layer_weights")


@dataclass
class DistillSection:
    """Distillation from a frozen teacher: either a ``method`` preset with its flat parameters below, or a list of
    ``terms`` of the loss registry (see :mod:`pointkd.distill.registry` and :mod:`pointkd.distill.presets`)."""

    teacher: str | None = None  # the teacher's pointkd checkpoint
    method: str | None = None  # a preset (`pointkd distill --list-methods`); None: lsp, or distill.terms when given
    terms: list[dict[str, Any]] | None = None  # [{loss: lsp, weight: 100, kernel: rbf, ...}, {loss: kd, ...}]
    share_first_graph: bool = True  # student's xyz kNN graph = the first k of the teacher's (one top-k, not two)
    layer_map: list[list[int]] | None = None  # [[teacher_layer, student_layer], ...]; None: every n-th layer
    layer_weights: list[float] | None = None  # one per layer pair; None: all 1
    # The presets' parameters:
    kernel: str = "rbf"  # LSP kernel: rbf | poly | linear | l2
    sigma: float = 1.0  # rbf bandwidth (sigma_rule fixed)
    sigma_rule: str = "fixed"  # fixed | median: per layer pair, the median teacher distance over the compared edges
    lsp_normalize: bool = False  # LSP kernels on L2-normalised features
    degree: int = 2  # poly degree
    coef: float = 0.0  # poly offset
    lsp_lambda: float = 100.0  # the paper's λ
    lsp_impl: str = "padded"  # padded | sparse | dense (reference)
    lsp_direction: str = "student||teacher"
    lsp_centres: int | None = None  # LSP over this many random centre nodes per step (unbiased); None: all
    kd_alpha: float = 0.1
    kd_temperature: float = 4.0
    fitnet_weight: float = 1.0
    at_weight: float = 1000.0
    hkd_weight: float = 1.0  # β of CE + β·L_HOL
    hkd_dim: int = 128  # shared embedding size of the TAGCN heads
    hkd_k: int = 4  # instance-graph neighbours within a batch
    hkd_queue: int = 4096  # rows of each memory bank
    hkd_temperature: float = 0.1
    stride_weight: float = 1.0  # layer_attention (first named stride): its weight β
    stride_dim: int = 64
    stride_rank: int | None = None  # low-rank embedding subspace; None: the full stride_dim
    stride_embedding_weight: float = 1.0
    stride_structural_weight: float = 100.0  # on the LSP term, as LSP's own λ

    @property
    def preset(self) -> str:
        """The preset this section names (``lsp`` when none); meaningless when ``terms`` is set."""
        return self.method or "lsp"

    @property
    def needs_teacher(self) -> bool:
        return self.terms is not None or self.preset != "scratch"

    def validate(self) -> None:
        """Checks that need no files; the teacher checkpoint is checked when the run starts."""
        if self.terms is not None:
            self._validate_terms()
        else:
            from .distill.registry import PRESETS  # the registry imports torch: only when a config is checked

            if self.preset not in PRESETS:
                raise ConfigError(f"distill.method must be one of {sorted(PRESETS)}, got {self.method!r}")
        if self.sigma_rule not in SIGMA_RULES:
            raise ConfigError(f"distill.sigma_rule must be one of {SIGMA_RULES}, got {self.sigma_rule!r}")
        if self.lsp_centres is not None and self.lsp_centres < 1:
            raise ConfigError(f"distill.lsp_centres must be >= 1 or null (all), got {self.lsp_centres}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ConfigError(f"distill.kd_alpha must be in [0, 1], got {self.kd_alpha}")

    def _validate_terms(self) -> None:
        from .distill.registry import LOSSES, check_spec, term_name

        if self.method is not None:
            raise ConfigError(
                f"distill.method ({self.method!r}) and distill.terms are both set: give a preset or terms "
                "(e.g. --set distill.method=null)"
            )
        preset_fields = [f for f in dataclasses.fields(self) if f.name not in _SHARED_DISTILL_FIELDS]
        changed = [f.name for f in preset_fields if getattr(self, f.name) != f.default]
        if changed:
            raise ConfigError(f"distill.{changed} parameterise the distill.method presets; with terms, set them there")
        if not isinstance(self.terms, list) or not self.terms:
            raise ConfigError(f"distill.terms must be a non-empty list of term specs, got {self.terms!r}")
        for spec in self.terms:
            check_spec(spec)
        names = [term_name(spec) for spec in self.terms]
        if len(set(names)) != len(names):
            raise ConfigError(f"distill.terms: two terms share a name in {names}; give one a 'name'")
        if not any(LOSSES[spec["loss"]].reads_teacher for spec in self.terms):
            raise ConfigError("distill.terms read nothing from the teacher; train without one (method: scratch)")


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    distill: DistillSection | None = None
    seed: int = 1
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        raw = dict(raw or {})
        sections = {"model": ModelSection, "data": DataSection, "train": TrainSection, "distill": DistillSection}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value or {}, key)
            elif key in ("seed", "name"):
                kwargs[key] = value
            else:
                raise ConfigError(f"unknown config key {key!r}; valid: model, data, train, distill, seed, name")
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        t, d = self.train, self.data
        checks = [
            (t.epochs >= 1, "train.epochs must be >= 1"),
            (t.batch_size >= 2, "train.batch_size must be >= 2 (BatchNorm needs 2 samples)"),
            (t.lr > 0 and 0 <= t.lr_min <= t.lr, "need 0 <= train.lr_min <= train.lr and lr > 0"),
            (0 <= t.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
            (d.num_points >= 1, "data.num_points must be >= 1"),
            (d.stretch >= 1, "data.stretch must be >= 1 (1: off)"),
            (0 <= d.outliers <= d.num_points, "data.outliers must be in 0..data.num_points"),
            (0 <= d.drop_global < 1, "data.drop_global must be in [0, 1)"),
            (
                0 <= d.drop_local < d.num_points - math.floor(d.num_points * d.drop_global),
                "data.drop_local must leave at least one point after data.drop_global",
            ),
            (0 < d.corrupt_fraction <= 1, "data.corrupt_fraction must be in (0, 1]"),
            (t.eval_every >= 1, "train.eval_every must be >= 1"),
            (t.class_weights in CLASS_WEIGHT_RULES, f"train.class_weights must be one of {CLASS_WEIGHT_RULES}"),
            (0 <= t.swa_epochs <= t.epochs, "train.swa_epochs must be in 0..train.epochs"),
            (t.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.distill is not None:
            self.distill.validate()


def _build(kind: type, values: dict[str, Any], section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section {section!r} must be a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in section {section!r}; valid: {sorted(names)}")
    return kind(**values)


def shipped_configs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("pointkd.configs").iterdir() if p.name.endswith(".yaml"))


def load_config(name_or_path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load a shipped config by name or a YAML file by path, then apply ``key.sub=value`` overrides."""
    raw: dict[str, Any] = {}
    if name_or_path:
        path = Path(name_or_path)
        if path.suffix not in (".yaml", ".yml") and not path.exists():
            if str(name_or_path) not in shipped_configs():
                raise ConfigError(
                    f"no config {name_or_path!r}: not a file, and shipped configs are {shipped_configs()}"
                )
            text = resources.files("pointkd.configs").joinpath(f"{name_or_path}.yaml").read_text()
        else:
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist")
            text = path.read_text()
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{name_or_path}: invalid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{name_or_path}: top level must be a mapping")
    for item in overrides or []:
        _apply_override(raw, item)
    return RunConfig.from_dict(raw)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p!r} is not a section")
    node[parts[-1]] = yaml.safe_load(value)
