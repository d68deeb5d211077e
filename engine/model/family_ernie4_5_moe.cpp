// ERNIE-4.5-MoE (ernie4_5_moe): plain GQA with interleaved RoPE (pairs 2i, 2i+1), dense SwiGLU layers
// except where (l + 1) % moe_layer_interval == 0 within [moe_layer_start_index, moe_layer_end_index], and
// there a softmax router whose per-expert bias (moe_statics.e_score_correction_bias, stored [1, E]) is added
// to the probabilities for selection only, the unbiased top-k renormalised, plus an ungated shared MLP of
// moe_num_shared_experts × moe_intermediate_size. Embeddings are tied unless the config says otherwise
// (Ernie4_5_MoeConfig's default). transformers' modeling_ernie4_5_moe.py. The multi-token-prediction
// weights of the release are not part of the forward pass and are left unread.
#include "engine/model/families.h"

namespace moe {

FamilyAdapter ernie4_5_moe_family() {
  FamilyAdapter f;
  f.model_type = "ernie4_5_moe";
  f.display_name = "ERNIE-4.5-MoE";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    if (c.boolean_or("use_bias", false))
      throw EngineError(c.file(), "use_bias", "biases on the MLPs and the LM head are not supported");
    s.tied_embeddings = c.boolean_or("tie_word_embeddings", true);
    s.attn.rope_style = RopeStyle::Interleaved;
    auto& M = s.moe;
    M.n_experts = int(c.integer("moe_num_experts"));
    M.top_k = int(c.integer("moe_k"));
    M.expert_ffn = int(c.integer("moe_intermediate_size"));
    M.renormalize = true;
    M.score = RouterScore::Softmax;
    M.selection_bias = true;
    const int64_t n_shared = c.integer_or("moe_num_shared_experts", 0);
    if (n_shared < 0) throw EngineError(c.file(), "moe_num_shared_experts", "must not be negative");
    M.shared_ffn = int(n_shared) * M.expert_ffn;
    const int64_t start = c.integer_or("moe_layer_start_index", 1), interval = c.integer_or("moe_layer_interval", 1);
    int64_t end = c.integer_or("moe_layer_end_index", -1);
    if (end == -1) end = s.n_layers - 1;
    if (interval < 1) throw EngineError(c.file(), "moe_layer_interval", "must be at least 1");
    for (int l = 0; l < s.n_layers; ++l)
      s.layer_is_moe[size_t(l)] = M.n_experts > 0 && (l + 1) % interval == 0 && l >= start && l <= end;
  };
  name_shared_experts(f.names);
  f.names.router_bias = "model.layers.{L}.mlp.moe_statics.e_score_correction_bias";
  return f;
}

}  // namespace moe
