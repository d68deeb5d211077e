// linear.cuh: one warp per output row (warp_dots, 8 streaming 16-byte loads in flight per lane), 8 rows
// per block. x is read through L1 (every warp of an SM reads the same x), W bypasses it. A dependent
// launch: the first weight loads are issued before the wait for x (dependent_launch.cuh), so they
// overlap the kernel before.
#include "engine/backend/cuda/kernels/linear.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <limits>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {
namespace {

constexpr int kLinearWarps = 8;  // rows per block

template <typename T, bool kAccumulate>
__global__ void __launch_bounds__(kLinearWarps * 32)
    linear_decode_kernel(const T* __restrict__ w, int64_t rows, int cols, const float* __restrict__ x,
                         float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kLinearWarps + (threadIdx.x >> 5);
  if (r >= rows) {  // the whole warp
    wait_for_inputs();
    return;
  }
  const T* const row[1] = {w + r * cols};
  const float* const vec[1] = {x};
  float acc[1] = {0.0f};
  warp_dots<T, 1>(row, vec, cols, lane, acc, [] { wait_for_inputs(); });
  const float s = warp_sum(acc[0]);
  if (lane == 0) y[r] = kAccumulate ? y[r] + s : s;
}

template <typename T>
void launch(const DeviceMatrix& w, const float* x, float* y, bool accumulate, cudaStream_t stream) {
  const unsigned blocks = unsigned((w.rows + kLinearWarps - 1) / kLinearWarps);
  const T* W = static_cast<const T*>(w.data);
  launch_dependent("linear_decode_kernel", accumulate ? linear_decode_kernel<T, true> : linear_decode_kernel<T, false>,
                   blocks, kLinearWarps * 32, 0, stream, W, w.rows, int(w.cols), x, y);
}

}  // namespace

void linear_decode(const DeviceMatrix& w, const float* x, float* y, bool accumulate, cudaStream_t stream) {
  if (w.rows <= 0 || w.cols <= 0) return;
  if (w.cols > std::numeric_limits<int>::max() || (w.rows + kLinearWarps - 1) / kLinearWarps > 0x7fffffff)
    throw_cuda_error("linear", "matrix too large for one launch", __FILE__, __LINE__);
  switch (w.dtype) {
    case DType::BF16: launch<__nv_bfloat16>(w, x, y, accumulate, stream); break;
    case DType::F16: launch<__half>(w, x, y, accumulate, stream); break;
    case DType::F32: launch<float>(w, x, y, accumulate, stream); break;
    default: throw_cuda_error("linear", "weights must be BF16, F16 or F32", __FILE__, __LINE__);
  }
  MOE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moe::cuda
