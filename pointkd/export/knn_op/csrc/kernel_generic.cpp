// Portable path of the fused kNN (baseline flags, GCC vector extensions; the compiler picks the SIMD it may).
// Used where neither AVX2+FMA nor AVX-512 exists, and forced with POINTKD_KNN_ISA=generic to test the others.
#include "knn_kernel.h"

namespace pointkd {
namespace {

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

struct Generic {
  static constexpr int W = 8;
  using T = v8f;
  static T zero() { return T{}; }
  static T set1(float x) { return T{x, x, x, x, x, x, x, x}; }
  static T load(const float* p) {
    T x;
    std::memcpy(&x, p, sizeof(T));
    return x;
  }
  static void store(float* p, T x) { std::memcpy(p, &x, sizeof(T)); }
  static T fma(T a, T b, T c) {
    T r;
    for (int l = 0; l < W; ++l) r[l] = std::fma(a[l], b[l], c[l]);  // one rounding (libm or the instruction)
    return r;
  }
  static T mul(T a, T b) { return a * b; }  // built with -ffp-contract=off: never fused with the add
  static T add(T a, T b) { return a + b; }
  static T max_keep(T x, T acc) { return x > acc ? x : acc; }
  static uint32_t ge_mask(T x, float tau) {
    const v8i m = x >= set1(tau);
    uint32_t bits = 0;
    for (int l = 0; l < W; ++l) bits |= (m[l] != 0 ? 1u : 0u) << l;
    return bits;
  }
  static int compress(T x, uint32_t mask, int32_t j, float* vals, int32_t* idx) {
    int m = 0;
    for (int l = 0; l < W; ++l)
      if (mask & (1u << l)) {
        vals[m] = x[l];
        idx[m++] = j + l;
      }
    return m;
  }
};

}  // namespace

KnnKernels knn_kernels_generic() { return Kernel<Generic, 4, 2>::kernels("generic"); }

}  // namespace pointkd
