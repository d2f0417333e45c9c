// The fused kNN as a plain C function, for callers outside ONNX Runtime: pointkd.models.knn_fused calls it through
// ctypes to build training's kNN graphs (no [B, N, N] score tensor, no torch.topk). Same kernels and neighbour sets
// as the pointkd.KnnTopK operator (knn_op.cpp); the work is split over std::threads instead of ONNX Runtime's pool.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "knn_dispatch.h"

namespace pointkd {
namespace {

// Runs task(i) for i in [0, count) on up to `threads` threads (the caller's among them). A helper thread that cannot
// be started leaves its share to the others; an exception in a task stops the loop and is rethrown here after every
// thread has been joined (never std::terminate from a joinable thread or an exception escaping one).
template <class F>
void parallel_for(int64_t count, int threads, F&& task) {
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&]() noexcept {
    try {
      for (int64_t i = next++; i < count; i = next++) task(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next = count;
    }
  };
  const int helpers = static_cast<int>(std::min<int64_t>(std::max(threads, 1), count)) - 1;
  std::vector<std::thread> pool;
  for (int t = 0; t < helpers; ++t) {
    try {
      pool.emplace_back(work);
    } catch (const std::exception&) {
      break;
    }
  }
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

void run(KnnProblem& p, int threads) {
  const KnnKernels kern = choose_kernels();
  p.stride_k = mlas_stride_k(p.n, p.d);
  p.fma = mlas_uses_fma();
  const int64_t packed_size = kern.packed_size(p);
  const int64_t blocks = (p.n + kern.rows - 1) / kern.rows;
  std::vector<float> packed(static_cast<size_t>(packed_size * p.batch));
  parallel_for(p.batch, threads, [&](int64_t b) { kern.pack(p, b, packed.data() + b * packed_size); });
  const size_t floats = static_cast<size_t>(kern.scratch_bytes(p) / static_cast<int64_t>(sizeof(float))) + 1;
  parallel_for(p.batch * blocks, threads, [&](int64_t task) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < floats) scratch.resize(floats);
    const int64_t b = task / blocks;
    kern.rows_block(p, b, (task % blocks) * kern.rows, packed.data() + b * packed_size, scratch.data());
  });
}

}  // namespace
}  // namespace pointkd

// indices[b, i, :] = the k largest query[b, i, :] . key[b, j, :] over j (ties to the lower j), best first when
// sorted != 0. query, key: [batch, n, d] float32, C order; out: [batch, n, k] int64. Returns 0, or -1 with a
// message in error (error_size bytes) and out unspecified.
extern "C" __attribute__((visibility("default"))) int pointkd_knn_topk(const float* query, const float* key,
                                                                         int64_t batch, int64_t n, int64_t d,
                                                                         int64_t k, int sorted, int threads,
                                                                         int64_t* out, char* error,
                                                                         size_t error_size) {
  try {
    if (batch < 0 || n < 1 || d < 1 || k < 1 || k > n) throw std::runtime_error("need batch >= 0, n, d >= 1, 1 <= k <= n");
    pointkd::KnnProblem p{};
    p.query = query;
    p.key = key;
    p.seed = nullptr;
    p.batch = batch;
    p.n = n;
    p.d = d;
    p.s = 0;
    p.k = k;
    p.sorted = sorted != 0;
    p.out = out;
    if (batch > 0) pointkd::run(p, threads);
    return 0;
  } catch (const std::exception& e) {
    if (error != nullptr && error_size > 0) std::snprintf(error, error_size, "%s", e.what());
    return -1;
  }
}
