// pointkd.GatherMax (gather_max.cpp): the kernel and the operator's declaration, registered by knn_op.cpp.
#pragma once

#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <exception>
#include <string>

namespace pointkd {

struct GatherMaxKernel {
  bool leaky = false;  // negative_slope given: LeakyReLU after the max (and the centre)
  float slope = 0.0f;

  explicit GatherMaxKernel(const OrtKernelInfo* info);
  void Compute(OrtKernelContext* context);
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    try {
      Compute(context);
      return nullptr;
    } catch (const Ort::Exception& e) {
      return Ort::Status(e.what(), e.GetOrtErrorCode()).release();
    } catch (const std::exception& e) {
      return Ort::Status((std::string("pointkd.GatherMax: ") + e.what()).c_str(), ORT_FAIL).release();
    }
  }
};

struct GatherMaxOp : Ort::CustomOpBase<GatherMaxOp, GatherMaxKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    *kernel = new GatherMaxKernel(info);
    return nullptr;
  }
  const char* GetName() const { return "GatherMax"; }
  size_t GetInputTypeCount() const { return 4; }  // data, index, centre?, bias?
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index >= 2 ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL
                      : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace pointkd
