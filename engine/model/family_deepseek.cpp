// DeepSeek-V2 / V2-Lite (deepseek_v2) and DeepSeek-V3 / Kimi K2 (deepseek_v3): multi-head latent
// attention (SPECS.md §6.3–6.4) with interleaved RoPE on the last qk_rope_head_dim dims of each head and,
// under YaRN, a softmax scale times get_mscale(factor, mscale_all_dim)²; the first first_k_dense_replace
// layers dense, then routed experts plus an ungated shared MLP of width n_shared_experts ×
// moe_intermediate_size under the plural name shared_experts.
//   V2 router (§6.5): softmax; "greedy" top-k, or "group_limited_greedy" within the topk_group groups
//   with the best maximum; the weights × routed_scaling_factor and never renormalised (transformers'
//   DeepseekV2TopkRouter ignores norm_topk_prob, which every V2 checkpoint sets false).
//   V3 router (§7): DeepSeek's noaux_tc, as GLM-4.5's: sigmoid, a selection-only correction bias,
//   groups scored by their two best, renormalised (norm_topk_prob) × routed_scaling_factor.
// The multi-token-prediction layer stored after the last one (model.layers.61 in V3) is left unread.
#include "engine/model/families.h"
#include "engine/model/rope_frequencies.h"

namespace moe {

namespace {

int positive_field(const JsonFields& c, const char* key) {
  const int64_t v = c.integer(key);
  if (v <= 0 || v > (int64_t(1) << 24)) throw EngineError(c.file(), key, "must be a positive integer, got " + std::to_string(v));
  return int(v);
}

void read_mla(const JsonFields& c, ModelSpec& s, bool interleaved) {
  auto& A = s.attn;
  auto& m = A.mla;
  m.kv_lora_rank = positive_field(c, "kv_lora_rank");
  m.q_lora_rank = c.has("q_lora_rank") ? positive_field(c, "q_lora_rank") : 0;  // null: a plain q_proj
  m.qk_nope_dim = positive_field(c, "qk_nope_head_dim");
  m.v_head_dim = positive_field(c, "v_head_dim");
  const int rope = positive_field(c, "qk_rope_head_dim");
  if (rope % 2) throw EngineError(c.file(), "qk_rope_head_dim", "must be even for RoPE");
  A.n_kv_heads = A.n_heads;  // num_key_value_heads means nothing to MLA: k_pe is shared, the latent expands per head
  A.head_dim = m.qk_nope_dim + rope;
  A.rotary_dim = rope;
  A.rope_offset = m.qk_nope_dim;
  A.rope_style = interleaved ? RopeStyle::Interleaved : RopeStyle::RotateHalf;
  A.qk_norm = QkNorm::None;
  // The scale is that of qk_head_dim, also in the absorbed form; YaRN multiplies it by mscale² (§6.3).
  double scale = 1.0 / std::sqrt(double(A.head_dim));
  if (A.yarn.factor > 0 && A.yarn.mscale_all_dim != 0) {
    const double mscale = yarn_get_mscale(A.yarn.factor, A.yarn.mscale_all_dim);
    scale *= mscale * mscale;
  }
  A.softmax_scale = float(scale);
  if (c.boolean_or("mlp_bias", false)) throw EngineError(c.file(), "mlp_bias", "MLP biases are not supported");
}

// Experts, shared experts and which layers are MoE; the router's scoring is set by the caller.
void read_deepseek_moe(const JsonFields& c, ModelSpec& s, int64_t default_shared, int64_t default_first_dense) {
  auto& M = s.moe;
  M.n_experts = c.has("n_routed_experts") ? int(c.integer("n_routed_experts")) : 0;  // null: a dense model
  if (M.n_experts < 0) throw EngineError(c.file(), "n_routed_experts", "must not be negative");
  if (M.n_experts == 0) return;
  M.top_k = int(c.integer("num_experts_per_tok"));
  M.expert_ffn = int(c.integer("moe_intermediate_size"));
  M.routed_scale = float(c.number_or("routed_scaling_factor", 1.0));
  const int64_t n_shared = c.integer_or("n_shared_experts", default_shared);
  if (n_shared < 0) throw EngineError(c.file(), "n_shared_experts", "must not be negative");
  M.shared_ffn = int(n_shared) * M.expert_ffn;
  const int64_t first_dense = c.integer_or("first_k_dense_replace", default_first_dense);
  if (first_dense < 0) throw EngineError(c.file(), "first_k_dense_replace", "must not be negative");
  // moe_layer_freq is 1 in every released checkpoint; the original code keeps layer l MoE only when
  // l % moe_layer_freq == 0 (transformers does not read it).
  const int64_t freq = c.integer_or("moe_layer_freq", 1);
  if (freq <= 0) throw EngineError(c.file(), "moe_layer_freq", "must be positive");
  for (int l = 0; l < s.n_layers; ++l) s.layer_is_moe[size_t(l)] = l >= first_dense && l % freq == 0;
}

}  // namespace

void name_shared_experts(TensorNaming& n) {
  n.shared_gate_proj = "model.layers.{L}.mlp.shared_experts.gate_proj.weight";
  n.shared_up_proj = "model.layers.{L}.mlp.shared_experts.up_proj.weight";
  n.shared_down_proj = "model.layers.{L}.mlp.shared_experts.down_proj.weight";
  n.shared_expert_gate = "";
}

FamilyAdapter deepseek_v2_family() {
  FamilyAdapter f;
  f.model_type = "deepseek_v2";
  f.display_name = "DeepSeek-V2";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    read_mla(c, s, /*interleaved=*/true);  // V2 rotates complex pairs (view_as_complex)
    read_deepseek_moe(c, s, 2, 0);
    auto& M = s.moe;
    if (M.n_experts == 0) return;
    M.score = RouterScore::Softmax;
    M.renormalize = false;
    const std::string method = c.string_or("topk_method", "greedy");
    if (method == "group_limited_greedy") {
      M.n_group = int(c.integer("n_group"));
      M.topk_group = int(c.integer("topk_group"));
      M.group_score = GroupScore::Max;
    } else if (method != "greedy") {
      throw EngineError(c.file(), "topk_method",
                        "'" + method + "' is not a DeepSeek-V2 router (greedy or group_limited_greedy)");
    }
  };
  name_shared_experts(f.names);
  return f;
}

FamilyAdapter deepseek_v3_family() {
  FamilyAdapter f;
  f.model_type = "deepseek_v3";
  f.display_name = "DeepSeek-V3";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    read_mla(c, s, c.boolean_or("rope_interleave", true));
    read_deepseek_moe(c, s, 1, 3);
    auto& M = s.moe;
    if (M.n_experts == 0) return;
    M.score = RouterScore::Sigmoid;
    M.selection_bias = true;
    M.renormalize = c.boolean_or("norm_topk_prob", true);
    M.n_group = int(c.integer_or("n_group", 8));
    M.topk_group = int(c.integer_or("topk_group", 4));
    M.group_score = GroupScore::TopTwoSum;
  };
  name_shared_experts(f.names);
  return f;
}

}  // namespace moe
