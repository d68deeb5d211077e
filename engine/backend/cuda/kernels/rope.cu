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
// Decode (qkv_decode_kernel): the QKV projection's rows, one warp each, 8 per block, so a head of hd
// rows (hd % 8 == 0) is hd / 8 whole blocks; the last of them to finish (last_block.cuh) runs phases
// A and C for that head with its first warp, the same code with the same warp's sums.
//
// The arithmetic is the CPU's, operation for operation: (x + b) · r · w with r = 1 / sqrt(ss / n + eps)
// (IEEE division and square root), std::clamp's comparison order, and the rotation products rounded
// separately (__fmul_rn, no FMA contraction) as the host computes them. cos/sin come from sincosf
// (≤ 2 ulp; the host's cosf/sinf differ by as much) of the same F32 angle float(pos) · inv_freq[i].
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/rope_math.cuh"
#include "engine/backend/cuda/kernels/last_block.cuh"
#include "engine/backend/cuda/kernels/rope.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {
namespace {

constexpr int kMaxWarps = 16;
constexpr int kRowsPerBlock = 8;  // the decode projection's rows per block (one per warp)
constexpr int kMaxHeadDim = 256;


// std::clamp(a, −c, c): NaN passes through, as on the host.
__device__ __forceinline__ float clamp_pm(float a, float c) { return a < -c ? -c : (c < a ? c : a); }

template <bool KV_BF16>
__device__ __forceinline__ void store_cache(void* cache, int64_t i, float a) {
  if constexpr (KV_BF16) static_cast<uint16_t*>(cache)[i] = f32_to_bf16_bits(a);
  else static_cast<float*>(cache)[i] = a;
}

// Σ (x + b)² over the hd values of q head h (h < nh) or k head h − nh of one token, in every lane of the
// warp (read through L2, as prepare_head reads them).
__device__ __forceinline__ float qk_sum_squares(int h, const float* qr, const float* kr, const QkvPrepareParams& p,
                                                int lane) {
  const bool is_q = h < p.n_heads;
  const int hd = p.head_dim;
  const int64_t off = int64_t(is_q ? h : h - p.n_heads) * hd;
  const float* x = (is_q ? qr : kr) + off;
  const float* b = is_q ? p.q_bias : p.k_bias;
  if (b) b += off;
  float s = 0.0f;
  for (int i = lane; i < hd; i += 32) {
    const float a = b ? __ldcg(x + i) + __ldg(b + i) : __ldcg(x + i);
    s += a * a;
  }
  return warp_sum(s);
}

// The RMSNorm scale of a head from its sum of squares: both kernels use it, so they agree bit for bit.
__device__ __forceinline__ float head_norm_scale(float ss, int hd, float eps) { return 1.0f / sqrtf(ss / float(hd) + eps); }

// Phase C for task h of one token, by one warp: q head h (h < nh), k head h − nh (h < nh + nkv) or v
// head h − nh − nkv. r: the q/k norm's scale for this head (PerHead: of its own sum of squares;
// WholeProjection: of the projection's), unused without a norm. q/k/v are read through L2 (__ldcg):
// in the fused decode kernel other blocks wrote them (last_block.cuh).
template <bool KV_BF16>
__device__ __forceinline__ void prepare_head(int h, float* qr, float* kr, float* vr, const QkvPrepareParams& p,
                                             const float* cos_sh, const float* sin_sh, float r, int pos, int lane) {
  const int nh = p.n_heads, nkv = p.n_kv_heads, hd = p.head_dim, nqk = nh + nkv;
  const int half = p.rotary_dim / 2;
  const float clip = p.clip;
  const int64_t cache_row = int64_t(pos) * int64_t(nkv) * hd;
  if (h < nqk) {
    const bool is_q = h < nh;
    const int hh = is_q ? h : h - nh;
    const int64_t off = int64_t(hh) * hd;
    float* x = (is_q ? qr : kr) + off;
    const float* b = is_q ? p.q_bias : p.k_bias;
    if (b) b += off;
    const float* w = nullptr;
    if (p.qk_norm == QkNormMode::PerHead) w = is_q ? p.q_norm : p.k_norm;
    else if (p.qk_norm == QkNormMode::WholeProjection) w = (is_q ? p.q_norm : p.k_norm) + off;
    auto prep = [&](int i) {
      float a = __ldcg(x + i);
      if (b) a = a + __ldg(b + i);
      if (w) a = a * r * __ldg(w + i);
      if (clip > 0.0f) a = clamp_pm(a, clip);
      return a;
    };
    for (int i = lane; i < half; i += 32) {
      const int ia = rope_first(i, half, p.interleaved), ib = rope_second(i, half, p.interleaved);
      float y0, y1;
      rope_rotate(prep(ia), prep(ib), cos_sh[i], sin_sh[i], y0, y1);
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
      float a = __ldcg(x + i);
      if (b) a = a + __ldg(b + i);
      if (clip > 0.0f) a = clamp_pm(a, clip);
      if (changes) x[i] = a;
      store_cache<KV_BF16>(p.v_cache, cache_row + off + i, a);
    }
  }
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

  // Phase A.
  rope_angles(pos, p.inv_freq, p.rope_factor, half, cos_sh, sin_sh, threadIdx.x, blockDim.x);
  if (p.qk_norm != QkNormMode::None) {
    for (int h = warp; h < nqk; h += nwarps) {
      const float s = qk_sum_squares(h, qr, kr, p, lane);
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
  for (int h = warp; h < nqk + nkv; h += nwarps) {
    float r = 1.0f;
    if (p.qk_norm == QkNormMode::PerHead && h < nqk) r = head_norm_scale(ss_sh[h], hd, p.eps);
    else if (p.qk_norm == QkNormMode::WholeProjection && h < nqk) r = ss_sh[nqk + (h < nh ? 0 : 1)];
    prepare_head<KV_BF16>(h, qr, kr, vr, p, cos_sh, sin_sh, r, pos, lane);
  }
}

// Decode: the QKV projection, one warp per row as linear_decode computes it (kRowsPerBlock rows per
// block, the first weight loads before the wait), then each head's phase C (and its norm's sum of
// squares) in the last block to finish that head's rows, by its first warp: the heads are prepared in
// parallel. Per head the arithmetic is the kernel above's, with the same warp's sums: bit-identical.
template <typename T, bool KV_BF16>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    qkv_decode_kernel(const T* __restrict__ w, int cols, const float* __restrict__ x, float* __restrict__ qkv,
                      const int32_t* __restrict__ pos0, const QkvPrepareParams p, unsigned* counters) {
  __shared__ float trig[kMaxHeadDim];  // cos[half] | sin[half]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + warp;  // rows: a multiple of kRowsPerBlock
  const float s = warp_row_dot(w + r * cols, x, cols, lane, [] { wait_for_inputs(); });
  if (lane == 0) qkv[r] = s;
  const int nh = p.n_heads, nqk = nh + p.n_kv_heads, hd = p.head_dim, half = p.rotary_dim / 2;
  const int blocks_per_head = hd / kRowsPerBlock;
  const int h = blockIdx.x / blocks_per_head;
  if (!arrive_last(counters + h, unsigned(blocks_per_head)) || warp != 0) return;
  const int pos = __ldg(pos0);
  rope_angles(pos, p.inv_freq, p.rope_factor, half, trig, trig + half, lane, 32);
  float* qr = qkv;
  float* kr = qkv + int64_t(nh) * hd;
  float* vr = kr + int64_t(p.n_kv_heads) * hd;
  float scale = 1.0f;
  if (p.qk_norm == QkNormMode::PerHead && h < nqk) scale = head_norm_scale(qk_sum_squares(h, qr, kr, p, lane), hd, p.eps);
  __syncwarp();  // the angles
  prepare_head<KV_BF16>(h, qr, kr, vr, p, trig, trig + half, scale, pos, lane);
}

void bad_params(const char* why) { throw_cuda_error("qkv_prepare", why, __FILE__, __LINE__); }

void check_params(const QkvPrepareParams& p) {
  if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0) bad_params("head counts and head_dim must be positive");
  if (p.rotary_dim < 0 || p.rotary_dim > p.head_dim || p.rotary_dim % 2 != 0)
    bad_params("rotary_dim must be even and at most head_dim");
  if (p.rotary_dim > 0 && !p.inv_freq) bad_params("inv_freq missing");
  if (p.qk_norm != QkNormMode::None && (!p.q_norm || !p.k_norm)) bad_params("q/k norm weights missing");
  if (p.kv_dtype != DType::F32 && p.kv_dtype != DType::BF16) bad_params("KV cache dtype must be F32 or BF16");
  if (!p.k_cache || !p.v_cache) bad_params("KV cache missing");
}

template <typename T>
void launch_qkv_decode(const DeviceMatrix& w, const float* x, float* qkv, const int32_t* pos0,
                       const QkvPrepareParams& p, unsigned* counters, cudaStream_t stream) {
  const unsigned blocks = unsigned(w.rows / kRowsPerBlock);
  const T* W = static_cast<const T*>(w.data);
  if (p.kv_dtype == DType::BF16)
    launch_dependent("qkv_decode_kernel", qkv_decode_kernel<T, true>, blocks, kRowsPerBlock * 32, 0, stream, W,
                     int(w.cols), x, qkv, pos0, p, counters);
  else
    launch_dependent("qkv_decode_kernel", qkv_decode_kernel<T, false>, blocks, kRowsPerBlock * 32, 0, stream, W,
                     int(w.cols), x, qkv, pos0, p, counters);
}

}  // namespace

int qkv_decode_counters(const QkvPrepareParams& p) {
  const bool fits = p.qk_norm != QkNormMode::WholeProjection && p.head_dim > 0 && p.head_dim % kRowsPerBlock == 0 &&
                    p.head_dim <= kMaxHeadDim;
  return fits ? p.n_heads + 2 * p.n_kv_heads : 0;
}

void qkv_decode(const DeviceMatrix& w, const float* x, float* qkv, const int32_t* pos0, const QkvPrepareParams& p,
                unsigned* counters, cudaStream_t stream) {
  check_params(p);
  if (qkv_decode_counters(p) == 0) bad_params("qkv_decode: a whole-projection q/k norm, or head_dim not a multiple of 8 up to 256");
  if (w.rows != int64_t(p.n_heads + 2 * p.n_kv_heads) * p.head_dim || w.cols <= 0 || w.cols > 0x7fffffff)
    bad_params("qkv_decode: the matrix must have (n_heads + 2·n_kv_heads)·head_dim rows");
  switch (w.dtype) {
    case DType::BF16: launch_qkv_decode<__nv_bfloat16>(w, x, qkv, pos0, p, counters, stream); break;
    case DType::F16: launch_qkv_decode<__half>(w, x, qkv, pos0, p, counters, stream); break;
    case DType::F32: launch_qkv_decode<float>(w, x, qkv, pos0, p, counters, stream); break;
    default: bad_params("qkv_decode: weights must be BF16, F16 or F32");
  }
  MOE_CUDA_CHECK_LAUNCH();
}

void qkv_prepare(float* q, float* k, float* v, int64_t row_stride, int T, const int32_t* pos0,
                 const QkvPrepareParams& p, cudaStream_t stream) {
  if (T <= 0) return;
  check_params(p);

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
