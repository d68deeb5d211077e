#pragma once
// A weight matrix in device memory: [rows = out, cols = in], row-major, in its stored dtype (BF16, F16,
// F32, or a GGML block type: rows of whole blocks, kernels/block_dot.cuh), as the CPU's WeightMatrix but
// on the GPU.
#include <cstdint>

#include "engine/common/dtype.h"

namespace moe::cuda {

struct DeviceMatrix {
  const void* data = nullptr;
  DType dtype = DType::BF16;
  int64_t rows = 0;
  int64_t cols = 0;
  explicit operator bool() const { return data != nullptr; }
};

}  // namespace moe::cuda
