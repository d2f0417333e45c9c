// ONNX Runtime custom operator pointkd.GatherMax: an EdgeConv's neighbour gather and max (and its tail) in one pass.
//
//   GatherMax(data [R, C] float32, index [..., k] int64, centre [..., C] float32?, bias [C] float32?) -> [..., C]
//   attribute negative_slope (float, optional)
//   m[p, c] = max over t = 0..k-1 of data[index[p, t], c]        (p runs over index's leading dimensions)
//   out = m                                      without centre
//   out = m + centre   or   m + (centre + bias)  with centre (and bias), each + rounded once, in that order
//   then LeakyReLU(out) = out >= 0 ? out : negative_slope * out  where the attribute is given
//
// It replaces the exported Gather(data, Reshape(index, [-1]), axis=0) -> Reshape([..., k, C]) -> ReduceMax(axis -2,
// keepdims=0) (pointkd/export/deploy_model.py: DeployEdgeConv), which writes and reads back a [B, N, k, C] tensor,
// and with it the Add of the centre term (a MatMul and its bias Add) and the LeakyRelu that follow.
// The max folds the k rows in index order as acc = (v > acc) ? v : acc from acc = the first row: on numbers that is
// ONNX Runtime's ReduceMax on that axis bit for bit (of equal values, +0 and -0 included, the first is kept). A NaN
// among the k values makes the output NaN. (ONNX Runtime's ReduceMax has no one rule for NaN: which NaN survives
// depends on its position and on the tensor's shape, which picks the kernel. NaN never reaches here from a checked
// upload.) The tail's adds and LeakyReLU are single IEEE operations, as ONNX Runtime's Add and LeakyRelu.
// Why hand-written: ONNX has no gather-reduce operator, and ONNX Runtime fuses neither Gather nor ReduceMax.
#include "gather_max.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace pointkd {
namespace {

void fail(const std::string& msg) { throw Ort::Exception("pointkd.GatherMax: " + msg, ORT_INVALID_ARGUMENT); }

struct Job {
  const float* data;
  const int64_t* index;
  const float* centre;  // [rows, c] or nullptr
  const float* bias;    // [c] or nullptr
  float* out;
  int64_t rows, c, k;
  bool leaky;
  float slope;
};

inline float tail(const Job& job, int64_t p, int64_t ch, float m) {
  if (job.centre != nullptr) {
    float t = job.centre[p * job.c + ch];
    if (job.bias != nullptr) t = t + job.bias[ch];
    m = m + t;
  }
  if (job.leaky && !(m >= 0.0f)) m = job.slope * m;
  return m;
}

constexpr int64_t kRowsPerTask = 64;

// out[p] = the tail of the fold of the k data rows index[p, :]. _mm_max_ps(v, acc) is (v > acc) ? v : acc lane-wise;
// lanes that met a NaN are set to all ones (a NaN) at the end.
void rows_task(void* raw, size_t task) {
  const Job& job = *static_cast<const Job*>(raw);
  const int64_t p0 = static_cast<int64_t>(task) * kRowsPerTask;
  const int64_t p1 = p0 + kRowsPerTask < job.rows ? p0 + kRowsPerTask : job.rows;
  const int64_t c = job.c;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t* idx = job.index + p * job.k;
    float* o = job.out + p * c;
    const float* first = job.data + idx[0] * c;
    int64_t ch = 0;
#if defined(__SSE2__)
    const __m128 zero = _mm_setzero_ps(), slope = _mm_set1_ps(job.slope);
    for (; ch + 4 <= c; ch += 4) {
      __m128 acc = _mm_loadu_ps(first + ch);
      __m128 nan = _mm_cmpunord_ps(acc, acc);
      for (int64_t t = 1; t < job.k; ++t) {
        const __m128 v = _mm_loadu_ps(job.data + idx[t] * c + ch);
        nan = _mm_or_ps(nan, _mm_cmpunord_ps(v, v));
        acc = _mm_max_ps(v, acc);
      }
      if (job.centre != nullptr) {
        __m128 t = _mm_loadu_ps(job.centre + p * c + ch);
        if (job.bias != nullptr) t = _mm_add_ps(t, _mm_loadu_ps(job.bias + ch));
        acc = _mm_add_ps(acc, t);
      }
      if (job.leaky) {
        const __m128 neg = _mm_cmpnge_ps(acc, zero);  // not (acc >= 0): negative or NaN
        acc = _mm_or_ps(_mm_andnot_ps(neg, acc), _mm_and_ps(neg, _mm_mul_ps(slope, acc)));
      }
      _mm_storeu_ps(o + ch, _mm_or_ps(acc, nan));
    }
#endif
    for (; ch < c; ++ch) {
      float acc = first[ch];
      bool nan = std::isnan(acc);
      for (int64_t t = 1; t < job.k; ++t) {
        const float v = job.data[idx[t] * c + ch];
        nan = nan || std::isnan(v);
        acc = v > acc ? v : acc;
      }
      o[ch] = nan ? std::numeric_limits<float>::quiet_NaN() : tail(job, p, ch, acc);
    }
  }
}

}  // namespace

GatherMaxKernel::GatherMaxKernel(const OrtKernelInfo* info) {
  float value = 0.0f;
  Ort::Status status{Ort::GetApi().KernelInfoGetAttribute_float(info, "negative_slope", &value)};
  leaky = status.IsOK();
  slope = leaky ? value : 0.0f;
}

void GatherMaxKernel::Compute(OrtKernelContext* raw) {
  Ort::KernelContext ctx(raw);
  Ort::ConstValue data = ctx.GetInput(0);
  Ort::ConstValue index = ctx.GetInput(1);
  const std::vector<int64_t> ds = data.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> is = index.GetTensorTypeAndShapeInfo().GetShape();
  if (ds.size() != 2) fail("data must be [R, C], got " + shape_str(ds));
  if (is.empty()) fail("index must be [..., k] with k >= 1, got a scalar");
  Job job{data.GetTensorData<float>(), index.GetTensorData<int64_t>(), nullptr, nullptr, nullptr,
          1,  ds[1], is.back(), leaky, slope};
  if (job.k < 1) fail("index must be [..., k] with k >= 1, got " + shape_str(is));
  std::vector<int64_t> out_shape(is.begin(), is.end() - 1);
  for (int64_t d : out_shape) job.rows *= d;
  out_shape.push_back(job.c);
  if (ctx.GetInputCount() > 2) {
    Ort::ConstValue centre = ctx.GetInput(2);
    if (centre) {
      const std::vector<int64_t> cs = centre.GetTensorTypeAndShapeInfo().GetShape();
      if (cs != out_shape) fail("centre must have the output's shape " + shape_str(out_shape) + ", got " + shape_str(cs));
      job.centre = centre.GetTensorData<float>();
    }
  }
  if (ctx.GetInputCount() > 3) {
    Ort::ConstValue bias = ctx.GetInput(3);
    if (bias) {
      if (job.centre == nullptr) fail("bias needs a centre");
      const std::vector<int64_t> bs = bias.GetTensorTypeAndShapeInfo().GetShape();
      if (bs != std::vector<int64_t>{job.c}) fail("bias must be [C] = [" + std::to_string(job.c) + "], got " + shape_str(bs));
      job.bias = bias.GetTensorData<float>();
    }
  }
  const int64_t r = ds[0];
  for (int64_t t = 0; t < job.rows * job.k; ++t)
    if (job.index[t] < 0 || job.index[t] >= r)
      fail("index " + std::to_string(job.index[t]) + " is outside [0, " + std::to_string(r) + ")");
  Ort::UnownedValue out = ctx.GetOutput(0, out_shape);
  job.out = out.GetTensorMutableData<float>();
  if (job.rows == 0 || job.c == 0) return;
  ctx.ParallelFor(&rows_task, static_cast<size_t>((job.rows + kRowsPerTask - 1) / kRowsPerTask), 0, &job);
}

}  // namespace pointkd
