// GLM-4.5 / GLM-4.5-Air (glm4_moe): GQA with q/k/v biases (attention_bias) and optional per-head q/k
// norm (use_qk_norm), rotate-half RoPE over the first half of each head (partial_rotary_factor 0.5), the
// first first_k_dense_replace layers dense, then a sigmoid router with a selection-only correction bias
// (e_score_correction_bias), group-limited selection by the sum of each group's two best biased scores,
// renormalised unbiased weights × routed_scaling_factor, and an ungated shared expert of width
// n_shared_experts × moe_intermediate_size (transformers' modeling_glm4_moe.py; the router is
// DeepSeek-V3's noaux_tc, SPECS.md §7). The multi-token-prediction layers stored after the last layer
// (num_nextn_predict_layers) are not part of the forward pass and are left unread.
#include "engine/model/families.h"

namespace moe {

FamilyAdapter glm4_moe_family() {
  FamilyAdapter f;
  f.model_type = "glm4_moe";
  f.display_name = "GLM-4.5";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    s.attn.o_bias = false;  // attention_bias covers q, k and v only
    if (c.boolean_or("use_qk_norm", false)) s.attn.qk_norm = QkNorm::PerHead;
    auto& M = s.moe;
    M.n_experts = int(c.has("n_routed_experts") ? c.integer("n_routed_experts") : c.integer("num_local_experts"));
    M.top_k = int(c.integer("num_experts_per_tok"));
    M.expert_ffn = int(c.integer("moe_intermediate_size"));
    M.renormalize = c.boolean_or("norm_topk_prob", true);
    M.score = RouterScore::Sigmoid;
    M.selection_bias = true;
    M.routed_scale = float(c.number_or("routed_scaling_factor", 1.0));
    M.n_group = int(c.integer_or("n_group", 1));
    M.topk_group = int(c.integer_or("topk_group", 1));
    M.group_score = GroupScore::TopTwoSum;
    const int64_t n_shared = c.integer_or("n_shared_experts", 1);
    if (n_shared < 0) throw EngineError(c.file(), "n_shared_experts", "must not be negative");
    M.shared_ffn = int(n_shared) * M.expert_ffn;
    const int64_t first_dense = c.integer_or("first_k_dense_replace", 1);
    if (first_dense < 0) throw EngineError(c.file(), "first_k_dense_replace", "must not be negative");
    for (int l = 0; l < s.n_layers; ++l) s.layer_is_moe[size_t(l)] = M.n_experts > 0 && l >= first_dense;
  };
  name_shared_experts(f.names);
  return f;
}

}  // namespace moe
