// MiniMax-M2 (minimax_m2): GQA with q/k RMSNorms over the whole q and k projections (OLMoE's, before the
// head reshape), rotate-half RoPE over the first rotary_dim dims of each head (64 of 128 in the release),
// and every layer MoE: a sigmoid router whose selection-only bias (e_score_correction_bias) sits on the MoE
// block, top-k renormalised, no groups, no shared expert; experts named as Mixtral's (block_sparse_moe,
// w1/w3/w2). transformers' modeling_minimax_m2.py. The multi-token-prediction modules of the release are not
// part of the forward pass and are left unread.
#include "engine/model/families.h"

namespace moe {

FamilyAdapter minimax_m2_family() {
  FamilyAdapter f;
  f.model_type = "minimax_m2";
  f.display_name = "MiniMax-M2";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    s.attn.qk_norm = QkNorm::WholeProjection;  // transformers always applies them (use_qk_norm is not read)
    auto& M = s.moe;
    M.n_experts = int(c.integer("num_local_experts"));
    M.top_k = int(c.integer("num_experts_per_tok"));
    M.expert_ffn = int(c.integer("intermediate_size"));  // per-expert width, as in Mixtral
    M.renormalize = true;
    M.score = RouterScore::Sigmoid;
    M.selection_bias = true;
    if (const int64_t shared = c.integer_or("shared_intermediate_size", 0); shared != 0)
      throw EngineError(c.file(), "shared_intermediate_size",
                        "a shared expert is not part of MiniMax-M2 as transformers runs it (got " +
                            std::to_string(shared) + ")");
    s.layer_is_moe.assign(s.n_layers, true);
  };
  name_mixtral_experts(f.names);
  f.names.router_bias = "model.layers.{L}.block_sparse_moe.e_score_correction_bias";
  return f;
}

}  // namespace moe
