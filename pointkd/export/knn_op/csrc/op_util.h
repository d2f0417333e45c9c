// What the pointkd operators (knn_op.cpp, gather_max.cpp) share: the ONNX Runtime C++ API, included once with
// ORT_API_MANUAL_INIT (RegisterCustomOps sets the API pointer), shape messages and the V2 entry points' error rule.
#pragma once

#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

namespace pointkd {

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Runs fn(); an exception becomes the status a V2 entry point (CreateKernelV2, ComputeV2) returns to ONNX Runtime:
// an Ort::Exception keeps its code and message, any other is ORT_FAIL with the operator's name in front.
template <class F>
OrtStatusPtr status_of(const char* op, F&& fn) {
  try {
    fn();
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::Status(e.what(), e.GetOrtErrorCode()).release();
  } catch (const std::exception& e) {
    return Ort::Status((std::string(op) + ": " + e.what()).c_str(), ORT_FAIL).release();
  }
}

}  // namespace pointkd
