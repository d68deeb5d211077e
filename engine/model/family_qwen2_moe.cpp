// Qwen2-MoE (Qwen1.5-MoE-A2.7B): q/k/v biases, softmax router without renormalisation by default, and a
// shared expert scaled by sigmoid(shared_expert_gate · x) (SPECS.md §3).
#include "engine/model/families.h"

namespace moe {

FamilyAdapter qwen2_moe_family() {
  FamilyAdapter f;
  f.model_type = "qwen2_moe";
  f.display_name = "Qwen2-MoE";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    s.moe.n_experts = int(c.has("num_experts") ? c.integer("num_experts") : c.integer("num_local_experts"));
    s.moe.top_k = int(c.integer("num_experts_per_tok"));
    s.moe.expert_ffn = int(c.integer("moe_intermediate_size"));
    s.moe.renormalize = c.boolean_or("norm_topk_prob", false);
    s.attn.qkv_bias = c.boolean_or("qkv_bias", true);  // o_proj never has one
    s.attn.o_bias = false;
    s.moe.shared_ffn = int(c.integer_or("shared_expert_intermediate_size", 0));
    s.moe.shared_gate = s.moe.shared_ffn > 0;
    s.layer_is_moe = qwen_moe_layers(c, s.n_layers, s.moe.n_experts);
  };
  return f;
}

}  // namespace moe
