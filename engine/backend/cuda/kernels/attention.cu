// Causal GQA attention over one layer's KV cache (contract: attention.cuh), mirroring the CPU backend's
// attention_block + record_attention: s_j = (q_h · k_{j,kvh}) · scale with kvh = h / (nh / nkv),
// softmax over keys 0 … pos, out_h = Σ w_j v_j, and the per-(token, head) statistics from the online
// softmax sums (online_softmax.h, shared with the host tests).
//
// Common pieces. K/V rows are staged through shared memory as F32 (BF16 caches converted on the way)
// with 16-byte loads (float4, or 8 BF16) when head_dim and the cache pointers allow it, a scalar loop
// otherwise; shared rows are padded by 4 floats so that float4 reads of 8 consecutive rows hit
// distinct banks. Dot products keep four partial sums (the x, y, z, w lanes of a float4) to break the
// FMA dependency chain. Softmax sums are F32; the entropy is finished in double. Every reduction has a
// fixed order, so results are deterministic for a given shape and launch.
//
// Decode (split-K, two kernels):
//   decode_split_kernel: grid (max_splits, n_kv_heads · head groups), 256 threads. A block takes one
//     slice of the keys of one KV head, for all (or a group of) the query heads that share it, so each
//     K/V row is read once per slice. n = pos0[0] + 1 is read on the device; chunk = ceil(n / splits)
//     rounded up to the key tile, slice s = [s·chunk, min(n, (s+1)·chunk)) — empty slices write an
//     empty partial. Per key tile (16–64 keys, sized so K+V tiles take ~32 KiB; with 16-byte loads the
//     next tile is fetched into registers while this one is worked on): scores into shared
//     memory (thread = key × up to 4 heads), then one warp per head folds the tile into that head's
//     running (m, S, B) with softmax_merge and (stats only) into its top-k list, then the weighted V
//     sum: thread = 4 dims × one head × (when there are fewer heads than thread groups) a share of the
//     keys, reduced at the end. The partial (m, S, B, key 0's score, top-k scores, unnormalised
//     Σ e^(s−m) v) goes to the workspace.
//   decode_merge_kernel: one block (128 threads) per query head. M = max of the slices' m; each slice
//     is moved to M with softmax_rescale (factor f_s), S and B summed; out = Σ f_s acc_s / S. Top-k:
//     the k-th largest of the union is at least L = max over slices of their k-th score, so only
//     entries ≥ L are candidates; each candidate's rank (ties broken by slot) picks the k largest, and
//     their e^(s − M) are summed in rank order.
// Prefill: grid (ceil(T / TQ), n_heads), 256 threads, TQ = 32 query tokens (16 for head_dim > 128).
//   Key tiles of TQ keys up to the tile's last position: K tile → scores (thread = 2×2 (query, key)
//   block for TQ 32) with the causal mask → V tile loaded into the same buffer while one warp per
//   query row folds the tile into the row's state (lane = key) → P·V with thread = 4 dims × up to 4
//   rows. F32 SIMT arithmetic.
//   With AttentionShape::tensor_cores (BF16/F16 models, TQ 32, head_dim % 16 == 0): Q·Kᵀ and P·V are
//   TF32 WMMA tiles (Q, K, P and V rounded to TF32, F32 accumulation). All eight warps compute the
//   32 × 32 scores, a 16 × 16 tile over half of the dims each (the fold adds the halves); the fold applies
//   the scale and the causal mask; the unnormalised outputs live in shared memory ([TQ][hd]), where
//   every thread rescales its rows by the fold's factor before the warps add this tile's P·V, two output
//   tiles per warp at a time (fragments have no row layout to rescale in registers). Each warp keeps two
//   independent chains of mma in both products. The statistics come from the same scores as the
//   outputs. Dynamic shared memory above 48 KiB (hd 128: 59 KiB, 63 with the statistics) is opted into.
//   Where head_dim is 16, 32, 64 or 128 (and AttentionShape::prefill_mma), the outputs come from the
//   kernel of attention_prefill_mma.cu instead, the same TF32 products kept in registers; this one then
//   runs only when statistics are asked for, for them.
// Row: one block; scores (a warp per key, 4 keys in flight), block max, exp, block sum, × 1/sum.
// GPT-OSS (AttentionShape::window, ::sinks): decode cuts only the keys in the window into slices; prefill
// walks the key tiles from the first key its first query sees and masks both edges of every row's window;
// a row's denominator takes e^(sink − m) (online_softmax.h's softmax_denominator and statistics).
//
// Statistics only when asked (a template flag: the plain path carries no B, top-k or first score).
// The top-k lists live one entry per lane of the warp owning the row (kMaxStatsTopK = 32 = warp
// size); a tile's scores enter by repeated warp arg-max above the current k-th score.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstddef>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/async_copy.cuh"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/attention.cuh"
#include "engine/backend/cuda/kernels/attention_common.cuh"
#include "engine/backend/cuda/kernels/attention_prefill_mma.cuh"
#include "engine/backend/cuda/kernels/online_softmax.h"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {

static_assert(kOnlineSoftmaxTopK == kMaxStatsTopK, "online_softmax.h and attention.cuh disagree on the top-k capacity");
static_assert(kMaxStatsTopK == 32, "the top-k lists keep one entry per lane of a warp");

namespace {

constexpr int kThreads = 256;       // split, prefill and row kernels
constexpr int kWarps = kThreads / 32;
constexpr int kMergeThreads = 128;  // decode merge
constexpr int kMaxSplits = 128;
constexpr int kMaxRowHeadDim = 1024;  // attention_row: the latent attention's 576-wide rows
constexpr int kMaxHeadDim = 256;
constexpr size_t kMaxSmemBytes = 48 * 1024;  // no opt-in attribute needed
constexpr size_t kMaxTcSmemBytes = 99 * 1024;  // the opt-in limit of sm_86 and sm_89 (sm_80, sm_90: more)

int round_up4(int x) { return (x + 3) / 4 * 4; }

[[noreturn]] void bad_argument(const char* what) { throw_cuda_error("attention", what, __FILE__, __LINE__); }

void check_shape(const AttentionShape& s, int max_head_dim = kMaxHeadDim) {
  if (s.n_heads <= 0 || s.n_kv_heads <= 0 || s.n_heads % s.n_kv_heads != 0)
    bad_argument("n_heads must be a positive multiple of n_kv_heads");
  if (s.head_dim <= 0 || s.head_dim > max_head_dim)
    bad_argument(max_head_dim == kMaxHeadDim ? "head_dim must be in 1 … 256" : "head_dim must be in 1 … 1024");
  if (s.kv_dtype != DType::F32 && s.kv_dtype != DType::BF16) bad_argument("KV cache dtype must be F32 or BF16");
  if (s.window < 0) bad_argument("window must be 0 (none) or positive");
}

// 16-byte loads of cache rows: F32 needs head_dim % 4 == 0, BF16 head_dim % 8 == 0, and aligned bases.
bool kv_vector_ok(const AttentionShape& s, const void* k, const void* v) {
  const int per16 = s.kv_dtype == DType::F32 ? 4 : 8;
  return s.head_dim % per16 == 0 && aligned16(k) && (v == nullptr || aligned16(v));
}

// ---------------------------------------------------------------------------------------------------
// Device helpers

// Eight BF16 values (one 16-byte chunk) as F32 at d (16-byte aligned), in two 16-byte stores.
__device__ __forceinline__ void store_bf16x8(float* d, const uint4& x) {
  float f[8];
  Elem<__nv_bfloat16>::cvt(x, f);
  *reinterpret_cast<float4*>(d) = make_float4(f[0], f[1], f[2], f[3]);
  *reinterpret_cast<float4*>(d + 4) = make_float4(f[4], f[5], f[6], f[7]);
}

// rows × hd4 floats into dst (row stride dst_stride floats) from cache rows src + r·src_stride;
// dims hd … hd4 are zero. vec: the 16-byte path (then hd4 == hd). All of a thread's loads are in flight
// at once: an F32 cache's rows go by cp.async (async_copy.cuh), a BF16 cache's are loaded two 16-byte
// vectors at a time before they are converted. So the caller waits (wait_async<0>) before the barrier
// that publishes the rows, and may work on something else in between.
template <typename KV>
__device__ __forceinline__ void load_rows(float* dst, int dst_stride, const KV* src, int64_t src_stride, int rows,
                                          int hd, int hd4, bool vec) {
  if (vec) {
    if constexpr (sizeof(KV) == 4) {
      const int nv = hd / 4;
      for (int i = threadIdx.x; i < rows * nv; i += blockDim.x) {
        const int r = i / nv, c = i - r * nv;
        copy_async_16(dst + r * dst_stride + 4 * c, src + r * src_stride + 4 * c);
      }
      commit_async();
    } else {
      constexpr int kBatch = 2;  // a 32-row tile of head_dim 128 is two vectors per thread
      const int nv = hd / 8, n = rows * nv;
      for (int i0 = threadIdx.x; i0 < n; i0 += kBatch * blockDim.x) {
        uint4 x[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int i = i0 + u * int(blockDim.x), r = i / nv, c = i - r * nv;
          if (i < n) x[u] = *reinterpret_cast<const uint4*>(src + r * src_stride + 8 * c);
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int i = i0 + u * int(blockDim.x), r = i / nv, c = i - r * nv;
          if (i >= n) break;
          store_bf16x8(dst + r * dst_stride + 8 * c, x[u]);
        }
      }
    }
  } else {
    for (int i = threadIdx.x; i < rows * hd4; i += blockDim.x) {
      const int r = i / hd4, d = i - r * hd4;
      dst[r * dst_stride + d] = d < hd ? to_f32(src[r * src_stride + d]) : 0.0f;
    }
  }
}

// The next K and V tiles of the decode kernel in registers (16-byte path only): loaded before the
// current tile is worked on, stored to shared memory after it, so the global loads overlap the work.
// Vector i of a thread is element threadIdx.x + i·kThreads of [K rows][nv] ++ [V rows][nv];
// 2·tile·nv = 2·tile·hd / kPer16 ≤ kThreads·kMax since tile·hd4 ≤ 4096 (decode_geometry).
template <typename KV>
struct TilePrefetch {
  static constexpr int kPer16 = 16 / int(sizeof(KV));  // values per 16 bytes
  static constexpr int kMax = 32 / kPer16;               // 8 (F32) or 4 (BF16)
  uint4 r[kMax];

  __device__ __forceinline__ void load(const KV* kb, const KV* vb, int64_t stride, int j0, int tn, int nv) {
    const int per = tn * nv;
#pragma unroll
    for (int i = 0; i < kMax; ++i) {
      int idx = int(threadIdx.x) + i * kThreads;
      if (idx < 2 * per) {
        const bool is_v = idx >= per;
        if (is_v) idx -= per;
        const int row = idx / nv, c = idx - row * nv;
        r[i] = *reinterpret_cast<const uint4*>((is_v ? vb : kb) + int64_t(j0 + row) * stride + kPer16 * c);
      }
    }
  }
  __device__ __forceinline__ void store(float* k_s, float* v_s, int st, int tn, int nv) const {
    const int per = tn * nv;
#pragma unroll
    for (int i = 0; i < kMax; ++i) {
      int idx = int(threadIdx.x) + i * kThreads;
      if (idx < 2 * per) {
        const bool is_v = idx >= per;
        if (is_v) idx -= per;
        const int row = idx / nv, c = idx - row * nv;
        float* d = (is_v ? v_s : k_s) + row * st + kPer16 * c;
        const uint4 x = r[i];
        if constexpr (sizeof(KV) == 4) {
          *reinterpret_cast<float4*>(d) =
              make_float4(__uint_as_float(x.x), __uint_as_float(x.y), __uint_as_float(x.z), __uint_as_float(x.w));
        } else {
          store_bf16x8(d, x);
        }
      }
    }
  }
};

__device__ __forceinline__ void fma4(float4& acc, const float4 a, const float4 b) {
  acc.x = fmaf(a.x, b.x, acc.x);
  acc.y = fmaf(a.y, b.y, acc.y);
  acc.z = fmaf(a.z, b.z, acc.z);
  acc.w = fmaf(a.w, b.w, acc.w);
}
__device__ __forceinline__ void axpy4(float4& acc, float w, const float4 v) {
  acc.x = fmaf(w, v.x, acc.x);
  acc.y = fmaf(w, v.y, acc.y);
  acc.z = fmaf(w, v.z, acc.z);
  acc.w = fmaf(w, v.w, acc.w);
}
__device__ __forceinline__ float hsum4(const float4 a) { return (a.x + a.y) + (a.z + a.w); }

// ---------------------------------------------------------------------------------------------------
// Decode

struct DecodeParams {
  int n_heads, n_kv_heads, head_dim, hd4;
  int group;        // query heads per KV head
  int gb;           // query heads per block (≤ group)
  int n_hg;         // head groups per KV head: ceil(group / gb)
  int splits;
  int tile;         // keys per tile: 64, 32 or 16
  int topk;
  int window;       // > 0: keys n − window … n − 1 only (AttentionShape::window)
  float scale;
  bool vec;
};

// NH heads' dot products with one key row (shared memory), 4 partial sums each.
template <int NH>
__device__ __forceinline__ void key_dots(const float* kr, const float* q_s, int hd4, int g_first, int g_step, float scale,
                                         float* sc_s, int tile, int r) {
  float4 acc[NH];
#pragma unroll
  for (int i = 0; i < NH; ++i) acc[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int c = 0; c < hd4; c += 4) {
    const float4 k4 = *reinterpret_cast<const float4*>(kr + c);
#pragma unroll
    for (int i = 0; i < NH; ++i) fma4(acc[i], *reinterpret_cast<const float4*>(q_s + (g_first + i * g_step) * hd4 + c), k4);
  }
#pragma unroll
  for (int i = 0; i < NH; ++i) sc_s[(g_first + i * g_step) * tile + r] = hsum4(acc[i]) * scale;
}

template <typename KV, bool STATS>
__global__ void __launch_bounds__(kThreads) decode_split_kernel(const float* __restrict__ q, const KV* __restrict__ kc,
                                                                 const KV* __restrict__ vc, const int32_t* __restrict__ pos0,
                                                                 DecodeParams p, float* __restrict__ ws) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int split = blockIdx.x;
  const int kvh = blockIdx.y / p.n_hg, hg = blockIdx.y - (blockIdx.y / p.n_hg) * p.n_hg;
  const int g0 = hg * p.gb;
  const int gn = min(p.gb, p.group - g0);  // ≥ 1
  const int hd = p.head_dim, hd4 = p.hd4, st = hd4 + 4, tile = p.tile;
  const int h0 = kvh * p.group + g0;  // first query head of this block
  const int part_stride = kPartialHeader + hd4;

  float* q_s = smem;                    // [gb][hd4]
  float* k_s = q_s + p.gb * hd4;        // [tile][st]
  float* v_s = k_s + tile * st;         // [tile][st]
  float* sc_s = v_s + tile * st;        // [gb][tile]: scores, then e^(s − m)
  float* st_m = sc_s + p.gb * tile;     // [gb] running state per head
  float* st_S = st_m + p.gb;
  float* st_B = st_S + p.gb;
  float* st_first = st_B + p.gb;
  float* alpha_s = st_first + p.gb;     // [gb] this tile's rescale factor
  float* tk_s = alpha_s + p.gb;         // [gb][32] (STATS)

  // The keys this query sees, [first_key, n), cut into the slices.
  const int n = pos0[0] + 1;
  const int first_key = p.window > 0 ? max(0, n - p.window) : 0;
  int chunk = (n - first_key + p.splits - 1) / p.splits;
  chunk = (chunk + tile - 1) / tile * tile;
  const int lo = first_key + split * chunk;
  const int hi = min(n, lo + chunk);

  if (lo >= hi) {  // empty slice: an empty partial (its values are never read)
    const int hw = STATS ? kPartialHeader : 4;
    for (int i = tid; i < gn * hw; i += kThreads) {
      const int g = i / hw, c = i - g * hw;
      ws[(size_t(h0 + g) * p.splits + split) * part_stride + c] = (c == 1 || c == 2) ? 0.0f : -INFINITY;
    }
    return;
  }

  for (int i = tid; i < gn * hd4; i += kThreads) {
    const int g = i / hd4, d = i - g * hd4;
    q_s[i] = d < hd ? q[size_t(h0 + g) * hd + d] : 0.0f;
  }
  for (int g = tid; g < gn; g += kThreads) {
    st_m[g] = -INFINITY;
    st_S[g] = 0.0f;
    st_B[g] = 0.0f;
    st_first[g] = -INFINITY;
  }
  if (STATS)
    for (int i = tid; i < gn * 32; i += kThreads) tk_s[i] = -INFINITY;

  const int64_t kv_stride = int64_t(p.n_kv_heads) * hd;
  const KV* kbase = kc + int64_t(kvh) * hd;
  const KV* vbase = vc + int64_t(kvh) * hd;

  // Scores: thread = key sr × heads shs, shs + nhs, … (≤ 4 of them).
  const int sr = tid % tile, shs = tid / tile, nhs = kThreads / tile;
  const int n_sh = shs < gn ? (gn - shs + nhs - 1) / nhs : 0;
  // Values: thread = dims 4·dg … 4·dg+3 of head vg, keys ≡ kp (mod ks) of each tile.
  const int ndg = hd4 / 4, nsub = kThreads / ndg;
  const int dg = tid % ndg, vsub = tid / ndg;
  const int ks = max(1, nsub / gn);
  const int vg = vsub / ks, kp = vsub - (vsub / ks) * ks;
  const bool v_active = vsub < nsub && vg < gn;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);

  // 16-byte path: the tiles go through registers, one tile ahead.
  const int nv = hd / TilePrefetch<KV>::kPer16;
  TilePrefetch<KV> next;
  if (p.vec) next.load(kbase, vbase, kv_stride, lo, min(tile, hi - lo), nv);

  for (int j0 = lo; j0 < hi; j0 += tile) {
    const int tn = min(tile, hi - j0);
    if (p.vec) {
      next.store(k_s, v_s, st, tn, nv);
    } else {
      load_rows<KV>(k_s, st, kbase + int64_t(j0) * kv_stride, kv_stride, tn, hd, hd4, false);
      load_rows<KV>(v_s, st, vbase + int64_t(j0) * kv_stride, kv_stride, tn, hd, hd4, false);
    }
    __syncthreads();
    if (p.vec && j0 + tile < hi) next.load(kbase, vbase, kv_stride, j0 + tile, min(tile, hi - j0 - tile), nv);

    if (sr < tn) {
      const float* kr = k_s + sr * st;
      switch (n_sh) {
        case 1: key_dots<1>(kr, q_s, hd4, shs, nhs, p.scale, sc_s, tile, sr); break;
        case 2: key_dots<2>(kr, q_s, hd4, shs, nhs, p.scale, sc_s, tile, sr); break;
        case 3: key_dots<3>(kr, q_s, hd4, shs, nhs, p.scale, sc_s, tile, sr); break;
        case 4: key_dots<4>(kr, q_s, hd4, shs, nhs, p.scale, sc_s, tile, sr); break;
        default: break;
      }
    }
    __syncthreads();

    // One warp per head: fold the tile (≤ 64 keys: lane and lane + 32) into the head's state.
    for (int g = warp; g < gn; g += kWarps) {
      float* row = sc_s + g * tile;
      const int r0 = lane, r1 = lane + 32;
      const float s0 = r0 < tn ? row[r0] : -INFINITY;
      const float s1 = r1 < tn ? row[r1] : -INFINITY;
      const float tm = warp_max(fmaxf(s0, s1));  // finite: tn ≥ 1
      SoftmaxSums sums{st_m[g], st_S[g], st_B[g]};
      const float mn = fmaxf(sums.m, tm);
      float e_sum = 0.0f, b_sum = 0.0f;
      if (r0 < tn) {
        const float x = s0 - mn, e = expf(x);
        row[r0] = e;
        e_sum += e;
        if (STATS) b_sum = fmaf(e, x, b_sum);
      }
      if (r1 < tn) {
        const float x = s1 - mn, e = expf(x);
        row[r1] = e;
        e_sum += e;
        if (STATS) b_sum = fmaf(e, x, b_sum);
      }
      e_sum = warp_sum(e_sum);
      if (STATS) b_sum = warp_sum(b_sum);
      float fa, fb;
      softmax_merge(sums, SoftmaxSums{mn, e_sum, b_sum}, fa, fb);
      if (lane == 0) {
        st_m[g] = sums.m;
        st_S[g] = sums.S;
        st_B[g] = sums.B;
        alpha_s[g] = fa;
        if (STATS && j0 == 0) st_first[g] = s0;
      }
      if (STATS) warp_topk_insert(tk_s + g * 32, p.topk, s0, s1);
    }
    __syncthreads();

    if (v_active) {
      const float a = alpha_s[vg];
      acc.x *= a;
      acc.y *= a;
      acc.z *= a;
      acc.w *= a;
      const float* pr = sc_s + vg * tile;
      const float* vr = v_s + 4 * dg;
      for (int r = kp; r < tn; r += ks) axpy4(acc, pr[r], *reinterpret_cast<const float4*>(vr + r * st));
    }
    __syncthreads();
  }

  // Sum the key shares (k_s and v_s are free now: ks·gn·hd4 ≤ nsub·hd4 ≤ 1024 floats ≤ 2·tile·st) and
  // write the partial.
  float* red = k_s;
  if (v_active) *reinterpret_cast<float4*>(red + (kp * gn + vg) * hd4 + 4 * dg) = acc;
  __syncthreads();
  for (int i = tid; i < gn * hd4; i += kThreads) {
    const int g = i / hd4, d = i - g * hd4;
    float s = 0.0f;
    for (int c = 0; c < ks; ++c) s += red[(c * gn + g) * hd4 + d];
    ws[(size_t(h0 + g) * p.splits + split) * part_stride + kPartialHeader + d] = s;
  }
  for (int g = tid; g < gn; g += kThreads) {
    float* part = ws + (size_t(h0 + g) * p.splits + split) * part_stride;
    part[0] = st_m[g];
    part[1] = st_S[g];
    part[2] = st_B[g];
    part[3] = st_first[g];
  }
  if (STATS)
    for (int i = tid; i < gn * 32; i += kThreads) {
      const int g = i / 32, c = i - g * 32;
      ws[(size_t(h0 + g) * p.splits + split) * part_stride + 4 + c] = tk_s[i];
    }
}

struct MergeParams {
  int n_heads, head_dim, hd4, splits, topk;
  int window;           // > 0: the query sees at most this many keys
  const float* sinks;   // [n_heads] or null
};

template <bool STATS>
__global__ void __launch_bounds__(kMergeThreads) decode_merge_kernel(const float* __restrict__ ws, const int32_t* __restrict__ pos0,
                                                                     MergeParams p, float* __restrict__ out, StatsOut so) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  extern __shared__ float4 smem4[];
  float* f_s = reinterpret_cast<float*>(smem4);  // [splits] factor of each slice
  float* misc = f_s + p.splits;                    // M, S, B, L
  float* contrib = misc + 4;                       // [32] e^(s − M) of the top k, by rank
  float* cand_v = contrib + 32;                    // [splits·topk] candidates (STATS)
  int* cand_i = reinterpret_cast<int*>(cand_v + p.splits * p.topk);
  __shared__ int n_cand;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int h = blockIdx.x;
  const int part_stride = kPartialHeader + p.hd4;
  const float* base = ws + size_t(h) * p.splits * part_stride;

  if (warp == 0) {
    float m = -INFINITY, l = -INFINITY;
    for (int s = lane; s < p.splits; s += 32) {
      m = fmaxf(m, base[s * part_stride]);
      if (STATS) l = fmaxf(l, base[s * part_stride + 4 + p.topk - 1]);
    }
    m = warp_max(m);
    if (STATS) l = warp_max(l);
    float S = 0.0f, B = 0.0f;
    for (int s = lane; s < p.splits; s += 32) {
      const float* part = base + s * part_stride;
      SoftmaxSums a{part[0], part[1], part[2]};
      f_s[s] = softmax_rescale(a, m);  // 0 for an empty slice
      S += a.S;
      B += a.B;
    }
    S = warp_sum(S);
    if (STATS) B = warp_sum(B);
    if (lane == 0) {
      misc[0] = m;
      misc[1] = S;
      misc[2] = B;
      misc[3] = l;
      n_cand = 0;
    }
    if (STATS) contrib[lane] = 0.0f;
  }
  __syncthreads();

  const float M = misc[0], S = misc[1];
  const float sink = p.sinks ? p.sinks[h] : -INFINITY;
  const float inv = 1.0f / softmax_denominator(SoftmaxSums{M, S, 0.0f}, sink);
  for (int d = tid; d < p.head_dim; d += kMergeThreads) {
    float a = 0.0f;
    for (int s = 0; s < p.splits; ++s) {
      const float f = f_s[s];
      if (f != 0.0f) a = fmaf(f, base[s * part_stride + kPartialHeader + d], a);
    }
    out[size_t(h) * p.head_dim + d] = a * inv;
  }

  if constexpr (STATS) {
    const int n_keys = p.window > 0 ? min(pos0[0] + 1, p.window) : pos0[0] + 1;
    const int k = p.topk;
    float sum_top = 0.0f;
    if (n_keys > k) {  // block-uniform
      const float L = misc[3];
      const int total = p.splits * k;
      for (int i = tid; i < total; i += kMergeThreads) {
        const int s = i / k, c = i - s * k;
        const float v = base[s * part_stride + 4 + c];
        if (v > -INFINITY && v >= L) {
          const int slot = atomicAdd(&n_cand, 1);
          cand_v[slot] = v;
          cand_i[slot] = i;
        }
      }
      __syncthreads();
      const int nc = n_cand;
      for (int i = tid; i < nc; i += kMergeThreads) {
        const float v = cand_v[i];
        const int id = cand_i[i];
        int rank = 0;
        for (int j = 0; j < nc; ++j) {
          const float w = cand_v[j];
          rank += (w > v || (w == v && cand_i[j] < id)) ? 1 : 0;
        }
        if (rank < k) contrib[rank] = expf(v - M);
      }
      __syncthreads();
      if (warp == 0) sum_top = warp_sum(contrib[lane]);
    }
    if (tid == 0) {
      const SoftmaxSums a{M, S, misc[2]};
      if (so.entropy) so.entropy[h] = softmax_entropy(a, sink);
      if (so.max_weight) so.max_weight[h] = softmax_max_weight(a, sink);
      // Key 0 is in slice 0 when the query sees it; otherwise the score is −inf and the mass 0.
      if (so.first_mass) so.first_mass[h] = softmax_weight(a, base[3], sink);
      if (so.topk_mass) so.topk_mass[h] = softmax_topk_mass(a, sum_top, n_keys, k, sink);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Prefill

struct PrefillParams {
  int n_heads, n_kv_heads, head_dim, hd4, group, T, topk;
  int window;          // AttentionShape::window
  const float* sinks;  // AttentionShape::sinks
  int64_t q_stride;
  float scale;
  bool vec;
};

// Whether the query at position pos sees key j: causal, and inside a sliding window when there is one.
__device__ __forceinline__ bool key_visible(int j, int pos, int window) {
  return j <= pos && (window <= 0 || j > pos - window);
}

// The TF32 tensor-core products (TC): Q·Kᵀ and P·V as WMMA m16n16k8 tiles, inputs rounded to TF32.
namespace wmma = nvcuda::wmma;
using TcAcc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
template <typename Use, typename Layout>
using TcIn = wmma::fragment<Use, 16, 16, 8, wmma::precision::tf32, Layout>;

template <typename F>
__device__ __forceinline__ void round_tf32(F& f) {
#pragma unroll
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
}

// Shared memory of the prefill kernel, in floats.
__host__ __device__ constexpr int prefill_score_stride(int TQ, bool TC) { return TC ? TQ + 4 : TQ + 1; }
size_t prefill_smem_bytes(int TQ, int hd4, bool stats, bool TC) {
  const size_t tile = size_t(TQ) * size_t(hd4 + 4);
  const size_t scores = size_t(TQ) * size_t(prefill_score_stride(TQ, TC));
  return sizeof(float) * ((TC ? 3 : 2) * tile + (TC ? 2 : 1) * scores + 5 * size_t(TQ) + (stats ? size_t(TQ) * 32 : 0));
}

template <typename KV, int TQ, bool STATS, bool TC>
__global__ void __launch_bounds__(kThreads) prefill_kernel(const float* __restrict__ q, const KV* __restrict__ kc,
                                                            const KV* __restrict__ vc, const int32_t* __restrict__ pos0,
                                                            PrefillParams p, float* __restrict__ out, StatsOut so) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  static_assert(TQ == 16 || TQ == 32, "query/key tile of 16 or 32");
  constexpr int RB = TQ / 16;   // score register block: RB queries × RB keys per thread
  constexpr int kMaxRows = 4;   // P·V rows per thread
  constexpr int SS = prefill_score_stride(TQ, TC);  // score row stride (TC: a multiple of 4, as WMMA needs)
  extern __shared__ __align__(128) float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int hd = p.head_dim, hd4 = p.hd4, st = hd4 + 4;
  const int q0 = blockIdx.x * TQ, h = blockIdx.y, kvh = h / p.group;
  const int base_pos = pos0[0];
  const int nrows = min(TQ, p.T - q0);
  const int last_key = base_pos + q0 + nrows - 1;

  float* q_s = smem;               // [TQ][st]
  float* kv_s = q_s + TQ * st;     // [TQ][st]: the K tile, then the V tile
  float* o_s = kv_s + TQ * st;     // [TQ][st] (TC): the unnormalised outputs, rescaled row by row
  float* s_s = o_s + (TC ? TQ * st : 0);  // [TQ][SS]: scores (TC: of the first half of the dims), then e^(s − m)
  float* s2_s = s_s + TQ * SS;     // [TQ][SS] (TC): the scores of the second half of the dims
  float* row_m = s2_s + (TC ? TQ * SS : 0);  // [TQ] running state per query row
  float* row_S = row_m + TQ;
  float* row_B = row_S + TQ;
  float* row_first = row_B + TQ;
  float* row_alpha = row_first + TQ;
  float* tk_s = row_alpha + TQ;    // [TQ][32] (STATS)

  for (int i = tid; i < TQ * hd4; i += kThreads) {
    const int r = i / hd4, d = i - r * hd4;
    q_s[r * st + d] = (r < nrows && d < hd) ? q[int64_t(q0 + r) * p.q_stride + int64_t(h) * hd + d] : 0.0f;
  }
  for (int r = tid; r < TQ; r += kThreads) {
    row_m[r] = -INFINITY;
    row_S[r] = 0.0f;
    row_B[r] = 0.0f;
    row_first[r] = -INFINITY;
  }
  if (STATS)
    for (int i = tid; i < TQ * 32; i += kThreads) tk_s[i] = -INFINITY;
  if (TC)
    for (int i = tid; i < TQ * st; i += kThreads) o_s[i] = 0.0f;

  const int64_t kv_stride = int64_t(p.n_kv_heads) * hd;
  const KV* kbase = kc + int64_t(kvh) * hd;
  const KV* vbase = vc + int64_t(kvh) * hd;

  const int kr = tid % 16, qr = tid / 16;  // scores: queries qr + 16a, keys kr + 16b
  const int ndg = hd4 / 4, nrs = kThreads / ndg;
  const int dg = tid % ndg, rs = tid / ndg;  // P·V: dims 4·dg …, rows rs + i·nrs
  const bool pv_active = rs < nrs;
  float4 acc[kMaxRows];
#pragma unroll
  for (int i = 0; i < kMaxRows; ++i) acc[i] = make_float4(0.f, 0.f, 0.f, 0.f);

  // From the first key the block's first query sees (key 0 without a window).
  for (int j0 = p.window > 0 ? max(0, base_pos + q0 - p.window + 1) : 0; j0 <= last_key; j0 += TQ) {
    const int tn = min(TQ, last_key + 1 - j0);
    load_rows<KV>(kv_s, st, kbase + int64_t(j0) * kv_stride, kv_stride, tn, hd, hd4, p.vec);
    wait_async<0>();
    __syncthreads();

    if constexpr (TC) {
      // Raw scores; the scale and the causal mask are applied as the rows are folded below. Every warp
      // takes one 16 × 16 tile over one half of the dims (the fold adds the halves), in two chains of
      // mma (even and odd k steps) that do not wait on each other: eight short chains instead of four
      // warps with one chain of hd / 8 mma each.
      static_assert(kWarps == 2 * (TQ / 16) * (TQ / 16), "a warp per score tile and half of the dims");
      const int tile = warp % ((TQ / 16) * (TQ / 16)), half = warp / ((TQ / 16) * (TQ / 16));
      const int a = tile / (TQ / 16), b = tile % (TQ / 16);
      const int c_end = hd4 / 2 * (half + 1);  // hd % 16 == 0: each half is whole k steps of 8
      TcAcc d[2];
      wmma::fill_fragment(d[0], 0.0f);
      wmma::fill_fragment(d[1], 0.0f);
      for (int c0 = hd4 / 2 * half; c0 < c_end; c0 += 16) {
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          const int c = c0 + 8 * u;
          if (c < c_end) {
            TcIn<wmma::matrix_a, wmma::row_major> qa;
            TcIn<wmma::matrix_b, wmma::col_major> kb;  // Kᵀ: the K tile's rows are its columns
            wmma::load_matrix_sync(qa, q_s + 16 * a * st + c, st);
            wmma::load_matrix_sync(kb, kv_s + 16 * b * st + c, st);
            round_tf32(qa);
            round_tf32(kb);
            wmma::mma_sync(d[u], qa, kb, d[u]);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < d[0].num_elements; ++i) d[0].x[i] += d[1].x[i];  // one element layout: element-wise
      wmma::store_matrix_sync((half ? s2_s : s_s) + 16 * a * SS + 16 * b, d[0], SS, wmma::mem_row_major);
    } else {
      float4 d[RB][RB];
#pragma unroll
      for (int a = 0; a < RB; ++a)
#pragma unroll
        for (int b = 0; b < RB; ++b) d[a][b] = make_float4(0.f, 0.f, 0.f, 0.f);
      for (int c = 0; c < hd4; c += 4) {
        float4 qa[RB], kb[RB];
#pragma unroll
        for (int a = 0; a < RB; ++a) qa[a] = *reinterpret_cast<const float4*>(q_s + (qr + 16 * a) * st + c);
#pragma unroll
        for (int b = 0; b < RB; ++b) kb[b] = *reinterpret_cast<const float4*>(kv_s + (kr + 16 * b) * st + c);
#pragma unroll
        for (int a = 0; a < RB; ++a)
#pragma unroll
          for (int b = 0; b < RB; ++b) fma4(d[a][b], qa[a], kb[b]);
      }
#pragma unroll
      for (int a = 0; a < RB; ++a)
#pragma unroll
        for (int b = 0; b < RB; ++b) {
          const int row = qr + 16 * a, key = kr + 16 * b;
          const bool ok = row < nrows && key < tn && key_visible(j0 + key, base_pos + q0 + row, p.window);
          s_s[row * SS + key] = ok ? hsum4(d[a][b]) * p.scale : -INFINITY;
        }
    }
    __syncthreads();

    // The V tile replaces the K tile while the warps fold the scores into the row states (an F32 cache's
    // copies in flight meanwhile).
    load_rows<KV>(kv_s, st, vbase + int64_t(j0) * kv_stride, kv_stride, tn, hd, hd4, p.vec);
    for (int r = warp; r < TQ; r += kWarps) {
      float* row = s_s + r * SS;
      float s = lane < TQ ? row[lane] : -INFINITY;
      if constexpr (TC) {
        if (lane < TQ) s += s2_s[r * SS + lane];
        const bool ok = lane < TQ && r < nrows && lane < tn && key_visible(j0 + lane, base_pos + q0 + r, p.window);
        s = ok ? s * p.scale : -INFINITY;
      }
      const float tm = warp_max(s);
      if (tm == -INFINITY) {  // nothing visible in this tile (or a row past T)
        if (lane < TQ) row[lane] = 0.0f;
        if (lane == 0) row_alpha[r] = 1.0f;
        continue;
      }
      SoftmaxSums sums{row_m[r], row_S[r], row_B[r]};
      const float mn = fmaxf(sums.m, tm);
      float e = 0.0f, b = 0.0f;
      if (s != -INFINITY) {
        const float x = s - mn;
        e = expf(x);
        if (STATS) b = e * x;
      }
      if (lane < TQ) row[lane] = e;
      const float e_sum = warp_sum(e);
      const float b_sum = STATS ? warp_sum(b) : 0.0f;
      float fa, fb;
      softmax_merge(sums, SoftmaxSums{mn, e_sum, b_sum}, fa, fb);
      if (lane == 0) {
        row_m[r] = sums.m;
        row_S[r] = sums.S;
        row_B[r] = sums.B;
        row_alpha[r] = fa;
        if (STATS && j0 == 0) row_first[r] = s;  // key 0's score, −inf where the window hides it
      }
      if (STATS) warp_topk_insert(tk_s + r * 32, p.topk, s, -INFINITY);
    }
    wait_async<0>();  // the V tile
    __syncthreads();

    if constexpr (TC) {
      for (int i = tid; i < TQ * hd4; i += kThreads) {
        const int r = i / hd4, d = i - r * hd4;
        // A row whose running max held through this tile has factor exactly 1 (e^0): the shared-memory
        // read and write are skipped. After the first tiles that is most rows.
        const float a = row_alpha[r];
        if (a != 1.0f) o_s[r * st + d] *= a;
      }
      // V rows past the tile's keys are stale (P is 0 there, but 0 · NaN is not 0).
      for (int i = tid; i < (TQ - tn) * hd4; i += kThreads) {
        const int r = tn + i / hd4, d = i - (r - tn) * hd4;
        kv_s[r * st + d] = 0.0f;
      }
      __syncthreads();
      // Output tiles t and t + kWarps together: the same rows of P (kWarps is a multiple of TQ / 16),
      // loaded once, and two chains of mma that do not wait on each other.
      static_assert(kWarps % (TQ / 16) == 0, "tiles t and t + kWarps share their rows");
      const int n_tiles = (TQ / 16) * (hd4 / 16);
      for (int t = warp; t < n_tiles; t += 2 * kWarps) {
        const bool two = t + kWarps < n_tiles;  // warp-uniform
        const int a = t % (TQ / 16), col[2] = {16 * (t / (TQ / 16)), 16 * ((t + kWarps) / (TQ / 16))};
        TcAcc o[2];
#pragma unroll
        for (int u = 0; u < 2; ++u)
          if (u == 0 || two) wmma::load_matrix_sync(o[u], o_s + 16 * a * st + col[u], st, wmma::mem_row_major);
        for (int kk = 0; kk < TQ; kk += 8) {
          TcIn<wmma::matrix_a, wmma::row_major> pa;
          wmma::load_matrix_sync(pa, s_s + 16 * a * SS + kk, SS);
          round_tf32(pa);
#pragma unroll
          for (int u = 0; u < 2; ++u) {
            if (u == 1 && !two) break;
            TcIn<wmma::matrix_b, wmma::row_major> vb;
            wmma::load_matrix_sync(vb, kv_s + kk * st + col[u], st);
            round_tf32(vb);
            wmma::mma_sync(o[u], pa, vb, o[u]);
          }
        }
#pragma unroll
        for (int u = 0; u < 2; ++u)
          if (u == 0 || two) wmma::store_matrix_sync(o_s + 16 * a * st + col[u], o[u], st, wmma::mem_row_major);
      }
    } else if (pv_active) {
#pragma unroll
      for (int i = 0; i < kMaxRows; ++i) {
        const int r = rs + i * nrs;
        if (r < TQ) {
          const float a = row_alpha[r];
          acc[i].x *= a;
          acc[i].y *= a;
          acc[i].z *= a;
          acc[i].w *= a;
        }
      }
      const float* vcol = kv_s + 4 * dg;
      for (int key = 0; key < tn; ++key) {
        const float4 v4 = *reinterpret_cast<const float4*>(vcol + key * st);
#pragma unroll
        for (int i = 0; i < kMaxRows; ++i) {
          const int r = rs + i * nrs;
          if (r < TQ) axpy4(acc[i], s_s[r * SS + key], v4);
        }
      }
    }
    __syncthreads();
  }

  // Each row's denominator, with the head's sink (row_alpha is free now).
  const float sink = p.sinks ? p.sinks[h] : -INFINITY;
  float* row_Z = row_alpha;
  for (int r = tid; r < TQ; r += kThreads)
    row_Z[r] = r < nrows ? softmax_denominator(SoftmaxSums{row_m[r], row_S[r], 0.0f}, sink) : 1.0f;
  __syncthreads();
  const int64_t out_stride = int64_t(p.n_heads) * hd;
  if constexpr (TC) {
    for (int i = tid; i < nrows * hd; i += kThreads) {
      const int r = i / hd, d = i - r * hd;
      out[int64_t(q0 + r) * out_stride + int64_t(h) * hd + d] = o_s[r * st + d] * (1.0f / row_Z[r]);
    }
  } else if (pv_active) {
#pragma unroll
    for (int i = 0; i < kMaxRows; ++i) {
      const int r = rs + i * nrs;
      if (r < nrows) {
        const float inv = 1.0f / row_Z[r];
        float* o = out + int64_t(q0 + r) * out_stride + int64_t(h) * hd + 4 * dg;
        const int left = hd - 4 * dg;  // ≥ 1
        o[0] = acc[i].x * inv;
        if (left > 1) o[1] = acc[i].y * inv;
        if (left > 2) o[2] = acc[i].z * inv;
        if (left > 3) o[3] = acc[i].w * inv;
      }
    }
  }
  if constexpr (STATS) {
    for (int r = tid; r < nrows; r += kThreads) {
      const int t = q0 + r;
      const int n_keys = p.window > 0 ? min(base_pos + t + 1, p.window) : base_pos + t + 1;  // those it sees
      const SoftmaxSums a{row_m[r], row_S[r], row_B[r]};
      float sum_top = 0.0f;
      if (n_keys > p.topk)
        for (int c = 0; c < p.topk; ++c) sum_top += expf(tk_s[r * 32 + c] - a.m);
      const int64_t idx = int64_t(t) * so.token_stride + h;
      if (so.entropy) so.entropy[idx] = softmax_entropy(a, sink);
      if (so.max_weight) so.max_weight[idx] = softmax_max_weight(a, sink);
      if (so.first_mass) so.first_mass[idx] = softmax_weight(a, row_first[r], sink);
      if (so.topk_mass) so.topk_mass[idx] = softmax_topk_mass(a, sum_top, n_keys, p.topk, sink);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// One full row

// Block-wide max / sum (all threads get the result). red: kWarps floats + 1.
__device__ float block_max(float v, float* red) {
  v = warp_max(v);
  __syncthreads();  // red may still be read from a previous reduction
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float x = threadIdx.x < kWarps ? red[threadIdx.x] : -INFINITY;
    x = warp_max(x);
    if (threadIdx.x == 0) red[kWarps] = x;
  }
  __syncthreads();
  return red[kWarps];
}
__device__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float x = threadIdx.x < kWarps ? red[threadIdx.x] : 0.0f;
    x = warp_sum(x);
    if (threadIdx.x == 0) red[kWarps] = x;
  }
  __syncthreads();
  return red[kWarps];
}

struct RowParams {
  int n_kv_heads, head_dim, group;
  float scale;
  int window;          // AttentionShape::window
  const float* sinks;  // AttentionShape::sinks
};

// PER_LANE: the query values each lane keeps in registers, head_dim / 32 rounded up (8: head_dim ≤ 256;
// 32: the latent attention's rows, up to 1024).
template <typename KV, int PER_LANE>
__global__ void __launch_bounds__(kThreads) row_kernel(const float* __restrict__ q_token, const KV* __restrict__ kc,
                                                        const int32_t* __restrict__ pos0, int t, int head, RowParams p,
                                                        float* __restrict__ out_row) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  __shared__ float red[kWarps + 1];
  constexpr int kPerLane = PER_LANE;
  constexpr int kKeys = 4;  // keys in flight per warp
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int hd = p.head_dim;
  const int n = pos0[0] + t + 1;
  const int first = p.window > 0 ? max(0, n - p.window) : 0;  // the first key the query sees; 0 before it
  const int kvh = head / p.group;
  float qv[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < hd ? q_token[int64_t(head) * hd + d] : 0.0f;
  }
  const int64_t kv_stride = int64_t(p.n_kv_heads) * hd;
  const KV* kbase = kc + int64_t(kvh) * hd;
  float mx = -INFINITY;
  for (int j = tid; j < first; j += kThreads) out_row[j] = 0.0f;
  for (int j = first + warp * kKeys; j < n; j += kWarps * kKeys) {
    float s[kKeys];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      s[u] = 0.0f;
      if (j + u < n) {
        const KV* kr = kbase + int64_t(j + u) * kv_stride;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < hd) s[u] = fmaf(qv[i], to_f32(kr[d]), s[u]);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const float sc = warp_sum(s[u]) * p.scale;
      if (j + u < n) {
        if (lane == 0) out_row[j + u] = sc;
        mx = fmaxf(mx, sc);
      }
    }
  }
  // The shift is the largest score or the sink, whichever is larger, as on the CPU.
  const float sink = p.sinks ? p.sinks[head] : -INFINITY;
  const float m = fmaxf(block_max(mx, red), sink);  // its __syncthreads make the scores visible to the block
  float sum = 0.0f;
  for (int j = first + tid; j < n; j += kThreads) {
    const float e = expf(out_row[j] - m);
    out_row[j] = e;
    sum += e;
  }
  const float inv = 1.0f / (block_sum(sum, red) + expf(sink - m));
  for (int j = first + tid; j < n; j += kThreads) out_row[j] *= inv;
}

// ---------------------------------------------------------------------------------------------------
// Launch geometry

size_t merge_smem_bytes(int splits, int topk, bool stats) {
  return sizeof(float) * (size_t(splits) + 4 + 32) + (stats ? size_t(splits) * size_t(topk) * (sizeof(float) + sizeof(int)) : 0);
}

struct DecodeGeometry {
  DecodeParams p;
  size_t split_smem, merge_smem;
};

DecodeGeometry decode_geometry(const AttentionShape& s, int max_splits, int topk, bool stats) {
  DecodeGeometry g{};
  DecodeParams& p = g.p;
  p.n_heads = s.n_heads;
  p.n_kv_heads = s.n_kv_heads;
  p.head_dim = s.head_dim;
  p.hd4 = round_up4(s.head_dim);
  p.group = s.n_heads / s.n_kv_heads;
  p.tile = p.hd4 <= 64 ? 64 : (p.hd4 <= 128 ? 32 : 16);
  const int nsub = kThreads / (p.hd4 / 4);
  const int gb_max = nsub < 1024 / p.tile ? nsub : 1024 / p.tile;  // ≤ 4 heads per scoring thread
  p.n_hg = (p.group + gb_max - 1) / gb_max;
  p.gb = (p.group + p.n_hg - 1) / p.n_hg;
  p.splits = max_splits;
  p.topk = topk;
  p.window = s.window;
  p.scale = s.scale;
  const int st = p.hd4 + 4;
  g.split_smem = sizeof(float) * (size_t(p.gb) * p.hd4 + 2 * size_t(p.tile) * st + size_t(p.gb) * p.tile + 5 * size_t(p.gb) +
                                  (stats ? size_t(p.gb) * 32 : 0));
  g.merge_smem = merge_smem_bytes(max_splits, topk, stats);
  return g;
}

template <typename KV>
void launch_decode(const float* q, const void* k_cache, const void* v_cache, const int32_t* pos0, const DecodeGeometry& g,
                   const float* sinks, float* ws, float* out, const StatsOut* so, cudaStream_t stream) {
  const dim3 grid(unsigned(g.p.splits), unsigned(g.p.n_kv_heads * g.p.n_hg));
  const KV* k = static_cast<const KV*>(k_cache);
  const KV* v = static_cast<const KV*>(v_cache);
  launch_dependent("decode_split_kernel", so ? decode_split_kernel<KV, true> : decode_split_kernel<KV, false>, grid,
                   kThreads, g.split_smem, stream, q, k, v, pos0, g.p, ws);
  MOE_CUDA_CHECK_LAUNCH();
  merge_decode_partials(ws, pos0, g.p.n_heads, g.p.head_dim, g.p.splits, so, out, stream, sinks, g.p.window);
}

template <typename KV, int TQ>
void launch_prefill(const float* q, int64_t q_stride, int T, const void* k_cache, const void* v_cache, const int32_t* pos0,
                    const AttentionShape& s, float* out, const StatsOut* so, bool vec, cudaStream_t stream) {
  PrefillParams p{};
  p.n_heads = s.n_heads;
  p.n_kv_heads = s.n_kv_heads;
  p.head_dim = s.head_dim;
  p.hd4 = round_up4(s.head_dim);
  p.group = s.n_heads / s.n_kv_heads;
  p.T = T;
  p.topk = so ? so->topk : 1;
  p.window = s.window;
  p.sinks = s.sinks;
  p.q_stride = q_stride;
  p.scale = s.scale;
  p.vec = vec;
  const dim3 grid(unsigned((T + TQ - 1) / TQ), unsigned(s.n_heads));
  const KV* k = static_cast<const KV*>(k_cache);
  const KV* v = static_cast<const KV*>(v_cache);
  // The tensor cores when asked for and the tiles allow: 32 × 32 tiles, head_dim a multiple of 16.
  const bool tc = s.tensor_cores && TQ == 32 && s.head_dim % 16 == 0;
  const size_t smem = prefill_smem_bytes(TQ, p.hd4, so != nullptr, tc);
  if (smem > (tc ? kMaxTcSmemBytes : kMaxSmemBytes)) bad_argument("prefill tile does not fit in shared memory");
  if (tc) {
    if constexpr (TQ == 32) {
      // Above 48 KiB of dynamic shared memory needs the per-kernel opt-in (a host-side attribute: allowed
      // while a stream is being captured).
      const auto launch_tc = [&](auto kernel, const StatsOut& o) {
        MOE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
        launch_dependent("prefill_kernel", kernel, grid, kThreads, smem, stream, q, k, v, pos0, p, out, o);
      };
      if (so) launch_tc(prefill_kernel<KV, TQ, true, true>, *so);
      else launch_tc(prefill_kernel<KV, TQ, false, true>, StatsOut{});
    }
  } else if (so) {
    launch_dependent("prefill_kernel", prefill_kernel<KV, TQ, true, false>, grid, kThreads, smem, stream, q, k, v, pos0,
                     p, out, *so);
  } else {
    launch_dependent("prefill_kernel", prefill_kernel<KV, TQ, false, false>, grid, kThreads, smem, stream, q, k, v,
                     pos0, p, out, StatsOut{});
  }
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void merge_decode_partials(const float* ws, const int32_t* pos0, int n_heads, int v_dim, int splits, const StatsOut* so,
                           float* out, cudaStream_t stream, const float* sinks, int window) {
  const MergeParams mp{n_heads, v_dim, round_up4(v_dim), splits, so ? so->topk : 1, window, sinks};
  const size_t smem = merge_smem_bytes(splits, mp.topk, so != nullptr);
  if (smem > kMaxSmemBytes) bad_argument("decode merge does not fit in shared memory");
  if (so)
    launch_dependent("decode_merge_kernel", decode_merge_kernel<true>, n_heads, kMergeThreads, smem, stream, ws, pos0, mp,
                     out, *so);
  else
    launch_dependent("decode_merge_kernel", decode_merge_kernel<false>, n_heads, kMergeThreads, smem, stream, ws, pos0,
                     mp, out, StatsOut{});
  MOE_CUDA_CHECK_LAUNCH();
}

size_t attention_decode_workspace_floats(const AttentionShape& shape, int max_splits) {
  return size_t(shape.n_heads > 0 ? shape.n_heads : 0) * size_t(max_splits > 0 ? max_splits : 0) *
         size_t(kPartialHeader + round_up4(shape.head_dim));
}

void attention_decode(const float* q, const void* k_cache, const void* v_cache, const int32_t* pos0,
                      const AttentionShape& shape, int max_splits, float* workspace, float* out,
                      const AttentionStats* stats, cudaStream_t stream) {
  check_shape(shape);
  if (max_splits < 1 || max_splits > kMaxSplits) bad_argument("max_splits must be in 1 … 128");
  const StatsOut so = stats_out(stats);
  DecodeGeometry g = decode_geometry(shape, max_splits, so.topk, stats != nullptr);
  if (g.split_smem > kMaxSmemBytes || g.merge_smem > kMaxSmemBytes) bad_argument("decode tiles do not fit in shared memory");
  g.p.vec = kv_vector_ok(shape, k_cache, v_cache);
  if (shape.kv_dtype == DType::F32)
    launch_decode<float>(q, k_cache, v_cache, pos0, g, shape.sinks, workspace, out, stats ? &so : nullptr, stream);
  else
    launch_decode<__nv_bfloat16>(q, k_cache, v_cache, pos0, g, shape.sinks, workspace, out, stats ? &so : nullptr, stream);
}

void attention_prefill(const float* q, int64_t q_stride, int T, const void* k_cache, const void* v_cache,
                       const int32_t* pos0, const AttentionShape& shape, float* out, const AttentionStats* stats,
                       cudaStream_t stream) {
  check_shape(shape);
  if (T <= 0) return;
  const StatsOut so = stats_out(stats);
  const StatsOut* sp = stats ? &so : nullptr;
  const bool vec = kv_vector_ok(shape, k_cache, v_cache);
  const bool mma =
      shape.tensor_cores && shape.prefill_mma && prefill_mma_fits(shape, q, q_stride, k_cache, v_cache, out);
  if (mma && !stats) {
    prefill_mma(q, q_stride, T, k_cache, v_cache, pos0, shape, out, stream);
    return;
  }
  const bool wide = round_up4(shape.head_dim) > 128;
  if (shape.kv_dtype == DType::F32) {
    if (wide)
      launch_prefill<float, 16>(q, q_stride, T, k_cache, v_cache, pos0, shape, out, sp, vec, stream);
    else
      launch_prefill<float, 32>(q, q_stride, T, k_cache, v_cache, pos0, shape, out, sp, vec, stream);
  } else {
    if (wide)
      launch_prefill<__nv_bfloat16, 16>(q, q_stride, T, k_cache, v_cache, pos0, shape, out, sp, vec, stream);
    else
      launch_prefill<__nv_bfloat16, 32>(q, q_stride, T, k_cache, v_cache, pos0, shape, out, sp, vec, stream);
  }
  // The statistics came from the WMMA kernel; the outputs are the mma kernel's at every hook level.
  if (mma) prefill_mma(q, q_stride, T, k_cache, v_cache, pos0, shape, out, stream);
}

void attention_row(const float* q_token, const void* k_cache, const int32_t* pos0, int t, int head,
                   const AttentionShape& shape, float* out_row, cudaStream_t stream) {
  check_shape(shape, kMaxRowHeadDim);
  if (head < 0 || head >= shape.n_heads) bad_argument("attention_row: head out of range");
  const RowParams p{shape.n_kv_heads, shape.head_dim, shape.n_heads / shape.n_kv_heads, shape.scale, shape.window,
                    shape.sinks};
  const bool wide = shape.head_dim > kMaxHeadDim;
  if (shape.kv_dtype == DType::F32)
    launch_dependent("row_kernel", wide ? row_kernel<float, kMaxRowHeadDim / 32> : row_kernel<float, kMaxHeadDim / 32>,
                     1, kThreads, 0, stream, q_token, static_cast<const float*>(k_cache), pos0, t, head, p, out_row);
  else
    launch_dependent("row_kernel",
                     wide ? row_kernel<__nv_bfloat16, kMaxRowHeadDim / 32> : row_kernel<__nv_bfloat16, kMaxHeadDim / 32>,
                     1, kThreads, 0, stream, q_token, static_cast<const __nv_bfloat16*>(k_cache), pos0, t, head, p,
                     out_row);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::cuda
