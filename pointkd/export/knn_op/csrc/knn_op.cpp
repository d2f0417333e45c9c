// ONNX Runtime custom operators of the pointkd domain: KnnTopK, the fused kNN of knn_kernel.h (see there for the math
// and why it is hand-written), and GatherMax (gather_max.cpp), registered together by RegisterCustomOps.
//
//   KnnTopK(query [B, N, D] float32, key [B, N, D] float32, seed [B, N, S] int64 (optional)) -> indices [B, N, k]
//   attributes k (int, 1 <= k <= N), sorted (int 0/1, default 1, as ONNX TopK's)
//
// indices[b, i] are the k columns j with the largest query[b, i] . key[b, j] (ties: lower j), best first unless
// sorted = 0. seed, when given, holds S >= k distinct columns per row (the previous layer's neighbours); it only
// speeds up the selection.
//
// The library does not link against onnxruntime: ORT calls RegisterCustomOps with its OrtApiBase, and the C++
// wrappers reach the API through Ort::InitApi (ORT_API_MANUAL_INIT). Work is split over rows with the session's
// intra-op thread pool (KernelContext_ParallelFor).
#include "op_util.h"

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "gather_max.h"
#include "knn_dispatch.h"
#include "knn_kernel.h"

namespace pointkd {

namespace {

constexpr const char* kDomain = "pointkd";
constexpr const char* kOpName = "KnnTopK";

void fail(const std::string& msg) { throw Ort::Exception("pointkd.KnnTopK: " + msg, ORT_INVALID_ARGUMENT); }

struct Job {
  const KnnProblem* problem;
  const KnnKernels* kern;
  float* packed;
  int64_t packed_size;
  int64_t blocks;  // row blocks per batch
};

void pack_task(void* data, size_t b) {
  const Job& job = *static_cast<const Job*>(data);
  job.kern->pack(*job.problem, static_cast<int64_t>(b), job.packed + static_cast<int64_t>(b) * job.packed_size);
}

void rows_task(void* data, size_t task) {
  const Job& job = *static_cast<const Job*>(data);
  thread_local std::vector<float> scratch;  // allocated here, in the baseline-ISA translation unit
  const size_t floats = static_cast<size_t>(job.kern->scratch_bytes(*job.problem) / sizeof(float)) + 1;
  if (scratch.size() < floats) scratch.resize(floats);
  const int64_t b = static_cast<int64_t>(task) / job.blocks;
  const int64_t i0 = (static_cast<int64_t>(task) % job.blocks) * job.kern->rows;
  job.kern->rows_block(*job.problem, b, i0, job.packed + b * job.packed_size, scratch.data());
}

// An optional int attribute: its value, or fallback where the node has none.
int64_t optional_int(const Ort::ConstKernelInfo& ki, const char* name, int64_t fallback) {
  int64_t value = fallback;
  Ort::Status status{Ort::GetApi().KernelInfoGetAttribute_int64(ki, name, &value)};
  return status.IsOK() ? value : fallback;
}

struct KnnTopKKernel {
  int64_t k = 0;
  KnnKernels kern{};
  bool fma = false;
  bool sorted = true;

  explicit KnnTopKKernel(const OrtKernelInfo* info) {
    Ort::ConstKernelInfo ki(info);
    k = ki.GetAttribute<int64_t>("k");
    if (k < 1) fail("attribute k must be >= 1, got " + std::to_string(k));
    const int64_t s = optional_int(ki, "sorted", 1);
    if (s != 0 && s != 1) fail("attribute sorted must be 0 or 1, got " + std::to_string(s));
    sorted = s == 1;
    kern = choose_kernels();
    fma = mlas_uses_fma();
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
    return status_of("pointkd.KnnTopK", [&] { Compute(raw); });
  }

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx(raw);
    Ort::ConstValue query = ctx.GetInput(0);
    Ort::ConstValue key = ctx.GetInput(1);
    Ort::ConstValue seed{nullptr};
    if (ctx.GetInputCount() > 2) seed = ctx.GetInput(2);

    const auto qinfo = query.GetTensorTypeAndShapeInfo();
    const auto kinfo = key.GetTensorTypeAndShapeInfo();
    const std::vector<int64_t> qs = qinfo.GetShape(), ks = kinfo.GetShape();
    if (qinfo.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
        kinfo.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
      fail("query and key must be float32");
    if (qs.size() != 3) fail("query must be [B, N, D], got " + shape_str(qs));
    if (ks != qs) fail("key must have the query's shape " + shape_str(qs) + ", got " + shape_str(ks));

    KnnProblem p{};
    p.batch = qs[0];
    p.n = qs[1];
    p.d = qs[2];
    p.k = k;
    if (k > p.n) fail("k = " + std::to_string(k) + " is larger than the number of points N = " + std::to_string(p.n));
    p.query = query.GetTensorData<float>();
    p.key = key.GetTensorData<float>();
    if (seed) {
      const auto sinfo = seed.GetTensorTypeAndShapeInfo();
      const std::vector<int64_t> ss = sinfo.GetShape();
      if (sinfo.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) fail("seed must be int64");
      if (ss.size() != 3 || ss[0] != p.batch || ss[1] != p.n)
        fail("seed must be [B, N, S] = [" + std::to_string(p.batch) + ", " + std::to_string(p.n) + ", S], got " +
             shape_str(ss));
      if (ss[2] < k) fail("seed needs S >= k = " + std::to_string(k) + " columns per row, got " + std::to_string(ss[2]));
      p.s = ss[2];
      p.seed = seed.GetTensorData<int64_t>();
      const int64_t count = p.batch * p.n * p.s;
      for (int64_t t = 0; t < count; ++t)
        if (p.seed[t] < 0 || p.seed[t] >= p.n)
          fail("seed index " + std::to_string(p.seed[t]) + " is outside [0, " + std::to_string(p.n) + ")");
    }
    p.stride_k = mlas_stride_k(p.n, p.d);
    p.fma = fma;
    p.sorted = sorted;

    Ort::UnownedValue out = ctx.GetOutput(0, std::vector<int64_t>{p.batch, p.n, k});
    p.out = out.GetTensorMutableData<int64_t>();
    if (p.batch == 0 || p.d == 0) {
      if (p.batch != 0)  // D = 0: every score is 0, a tie everywhere: the first k columns
        for (int64_t r = 0; r < p.batch * p.n; ++r)
          for (int64_t t = 0; t < k; ++t) p.out[r * k + t] = t;
      return;
    }

    thread_local std::vector<float> packed;
    Job job{&p, &kern, nullptr, kern.packed_size(p), (p.n + kern.rows - 1) / kern.rows};
    packed.resize(static_cast<size_t>(job.packed_size * p.batch));
    job.packed = packed.data();
    ctx.ParallelFor(&pack_task, static_cast<size_t>(p.batch), 0, &job);
    ctx.ParallelFor(&rows_task, static_cast<size_t>(p.batch * job.blocks), 0, &job);
  }
};

struct KnnTopKOp : Ort::CustomOpBase<KnnTopKOp, KnnTopKKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    return status_of("pointkd.KnnTopK", [&] { *kernel = new KnnTopKKernel(info); });
  }
  const char* GetName() const { return kOpName; }
  size_t GetInputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 2 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index == 2 ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL
                      : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64; }
};

// Domains must outlive every session that uses them.
std::mutex domains_mutex;
std::vector<Ort::CustomOpDomain>& domains() {
  static std::vector<Ort::CustomOpDomain> list;
  return list;
}

}  // namespace
}  // namespace pointkd

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    const OrtApi* old = api_base->GetApi(1);
    return old == nullptr ? nullptr
                          : old->CreateStatus(ORT_FAIL, "pointkd.KnnTopK needs onnxruntime >= 1.29 (C API 29)");
  }
  Ort::InitApi(api);
  static pointkd::KnnTopKOp knn;
  static pointkd::GatherMaxOp gather_max;
  try {
    Ort::CustomOpDomain domain{pointkd::kDomain};
    domain.Add(&knn);
    domain.Add(&gather_max);
    Ort::UnownedSessionOptions(options).Add(domain);
    std::lock_guard<std::mutex> lock(pointkd::domains_mutex);
    pointkd::domains().push_back(std::move(domain));
  } catch (const Ort::Exception& e) {
    return Ort::Status(e.what(), e.GetOrtErrorCode()).release();
  }
  return nullptr;
}
