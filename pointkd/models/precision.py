"""Training precision: ``"fp32"``, or ``"bf16"`` mixed precision (``torch.autocast`` with bfloat16).

Under ``"bf16"`` a model's forward runs in an autocast region: its dense matmuls (the per-point EdgeConv matrices
``W_1 x``, ``(W_2 - W_1) x``, the teacher's ``ΣC_l -> 1024`` embedding and the head) take bfloat16 inputs, and
everything else stays fp32:

* EdgeConv upcasts its two per-point products at once and does the edge part in fp32 with autocast off
  (:meth:`pointkd.models.edgeconv.EdgeConv.forward_fast`): the closed-form BatchNorm moments, whose second
  moment is a difference of sums that bf16's 8-bit mantissa would cancel away; the CSR SpMM, which has no bf16
  kernel on the CPU; and the neighbour max / argmax, whose one-SpMM argmax needs fp32's spare mantissa bits (in
  bf16 it falls back to a gather + max over ``[B, N, k, C]``, 37 % of a bf16 teacher step). bf16 -> fp32 is exact
  and keeps the order, so the max picks the same neighbour as it would in bf16. Its output, so the next layer's
  kNN graph, is fp32.
* The losses see fp32: :func:`as_float` casts a forward's outputs back at the region's end, since CPU autocast
  keeps ``softmax`` (LSP's kernel distributions) in bf16.
* Weights, gradients, optimizer state and checkpoints are fp32 (autocast casts copies); evaluation runs in fp32.

bfloat16 has fp32's exponent range, so no loss scaling is needed. Measured on an AVX-512 BF16 CPU
(``benchmarks/studies/bf16_autocast``): a teacher step at 1024 points 1.31x faster on Zen 4, 1.60x on Zen 5;
the small students 1.04-1.06x.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import Tensor

from ..config import PRECISIONS

T = TypeVar("T")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device_type: str = "cpu") -> Iterator[None]:
    """An autocast region for ``precision`` on ``device_type`` (``"fp32"``: none)."""
    if check_precision(precision) == "fp32":
        yield
        return
    with torch.autocast(device_type, dtype=torch.bfloat16):
        yield


def as_float(value: T) -> T:
    """``value`` with every floating tensor in it cast to fp32: tensors, lists, tuples, dicts and dataclasses
    (:class:`~pointkd.models.DGCNNOutput`) are walked; integer tensors (kNN graphs) and other values pass as they
    are. Differentiable: the gradient flows back to the lower-precision tensor."""
    return _as_float(value)


def _as_float(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, list | tuple):
        return type(value)(_as_float(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_float(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _as_float(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **fields)
    return value


def forward_in(precision: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in ``precision``'s autocast region (on the device of the first tensor argument),
    its outputs cast to fp32 (:func:`as_float`)."""
    if check_precision(precision) == "fp32":
        return fn(*args, **kwargs)
    device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
    with autocast(precision, device):
        out = fn(*args, **kwargs)
    return as_float(out)


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX-512 BF16 or AMX), from ``flags`` (/proc/cpuinfo names;
    default: this CPU's); without them oneDNN emulates bf16 and a bf16 step is slower than fp32."""
    if flags is None:
        from ..bench.device import cpu_flags  # here: called once per run, and keeps bench out of model imports

        flags = set(cpu_flags(NATIVE_BF16_FLAGS))
    return bool(set(NATIVE_BF16_FLAGS) & flags)
