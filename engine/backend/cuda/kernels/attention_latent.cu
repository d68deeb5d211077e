// Multi-head latent attention in the absorbed form (contract: attention_latent.cuh).
//
// latent_prepare_kernel: one block per token. The latent's sum of squares is a block tree (row_norm.cuh's
//   block_sum); out = (x · r) · w with r = 1 / sqrt(ss / n + eps), as the CPU's rmsnorm. k_pe is rotated
//   with rope_math.cuh's arithmetic and the row stored in the cache (BF16 rounded to nearest even).
// absorb_kernel: grid (n_heads, ⌈T / 8⌉), 128 threads. A block takes one head and up to 8 tokens: their
//   q_nope in shared memory, each thread a column c of W_UK_h (kv_b rows read once per block, coalesced
//   along c) and Σ_i q_nope[t][i] · W_UK_h[i][c] for the 8 tokens, i in order (the CPU's axpy order).
//   q_pe is rotated at the token's position and copied after the latent part.
// latent_split_kernel: grid (T · ⌈n_heads / 8⌉, splits), 256 threads. A block takes one token and a group
//   of up to 8 heads (the heads share the cache rows, so a row is read once per group) over one slice
//   of the keys. Per key tile (≤ 32 rows of kv_lora + rope, converted to F32 in shared memory):
//     scores: a warp per (head, key) pair, lanes over the dims in float4s, warp sum;
//     fold:   warp g takes head g: the tile's max, e^(s − m), Σ e and (statistics) Σ e·x into the running
//             sums with softmax_merge (online_softmax.h), the first key's score, the top-k list
//             (attention_common.cuh's warp_topk_insert);
//     values: the same warp rescales its head's accumulators (lane = 4 dims every 128) and adds
//             Σ e_j · latent_j.
//   Decode (T = 1): the slices' partials go to the workspace in attention_common.cuh's layout and
//   attention.cu's merge kernel finishes (outputs and statistics). Prefill: one slice per row, and the
//   block finishes its rows itself from the same sums (FINAL).
// expand_kernel: grid (n_heads, ⌈T / 8⌉), 256 threads: the tokens' latents of the head in shared memory,
//   a warp per row j of W_UV_h (lanes along the latent), 8 dot products per row, warp sums.
// Every reduction has a fixed order: results are deterministic for a given shape.
#include "engine/backend/cuda/kernels/attention_latent.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/attention_common.cuh"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/online_softmax.h"
#include "engine/backend/cuda/kernels/rope_math.cuh"
#include "engine/backend/cuda/kernels/row_norm.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;       // prepare, split and expand kernels
constexpr int kWarps = kThreads / 32;
constexpr int kHeadsPerBlock = 8;   // = kWarps: warp g folds and accumulates head g of the group
constexpr int kAbsorbThreads = 128;
constexpr int kTokensPerBlock = 8;  // absorb and expand
constexpr int kMaxTile = 32;        // keys per tile: one per lane in the fold
constexpr int kMaxSplits = 128;
constexpr int kMaxRopeDim = 256;
constexpr size_t kMaxSmemBytes = 48 * 1024;
static_assert(kHeadsPerBlock == kWarps, "warp g of the block owns head g of its group");

[[noreturn]] void bad_argument(const char* what) { throw_cuda_error("latent attention", what, __FILE__, __LINE__); }

int round_up4(int x) { return (x + 3) / 4 * 4; }

void check_shape(const LatentShape& s) {
  if (s.n_heads <= 0) bad_argument("n_heads must be positive");
  if (s.kv_lora <= 0 || s.kv_lora % 4 != 0 || s.kv_lora > kMaxLatent) bad_argument("kv_lora must be a multiple of 4 up to 1024");
  if (s.rope_dim <= 0 || s.rope_dim % 2 != 0 || s.rope_dim > kMaxRopeDim) bad_argument("the RoPE part must be even, 2 … 256");
  if (s.qk_nope <= 0 || s.v_dim <= 0) bad_argument("q_nope and v must be positive");
  if (s.kv_dtype != DType::F32 && s.kv_dtype != DType::BF16) bad_argument("the cache is F32 or BF16");
}

// ---------------------------------------------------------------------------------------------------
// Device helpers

template <bool KV_BF16>
__device__ __forceinline__ void store_row(void* cache, int64_t i, float a) {
  if constexpr (KV_BF16) static_cast<uint16_t*>(cache)[i] = f32_to_bf16_bits(a);
  else static_cast<float*>(cache)[i] = a;
}

// One weight of a DeviceMatrix's storage type, as F32.
template <typename W>
__device__ __forceinline__ float weight_at(const void* base, int64_t i) {
  return Elem<W>::one(static_cast<const W*>(base) + i);
}

// RMSNorm of n values at in (+ bias) into out, by the whole block: (a · r) · w. sh: ≥ 33 floats.
__device__ __forceinline__ void norm_with_bias(const float* in, const float* __restrict__ bias, const float* __restrict__ w,
                                               int n, float eps, float* sh, float* out_f32, void* out_cache,
                                               bool cache_bf16) {
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float a = bias ? in[i] + __ldg(bias + i) : in[i];
    ss += a * a;
  }
  ss = block_sum(ss, sh);
  const float r = 1.0f / sqrtf(ss / float(n) + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float a = bias ? in[i] + __ldg(bias + i) : in[i];
    const float y = a * r * __ldg(w + i);
    if (out_f32) out_f32[i] = y;
    else if (cache_bf16) store_row<true>(out_cache, i, y);
    else store_row<false>(out_cache, i, y);
  }
}

// ---------------------------------------------------------------------------------------------------
// 1. The cache row (and the q-LoRA norm)

template <bool KV_BF16>
__global__ void __launch_bounds__(kThreads) latent_prepare_kernel(const float* __restrict__ kv, int64_t kv_stride,
                                                                   const int32_t* __restrict__ pos0, LatentShape s,
                                                                   LatentRope rope, LatentPrepareParams p) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  __shared__ float sh[33];
  __shared__ float cos_sh[kMaxRopeDim / 2], sin_sh[kMaxRopeDim / 2];
  const int t = blockIdx.x;
  const int pos = __ldg(pos0) + t;
  const int half = s.rope_dim / 2;
  const float* in = kv + int64_t(t) * kv_stride;
  void* row = static_cast<std::byte*>(p.cache) + int64_t(pos) * s.row() * (KV_BF16 ? 2 : 4);
  rope_angles(pos, rope.inv_freq, rope.factor, half, cos_sh, sin_sh, threadIdx.x, blockDim.x);
  norm_with_bias(in, p.kv_bias, p.kv_norm, s.kv_lora, p.eps, sh, nullptr, row, KV_BF16);  // its barriers publish cos/sin
  const float* pe = in + s.kv_lora;
  const float* pe_bias = p.kv_bias ? p.kv_bias + s.kv_lora : nullptr;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const int ia = rope_first(i, half, rope.interleaved), ib = rope_second(i, half, rope.interleaved);
    const float x0 = pe_bias ? pe[ia] + __ldg(pe_bias + ia) : pe[ia];
    const float x1 = pe_bias ? pe[ib] + __ldg(pe_bias + ib) : pe[ib];
    float y0, y1;
    rope_rotate(x0, x1, cos_sh[i], sin_sh[i], y0, y1);
    store_row<KV_BF16>(row, s.kv_lora + ia, y0);
    store_row<KV_BF16>(row, s.kv_lora + ib, y1);
  }
  if (p.q_lora > 0)
    norm_with_bias(p.q_in + int64_t(t) * p.q_in_stride, p.q_bias, p.q_norm, p.q_lora, p.eps, sh,
                   p.q_out + int64_t(t) * p.q_lora, nullptr, false);
}

// ---------------------------------------------------------------------------------------------------
// 2. The absorbed queries

template <typename W>
__global__ void __launch_bounds__(kAbsorbThreads) absorb_kernel(const float* __restrict__ q, int64_t q_stride, int T,
                                                                 const int32_t* __restrict__ pos0, const void* kv_b,
                                                                 LatentShape s, LatentRope rope, float* __restrict__ q_abs) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  extern __shared__ float4 smem4[];
  float* q_s = reinterpret_cast<float*>(smem4);             // [8][qk_nope]
  float* cos_sh = q_s + kTokensPerBlock * s.qk_nope;         // [8][rope / 2]
  const int half = s.rope_dim / 2;
  float* sin_sh = cos_sh + kTokensPerBlock * half;
  const int h = blockIdx.x, t0 = blockIdx.y * kTokensPerBlock;
  const int nt = min(kTokensPerBlock, T - t0);
  const int qh = s.q_head(), row = s.row();
  for (int i = threadIdx.x; i < nt * s.qk_nope; i += blockDim.x) {
    const int tt = i / s.qk_nope, d = i - tt * s.qk_nope;
    q_s[i] = q[int64_t(t0 + tt) * q_stride + int64_t(h) * qh + d];
  }
  for (int tt = 0; tt < nt; ++tt)
    rope_angles(__ldg(pos0) + t0 + tt, rope.inv_freq, rope.factor, half, cos_sh + tt * half, sin_sh + tt * half,
                threadIdx.x, blockDim.x);
  __syncthreads();

  const int64_t w_row0 = int64_t(h) * (s.qk_nope + s.v_dim);  // W_UK_h's first row in kv_b
  for (int c = threadIdx.x; c < s.kv_lora; c += blockDim.x) {
    float acc[kTokensPerBlock];
#pragma unroll
    for (int tt = 0; tt < kTokensPerBlock; ++tt) acc[tt] = 0.0f;
    for (int i = 0; i < s.qk_nope; ++i) {
      const float w = weight_at<W>(kv_b, (w_row0 + i) * s.kv_lora + c);
#pragma unroll
      for (int tt = 0; tt < kTokensPerBlock; ++tt) acc[tt] = fmaf(q_s[tt * s.qk_nope + i], w, acc[tt]);
    }
#pragma unroll
    for (int tt = 0; tt < kTokensPerBlock; ++tt)  // (a constant trip count keeps acc in registers)
      if (tt < nt) q_abs[(int64_t(t0 + tt) * s.n_heads + h) * row + c] = acc[tt];
  }
  for (int i = threadIdx.x; i < nt * half; i += blockDim.x) {
    const int tt = i / half, k = i - tt * half;
    const float* pe = q + int64_t(t0 + tt) * q_stride + int64_t(h) * qh + s.qk_nope;
    const int ia = rope_first(k, half, rope.interleaved), ib = rope_second(k, half, rope.interleaved);
    float y0, y1;
    rope_rotate(pe[ia], pe[ib], cos_sh[tt * half + k], sin_sh[tt * half + k], y0, y1);
    float* out = q_abs + (int64_t(t0 + tt) * s.n_heads + h) * row + s.kv_lora;
    out[ia] = y0;
    out[ib] = y1;
  }
}

// ---------------------------------------------------------------------------------------------------
// 3. Attention over the latents

struct SplitParams {
  int n_heads, kv_lora, row, row4, n_hg, splits, tile, topk;
  float scale;
};

size_t split_smem_bytes(int row4, int tile, bool stats) {
  return sizeof(float) * (size_t(kHeadsPerBlock) * row4 + size_t(tile) * row4 + size_t(kHeadsPerBlock) * tile +
                          4 * size_t(kHeadsPerBlock) + (stats ? size_t(kHeadsPerBlock) * 32 : 0));
}

template <typename KV, bool STATS, bool FINAL>
__global__ void __launch_bounds__(kThreads) latent_split_kernel(const float* __restrict__ q_abs, const KV* __restrict__ cache,
                                                                 const int32_t* __restrict__ pos0, SplitParams p,
                                                                 float* __restrict__ ws, float* __restrict__ out, StatsOut so) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  extern __shared__ float4 smem4[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int split = blockIdx.y;
  const int t = blockIdx.x / p.n_hg, hg = blockIdx.x - t * p.n_hg;
  const int h0 = hg * kHeadsPerBlock;
  const int gn = min(kHeadsPerBlock, p.n_heads - h0);
  const int row = p.row, row4 = p.row4, tile = p.tile, kl = p.kv_lora;
  const int part_stride = kPartialHeader + kl;

  float* q_s = reinterpret_cast<float*>(smem4);  // [8][row4]
  float* k_s = q_s + kHeadsPerBlock * row4;      // [tile][row4]
  float* sc_s = k_s + tile * row4;               // [8][tile]: scores, then e^(s − m)
  float* st_m = sc_s + kHeadsPerBlock * tile;    // [8] running state per head
  float* st_S = st_m + kHeadsPerBlock;
  float* st_B = st_S + kHeadsPerBlock;
  float* st_first = st_B + kHeadsPerBlock;
  float* tk_s = st_first + kHeadsPerBlock;       // [8][32] (STATS)

  const int n = __ldg(pos0) + t + 1;
  int chunk = (n + p.splits - 1) / p.splits;
  chunk = (chunk + tile - 1) / tile * tile;
  const int lo = split * chunk;
  const int hi = min(n, lo + chunk);

  if (!FINAL && lo >= hi) {  // empty slice: an empty partial (its values are never read)
    const int hw = STATS ? kPartialHeader : 4;
    for (int i = tid; i < gn * hw; i += kThreads) {
      const int g = i / hw, c = i - g * hw;
      ws[(size_t(h0 + g) * p.splits + split) * part_stride + c] = (c == 1 || c == 2) ? 0.0f : -INFINITY;
    }
    return;
  }

  const float* qt = q_abs + (int64_t(t) * p.n_heads + h0) * row;
  for (int i = tid; i < kHeadsPerBlock * row4; i += kThreads) {
    const int g = i / row4, d = i - g * row4;
    q_s[i] = g < gn && d < row ? qt[int64_t(g) * row + d] : 0.0f;
  }
  if (tid < kHeadsPerBlock) {
    st_m[tid] = -INFINITY;
    st_S[tid] = 0.0f;
    st_B[tid] = 0.0f;
    st_first[tid] = -INFINITY;
  }
  if (STATS) tk_s[tid] = -INFINITY;  // kThreads == 8 · 32

  constexpr int kAcc = kMaxLatent / 128;  // float4 accumulators per lane: dims 4·lane + 128·i
  float4 acc[kAcc];
#pragma unroll
  for (int i = 0; i < kAcc; ++i) acc[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  const bool owner = warp < gn;  // warp g folds and accumulates head g

  for (int j0 = lo; j0 < hi; j0 += tile) {
    const int tn = min(tile, hi - j0);
    const KV* rows = cache + int64_t(j0) * row;
    for (int i = tid; i < tn * row4; i += kThreads) {
      const int r = i / row4, d = i - r * row4;
      k_s[i] = d < row ? to_f32(rows[int64_t(r) * row + d]) : 0.0f;
    }
    __syncthreads();

    // Scores: a warp per (head, key) pair.
    for (int pr = warp; pr < gn * tn; pr += kWarps) {
      const int g = pr / tn, r = pr - g * tn;
      const float* qg = q_s + g * row4;
      const float* kr = k_s + r * row4;
      float4 a4 = make_float4(0.f, 0.f, 0.f, 0.f);
      for (int d = 4 * lane; d < row4; d += 128) {
        const float4 x = *reinterpret_cast<const float4*>(qg + d), y = *reinterpret_cast<const float4*>(kr + d);
        a4.x = fmaf(x.x, y.x, a4.x);
        a4.y = fmaf(x.y, y.y, a4.y);
        a4.z = fmaf(x.z, y.z, a4.z);
        a4.w = fmaf(x.w, y.w, a4.w);
      }
      const float sum = warp_sum((a4.x + a4.y) + (a4.z + a4.w));
      if (lane == 0) sc_s[g * tile + r] = sum * p.scale;
    }
    __syncthreads();

    if (owner) {
      const int g = warp;
      float* sr = sc_s + g * tile;
      const float s0 = lane < tn ? sr[lane] : -INFINITY;
      const float tm = warp_max(s0);  // finite: tn ≥ 1
      SoftmaxSums sums{st_m[g], st_S[g], st_B[g]};
      const float mn = fmaxf(sums.m, tm);
      float e = 0.0f, b = 0.0f;
      if (lane < tn) {
        const float x = s0 - mn;
        e = expf(x);
        if (STATS) b = e * x;
      }
      const float e_sum = warp_sum(e);
      const float b_sum = STATS ? warp_sum(b) : 0.0f;
      float fa, fb;
      softmax_merge(sums, SoftmaxSums{mn, e_sum, b_sum}, fa, fb);
      if (lane < tn) sr[lane] = e;
      if (lane == 0) {
        st_m[g] = sums.m;
        st_S[g] = sums.S;
        st_B[g] = sums.B;
        if (STATS && j0 == 0) st_first[g] = s0;
      }
      if (STATS) warp_topk_insert(tk_s + g * 32, p.topk, s0, -INFINITY);
      __syncwarp();
#pragma unroll
      for (int i = 0; i < kAcc; ++i) {
        acc[i].x *= fa;
        acc[i].y *= fa;
        acc[i].z *= fa;
        acc[i].w *= fa;
      }
      for (int r = 0; r < tn; ++r) {
        const float w = sr[r];
        const float* kr = k_s + r * row4;
#pragma unroll
        for (int i = 0; i < kAcc; ++i) {
          const int d = 4 * lane + 128 * i;
          if (d < kl) {
            const float4 v = *reinterpret_cast<const float4*>(kr + d);
            acc[i].x = fmaf(w, v.x, acc[i].x);
            acc[i].y = fmaf(w, v.y, acc[i].y);
            acc[i].z = fmaf(w, v.z, acc[i].z);
            acc[i].w = fmaf(w, v.w, acc[i].w);
          }
        }
      }
    }
    __syncthreads();
  }

  if (!owner) return;
  const int g = warp, h = h0 + g;
  const SoftmaxSums sums{st_m[g], st_S[g], st_B[g]};
  if constexpr (FINAL) {
    const float inv = 1.0f / sums.S;
    float* o = out + (int64_t(t) * p.n_heads + h) * kl;
#pragma unroll
    for (int i = 0; i < kAcc; ++i) {
      const int d = 4 * lane + 128 * i;
      if (d < kl) *reinterpret_cast<float4*>(o + d) = make_float4(acc[i].x * inv, acc[i].y * inv, acc[i].z * inv, acc[i].w * inv);
    }
    if constexpr (STATS) {
      const float v = tk_s[g * 32 + lane];
      const float sum_top = warp_sum(lane < p.topk && v > -INFINITY ? expf(v - sums.m) : 0.0f);
      if (lane == 0) {
        const int64_t at = int64_t(t) * so.token_stride + h;
        if (so.entropy) so.entropy[at] = softmax_entropy(sums);
        if (so.max_weight) so.max_weight[at] = softmax_max_weight(sums);
        if (so.first_mass) so.first_mass[at] = softmax_weight(sums, st_first[g]);
        if (so.topk_mass) so.topk_mass[at] = softmax_topk_mass(sums, sum_top, n, p.topk);
      }
    }
  } else {
    float* part = ws + (size_t(h) * p.splits + split) * part_stride;
#pragma unroll
    for (int i = 0; i < kAcc; ++i) {
      const int d = 4 * lane + 128 * i;
      if (d < kl) *reinterpret_cast<float4*>(part + kPartialHeader + d) = acc[i];
    }
    if (lane == 0) {
      part[0] = sums.m;
      part[1] = sums.S;
      part[2] = sums.B;
      part[3] = st_first[g];
    }
    if (STATS) part[4 + lane] = tk_s[g * 32 + lane];
  }
}

// ---------------------------------------------------------------------------------------------------
// 4. The values

template <typename W>
__global__ void __launch_bounds__(kThreads) expand_kernel(const float* __restrict__ latent, int T, const void* kv_b,
                                                           LatentShape s, float* __restrict__ out) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  extern __shared__ float4 smem4[];
  float* lat_s = reinterpret_cast<float*>(smem4);  // [8][kv_lora]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int h = blockIdx.x, t0 = blockIdx.y * kTokensPerBlock;
  const int nt = min(kTokensPerBlock, T - t0), kl = s.kv_lora;
  for (int i = threadIdx.x; i < kTokensPerBlock * kl; i += blockDim.x) {
    const int tt = i / kl, c = i - tt * kl;
    lat_s[i] = tt < nt ? latent[(int64_t(t0 + tt) * s.n_heads + h) * kl + c] : 0.0f;
  }
  __syncthreads();
  const int64_t w_row0 = int64_t(h) * (s.qk_nope + s.v_dim) + s.qk_nope;  // W_UV_h's first row in kv_b
  const int64_t out_stride = int64_t(s.n_heads) * s.v_dim;
  for (int j = warp; j < s.v_dim; j += kWarps) {
    float acc[kTokensPerBlock];
#pragma unroll
    for (int tt = 0; tt < kTokensPerBlock; ++tt) acc[tt] = 0.0f;
    for (int c = lane; c < kl; c += 32) {
      const float w = weight_at<W>(kv_b, (w_row0 + j) * kl + c);
#pragma unroll
      for (int tt = 0; tt < kTokensPerBlock; ++tt) acc[tt] = fmaf(w, lat_s[tt * kl + c], acc[tt]);
    }
#pragma unroll
    for (int tt = 0; tt < kTokensPerBlock; ++tt) {
      const float v = warp_sum(acc[tt]);
      if (lane == tt && tt < nt) out[int64_t(t0 + tt) * out_stride + int64_t(h) * s.v_dim + j] = v;
    }
  }
}

template <typename KV>
void launch_split(const float* q_abs, const void* cache, const int32_t* pos0, const SplitParams& p, dim3 grid, size_t smem,
                  float* ws, float* out, const StatsOut& so, bool stats, bool final, cudaStream_t stream) {
  const auto kernel = final ? (stats ? latent_split_kernel<KV, true, true> : latent_split_kernel<KV, false, true>)
                            : (stats ? latent_split_kernel<KV, true, false> : latent_split_kernel<KV, false, false>);
  launch_dependent("latent_split_kernel", kernel, grid, kThreads, smem, stream, q_abs, static_cast<const KV*>(cache), pos0,
                   p, ws, out, so);
}

void check_kv_b(const DeviceMatrix& kv_b, const LatentShape& s) {
  if (kv_b.rows != int64_t(s.n_heads) * (s.qk_nope + s.v_dim) || kv_b.cols != s.kv_lora)
    bad_argument("kv_b must be [n_heads·(q_nope + v), kv_lora]");
  if (kv_b.dtype != DType::BF16 && kv_b.dtype != DType::F16 && kv_b.dtype != DType::F32)
    bad_argument("kv_b must be BF16, F16 or F32");
}

}  // namespace

void latent_prepare(const float* kv, int64_t kv_stride, int T, const int32_t* pos0, const LatentShape& s,
                    const LatentRope& rope, const LatentPrepareParams& p, cudaStream_t stream) {
  check_shape(s);
  if (T <= 0) return;
  if (s.kv_dtype == DType::F32)
    launch_dependent("latent_prepare_kernel", latent_prepare_kernel<false>, T, kThreads, 0, stream, kv, kv_stride, pos0,
                     s, rope, p);
  else
    launch_dependent("latent_prepare_kernel", latent_prepare_kernel<true>, T, kThreads, 0, stream, kv, kv_stride, pos0,
                     s, rope, p);
  MOE_CUDA_CHECK_LAUNCH();
}

void latent_absorb_queries(const float* q, int64_t q_stride, int T, const int32_t* pos0, const DeviceMatrix& kv_b,
                           const LatentShape& s, const LatentRope& rope, float* q_abs, cudaStream_t stream) {
  check_shape(s);
  check_kv_b(kv_b, s);
  if (T <= 0) return;
  const dim3 grid(unsigned(s.n_heads), unsigned((T + kTokensPerBlock - 1) / kTokensPerBlock));
  const size_t smem = sizeof(float) * kTokensPerBlock * (size_t(s.qk_nope) + size_t(s.rope_dim));
  if (smem > kMaxSmemBytes) bad_argument("q_nope is too wide for shared memory");
  if (kv_b.dtype == DType::BF16)
    launch_dependent("absorb_kernel", absorb_kernel<__nv_bfloat16>, grid, kAbsorbThreads, smem, stream, q, q_stride, T,
                     pos0, kv_b.data, s, rope, q_abs);
  else if (kv_b.dtype == DType::F16)
    launch_dependent("absorb_kernel", absorb_kernel<__half>, grid, kAbsorbThreads, smem, stream, q, q_stride, T, pos0,
                     kv_b.data, s, rope, q_abs);
  else
    launch_dependent("absorb_kernel", absorb_kernel<float>, grid, kAbsorbThreads, smem, stream, q, q_stride, T, pos0,
                     kv_b.data, s, rope, q_abs);
  MOE_CUDA_CHECK_LAUNCH();
}

size_t latent_attention_workspace_floats(const LatentShape& s, int max_splits) {
  return size_t(s.n_heads > 0 ? s.n_heads : 0) * size_t(max_splits > 0 ? max_splits : 0) *
         size_t(kPartialHeader + round_up4(s.kv_lora));
}

void latent_attention(const float* q_abs, int T, const void* cache, const int32_t* pos0, const LatentShape& s,
                      int max_splits, float* workspace, float* out, const AttentionStats* stats, cudaStream_t stream) {
  check_shape(s);
  if (max_splits < 1 || max_splits > kMaxSplits) bad_argument("max_splits must be in 1 … 128");
  if (T <= 0) return;
  const StatsOut so = stats_out(stats);
  SplitParams p{};
  p.n_heads = s.n_heads;
  p.kv_lora = s.kv_lora;
  p.row = s.row();
  p.row4 = round_up4(p.row);
  p.n_hg = (s.n_heads + kHeadsPerBlock - 1) / kHeadsPerBlock;
  p.splits = T == 1 ? max_splits : 1;
  p.topk = so.topk;
  p.scale = s.scale;
  p.tile = kMaxTile;
  while (p.tile > 1 && split_smem_bytes(p.row4, p.tile, stats != nullptr) > kMaxSmemBytes) p.tile /= 2;
  const size_t smem = split_smem_bytes(p.row4, p.tile, stats != nullptr);
  if (smem > kMaxSmemBytes) bad_argument("the latent rows do not fit in shared memory");
  const dim3 grid(unsigned(T * p.n_hg), unsigned(p.splits));  // x: T · n_hg may pass y's 65535
  const bool final = T > 1;
  if (s.kv_dtype == DType::F32)
    launch_split<float>(q_abs, cache, pos0, p, grid, smem, workspace, out, so, stats != nullptr, final, stream);
  else
    launch_split<__nv_bfloat16>(q_abs, cache, pos0, p, grid, smem, workspace, out, so, stats != nullptr, final, stream);
  MOE_CUDA_CHECK_LAUNCH();
  if (!final) merge_decode_partials(workspace, pos0, s.n_heads, s.kv_lora, p.splits, stats ? &so : nullptr, out, stream);
}

void latent_expand_values(const float* latent, int T, const DeviceMatrix& kv_b, const LatentShape& s, float* out,
                          cudaStream_t stream) {
  check_shape(s);
  check_kv_b(kv_b, s);
  if (T <= 0) return;
  const dim3 grid(unsigned(s.n_heads), unsigned((T + kTokensPerBlock - 1) / kTokensPerBlock));
  const size_t smem = sizeof(float) * kTokensPerBlock * size_t(s.kv_lora);
  if (kv_b.dtype == DType::BF16)
    launch_dependent("expand_kernel", expand_kernel<__nv_bfloat16>, grid, kThreads, smem, stream, latent, T, kv_b.data, s,
                     out);
  else if (kv_b.dtype == DType::F16)
    launch_dependent("expand_kernel", expand_kernel<__half>, grid, kThreads, smem, stream, latent, T, kv_b.data, s, out);
  else
    launch_dependent("expand_kernel", expand_kernel<float>, grid, kThreads, smem, stream, latent, T, kv_b.data, s, out);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::cuda
