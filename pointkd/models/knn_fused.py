"""kNN graphs through the fused CPU kernel of :mod:`pointkd.export.knn_op`, for torch (training and evaluation).

``knn_fused(x, k)`` has :func:`pointkd.models.knn.knn_dense`'s contract (``[B, N, C]`` -> ``[B, N, k]`` int64,
each row best first, the point itself included) but never writes the ``[B, N, N]`` scores nor calls
``torch.topk``: in a frozen teacher's forward at 32 x 512 points that top-k alone was ~37 % of the time. The kernel
ranks by the same score as the exported model,

.. math::
    s_{ij} = q_i^\\top k_j, \\qquad q_i = [x_i, 1], \\quad k_j = [x_j, -\\tfrac12 \\lVert x_j \\rVert^2]
    \\quad (= -\\tfrac12 \\lVert x_i - x_j \\rVert^2 + \\tfrac12 \\lVert x_i \\rVert^2),

so it picks the nearest ``k``; equal scores go to the lower index. Scores are rounded as ONNX Runtime's MatMul
rounds them, not as ``torch.baddbmm`` does, so on a near-tie (two neighbours within a float32 rounding) the
neighbour set can differ from ``knn_dense``'s; that is the only difference. kNN indices carry no gradient, so this
backend serves training as well as inference.

Why a hand-written kernel rather than a library: torch-cluster's CPU kNN is a KD-tree, fast on xyz but 5-6x slower
than dense in 64-d feature space (``benchmarks/studies/knn_backends/``), and torch has no fused matmul + top-k.
The library is ``libpointkd_knn_c.so`` (:func:`pointkd.export.knn_op.build.build_knn_c`), compiled once per
machine with the system C++ compiler into the user's cache and called through :mod:`ctypes` (which releases the
GIL); torch's thread count splits the rows.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from .knn_input import check_knn_input


@functools.cache
def _kernel() -> ctypes._CFuncPtr:
    from ..export.knn_op.build import build_knn_c

    fn = ctypes.CDLL(str(build_knn_c())).pointkd_knn_topk
    i64 = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, i64, i64, i64, i64, ctypes.c_int, ctypes.c_int]
    fn.argtypes += [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def knn_fused(x: Tensor, k: int) -> Tensor:
    """kNN graph ``[B, N, k]`` (int64, nearest first) of CPU points ``x`` ``[B, N, C]``; see the module docstring.
    :class:`KnnOpUnavailable` where the kernel cannot be built (no C++ compiler)."""
    check_knn_input(x, k)
    b, n, c = x.shape
    if x.device.type != "cpu":
        raise ValueError(f"the fused kNN runs on the CPU, got a tensor on {x.device}")
    fn = _kernel()
    with torch.no_grad():
        x = x.detach().float()
        query = torch.cat([x, x.new_ones(b, n, 1)], dim=-1).contiguous()
        key = torch.cat([x, -0.5 * (x * x).sum(-1, keepdim=True)], dim=-1).contiguous()
        out = torch.empty(b, n, k, dtype=torch.int64)
        error = ctypes.create_string_buffer(256)
        threads = torch.get_num_threads()
        if fn(query.data_ptr(), key.data_ptr(), b, n, c + 1, k, 1, threads, out.data_ptr(), error, 256) != 0:
            raise RuntimeError(f"fused kNN failed: {error.value.decode(errors='replace')}")
    return out
