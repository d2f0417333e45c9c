// AVX2 + FMA path of the fused kNN (compiled with -mavx2 -mfma; chosen at run time only where the CPU has both).
#include <immintrin.h>

#include "knn_kernel.h"

namespace pointkd {
namespace {

// For each 8-bit mask, the lanes set in it in order (then zeros): the permutation that left-packs them.
struct PackTable {
  alignas(32) int32_t lanes[256][8];
  constexpr PackTable() : lanes() {
    for (int m = 0; m < 256; ++m) {
      int n = 0;
      for (int l = 0; l < 8; ++l)
        if (m & (1 << l)) lanes[m][n++] = l;
    }
  }
};
constexpr PackTable kPack{};

struct Avx2 {
  static constexpr int W = 8;
  using T = __m256;
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  // vmaxps returns its second operand when either is NaN (or both are zeros): a NaN x keeps acc.
  static T max_keep(T x, T acc) { return _mm256_max_ps(x, acc); }
  static uint32_t ge_mask(T x, float tau) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_set1_ps(tau), _CMP_GE_OQ)));
  }
  static int compress(T x, uint32_t mask, int32_t j, float* vals, int32_t* idx) {
    const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPack.lanes[mask]));
    _mm256_storeu_ps(vals, _mm256_permutevar8x32_ps(x, perm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx), _mm256_add_epi32(perm, _mm256_set1_epi32(j)));
    return __builtin_popcount(mask);
  }
};

}  // namespace

// 6 rows x 16 columns: 12 accumulators, 2 key vectors and a broadcast in the 16 ymm registers (as MLAS's FMA3).
KnnKernels knn_kernels_avx2() { return Kernel<Avx2, 6, 2>::kernels("avx2"); }

}  // namespace pointkd
