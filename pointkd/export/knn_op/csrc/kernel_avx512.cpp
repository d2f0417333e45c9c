// AVX-512 path of the fused kNN (compiled with -mavx512f -mavx512vl -mavx2 -mfma; chosen at run time only where
// the CPU and the OS support AVX-512F). Per element it computes the same FMA chain as the AVX2 path: bit-identical.
#include <immintrin.h>

#include "knn_kernel.h"

namespace pointkd {
namespace {

struct Avx512 {
  static constexpr int W = 16;
  using T = __m512;
  static T zero() { return _mm512_setzero_ps(); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T max_keep(T x, T acc) { return _mm512_max_ps(x, acc); }  // second operand on NaN, as vmaxps
  static uint32_t ge_mask(T x, float tau) {
    return static_cast<uint32_t>(_mm512_cmp_ps_mask(x, _mm512_set1_ps(tau), _CMP_GE_OQ));
  }
  // Compress into a register, then a full store (a compress straight to memory is microcoded on some CPUs).
  static int compress(T x, uint32_t mask, int32_t j, float* vals, int32_t* idx) {
    const __mmask16 m = static_cast<__mmask16>(mask);
    const __m512i lanes = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(j));
    _mm512_storeu_ps(vals, _mm512_maskz_compress_ps(m, x));
    _mm512_storeu_si512(idx, _mm512_maskz_compress_epi32(m, lanes));
    return __builtin_popcount(mask);
  }
};

}  // namespace

// 12 rows x 32 columns: 24 accumulators, 2 key vectors and a broadcast in the 32 zmm registers (as MLAS's AVX512F).
KnnKernels knn_kernels_avx512() { return Kernel<Avx512, 12, 2>::kernels("avx512"); }

}  // namespace pointkd
