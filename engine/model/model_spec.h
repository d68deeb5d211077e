#pragma once
// One architecture-neutral description of a decoder-only (MoE) transformer. Every family adapter maps a
// config.json onto it; the forward pass is written once against it (DESIGN.md, SPECS.md §0).
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moe {

enum class RopeStyle { RotateHalf, Interleaved };  // NeoX pairs (j, j+d/2) vs adjacent pairs (2i, 2i+1)
enum class QkNorm { None, PerHead, WholeProjection };  // Qwen3: per head over head_dim; OLMoE: over nh·hd
enum class RouterScore { Softmax, Sigmoid };
// Group-limited selection (SPECS.md §6.5, §7): how a group of experts is scored before the best
// topk_group groups are kept. Max: its best score (DeepSeek-V2 group_limited_greedy); TopTwoSum: the sum
// of its two best biased scores (DeepSeek-V3 noaux_tc, GLM-4.5).
enum class GroupScore { Max, TopTwoSum };

// YaRN (SPECS.md §1.4): interpolated RoPE frequencies for a context past the pretraining length.
struct YarnSpec {
  double factor = 0;           // s; 0 = no YaRN (plain RoPE)
  int original_max_positions = 0;  // L0, the pretraining context
  double beta_fast = 32, beta_slow = 1;
  bool truncate = true;        // floor/ceil the correction range (HF's default)
  double mscale_all_dim = 0;   // DeepSeek: the softmax scale is multiplied by get_mscale(s, this)²
};

// Multi-head latent attention (DeepSeek-V2/V3, SPECS.md §6.3–6.4). Each head's query and key are
// [nope ; rope] (head_dim = qk_nope_dim + rotary_dim, RoPE on the last rotary_dim dims); keys and values
// come from a per-token latent c (kv_lora_rank wide) through kv_b_proj, and k_pe is one RoPE'd head
// shared by all heads. The cache holds only [c ; k_pe] per token and layer (the absorbed form).
struct MlaSpec {
  int q_lora_rank = 0;         // 0: a plain q_proj (V2-Lite); else q_a_proj → norm → q_b_proj
  int kv_lora_rank = 0;        // 0: not MLA
  int qk_nope_dim = 0;         // per head, the part of q and k without RoPE
  int v_head_dim = 0;          // per head, the value width
};

struct AttentionSpec {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;            // from config (Qwen3: nh·hd may differ from hidden); MLA: nope + rope
  bool qkv_bias = false;       // Qwen2-MoE: q/k/v have biases (read from the tensors present)
  bool o_bias = false;
  QkNorm qk_norm = QkNorm::None;
  float clip_qkv = 0.0f;       // OLMoE: clamp q, k, v to ±clip after the norms; 0 = off
  RopeStyle rope_style = RopeStyle::RotateHalf;
  double rope_theta = 10000.0;
  int rotary_dim = 0;          // dims of each head that RoPE rotates (head_dim unless partial)
  int rope_offset = 0;         // the first rotated dim of each head (MLA: after the nope part)
  YarnSpec yarn;
  float rope_attention_factor = 1.0f;  // YaRN: multiplies cos and sin (1 for plain RoPE)
  float softmax_scale = 0;     // the q·k scale; 0 means 1/sqrt(head_dim)
  // GPT-OSS: a learned logit per head (self_attn.sinks) joins every row's softmax denominator and
  // attends to nothing, so a head's weights over the tokens may sum to less than 1.
  bool sinks = false;
  MlaSpec mla;
  bool is_mla() const { return mla.kv_lora_rank > 0; }
  float scale() const { return softmax_scale > 0 ? softmax_scale : 1.0f / std::sqrt(float(head_dim)); }
};

struct MoeSpec {
  int n_experts = 0;           // routed experts (0: dense model)
  int top_k = 0;
  int expert_ffn = 0;          // width of one routed expert
  bool renormalize = false;    // divide the top-k weights by their sum (norm_topk_prob; Mixtral always)
  RouterScore score = RouterScore::Softmax;
  float routed_scale = 1.0f;   // multiplies the routed weights after selection
  bool selection_bias = false; // a per-expert bias added to the scores for selection only (not the weights)
  int n_group = 1;             // experts split into n_group equal groups (1: no group limit)
  int topk_group = 1;          // groups whose experts may be selected (≤ n_group)
  GroupScore group_score = GroupScore::TopTwoSum;
  bool group_limited() const { return n_group > 1 && topk_group < n_group; }
  int shared_ffn = 0;          // width of the shared expert (0: none)
  bool shared_gate = false;    // Qwen2-MoE: shared output × sigmoid(w·x)
  // GPT-OSS: the router's linear layer has a bias, added to the logits (so it moves the weights too,
  // unlike selection_bias).
  bool router_logit_bias = false;
  // GPT-OSS: every routed expert's gate, up and down projections have biases.
  bool expert_bias = false;
  // GPT-OSS's clamped gate (0: the plain silu(gate)·up): gate ≤ limit, up in ±limit, and
  // out = (up + 1) · gate · σ(alpha · gate).
  float glu_limit = 0;
  float glu_alpha = 1.702f;
  // GPT-OSS's release: the routed experts are MXFP4 (quantization_config.quant_method "mxfp4"), stored as
  // blocks of 32 FP4 values with a shared power-of-two scale; the loader expands them to BF16, exactly.
  bool experts_mxfp4 = false;
};

struct ModelSpec {
  std::string model_type;      // config.json model_type, e.g. "qwen3_moe"
  std::string family;          // display name, e.g. "Qwen3-MoE"
  int hidden = 0;
  int n_layers = 0;
  int vocab_size = 0;          // rows of the embedding / logits (may be padded past the tokenizer)
  int dense_ffn = 0;           // intermediate_size of dense MLP layers
  int max_positions = 0;
  float rms_eps = 1e-6f;
  bool tied_embeddings = false;
  std::string torch_dtype;     // as declared in config.json
  AttentionSpec attn;
  MoeSpec moe;
  std::vector<bool> layer_is_moe;  // per layer: routed experts (true) or a dense MLP (false)
  // Per layer, the keys a query sees: 0 = every earlier token (causal); W = only the last W tokens, its
  // own included (GPT-OSS's sliding_attention layers, as transformers masks them: key > query − W).
  // Empty: every layer is causal.
  std::vector<int> layer_window;
  std::optional<int32_t> bos_id;
  std::vector<int32_t> eos_ids;    // config.json's eos_token_id (generation_config adds more)
  // A fine-grained FP8 checkpoint (quantization_config.quant_method "fp8", engine/common/fp8.h): the tile one
  // weight_scale_inv scale covers (weight_block_size, rows × columns); 0 × 0 for any other checkpoint. Which
  // matrices are FP8 is the checkpoint's to say: each F8_E4M3 weight, with its scales beside it.
  int fp8_tile_rows = 0, fp8_tile_cols = 0;
  // Integer weights packed into I32 words, and their layout; which matrices are packed, their bits, their group
  // size and their zero points, each weight's tensors say.
  //   CompressedTensors: quant_method "compressed-tensors", format "pack-quantized" (engine/common/packed_int.h):
  //                      `<name>.weight_packed` and `<name>.weight_scale` where `<name>.weight` would be.
  //   GptqV1, GptqV2:    quant_method "gptq", checkpoint_format "gptq" (zero points stored less 1) or "gptq_v2"
  //                      (engine/common/quant_linear.h): `<module>.qweight`, `.qzeros`, `.scales`, `.g_idx`.
  //   Awq:               quant_method "awq", version "gemm": `<module>.qweight`, `.qzeros`, `.scales`.
  enum class PackedInts { None, CompressedTensors, GptqV1, GptqV2, Awq };
  PackedInts packed_int = PackedInts::None;
  // CompressedTensors with every scheme asymmetric (symmetric: false): each packed weight must have its zero points.
  // (Which scheme covers which weight is not read, so with schemes of both kinds the tensors alone say.)
  bool packed_int_asymmetric = false;

  bool is_moe() const { return moe.n_experts > 0; }
  int window(int layer) const { return layer_window.empty() ? 0 : layer_window[size_t(layer)]; }
  int n_moe_layers() const {
    int n = 0;
    for (bool b : layer_is_moe) n += b;
    return n;
  }
  int q_dim() const { return attn.n_heads * attn.head_dim; }
  // One cache row per token and layer for K (and one for V, except with MLA): MLA caches [c ; k_pe].
  int kv_dim() const { return attn.is_mla() ? attn.mla.kv_lora_rank + attn.rotary_dim : attn.n_kv_heads * attn.head_dim; }
  int kv_rows_per_token() const { return attn.is_mla() ? 1 : 2; }  // cache rows per token and layer
  // The attention output that o_proj reads: nh·v_head_dim with MLA.
  int attn_out_dim() const { return attn.is_mla() ? attn.n_heads * attn.mla.v_head_dim : q_dim(); }
};

// Parameter counts and memory, computed from the spec alone (so they work for synthetic shapes).
struct ModelSize {
  int64_t total_params = 0;
  int64_t active_params = 0;      // per token: everything but the routed experts not selected (the
                                  // convention of the published "A3B" numbers: embeddings counted)
  int64_t embedding_params = 0;
  int64_t attention_params = 0;
  int64_t routed_expert_params = 0;
  int64_t shared_expert_params = 0;
  int64_t dense_mlp_params = 0;
  int64_t router_params = 0;
  int64_t norm_params = 0;
  int64_t lm_head_params = 0;     // 0 when tied
  int64_t kv_values_per_token = 0;  // K and V over all layers
};
ModelSize compute_model_size(const ModelSpec& spec);

}  // namespace moe
