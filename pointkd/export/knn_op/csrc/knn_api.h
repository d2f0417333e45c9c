// The interface between the ONNX Runtime glue (knn_op.cpp, baseline flags) and the per-instruction-set kernels
// (kernel_*.cpp, each compiled with its own -m flags). Plain structs and function pointers only: nothing here
// instantiates code that the linker could merge across translation units built for different CPUs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pointkd {

struct KnnProblem {
  const float* query;   // [B, N, D]
  const float* key;     // [B, N, D]
  const int64_t* seed;  // [B, N, S] or nullptr
  int64_t batch, n, d, s, k;
  int64_t stride_k;  // MLAS's K slice (D when D <= 128)
  bool fma;          // the score's rounding: fused multiply-add (MLAS's FMA3/AVX-512 kernels) or mul then add
  bool sorted;       // each row's k indices best first (else in no particular order: the same set)
  int64_t* out;      // [B, N, k]
};

// One instruction set's implementation: packs each batch's key, then scores and selects blocks of rows.
struct KnnKernels {
  const char* name;
  int64_t rows;                                 // rows per block (the register tile's height)
  int64_t (*packed_size)(const KnnProblem&);    // floats of packed key per batch
  int64_t (*scratch_bytes)(const KnnProblem&);  // a thread's working memory for one block
  void (*pack)(const KnnProblem&, int64_t b, float* packed);
  // Rows [i0, i0 + rows) of batch b; scratch: scratch_bytes, float-aligned, this thread's own.
  void (*rows_block)(const KnnProblem&, int64_t b, int64_t i0, const float* packed, void* scratch);
};

}  // namespace pointkd
