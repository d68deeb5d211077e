#include "tests/cuda_emulator/emulator_kernels.h"

namespace moe_emu::test {
namespace {

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) __syncthreads();
  else __syncwarp();
  out[threadIdx.x] = 1;
}

__global__ void shuffle_with_returned_lane_kernel(float* out) {
  if (threadIdx.x == 31) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, float(threadIdx.x), 1);
}

template <bool BARRIER>
__global__ void block_sum_kernel(const float* in, int n, float* out) {
  __shared__ float s[256];
  s[threadIdx.x] = in[blockIdx.x * n + threadIdx.x];
  if (BARRIER) __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.0f;
    for (int i = 0; i < n; ++i) t += s[i];
    out[blockIdx.x] = t;
  }
}

__global__ void store_kernel(int* out, int value) { *out = value; }
__global__ void add_kernel(const int* in, int* out) { *out += *in; }

__global__ void empty_kernel() {}

}  // namespace

void launch_divergent_barrier(int* out) { divergent_barrier_kernel<<<1, 32>>>(out); }
void launch_shuffle_with_returned_lane(float* out) { shuffle_with_returned_lane_kernel<<<1, 32>>>(out); }
void launch_block_sums(const float* in, int n, int blocks, float* out, bool with_barrier, cudaStream_t stream) {
  if (with_barrier) block_sum_kernel<true><<<blocks, n, 0, stream>>>(in, n, out);
  else block_sum_kernel<false><<<blocks, n, 0, stream>>>(in, n, out);
}
void launch_store(int* out, int value, cudaStream_t stream) { store_kernel<<<1, 1, 0, stream>>>(out, value); }
void launch_add(const int* in, int* out, cudaStream_t stream) { add_kernel<<<1, 1, 0, stream>>>(in, out); }
cudaError_t launch_empty(int threads, size_t shared_bytes, bool raise_shared_limit) {
  if (raise_shared_limit) {
    const cudaError_t e = cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes));
    if (e != cudaSuccess) return e;
  }
  empty_kernel<<<1, threads, shared_bytes>>>();
  return cudaGetLastError();
}

}  // namespace moe_emu::test
