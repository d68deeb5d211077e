// The config.json fields every family shares, then the family adapter.
#include <algorithm>
#include <cctype>
#include <sstream>

#include "engine/common/error.h"
#include "engine/model/family.h"
#include "engine/model/rope_frequencies.h"

namespace moe {

std::string tensor_name(const std::string& pattern, int layer, int expert) {
  std::string s = pattern;
  auto replace = [&s](const std::string& key, int value) {
    for (size_t p = s.find(key); p != std::string::npos; p = s.find(key)) s.replace(p, key.size(), std::to_string(value));
  };
  if (layer >= 0) replace("{L}", layer);
  if (expert >= 0) replace("{E}", expert);
  return s;
}

namespace {

// YaRN settings (SPECS.md §1.4), as transformers' _compute_yarn_parameters reads them: factor s (null:
// max_position_embeddings / L0), L0 from the top level or the object (else max_position_embeddings),
// beta_fast/beta_slow (32/1 when absent or 0), truncate, and the cos/sin factor: attention_factor when
// given, else get_mscale(s, mscale) / get_mscale(s, mscale_all_dim) when both are set, else get_mscale(s).
void read_yarn(const JsonFields& c, const std::string& key, ModelSpec& s) {
  const auto& r = c.raw()[key];
  auto field = [&](const char* name) { return key + "." + name; };
  auto number = [&](const char* name, double fallback) {
    if (!r.contains(name) || r[name].is_null()) return fallback;
    if (!r[name].is_number()) throw EngineError(c.file(), field(name), "expected a number");
    return r[name].get<double>();
  };
  YarnSpec& y = s.attn.yarn;
  // A top-level original_max_position_embeddings wins over the object's (transformers'
  // standardize_rope_params, for Phi-3-style configs).
  const double l0 = c.has("original_max_position_embeddings")
                        ? c.number_or("original_max_position_embeddings", 0)
                        : number("original_max_position_embeddings", c.number_or("max_position_embeddings", 0));
  if (!(l0 >= 1)) throw EngineError(c.file(), field("original_max_position_embeddings"), "must be a positive integer");
  y.original_max_positions = int(l0);
  if (!r.contains("factor")) throw EngineError(c.file(), field("factor"), "YaRN needs a factor");
  y.factor = number("factor", c.number_or("max_position_embeddings", 0) / l0);
  if (!(y.factor > 0)) throw EngineError(c.file(), field("factor"), "must be positive");
  y.beta_fast = number("beta_fast", 0);
  y.beta_slow = number("beta_slow", 0);
  if (y.beta_fast == 0) y.beta_fast = 32;
  if (y.beta_slow == 0) y.beta_slow = 1;
  if (!(y.beta_fast > 0 && y.beta_slow > 0)) throw EngineError(c.file(), field("beta_fast"), "beta_fast and beta_slow must be positive");
  if (r.contains("truncate") && r["truncate"].is_boolean()) y.truncate = r["truncate"].get<bool>();
  const double mscale = number("mscale", 0);
  y.mscale_all_dim = number("mscale_all_dim", 0);
  double factor = number("attention_factor", 0);
  if (factor == 0)
    factor = mscale != 0 && y.mscale_all_dim != 0 ? yarn_get_mscale(y.factor, mscale) / yarn_get_mscale(y.factor, y.mscale_all_dim)
                                                  : yarn_get_mscale(y.factor);
  if (!(factor > 0)) throw EngineError(c.file(), field("attention_factor"), "must be positive");
  s.attn.rope_attention_factor = float(factor);
}

// transformers 5 writes RoPE settings as rope_parameters {rope_type, rope_theta, ...}; older configs use
// rope_theta plus an optional rope_scaling object. Plain RoPE and YaRN are implemented; any other scaling
// (linear, dynamic, llama3, longrope) is refused by name rather than run with the wrong frequencies.
// partial_rotary_factor (top level, or inside rope_parameters as transformers 5 writes it): RoPE rotates
// only the first int(head_dim · factor) dims of each head, as HF's default RoPE computes its frequencies.
void read_rope(const JsonFields& c, ModelSpec& s, double family_default_theta, double family_default_partial) {
  s.attn.rope_theta = c.number_or("rope_theta", family_default_theta);
  double partial = c.number_or("partial_rotary_factor", family_default_partial);
  std::string partial_field = "partial_rotary_factor";
  if (c.has("rotary_dim") && !c.has("partial_rotary_factor")) {  // MiniMax-M2 counts the rotated dims
    partial = double(c.integer("rotary_dim")) / double(s.attn.head_dim);
    partial_field = "rotary_dim";
  }
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!c.has(key)) continue;
    const auto& r = c.raw()[key];
    if (!r.is_object()) throw EngineError(c.file(), key, "expected an object");
    if (r.contains("rope_theta") && r["rope_theta"].is_number()) s.attn.rope_theta = r["rope_theta"].get<double>();
    if (r.contains("partial_rotary_factor") && r["partial_rotary_factor"].is_number()) {
      partial = r["partial_rotary_factor"].get<double>();
      partial_field = std::string(key) + ".partial_rotary_factor";
    }
    std::string type = "default";
    for (const char* tk : {"rope_type", "type"})
      if (r.contains(tk) && r[tk].is_string()) type = r[tk].get<std::string>();
    if (type == "yarn") read_yarn(c, key, s);
    else if (type != "default")
      throw EngineError(c.file(), std::string(key) + ".rope_type",
                        "RoPE scaling '" + type + "' is not supported yet (only plain RoPE and YaRN)");
  }
  if (!(s.attn.rope_theta > 0)) throw EngineError(c.file(), "rope_theta", "must be positive");
  const int rotary = int(double(s.attn.head_dim) * partial);
  if (!(partial > 0 && partial <= 1) || rotary < 2 || rotary % 2)
    throw EngineError(c.file(), partial_field,
                      "must give an even number of rotated dims between 2 and head_dim (" +
                          std::to_string(s.attn.head_dim) + "), got " + std::to_string(partial));
  s.attn.rotary_dim = rotary;
}

int positive(const JsonFields& c, const std::string& key, int64_t v) {
  if (v <= 0 || v > (int64_t(1) << 31)) throw EngineError(c.file(), key, "must be a positive integer, got " + std::to_string(v));
  return int(v);
}

// Fine-grained FP8 (engine/common/fp8.h), as transformers' FineGrainedFP8Config reads quantization_config: fmt
// E4M3 (spelled "e4m3" by DeepSeek, Kimi and Qwen, "float8_e4m3fn" by MiniMax), weight_block_size [rows, cols]
// ([128, 128] when absent). activation_scheme, scale_fmt and modules_to_not_convert need no reading here:
// activations stay F32, and which weights are FP8 and what type their scales are, the tensors' dtypes say
// (DeepSeek-V3.1 says scale_fmt "ue8m0" of F32 scales that are powers of two).
void read_fp8_config(const JsonFields& c, const nlohmann::json& q, ModelSpec& s) {
  const std::string fmt = q.contains("fmt") && q["fmt"].is_string() ? q["fmt"].get<std::string>() : "e4m3";
  if (fmt != "e4m3" && fmt != "float8_e4m3fn")
    throw EngineError(c.file(), "quantization_config.fmt", "FP8 format '" + fmt + "' is not read (E4M3 is: 'e4m3')");
  s.fp8_tile_rows = s.fp8_tile_cols = 128;
  if (!q.contains("weight_block_size")) return;
  const auto& b = q["weight_block_size"];
  const bool pair = b.is_array() && b.size() == 2 && b[0].is_number_integer() && b[1].is_number_integer();
  if (!pair || b[0].get<int64_t>() < 1 || b[1].get<int64_t>() < 1 || b[0].get<int64_t>() > 65536 || b[1].get<int64_t>() > 65536)
    throw EngineError(c.file(), "quantization_config.weight_block_size",
                      "must be two positive integers, rows and columns of the tile one scale covers, got " + b.dump() +
                          (b.is_null() ? " (a scale per tensor is not read)" : ""));
  s.fp8_tile_rows = int(b[0].get<int64_t>());
  s.fp8_tile_cols = int(b[1].get<int64_t>());
}

// compressed-tensors (engine/common/packed_int.h), as its QuantizationConfig reads quantization_config: the format
// (top level, or each config group's) must be "pack-quantized", and every group's scheme weight-only integers of 4
// or 8 bits, by group or by row (channel), symmetric or not. The tensors say the rest: which modules are packed
// (the targets and the ignore list need no reading), their bits, their group size and their zero points.
void read_compressed_tensors_config(const JsonFields& c, const nlohmann::json& q, ModelSpec& s) {
  const std::string key = "quantization_config";
  auto text = [](const nlohmann::json& o, const char* k) {
    return o.is_object() && o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string();
  };
  const std::string top = text(q, "format");
  const auto& groups = q.contains("config_groups") ? q["config_groups"] : nlohmann::json();
  if (!groups.is_object() || groups.empty())
    throw EngineError(c.file(), key + ".config_groups", "must name at least one quantization scheme");
  if (q.contains("kv_cache_scheme") && !q["kv_cache_scheme"].is_null())
    throw EngineError(c.file(), key + ".kv_cache_scheme", "a quantized KV cache is not read");
  bool all_asymmetric = true;
  for (const auto& [group, g] : groups.items()) {
    const std::string at = key + ".config_groups." + group;
    const std::string format = text(g, "format").empty() ? top : text(g, "format");
    if (format != "pack-quantized")
      throw EngineError(c.file(), at + ".format", "format '" + format + "' is not read (pack-quantized integers are)");
    for (const char* k : {"input_activations", "output_activations"})
      if (g.contains(k) && !g[k].is_null())
        throw EngineError(c.file(), at + "." + k, "quantized activations are not read (weight-only schemes, W4A16 and W8A16, are)");
    const auto& w = g.is_object() && g.contains("weights") ? g["weights"] : nlohmann::json();
    if (!w.is_object()) throw EngineError(c.file(), at + ".weights", "must describe the weights' quantization");
    auto refuse = [&](const char* field, const std::string& why) { throw EngineError(c.file(), at + ".weights." + field, why); };
    if (text(w, "type") != "int") refuse("type", "'" + text(w, "type") + "' weights are not read (packed 'int' weights are)");
    const int bits = w.contains("num_bits") && w["num_bits"].is_number_integer() ? w["num_bits"].get<int>() : 0;
    if (bits != 4 && bits != 8) refuse("num_bits", "must be 4 or 8, got " + (w.contains("num_bits") ? w["num_bits"].dump() : "nothing"));
    const std::string strategy = text(w, "strategy");
    if (strategy != "group" && strategy != "channel")
      refuse("strategy", "'" + strategy + "' is not read (a scale per group or per row, 'group' or 'channel', is)");
    if (w.contains("symmetric") && !w["symmetric"].is_boolean()) refuse("symmetric", "must be true or false");
    if (!w.contains("symmetric") || w["symmetric"].get<bool>()) all_asymmetric = false;  // symmetric by default
    if (w.contains("dynamic") && !(w["dynamic"].is_boolean() && !w["dynamic"].get<bool>()))
      refuse("dynamic", "dynamic weight scales are not read; static ones are");
    // Activation order "weight" (alias "static") orders the inputs only while quantizing: the groups stay in input
    // order. "group" (alias "dynamic"; true) reorders them by weight_g_idx, which compressed-tensors no longer reads.
    const std::string order = text(w, "actorder");
    const bool no_order = !w.contains("actorder") || w["actorder"].is_null() || w["actorder"] == false;
    if (!no_order && order != "weight" && order != "static")
      refuse("actorder", "activation order '" + (order.empty() ? w["actorder"].dump() : order) +
                             "' is not read (none, or 'weight' / 'static', which leave the groups in input order, is)");
    if (w.contains("block_structure") && !w["block_structure"].is_null())
      refuse("block_structure", "block scales are not read (a scale per group or per row is)");
  }
  s.packed_int = ModelSpec::PackedInts::CompressedTensors;
  s.packed_int_asymmetric = all_asymmetric;
}

std::string lowercase(std::string v) {
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  return v;
}

// GPTQ (engine/common/quant_linear.h), as transformers' GPTQConfig and GPTQModel's QuantizeConfig read
// quantization_config: 4 or 8 bits, int32 words, the checkpoint format v1 ("gptq", the default) or "gptq_v2". The
// tensors say the rest: which modules are packed, their group size (-1 is one per row), whether they are symmetric
// (sym), and whether activation order reordered their groups (desc_act: g_idx).
// GPTQModel's per-module "dynamic" overrides need no reading for the same reason.
void read_gptq_config(const JsonFields& c, const nlohmann::json& q, ModelSpec& s) {
  const std::string key = "quantization_config.";
  const int bits = q.contains("bits") && q["bits"].is_number_integer() ? q["bits"].get<int>() : 0;
  if (bits != 4 && bits != 8)
    throw EngineError(c.file(), key + "bits", "must be 4 or 8 (2- and 3-bit GPTQ are not read), got " + (q.contains("bits") ? q["bits"].dump() : "nothing"));
  std::string format = "gptq";
  for (const char* k : {"checkpoint_format", "format"})  // transformers writes the first, GPTQModel the second
    if (q.contains(k) && q[k].is_string()) {
      format = lowercase(q[k].get<std::string>());
      if (format != "gptq" && format != "gptq_v2")
        throw EngineError(c.file(), key + k, "GPTQ format '" + q[k].get<std::string>() + "' is not read ('gptq' and 'gptq_v2' are)");
      break;
    }
  if (q.contains("pack_dtype") && !(q["pack_dtype"].is_string() && q["pack_dtype"].get<std::string>() == "int32"))
    throw EngineError(c.file(), key + "pack_dtype", "values packed in " + q["pack_dtype"].dump() + " are not read (int32 words are)");
  s.packed_int = format == "gptq" ? ModelSpec::PackedInts::GptqV1 : ModelSpec::PackedInts::GptqV2;
}

// AWQ (engine/common/quant_linear.h), as transformers' AwqConfig reads quantization_config: AutoAWQ's GEMM layout
// (version, or GPTQModel's format, "gemm"), 4 bits, zero points. The tensors say which modules are packed (no need to
// read modules_to_not_convert) and their group size.
void read_awq_config(const JsonFields& c, const nlohmann::json& q, ModelSpec& s) {
  const std::string key = "quantization_config.";
  const int bits = q.contains("bits") && q["bits"].is_number_integer() ? q["bits"].get<int>() : 0;
  if (bits != 4) throw EngineError(c.file(), key + "bits", "AWQ must be 4-bit, got " + (q.contains("bits") ? q["bits"].dump() : "nothing"));
  for (const char* k : {"version", "format"})
    if (q.contains(k) && q[k].is_string()) {
      if (lowercase(q[k].get<std::string>()) != "gemm")
        throw EngineError(c.file(), key + k, "AWQ layout '" + q[k].get<std::string>() + "' is not read (AutoAWQ's 'gemm' is)");
    }
  if (q.contains("zero_point") && !(q["zero_point"].is_boolean() && q["zero_point"].get<bool>()))
    throw EngineError(c.file(), key + "zero_point", "AWQ without zero points is not read");
  s.packed_int = ModelSpec::PackedInts::Awq;
}

}  // namespace

ModelSpec read_model_spec(const JsonFields& c) {
  const std::string model_type = c.string("model_type");
  const FamilyAdapter* family = find_family(model_type);
  if (!family) {
    std::ostringstream msg;
    msg << "unknown architecture '" << model_type << "'; supported:";
    for (const auto& t : supported_model_types()) msg << ' ' << t;
    throw EngineError(c.file(), "model_type", msg.str());
  }
  ModelSpec s;
  s.model_type = model_type;
  s.family = family->display_name;
  s.hidden = positive(c, "hidden_size", c.integer("hidden_size"));
  s.n_layers = positive(c, "num_hidden_layers", c.integer("num_hidden_layers"));
  s.vocab_size = positive(c, "vocab_size", c.integer("vocab_size"));
  s.attn.n_heads = positive(c, "num_attention_heads", c.integer("num_attention_heads"));
  s.attn.n_kv_heads = positive(c, "num_key_value_heads", c.integer_or("num_key_value_heads", s.attn.n_heads));
  if (s.attn.n_heads % s.attn.n_kv_heads != 0)
    throw EngineError(c.file(), "num_key_value_heads",
                      "num_attention_heads (" + std::to_string(s.attn.n_heads) + ") is not a multiple of it (" +
                          std::to_string(s.attn.n_kv_heads) + ")");
  // head_dim comes from config when given (Qwen3: nh·hd ≠ hidden); else hidden / heads.
  const int64_t hd = c.has("head_dim") ? c.integer("head_dim") : s.hidden / s.attn.n_heads;
  s.attn.head_dim = positive(c, "head_dim", hd);
  if (s.attn.head_dim % 2) throw EngineError(c.file(), "head_dim", "must be even for RoPE");
  s.dense_ffn = int(c.integer_or("intermediate_size", 0));
  s.max_positions = int(c.integer_or("max_position_embeddings", 4096));
  s.rms_eps = float(c.number_or("rms_norm_eps", 1e-6));
  s.torch_dtype = c.string_or("torch_dtype", c.string_or("dtype", ""));
  s.tied_embeddings = c.boolean_or("tie_word_embeddings", false);
  const auto bos = c.integer_list_or_empty("bos_token_id");
  if (!bos.empty()) s.bos_id = int32_t(bos[0]);
  for (int64_t e : c.integer_list_or_empty("eos_token_id")) s.eos_ids.push_back(int32_t(e));
  if (const std::string act = c.string_or("hidden_act", "silu"); act != "silu")
    throw EngineError(c.file(), "hidden_act", "only SiLU-gated MLPs are supported, got '" + act + "'");

  if (c.has("quantization_config")) {
    const auto& q = c.raw()["quantization_config"];
    const std::string method = q.is_object() && q.contains("quant_method") && q["quant_method"].is_string()
                                   ? q["quant_method"].get<std::string>()
                                   : "unknown";
    // Read in place: GPT-OSS's MXFP4 experts (engine/common/mxfp4.h), fine-grained FP8 (engine/common/fp8.h) and
    // compressed-tensors' packed integers (engine/common/packed_int.h). GPTQ and AWQ (engine/common/quant_linear.h)
    // are rearranged into the latter's rows at load.
    if (method == "mxfp4" && model_type == "gpt_oss") s.moe.experts_mxfp4 = true;
    else if (method == "fp8") read_fp8_config(c, q, s);
    else if (method == "compressed-tensors") read_compressed_tensors_config(c, q, s);
    else if (method == "gptq") read_gptq_config(c, q, s);
    else if (method == "awq") read_awq_config(c, q, s);
    else
      throw EngineError(c.file(), "quantization_config.quant_method",
                        "quantized checkpoints ('" + method + "') are not supported; use BF16, F16 or F32 weights" +
                            (method == "mxfp4" ? " (MXFP4 is read for GPT-OSS's experts only)" : "") +
                            " (fine-grained FP8, 'fp8', compressed-tensors' pack-quantized integers, 'gptq' and 'awq' are read)");
  }

  // Biases: Llama/Qwen3 attention_bias covers q, k, v and o. Checkpoints are trusted over this flag
  // (the loader looks for the tensors); synthetic weights follow it.
  s.attn.qkv_bias = s.attn.o_bias = c.boolean_or("attention_bias", false);
  double default_theta = 10000.0, default_partial = 1.0;
  if (model_type == "mixtral") default_theta = 1e6;
  if (model_type == "minimax_m2") default_theta = 5e6;  // MiniMaxM2Config's default
  if (model_type == "ernie4_5_moe") default_theta = 5e5;  // the released checkpoints' value
  if (model_type == "glm4_moe") default_partial = 0.5;  // Glm4MoeConfig's default when the key is absent
  read_rope(c, s, default_theta, default_partial);

  s.layer_is_moe.assign(s.n_layers, false);
  family->read_config(c, s);

  if (s.moe.n_experts > 0) {
    if (s.moe.top_k <= 0 || s.moe.top_k > s.moe.n_experts)
      throw EngineError(c.file(), "num_experts_per_tok",
                        "must be between 1 and the number of experts (" + std::to_string(s.moe.n_experts) + ")");
    if (s.moe.expert_ffn <= 0) throw EngineError(c.file(), "moe_intermediate_size", "expert width must be positive");
    const auto& M = s.moe;
    if (M.n_group < 1 || M.n_experts % M.n_group)
      throw EngineError(c.file(), "n_group",
                        "must divide the number of experts (" + std::to_string(M.n_experts) + "), got " +
                            std::to_string(M.n_group));
    if (M.topk_group < 1 || M.topk_group > M.n_group)
      throw EngineError(c.file(), "topk_group",
                        "must be between 1 and n_group (" + std::to_string(M.n_group) + "), got " +
                            std::to_string(M.topk_group));
    const int per_group = M.n_experts / M.n_group;
    if (M.group_limited() && M.top_k > M.topk_group * per_group)
      throw EngineError(c.file(), "num_experts_per_tok",
                        "selects more experts than the topk_group groups hold (" +
                            std::to_string(M.topk_group * per_group) + ")");
    if (M.group_limited() && M.group_score == GroupScore::TopTwoSum && per_group < 2)
      throw EngineError(c.file(), "n_group", "groups scored by their two best experts need at least two experts each");
  }
  for (int l = 0; l < s.n_layers; ++l)
    if (!s.layer_is_moe[l] && s.dense_ffn <= 0)
      throw EngineError(c.file(), "intermediate_size", "layer " + std::to_string(l) + " is dense but the width is not set");
  return s;
}

}  // namespace moe
