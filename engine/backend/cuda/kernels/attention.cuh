#pragma once
// Causal GQA attention over this layer's KV cache, with the per-head statistics the hooks ask for
// (attn.stats) computed from the online-softmax sums, and single full rows (attn.rows).
//
// Statistics of one (token, head) row with weights w_j = e^(s_j − m) / S over keys j ≤ pos:
//   entropy = log S − Σ e^(s_j − m)(s_j − m) / S   (nats; clamped at 0)
//   max weight = 1 / S;  first-token mass = w_0;  top-k mass = sum of the k largest w_j (k ≤ kMaxStatsTopK)
// and their forms with a sliding window and an attention sink (AttentionShape; online_softmax.h).
// online_softmax.h holds the running state and its merge, shared with the host tests.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "engine/common/dtype.h"

namespace moe::cuda {

constexpr int kMaxStatsTopK = 32;

struct AttentionShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;  // head_dim ≤ 256
  int capacity = 0;                                // rows of each cache
  DType kv_dtype = DType::F32;                     // F32 or BF16
  float scale = 0;                                 // 1 / sqrt(head_dim)
  // Prefill only: Q·Kᵀ and P·V on the tensor cores, where head_dim is a multiple of 16 and at most 128,
  // with q, K, P and V rounded to TF32 (10-bit mantissa) and F32 accumulation. For BF16/F16 models; F32
  // models keep F32 products. Two kernels:
  //   - where head_dim is 16, 32, 64 or 128 and prefill_mma is set, one that keeps its tiles in
  //     registers (attention_prefill_mma.cuh). When statistics are asked for, the other computes them
  //     first and this one still writes the outputs, so the outputs do not depend on the hook level;
  //   - otherwise WMMA tiles through shared memory, statistics included.
  bool tensor_cores = false;
  bool prefill_mma = true;  // MOE_CUDA_MMA_ATTENTION=0 clears it (CudaBackend): the WMMA kernel throughout
  // GPT-OSS, per layer (CudaBackend sets them for each layer's call):
  //   window > 0: a sliding-window layer, where the query at position p sees only keys p − window + 1 … p
  //     (their statistics too: n_keys is what the query sees, and key 0 out of sight has mass 0);
  //   sinks (device, [n_heads]): each head's sink logit, which joins the softmax denominator and weighs
  //     no value, so a row's weights sum to less than 1 (online_softmax.h gives the statistics).
  int window = 0;
  const float* sinks = nullptr;
};

// Where the statistics go (device pointers already offset to this layer): the value of (token t,
// head h) is at ptr[t · token_stride + h]. A null AttentionStats* means none are asked for.
struct AttentionStats {
  float* entropy = nullptr;
  float* max_weight = nullptr;
  float* topk_mass = nullptr;
  float* first_mass = nullptr;
  int topk = 8;               // 1 … kMaxStatsTopK
  int64_t token_stride = 0;   // n_layers · n_heads in the StepRecord layout
};

// Decode: one query token at position pos0[0] (keys 0 … pos0[0], already in the cache). q: [nh·hd],
// out: [nh·hd]. Split-K: the context is cut into at most max_splits slices per KV head, each slice's
// partial (max, sums, top-k, weighted values) goes to workspace, and a second kernel merges them. The
// grid depends only on (shape, max_splits), never on the position, so a CUDA graph replays it.
size_t attention_decode_workspace_floats(const AttentionShape& shape, int max_splits);
void attention_decode(const float* q, const void* k_cache, const void* v_cache, const int32_t* pos0,
                      const AttentionShape& shape, int max_splits, float* workspace, float* out,
                      const AttentionStats* stats, cudaStream_t stream);

// Prefill: T query tokens, token t at position pos0[0] + t attending to keys 0 … pos0[0] + t (the cache
// already holds them). q row t at q + t·q_stride; out: [T][nh·hd]. Tiled: a block takes a tile of
// query tokens of one head and walks the key tiles up to its last token through shared memory.
void attention_prefill(const float* q, int64_t q_stride, int T, const void* k_cache, const void* v_cache,
                       const int32_t* pos0, const AttentionShape& shape, float* out, const AttentionStats* stats,
                       cudaStream_t stream);

// One full row of attention weights (attn.rows): head `head` of the query q_token ([nh·hd], already
// rotated) at position pos0[0] + t, over keys 0 … pos0[0] + t, written to out_row[0 … pos0[0] + t]. One
// block; exact softmax (max, exp, sum, divide). head_dim up to 1024 here: the latent attention's rows
// (attention_latent.cuh) are this with one KV head of kv_lora + rope values.
void attention_row(const float* q_token, const void* k_cache, const int32_t* pos0, int t, int head,
                   const AttentionShape& shape, float* out_row, cudaStream_t stream);

}  // namespace moe::cuda
