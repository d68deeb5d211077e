// Qwen3-MoE (Qwen3-30B-A3B, Tongyi DeepResearch) and dense Qwen3: q/k RMSNorm per head before RoPE,
// rotate-half RoPE, softmax router with the norm_topk_prob flag (SPECS.md §2).
#include "engine/model/families.h"

namespace moe {

std::vector<bool> qwen_moe_layers(const JsonFields& c, int n_layers, int n_experts) {
  // Layer l is MoE iff l ∉ mlp_only_layers, experts exist and (l+1) % decoder_sparse_step == 0.
  std::vector<bool> moe(n_layers, false);
  const int64_t step = c.integer_or("decoder_sparse_step", 1);
  if (step <= 0) throw EngineError(c.file(), "decoder_sparse_step", "must be positive");
  std::vector<int64_t> dense_only;
  if (c.has("mlp_only_layers")) {
    const auto& j = c.raw()["mlp_only_layers"];
    if (!j.is_array()) throw EngineError(c.file(), "mlp_only_layers", "expected a list of layer indices");
    for (const auto& v : j) {
      if (!v.is_number_integer()) throw EngineError(c.file(), "mlp_only_layers", "expected integers");
      dense_only.push_back(v.get<int64_t>());
    }
  }
  for (int l = 0; l < n_layers; ++l) {
    bool listed = false;
    for (int64_t d : dense_only) listed |= (d == l);
    moe[l] = !listed && n_experts > 0 && (l + 1) % step == 0;
  }
  return moe;
}

FamilyAdapter qwen3_moe_family() {
  FamilyAdapter f;
  f.model_type = "qwen3_moe";
  f.display_name = "Qwen3-MoE";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    s.attn.qk_norm = QkNorm::PerHead;
    // Hub configs say num_experts; transformers 5 writes num_local_experts.
    s.moe.n_experts = int(c.has("num_experts") ? c.integer("num_experts") : c.integer("num_local_experts"));
    s.moe.top_k = int(c.integer("num_experts_per_tok"));
    s.moe.expert_ffn = int(c.integer("moe_intermediate_size"));
    s.moe.renormalize = c.boolean_or("norm_topk_prob", false);
    s.layer_is_moe = qwen_moe_layers(c, s.n_layers, s.moe.n_experts);
  };
  return f;
}

FamilyAdapter qwen3_family() {
  FamilyAdapter f;
  f.model_type = "qwen3";
  f.display_name = "Qwen3";
  f.read_config = [](const JsonFields& c, ModelSpec& s) { s.attn.qk_norm = QkNorm::PerHead; };
  return f;
}

}  // namespace moe
