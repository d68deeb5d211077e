// Routed experts (experts.cuh): SwiGLU over the experts the router selected, read from device memory.
//
// Decode (T = 1), memory-bandwidth bound: one warp per output row, 16-byte streaming weight loads
// (8 BF16/F16 or 4 F32 per lane per load, several loads in flight per lane), warp-shuffle reductions.
//   gate_up: grid (ffn / 8, slots), 8 warps per block, x staged in shared memory; each warp computes
//            row r of gate and of up for its slot's expert and writes h = silu(g)·u.
//   down:    grid (hidden / 4), 4 warps per block; each warp computes y[r] over the slots in slot order
//            (two slots' loads in flight at a time), no atomics. The residual add + RMSNorm of y may
//            follow in the last block to finish (last_block.cuh), instead of a norm kernel.
// Prefill (grouped): the (token, slot) pairs are sorted by expert on the device (a counting sort, stable:
// by token then slot within an expert), and a list of (expert, pair tile) work items is built there, so
// the GEMM grids depend only on T·slots and E: blocks past the list's end exit at once.
//   GEMM, BF16 and F16 weights: on the tensor cores (WMMA, 16 × 16 × 16, F32 accumulation). A block
//   takes 128 pairs × 64 weight rows (for gate/up: 64 rows of each), k in steps of 32, 8 warps of 32 pairs
//   × 32 rows; a whole work item, so for a 2k prompt on Qwen3-30B-A3B (about 128 pairs per expert) each
//   weight tile is staged about once. The activations enter in the weight dtype, rounded as the dense
//   projections' inputs are for cuBLAS (blas.h): x is converted once per chunk, and gate/up writes h in
//   that dtype for down. Both operands then move as raw 16-byte chunks by cp.async into a ring of three
//   shared-memory stages, so two k steps' loads are in flight while one is multiplied.
//   Per k step a block moves 12 KiB from L2 (16 KiB for gate/up) for 0.5 MFLOP (1 MFLOP), twice the
//   arithmetic per byte of the 64 × 64 tile with F32 activations it replaces (the L2 bandwidth bound).
//   GEMM, F32 weights (the parity tests' exact path): SIMT F32 FMA, block tile 64 weight rows × 16 pairs
//   × 32 k (grid z: the eight 16-pair parts of a 128-pair work item), weights converted to F32 on the
//   way into shared memory, each thread one weight row × 8 pairs (gate and up: 16 accumulators).
//   Both skip the arithmetic in warps whose pairs are all past the expert's count.
//   combine: y[t] = Σ_k w[t][k] · yp[pair(t, k)] in slot order.
// GGML block-typed weights (block_dot.cuh): the decode kernels decode each row's blocks in registers (8
// values per lane and step); the tensor-core GEMM decodes each 8-value weight chunk of a stage to BF16
// and stores it where cp.async would have put it, the activations in BF16.
#include "engine/backend/cuda/kernels/experts.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/async_copy.cuh"
#include "engine/backend/cuda/kernels/block_dot.cuh"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/last_block.cuh"
#include "engine/backend/cuda/kernels/norm.cuh"
#include "engine/backend/cuda/kernels/row_norm.cuh"
#include "engine/backend/cuda/kernels/warp_dot.cuh"
#include "engine/common/ggml_quants.h"

namespace moe::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// F32 → a 16-bit weight dtype, rounding to nearest (the tensor-core GEMM's staged activations).
template <typename T>
struct Elem16;
template <>
struct Elem16<__nv_bfloat16> {
  __device__ __forceinline__ static __nv_bfloat16 from(float f) { return __float2bfloat16_rn(f); }
};
template <>
struct Elem16<__half> {
  __device__ __forceinline__ static __half from(float f) { return __float2half_rn(f); }
};

__device__ __forceinline__ float silu(float z) { return z / (1.0f + expf(-z)); }

// What an expert's products get besides the matrix products (ExpertTable): the biases of its weight
// rows (bias0: gate or down, bias1: up; [E][N], null when absent) and the gated product.
struct ExpertEpilogue {
  const float* bias0 = nullptr;
  const float* bias1 = nullptr;
  float limit = 0.0f, alpha = 1.0f;

  __device__ __forceinline__ float b0(int e, int N, int n) const { return bias0 ? bias0[size_t(e) * N + n] : 0.0f; }
  __device__ __forceinline__ float b1(int e, int N, int n) const { return bias1 ? bias1[size_t(e) * N + n] : 0.0f; }
  // silu(g)·u, or GPT-OSS's clamped form where limit > 0.
  __device__ __forceinline__ float glu(float g, float u) const {
    if (limit <= 0.0f) return silu(g) * u;
    g = fminf(g, limit);
    u = fminf(fmaxf(u, -limit), limit);
    return (u + 1.0f) * g / (1.0f + expf(-alpha * g));
  }
};

__host__ __device__ inline ExpertEpilogue gate_up_epilogue(const ExpertTable& t) { return ExpertEpilogue{t.gate_bias, t.up_bias, t.glu_limit, t.glu_alpha}; }
__host__ __device__ inline ExpertEpilogue down_epilogue(const ExpertTable& t) { return ExpertEpilogue{t.down_bias, nullptr, 0.0f, 1.0f}; }

// ---------------------------------------------------------------------------------------------------
// Decode.

constexpr int kGateUpWarps = 8;  // rows per block (one per warp)
constexpr int kDownWarps = 4;

// The decode kernels' weight type for GGML block-typed experts (the table's dtype says which).
struct Blocks {};

// Lane partial sums of NR dot products: row r of the matrices m[i] (n values per row, element type T, or
// block type t for T = Blocks) against x[i].
template <typename T, int NR>
__device__ __forceinline__ void expert_row_dots(const void* const (&m)[NR], DType t, int r, int n,
                                                const float* const (&x)[NR], int lane, float (&acc)[NR]) {
  if constexpr (std::is_same_v<T, Blocks>) {
    warp_block_dots<NR>(t, m, r, x, n, lane, acc);
  } else {
    const T* rows[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) rows[i] = static_cast<const T*>(m[i]) + size_t(r) * n;
    warp_dots<T, NR>(rows, x, n, lane, acc);
  }
}

template <typename T>
__global__ void __launch_bounds__(kGateUpWarps * 32)
    gate_up_decode_kernel(ExpertTable tb, const int32_t* __restrict__ selected, const float* __restrict__ x,
                          float* __restrict__ h) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  extern __shared__ __align__(16) float xs[];
  const int H = tb.hidden, F = tb.ffn;
  const int k = blockIdx.y;
  const int e = selected[k];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r = blockIdx.x * kGateUpWarps + warp;
  if (e < 0 || e >= tb.n_experts) {  // the same for the whole block
    if (lane == 0 && r < F) h[size_t(k) * F + r] = 0.0f;
    return;
  }
  for (int i = threadIdx.x; i < H; i += blockDim.x) xs[i] = x[i];
  __syncthreads();
  if (r >= F) return;
  float acc[2] = {0.0f, 0.0f};
  const void* const mats[2] = {tb.gate[e], tb.up[e]};
  const float* const vecs[2] = {xs, xs};
  expert_row_dots<T, 2>(mats, tb.dtype, r, H, vecs, lane, acc);
  const ExpertEpilogue ep = gate_up_epilogue(tb);
  const float gs = warp_sum(acc[0]) + ep.b0(e, F, r);
  const float us = warp_sum(acc[1]) + ep.b1(e, F, r);
  if (lane == 0) h[size_t(k) * F + r] = ep.glu(gs, us);
}

template <typename T>
__global__ void __launch_bounds__(kDownWarps * 32)
    down_decode_kernel(ExpertTable tb, const int32_t* __restrict__ selected, const float* __restrict__ weights,
                       int slots, const float* __restrict__ h, float* __restrict__ y, ResidualNorm then) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  const int H = tb.hidden, F = tb.ffn, E = tb.n_experts;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r = blockIdx.x * kDownWarps + warp;
  if (r < H) {  // the whole warp
    auto valid = [&](int k) {
      const int e = selected[k];
      return e >= 0 && e < E;
    };
    auto next = [&](int k) {
      while (k < slots && !valid(k)) ++k;
      return k;
    };
    const ExpertEpilogue ep = down_epilogue(tb);
    float acc = 0.0f;
    int k0 = next(0);
    while (k0 < slots) {
      const int k1 = next(k0 + 1);
      if (k1 < slots) {
        const void* const mats[2] = {tb.down[selected[k0]], tb.down[selected[k1]]};
        const float* const vecs[2] = {h + size_t(k0) * F, h + size_t(k1) * F};
        float d[2] = {0.0f, 0.0f};
        expert_row_dots<T, 2>(mats, tb.down_dtype, r, F, vecs, lane, d);
        const float d0 = warp_sum(d[0]) + ep.b0(selected[k0], H, r), d1 = warp_sum(d[1]) + ep.b0(selected[k1], H, r);
        acc += weights[k0] * d0;  // slot order
        acc += weights[k1] * d1;
        k0 = next(k1 + 1);
      } else {
        const void* const mats[1] = {tb.down[selected[k0]]};
        const float* const vecs[1] = {h + size_t(k0) * F};
        float d[1] = {0.0f};
        expert_row_dots<T, 1>(mats, tb.down_dtype, r, F, vecs, lane, d);
        acc += weights[k0] * (warp_sum(d[0]) + ep.b0(selected[k0], H, r));
        k0 = slots;
      }
    }
    if (lane == 0) y[r] = acc;
  }
  if (then.counter && arrive_last(then.counter, gridDim.x)) run_residual_norm(then, y);
}

// ---------------------------------------------------------------------------------------------------
// Grouping. Workspace layout (ints), P = T·slots, MT = max_tiles(P, E):
//   inv[P]          (t, k) → pair index, −1 for slots without an expert (first: combine does not know E)
//   pair_token[P]   pair → token
//   pair_slot[P]    pair → slot
//   counts[E]
//   offsets[E + 1]  exclusive prefix sums of counts (offsets[E] = pairs in all)
//   n_tiles[1]      work items in the tile list
//   tile_expert[MT], tile_index[MT]   the work items: (expert, tile of kPairTile pairs within it)

constexpr int kPairTile = 128;  // pairs per work item
constexpr int kRowTile = 64;    // weight rows per GEMM block (BN)
constexpr int kKTile = 32;      // reduction depth per shared-memory stage (BK)
constexpr int kGemmThreads = 128;
constexpr int kSimtPairs = 16;  // pairs per SIMT block: an eighth of a work item
constexpr int kScanThreads = 1024;

__host__ __device__ inline int max_tiles(int P, int E) { return (P + kPairTile - 1) / kPairTile + (E < P ? E : P); }

struct Grouping {
  int32_t *inv, *pair_token, *pair_slot, *counts, *offsets, *n_tiles, *tile_expert, *tile_index;
  __host__ __device__ Grouping(const int32_t* g, int P, int E) {
    int32_t* b = const_cast<int32_t*>(g);
    const int MT = max_tiles(P, E);
    inv = b;
    pair_token = inv + P;
    pair_slot = pair_token + P;
    counts = pair_slot + P;
    offsets = counts + E;
    n_tiles = offsets + E + 1;
    tile_expert = n_tiles + 1;
    tile_index = tile_expert + MT;
  }
};

// Exclusive scan of one value per thread over a block of kScanThreads; also returns the total.
__device__ int block_exclusive_scan(int v, int* warp_sums, int& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += n;
  }
  __syncthreads();  // warp_sums free from any earlier use
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    int s = lane < nw ? warp_sums[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int n = __shfl_up_sync(kFull, s, o);
      if (lane >= o) s += n;
    }
    if (lane < nw) warp_sums[lane] = s;  // inclusive over warps
  }
  __syncthreads();
  total = warp_sums[(blockDim.x >> 5) - 1];
  return incl - v + (warp > 0 ? warp_sums[warp - 1] : 0);
}

// One block: counts per expert, their offsets, the tile list, and inv = −1 for the empty slots.
__global__ void __launch_bounds__(kScanThreads)
    group_count_kernel(const int32_t* __restrict__ selected, int P, int E, int32_t* ws) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  __shared__ int cnt[kScanThreads];
  __shared__ int warp_sums[32];
  const Grouping G(ws, P, E);
  const int tid = threadIdx.x;
  cnt[tid] = 0;
  __syncthreads();
  for (int i = tid; i < P; i += blockDim.x) {
    const int e = selected[i];
    if (e >= 0 && e < E) atomicAdd(&cnt[e], 1);  // a count: the order of the additions does not matter
    else G.inv[i] = -1;
  }
  __syncthreads();
  const int c = tid < E ? cnt[tid] : 0;
  const int nt = (c + kPairTile - 1) / kPairTile;
  int total = 0, total_tiles = 0;
  const int off = block_exclusive_scan(c, warp_sums, total);
  const int toff = block_exclusive_scan(nt, warp_sums, total_tiles);
  if (tid < E) {
    G.counts[tid] = c;
    G.offsets[tid] = off;
    for (int j = 0; j < nt; ++j) {
      G.tile_expert[toff + j] = tid;
      G.tile_index[toff + j] = j;
    }
  }
  if (tid == 0) {
    G.offsets[E] = total;
    G.n_tiles[0] = total_tiles;
  }
}

// One warp per expert walks the (t, k) entries in order with ballots: each match's rank is the number of
// earlier matches, so the pairs of an expert are ordered by token, then slot (deterministic).
constexpr int kScatterWarps = 8;
__global__ void __launch_bounds__(kScatterWarps * 32)
    group_scatter_kernel(const int32_t* __restrict__ selected, int P, int slots, int E, int32_t* ws) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  const Grouping G(ws, P, E);
  const int lane = threadIdx.x & 31;
  const int e = blockIdx.x * kScatterWarps + (threadIdx.x >> 5);
  if (e >= E) return;
  int pos = G.offsets[e];
  const int end = G.offsets[e + 1];
  const unsigned lt = (1u << lane) - 1u;
  for (int i0 = 0; i0 < P && pos < end; i0 += 32) {
    const int i = i0 + lane;
    const bool hit = i < P && selected[i] == e;
    const unsigned m = __ballot_sync(kFull, hit);
    if (hit) {
      const int pair = pos + __popc(m & lt);
      G.pair_token[pair] = i / slots;
      G.pair_slot[pair] = i % slots;
      G.inv[i] = pair;
    }
    pos += __popc(m);
  }
}

// ---------------------------------------------------------------------------------------------------
// Grouped GEMM: out[pair][n] = f(W_e[n, :] · X[row(pair), :]) for the pairs of one work item.
//   gate_up (kGLU): W0 = gate, W1 = up, X = x gathered by pair → token, f = silu(g)·u, N = ffn, K = hidden.
//   down: W0 = down, X = h (row = pair), N = hidden, K = ffn.

constexpr int kXStride = kSimtPairs + 4;  // floats per k row of the X tile (16-byte aligned rows)
constexpr int kWStride = kRowTile + 1;   // odd: the transposing stores hit distinct banks

// Four activations X[row][kk … kk + 3] (zeros past K, or for row −1: a pair past the expert's count).
// vec: K % 4 == 0 and X 16-byte aligned.
__device__ __forceinline__ void load_x_run(const float* __restrict__ X, int K, int row, int kk, bool vec, float (&f)[4]) {
  f[0] = f[1] = f[2] = f[3] = 0.0f;
  if (row < 0) return;
  const float* src = X + size_t(row) * K + kk;
  if (vec && kk < K) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
  } else {
#pragma unroll
    for (int c = 0; c < 4; ++c)
      if (kk + c < K) f[c] = src[c];
  }
}

template <typename T>
__device__ __forceinline__ void load_w_tile(const T* __restrict__ W, int N, int K, int n0, int k0, bool vec,
                                            float (*Ws)[kWStride]) {
  constexpr int V = Elem<T>::kPerChunk;
  constexpr int kChunksPerRow = kKTile / V;
  constexpr int kChunks = kRowTile * kChunksPerRow;
#pragma unroll
  for (int s = 0; s < kChunks / kGemmThreads; ++s) {
    const int i = threadIdx.x + s * kGemmThreads;
    const int row = i / kChunksPerRow, kc = (i % kChunksPerRow) * V;
    const int n = n0 + row, kk = k0 + kc;
    float f[V];
    if (n < N && vec && kk < K) {  // K % V == 0: the chunk is whole
      Elem<T>::cvt(ld_stream(W + size_t(n) * K + kk), f);
    } else {
#pragma unroll
      for (int c = 0; c < V; ++c) f[c] = (n < N && kk + c < K) ? Elem<T>::one(W + size_t(n) * K + kk + c) : 0.0f;
    }
#pragma unroll
    for (int c = 0; c < V; ++c) Ws[kc + c][row] = f[c];
  }
}

template <typename T, bool kGLU>
__global__ void __launch_bounds__(kGemmThreads)
    grouped_simt_kernel(const void* const* __restrict__ w0_table, const void* const* __restrict__ w1_table, int N, int K,
                   const int32_t* __restrict__ ws, int P, int E, const float* __restrict__ X, float* __restrict__ out,
                   ExpertEpilogue ep) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  __shared__ __align__(16) float Xs[kKTile][kXStride];
  __shared__ float W0s[kKTile][kWStride];
  __shared__ float W1s[kGLU ? kKTile : 1][kGLU ? kWStride : 1];
  __shared__ int xrow[kSimtPairs];

  const Grouping G(ws, P, E);
  const int tile = blockIdx.y;
  if (tile >= G.n_tiles[0]) return;  // past the work list: the whole block
  const int e = G.tile_expert[tile];
  const int p0 = G.offsets[e] + G.tile_index[tile] * kPairTile + blockIdx.z * kSimtPairs;
  const int pend = G.offsets[e + 1];
  if (p0 >= pend) return;  // a 16-pair part past the expert's count: the whole block
  const int mcount = min(kSimtPairs, pend - p0);
  const int n0 = blockIdx.x * kRowTile;

  const int tid = threadIdx.x;
  if (tid < kSimtPairs) xrow[tid] = tid < mcount ? (kGLU ? G.pair_token[p0 + tid] : p0 + tid) : -1;

  const T* W0 = static_cast<const T*>(w0_table[e]);
  const T* W1 = kGLU ? static_cast<const T*>(w1_table[e]) : nullptr;
  constexpr int V = Elem<T>::kPerChunk;
  const bool wvec = K % V == 0 && aligned16(W0) && (!kGLU || aligned16(W1));
  const bool xvec = K % 4 == 0 && aligned16(X);

  // Thread → (weight row n, pair half): one row, 8 pairs.
  const int n = tid % kRowTile;
  const int half = tid / kRowTile;  // warp-uniform (64 threads per half)
  const bool active = half * 8 < mcount;
  float acc0[8], acc1[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) acc0[j] = acc1[j] = 0.0f;

  __syncthreads();  // xrow
  for (int k0 = 0; k0 < K; k0 += kKTile) {
    // X tile: kSimtPairs rows × kKTile floats = 128 float4 chunks, one per thread; stored transposed.
    {
      const int m = tid / (kKTile / 4), kq = (tid % (kKTile / 4)) * 4;
      const int row = xrow[m], kk = k0 + kq;
      float f[4];
      load_x_run(X, K, row, kk, xvec, f);
#pragma unroll
      for (int c = 0; c < 4; ++c) Xs[kq + c][m] = f[c];
    }
    load_w_tile<T>(W0, N, K, n0, k0, wvec, W0s);
    if constexpr (kGLU) load_w_tile<T>(W1, N, K, n0, k0, wvec, W1s);
    __syncthreads();
    if (active) {
#pragma unroll 8
      for (int kk = 0; kk < kKTile; ++kk) {
        const float4 xa = *reinterpret_cast<const float4*>(&Xs[kk][half * 8]);
        const float4 xb = *reinterpret_cast<const float4*>(&Xs[kk][half * 8 + 4]);
        const float xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
        const float a = W0s[kk][n];
#pragma unroll
        for (int j = 0; j < 8; ++j) acc0[j] += a * xv[j];
        if constexpr (kGLU) {
          const float b = W1s[kk][n];
#pragma unroll
          for (int j = 0; j < 8; ++j) acc1[j] += b * xv[j];
        }
      }
    }
    __syncthreads();
  }

  if (!active || n0 + n >= N) return;
  const float b0 = ep.b0(e, N, n0 + n), b1 = kGLU ? ep.b1(e, N, n0 + n) : 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int m = half * 8 + j;
    if (m < mcount) out[size_t(p0 + m) * N + n0 + n] = kGLU ? ep.glu(acc0[j] + b0, acc1[j] + b1) : acc0[j] + b0;
  }
}

// Tensor-core GEMM (16-bit weights). One block per (work item, kRowTile weight rows): the kPairTile
// pairs of its work item against kRowTile weight rows, 8 warps of 32 pairs × 32 rows. The activations
// arrive already in T (x converted once per chunk, h written in T by gate/up), so both operands move as
// raw 16-byte chunks, by cp.async (async_copy.cuh) into a ring of kTcStages shared-memory stages: the
// copies of the next kTcStages − 1 k steps are in flight while a step is multiplied, without a register
// to stage them in, and one barrier per k step both publishes a stage and frees the oldest.
namespace wmma = nvcuda::wmma;
constexpr int kTcThreads = 256;
constexpr int kTcStages = 3;
constexpr int kTcLd = kKTile + 8;        // T per staged row: 80 bytes, so fragment rows stay 32-byte aligned
constexpr int kTcOutLd = kRowTile + 4;   // floats per row of the epilogue tile
constexpr int kTcWarpPairs = 32, kTcWarpRows = 32, kFrag = 16;
static_assert(kPairTile == 4 * kTcWarpPairs && kRowTile == 2 * kTcWarpRows && kTcThreads == 8 * 32, "warp grid");
static_assert(kPairTile <= kTcThreads, "one thread per pair fills the row table");

template <bool kGLU>
struct TcTiles {
  static constexpr int n_w = kGLU ? 2 : 1;
  static constexpr size_t x_elems = size_t(kPairTile) * kTcLd;  // pairs × k, row-major
  static constexpr size_t w_elems = size_t(kRowTile) * kTcLd;   // weight rows × k, row-major
  static constexpr size_t stage_elems = x_elems + n_w * w_elems;
  static constexpr size_t operand_bytes = kTcStages * stage_elems * 2;  // 16-bit values
  static constexpr size_t out_bytes = size_t(kPairTile) * kTcOutLd * sizeof(float);
  static constexpr size_t bytes = operand_bytes > out_bytes ? operand_bytes : out_bytes;  // dynamic shared memory
  static_assert(stage_elems * 2 % 32 == 0 && x_elems * 2 % 32 == 0 && w_elems * 2 % 32 == 0, "fragment alignment");
};

// 16-byte chunks per thread and k step: activations kPairTile × kKTile, each weight matrix kRowTile × kKTile.
constexpr int kTcXChunks = kPairTile * kKTile / 8 / kTcThreads;
constexpr int kTcWChunks = kRowTile * kKTile / 8 / kTcThreads;
static_assert(kTcXChunks * 8 * kTcThreads == kPairTile * kKTile && kTcWChunks * 8 * kTcThreads == kRowTile * kKTile,
              "whole chunks per thread");

// row[kk … kk + 7] (raw 16-bit values) into the stage at dst. vec: K % 8 == 0 and 16-byte aligned rows,
// so a chunk below K is whole and goes by cp.async. Otherwise the chunk is assembled here and stored:
// zeros past K or for a null row (a pair past the expert's count, a weight row past N), and the values
// one by one when the rows are not vec.
template <typename T>
__device__ __forceinline__ void stage_chunk(T* dst, const T* __restrict__ row, int K, int kk, bool vec) {
  if (row && vec && kk < K) {
    copy_async_16(dst, row + kk);
    return;
  }
  uint32_t w[4] = {0u, 0u, 0u, 0u};  // indexed by constants once unrolled: registers, not a stack array
  if (row && !vec) {
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      unsigned short b = 0;
      if (kk + c < K) memcpy(&b, row + kk + c, 2);
      w[c / 2] |= uint32_t(b) << (16 * (c % 2));
    }
  }
  *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
}

// X: the activations in T, [rows][K]; out: T (gate/up: h = silu(g)·u rounded to T) or float (down).
// wblock_row > 0: the weights are rows of that many bytes of block type wtype (T is then its compute dtype), each
// 8-value chunk decoded, not copied; K is whole blocks, so a k step's chunks are whole too.
template <typename T, bool kGLU>
__global__ void __launch_bounds__(kTcThreads)
    grouped_tc_kernel(const void* const* __restrict__ w0_table, const void* const* __restrict__ w1_table, int N,
                      int K, const int32_t* __restrict__ ws, int P, int E, const T* __restrict__ X,
                      void* __restrict__ out, ExpertEpilogue ep, DType wtype, size_t wblock_row) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  using Tiles = TcTiles<kGLU>;
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int xrow[kPairTile];
  T* const stages = reinterpret_cast<T*>(smem);  // kTcStages of Tiles::stage_elems
  float* Cs = reinterpret_cast<float*>(smem);  // the epilogue's tile, once the operands are done with

  const Grouping G(ws, P, E);
  const int tile = blockIdx.y;
  if (tile >= G.n_tiles[0]) return;  // past the work list: the whole block
  const int e = G.tile_expert[tile];
  const int p0 = G.offsets[e] + G.tile_index[tile] * kPairTile;
  const int mcount = min(kPairTile, G.offsets[e + 1] - p0);
  const int n0 = blockIdx.x * kRowTile;
  const int tid = threadIdx.x;
  if (tid < kPairTile) xrow[tid] = tid < mcount ? (kGLU ? G.pair_token[p0 + tid] : p0 + tid) : -1;

  const T* W[2] = {static_cast<const T*>(w0_table[e]), kGLU ? static_cast<const T*>(w1_table[e]) : nullptr};
  const bool wvec = K % 8 == 0 && aligned16(W[0]) && (!kGLU || aligned16(W[1]));
  const bool xvec = K % 8 == 0 && aligned16(X);

  const int warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;       // this warp's 32 pairs and 32 weight rows
  const bool active = wm * kTcWarpPairs < mcount;  // warp-uniform
  wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc[Tiles::n_w][2][2];
#pragma unroll
  for (int w = 0; w < Tiles::n_w; ++w)
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[w][i][j], 0.0f);
  static_assert(Tiles::n_w * 16 * kTcOutLd * sizeof(float) <= Tiles::bytes, "the bias tile fits in the stages");
  if (ep.bias0) {
    // GPT-OSS's biases: every accumulator starts at its weight row's bias, loaded from a 16-row tile of
    // identical rows that the stages hold before their first copies.
    float* bs = reinterpret_cast<float*>(smem);  // [n_w][16][kTcOutLd]
    for (int i = tid; i < Tiles::n_w * 16 * kRowTile; i += kTcThreads) {
      const int w = i / (16 * kRowTile), r = i / kRowTile % 16, c = i % kRowTile;
      bs[(w * 16 + r) * kTcOutLd + c] = n0 + c < N ? (w == 0 ? ep.b0(e, N, n0 + c) : ep.b1(e, N, n0 + c)) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < Tiles::n_w; ++w)
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
          wmma::load_matrix_sync(acc[w][i][j], bs + w * 16 * kTcOutLd + wn * kTcWarpRows + j * kFrag, kTcOutLd,
                                 wmma::mem_row_major);
    __syncthreads();  // before the stages take their first copies
  }

  // Issues the copies of k step `step` into its stage, as one group (empty past the last step, so that
  // every thread has committed the same number of groups at every wait).
  const int steps = (K + kKTile - 1) / kKTile;
  auto issue_step = [&](int step) {
    if (step < steps) {
      T* const st = stages + (step % kTcStages) * Tiles::stage_elems;
      const int k0 = step * kKTile;
#pragma unroll
      for (int s = 0; s < kTcXChunks; ++s) {
        const int i = tid + s * kTcThreads, m = i / (kKTile / 8), kc = (i % (kKTile / 8)) * 8;
        const int row = xrow[m];
        stage_chunk(st + m * kTcLd + kc, row >= 0 ? X + size_t(row) * K : nullptr, K, k0 + kc, xvec);
      }
#pragma unroll
      for (int s = 0; s < kTcWChunks; ++s) {
        const int i = tid + s * kTcThreads, r = i / (kKTile / 8), kc = (i % (kKTile / 8)) * 8;
        const int n = n0 + r;
#pragma unroll
        for (int w = 0; w < Tiles::n_w; ++w) {
          T* const dst = st + Tiles::x_elems + w * Tiles::w_elems + r * kTcLd + kc;
          if (wblock_row) {
            const auto* row = reinterpret_cast<const uint8_t*>(W[w]) + size_t(n) * wblock_row;
            *reinterpret_cast<uint4*>(dst) = n < N ? decode_run_16(wtype, row, k0 + kc) : make_uint4(0u, 0u, 0u, 0u);
          } else {
            stage_chunk(dst, n < N ? W[w] + size_t(n) * K : nullptr, K, k0 + kc, wvec);
          }
        }
      }
    }
    commit_async();
  };

  __syncthreads();  // xrow
#pragma unroll
  for (int step = 0; step < kTcStages - 1; ++step) issue_step(step);
  for (int step = 0; step < steps; ++step) {
    wait_async<kTcStages - 2>();  // this thread's copies of this step have landed
    // Everyone's have; and every warp is done with the previous step, whose stage is refilled next.
    __syncthreads();
    issue_step(step + kTcStages - 1);
    if (active) {
      const T* Xs = stages + (step % kTcStages) * Tiles::stage_elems;
      const T* Ws = Xs + Tiles::x_elems;
#pragma unroll
      for (int kk = 0; kk < kKTile; kk += kFrag) {
        wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::row_major> a[2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
          wmma::load_matrix_sync(a[i], Xs + (wm * kTcWarpPairs + i * kFrag) * kTcLd + kk, kTcLd);
#pragma unroll
        for (int w = 0; w < Tiles::n_w; ++w) {
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            // B = Wᵀ: W's rows (n) × k, row-major, is k × n column-major.
            wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::col_major> b;
            wmma::load_matrix_sync(b, Ws + w * Tiles::w_elems + (wn * kTcWarpRows + j * kFrag) * kTcLd + kk, kTcLd);
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::mma_sync(acc[w][i][j], a[i], b, acc[w][i][j]);
          }
        }
      }
    }
  }
  wait_async<0>();  // only empty groups are left; none may land on the epilogue's tile
  __syncthreads();  // every warp is done with the stages: the epilogue reuses them
  if (active) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        if constexpr (kGLU) {
          // Accumulators of one type share their element layout, so gate and up pair up element-wise.
#pragma unroll
          for (int t = 0; t < acc[0][i][j].num_elements; ++t)
            acc[0][i][j].x[t] = ep.glu(acc[0][i][j].x[t], acc[1][i][j].x[t]);
        }
        wmma::store_matrix_sync(Cs + (wm * kTcWarpPairs + i * kFrag) * kTcOutLd + wn * kTcWarpRows + j * kFrag,
                                acc[0][i][j], kTcOutLd, wmma::mem_row_major);
      }
  }
  __syncthreads();
  // Coalesced along the weight rows; only the pairs of this work item (rows past mcount were never stored).
  for (int idx = tid; idx < mcount * kRowTile; idx += kTcThreads) {
    const int m = idx / kRowTile, n = idx % kRowTile;
    if (n0 + n >= N) continue;
    const float v = Cs[m * kTcOutLd + n];
    const size_t at = size_t(p0 + m) * N + n0 + n;
    if constexpr (kGLU) static_cast<T*>(out)[at] = Elem16<T>::from(v);
    else static_cast<float*>(out)[at] = v;
  }
}

__global__ void combine_kernel(const int32_t* __restrict__ inv, const float* __restrict__ weights, int slots,
                               int hidden, const float* __restrict__ yp, float* __restrict__ y) {
  wait_for_inputs();  // a dependent launch (dependent_launch.cuh)
  const int t = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= hidden) return;
  float acc = 0.0f;
  for (int k = 0; k < slots; ++k) {
    const int pair = inv[size_t(t) * slots + k];
    if (pair >= 0) acc += weights[size_t(t) * slots + k] * yp[size_t(pair) * hidden + c];
  }
  y[size_t(t) * hidden + c] = acc;
}

// ---------------------------------------------------------------------------------------------------
// Launch helpers.

[[noreturn]] void bad_dtype() {
  throw_cuda_error("experts", "expert weights must be BF16, F16, F32 or whole rows of a GGML block type", __FILE__, __LINE__);
}


// Dynamic shared memory above the 48 KiB default needs an opt-in per kernel (a host-side attribute:
// no synchronisation, allowed while a stream is being captured).
template <typename K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    MOE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <typename T>
void launch_gate_up_decode(const ExpertTable& t, const int32_t* selected, int slots, const float* x, float* h,
                           cudaStream_t stream) {
  const size_t smem = size_t(t.hidden) * sizeof(float);
  allow_smem(gate_up_decode_kernel<T>, smem);
  const dim3 grid((t.ffn + kGateUpWarps - 1) / kGateUpWarps, slots);
  launch_dependent("gate_up_decode_kernel", gate_up_decode_kernel<T>, grid, kGateUpWarps * 32, smem, stream, t,
                   selected, x, h);
  MOE_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_down_decode(const ExpertTable& t, const int32_t* selected, const float* weights, int slots,
                        const float* h, float* y, const ResidualNorm& then, cudaStream_t stream) {
  const int grid = (t.hidden + kDownWarps - 1) / kDownWarps;
  launch_dependent("down_decode_kernel", down_decode_kernel<T>, grid, kDownWarps * 32, 0, stream, t, selected, weights,
                   slots, h, y, then);
  MOE_CUDA_CHECK_LAUNCH();
}

// The grids depend only on (N, P, E): blocks past the work list exit at once. X and out: F32 for F32
// weights (the SIMT kernel); for 16-bit weights X in T and out in T (gate/up) or F32 (down).
template <typename T, bool kGLU>
void launch_grouped(const ExpertTable& t, const void* const* w0, const void* const* w1, int N, int K,
                    const int32_t* grouping, int P, const void* X, void* out, cudaStream_t stream, DType wtype) {
  const ExpertEpilogue ep = kGLU ? gate_up_epilogue(t) : down_epilogue(t);
  const int row_blocks = (N + kRowTile - 1) / kRowTile, items = max_tiles(P, t.n_experts);
  if constexpr (std::is_same_v<T, float>) {
    const dim3 grid(row_blocks, items, kPairTile / kSimtPairs);
    launch_dependent("grouped_simt_kernel", grouped_simt_kernel<T, kGLU>, grid, kGemmThreads, 0, stream, w0, w1, N, K,
                     grouping, P, t.n_experts, static_cast<const float*>(X), static_cast<float*>(out), ep);
  } else {
    const dim3 grid(row_blocks, items);
    constexpr size_t smem = TcTiles<kGLU>::bytes;
    allow_smem(grouped_tc_kernel<T, kGLU>, smem);
    launch_dependent("grouped_tc_kernel", grouped_tc_kernel<T, kGLU>, grid, kTcThreads, smem, stream, w0, w1, N, K,
                     grouping, P, t.n_experts, static_cast<const T*>(X), out, ep, wtype,
                     is_block_quantized(wtype) ? row_bytes(wtype, K) : 0);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void experts_gate_up_decode(const ExpertTable& t, const int32_t* selected, int slots, const float* x, float* h,
                            cudaStream_t stream) {
  if (slots <= 0 || t.ffn <= 0 || t.hidden <= 0) return;
  switch (t.dtype) {
    case DType::BF16: return launch_gate_up_decode<__nv_bfloat16>(t, selected, slots, x, h, stream);
    case DType::F16: return launch_gate_up_decode<__half>(t, selected, slots, x, h, stream);
    case DType::F32: return launch_gate_up_decode<float>(t, selected, slots, x, h, stream);
    default:
      if (!whole_blocks(t.dtype, t.hidden)) bad_dtype();
      return launch_gate_up_decode<Blocks>(t, selected, slots, x, h, stream);
  }
}

void experts_down_decode(const ExpertTable& t, const int32_t* selected, const float* weights, int slots,
                         const float* h, float* y, cudaStream_t stream, const ResidualNorm* then) {
  if (t.hidden <= 0) return;
  const ResidualNorm tail = then && then->counter ? bind_residual_norm(*then, y, t.hidden) : ResidualNorm{};
  switch (t.down_dtype) {
    case DType::BF16: return launch_down_decode<__nv_bfloat16>(t, selected, weights, slots, h, y, tail, stream);
    case DType::F16: return launch_down_decode<__half>(t, selected, weights, slots, h, y, tail, stream);
    case DType::F32: return launch_down_decode<float>(t, selected, weights, slots, h, y, tail, stream);
    default:
      if (!whole_blocks(t.down_dtype, t.ffn)) bad_dtype();
      return launch_down_decode<Blocks>(t, selected, weights, slots, h, y, tail, stream);
  }
}

size_t expert_grouping_ints(int T, int slots, int n_experts) {
  const int P = T * slots;
  return 3 * size_t(P) + 2 * size_t(n_experts) + 2 + 2 * size_t(max_tiles(P, n_experts));
}

void group_by_expert(const int32_t* selected, int T, int slots, int n_experts, int32_t* grouping,
                     cudaStream_t stream) {
  const int P = T * slots;
  if (P <= 0 || n_experts <= 0) return;
  if (n_experts > kScanThreads)
    throw_cuda_error("group_by_expert", "more than 1024 experts", __FILE__, __LINE__);
  launch_dependent("group_count_kernel", group_count_kernel, 1, kScanThreads, 0, stream, selected, P, n_experts,
                   grouping);
  MOE_CUDA_CHECK_LAUNCH();
  launch_dependent("group_scatter_kernel", group_scatter_kernel, (n_experts + kScatterWarps - 1) / kScatterWarps,
                   kScatterWarps * 32, 0, stream, selected, P, slots, n_experts, grouping);
  MOE_CUDA_CHECK_LAUNCH();
}

void experts_gate_up_grouped(const ExpertTable& t, const int32_t* grouping, int T, int slots, const float* x,
                             void* x16, void* h, cudaStream_t stream) {
  const int P = T * slots;
  if (P <= 0 || t.n_experts <= 0 || t.ffn <= 0) return;
  if (gpu_compute_dtype(t.dtype) != gpu_compute_dtype(t.down_dtype))
    throw_cuda_error("experts", "gate/up and down compute in different dtypes", __FILE__, __LINE__);
  const DType c = gpu_compute_dtype(t.dtype);
  if (c != DType::F32) {
    if (!x16) throw_cuda_error("experts", "16-bit expert weights need the x16 workspace", __FILE__, __LINE__);
    convert_f32(x, x16, c, int64_t(T) * t.hidden, stream);
  }
  switch (t.dtype) {
    case DType::BF16:
      return launch_grouped<__nv_bfloat16, true>(t, t.gate, t.up, t.ffn, t.hidden, grouping, P, x16, h, stream, t.dtype);
    case DType::F16:
      return launch_grouped<__half, true>(t, t.gate, t.up, t.ffn, t.hidden, grouping, P, x16, h, stream, t.dtype);
    case DType::F32:
      return launch_grouped<float, true>(t, t.gate, t.up, t.ffn, t.hidden, grouping, P, x, h, stream, t.dtype);
    default:
      if (!whole_blocks(t.dtype, t.hidden)) bad_dtype();
      if (c == DType::F16)  // F16-valued blocks
        return launch_grouped<__half, true>(t, t.gate, t.up, t.ffn, t.hidden, grouping, P, x16, h, stream, t.dtype);
      return launch_grouped<__nv_bfloat16, true>(t, t.gate, t.up, t.ffn, t.hidden, grouping, P, x16, h, stream, t.dtype);
  }
}

void experts_down_grouped(const ExpertTable& t, const int32_t* grouping, int T, int slots, const void* h,
                          float* yp, cudaStream_t stream) {
  const int P = T * slots;
  if (P <= 0 || t.n_experts <= 0 || t.hidden <= 0) return;
  const DType w = t.down_dtype;
  switch (w) {
    case DType::BF16:
      return launch_grouped<__nv_bfloat16, false>(t, t.down, nullptr, t.hidden, t.ffn, grouping, P, h, yp, stream, w);
    case DType::F16:
      return launch_grouped<__half, false>(t, t.down, nullptr, t.hidden, t.ffn, grouping, P, h, yp, stream, w);
    case DType::F32:
      return launch_grouped<float, false>(t, t.down, nullptr, t.hidden, t.ffn, grouping, P, h, yp, stream, w);
    default:
      if (!whole_blocks(w, t.ffn)) bad_dtype();
      if (gpu_compute_dtype(w) == DType::F16)  // F16-valued blocks
        return launch_grouped<__half, false>(t, t.down, nullptr, t.hidden, t.ffn, grouping, P, h, yp, stream, w);
      return launch_grouped<__nv_bfloat16, false>(t, t.down, nullptr, t.hidden, t.ffn, grouping, P, h, yp, stream, w);
  }
}

void experts_combine(const int32_t* grouping, const float* weights, int T, int slots, int hidden, const float* yp,
                     float* y, cudaStream_t stream) {
  if (T <= 0 || hidden <= 0) return;
  constexpr int kThreads = 256;
  const dim3 grid((hidden + kThreads - 1) / kThreads, T);
  // inv is the first part of the workspace (Grouping), so no expert count is needed here.
  launch_dependent("combine_kernel", combine_kernel, grid, kThreads, 0, stream, grouping, weights, slots, hidden, yp,
                   y);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::cuda
