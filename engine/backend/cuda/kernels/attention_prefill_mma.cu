// Prefill attention on the tensor cores with TF32 products kept in registers (contract:
// attention_prefill_mma.cuh), FlashAttention-2's scheme with mma.sync (mma_sync.cuh):
//   - grid (ceil(T / 64), n_heads), 128 threads: a block takes 64 query tokens of one head, each of its
//     four warps 16 of them, and walks the key tiles (32 keys) up to its last token. The query tiles
//     with the most keys (the last) run first.
//   - Q stays in registers as mma A fragments for the whole walk. Per key tile, K ([key][dim]) and V
//     (transposed, [dim][key]) are staged in shared memory, rounded to TF32; each warp computes its
//     16 × 32 scores S = Q·Kᵀ in registers, folds them into its rows' running max and sum (the four
//     lanes sharing a row exchange by shuffles), rescales its output accumulators, turns e^(s − m) into
//     the A fragments of P·V in registers and adds P·V to the outputs, also in registers. Nothing but K
//     and V passes through shared memory.
//   - A permutation makes every B fragment one 64-bit shared load. Within each 8 dims, the two a lane's
//     K fragment holds (t and t+4 in the mma's order) are dims 2t and 2t+1 of the row; Q's fragments
//     are loaded with the same permutation (a dot product does not depend on the order of its terms).
//     Within each 8 keys likewise: the keys a lane's P fragment holds (t, t+4) are keys 2t, 2t+1, which
//     is where a score accumulator has them, and which are adjacent in the transposed V tile.
//   - Shared rows are padded by 8 floats (a stride of 8 banks mod 32): a half warp's 64-bit fragment
//     loads, four rows by four lanes, then cover the 32 banks once.
// The products are those of the TF32 WMMA kernel (attention.cu): q, K, V and the unnormalised weights
// rounded to TF32, F32 accumulation, an F32 softmax (exp2, the scale carrying log2 e). Rows with no key
// yet keep m = −∞ without producing NaN.
#include "engine/backend/cuda/kernels/attention_prefill_mma.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/mma_sync.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {
namespace {

constexpr int kRows = 64;     // query tokens per block, 16 per warp
constexpr int kKeys = 32;     // keys per tile
constexpr int kThreads = 128;
constexpr int kPad = 8;       // floats of padding per shared row
constexpr unsigned kFull = 0xffffffffu;

// Four cache values from src (16-byte aligned for F32, 8-byte for BF16), rounded to TF32.
__device__ __forceinline__ uint4 load4_tf32(const float* src) {
  const float4 a = *reinterpret_cast<const float4*>(src);
  return make_uint4(to_tf32(a.x), to_tf32(a.y), to_tf32(a.z), to_tf32(a.w));
}
__device__ __forceinline__ uint4 load4_tf32(const __nv_bfloat16* src) {  // BF16 values are TF32 values
  const uint2 a = *reinterpret_cast<const uint2*>(src);
  return make_uint4(a.x << 16, a.x & 0xffff0000u, a.y << 16, a.y & 0xffff0000u);
}

// The K tile: keys j0 … j0+31 (zeros from n_keys on), row-major [key][D + kPad]. Consecutive threads
// take consecutive 4-value chunks of a row.
template <int D, typename KV>
__device__ __forceinline__ void stage_k(uint32_t* k_s, const KV* base, int64_t stride, int j0, int n_keys) {
  constexpr int CPR = D / 4, KS = D + kPad;
#pragma unroll
  for (int i = 0; i < kKeys * CPR / kThreads; ++i) {
    const int c = int(threadIdx.x) + i * kThreads, key = c / CPR, part = c - key * CPR;
    const uint4 x = j0 + key < n_keys ? load4_tf32(base + int64_t(j0 + key) * stride + part * 4) : make_uint4(0u, 0u, 0u, 0u);
    *reinterpret_cast<uint4*>(k_s + key * KS + part * 4) = x;
  }
}

// The V tile, transposed: [dim][kKeys + kPad], keys j0 … j0+31 (zeros from n_keys on). A warp takes the
// 32 keys of the same 4 dims, so its stores fill whole 128-byte rows.
template <int D, typename KV>
__device__ __forceinline__ void stage_v(uint32_t* v_s, const KV* base, int64_t stride, int j0, int n_keys) {
  constexpr int CPR = D / 4, VS = kKeys + kPad;
#pragma unroll
  for (int i = 0; i < kKeys * CPR / kThreads; ++i) {
    const int c = int(threadIdx.x) + i * kThreads, key = c % kKeys, part = c / kKeys;
    const uint4 x = j0 + key < n_keys ? load4_tf32(base + int64_t(j0 + key) * stride + part * 4) : make_uint4(0u, 0u, 0u, 0u);
    uint32_t* dst = v_s + part * 4 * VS + key;
    dst[0] = x.x;
    dst[VS] = x.y;
    dst[2 * VS] = x.z;
    dst[3 * VS] = x.w;
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFull, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFull, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFull, v, 1);
  return v + __shfl_xor_sync(kFull, v, 2);
}

template <int D, typename KV>
__global__ void __launch_bounds__(kThreads) prefill_mma_kernel(const float* __restrict__ q, int64_t q_stride, int T,
                                                                const KV* __restrict__ kc, const KV* __restrict__ vc,
                                                                const int32_t* __restrict__ pos0, int group,
                                                                int n_kv_heads, float scale_log2, int window,
                                                                const float* __restrict__ sinks, float* __restrict__ out,
                                                                int64_t out_stride) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  static_assert(D % 16 == 0 && D <= 128, "head_dim a multiple of 16, at most 128");
  static_assert(kKeys * (D / 4) % kThreads == 0, "whole staging rounds");
  constexpr int KD = D / 8;       // k steps of Q·Kᵀ, output tiles of P·V
  constexpr int NS = kKeys / 8;   // score tiles, k steps of P·V
  constexpr int KS = D + kPad, VS = kKeys + kPad;
  __shared__ __align__(16) uint32_t k_s[kKeys * KS];
  __shared__ __align__(16) uint32_t v_s[D * VS];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int t0 = (int(gridDim.x) - 1 - int(blockIdx.x)) * kRows, h = blockIdx.y, kvh = h / group;
  const int base = pos0[0];
  const int n_keys = base + min(T, t0 + kRows);  // keys 0 … position of the block's last token
  const int r0 = t0 + warp * 16 + g, r1 = r0 + 8;  // this lane's two query tokens
  const int p0 = base + r0, p1 = base + r1;        // their positions: the last keys they attend to

  // Q as A fragments: rows g and g+8 of the warp's 16, dims 2t and 2t+1 of each 8 (the permutation above).
  uint32_t qa[KD][4];
#pragma unroll
  for (int kk = 0; kk < KD; ++kk) {
    const int d = h * D + 8 * kk + 2 * t;
    const float2 x0 = r0 < T ? *reinterpret_cast<const float2*>(q + int64_t(r0) * q_stride + d) : make_float2(0.f, 0.f);
    const float2 x1 = r1 < T ? *reinterpret_cast<const float2*>(q + int64_t(r1) * q_stride + d) : make_float2(0.f, 0.f);
    qa[kk][0] = to_tf32(x0.x);
    qa[kk][1] = to_tf32(x1.x);
    qa[kk][2] = to_tf32(x0.y);
    qa[kk][3] = to_tf32(x1.y);
  }

  float o[KD][4];
#pragma unroll
  for (int n = 0; n < KD; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // rows g, g+8: running max (log2 units), sum

  const int64_t kv_stride = int64_t(n_kv_heads) * D;
  const KV* kbase = kc + int64_t(kvh) * D;
  const KV* vbase = vc + int64_t(kvh) * D;
  // From the first key the block's first query sees (key 0 without a window).
  for (int j0 = window > 0 ? max(0, base + t0 - window + 1) : 0; j0 < n_keys; j0 += kKeys) {
    __syncthreads();  // every warp is done with the previous tile
    stage_k<D>(k_s, kbase, kv_stride, j0, n_keys);
    stage_v<D>(v_s, vbase, kv_stride, j0, n_keys);
    __syncthreads();

    // S = Q·Kᵀ: score tile j holds keys 8j …; this lane's B fragment is key 8j + g, dims 2t, 2t+1.
    float s[NS][4];
#pragma unroll
    for (int j = 0; j < NS; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk)
#pragma unroll
      for (int j = 0; j < NS; ++j) {
        const uint2 b = *reinterpret_cast<const uint2*>(k_s + (8 * j + g) * KS + 8 * kk + 2 * t);
        const uint32_t bf[2] = {b.x, b.y};
        mma_tf32_1688(s[j], qa[kk], bf);
      }

    // Scale (log2 units), the causal mask where the tile reaches past the block's first token (and a
    // sliding window's lower edge throughout), the max.
    const bool masked = j0 + kKeys - 1 > base + t0 || window > 0;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < NS; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[j][e] * scale_log2;
        const int key = j0 + 8 * j + 2 * t + (e & 1), pos = e < 2 ? p0 : p1;
        if (masked && (key > pos || (window > 0 && key <= pos - window))) x = -INFINITY;
        s[j][e] = x;
        if (e < 2) mx0 = fmaxf(mx0, x);
        else mx1 = fmaxf(mx1, x);
      }
    const float mn0 = fmaxf(m0, quad_max(mx0)), mn1 = fmaxf(m1, quad_max(mx1));
    const float mu0 = mn0 == -INFINITY ? 0.0f : mn0, mu1 = mn1 == -INFINITY ? 0.0f : mn1;  // no −∞ − −∞
    const float a0 = exp2f(m0 - mu0), a1 = exp2f(m1 - mu1);
    m0 = mn0;
    m1 = mn1;
    l0 *= a0;
    l1 *= a1;
#pragma unroll
    for (int n = 0; n < KD; ++n) {
      o[n][0] *= a0;
      o[n][1] *= a0;
      o[n][2] *= a1;
      o[n][3] *= a1;
    }

    // O += P·V with P = e^(s − m): k step j takes score tile j, whose keys 2t, 2t+1 are the P fragment's
    // t, t+4; this lane's V fragment is dim 8n + g, keys 8j + 2t, 2t+1; output tile n holds dims 8n ….
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) p[e] = exp2f(s[j][e] - (e < 2 ? mu0 : mu1));
      l0 += p[0] + p[1];
      l1 += p[2] + p[3];
      const uint32_t pa[4] = {to_tf32(p[0]), to_tf32(p[2]), to_tf32(p[1]), to_tf32(p[3])};
#pragma unroll
      for (int n = 0; n < KD; ++n) {
        const uint2 b = *reinterpret_cast<const uint2*>(v_s + (8 * n + g) * VS + 8 * j + 2 * t);
        const uint32_t bf[2] = {b.x, b.y};
        mma_tf32_1688(o[n], pa, bf);
      }
    }
  }

  // The denominators, with the head's sink (2^(sink · log2 e − m)); rows past T are not stored.
  const float sink = sinks ? sinks[h] * 1.4426950408889634f : -INFINITY;
  const float i0 = 1.0f / (quad_sum(l0) + exp2f(sink - m0)), i1 = 1.0f / (quad_sum(l1) + exp2f(sink - m1));
#pragma unroll
  for (int n = 0; n < KD; ++n) {
    const int64_t d = int64_t(h) * D + 8 * n + 2 * t;
    if (r0 < T) *reinterpret_cast<float2*>(out + int64_t(r0) * out_stride + d) = make_float2(o[n][0] * i0, o[n][1] * i0);
    if (r1 < T) *reinterpret_cast<float2*>(out + int64_t(r1) * out_stride + d) = make_float2(o[n][2] * i1, o[n][3] * i1);
  }
}

template <int D, typename KV>
void launch(const float* q, int64_t q_stride, int T, const void* k_cache, const void* v_cache, const int32_t* pos0,
            const AttentionShape& s, float* out, cudaStream_t stream) {
  const dim3 grid(unsigned((T + kRows - 1) / kRows), unsigned(s.n_heads));
  const float scale_log2 = s.scale * 1.4426950408889634f;  // e^x = 2^(x · log2 e)
  launch_dependent("prefill_mma_kernel", prefill_mma_kernel<D, KV>, grid, kThreads, 0, stream, q, q_stride, T,
                   static_cast<const KV*>(k_cache), static_cast<const KV*>(v_cache), pos0, s.n_heads / s.n_kv_heads,
                   s.n_kv_heads, scale_log2, s.window, s.sinks, out, int64_t(s.n_heads) * D);
  MOE_CUDA_CHECK_LAUNCH();
}

template <typename KV>
void launch_for_head_dim(const float* q, int64_t q_stride, int T, const void* k_cache, const void* v_cache,
                         const int32_t* pos0, const AttentionShape& s, float* out, cudaStream_t stream) {
  switch (s.head_dim) {
    case 16: return launch<16, KV>(q, q_stride, T, k_cache, v_cache, pos0, s, out, stream);
    case 32: return launch<32, KV>(q, q_stride, T, k_cache, v_cache, pos0, s, out, stream);
    case 64: return launch<64, KV>(q, q_stride, T, k_cache, v_cache, pos0, s, out, stream);
    case 128: return launch<128, KV>(q, q_stride, T, k_cache, v_cache, pos0, s, out, stream);
    default: throw_cuda_error("prefill_mma", "head_dim must be 16, 32, 64 or 128", __FILE__, __LINE__);
  }
}

}  // namespace

bool prefill_mma_fits(const AttentionShape& s, const float* q, int64_t q_stride, const void* k_cache,
                      const void* v_cache, const float* out) {
  const bool dims = s.head_dim == 16 || s.head_dim == 32 || s.head_dim == 64 || s.head_dim == 128;
  const bool kv = s.kv_dtype == DType::F32 || s.kv_dtype == DType::BF16;
  return dims && kv && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0 && aligned16(q) && q_stride % 4 == 0 &&
         aligned16(k_cache) && aligned16(v_cache) && (reinterpret_cast<uintptr_t>(out) & 7u) == 0;
}

void prefill_mma(const float* q, int64_t q_stride, int T, const void* k_cache, const void* v_cache,
                 const int32_t* pos0, const AttentionShape& s, float* out, cudaStream_t stream) {
  if (!prefill_mma_fits(s, q, q_stride, k_cache, v_cache, out))
    throw_cuda_error("prefill_mma", "shape or alignment it does not take", __FILE__, __LINE__);
  if (T <= 0) return;
  if (s.kv_dtype == DType::F32)
    launch_for_head_dim<float>(q, q_stride, T, k_cache, v_cache, pos0, s, out, stream);
  else
    launch_for_head_dim<__nv_bfloat16>(q, q_stride, T, k_cache, v_cache, pos0, s, out, stream);
}

}  // namespace moe::cuda
