// GPT-OSS (gpt_oss): GQA with biases on q, k, v and o, rotate-half RoPE with YaRN (truncate false in the
// release), a learned sink logit per head in every softmax, and layers that alternate a sliding window
// (layer_types "sliding_attention": the last sliding_window tokens) with full causal attention. Every
// layer is MoE: a router with a bias, top-k of its logits and a softmax over those k (the renormalised
// softmax over all experts, the same weights); experts stacked input-major with gate and up columns
// interleaved, biases on all three projections, and a clamped gate: out = (clamp(up, ±limit) + 1) ·
// g · σ(1.702 · g), g = min(gate, limit). transformers' modeling_gpt_oss.py. The release stores those experts
// in MXFP4 (transformers' integrations/mxfp4.py), which the loader reads in place (model.cpp).
#include "engine/formats/json_file.h"
#include "engine/model/families.h"

namespace moe {

namespace {

// layer_types, or transformers' default when it is absent: sliding on even layers, full on odd ones.
std::vector<int> read_layer_windows(const JsonFields& c, int n_layers, int window) {
  std::vector<int> out(size_t(n_layers), 0);
  if (!c.has("layer_types")) {
    for (int l = 0; l < n_layers; l += 2) out[size_t(l)] = window;
    return out;
  }
  const auto& types = c.raw()["layer_types"];
  if (!types.is_array() || types.size() != size_t(n_layers))
    throw EngineError(c.file(), "layer_types", "expected a list of " + std::to_string(n_layers) + " layer types");
  for (int l = 0; l < n_layers; ++l) {
    const auto& t = types[size_t(l)];
    const std::string type = t.is_string() ? t.get<std::string>() : "";
    if (type == "sliding_attention") out[size_t(l)] = window;
    else if (type != "full_attention")
      throw EngineError(c.file(), "layer_types[" + std::to_string(l) + "]",
                        "expected 'sliding_attention' or 'full_attention', got " + describe_json(t));
  }
  return out;
}

}  // namespace

FamilyAdapter gpt_oss_family() {
  FamilyAdapter f;
  f.model_type = "gpt_oss";
  f.display_name = "GPT-OSS";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    s.attn.qkv_bias = s.attn.o_bias = c.boolean_or("attention_bias", true);  // GptOssConfig's default
    s.attn.sinks = true;
    const int64_t window = c.integer_or("sliding_window", 128);
    if (window < 1 || window > (int64_t(1) << 30))
      throw EngineError(c.file(), "sliding_window", "must be a positive number of tokens, got " + std::to_string(window));
    s.layer_window = read_layer_windows(c, s.n_layers, int(window));
    auto& M = s.moe;
    M.n_experts = int(c.integer("num_local_experts"));
    M.top_k = int(c.has("num_experts_per_tok") ? c.integer("num_experts_per_tok") : c.integer("experts_per_token"));
    M.expert_ffn = int(c.integer("intermediate_size"));  // per-expert width
    M.renormalize = true;  // softmax over the top-k logits
    M.router_logit_bias = true;
    M.expert_bias = true;
    M.glu_limit = float(c.number_or("swiglu_limit", 7.0));
    M.glu_alpha = float(c.number_or("swiglu_alpha", 1.702));
    if (!(M.glu_limit > 0)) throw EngineError(c.file(), "swiglu_limit", "must be positive");
    s.layer_is_moe.assign(s.n_layers, true);
    if (M.experts_mxfp4 && (s.hidden % 32 || M.expert_ffn % 32))
      throw EngineError(c.file(), s.hidden % 32 ? "hidden_size" : "intermediate_size",
                        "MXFP4 experts need widths that are multiples of 32 (blocks of 32 values)");
  };
  auto& n = f.names;
  n.q_norm = n.k_norm = "";
  n.router = "model.layers.{L}.mlp.router.weight";
  n.router_logit_bias = "model.layers.{L}.mlp.router.bias";
  n.expert_gate = n.expert_up = n.expert_down = "";
  n.stacked_transposed = true;
  n.shared_gate_proj = n.shared_up_proj = n.shared_down_proj = n.shared_expert_gate = "";
  n.mlp_gate = n.mlp_up = n.mlp_down = "";
  return f;
}

}  // namespace moe
