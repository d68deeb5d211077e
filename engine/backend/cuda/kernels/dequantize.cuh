#pragma once
// GGML block-typed weights expanded to BF16 on the device (block_dot.cuh's decoders): what the dense
// projections of a prefill chunk hand cuBLAS, some rows at a time, from a scratch buffer (blas.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/device_matrix.h"

namespace moe::cuda {

// dst[i][c] = w[r0 + i][c] as BF16 (round to nearest), for i < n and every column c. w: a block type;
// dst: [n][w.cols] BF16, 16-byte aligned.
void dequantize_rows_bf16(const DeviceMatrix& w, int64_t r0, int64_t n, void* dst, cudaStream_t stream);

}  // namespace moe::cuda
