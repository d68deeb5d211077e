// q/k/v preparation between the QKV projection and attention (contract: rope.cuh).
//
// One block per token; warps take heads in turn. Per token, in the CPU backend's order
// (cpu_backend.cpp, attention_block):
//   1. bias add (q, k, v);
//   2. q/k RMSNorm, per head (each head's hd values, [hd] weight) or over the whole projection
//      (all nh·hd, resp. nkv·hd values, [nh·hd] resp. [nkv·hd] weight);
//   3. clip of q, k, v to ±clip (clip > 0);
//   4. RoPE of every q and k head at position pos0[0] + t (rotate-half pairs (i, i + d/2) or
//      interleaved pairs (2i, 2i+1), i < d/2, d = rotary_dim; dims ≥ d untouched);
//   5. k and v stored at row pos of the caches ([capacity][nkv·hd], F32 or BF16 rounded to nearest
//      even).
//
// Phases inside the block:
//   A. cos/sin of pos · inv_freq[i] for i < d/2 into shared memory (once per token, not per head);
//      with a q/k norm, each warp also sums the squares of (x + bias) over the q and k heads it
//      takes, one sum per head into shared memory. Nothing is written to q/k/v in this phase.
//   B. (WholeProjection only) warp 0 adds the per-head sums into the q and k scales.
//   C. warp per head (q heads, k heads, v heads): each lane takes whole RoPE pairs, so it reads both
//      elements of a pair, recomputes x + bias, normalises, clips, rotates and writes both back (and
//      into the cache for k); dims ≥ rotary_dim are normalised and clipped only. v heads get the bias
//      and the clip and go to the cache. Every element is read and written by one thread only, and
//      the only cross-warp reads (phase A) end at a barrier before any write: no races.
//
// The arithmetic is the CPU's, operation for operation: (x + b) · r · w with r = 1 / sqrt(ss / n + eps)
// (IEEE division and square root), std::clamp's comparison order, and the rotation products rounded
// separately (__fmul_rn, no FMA contraction) as the host computes them. cos/sin come from sincosf
// (≤ 2 ulp; the host's cosf/sinf differ by as much) of the same F32 angle float(pos) · inv_freq[i].
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/rope.cuh"

namespace moe::cuda {
namespace {

constexpr int kMaxWarps = 16;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// f32 → bf16 bits with round-to-nearest-even, bit-identical to the host's f32_to_bf16 (NaN stays NaN).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// std::clamp(a, −c, c): NaN passes through, as on the host.
__device__ __forceinline__ float clamp_pm(float a, float c) { return a < -c ? -c : (c < a ? c : a); }

template <bool KV_BF16>
__device__ __forceinline__ void store_cache(void* cache, int64_t i, float a) {
  if constexpr (KV_BF16) static_cast<uint16_t*>(cache)[i] = f32_to_bf16_bits(a);
  else static_cast<float*>(cache)[i] = a;
}

// Dynamic shared memory: cos[d/2] | sin[d/2] | per-head sums of squares [nh + nkv] | scales [2].
template <bool KV_BF16>
__global__ void __launch_bounds__(kMaxWarps * 32)
    qkv_prepare_kernel(float* q, float* k, float* v, int64_t row_stride,
                       const int32_t* __restrict__ pos0, const QkvPrepareParams p) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  extern __shared__ float sh[];
  const int nh = p.n_heads, nkv = p.n_kv_heads, hd = p.head_dim;
  const int half = p.rotary_dim / 2;
  const int nqk = nh + nkv;
  float* cos_sh = sh;
  float* sin_sh = sh + half;
  float* ss_sh = sh + 2 * half;  // [nqk] then the two whole-projection scales
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;

  const int t = blockIdx.x;
  const int pos = __ldg(pos0) + t;
  float* qr = q + int64_t(t) * row_stride;
  float* kr = k + int64_t(t) * row_stride;
  float* vr = v + int64_t(t) * row_stride;
  const float clip = p.clip;

  // Phase A.
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = float(pos) * __ldg(p.inv_freq + i);
    float s, c;
    sincosf(angle, &s, &c);
    cos_sh[i] = c;
    sin_sh[i] = s;
  }
  if (p.qk_norm != QkNormMode::None) {
    for (int h = warp; h < nqk; h += nwarps) {
      const bool is_q = h < nh;
      const int hh = is_q ? h : h - nh;
      const float* x = (is_q ? qr : kr) + int64_t(hh) * hd;
      const float* b = is_q ? p.q_bias : p.k_bias;
      if (b) b += int64_t(hh) * hd;
      float s = 0.0f;
      for (int i = lane; i < hd; i += 32) {
        const float a = b ? x[i] + __ldg(b + i) : x[i];
        s += a * a;
      }
      s = warp_sum(s);
      if (lane == 0) ss_sh[h] = s;
    }
  }
  __syncthreads();

  // Phase B.
  if (p.qk_norm == QkNormMode::WholeProjection) {
    if (warp == 0) {
      float sq = 0.0f, sk = 0.0f;
      for (int h = lane; h < nh; h += 32) sq += ss_sh[h];
      for (int h = lane; h < nkv; h += 32) sk += ss_sh[nh + h];
      sq = warp_sum(sq);
      sk = warp_sum(sk);
      if (lane == 0) {
        ss_sh[nqk] = 1.0f / sqrtf(sq / float(int64_t(nh) * hd) + p.eps);
        ss_sh[nqk + 1] = 1.0f / sqrtf(sk / float(int64_t(nkv) * hd) + p.eps);
      }
    }
    __syncthreads();
  }

  // Phase C.
  const int64_t kvd = int64_t(nkv) * hd;
  const int64_t cache_row = int64_t(pos) * kvd;
  for (int h = warp; h < nqk + nkv; h += nwarps) {
    if (h < nqk) {
      const bool is_q = h < nh;
      const int hh = is_q ? h : h - nh;
      const int64_t off = int64_t(hh) * hd;
      float* x = (is_q ? qr : kr) + off;
      const float* b = is_q ? p.q_bias : p.k_bias;
      if (b) b += off;
      const float* w = nullptr;
      float r = 1.0f;
      if (p.qk_norm == QkNormMode::PerHead) {
        w = is_q ? p.q_norm : p.k_norm;
        r = 1.0f / sqrtf(ss_sh[h] / float(hd) + p.eps);
      } else if (p.qk_norm == QkNormMode::WholeProjection) {
        w = (is_q ? p.q_norm : p.k_norm) + off;
        r = ss_sh[nqk + (is_q ? 0 : 1)];
      }
      auto prep = [&](int i) {
        float a = x[i];
        if (b) a = a + __ldg(b + i);
        if (w) a = a * r * __ldg(w + i);
        if (clip > 0.0f) a = clamp_pm(a, clip);
        return a;
      };
      for (int i = lane; i < half; i += 32) {
        const int ia = p.interleaved ? 2 * i : i;
        const int ib = p.interleaved ? 2 * i + 1 : i + half;
        const float x0 = prep(ia), x1 = prep(ib);
        const float c = cos_sh[i], s = sin_sh[i];
        const float y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
        const float y1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
        x[ia] = y0;
        x[ib] = y1;
        if (!is_q) {
          store_cache<KV_BF16>(p.k_cache, cache_row + off + ia, y0);
          store_cache<KV_BF16>(p.k_cache, cache_row + off + ib, y1);
        }
      }
      for (int i = 2 * half + lane; i < hd; i += 32) {
        const float a = prep(i);
        if (b || w || clip > 0.0f) x[i] = a;
        if (!is_q) store_cache<KV_BF16>(p.k_cache, cache_row + off + i, a);
      }
    } else {
      const int64_t off = int64_t(h - nqk) * hd;
      float* x = vr + off;
      const float* b = p.v_bias ? p.v_bias + off : nullptr;
      const bool changes = b || clip > 0.0f;
      for (int i = lane; i < hd; i += 32) {
        float a = x[i];
        if (b) a = a + __ldg(b + i);
        if (clip > 0.0f) a = clamp_pm(a, clip);
        if (changes) x[i] = a;
        store_cache<KV_BF16>(p.v_cache, cache_row + off + i, a);
      }
    }
  }
}

void bad_params(const char* why) { throw_cuda_error("qkv_prepare", why, __FILE__, __LINE__); }

}  // namespace

void qkv_prepare(float* q, float* k, float* v, int64_t row_stride, int T, const int32_t* pos0,
                 const QkvPrepareParams& p, cudaStream_t stream) {
  if (T <= 0) return;
  if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0) bad_params("head counts and head_dim must be positive");
  if (p.rotary_dim < 0 || p.rotary_dim > p.head_dim || p.rotary_dim % 2 != 0)
    bad_params("rotary_dim must be even and at most head_dim");
  if (p.rotary_dim > 0 && !p.inv_freq) bad_params("inv_freq missing");
  if (p.qk_norm != QkNormMode::None && (!p.q_norm || !p.k_norm)) bad_params("q/k norm weights missing");
  if (p.kv_dtype != DType::F32 && p.kv_dtype != DType::BF16) bad_params("KV cache dtype must be F32 or BF16");
  if (!p.k_cache || !p.v_cache) bad_params("KV cache missing");

  const int tasks = p.n_heads + 2 * p.n_kv_heads;  // q heads, k heads, v heads: one warp each
  const int warps = tasks < kMaxWarps ? tasks : kMaxWarps;
  const size_t smem = sizeof(float) * (size_t(p.rotary_dim) + size_t(p.n_heads + p.n_kv_heads) + 2);
  if (p.kv_dtype == DType::BF16)
    launch_dependent("qkv_prepare_kernel", qkv_prepare_kernel<true>, T, warps * 32, smem, stream, q, k, v, row_stride,
                     pos0, p);
  else
    launch_dependent("qkv_prepare_kernel", qkv_prepare_kernel<false>, T, warps * 32, smem, stream, q, k, v, row_stride,
                     pos0, p);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::cuda
