"""The fused kNN custom operator for ONNX Runtime (CPU): ``pointkd.KnnTopK``, its build and graph rewrite (the
session that loads it: :mod:`pointkd.runtime.knn_op`).

``KnnTopK(query [B, N, D], key [B, N, D], seed [B, N, S]?) -> indices [B, N, k]`` replaces each exported kNN's score
MatMul and TopK (seeded or not) with one kernel that never writes the ``[B, N, N]`` scores, computes each score with
the same float32 rounding as ONNX Runtime's MatMul and selects the TopK's own neighbour set (ties: lower index). See
``csrc/knn_kernel.h`` for the math, :func:`build_knn_op` for the build, :func:`fuse_knn` for the rewrite.
"""

from .build import LIBRARY, build_knn_op
from .fuse import DOMAIN, OP_TYPE, FusedKnn, fuse_knn

__all__ = [
    "DOMAIN",
    "LIBRARY",
    "OP_TYPE",
    "FusedKnn",
    "build_knn_op",
    "fuse_knn",
]
