#pragma once
// A family adapter: how one model_type's config.json maps onto ModelSpec, and what its tensors are
// called. Adding a family is one short file (family_*.cpp) and one line in the registry; the forward
// pass and the backends do not change (DESIGN.md: "the model description is data").
#include <functional>
#include <string>
#include <vector>

#include "engine/formats/json_file.h"
#include "engine/model/model_spec.h"

namespace moe {

// Tensor name patterns; "{L}" is the layer index and "{E}" the expert index. Empty = not in this family.
struct TensorNaming {
  std::string embed = "model.embed_tokens.weight";
  std::string final_norm = "model.norm.weight";
  std::string lm_head = "lm_head.weight";
  std::string attn_norm = "model.layers.{L}.input_layernorm.weight";
  std::string ffn_norm = "model.layers.{L}.post_attention_layernorm.weight";
  // Projections without the ".weight"/".bias" suffix.
  std::string q = "model.layers.{L}.self_attn.q_proj";
  std::string k = "model.layers.{L}.self_attn.k_proj";
  std::string v = "model.layers.{L}.self_attn.v_proj";
  std::string o = "model.layers.{L}.self_attn.o_proj";
  std::string q_norm = "model.layers.{L}.self_attn.q_norm.weight";
  std::string k_norm = "model.layers.{L}.self_attn.k_norm.weight";
  std::string sinks = "model.layers.{L}.self_attn.sinks";  // read when the spec has sinks
  // Multi-head latent attention (read when the spec is MLA), without the ".weight"/".bias" suffix;
  // q is q_proj without q-LoRA.
  std::string q_a = "model.layers.{L}.self_attn.q_a_proj";
  std::string q_a_norm = "model.layers.{L}.self_attn.q_a_layernorm.weight";
  std::string q_b = "model.layers.{L}.self_attn.q_b_proj";
  std::string kv_a = "model.layers.{L}.self_attn.kv_a_proj_with_mqa";
  std::string kv_a_norm = "model.layers.{L}.self_attn.kv_a_layernorm.weight";
  std::string kv_b = "model.layers.{L}.self_attn.kv_b_proj";
  std::string router = "model.layers.{L}.mlp.gate.weight";
  // The router's selection-only bias [n_experts] (F32), read when the spec says it has one.
  std::string router_bias = "model.layers.{L}.mlp.gate.e_score_correction_bias";
  // The router layer's bias [n_experts], read when the spec says it has one (GPT-OSS).
  std::string router_logit_bias = "model.layers.{L}.mlp.gate.bias";
  // Routed experts, one tensor per expert (the layout checkpoints are saved in) ...
  std::string expert_gate = "model.layers.{L}.mlp.experts.{E}.gate_proj.weight";
  std::string expert_up = "model.layers.{L}.mlp.experts.{E}.up_proj.weight";
  std::string expert_down = "model.layers.{L}.mlp.experts.{E}.down_proj.weight";
  // ... or stacked: gate_up [E, 2·I, H] (gate rows first) and down [E, H, I] ...
  std::string experts_gate_up = "model.layers.{L}.mlp.experts.gate_up_proj";
  std::string experts_down = "model.layers.{L}.mlp.experts.down_proj";
  // ... or stacked apart, as GGUF files hold them: gate [E, I, H] and up [E, I, H] (down as above).
  // Empty in the Hugging Face namings.
  std::string experts_gate;
  std::string experts_up;
  // ... or, with stacked_transposed, GPT-OSS's: gate_up [E, H, 2·I] with gate and up columns
  // interleaved (gate = [..., 0::2], up = [..., 1::2]) and down [E, I, H], both input-major. The loader
  // copies them into the engine's row-major [out, in] matrices. The biases are [E, 2·I] (interleaved
  // likewise) and [E, H], read when the spec has expert biases.
  bool stacked_transposed = false;
  std::string experts_gate_up_bias = "model.layers.{L}.mlp.experts.gate_up_proj_bias";
  std::string experts_down_bias = "model.layers.{L}.mlp.experts.down_proj_bias";
  // ... or the gate and up biases apart, [E, I] each, as GGUF files hold them (empty in HF namings).
  std::string experts_gate_bias;
  std::string experts_up_bias;
  std::string shared_gate_proj = "model.layers.{L}.mlp.shared_expert.gate_proj.weight";
  std::string shared_up_proj = "model.layers.{L}.mlp.shared_expert.up_proj.weight";
  std::string shared_down_proj = "model.layers.{L}.mlp.shared_expert.down_proj.weight";
  std::string shared_expert_gate = "model.layers.{L}.mlp.shared_expert_gate.weight";
  std::string mlp_gate = "model.layers.{L}.mlp.gate_proj.weight";
  std::string mlp_up = "model.layers.{L}.mlp.up_proj.weight";
  std::string mlp_down = "model.layers.{L}.mlp.down_proj.weight";
};

struct FamilyAdapter {
  std::string model_type;    // config.json "model_type"
  std::string display_name;  // "Qwen3-MoE"
  // Reads the family-specific fields. The common ones (sizes, heads, eps, rope, vocab, tying) are
  // already in spec; this sets attention details, MoE settings and spec.layer_is_moe.
  std::function<void(const JsonFields& config, ModelSpec& spec)> read_config;
  TensorNaming names;
};

// The family for a model_type, or nullptr.
const FamilyAdapter* find_family(const std::string& model_type);
// Every model_type we support, for error messages and --help.
std::vector<std::string> supported_model_types();

// Reads the fields every family shares (hidden_size, layers, heads, head_dim, vocab, eps, rope, tying)
// and dispatches to the family adapter. Throws EngineError naming config.json and the field.
ModelSpec read_model_spec(const JsonFields& config);

// Replaces "{L}" and "{E}" in a pattern.
std::string tensor_name(const std::string& pattern, int layer, int expert = -1);

}  // namespace moe
