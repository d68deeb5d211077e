#pragma once
// What the CUDA backend will hold on the device for a model, a context and a prefill chunk — computed
// from the spec alone, before anything is loaded (so it works for shapes too large for this machine,
// and on machines without CUDA). The CUDA backend sizes its buffers from the same plan, so the
// estimate and what the allocator then reports agree (weights and KV cache exactly; the small
// kernel workspaces within a few MiB).
#include <cstddef>
#include <string>
#include <vector>

#include <optional>

#include "engine/backend/backend.h"
#include "engine/common/dtype.h"
#include "engine/model/model_spec.h"
#include "engine/model/weights.h"

namespace moe {

// The dtype each part's matrices have on the GPU. Policy: a part whose matrices all share one of F32, F16
// or BF16 keeps it (an F32 router beside BF16 experts stays F32); any other part (MXFP4, GGUF's block
// types such as Q4_K, or a mix of dtypes) is held as BF16, each row expanded on the host as it is
// uploaded; but a part with fine-grained FP8 in it as F32, which holds each FP8 value times its F32 scale
// exactly (BF16 would round them, and the GPU would run another model than the CPU). That is each part's
// fallback; within it, a group of matrices the kernels take together that share one GGML block type keeps
// those blocks, and a group of FP8 matrices in whole-block tiles keeps its bytes (gpu_group_dtype,
// GpuLayerDtypes): every FP8 release's matrices but DeepSeek's kv_b, which the latent kernels read as rows.
struct GpuWeightDtypes {
  DType embeddings = DType::BF16;
  DType head = DType::BF16;            // the embeddings' when tied; else its own group (a Q6_K head stays Q6_K)
  DType attention = DType::BF16;       // q, k, v, o; with latent attention q_a, kv_a, kv_b, o, q_b
  DType router = DType::BF16;
  DType routed_experts = DType::BF16;
  DType shared_experts = DType::BF16;  // with the shared expert's gate
  DType dense_mlp = DType::BF16;
};
// The device dtype of a part stored in one dtype: F32, F16, BF16 stay; F8_E4M3 becomes F32; anything else
// becomes BF16.
DType gpu_weight_dtype(DType stored);
// The policy applied to a model's matrices (the matrices the CUDA backend uploads).
GpuWeightDtypes gpu_weight_dtypes(const ModelSpec& spec, const ModelWeights& weights);

// The device dtype of a group of matrices that one kernel or GEMM takes together (q/k/v of a layer, one
// layer's experts' gate and up, ...): one GGML block type shared by every matrix of the group stays as
// stored — the kernels decode those blocks where they lie (backend/cuda/kernels/block_dot.cuh), so a
// Q4_K_M download takes about its own size on the GPU, not BF16's three times that; anything else takes
// `part`, the part's dtype. (A GGUF file mixes types by tensor — Q4_K_M holds some layers' v and down in Q6_K —
// so the rule is per group, not per part.) A group all in Hugging Face's MXFP4 (GPT-OSS's experts) goes as ggml's
// MXFP4 blocks: the same codes and scales rearranged on upload (mxfp4_to_ggml_blocks), the same bytes, so GPT-OSS's
// experts take a quarter of their BF16 size. A group all in fine-grained FP8 whose rows are whole blocks of 128, each in
// one tile of scales (every release's 128 × 128 tiles), goes as F8_E4M3_B128: each block its bytes as stored and
// its tile's F32 scale (fp8_to_blocks), 3 % more than the file. A group all in packed integers whose groups are
// whole blocks of 32 goes as the blocks packed_int_block_type names: each block its bytes as stored, its group's scale
// and (asymmetric ones) zero point (packed_int_to_blocks). So symmetric 4-bit ones (compressed-tensors' W4A16,
// GPTQ-Int4) take 4.5 bits a weight (PACKED_I4_B32 with BF16 scales, PACKED_I4_F16_B32 with F16), asymmetric ones
// (AWQ's) 5 (PACKED_I4_ZP_…), symmetric 8-bit ones (W8A16, GPTQ-Int8) 8.5 (PACKED_I8_…). Other packed integers
// (narrower groups, asymmetric 8 bits) take the part's dtype: their values are those of their scales' dtype, so a
// part of BF16-scaled ones is BF16, exactly.
DType gpu_group_dtype(const std::vector<const WeightMatrix*>& group, DType part);

// Each group's device dtype in one layer.
struct GpuLayerDtypes {
  DType qkv = DType::BF16;      // q/k/v stacked; latent attention: q_a (or q) with kv_a
  DType o = DType::BF16;
  DType q_b = DType::BF16;      // latent attention with q-LoRA
  DType kv_b = DType::BF16;     // latent attention: always the part's (its kernels read 16-bit rows)
  DType router = DType::BF16;   // always the part's (the fused routing kernel reads plain rows)
  DType expert_gate_up = DType::BF16, expert_down = DType::BF16;  // all experts of the layer
  DType shared_gate_up = DType::BF16, shared_down = DType::BF16, shared_gate = DType::BF16;
  DType mlp_gate_up = DType::BF16, mlp_down = DType::BF16;
  // True when a matrix the dense projections (cuBLAS) take is held in blocks: prefill expands it to BF16
  // in a scratch buffer first.
  bool dense_blocks() const;
};
// Layer l's groups: gpu_group_dtype of each, with parts' dtypes as the fallbacks.
GpuLayerDtypes gpu_layer_dtypes(const ModelSpec& spec, const ModelWeights& weights, const GpuWeightDtypes& parts, int l);
// Every group in its part's dtype (a model known by its spec alone).
GpuLayerDtypes gpu_layer_dtypes(const GpuWeightDtypes& parts);

struct GpuPlanOptions {
  DType weight_dtype = DType::BF16;  // as stored (F32 checkpoints stay F32); one dtype for every part
  int context = 4096;                // KV cache capacity in tokens (clamped to max_positions)
  int prefill_chunk = 64;
  int slots = 0;                     // routing slots per token (0: the model's top-k)
  DType kv_dtype = DType::F32;       // KV cache: F32 (the CPU backend's numbers) or BF16 (half the bytes)
  // Per part, as gpu_weight_dtypes gives them for a loaded model; unset: gpu_weight_dtype(weight_dtype)
  // for every part.
  std::optional<GpuWeightDtypes> part_dtypes = std::nullopt;
  // A loaded model's matrices: each group's dtype as gpu_layer_dtypes gives it (block types kept); null:
  // every group in its part's dtype.
  const ModelWeights* weights = nullptr;
};

// Activation buffers of one forward chunk of T tokens, in elements (F32 unless said otherwise).
struct GpuActivations {
  size_t x = 0, a = 0, y = 0;   // [T, hidden]: residual stream, normed input, block output
  size_t qkv = 0;               // [T, q + 2·kv]; latent attention: [T, (q_lora or q) + kv]
  size_t q_lora = 0;            // latent attention: [T, q_lora], q_a's normed output
  size_t q_heads = 0;           // latent attention with q-LoRA: [T, q], q_b's output
  size_t q_absorbed = 0;        // latent attention: [T, heads·kv], the absorbed queries
  size_t latent_out = 0;        // latent attention: [T, heads·kv_lora], the weighted latents
  size_t attn = 0;              // [T, q] (latent attention: [T, heads·v])
  size_t gemm_in = 0;           // [T, max(hidden, q, ffn, q_lora, heads·v)] in the widest weight dtype: cuBLAS inputs
  size_t gate_up = 0;           // [T, 2·ffn] dense / shared expert
  size_t ffn = 0;               // [T, ffn]
  size_t router_logits = 0;     // [T, E]
  size_t selected = 0;          // [T, slots] int32
  size_t route_weights = 0;     // [T, slots]
  size_t expert_h = 0;          // [T·slots, expert ffn]
  size_t expert_out = 0;        // [T·slots, hidden]
  size_t shared_gate = 0;       // [T]
  size_t logits = 0;            // [T, vocab]
  size_t tokens = 0;            // [T] int32 + the position
  size_t bytes(size_t weight_dtype_size) const;
};

struct GpuMemoryPlan {
  int capacity = 0;                 // KV cache tokens
  int slots = 0;
  size_t weight_dtype_size = 2;     // the widest part's bytes per weight on the device
  size_t kv_dtype_size = 4;         // bytes per cached K or V value
  std::vector<MemoryUse> weights;   // by part (layer −1: all layers together)
  size_t kv_cache_bytes = 0;
  size_t kv_bytes_per_token = 0;
  GpuActivations activations;
  size_t activation_bytes = 0;
  size_t workspace_bytes = 0;       // cuBLAS workspace, attention split-K partials, routing groups, step record,
                                    // the dequantization scratch
  size_t dequant_bytes = 0;         // of which the scratch prefill expands block-typed dense matrices into
  size_t weight_bytes() const;
  size_t total_bytes() const { return weight_bytes() + kv_cache_bytes + activation_bytes + workspace_bytes; }

  // "" when total_bytes() fits in free_bytes; else one line naming what does not fit, e.g.
  // "needs 61.3 GiB (weights 56.9 GiB, KV cache 0.4 GiB for 4096 tokens, ...) but the GPU has 39.2 GiB
  // free: the routed experts alone are 54.0 GiB".
  std::string check_fits(size_t free_bytes) const;
};

// The cuBLAS workspace the backend gives cuBLAS (Hopper wants 32 MiB).
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
// The scratch the dense projections of a prefill chunk expand block-typed weights into (BF16, some rows at
// a time) for cuBLAS; there only when such a matrix is.
constexpr size_t kDequantScratchBytes = size_t(64) << 20;
// Split-K slices of decode attention.
constexpr int kDecodeAttentionSplits = 32;

GpuMemoryPlan plan_gpu_memory(const ModelSpec& spec, const GpuPlanOptions& options);

}  // namespace moe
