// pointkd.GatherMax (gather_max.cpp): the kernel and the operator's declaration, registered by knn_op.cpp.
#pragma once

#include "op_util.h"

namespace pointkd {

struct GatherMaxKernel {
  bool leaky = false;  // negative_slope given: LeakyReLU after the max (and the centre)
  float slope = 0.0f;

  explicit GatherMaxKernel(const OrtKernelInfo* info);
  void Compute(OrtKernelContext* context);
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return status_of("pointkd.GatherMax", [&] { Compute(context); });
  }
};

struct GatherMaxOp : Ort::CustomOpBase<GatherMaxOp, GatherMaxKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    return status_of("pointkd.GatherMax", [&] { *kernel = new GatherMaxKernel(info); });
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
