// Kernel dispatch shared by the ONNX Runtime operator and the C entry point (see knn_dispatch.h).
#include "knn_dispatch.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace pointkd {

KnnKernels knn_kernels_generic();
#if defined(__x86_64__)
KnnKernels knn_kernels_avx2();
KnnKernels knn_kernels_avx512();
#endif

// Does MLAS's SGEMM on this CPU round a*b+c once (FMA) or twice? On x86-64 its FMA3 kernel needs AVX2 and FMA
// (AVX-512F implies both); without them its SSE/AVX kernels multiply, then add. AArch64 kernels fuse.
bool mlas_uses_fma() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(__aarch64__)
  return true;
#else
  return false;
#endif
}

// The implementation to run: POINTKD_KNN_ISA = auto (default) | avx512 | avx2 | generic. All give the same bits.
KnnKernels choose_kernels() {
  const char* env = std::getenv("POINTKD_KNN_ISA");
  const std::string want = env == nullptr ? "auto" : env;
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
  if (want == "avx512") {
    if (!avx512) throw std::runtime_error("POINTKD_KNN_ISA=avx512 but this CPU has no AVX-512F");
    return knn_kernels_avx512();
  }
  if (want == "avx2") {
    if (!avx2) throw std::runtime_error("POINTKD_KNN_ISA=avx2 but this CPU lacks AVX2 or FMA");
    return knn_kernels_avx2();
  }
  if (want == "auto") return avx512 ? knn_kernels_avx512() : avx2 ? knn_kernels_avx2() : knn_kernels_generic();
#else
  if (want == "auto") return knn_kernels_generic();
#endif
  if (want == "generic") return knn_kernels_generic();
  throw std::runtime_error("POINTKD_KNN_ISA must be auto, avx512, avx2 or generic, got '" + want + "'");
}

// MLAS's K slice for an [M, K] x [K, N] SGEMM (MlasSgemmOperation): StrideK = 128, halved while StrideK / 2 >= K
// when N >= K (so a single slice whenever K <= 128), doubled while StrideN > 16 and StrideN / 2 >= N otherwise.
int64_t mlas_stride_k(int64_t n_cols, int64_t k_dim) {
  int64_t stride_n = 128, stride_k = 128;
  if (n_cols >= k_dim) {
    while (stride_k / 2 >= k_dim) {
      stride_n *= 2;
      stride_k /= 2;
    }
  } else {
    while (stride_n > 16 && stride_n / 2 >= n_cols) {
      stride_k *= 2;
      stride_n /= 2;
    }
  }
  return stride_k;
}

}  // namespace pointkd
