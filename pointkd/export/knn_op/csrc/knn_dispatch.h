// What the ONNX Runtime operator (knn_op.cpp) and the plain C entry point (knn_c_api.cpp) share: the choice of
// instruction-set kernel and MLAS's K slice. No ONNX Runtime header here, so the C entry point builds without one.
#pragma once

#include <cstdint>

#include "knn_api.h"

namespace pointkd {

// The kernels for this CPU, or the ones POINTKD_KNN_ISA names (auto, avx512, avx2, generic); std::runtime_error if
// that CPU lacks them or the name is unknown.
KnnKernels choose_kernels();

// Whether MLAS's SGEMM on this CPU rounds with a fused multiply-add (the score's rounding follows it).
bool mlas_uses_fma();

// MLAS's K slice for a [n_cols x k_dim] problem (the partial sums are added in this order).
int64_t mlas_stride_k(int64_t n_cols, int64_t k_dim);

}  // namespace pointkd
