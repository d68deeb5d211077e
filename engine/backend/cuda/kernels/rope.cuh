#pragma once
// What happens to q, k and v between their projection and attention, in one kernel per step
// (SPECS.md §2, the CPU backend's attention_block): biases, q/k RMSNorm (per head or over the whole
// projection), clipping, rotary embedding of q and k at each token's position, and the write of k and
// v into this layer's KV cache. In a decode step it can run inside the projection's kernel (qkv_decode).
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/device_matrix.h"
#include "engine/common/dtype.h"

namespace moe::cuda {

enum class QkNormMode : int { None = 0, PerHead = 1, WholeProjection = 2 };

struct QkvPrepareParams {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int rotary_dim = 0;              // the first rotary_dim dims of each head are rotated
  bool interleaved = false;        // RopeStyle::Interleaved (pairs 2i, 2i+1); else rotate-half (i, i+d/2)
  const float* inv_freq = nullptr; // [rotary_dim / 2]: rope_inv_freq (plain or YaRN), the CPU's table
  float rope_factor = 1.0f;        // YaRN's attention factor: multiplies cos and sin
  const float* q_bias = nullptr;   // [nh·hd] or null
  const float* k_bias = nullptr;   // [nkv·hd] or null
  const float* v_bias = nullptr;   // [nkv·hd] or null
  QkNormMode qk_norm = QkNormMode::None;
  const float* q_norm = nullptr;   // PerHead: [hd]; WholeProjection: [nh·hd]
  const float* k_norm = nullptr;   // PerHead: [hd]; WholeProjection: [nkv·hd]
  float eps = 1e-6f;
  float clip = 0.0f;               // clamp q, k, v to ±clip after the norms; 0 = off
  DType kv_dtype = DType::F32;     // F32 or BF16 cache entries
  void* k_cache = nullptr;         // this layer: [capacity][nkv·hd]
  void* v_cache = nullptr;
};

// q, k, v: [T] rows, row t of each at q + t·row_stride (etc.): the output of one fused QKV GEMM has
// row_stride = nh·hd + 2·nkv·hd, with k = q + nh·hd and v = k + nkv·hd. Token t sits at position
// pos0[0] + t (pos0: a device int, the tokens cached before this step, so a captured graph replays
// at the current position). q and k are modified in place (v too when biased or clipped); k and v are
// then stored at that position of the caches. Rotation angles are computed in F32 as pos · inv_freq
// with sincosf, as the CPU computes them.
void qkv_prepare(float* q, float* k, float* v, int64_t row_stride, int T, const int32_t* pos0,
                 const QkvPrepareParams& p, cudaStream_t stream);

// Decode (T = 1): the fused QKV projection qkv = W·x (W: [(nh + 2·nkv)·hd][hidden], computed as
// linear_decode computes it) and qkv_prepare of its one token (row_stride: the whole row), in one
// kernel: each head's preparation runs in the last block to finish that head's rows (last_block.cuh),
// so the heads are prepared in parallel, bit-identical to qkv_prepare. counters: qkv_decode_counters(p)
// device words that are 0 between launches; that count is 0 where the fused form does not apply (a
// whole-projection q/k norm needs every head; head_dim must be a multiple of 8 up to 256).
int qkv_decode_counters(const QkvPrepareParams& p);
void qkv_decode(const DeviceMatrix& w, const float* x, float* qkv, const int32_t* pos0, const QkvPrepareParams& p,
                unsigned* counters, cudaStream_t stream);

}  // namespace moe::cuda
