// The fused router (router.cuh): one warp per token, several tokens per block. Each warp keeps its
// token's scores in shared memory (lanes own the experts e ≡ lane mod 32), applies the user bias and
// the masks, the score function (softmax by warp max / sum reductions, or sigmoid), then selects the
// forced experts and top_k − n_forced rounds of a warp arg-max over the biased scores, exactly as
// cpu_backend.cpp's moe_block does (ties to the lower id), and writes the weights and the record.
// route_decode computes the one token's logits in the same kernel and routes in its last block.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/last_block.cuh"
#include "engine/backend/cuda/kernels/router.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"

namespace moe::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kMaxWarpsPerBlock = 8;
constexpr int kSmemBudget = 48 * 1024;  // no opt-in needed: E ≤ 1024 needs ≤ 17.4 KiB per warp

// Expert states in the per-warp `state` array (kOutOfGroup: in a group the group limit left out).
constexpr unsigned char kAvailable = 1, kMasked = 0, kChosen = 2, kOutOfGroup = 3;

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum_double(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
// (v, e) better than (bv, be): larger score, ties to the lower id; be < 0 means "none yet".
__device__ __forceinline__ bool better(float v, int e, float bv, int be) {
  return e >= 0 && (be < 0 || v > bv || (v == bv && e < be));
}
// Top two of a multiset (p1 ≥ p2), merged: ties keep both (so equal tops give a margin of 0).
__device__ __forceinline__ void merge_top2(double& p1, double& p2, double q1, double q2) {
  if (p1 >= q1) {
    p2 = fmax(p2, q1);
  } else {
    p2 = fmax(p1, q2);
    p1 = q1;
  }
}

// Per-warp shared layout, in bytes (each part 16-byte aligned). groups: n_group when group-limited, else 0.
struct WarpLayout {
  int E, slots, groups;
  __host__ __device__ static int align16(int b) { return (b + 15) & ~15; }
  __host__ __device__ int p_off() const { return 0; }
  __host__ __device__ int b_off() const { return p_off() + align16(E * 4); }
  __host__ __device__ int sel_off() const { return b_off() + align16(E * 4); }
  __host__ __device__ int w_off() const { return sel_off() + align16(slots * 4); }
  __host__ __device__ int state_off() const { return w_off() + align16(slots * 4); }
  __host__ __device__ int group_score_off() const { return state_off() + align16(E); }
  __host__ __device__ int group_kept_off() const { return group_score_off() + align16(groups * 4); }
  __host__ __device__ int bytes() const { return group_kept_off() + align16(groups); }
};
__host__ __device__ inline int layout_groups(const RouterParams& P) {
  return P.n_group > 1 && P.topk_group < P.n_group ? P.n_group : 0;
}

// Chooses among the experts in state kAvailable, by rounds of a warp arg-max over their biased scores,
// until sel holds K; returns the new count.
__device__ int select_available(const float* biased, unsigned char* state, int* sel, int n_sel, int K, int E,
                                int lane) {
  for (; n_sel < K; ++n_sel) {
    float bv = -INFINITY;
    int be = -1;
    for (int e = lane; e < E; e += 32)
      if (state[e] == kAvailable && better(biased[e], e, bv, be)) bv = biased[e], be = e;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFull, bv, o);
      const int oe = __shfl_xor_sync(kFull, be, o);
      if (better(ov, oe, bv, be)) bv = ov, be = oe;
    }
    be = __shfl_sync(kFull, be, 0);  // one answer for all lanes, whatever NaNs did to the order
    if (be < 0) break;               // nothing left to choose
    __syncwarp();
    if (lane == 0) {
      sel[n_sel] = be;
      state[be] = kChosen;
    }
    __syncwarp();
  }
  return n_sel;
}

// The group limit: scores each group by its available experts' biased scores (the best, or the sum of
// the best two; −inf with too few), as cpu_backend.cpp's keep_best_groups does, keeps the topk_group
// best (ties to the lower group) and marks the available experts of the other groups kOutOfGroup.
__device__ void limit_groups(const RouterParams& P, const float* biased, unsigned char* state, float* group_score,
                             unsigned char* kept, int lane) {
  const int E = P.n_experts, G = P.n_group, per_group = E / G;
  for (int g = lane; g < G; g += 32) {
    float t1 = -INFINITY, t2 = -INFINITY;
    for (int e = g * per_group; e < (g + 1) * per_group; ++e) {
      if (state[e] != kAvailable) continue;
      const float v = biased[e];
      if (v > t1) t2 = t1, t1 = v;
      else if (v > t2) t2 = v;
    }
    group_score[g] = P.group_top2 ? t1 + t2 : t1;
    kept[g] = 0;
  }
  __syncwarp();
  for (int round = 0; round < P.topk_group; ++round) {
    float bv = -INFINITY;
    int bg = -1;
    for (int g = lane; g < G; g += 32)  // g rises: ties keep the lower group
      if (!kept[g] && (bg < 0 || group_score[g] > bv)) bv = group_score[g], bg = g;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFull, bv, o);
      const int og = __shfl_xor_sync(kFull, bg, o);
      if (og >= 0 && (bg < 0 || ov > bv || (ov == bv && og < bg))) bv = ov, bg = og;
    }
    bg = __shfl_sync(kFull, bg, 0);
    __syncwarp();
    if (lane == 0) kept[bg] = 1;
    __syncwarp();
  }
  for (int e = lane; e < E; e += 32)
    if (state[e] == kAvailable && !kept[e / per_group]) state[e] = kOutOfGroup;
  __syncwarp();
}

// Token t, by one warp, from its logits lg[E] (read through L2: the router's own projection may have
// written them in this kernel, last_block.cuh), in the warp's shared-memory area `base` (WarpLayout).
__device__ void route_token(const float* lg, int t, const RouterParams& P, const RoutingOutput& out,
                            unsigned char* base, int lane) {
  const int E = P.n_experts, S = P.slots;
  const int K = min(P.top_k, min(S, E));
  const WarpLayout L{E, S, layout_groups(P)};
  float* p = reinterpret_cast<float*>(base + L.p_off());
  float* biased = reinterpret_cast<float*>(base + L.b_off());
  int* sel = reinterpret_cast<int*>(base + L.sel_off());
  float* w = reinterpret_cast<float*>(base + L.w_off());
  unsigned char* state = base + L.state_off();

  // Logits + the router's own bias + user bias, in that order (as the CPU adds them); then the masks
  // (−inf before the score function).
  for (int e = lane; e < E; e += 32) {
    float v = __ldcg(lg + e);
    if (P.logit_bias) v += P.logit_bias[e];
    if (P.user_bias) v += P.user_bias[e];
    p[e] = v;
    state[e] = kAvailable;
  }
  __syncwarp();
  for (int i = lane; i < P.n_masked; i += 32) {
    const int e = P.masked[i];
    if (e >= 0 && e < E) {
      p[e] = -INFINITY;
      state[e] = kMasked;
    }
  }
  __syncwarp();

  // Scores.
  if (P.softmax) {
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, p[e]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int e = lane; e < E; e += 32) {
      const float v = expf(p[e] - mx);
      p[e] = v;
      s += v;
    }
    s = warp_sum(s);
    for (int e = lane; e < E; e += 32) p[e] = p[e] / s;
  } else {
    for (int e = lane; e < E; e += 32) p[e] = 1.0f / (1.0f + expf(-p[e]));
  }
  for (int e = lane; e < E; e += 32) biased[e] = P.selection_bias ? p[e] + P.selection_bias[e] : p[e];
  __syncwarp();

  // Selection: forced experts first (given order, duplicates once; they override masks as on the CPU).
  int n_sel = 0;
  for (int i = 0; i < P.n_forced && n_sel < K; ++i) {
    const int e = P.forced[i];  // the same address for every lane: a broadcast
    if (e < 0 || e >= E || state[e] == kChosen) continue;
    __syncwarp();
    if (lane == 0) {
      sel[n_sel] = e;
      state[e] = kChosen;
    }
    __syncwarp();
    ++n_sel;
  }
  // Then the best biased scores of the available experts; with a group limit, those of the kept groups
  // first, and the other groups' only when masks left the kept groups too few.
  if (L.groups > 0) {
    limit_groups(P, biased, state, reinterpret_cast<float*>(base + L.group_score_off()), base + L.group_kept_off(),
                 lane);
    n_sel = select_available(biased, state, sel, n_sel, K, E, lane);
    if (n_sel < K) {
      for (int e = lane; e < E; e += 32)
        if (state[e] == kOutOfGroup) state[e] = kAvailable;
      __syncwarp();
    }
  }
  n_sel = select_available(biased, state, sel, n_sel, K, E, lane);

  // Weights: p of the chosen, renormalised by their sum (summed in slot order, as the CPU), scaled.
  float wsum = 0.0f;
  for (int j = 0; j < n_sel; ++j) wsum += p[sel[j]];
  const size_t row = size_t(t) * size_t(S);
  for (int j = lane; j < S; j += 32) {
    int e = -1;
    float wj = 0.0f;
    if (j < n_sel) {
      e = sel[j];
      wj = p[e];
      if (P.renormalize && wsum > 0.0f) wj = wj / wsum;
      wj = wj * P.routed_scale;
    }
    w[j] = wj;
    if (out.selected) out.selected[row + size_t(j)] = e;
    if (out.weights) out.weights[row + size_t(j)] = wj;
  }
  __syncwarp();

  // The record.
  const size_t tm = size_t(t) * size_t(out.n_moe_layers) + size_t(out.moe_ordinal);
  if (out.rec_ids || out.rec_weights) {
    // Stable sort by descending weight: the rank of slot j among the chosen.
    for (int j = lane; j < S; j += 32) {
      int pos = j, e = -1;
      float wj = 0.0f;
      if (j < n_sel) {
        wj = w[j];
        e = sel[j];
        pos = 0;
        for (int i = 0; i < n_sel; ++i) {
          const float wi = w[i];
          pos += (wi > wj || (wi == wj && i < j)) ? 1 : 0;
        }
      }
      if (out.rec_ids) out.rec_ids[tm * size_t(S) + size_t(pos)] = e;
      if (out.rec_weights) out.rec_weights[tm * size_t(S) + size_t(pos)] = wj;
    }
  }
  if (out.rec_entropy || out.rec_margin) {
    double sum = 0.0;
    for (int e = lane; e < E; e += 32) sum += double(p[e]);
    sum = warp_sum_double(sum);
    double h = 0.0, p1 = 0.0, p2 = 0.0;
    for (int e = lane; e < E; e += 32) {
      const double q = sum > 0.0 ? double(p[e]) / sum : 0.0;
      if (q > 0.0) h -= q * log(q);
      if (q > p1) p2 = p1, p1 = q;
      else if (q > p2) p2 = q;
    }
    h = warp_sum_double(h);
    for (int o = 16; o > 0; o >>= 1) {
      const double q1 = __shfl_xor_sync(kFull, p1, o);
      const double q2 = __shfl_xor_sync(kFull, p2, o);
      merge_top2(p1, p2, q1, q2);
    }
    if (lane == 0) {
      if (out.rec_entropy) out.rec_entropy[tm] = E > 1 ? float(h / log(double(E))) : 0.0f;
      if (out.rec_margin) out.rec_margin[tm] = float(p1 - p2);
    }
  }
  if (out.rec_probs)
    for (int e = lane; e < E; e += 32) out.rec_probs[tm * size_t(E) + size_t(e)] = p[e];
}

__global__ void route_kernel(const float* __restrict__ logits, int T, RouterParams P, RoutingOutput out) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int t = blockIdx.x * (blockDim.x >> 5) + warp;
  if (t >= T) return;  // whole warp; no block-wide synchronisation in route_token
  const WarpLayout L{P.n_experts, P.slots, layout_groups(P)};
  route_token(logits + size_t(t) * size_t(P.n_experts), t, P, out, smem + size_t(warp) * size_t(L.bytes()), lane);
}

// Decode: the router's projection, one warp per expert row as linear_decode computes it (the first
// weight loads before the wait), then the last block to finish routes the token with its first warp.
template <typename T>
__global__ void __launch_bounds__(kMaxWarpsPerBlock * 32)
    route_decode_kernel(const T* __restrict__ w, int cols, const float* __restrict__ x, float* __restrict__ logits,
                        RouterParams P, RoutingOutput out, unsigned* counter) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r = blockIdx.x * kMaxWarpsPerBlock + warp;
  if (r < P.n_experts) {  // the whole warp
    const float s = warp_row_dot(w + size_t(r) * size_t(cols), x, cols, lane, [] { wait_for_inputs(); });
    if (lane == 0) logits[r] = s;
  } else {
    wait_for_inputs();
  }
  if (arrive_last(counter, gridDim.x) && warp == 0) route_token(logits, 0, P, out, smem, lane);
}

template <typename T>
void launch_route_decode(const DeviceMatrix& w, const float* x, float* logits, const RouterParams& p,
                         const RoutingOutput& out, unsigned* counter, cudaStream_t stream) {
  const int blocks = (p.n_experts + kMaxWarpsPerBlock - 1) / kMaxWarpsPerBlock;
  const size_t smem = size_t(WarpLayout{p.n_experts, p.slots, layout_groups(p)}.bytes());
  if (smem > size_t(kSmemBudget))  // only beyond the contract (E ≤ 1024), as in route()
    MOE_CUDA_CHECK(cudaFuncSetAttribute(route_decode_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  launch_dependent("route_decode_kernel", route_decode_kernel<T>, blocks, kMaxWarpsPerBlock * 32, smem, stream,
                   static_cast<const T*>(w.data), int(w.cols), x, logits, p, out, counter);
}

}  // namespace

void route(const float* logits, int T, const RouterParams& p, const RoutingOutput& out, cudaStream_t stream) {
  if (T <= 0 || p.n_experts <= 0 || p.slots <= 0) return;
  const WarpLayout L{p.n_experts, p.slots, layout_groups(p)};
  const int per_warp = L.bytes();
  int warps = kSmemBudget / per_warp;
  warps = warps < 1 ? 1 : (warps > kMaxWarpsPerBlock ? kMaxWarpsPerBlock : warps);
  if (warps > T) warps = T;
  const size_t smem = size_t(warps) * size_t(per_warp);
  if (smem > size_t(kSmemBudget)) {
    // Only for E or slots beyond the contract (E ≤ 1024): ask for more dynamic shared memory.
    MOE_CUDA_CHECK(cudaFuncSetAttribute(route_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  }
  const int blocks = (T + warps - 1) / warps;
  launch_dependent("route_kernel", route_kernel, blocks, warps * 32, smem, stream, logits, T, p, out);
  MOE_CUDA_CHECK_LAUNCH();
}

void route_decode(const DeviceMatrix& w, const float* x, float* logits, const RouterParams& p, const RoutingOutput& out,
                  unsigned* counter, cudaStream_t stream) {
  if (p.n_experts <= 0 || p.slots <= 0) return;
  if (w.rows != p.n_experts || w.cols <= 0 || w.cols > 0x7fffffff)
    throw_cuda_error("route_decode", "the router matrix must have one row per expert", __FILE__, __LINE__);
  switch (w.dtype) {
    case DType::BF16: launch_route_decode<__nv_bfloat16>(w, x, logits, p, out, counter, stream); break;
    case DType::F16: launch_route_decode<__half>(w, x, logits, p, out, counter, stream); break;
    case DType::F32: launch_route_decode<float>(w, x, logits, p, out, counter, stream); break;
    default: throw_cuda_error("route_decode", "weights must be BF16, F16 or F32", __FILE__, __LINE__);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::cuda
