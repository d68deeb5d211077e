#pragma once
// Multi-head latent attention (DeepSeek-V2/V3, Kimi K2) in the absorbed form, as the CPU backend's
// mla_attention_block computes it (SPECS.md §6.3–6.4). A token's cache row is [c ; k_pe]: the normed
// latent (kv_lora values) and the RoPE'd key part shared by every head (rope values). Per layer:
//   1. latent_prepare: from kv_a's output (+ bias), RMSNorm the latent, rotate k_pe at the token's
//      position and store the row in the cache; with q-LoRA also q_a's output (+ bias) → RMSNorm, the
//      input of q_b.
//   2. latent_absorb_queries: each head's query becomes [W_UK_hᵀ·q_nope ; RoPE(q_pe)] (kv_lora + rope),
//      W_UK_h being kv_b's first qk_nope rows of the head; its dot with a cache row is the naive form's
//      q_h·k_h.
//   3. latent_attention: every head attends over the latents (one KV head of kv_lora + rope; the values
//      are the rows' first kv_lora), with the statistics the hooks ask for. attention_row
//      (attention.cuh) gives a full row, with n_kv_heads 1 and head_dim kv_lora + rope.
//   4. latent_expand_values: each head's output W_UV_h · (its weighted latent), W_UV_h being kv_b's
//      last v rows of the head; o_proj follows (cuBLAS or linear_decode).
// Every position is read on the device (pos0), so a decode step's graph replays at any position.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "engine/backend/cuda/device_matrix.h"
#include "engine/backend/cuda/kernels/attention.cuh"
#include "engine/common/dtype.h"

namespace moe::cuda {

struct LatentShape {
  int n_heads = 0;
  int kv_lora = 0;     // latent width; a multiple of 4, at most kMaxLatent
  int rope_dim = 0;    // k_pe and q_pe (even)
  int qk_nope = 0;     // q_nope per head; a head's query is [q_nope ; q_pe]
  int v_dim = 0;       // value width per head
  int capacity = 0;    // cache rows
  DType kv_dtype = DType::F32;
  float scale = 0.0f;  // the softmax scale (qk_nope + rope)^-0.5, YaRN's mscale² included
  __host__ __device__ int row() const { return kv_lora + rope_dim; }
  __host__ __device__ int q_head() const { return qk_nope + rope_dim; }
};
constexpr int kMaxLatent = 1024;

// Rotary embedding of k_pe and q_pe (the CPU backend's rope(): rope_frequencies.h's table).
struct LatentRope {
  const float* inv_freq = nullptr;  // [rope_dim / 2]
  float factor = 1.0f;              // YaRN's attention factor on cos and sin
  bool interleaved = false;
};

struct LatentPrepareParams {
  const float* kv_bias = nullptr;  // [kv_lora + rope] or null
  const float* kv_norm = nullptr;  // [kv_lora]
  float eps = 1e-6f;
  // q-LoRA (q_lora > 0): rows of q_lora values at q_in + t·q_in_stride → + q_bias, RMSNorm · q_norm →
  // q_out[t · q_lora …].
  int q_lora = 0;
  const float* q_in = nullptr;
  int64_t q_in_stride = 0;
  const float* q_bias = nullptr;
  const float* q_norm = nullptr;
  float* q_out = nullptr;
  void* cache = nullptr;           // this layer: [capacity][kv_lora + rope], F32 or BF16
};

// kv: T rows of kv_lora + rope values, row t at kv + t·kv_stride; token t at position pos0[0] + t.
void latent_prepare(const float* kv, int64_t kv_stride, int T, const int32_t* pos0, const LatentShape& shape,
                    const LatentRope& rope, const LatentPrepareParams& p, cudaStream_t stream);

// q: T rows of n_heads · (qk_nope + rope) values, q + t·q_stride; kv_b: [n_heads·(qk_nope + v), kv_lora].
// q_abs: [T][n_heads][kv_lora + rope].
void latent_absorb_queries(const float* q, int64_t q_stride, int T, const int32_t* pos0, const DeviceMatrix& kv_b,
                           const LatentShape& shape, const LatentRope& rope, float* q_abs, cudaStream_t stream);

// q_abs: [T][n_heads][kv_lora + rope]; token t at position pos0[0] + t attends to the cache rows
// 0 … pos0[0] + t. out: [T][n_heads][kv_lora], the softmax-weighted latents. Statistics as
// attention.cuh's (value of (t, h) at ptr[t · token_stride + h]).
// Decode (T = 1): split-K over the context in max_splits slices (the grid never depends on the position)
// and attention.cu's merge; workspace: latent_attention_workspace_floats. Prefill: a block per token and
// group of heads walks all of its keys (no workspace).
size_t latent_attention_workspace_floats(const LatentShape& shape, int max_splits);
void latent_attention(const float* q_abs, int T, const void* cache, const int32_t* pos0, const LatentShape& shape,
                      int max_splits, float* workspace, float* out, const AttentionStats* stats, cudaStream_t stream);

// latent: [T][n_heads][kv_lora]; out: [T][n_heads · v_dim], head h's values W_UV_h · latent[t][h].
void latent_expand_values(const float* latent, int T, const DeviceMatrix& kv_b, const LatentShape& shape, float* out,
                          cudaStream_t stream);

}  // namespace moe::cuda
