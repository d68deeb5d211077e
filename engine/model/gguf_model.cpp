#include "engine/model/gguf_model.h"

#include "engine/common/error.h"

namespace moe {

namespace {

// llama.cpp's architecture names and the model_type each becomes. `llama` is both dense Llama and
// Mixtral (experts present or not).
struct GgufArchitecture {
  const char* arch;
  const char* model_type;
};
constexpr GgufArchitecture kArchitectures[] = {
    {"qwen3moe", "qwen3_moe"}, {"qwen3", "qwen3"}, {"qwen2moe", "qwen2_moe"},
    {"olmoe", "olmoe"},        {"llama", "llama or mixtral"},
};

// The metadata under `{arch}.` keys, with GgufMetadata's typed reads.
class Metadata : public GgufMetadata {
 public:
  Metadata(const GgufFile& g, std::string arch) : GgufMetadata(g), arch_(std::move(arch)) {}
  std::string key(const std::string& suffix) const { return arch_ + "." + suffix; }
  // config[to] = the arch key's value when present.
  void copy_integer(nlohmann::json& config, const char* to, const std::string& suffix) const {
    if (has(key(suffix))) config[to] = integer(key(suffix));
  }

 private:
  std::string arch_;
};

// llama.cpp's tensor names (its convert_hf_to_gguf.py, SPECS.md §11.2): the experts stacked per layer as
// {hidden, ffn, E} (PyTorch [E, ffn, hidden]); old Mixtral files keep one tensor per expert.
TensorNaming gguf_names() {
  TensorNaming n;
  n.embed = "token_embd.weight";
  n.final_norm = "output_norm.weight";
  n.lm_head = "output.weight";
  n.attn_norm = "blk.{L}.attn_norm.weight";
  n.ffn_norm = "blk.{L}.ffn_norm.weight";
  n.q = "blk.{L}.attn_q";
  n.k = "blk.{L}.attn_k";
  n.v = "blk.{L}.attn_v";
  n.o = "blk.{L}.attn_output";
  n.q_norm = "blk.{L}.attn_q_norm.weight";
  n.k_norm = "blk.{L}.attn_k_norm.weight";
  n.router = "blk.{L}.ffn_gate_inp.weight";
  n.router_bias = "blk.{L}.exp_probs_b.bias";
  n.expert_gate = "blk.{L}.ffn_gate.{E}.weight";
  n.expert_up = "blk.{L}.ffn_up.{E}.weight";
  n.expert_down = "blk.{L}.ffn_down.{E}.weight";
  n.experts_gate_up.clear();
  n.experts_gate = "blk.{L}.ffn_gate_exps.weight";
  n.experts_up = "blk.{L}.ffn_up_exps.weight";
  n.experts_down = "blk.{L}.ffn_down_exps.weight";
  n.shared_gate_proj = "blk.{L}.ffn_gate_shexp.weight";
  n.shared_up_proj = "blk.{L}.ffn_up_shexp.weight";
  n.shared_down_proj = "blk.{L}.ffn_down_shexp.weight";
  n.shared_expert_gate = "blk.{L}.ffn_gate_inp_shexp.weight";
  n.mlp_gate = "blk.{L}.ffn_gate.weight";
  n.mlp_up = "blk.{L}.ffn_up.weight";
  n.mlp_down = "blk.{L}.ffn_down.weight";
  // Parts the families read here never have in GGUF (MLA, sinks, GPT-OSS's biases) keep names that
  // match nothing, so a spec that asked for them would fail on a missing tensor.
  return n;
}

}  // namespace

std::vector<std::string> supported_gguf_architectures() {
  std::vector<std::string> out;
  for (const auto& a : kArchitectures) out.push_back(a.arch);
  return out;
}

GgufModelConfig read_gguf_model_config(const GgufFile& g) {
  GgufModelConfig out;
  out.config_name = g.path() + " (metadata)";
  out.names = gguf_names();
  const GgufMetadata root(g);
  // llama.cpp's gguf-split spreads a model's tensors over several files; this reader takes one.
  if (root.has("split.count") && root.integer("split.count") > 1)
    throw EngineError(g.path(), "split.count",
                      "one of " + std::to_string(root.integer("split.count")) +
                          " split files; merge them into one (llama-gguf-split --merge) to open the model");
  const std::string arch = root.string("general.architecture");
  const GgufArchitecture* known = nullptr;
  for (const auto& a : kArchitectures)
    if (arch == a.arch) known = &a;
  if (!known) {
    std::string list;
    for (const auto& a : kArchitectures) list += std::string(list.empty() ? "" : ", ") + a.arch;
    throw EngineError(g.path(), "general.architecture", "GGUF architecture '" + arch + "' is not read (supported: " + list + ")");
  }
  const Metadata m(g, arch);
  nlohmann::json& c = out.config;
  c = nlohmann::json::object();
  c["hidden_size"] = m.integer(m.key("embedding_length"));
  c["num_hidden_layers"] = m.integer(m.key("block_count"));
  c["num_attention_heads"] = m.integer(m.key("attention.head_count"));
  m.copy_integer(c, "num_key_value_heads", "attention.head_count_kv");
  m.copy_integer(c, "max_position_embeddings", "context_length");
  m.copy_integer(c, "intermediate_size", "feed_forward_length");
  c["rms_norm_eps"] = m.number(m.key("attention.layer_norm_rms_epsilon"));
  if (m.has(m.key("rope.freq_base"))) c["rope_theta"] = m.number(m.key("rope.freq_base"));

  // Head width: key_length when given (Qwen3: heads · head_dim ≠ hidden), else hidden / heads. Values
  // must be as wide as keys outside MLA.
  const int64_t heads = c["num_attention_heads"].get<int64_t>();
  if (heads <= 0) throw EngineError(g.path(), m.key("attention.head_count"), "must be positive");
  int64_t head_dim = c["hidden_size"].get<int64_t>() / heads;
  if (m.has(m.key("attention.key_length"))) head_dim = m.integer(m.key("attention.key_length"));
  if (m.has(m.key("attention.value_length")) && m.integer(m.key("attention.value_length")) != head_dim)
    throw EngineError(g.path(), m.key("attention.value_length"),
                      "differs from the key width " + std::to_string(head_dim) + "; only equal widths are read");
  c["head_dim"] = head_dim;
  if (m.has(m.key("rope.dimension_count"))) {
    const int64_t rotary = m.integer(m.key("rope.dimension_count"));
    if (rotary != head_dim) c["partial_rotary_factor"] = double(rotary) / double(head_dim);
  }
  if (m.has(m.key("rope.scaling.type"))) {
    const std::string type = m.string(m.key("rope.scaling.type"));
    if (type == "yarn") {
      c["rope_scaling"] = {{"rope_type", "yarn"},
                           {"factor", m.number(m.key("rope.scaling.factor"))},
                           {"original_max_position_embeddings", m.integer(m.key("rope.scaling.original_context_length"))}};
    } else if (type != "none") {
      c["rope_scaling"] = {{"rope_type", type}};  // refused by name when the spec is read
    }
  }

  // Vocabulary rows and tying: from the tensors, which are what the forward pass reads.
  const GgufTensor* embed = g.find(out.names.embed);
  if (!embed) throw EngineError(g.path(), out.names.embed, "tensor is missing (every model has an embedding)");
  if (embed->view.shape.size() != 2)
    throw EngineError(g.path(), out.names.embed, "expected 2 dims {hidden, vocab}");
  c["vocab_size"] = embed->view.shape[0];
  c["tie_word_embeddings"] = g.find(out.names.lm_head) == nullptr;
  if (root.has("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = root.integer("tokenizer.ggml.bos_token_id");
  if (root.has("tokenizer.ggml.eos_token_id")) c["eos_token_id"] = root.integer("tokenizer.ggml.eos_token_id");

  const bool has_experts = m.has(m.key("expert_count")) && m.integer(m.key("expert_count")) > 0;
  auto moe_keys = [&](const char* experts_key, bool renormalize_default) {
    c[experts_key] = m.integer(m.key("expert_count"));
    c["num_experts_per_tok"] = m.integer(m.key("expert_used_count"));
    // llama.cpp's choice per architecture, unless the file states it.
    c["norm_topk_prob"] = m.has(m.key("expert_weights_norm")) ? m.boolean(m.key("expert_weights_norm")) : renormalize_default;
    if (m.has(m.key("expert_gating_func")) && m.integer(m.key("expert_gating_func")) != 1)
      throw EngineError(g.path(), m.key("expert_gating_func"), "only the softmax router (1) is read for " + arch);
  };
  const std::string type = known->model_type;
  if (type == "qwen3_moe") {
    moe_keys("num_experts", true);  // llama.cpp renormalises qwen3moe's top-k always
    c["moe_intermediate_size"] = m.integer(m.key("expert_feed_forward_length"));
  } else if (type == "qwen2_moe") {
    moe_keys("num_experts", false);
    c["moe_intermediate_size"] = m.integer(m.key("expert_feed_forward_length"));
    m.copy_integer(c, "shared_expert_intermediate_size", "expert_shared_feed_forward_length");
    c["qkv_bias"] = g.find("blk.0.attn_q.bias") != nullptr;
  } else if (type == "olmoe") {
    moe_keys("num_experts", false);
    // OLMoE's expert width is its intermediate_size.
    if (m.has(m.key("expert_feed_forward_length"))) c["intermediate_size"] = m.integer(m.key("expert_feed_forward_length"));
  } else if (arch == "llama") {
    out.interleaved_rope = true;
    if (has_experts) {
      moe_keys("num_local_experts", true);
      if (m.has(m.key("expert_feed_forward_length"))) c["intermediate_size"] = m.integer(m.key("expert_feed_forward_length"));
      c["model_type"] = "mixtral";
    } else {
      c["model_type"] = "llama";
    }
  }
  if (!c.contains("model_type")) c["model_type"] = type;
  if (c["model_type"] == "mixtral" || c["model_type"] == "llama")
    if (!m.has(m.key("rope.freq_base"))) c["rope_theta"] = 10000.0;  // llama.cpp's default, not Mixtral's config default
  return out;
}

}  // namespace moe
