#pragma once
// What the attention kernels share (attention.cu: GQA; attention_latent.cu: multi-head latent attention):
// where the statistics go, the layout of a decode split's partial result and the merge of the partials,
// and the warp-level pieces of the online softmax's statistics.
//
// A decode split's partial, per (query head h, split s), at ws + (h · splits + s) · (kPartialHeader + v4):
//   [0] m: the slice's max score; [1] S = Σ e^(s_j − m); [2] B = Σ e^(s_j − m)(s_j − m) (statistics only);
//   [3] key 0's score (slice 0; −inf elsewhere); [4 … 36) the slice's top-k scores, descending, −inf
//   past the end (statistics only); then v4 = round_up4(v_dim) values Σ e^(s_j − m) v_j.
// An empty slice writes m = −inf, S = B = 0 and −inf scores; its values are never read.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/kernels/attention.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {

constexpr int kPartialHeader = 4 + kMaxStatsTopK;

// AttentionStats with the top-k clamped to 1 … kMaxStatsTopK, passed to the kernels by value.
struct StatsOut {
  float* entropy = nullptr;
  float* max_weight = nullptr;
  float* topk_mass = nullptr;
  float* first_mass = nullptr;
  int64_t token_stride = 0;
  int topk = 1;
};

inline StatsOut stats_out(const AttentionStats* s) {
  StatsOut o;
  if (!s) return o;
  o.entropy = s->entropy;
  o.max_weight = s->max_weight;
  o.topk_mass = s->topk_mass;
  o.first_mass = s->first_mass;
  o.token_stride = s->token_stride;
  o.topk = s->topk < 1 ? 1 : (s->topk > kMaxStatsTopK ? kMaxStatsTopK : s->topk);
  return o;
}

// The decode merge (attention.cu): for each of n_heads query heads, the `splits` partials at ws (the
// layout above, v_dim values) → out[h · v_dim …] = Σ_s f_s acc_s / S and, with so, the statistics of
// head h at so->…[h]. The number of keys is pos0[0] + 1, or at most `window` when it is > 0 (the
// partials then cover only those). sinks: [n_heads] sink logits joining S (AttentionShape), or null.
// One block per head.
void merge_decode_partials(const float* ws, const int32_t* pos0, int n_heads, int v_dim, int splits, const StatsOut* so,
                           float* out, cudaStream_t stream, const float* sinks = nullptr, int window = 0);

#if defined(__CUDACC__) || defined(MOE_CUDA_EMULATED)

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// Folds up to two candidate scores per lane (−inf: none) into a top-k list held one entry per lane
// (list_s[0 … 32), descending, −inf past its end). Whole warp. A candidate enters when it beats the
// current k-th entry (a tie changes no sum), largest first.
__device__ inline void warp_topk_insert(float* list_s, int k, float c0, float c1) {
  const int lane = threadIdx.x & 31;
  float v = list_s[lane];
  float thr = __shfl_sync(kFullMask, v, k - 1);
  if (!(c0 > thr)) c0 = -INFINITY;
  if (!(c1 > thr)) c1 = -INFINITY;
  for (;;) {
    const float best = fmaxf(c0, c1);
    const float m = warp_max(best);
    if (m == -INFINITY) break;
    const unsigned owners = __ballot_sync(kFullMask, best == m);
    if (lane == __ffs(owners) - 1) {
      if (c0 == m)
        c0 = -INFINITY;
      else
        c1 = -INFINITY;
    }
    const int pos = __popc(__ballot_sync(kFullMask, v >= m));  // entries that stay ahead of m
    const float up = __shfl_up_sync(kFullMask, v, 1);
    if (lane > pos)
      v = up;
    else if (lane == pos)
      v = m;
    if (lane >= k) v = -INFINITY;
    thr = __shfl_sync(kFullMask, v, k - 1);
    if (!(c0 > thr)) c0 = -INFINITY;
    if (!(c1 > thr)) c1 = -INFINITY;
  }
  list_s[lane] = v;
}

#endif  // __CUDACC__ || MOE_CUDA_EMULATED

}  // namespace moe::cuda
