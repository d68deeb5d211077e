// Row-wise kernels on F32 activations (contract: norm.cuh).
//
// Layout: the row reductions (RMSNorm, the fused residual add + RMSNorm and its row L2 norms) and the
// embedding gather run one block per row; the block strides over the row, with 16-byte loads and
// stores (float4, or 8 × 16-bit for BF16/F16 embeddings) when the row length and every pointer allow
// it, and a scalar loop otherwise. The block size follows the row length (one 16-byte unit per thread
// up to 512 threads), so short rows do not leave most of a block idle and long rows (8192) still
// have only a few units per thread. Reductions are warp shuffles then one pass over the warp sums in
// shared memory: deterministic for a given shape. Element-wise kernels (convert_f32,
// silu_mul_rows) are grid-stride loops.
//
// Arithmetic mirrors the CPU backend (cpu_backend.cpp): r = 1 / sqrt(mean(x²) + eps) with IEEE
// division and square root (no fast-math), out = (x · r) · w, silu(z) = z / (1 + e^−z),
// sigmoid(z) = 1 / (1 + e^−z), x += y + bias.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/rope_math.cuh"
#include "engine/backend/cuda/kernels/norm.cuh"
#include "engine/backend/cuda/kernels/row_norm.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {
namespace {

constexpr int kMaxRowBlock = 512;

// Threads for a row of `units` work items (16-byte vectors or scalars): one each, a multiple of 32,
// between 32 and kMaxRowBlock.
int row_block(int64_t units) {
  int64_t b = (units + 31) / 32 * 32;
  if (b < 32) b = 32;
  if (b > kMaxRowBlock) b = kMaxRowBlock;
  return int(b);
}

bool aligned8(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 7u) == 0; }

// The residual add + RMSNorm's 16-byte path: n % 4 == 0 and every row pointer aligned.
bool residual_norm_vec(const float* x, const float* y, const float* bias, const float* w, const float* out, int n) {
  return n % 4 == 0 && aligned16(x) && aligned16(y) && (!bias || aligned16(bias)) && (!w || aligned16(w)) &&
         (!w || aligned16(out));
}

__device__ __forceinline__ float bf16_bits_to_f32(uint32_t h) { return __uint_as_float(h << 16); }
__device__ __forceinline__ float f16_bits_to_f32(uint32_t h) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
}
__device__ __forceinline__ uint16_t f32_to_f16_bits(float f) { return __half_as_ushort(__float2half_rn(f)); }

// ---------------------------------------------------------------------------------------------------
// embed_rows: one block per token.

// SRC: 0 = F32, 1 = BF16, 2 = F16. VEC: 16-byte loads (cols % 4 == 0 for F32, % 8 for 16-bit).
template <int SRC, bool VEC>
__global__ void embed_rows_kernel(const void* __restrict__ embed, const int32_t* __restrict__ tokens, int64_t cols,
                                  float* __restrict__ x) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  const int t = blockIdx.x;
  const int64_t row = int64_t(tokens[t]);
  float* out = x + int64_t(t) * cols;
  if constexpr (SRC == 0) {
    const float* src = static_cast<const float*>(embed) + row * cols;
    if constexpr (VEC) {
      const float4* s4 = reinterpret_cast<const float4*>(src);
      float4* o4 = reinterpret_cast<float4*>(out);
      for (int64_t i = threadIdx.x; i < cols / 4; i += blockDim.x) o4[i] = __ldg(s4 + i);
    } else {
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out[i] = __ldg(src + i);
    }
  } else {
    const uint16_t* src = static_cast<const uint16_t*>(embed) + row * cols;
    auto cvt = [](uint32_t h) { return SRC == 1 ? bf16_bits_to_f32(h) : f16_bits_to_f32(h); };
    if constexpr (VEC) {
      const uint4* s8 = reinterpret_cast<const uint4*>(src);
      float4* o4 = reinterpret_cast<float4*>(out);
      for (int64_t i = threadIdx.x; i < cols / 8; i += blockDim.x) {
        const uint4 u = __ldg(s8 + i);
        o4[2 * i] = make_float4(cvt(u.x & 0xffffu), cvt(u.x >> 16), cvt(u.y & 0xffffu), cvt(u.y >> 16));
        o4[2 * i + 1] = make_float4(cvt(u.z & 0xffffu), cvt(u.z >> 16), cvt(u.w & 0xffffu), cvt(u.w >> 16));
      }
    } else {
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out[i] = cvt(uint32_t(__ldg(src + i)));
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// rmsnorm_rows: one block per row. out may alias x: each element is read and then written by the
// same thread, and every read of the first pass precedes the reduction's barrier.

template <bool VEC>
__global__ void rmsnorm_rows_kernel(const float* x, const float* __restrict__ w, float* out, int n, float eps) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  __shared__ float sh[33];
  const int64_t base = int64_t(blockIdx.x) * n;
  const float* xr = x + base;
  float* orow = out + base;
  float ss = 0.0f;
  if constexpr (VEC) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
      const float4 v = x4[i];
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
  }
  ss = block_sum(ss, sh);
  const float r = 1.0f / sqrtf(ss / float(n) + eps);
  scale_row<VEC>(xr, w, r, orow, n);
}

// ---------------------------------------------------------------------------------------------------
// add_rmsnorm_rows: x += y + bias, then (w not null) out = RMSNorm(x) · w and (norm_out not null)
// ‖x‖₂. One block per row; the updated x is written in the first pass and read back by the same thread
// in the second.

template <bool VEC>
__global__ void add_rmsnorm_rows_kernel(float* __restrict__ x, const float* __restrict__ y,
                                        const float* __restrict__ bias, const float* __restrict__ w,
                                        float* __restrict__ out, int n, float eps, float* __restrict__ norm_out,
                                        int64_t norm_stride) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  const int64_t base = int64_t(blockIdx.x) * n;
  add_rmsnorm_row<VEC>(x + base, y + base, bias, w, out + base, n, eps,
                       norm_out ? norm_out + int64_t(blockIdx.x) * norm_stride : nullptr);
}

// ---------------------------------------------------------------------------------------------------
// convert_f32: grid-stride over 4-element groups (16-byte loads; 8- or 16-byte stores), then the
// count % 4 tail. DST: 0 = F32, 1 = BF16, 2 = F16.

template <int DST>
__device__ __forceinline__ uint16_t to_bits16(float f) {
  return DST == 1 ? f32_to_bf16_bits(f) : f32_to_f16_bits(f);
}

template <int DST, bool VEC>
__global__ void convert_f32_kernel(const float* __restrict__ x, void* __restrict__ out, int64_t count) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t nv = count / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    for (int64_t i = tid; i < nv; i += stride) {
      const float4 v = x4[i];
      if constexpr (DST == 0) {
        reinterpret_cast<float4*>(out)[i] = v;
      } else {
        uint2 p;
        p.x = uint32_t(to_bits16<DST>(v.x)) | (uint32_t(to_bits16<DST>(v.y)) << 16);
        p.y = uint32_t(to_bits16<DST>(v.z)) | (uint32_t(to_bits16<DST>(v.w)) << 16);
        reinterpret_cast<uint2*>(out)[i] = p;
      }
    }
    done = nv * 4;
  }
  for (int64_t i = done + tid; i < count; i += stride) {
    if constexpr (DST == 0) static_cast<float*>(out)[i] = x[i];
    else static_cast<uint16_t*>(out)[i] = to_bits16<DST>(x[i]);
  }
}

// ---------------------------------------------------------------------------------------------------
// silu_mul_rows: grid-stride over the T × ffn outputs (in 4-wide groups when VEC).

__device__ __forceinline__ float silu_f(float z) { return z / (1.0f + expf(-z)); }

template <bool VEC>
__global__ void silu_mul_rows_kernel(const float* __restrict__ gu, int T, int ffn, float* __restrict__ out) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (VEC) {
    const int64_t nv = ffn / 4, total = int64_t(T) * nv;
    const float4* g4 = reinterpret_cast<const float4*>(gu);
    float4* o4 = reinterpret_cast<float4*>(out);
    for (int64_t i = tid; i < total; i += stride) {
      const int64_t t = i / nv, j = i - t * nv;
      const float4 g = g4[t * 2 * nv + j], u = g4[t * 2 * nv + nv + j];
      o4[i] = make_float4(silu_f(g.x) * u.x, silu_f(g.y) * u.y, silu_f(g.z) * u.z, silu_f(g.w) * u.w);
    }
  } else {
    const int64_t total = int64_t(T) * ffn;
    for (int64_t i = tid; i < total; i += stride) {
      const int64_t t = i / ffn, j = i - t * ffn;
      out[i] = silu_f(gu[t * 2 * ffn + j]) * gu[t * 2 * ffn + ffn + j];
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// add_gated_rows: one block per row.

template <bool VEC>
__global__ void add_gated_rows_kernel(float* __restrict__ y, const float* __restrict__ ye, const float* __restrict__ z,
                                      int n, float* __restrict__ gate_out, int64_t gate_stride) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  const int64_t t = blockIdx.x;
  const float g = z ? 1.0f / (1.0f + expf(-z[t])) : 1.0f;
  if (gate_out && threadIdx.x == 0) gate_out[t * gate_stride] = g;
  float* yr = y + t * n;
  const float* er = ye + t * n;
  if constexpr (VEC) {
    float4* y4 = reinterpret_cast<float4*>(yr);
    const float4* e4 = reinterpret_cast<const float4*>(er);
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
      float4 a = y4[i];
      const float4 e = e4[i];
      a.x += g * e.x, a.y += g * e.y, a.z += g * e.z, a.w += g * e.w;
      y4[i] = a;
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] += g * er[i];
  }
}

// Blocks for a grid-stride loop over `units` items with `block` threads: enough to cover them,
// capped (each thread then loops).
int grid_blocks(int64_t units, int block) {
  int64_t b = (units + block - 1) / block;
  if (b < 1) b = 1;
  if (b > 8192) b = 8192;
  return int(b);
}

}  // namespace

void embed_rows(const DeviceMatrix& embed, const int32_t* tokens, int T, float* x, cudaStream_t stream) {
  if (T <= 0 || embed.cols <= 0) return;
  const int64_t cols = embed.cols;
  switch (embed.dtype) {
    case DType::F32: {
      const bool vec = cols % 4 == 0 && aligned16(embed.data) && aligned16(x);
      const int block = row_block(vec ? cols / 4 : cols);
      launch_dependent("embed_rows_kernel", vec ? embed_rows_kernel<0, true> : embed_rows_kernel<0, false>, T, block, 0,
                       stream, embed.data, tokens, cols, x);
      break;
    }
    case DType::BF16:
    case DType::F16: {
      const bool vec = cols % 8 == 0 && aligned16(embed.data) && aligned16(x);
      const int block = row_block(vec ? cols / 8 : cols);
      if (embed.dtype == DType::BF16) {
        launch_dependent("embed_rows_kernel", vec ? embed_rows_kernel<1, true> : embed_rows_kernel<1, false>, T, block,
                         0, stream, embed.data, tokens, cols, x);
      } else {
        launch_dependent("embed_rows_kernel", vec ? embed_rows_kernel<2, true> : embed_rows_kernel<2, false>, T, block,
                         0, stream, embed.data, tokens, cols, x);
      }
      break;
    }
    default:
      throw_cuda_error("embed_rows", "embedding dtype must be F32, F16 or BF16", __FILE__, __LINE__);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

void rmsnorm_rows(const float* x, const float* w, float* out, int T, int n, float eps, cudaStream_t stream) {
  if (T <= 0 || n <= 0) return;
  const bool vec = n % 4 == 0 && aligned16(x) && aligned16(w) && aligned16(out);
  const int block = row_block(vec ? n / 4 : n);
  launch_dependent("rmsnorm_rows_kernel", vec ? rmsnorm_rows_kernel<true> : rmsnorm_rows_kernel<false>, T, block, 0,
                   stream, x, w, out, n, eps);
  MOE_CUDA_CHECK_LAUNCH();
}

ResidualNorm bind_residual_norm(const ResidualNorm& t, const float* y, int n) {
  ResidualNorm r = t;
  r.n = n;
  r.vec = residual_norm_vec(t.x, y, t.bias, t.w, t.out, n);
  return r;
}

void add_rmsnorm_rows(float* x, const float* y, const float* bias, const float* w, float* out, int T, int n, float eps,
                      cudaStream_t stream, float* norm_out, int64_t norm_stride) {
  if (T <= 0 || n <= 0) return;
  const bool vec = residual_norm_vec(x, y, bias, w, out, n);
  const int block = row_block(vec ? n / 4 : n);
  launch_dependent("add_rmsnorm_rows_kernel", vec ? add_rmsnorm_rows_kernel<true> : add_rmsnorm_rows_kernel<false>, T,
                   block, 0, stream, x, y, bias, w, out, n, eps, norm_out, norm_stride);
  MOE_CUDA_CHECK_LAUNCH();
}

// One launch of convert_f32_kernel for target kind K (0: F32, 1: BF16, 2: F16). F32 stores need
// 16-byte alignment of the output for the vector path, 2-byte types 8-byte alignment.
template <int K>
void launch_convert(const float* x, void* out, int64_t count, cudaStream_t stream) {
  constexpr int block = 256;
  const bool vec = aligned16(x) && (K == 0 ? aligned16(out) : aligned8(out));
  const int grid = grid_blocks(vec ? count / 4 + 1 : count, block);
  launch_dependent("convert_f32_kernel", vec ? convert_f32_kernel<K, true> : convert_f32_kernel<K, false>, grid, block,
                   0, stream, x, out, count);
}

void convert_f32(const float* x, void* out, DType dtype, int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  switch (dtype) {
    case DType::F32: launch_convert<0>(x, out, count, stream); break;
    case DType::BF16: launch_convert<1>(x, out, count, stream); break;
    case DType::F16: launch_convert<2>(x, out, count, stream); break;
    default:
      throw_cuda_error("convert_f32", "target dtype must be F32, F16 or BF16", __FILE__, __LINE__);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

void silu_mul_rows(const float* gu, int T, int ffn, float* out, cudaStream_t stream) {
  if (T <= 0 || ffn <= 0) return;
  constexpr int block = 256;
  const bool vec = ffn % 4 == 0 && aligned16(gu) && aligned16(out);
  const int64_t units = vec ? int64_t(T) * (ffn / 4) : int64_t(T) * ffn;
  const int grid = grid_blocks(units, block);
  launch_dependent("silu_mul_rows_kernel", vec ? silu_mul_rows_kernel<true> : silu_mul_rows_kernel<false>, grid, block,
                   0, stream, gu, T, ffn, out);
  MOE_CUDA_CHECK_LAUNCH();
}

void add_gated_rows(float* y, const float* ye, const float* z, int T, int n, float* gate_out, int64_t gate_stride,
                    cudaStream_t stream) {
  if (T <= 0) return;
  const bool vec = n > 0 && n % 4 == 0 && aligned16(y) && aligned16(ye);
  const int block = row_block(vec ? n / 4 : (n > 0 ? n : 1));
  launch_dependent("add_gated_rows_kernel", vec ? add_gated_rows_kernel<true> : add_gated_rows_kernel<false>, T, block,
                   0, stream, y, ye, z, n, gate_out, gate_stride);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::cuda
