#include "engine/model/gguf_model.h"

#include <cstring>
#include <vector>

#include "engine/common/error.h"
#include "engine/common/ggml_quants.h"
#include "engine/formats/json_file.h"

namespace moe {

namespace {

// llama.cpp's architecture names and the model_type each becomes. `llama` is both dense Llama and
// Mixtral (experts present or not).
struct GgufArchitecture {
  const char* arch;
  const char* model_type;
};
constexpr GgufArchitecture kArchitectures[] = {
    {"qwen3moe", "qwen3_moe"}, {"qwen3", "qwen3"},           {"qwen2moe", "qwen2_moe"},
    {"olmoe", "olmoe"},        {"llama", "llama or mixtral"}, {"deepseek2", "deepseek_v2 or deepseek_v3"},
    {"gpt-oss", "gpt_oss"},    {"minimax-m2", "minimax_m2"},  {"glm4moe", "glm4_moe"},
    {"ernie4_5-moe", "ernie4_5_moe"},
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
  // The arch key's value, or `fallback` when the file does not state it.
  int64_t integer_or(const std::string& suffix, int64_t fallback) const { return has(key(suffix)) ? integer(key(suffix)) : fallback; }
  double number_or(const std::string& suffix, double fallback) const { return has(key(suffix)) ? number(key(suffix)) : fallback; }
  bool boolean_or(const std::string& suffix, bool fallback) const { return has(key(suffix)) ? boolean(key(suffix)) : fallback; }

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
  // MLA (deepseek2). Files converted since April 2025 hold kv_b split per head as attn_k_b and attn_v_b;
  // the source (model.cpp) joins them back into attn_kv_b.
  n.q_a = "blk.{L}.attn_q_a";
  n.q_a_norm = "blk.{L}.attn_q_a_norm.weight";
  n.q_b = "blk.{L}.attn_q_b";
  n.kv_a = "blk.{L}.attn_kv_a_mqa";
  n.kv_a_norm = "blk.{L}.attn_kv_a_norm.weight";
  n.kv_b = "blk.{L}.attn_kv_b";
  // Parts the families read here never have in GGUF (sinks, GPT-OSS's biases) keep names that match
  // nothing, so a spec that asked for them would fail on a missing tensor.
  return n;
}

}  // namespace

std::vector<std::string> supported_gguf_architectures() {
  std::vector<std::string> out;
  for (const auto& a : kArchitectures) out.push_back(a.arch);
  return out;
}

namespace {

// Head width: key_length when given (Qwen3: heads · head_dim ≠ hidden), else hidden / heads. Values
// must be as wide as keys outside MLA.
void read_attention_widths(const GgufFile& g, const Metadata& m, nlohmann::json& c) {
  const int64_t heads = c["num_attention_heads"].get<int64_t>();
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
}

// The router: softmax (1) or sigmoid (2) in llama.cpp's expert_gating_func; absent means softmax.
bool sigmoid_router(const GgufFile& g, const Metadata& m, bool sigmoid_allowed) {
  if (!m.has(m.key("expert_gating_func"))) return false;
  const int64_t f = m.integer(m.key("expert_gating_func"));
  if (f == 1) return false;
  if (f == 2 && sigmoid_allowed) return true;
  throw EngineError(g.path(), m.key("expert_gating_func"),
                    "gating function " + std::to_string(f) + " is not read here (" +
                        (sigmoid_allowed ? "softmax 1 and sigmoid 2 are" : "only softmax, 1, is") + ")");
}

// The MoE keys DeepSeek's converter writes, and GLM-4.5's after it: routed and shared experts, leading
// dense layers, the routed scale and renormalisation, and expert groups. Files from before the group keys
// existed ran without groups in llama.cpp, and so here.
void read_deepseek_style_moe(const Metadata& m, nlohmann::json& c) {
  c["n_routed_experts"] = m.integer(m.key("expert_count"));
  c["num_experts_per_tok"] = m.integer(m.key("expert_used_count"));
  c["moe_intermediate_size"] = m.integer(m.key("expert_feed_forward_length"));
  c["n_shared_experts"] = m.integer_or("expert_shared_count", 0);
  c["first_k_dense_replace"] = m.integer_or("leading_dense_block_count", 0);
  c["routed_scaling_factor"] = m.number_or("expert_weights_scale", 1.0);
  c["norm_topk_prob"] = m.boolean_or("expert_weights_norm", false);
  const int64_t groups = m.integer_or("expert_group_count", 1);
  c["n_group"] = groups;
  c["topk_group"] = m.integer_or("expert_group_used_count", groups);
}

// deepseek2 (DeepSeek-V2/V3, Kimi K2): multi-head latent attention. Files converted since April 2025 run
// MLA as MQA over the latent, so key_length and value_length describe the latent
// (kv_lora_rank + rope, kv_lora_rank) and the per-head widths move to key_length_mla and value_length_mla;
// older files give the per-head widths in key_length and value_length. A softmax router is DeepSeek-V2's
// (greedy, or group-limited by each group's best); a sigmoid one DeepSeek-V3's noaux_tc (selection bias,
// groups by their two best, renormalised by expert_weights_norm).
void read_deepseek2(const GgufFile& g, const Metadata& m, nlohmann::json& c) {
  c["kv_lora_rank"] = m.integer(m.key("attention.kv_lora_rank"));
  const int64_t q_lora = m.integer_or("attention.q_lora_rank", 0);
  c["q_lora_rank"] = q_lora > 0 ? nlohmann::json(q_lora) : nlohmann::json();  // 0 or absent: a plain attn_q
  const bool mqa_form = m.has(m.key("attention.key_length_mla"));
  const std::string k_key = mqa_form ? "attention.key_length_mla" : "attention.key_length";
  const std::string v_key = mqa_form ? "attention.value_length_mla" : "attention.value_length";
  const int64_t qk_head = m.integer(m.key(k_key));
  const int64_t rope = m.integer(m.key("rope.dimension_count"));
  if (rope <= 0 || rope >= qk_head)
    throw EngineError(g.path(), m.key("rope.dimension_count"),
                      std::to_string(rope) + " must be positive and below the key width " + std::to_string(qk_head) + " (" + m.key(k_key) + ")");
  c["qk_rope_head_dim"] = rope;
  c["qk_nope_head_dim"] = qk_head - rope;
  c["v_head_dim"] = m.integer(m.key(v_key));
  c["head_dim"] = rope;
  // llama.cpp's YaRN for deepseek2 leaves cos and sin unscaled and multiplies the softmax scale by
  // (1 + yarn_log_multiplier · ln factor)², which is transformers' rule with mscale = mscale_all_dim =
  // yarn_log_multiplier / 0.1 (the converter writes 0.1 · mscale_all_dim).
  if (c.contains("rope_scaling") && c["rope_scaling"].value("rope_type", "") == "yarn") {
    auto& y = c["rope_scaling"];
    if (m.has(m.key("rope.scaling.yarn_log_multiplier"))) {
      const double mscale = m.number(m.key("rope.scaling.yarn_log_multiplier")) / 0.1;
      y["mscale"] = mscale;
      y["mscale_all_dim"] = mscale;
    } else {
      y["attention_factor"] = 1.0;
    }
  }

  if (m.integer_or("expert_count", 0) == 0) {
    c["model_type"] = "deepseek_v2";
    c["n_routed_experts"] = nullptr;
    return;
  }
  const bool sigmoid = sigmoid_router(g, m, true);
  c["model_type"] = sigmoid ? "deepseek_v3" : "deepseek_v2";
  read_deepseek_style_moe(m, c);
  const int64_t groups = c["n_group"].get<int64_t>(), used = c["topk_group"].get<int64_t>();
  if (!sigmoid) c["topk_method"] = groups > 1 && used < groups ? "group_limited_greedy" : "greedy";
}

// gpt-oss: llama.cpp's converter splits the interleaved gate_up experts (and their biases) into gate and
// up, stores the pre-MLP norm as post_attention_norm and the sinks as attn_sinks. What the file does not
// state is fixed in llama.cpp: sliding-window attention on even layers, the SwiGLU clamp at 7 (α 1.702).
void read_gpt_oss(const GgufFile& g, const Metadata& m, nlohmann::json& c, TensorNaming& n) {
  read_attention_widths(g, m, c);
  c["model_type"] = "gpt_oss";
  c["num_local_experts"] = m.integer(m.key("expert_count"));
  c["num_experts_per_tok"] = m.integer(m.key("expert_used_count"));
  c["intermediate_size"] = m.integer(m.key("expert_feed_forward_length"));
  c["sliding_window"] = m.integer(m.key("attention.sliding_window"));
  c["attention_bias"] = g.find("blk.0.attn_q.bias") != nullptr;
  sigmoid_router(g, m, false);
  n.ffn_norm = "blk.{L}.post_attention_norm.weight";
  n.sinks = "blk.{L}.attn_sinks.weight";
  n.router_logit_bias = "blk.{L}.ffn_gate_inp.bias";
  n.experts_gate_bias = "blk.{L}.ffn_gate_exps.bias";
  n.experts_up_bias = "blk.{L}.ffn_up_exps.bias";
  n.experts_down_bias = "blk.{L}.ffn_down_exps.bias";
}

// minimax-m2: a sigmoid router with the selection bias (exp_probs_b), top-k renormalised; q/k norms over
// the whole projections; rotate-half RoPE on the first rope.dimension_count dims of each head.
void read_minimax_m2(const GgufFile& g, const Metadata& m, nlohmann::json& c) {
  read_attention_widths(g, m, c);
  c["model_type"] = "minimax_m2";
  c["num_local_experts"] = m.integer(m.key("expert_count"));
  c["num_experts_per_tok"] = m.integer(m.key("expert_used_count"));
  c["intermediate_size"] = m.integer(m.key("expert_feed_forward_length"));
  if (!sigmoid_router(g, m, true)) throw EngineError(g.path(), m.key("expert_gating_func"), "MiniMax-M2's router is sigmoid (2)");
  if (!m.boolean_or("expert_weights_norm", true))
    throw EngineError(g.path(), m.key("expert_weights_norm"), "MiniMax-M2 renormalises its top-k weights");
}

// glm4moe (GLM-4.5, GLM-4.5-Air): DeepSeek-V3's router and shared experts on GQA with q/k/v biases and
// optional per-head q/k norms, partial rotate-half RoPE; the pre-MLP norm is stored as
// post_attention_norm, and the nextn block after the last layer is counted in block_count.
void read_glm4_moe(const GgufFile& g, const Metadata& m, nlohmann::json& c, TensorNaming& n) {
  read_attention_widths(g, m, c);
  c["model_type"] = "glm4_moe";
  c["attention_bias"] = g.find("blk.0.attn_q.bias") != nullptr;
  c["use_qk_norm"] = g.find("blk.0.attn_q_norm.weight") != nullptr;
  if (!sigmoid_router(g, m, true)) throw EngineError(g.path(), m.key("expert_gating_func"), "GLM-4.5's router is sigmoid (2)");
  read_deepseek_style_moe(m, c);
  n.ffn_norm = "blk.{L}.post_attention_norm.weight";
}

// ernie4_5-moe (ERNIE-4.5-21B-A3B, -300B-A47B): the Hugging Face tensors as they are (no q/k permutation:
// llama.cpp runs this architecture with adjacent-pair RoPE, which is ERNIE's own), the experts stacked.
// MoE layers are those from leading_dense_block_count on with (l + 1) % interleave_moe_layer_step == 0;
// llama.cpp has no end index, so none is read. The shared experts are as wide as
// expert_shared_feed_forward_length when the file states it, else expert_shared_count expert widths, as in
// llama.cpp; the selection bias is exp_probs_b.
void read_ernie4_5_moe(const GgufFile& g, const Metadata& m, nlohmann::json& c) {
  read_attention_widths(g, m, c);
  c["model_type"] = "ernie4_5_moe";
  if (const GgufTensor* bias = g.find("blk.0.attn_q.bias"))
    throw EngineError(bias->view.file, "blk.0.attn_q.bias", "ERNIE-4.5 with biases (use_bias) is not read");
  if (c.contains("partial_rotary_factor"))
    throw EngineError(g.path(), m.key("rope.dimension_count"), "ERNIE-4.5 rotates whole heads of " + quoted_json(c["head_dim"]) + " dims");
  c["moe_num_experts"] = m.integer(m.key("expert_count"));
  c["moe_k"] = m.integer(m.key("expert_used_count"));
  const int64_t width = m.integer(m.key("expert_feed_forward_length"));
  c["moe_intermediate_size"] = width;
  const int64_t shared_width = m.integer_or("expert_shared_feed_forward_length", 0);
  if (shared_width > 0) {
    if (width == 0 || shared_width % width != 0)
      throw EngineError(g.path(), m.key("expert_shared_feed_forward_length"),
                        std::to_string(shared_width) + " is not a whole number of experts of width " + std::to_string(width));
    c["moe_num_shared_experts"] = shared_width / width;
  } else {
    c["moe_num_shared_experts"] = m.integer_or("expert_shared_count", 0);
  }
  c["moe_layer_start_index"] = m.integer(m.key("leading_dense_block_count"));
  c["moe_layer_interval"] = m.integer(m.key("interleave_moe_layer_step"));
  if (c["moe_layer_interval"] == 0) throw EngineError(g.path(), m.key("interleave_moe_layer_step"), "must be at least 1");
  c["moe_layer_end_index"] = -1;
  sigmoid_router(g, m, false);
}

}  // namespace

GgufModelConfig read_gguf_model_config(const GgufFile& g) {
  GgufModelConfig out;
  out.config_name = g.path() + " (metadata)";
  out.names = gguf_names();
  const GgufMetadata root(g);
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
  // Multi-token-prediction layers are stored after the last decoder layer and counted in block_count.
  const int64_t blocks = m.integer(m.key("block_count"));
  const int64_t nextn = m.integer_or("nextn_predict_layers", 0);
  if (nextn >= blocks)
    throw EngineError(g.path(), m.key("nextn_predict_layers"), std::to_string(nextn) + " leaves no decoder layer of " + std::to_string(blocks));
  c["num_hidden_layers"] = blocks - nextn;
  c["num_attention_heads"] = m.integer(m.key("attention.head_count"));
  if (c["num_attention_heads"].get<int64_t>() <= 0) throw EngineError(g.path(), m.key("attention.head_count"), "must be positive");
  m.copy_integer(c, "num_key_value_heads", "attention.head_count_kv");
  m.copy_integer(c, "max_position_embeddings", "context_length");
  m.copy_integer(c, "intermediate_size", "feed_forward_length");
  c["rms_norm_eps"] = m.number(m.key("attention.layer_norm_rms_epsilon"));
  if (m.has(m.key("rope.freq_base"))) c["rope_theta"] = m.number(m.key("rope.freq_base"));
  if (m.has(m.key("rope.scaling.type"))) {
    const std::string type = m.string(m.key("rope.scaling.type"));
    if (type == "yarn") {
      c["rope_scaling"] = {{"rope_type", "yarn"},
                           {"factor", m.number(m.key("rope.scaling.factor"))},
                           {"original_max_position_embeddings", m.integer(m.key("rope.scaling.original_context_length"))}};
      for (const char* beta : {"beta_fast", "beta_slow"})
        if (m.has(m.key(std::string("rope.scaling.yarn_") + beta))) c["rope_scaling"][beta] = m.number(m.key(std::string("rope.scaling.yarn_") + beta));
    } else if (type != "none") {
      c["rope_scaling"] = {{"rope_type", type}};  // refused by name when the spec is read
    }
  }

  // Vocabulary rows and tying: from the tensors, which are what the forward pass reads.
  const GgufTensor* embed = g.find(out.names.embed);
  if (!embed) throw EngineError(g.path(), out.names.embed, "tensor is missing (every model has an embedding)");
  if (embed->view.shape.size() != 2)
    throw EngineError(embed->view.file, out.names.embed, "expected 2 dims {hidden, vocab}");
  c["vocab_size"] = embed->view.shape[0];
  c["tie_word_embeddings"] = g.find(out.names.lm_head) == nullptr;
  if (root.has("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = root.integer("tokenizer.ggml.bos_token_id");
  if (root.has("tokenizer.ggml.eos_token_id")) c["eos_token_id"] = root.integer("tokenizer.ggml.eos_token_id");

  if (arch == "deepseek2") {
    read_deepseek2(g, m, c);
    return out;
  }
  if (arch == "gpt-oss") {
    read_gpt_oss(g, m, c, out.names);
    return out;
  }
  if (arch == "minimax-m2") {
    read_minimax_m2(g, m, c);
    return out;
  }
  if (arch == "glm4moe") {
    read_glm4_moe(g, m, c, out.names);
    return out;
  }
  if (arch == "ernie4_5-moe") {
    read_ernie4_5_moe(g, m, c);
    return out;
  }
  read_attention_widths(g, m, c);
  const bool has_experts = m.integer_or("expert_count", 0) > 0;
  auto moe_keys = [&](const char* experts_key, bool renormalize_default) {
    c[experts_key] = m.integer(m.key("expert_count"));
    c["num_experts_per_tok"] = m.integer(m.key("expert_used_count"));
    // llama.cpp's choice per architecture, unless the file states it.
    c["norm_topk_prob"] = m.boolean_or("expert_weights_norm", renormalize_default);
    sigmoid_router(g, m, false);
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

namespace moe {

std::optional<JoinedMatrix> join_split_kv_b(const GgufFile& g, const std::string& kv_b_name, int64_t rows, int64_t cols) {
  const std::string suffix = "attn_kv_b.weight";
  if (!kv_b_name.ends_with(suffix)) return std::nullopt;
  const std::string prefix = kv_b_name.substr(0, kv_b_name.size() - suffix.size());
  JoinedMatrix out;
  out.k_b = prefix + "attn_k_b.weight";
  out.v_b = prefix + "attn_v_b.weight";
  const GgufTensor* k = g.find(out.k_b);
  const GgufTensor* v = g.find(out.v_b);
  if (!k && !v) return std::nullopt;
  if (!k || !v) throw EngineError(g.path(), k ? out.v_b : out.k_b, "tensor is missing (its pair " + (k ? out.k_b : out.v_b) + " is here)");
  for (const auto& [t, name] : {std::pair{k, out.k_b}, std::pair{v, out.v_b}}) {
    if (!t->readable) throw EngineError(t->view.file, name, "ggml type " + t->type_name + " is not read");
    if (t->view.shape.size() != 3) throw EngineError(t->view.file, name, "expected 3 dims {nope, kv_lora, heads} or {kv_lora, v, heads}");
  }
  // PyTorch order: k_b [H, kv_lora, nope], v_b [H, v, kv_lora].
  const auto& ks = k->view.shape;
  const auto& vs = v->view.shape;
  const int64_t H = ks[0], nope = ks[2], vd = vs[1];
  if (ks[1] != cols || vs[0] != H || vs[2] != cols || H * (nope + vd) != rows)
    throw EngineError(k->view.file, out.k_b,
                      "dims {" + std::to_string(nope) + ", " + std::to_string(ks[1]) + ", " + std::to_string(H) + "} with " + out.v_b +
                          " {" + std::to_string(vs[2]) + ", " + std::to_string(vd) + ", " + std::to_string(vs[0]) +
                          "} do not make the metadata's kv_b of " + std::to_string(rows) + " rows of " + std::to_string(cols));
  const DType kt = k->view.dtype, vt = v->view.dtype;
  out.dtype = kt == vt && is_weight_dtype(kt) ? kt : DType::F32;
  const size_t es = dtype_size(out.dtype);
  out.data.reset(new std::byte[size_t(rows * cols) * es]);
  std::byte* dst = out.data.get();
  const auto* kd = static_cast<const std::byte*>(k->view.data);
  const auto* vdata = static_cast<const std::byte*>(v->view.data);
  // Row r of a stored [n, width] matrix in the output's type: copied when the types agree, else decoded.
  auto read_row = [&](const std::byte* base, DType t, int64_t r, int64_t width, std::byte* to) {
    const std::byte* row = base + size_t(r) * row_bytes(t, width);
    if (t == out.dtype) {
      std::memcpy(to, row, size_t(width) * es);
    } else {
      dequantize_row(row, t, width, reinterpret_cast<float*>(to));
    }
  };
  std::vector<std::byte> k_row(size_t(nope) * std::max<size_t>(es, sizeof(float)));
  for (int64_t h = 0; h < H; ++h) {
    std::byte* head = dst + size_t(h * (nope + vd) * cols) * es;
    // k rows: kv_b[h·(nope+v) + i][c] = k_b[h][c][i], a transpose of each head's block.
    for (int64_t c = 0; c < cols; ++c) {
      read_row(kd, kt, h * cols + c, nope, k_row.data());
      for (int64_t i = 0; i < nope; ++i) std::memcpy(head + size_t(i * cols + c) * es, k_row.data() + size_t(i) * es, es);
    }
    // v rows: kv_b[h·(nope+v) + nope + j] = v_b[h][j].
    for (int64_t j = 0; j < vd; ++j) read_row(vdata, vt, h * vd + j, cols, head + size_t((nope + j) * cols) * es);
  }
  return out;
}

}  // namespace moe
