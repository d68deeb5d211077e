#include "tests/cuda_emulator/emulator_kernels.h"

#include <mma.h>

#include "engine/backend/cuda/kernels/async_copy.cuh"
#include "engine/backend/cuda/kernels/last_block.cuh"
#include "engine/backend/cuda/kernels/mma_sync.cuh"

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

// Two tiles through one shared array, as tiled kernels walk their key tiles: each thread reads the other
// warp's half of the tile, then exchanges with a neighbour (a warp rendezvous, like an mma's).
template <bool REUSE_BARRIER>
__global__ void tile_reuse_kernel(const float* in, float* out) {
  __shared__ float tile[64];
  float acc = 0.0f;
  for (int it = 0; it < 2; ++it) {
    if (REUSE_BARRIER) __syncthreads();  // every warp is done with the previous tile
    tile[threadIdx.x] = in[it * 64 + threadIdx.x];
    __syncthreads();
    const float v = tile[(threadIdx.x + 32) % 64];
    acc += __shfl_xor_sync(0xffffffffu, v, 1);
  }
  out[threadIdx.x] = acc;
}

__global__ void store_kernel(int* out, int value) { *out = value; }
__global__ void add_kernel(const int* in, int* out) { *out += *in; }

__global__ void empty_kernel() {}

__global__ void dependent_copy_kernel(const int* in, int* out, bool read_before_wait, bool skip_wait) {
  const int early = *in;  // always read; used only when read_before_wait
  if (!skip_wait) ::moe_emu::dependency_wait();
  out[blockIdx.x] = read_before_wait ? early : *in;
}

// Thread t copies in[t] and then in[32 + t] (16 bytes each) into dynamic shared memory, as two groups,
// and reads them back after a barrier: having waited for the first group (mode 0), for none (mode 1), or
// returning without waiting at all (mode 2).
__global__ void async_copy_kernel(const int4* in, int* out, int mode) {
  extern __shared__ __align__(16) int4 staged[];
  const int t = threadIdx.x, next = (t + 1) % 32;
  moe::cuda::copy_async_16(&staged[t], &in[t]);
  moe::cuda::commit_async();
  moe::cuda::copy_async_16(&staged[32 + t], &in[32 + t]);
  moe::cuda::commit_async();
  if (mode == 2) return;
  if (mode == 0) moe::cuda::wait_async<1>();
  __syncthreads();
  out[t] = staged[next].x;
  out[32 + t] = staged[t].x;
  out[64 + t] = staged[32 + t].x;
  moe::cuda::wait_async<0>();
}

// Block b writes parts[b] = in[b]; then one block sums the parts into *out: the block that counts itself
// last (by_counter), or the block with the highest index, as if it always finished last.
__global__ void last_block_sum_kernel(const int* in, int* parts, unsigned* counter, int* out, bool by_counter) {
  if (threadIdx.x == 0) parts[blockIdx.x] = in[blockIdx.x];
  const bool last = by_counter ? moe::cuda::arrive_last(counter, gridDim.x) : blockIdx.x == gridDim.x - 1;
  if (last && threadIdx.x == 0) {
    int sum = 0;
    for (unsigned b = 0; b < gridDim.x; ++b) sum += __ldcg(parts + b);
    *out = sum;
  }
}

namespace wmma = nvcuda::wmma;
using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
using Acc8 = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;

// c = scale · (a · b) + a · b: an mma, the element-wise scaling, and a second mma into the same accumulator.
template <typename LayoutB>
__global__ void wmma_product_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, float scale, float* c) {
  FragA fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LayoutB> fb;
  Acc acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= scale;
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

__global__ void tf32_product_kernel(const float* a, const float* b, bool round_inputs, float* c) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  Acc8 acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 8);
  wmma::load_matrix_sync(fb, b, 16);
  if (round_inputs) {
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  }
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

__global__ void wmma_misuse_kernel(const __nv_bfloat16* a, float* c, int kind) {
  FragA fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  Acc acc;
  wmma::fill_fragment(acc, 0.0f);
  const __nv_bfloat16* p = a;
  if (kind == 0 && threadIdx.x == 0) p += 16;  // a row further down
  if (kind == 1) p += 8;                       // 16 bytes: not 32-byte aligned
  wmma::load_matrix_sync(fa, p, 16);
  wmma::load_matrix_sync(fb, a, 16);
  if (kind == 2 && threadIdx.x == 31) return;
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

// d = a · b + c through mma_tf32_1688, the fragments gathered and scattered by the PTX ISA's formulas
// per element ("Matrix Fragments for mma.m16n8k8", .tf32), written here apart from the emulator's own.
// With lane_31_returns, lane 31 leaves before the mma.
__global__ void mma_sync_product_kernel(const float* a, const float* b, const float* c, float* d, bool lane_31_returns) {
  const int lane = threadIdx.x, group = lane >> 2, tig = lane % 4;
  uint32_t ra[4], rb[2];
  for (int i = 0; i < 4; ++i) {  // a_i: row group (+8 for a1, a3), col tig (+4 for a2, a3)
    const int row = group + (i % 2 ? 8 : 0), col = tig + (i >= 2 ? 4 : 0);
    ra[i] = __float_as_uint(a[row * 8 + col]);
  }
  for (int i = 0; i < 2; ++i) rb[i] = __float_as_uint(b[(tig + 4 * i) * 8 + group]);  // b_i: row tig (+4), col group
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = c[(group + (i >= 2 ? 8 : 0)) * 8 + 2 * tig + (i & 1)];  // c_i
  if (lane_31_returns && lane == 31) return;
  moe::cuda::mma_tf32_1688(acc, ra, rb);
  for (int i = 0; i < 4; ++i) d[(group + (i >= 2 ? 8 : 0)) * 8 + 2 * tig + (i & 1)] = acc[i];
}

}  // namespace

void launch_divergent_barrier(int* out) { divergent_barrier_kernel<<<1, 32>>>(out); }
void launch_shuffle_with_returned_lane(float* out) { shuffle_with_returned_lane_kernel<<<1, 32>>>(out); }
void launch_block_sums(const float* in, int n, int blocks, float* out, bool with_barrier, cudaStream_t stream) {
  if (with_barrier) block_sum_kernel<true><<<blocks, n, 0, stream>>>(in, n, out);
  else block_sum_kernel<false><<<blocks, n, 0, stream>>>(in, n, out);
}
void launch_store(int* out, int value, cudaStream_t stream) { store_kernel<<<1, 1, 0, stream>>>(out, value); }
void launch_add(const int* in, int* out, cudaStream_t stream) { add_kernel<<<1, 1, 0, stream>>>(in, out); }
void launch_wmma_product(const __nv_bfloat16* a, const __nv_bfloat16* b, bool b_col_major, float scale, float* c) {
  if (b_col_major) wmma_product_kernel<wmma::col_major><<<1, 32>>>(a, b, scale, c);
  else wmma_product_kernel<wmma::row_major><<<1, 32>>>(a, b, scale, c);
}
void launch_tf32_product(const float* a, const float* b, bool round_inputs, float* c) {
  tf32_product_kernel<<<1, 32>>>(a, b, round_inputs, c);
}
void launch_wmma_misuse(const __nv_bfloat16* a, float* c, int kind) { wmma_misuse_kernel<<<1, 32>>>(a, c, kind); }
void launch_dependent_copy(const int* in, int* out, int blocks, bool read_before_wait, bool skip_wait,
                           cudaStream_t stream) {
  ::moe_emu::launch("dependent_copy_kernel", ::moe_emu::LaunchConfig(blocks, 1, 0, stream, true), dependent_copy_kernel,
                    in, out, read_before_wait, skip_wait);
}
void launch_async_copy(const int4* in, int* out, int mode) {
  async_copy_kernel<<<1, 32, 64 * sizeof(int4)>>>(in, out, mode);
}
void launch_last_block_sum(const int* in, int* parts, unsigned* counter, int* out, int blocks, bool by_counter) {
  last_block_sum_kernel<<<blocks, 32>>>(in, parts, counter, out, by_counter);
}
cudaError_t launch_empty(int threads, size_t shared_bytes, bool raise_shared_limit) {
  if (raise_shared_limit) {
    const cudaError_t e =
        cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes));
    if (e != cudaSuccess) return e;
  }
  empty_kernel<<<1, threads, shared_bytes>>>();
  return cudaGetLastError();
}

void launch_mma_sync_product(const float* a, const float* b, const float* c, float* d, bool lane_31_returns) {
  mma_sync_product_kernel<<<1, 32>>>(a, b, c, d, lane_31_returns);
}

void launch_tile_reuse(const float* in, float* out, bool reuse_barrier) {
  if (reuse_barrier) tile_reuse_kernel<true><<<1, 64>>>(in, out);
  else tile_reuse_kernel<false><<<1, 64>>>(in, out);
}

}  // namespace moe_emu::test
