// dequantize.cuh: one thread per run of 8 values (one 16-byte store of 16-bit values), consecutive threads along
// a row, so the block reads and the stores both go front to back.
#include "engine/backend/cuda/kernels/dequantize.cuh"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/block_dot.cuh"
#include "engine/common/ggml_quants.h"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    dequantize_rows_kernel(const uint8_t* __restrict__ w, DType t, size_t row_bytes, int64_t cols, int64_t runs,
                           uint4* __restrict__ dst) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= runs) return;
  const int64_t per_row = cols / kBlockRun, r = i / per_row, c = i % per_row;
  dst[i] = decode_run_16(t, w + size_t(r) * row_bytes, c * kBlockRun);
}

}  // namespace

void dequantize_rows_16(const DeviceMatrix& w, int64_t r0, int64_t n, void* dst, cudaStream_t stream) {
  if (n <= 0 || w.cols <= 0) return;
  if (!whole_blocks(w.dtype, w.cols))
    throw_cuda_error("dequantize", "not a GGML block-typed matrix", __FILE__, __LINE__);
  const size_t rb = row_bytes(w.dtype, w.cols);
  const int64_t runs = n * (w.cols / kBlockRun);
  const int64_t blocks = (runs + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) throw_cuda_error("dequantize", "too many rows for one launch", __FILE__, __LINE__);
  dequantize_rows_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(static_cast<const uint8_t*>(w.data) + size_t(r0) * rb,
                                                                   w.dtype, rb, w.cols, runs, static_cast<uint4*>(dst));
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::cuda
