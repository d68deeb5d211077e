#pragma once
// GGML block-typed weights expanded to 16-bit values on the device (block_dot.cuh's decoders): what the dense
// projections of a prefill chunk hand cuBLAS, some rows at a time, from a scratch buffer (blas.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/device_matrix.h"

namespace moe::cuda {

// dst[i][c] = w[r0 + i][c] in gpu_compute_dtype(w.dtype) (BF16, or F16 for F16-valued blocks; round to nearest),
// for i < n and every column c. w: a block type; dst: [n][w.cols] of that dtype, 16-byte aligned.
void dequantize_rows_16(const DeviceMatrix& w, int64_t r0, int64_t n, void* dst, cudaStream_t stream);

}  // namespace moe::cuda
