"""The loss registry: every distillation loss is a named, weighted *term*, built from a config spec.

A run's objective is a list of term specs (``distill.terms``), each a mapping with the registered loss name, its
weight and the loss's own options::

    terms:
      - {loss: ce, weight: 0.9}
      - {loss: kd, weight: 0.1, temperature: 4}
      - {loss: lsp, weight: 100, kernel: rbf, sigma: 1.0}

.. math::
    \\mathcal{L} = \\sum_i w_i \\, \\mathcal{L}_i

Each :class:`Term` subclass is registered with :func:`register_loss`; its ``__init__`` keywords (after the teacher
and the student) are the options a spec may set, so an unknown or missing key is an error before anything is
built (:func:`check_spec`). A spec may carry ``name`` to log the term under another name than its loss (two LSP
terms with different kernels, say). The method names of ``distill.method`` are presets over these terms
(:mod:`.presets`, :data:`PRESETS`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn

from ..errors import ConfigError
from ..models import DGCNN
from ..models.dgcnn import DGCNNOutput


@dataclass
class TeacherOutput:
    features: list[Tensor]  # per teacher layer computed, [B, N, C_l]
    graphs: list[Tensor]  # per teacher layer computed, [B, N, k_t]
    logits: Tensor | None = None  # [B, K], when a term reads the head
    embedding: Tensor | None = None  # [B, D], when a term reads the head


@dataclass
class StepOutputs:
    """What a term reads in one step: both models' outputs on the same ``points`` ``[B, N, 3]``."""

    student: DGCNNOutput
    teacher: TeacherOutput
    points: Tensor
    labels: Tensor  # [B]


class Term(nn.Module):
    """One weighted loss of an objective: ``forward(StepOutputs) -> scalar`` (unweighted; the objective multiplies
    by :attr:`weight`). Subclasses say what of the teacher they read: :attr:`reads_head` (logits and embedding)
    and :meth:`deepest_teacher_layer` (``-1``: no EdgeConv layer)."""

    reads_head: ClassVar[bool] = False
    reads_teacher: ClassVar[bool] = True

    def __init__(self, weight: float):
        super().__init__()
        self.weight = float(weight)

    def deepest_teacher_layer(self) -> int:
        return -1

    def forward(self, out: StepOutputs) -> Tensor:
        raise NotImplementedError


LOSSES: dict[str, type[Term]] = {}
# A preset reads a pointkd.config.DistillSection; typed Any: config checks specs against this registry, and an
# import of config from here would close a loop
PresetFn = Callable[[Any], list[dict[str, Any]]]
PRESETS: dict[str, PresetFn] = {}
_NOT_OPTIONS = ("self", "teacher", "student")
T = TypeVar("T", bound=type[Term])


def _registrar(table: dict[str, Any], kind: str, name: str) -> Callable[[Any], Any]:
    """A decorator that files what it decorates in ``table`` under ``name``, once."""

    def register(obj: Any) -> Any:
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered ({table[name].__name__})")
        table[name] = obj
        return obj

    return register


def register_loss(name: str) -> Callable[[T], T]:
    """Class decorator: register a :class:`Term` subclass under ``name`` (the ``loss`` key of a spec)."""
    return _registrar(LOSSES, "loss", name)


def register_preset(name: str) -> Callable[[PresetFn], PresetFn]:
    """Function decorator: register a ``distill.method`` preset, a function of the flat ``distill.*`` fields that
    returns term specs."""
    return _registrar(PRESETS, "preset", name)


def loss_options(loss: str) -> dict[str, Any]:
    """The options of a registered loss with their defaults (``inspect.Parameter.empty`` when required)."""
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; registered: {sorted(LOSSES)}")
    params = inspect.signature(LOSSES[loss].__init__).parameters.values()
    return {p.name: p.default for p in params if p.name not in _NOT_OPTIONS}


def check_spec(spec: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless ``spec`` names a registered loss and sets only (and all required of) its
    options."""
    if not isinstance(spec, Mapping) or "loss" not in spec:
        raise ConfigError(f"a distill term is a mapping with a 'loss' key, got {spec!r}")
    options = loss_options(spec["loss"])
    unknown = set(spec) - set(options) - {"loss", "name"}
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)} for loss {spec['loss']!r}; valid: {sorted(options)}")
    missing = [k for k, v in options.items() if v is inspect.Parameter.empty and k not in spec]
    if missing:
        raise ConfigError(f"loss {spec['loss']!r} needs {missing}")


def term_name(spec: Mapping[str, Any]) -> str:
    return str(spec.get("name") or spec["loss"])


def build_loss(spec: Mapping[str, Any], teacher: DGCNN, student: DGCNN) -> Term:
    """The :class:`Term` a spec describes, for this teacher and student (their widths and depths size the
    learned heads and the layer map)."""
    check_spec(spec)
    options = {k: v for k, v in spec.items() if k not in ("loss", "name")}
    return LOSSES[spec["loss"]](teacher, student, **options)
