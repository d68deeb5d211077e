// OLMoE: q_norm/k_norm are RMSNorms over the whole q and k projections (before the head reshape and
// RoPE), optional clip_qkv, softmax router without renormalisation by default (SPECS.md §5).
#include "engine/model/families.h"

namespace moe {

FamilyAdapter olmoe_family() {
  FamilyAdapter f;
  f.model_type = "olmoe";
  f.display_name = "OLMoE";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    s.attn.qk_norm = QkNorm::WholeProjection;
    s.attn.clip_qkv = float(c.number_or("clip_qkv", 0.0));
    s.moe.n_experts = int(c.integer("num_experts"));
    s.moe.top_k = int(c.integer("num_experts_per_tok"));
    s.moe.expert_ffn = int(c.integer("intermediate_size"));  // per-expert width
    s.moe.renormalize = c.boolean_or("norm_topk_prob", false);
    s.layer_is_moe.assign(s.n_layers, true);
  };
  return f;
}

}  // namespace moe
