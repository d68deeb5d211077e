// linear.cuh: one warp per output row (warp_dots, 8 streaming 16-byte loads in flight per lane), 8 rows
// per block. x is read through L1 (every warp of an SM reads the same x), W bypasses it. A dependent
// launch: the first weight loads are issued before the wait for x (dependent_launch.cuh), so they
// overlap the kernel before. A residual add + RMSNorm of y may follow in the last block to finish
// (last_block.cuh): the o projection and a dense MLP's down projection then need no norm kernel.
// GGML block-typed W (Q4_K, Q8_0, ...): the same grid, each warp decoding its row's blocks in registers
// (block_dot.cuh); x is waited for first, as the decode is heavier than the loads.
#include "engine/backend/cuda/kernels/linear.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <limits>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/block_dot.cuh"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/last_block.cuh"
#include "engine/backend/cuda/kernels/row_norm.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"
#include "engine/common/ggml_quants.h"

namespace moe::cuda {
namespace {

constexpr int kLinearWarps = 8;  // rows per block

template <typename T, bool kAccumulate>
__global__ void __launch_bounds__(kLinearWarps * 32)
    linear_decode_kernel(const T* __restrict__ w, int64_t rows, int cols, const float* __restrict__ x,
                         float* __restrict__ y, ResidualNorm then) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kLinearWarps + (threadIdx.x >> 5);
  if (r < rows) {  // the whole warp
    const float s = warp_row_dot(w + r * cols, x, cols, lane, [] { wait_for_inputs(); });
    if (lane == 0) y[r] = kAccumulate ? y[r] + s : s;
  } else {
    wait_for_inputs();
  }
  if (then.counter && arrive_last(then.counter, gridDim.x)) run_residual_norm(then, y);
}

template <bool kAccumulate>
__global__ void __launch_bounds__(kLinearWarps * 32)
    linear_decode_blocks_kernel(const void* __restrict__ w, DType t, int64_t rows, int cols, const float* __restrict__ x,
                                float* __restrict__ y, ResidualNorm then) {
  wait_for_inputs();
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kLinearWarps + (threadIdx.x >> 5);
  if (r < rows) {  // the whole warp
    const void* const m[1] = {w};
    const float* const v[1] = {x};
    float acc[1] = {0.0f};
    warp_block_dots<1>(t, m, r, v, cols, lane, acc);
    const float s = warp_sum(acc[0]);
    if (lane == 0) y[r] = kAccumulate ? y[r] + s : s;
  }
  if (then.counter && arrive_last(then.counter, gridDim.x)) run_residual_norm(then, y);
}

template <typename T>
void launch(const DeviceMatrix& w, const float* x, float* y, bool accumulate, const ResidualNorm& then,
            cudaStream_t stream) {
  const unsigned blocks = unsigned((w.rows + kLinearWarps - 1) / kLinearWarps);
  const T* W = static_cast<const T*>(w.data);
  launch_dependent("linear_decode_kernel", accumulate ? linear_decode_kernel<T, true> : linear_decode_kernel<T, false>,
                   blocks, kLinearWarps * 32, 0, stream, W, w.rows, int(w.cols), x, y, then);
}

}  // namespace

void linear_decode(const DeviceMatrix& w, const float* x, float* y, bool accumulate, cudaStream_t stream,
                   const ResidualNorm* then) {
  if (w.rows <= 0 || w.cols <= 0) return;
  if (w.cols > std::numeric_limits<int>::max() || (w.rows + kLinearWarps - 1) / kLinearWarps > 0x7fffffff ||
      (then && w.rows > std::numeric_limits<int>::max()))
    throw_cuda_error("linear", "matrix too large for one launch", __FILE__, __LINE__);
  const ResidualNorm tail = then && then->counter ? bind_residual_norm(*then, y, int(w.rows)) : ResidualNorm{};
  switch (w.dtype) {
    case DType::BF16: launch<__nv_bfloat16>(w, x, y, accumulate, tail, stream); break;
    case DType::F16: launch<__half>(w, x, y, accumulate, tail, stream); break;
    case DType::F32: launch<float>(w, x, y, accumulate, tail, stream); break;
    default: {
      if (!whole_blocks(w.dtype, w.cols))
        throw_cuda_error("linear", "weights must be BF16, F16, F32 or whole rows of a GGML block type", __FILE__, __LINE__);
      const unsigned blocks = unsigned((w.rows + kLinearWarps - 1) / kLinearWarps);
      launch_dependent("linear_decode_blocks_kernel",
                       accumulate ? linear_decode_blocks_kernel<true> : linear_decode_blocks_kernel<false>, blocks,
                       kLinearWarps * 32, 0, stream, w.data, w.dtype, w.rows, int(w.cols), x, y, tail);
    }
  }
  MOE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moe::cuda
