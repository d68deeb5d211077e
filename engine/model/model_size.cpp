#include "engine/model/model_spec.h"

namespace moe {

ModelSize compute_model_size(const ModelSpec& s) {
  ModelSize z;
  const int64_t H = s.hidden;
  const int64_t q = s.q_dim(), kv = s.kv_dim();
  int64_t attn = 0;
  if (s.attn.is_mla()) {
    // q_proj, or q_a + its norm + q_b; kv_a (latent and k_pe) + the latent's norm; kv_b; o_proj.
    const auto& m = s.attn.mla;
    const int64_t ql = m.q_lora_rank, kl = m.kv_lora_rank;
    attn = ql > 0 ? H * ql + ql + ql * q : H * q;
    attn += H * kv + kl + kl * int64_t(s.attn.n_heads) * (m.qk_nope_dim + m.v_head_dim) + int64_t(s.attn_out_dim()) * H;
    if (s.attn.qkv_bias) attn += ql + kv;
  } else {
    attn = H * q + 2 * H * kv + q * H;
    if (s.attn.qkv_bias) attn += q + 2 * kv;
    if (s.attn.qk_norm == QkNorm::PerHead) attn += 2 * s.attn.head_dim;
    if (s.attn.qk_norm == QkNorm::WholeProjection) attn += q + kv;
  }
  if (s.attn.o_bias) attn += H;
  if (s.attn.sinks) attn += s.attn.n_heads;
  const int64_t expert = 3 * H * int64_t(s.moe.expert_ffn) + (s.moe.expert_bias ? 2 * int64_t(s.moe.expert_ffn) + H : 0);
  const int64_t shared = 3 * H * int64_t(s.moe.shared_ffn) + (s.moe.shared_gate ? H : 0);
  const int64_t dense = 3 * H * int64_t(s.dense_ffn);
  const int64_t router = (H + (s.moe.selection_bias ? 1 : 0) + (s.moe.router_logit_bias ? 1 : 0)) * int64_t(s.moe.n_experts);

  z.embedding_params = int64_t(s.vocab_size) * H;
  z.lm_head_params = s.tied_embeddings ? 0 : int64_t(s.vocab_size) * H;
  z.norm_params = H * (2 * int64_t(s.n_layers) + 1);
  int64_t unused_experts = 0;
  for (int l = 0; l < s.n_layers; ++l) {
    z.attention_params += attn;
    if (s.layer_is_moe[l]) {
      z.routed_expert_params += expert * s.moe.n_experts;
      z.shared_expert_params += shared;
      z.router_params += router;
      unused_experts += expert * (s.moe.n_experts - s.moe.top_k);
    } else {
      z.dense_mlp_params += dense;
    }
  }
  z.total_params = z.embedding_params + z.lm_head_params + z.norm_params + z.attention_params +
                   z.routed_expert_params + z.shared_expert_params + z.router_params + z.dense_mlp_params;
  z.active_params = z.total_params - unused_experts;
  z.kv_values_per_token = int64_t(s.kv_rows_per_token()) * kv * s.n_layers;
  return z;
}

}  // namespace moe
