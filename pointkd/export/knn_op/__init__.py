"""The fused custom operators for ONNX Runtime (CPU), ``pointkd.KnnTopK`` and ``pointkd.GatherMax``, one library, its
build and the graph rewrites (the session that loads it: :mod:`pointkd.runtime.knn_op`).

``KnnTopK(query [B, N, D], key [B, N, D], seed [B, N, S]?) -> indices [B, N, k]`` replaces each exported kNN's score
MatMul and TopK (seeded or not) with one kernel that never writes the ``[B, N, N]`` scores, computes each score with
the same float32 rounding as ONNX Runtime's MatMul and selects the TopK's own neighbour set (ties: lower index). See
``csrc/knn_kernel.h`` for the math, :func:`build_knn_op` for the build, :func:`fuse_knn` for the rewrite.

``GatherMax(data [R, C], index [..., k]) -> [..., C]`` replaces each EdgeConv's neighbour Gather + ReduceMax, which
wrote and read back a ``[B, N, k, C]`` tensor (``csrc/gather_max.cpp``, :mod:`.fuse_gather_max`).
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
