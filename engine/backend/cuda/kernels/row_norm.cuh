#pragma once
// The block-wide pieces of the row norms (norm.cu), shared with the decode kernels that finish with the
// residual add + RMSNorm in their last block (linear.cu, experts.cu; norm.cuh's ResidualNorm). Any
// block size that is a multiple of 32 works; each helper is called by every thread of the block.
//
// Arithmetic mirrors the CPU backend (cpu_backend.cpp): r = 1 / sqrt(mean(x²) + eps) with IEEE division
// and square root (no fast-math), out = (x · r) · w, x += y + bias. The sum of squares is a tree (warp
// shuffles, then the warp sums in order): deterministic for a given block size.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/kernels/norm.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {

#if defined(__CUDACC__) || defined(MOE_CUDA_EMULATED)

// Sum of v over the block (blockDim.x a multiple of 32, every thread calling). sh: ≥ 33 floats, not
// reused after. Returns the total to every thread.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < nwarps ? sh[lane] : 0.0f;
    s = warp_sum(s);
    if (lane == 0) sh[32] = s;
  }
  __syncthreads();
  return sh[32];
}

// The second pass of both norms: orow[i] = xr[i] · r · w[i] (orow may be xr: each element is read and
// written by the same thread).
template <bool VEC>
__device__ __forceinline__ void scale_row(const float* xr, const float* __restrict__ w, float r, float* orow, int n) {
  if constexpr (VEC) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    float4* o4 = reinterpret_cast<float4*>(orow);
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
      const float4 v = x4[i], g = __ldg(w4 + i);
      o4[i] = make_float4(v.x * r * g.x, v.y * r * g.y, v.z * r * g.z, v.w * r * g.w);
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * r * __ldg(w + i);
  }
}

// One row of add_rmsnorm_rows: xr += yr + bias, then (w not null) orow = RMSNorm(xr) · w and (norm_out
// not null) *norm_out = ‖xr‖₂. The updated x is written in the first pass and read back by the same
// thread in the second. y is read through L2 (__ldcg): in a fused tail other blocks of the same kernel
// wrote it (last_block.cuh).
template <bool VEC>
__device__ __forceinline__ void add_rmsnorm_row(float* xr, const float* yr, const float* __restrict__ bias,
                                                const float* __restrict__ w, float* orow, int n, float eps,
                                                float* norm_out) {
  __shared__ float sh[33];
  float ss = 0.0f;
  if constexpr (VEC) {
    float4* x4 = reinterpret_cast<float4*>(xr);
    const float4* y4 = reinterpret_cast<const float4*>(yr);
    const float4* b4 = reinterpret_cast<const float4*>(bias);
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
      float4 a = x4[i];
      float4 d = __ldcg(y4 + i);
      if (bias) {
        const float4 b = __ldg(b4 + i);
        d.x += b.x, d.y += b.y, d.z += b.z, d.w += b.w;
      }
      a.x += d.x, a.y += d.y, a.z += d.z, a.w += d.w;
      x4[i] = a;
      ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const float d = bias ? __ldcg(yr + i) + __ldg(bias + i) : __ldcg(yr + i);
      const float a = xr[i] + d;
      xr[i] = a;
      ss += a * a;
    }
  }
  if (!w && !norm_out) return;  // uniform over the block: no thread reaches the barriers below
  ss = block_sum(ss, sh);
  if (norm_out && threadIdx.x == 0) *norm_out = sqrtf(ss);
  if (!w) return;
  const float r = 1.0f / sqrtf(ss / float(n) + eps);
  scale_row<VEC>(xr, w, r, orow, n);
}

// The tail a ResidualNorm asks for, with y the kernel's output (the kernel's own pointer, so that a
// __restrict__ y stays the only way to it), by the whole block.
__device__ __forceinline__ void run_residual_norm(const ResidualNorm& t, const float* y) {
  if (t.vec) add_rmsnorm_row<true>(t.x, y, t.bias, t.w, t.out, t.n, t.eps, t.norm_out);
  else add_rmsnorm_row<false>(t.x, y, t.bias, t.w, t.out, t.n, t.eps, t.norm_out);
}

#endif  // __CUDACC__ || MOE_CUDA_EMULATED

}  // namespace moe::cuda
