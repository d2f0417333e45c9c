// Fused kNN: score MatMul + exact top-k selection per row, without a [B, N, N] tensor.
//
// Why this is written by hand: ONNX Runtime has no operator that fuses a MatMul with a TopK, and no library op
// reproduces ONNX Runtime's own float32 score bits (needed for the same neighbour sets on near-ties). The
// exported kNN (pointkd/export/deploy_model.py: knn_topk) is
//     score[b, i, j] = query[b, i, :] . key[b, j, :]          query = [x, 1], key = [x, -1/2 |x|^2]
//     indices[b, i, :] = TopK(score[b, i, :], k)               (largest, unsorted)
// and this kernel computes the same score, element by element bit-identical to MLAS's SGEMM on the same CPU:
// one FMA chain over d (d = 0, 1, ..., D-1, starting from +0) per element, or a multiply then an add where MLAS
// has no FMA kernel (x86 without AVX2+FMA), split into K slices of MLAS's StrideK (only when D > 128) whose partial
// sums are added in order. Then it selects the k best of each row in the total order
//     (score descending, index ascending)
// which is what ONNX Runtime's TopK selects (its comparator breaks equal values by the lower index; the ONNX spec
// says the same), so the neighbour *set* is the TopK's, ties included. Selection is exact and two-pass:
//   1. a lower bound tau on the row's k-th best score: the minimum score of the seed (the previous layer's k
//      neighbours: any k distinct entries of the row have a minimum <= the k-th best), or without a seed the k-th
//      largest of M >= k lane maxima (M disjoint strided subsets of the row: k of their maxima are k distinct
//      entries >= that value);
//   2. every j with score >= tau is a candidate (a vector compare, usually 10-30 of N); the k best candidates in
//      the total order are the answer. If fewer than k candidates pass (a seed with duplicates, or NaN scores) the
//      row is redone with tau = -inf, so a bad seed costs time, never exactness. NaN scores are never selected
//      unless a row has fewer than k numbers (then the first NaN columns fill it).
// The output lists each row's k indices in that total order (best first), or, with sorted = false (the exported
// TopK's own setting), the same set in no particular order: sorting k indices cost a fifth of the operator.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>

#include "knn_api.h"

namespace pointkd {
// Everything below has internal linkage (an anonymous namespace in each kernel_*.cpp that includes it), so the
// copies compiled for different instruction sets never meet in the linker.
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// A candidate as one integer whose descending order is TopK's total order (larger score first, equal scores by the
// lower index): the score's bits mapped to an unsigned integer of the same order, then the complemented index.
// Sorting these keys compares integers (no NaN branches): candidates are never NaN. Scores are never -0 (every FMA
// chain starts from +0), and v + 0 maps a -0 to +0 anyway so that equal scores stay equal.
inline uint64_t order_key(float v, int64_t j) {
  uint32_t u;
  v += 0.0f;
  std::memcpy(&u, &v, sizeof(u));
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << 32) | static_cast<uint32_t>(~static_cast<uint32_t>(j));
}

inline int64_t key_index(uint64_t key) { return static_cast<int64_t>(~static_cast<uint32_t>(key)); }

// Writes the k best of keys[0, c) to out, best first if sorted; c >= k.
inline void take_best(uint64_t* keys, int64_t c, int64_t k, bool sorted, int64_t* out) {
  if (c > k) std::nth_element(keys, keys + (k - 1), keys + c, std::greater<uint64_t>());
  if (sorted) std::sort(keys, keys + k, std::greater<uint64_t>());
  for (int64_t t = 0; t < k; ++t) out[t] = key_index(keys[t]);
}

// Scalar fallback for a row whose bound failed (fewer than k candidates): every number is a candidate; NaN columns
// fill the row in index order only if it has fewer than k numbers.
inline void select_row_slow(const float* s, int64_t n, int64_t k, uint64_t* keys, int64_t* out) {
  int64_t c = 0;
  for (int64_t j = 0; j < n; ++j)
    if (!std::isnan(s[j])) keys[c++] = order_key(s[j], j);
  if (c >= k) {
    take_best(keys, c, k, true, out);
    return;
  }
  std::sort(keys, keys + c, std::greater<uint64_t>());
  for (int64_t t = 0; t < c; ++t) out[t] = key_index(keys[t]);
  for (int64_t j = 0; j < n && c < k; ++j)
    if (std::isnan(s[j])) out[c++] = j;
}

// V: a vector traits struct with
//   static constexpr int W; using T;
//   T zero(); T set1(float); T load(const float*); void store(float*, T);
//   T fma(T a, T b, T c) /* a*b+c, one rounding */; T mul(T, T); T add(T, T);
//   T max_keep(T x, T acc) /* x > acc ? x : acc, lane-wise; NaN x keeps acc */;
//   uint32_t ge_mask(T x, float tau) /* bit l set iff x[l] >= tau (false for NaN) */
//   int compress(T x, uint32_t mask, int32_t j, float* vals, int32_t* idx)
//     /* the lanes l set in mask, in order, to vals[0, m) and j + l to idx[0, m); m = popcount(mask) is returned;
//        may write all W slots of both (branch-free left-packing) */
template <class V, int RB, int NV>
struct Kernel {
  static_assert(V::W % 2 == 0, "the keys after the float scratch need 8-byte alignment");
  static constexpr int W = V::W;
  static constexpr int PW = NV * W;  // panel width

  static int64_t panels(const KnnProblem& p) { return (p.n + PW - 1) / PW; }
  static int64_t npad(const KnnProblem& p) { return panels(p) * PW; }
  static int64_t packed_size(const KnnProblem& p) { return panels(p) * p.d * PW; }

  // key[b] [N, D] -> panels [N/PW][D][PW], zero columns past N.
  static void pack(const KnnProblem& p, int64_t b, float* packed) {
    const float* key = p.key + b * p.n * p.d;
    const int64_t np = panels(p);
    for (int64_t q = 0; q < np; ++q) {
      float* dst = packed + q * p.d * PW;
      const int64_t j0 = q * PW;
      const int64_t cols = min64(PW, p.n - j0);
      for (int64_t dd = 0; dd < p.d; ++dd) {
        float* row = dst + dd * PW;
        for (int64_t c = 0; c < cols; ++c) row[c] = key[(j0 + c) * p.d + dd];
        for (int64_t c = cols; c < PW; ++c) row[c] = 0.0f;
      }
    }
  }

  // scores[r][0, PW) for RB query rows (row pointers q[r]) and one key panel, over d in [d0, d1):
  // first slice stores, later slices add (as MLAS's non-zero mode does with alpha = 1).
  template <bool FMA>
  static inline void tile(const float* const* q, const float* panel, int64_t d0, int64_t d1, float* c, int64_t ldc,
                          int rows, bool first) {
    typename V::T acc[RB][NV];
    for (int r = 0; r < RB; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
    for (int64_t dd = d0; dd < d1; ++dd) {
      typename V::T bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = V::load(panel + dd * PW + v * W);
      for (int r = 0; r < RB; ++r) {
        const typename V::T a = V::set1(q[r][dd]);
        for (int v = 0; v < NV; ++v) {
          if constexpr (FMA)
            acc[r][v] = V::fma(a, bv[v], acc[r][v]);
          else
            acc[r][v] = V::add(acc[r][v], V::mul(a, bv[v]));
        }
      }
    }
    for (int r = 0; r < rows; ++r)
      for (int v = 0; v < NV; ++v) {
        float* dst = c + r * ldc + v * W;
        V::store(dst, first ? acc[r][v] : V::add(V::load(dst), acc[r][v]));
      }
  }

  template <bool FMA>
  static void scores(const KnnProblem& p, int64_t b, int64_t i0, int rows, const float* packed, float* s,
                     int64_t ld) {
    const float* q[RB];
    for (int r = 0; r < RB; ++r) q[r] = p.query + (b * p.n + i0 + min64(r, rows - 1)) * p.d;
    const int64_t np = panels(p);
    for (int64_t pi = 0; pi < np; ++pi) {
      const float* panel = packed + pi * p.d * PW;
      for (int64_t d0 = 0; d0 < p.d; d0 += p.stride_k)
        tile<FMA>(q, panel, d0, min64(p.d, d0 + p.stride_k), s + pi * PW, ld, rows, d0 == 0);
    }
  }

  // k-th largest of the lane maxima of row s[0, np) (np a multiple of W), or -inf when there are fewer than k.
  static float lane_bound(const float* s, int64_t np, int64_t k, float* slots) {
    constexpr int A = 4;  // accumulators: 4 W lanes of disjoint strided subsets
    constexpr int M = A * W;
    if (k > M || np < M) return -std::numeric_limits<float>::infinity();
    typename V::T acc[A];
    for (int a = 0; a < A; ++a) acc[a] = V::set1(-std::numeric_limits<float>::infinity());
    int64_t j = 0;
    for (; j + M <= np; j += M)
      for (int a = 0; a < A; ++a) acc[a] = V::max_keep(V::load(s + j + a * W), acc[a]);
    for (; j < np; j += W) acc[0] = V::max_keep(V::load(s + j), acc[0]);
    for (int a = 0; a < A; ++a) V::store(slots + a * W, acc[a]);
    std::nth_element(slots, slots + (k - 1), slots + M, [](float x, float y) { return x > y; });
    return slots[k - 1];
  }

  // Working memory of one block: RB score rows of npad floats, 4 W lane slots, npad keys, then the candidates'
  // values and indices (npad + W each: compress may write W slots past the last candidate).
  struct Scratch {
    float* scores;
    float* slots;
    uint64_t* keys;
    float* vals;
    int32_t* idx;
  };

  static int64_t scratch_bytes(const KnnProblem& p) {
    const int64_t np = npad(p);
    return static_cast<int64_t>((RB * np + 4 * W) * sizeof(float) + np * sizeof(uint64_t) +
                                (np + W) * (sizeof(float) + sizeof(int32_t)));
  }

  static Scratch carve(const KnnProblem& p, void* raw) {
    const int64_t np = npad(p);
    Scratch sc{};
    sc.scores = static_cast<float*>(raw);
    sc.slots = sc.scores + RB * np;
    sc.keys = reinterpret_cast<uint64_t*>(sc.slots + 4 * W);  // 8-byte aligned: RB * np + 4 W is even
    sc.vals = reinterpret_cast<float*>(sc.keys + np);
    sc.idx = reinterpret_cast<int32_t*>(sc.vals + np + W);
    return sc;
  }

  // Candidates: every column with score >= tau, left-packed without a branch per vector (which half the time
  // mispredicted: a row's 10-30 candidates fall in unpredictable vectors); then the k best of them.
  static void select(const KnnProblem& p, const float* s, int64_t np, float tau, const Scratch& sc, int64_t* out) {
    int64_t c = 0;
    for (int64_t j = 0; j < np; j += W) {
      const typename V::T x = V::load(s + j);
      c += V::compress(x, V::ge_mask(x, tau), static_cast<int32_t>(j), sc.vals + c, sc.idx + c);
    }
    if (c < p.k) {
      select_row_slow(s, p.n, p.k, sc.keys, out);
      return;
    }
    for (int64_t t = 0; t < c; ++t) sc.keys[t] = order_key(sc.vals[t], sc.idx[t]);
    take_best(sc.keys, c, p.k, p.sorted, out);
  }

  static void rows_block(const KnnProblem& p, int64_t b, int64_t i0, const float* packed, void* scratch) {
    const int rows = static_cast<int>(min64(RB, p.n - i0));
    const int64_t np = npad(p);
    const Scratch sc = carve(p, scratch);
    float* s = sc.scores;
    if (p.fma)
      scores<true>(p, b, i0, rows, packed, s, np);
    else
      scores<false>(p, b, i0, rows, packed, s, np);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int r = 0; r < rows; ++r) {
      float* row = s + r * np;
      for (int64_t j = p.n; j < np; ++j) row[j] = nan;  // padding columns are never candidates
      const int64_t i = i0 + r;
      float tau;
      if (p.seed != nullptr) {
        const int64_t* seed = p.seed + (b * p.n + i) * p.s;
        tau = std::numeric_limits<float>::infinity();
        for (int64_t t = 0; t < p.s; ++t) {
          const float v = row[seed[t]];
          if (v < tau) tau = v;  // NaN seeds are skipped
        }
        if (tau == std::numeric_limits<float>::infinity()) tau = -tau;
      } else {
        tau = lane_bound(row, np, p.k, sc.slots);
      }
      select(p, row, np, tau, sc, p.out + (b * p.n + i) * p.k);
    }
  }

  static KnnKernels kernels(const char* name) {
    return KnnKernels{name, RB, &packed_size, &scratch_bytes, &pack, &rows_block};
  }
};

}  // namespace
}  // namespace pointkd
