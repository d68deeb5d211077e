#include "engine/tokenizer/gguf_tokenizer.h"

#include "engine/common/error.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/special_tokens.h"

namespace moe {

namespace {

// token_type values (llama.cpp's llama_token_type).
constexpr int64_t kControl = 3, kUserDefined = 4, kUnused = 5;

// The split rules of the byte-level vocabularies llama.cpp names in tokenizer.ggml.pre, as their
// tokenizer.json files state them. An empty regex means GPT-2's, which ByteLevel applies itself.
struct PreTokenizer {
  const char* pre;
  const char* regex;
  bool nfc;
};
constexpr PreTokenizer kPreTokenizers[] = {
    {"qwen2",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     true},
    {"llama-bpe",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     false},
    {"gpt-2", "", false},
    {"olmo", "", false},
    {"default", "", false},
};

// GgufMetadata's reads, and the two shapes only the tokenizer has: arrays of one element kind, and token ids.
class Keys : public GgufMetadata {
 public:
  using GgufMetadata::GgufMetadata;
  const nlohmann::json& array(const std::string& k, nlohmann::json::value_t elem, const char* what) const {
    const auto& v = value(k);
    if (!v.is_array()) throw EngineError(path(), k, std::string("expected an array of ") + what);
    for (size_t i = 0; i < v.size(); ++i) {
      const bool ok = elem == nlohmann::json::value_t::string ? v[i].is_string() : v[i].is_number_integer();
      if (!ok) throw EngineError(path(), k + "[" + std::to_string(i) + "]", std::string("expected ") + what);
    }
    return v;
  }
  std::optional<int64_t> id(const std::string& k, size_t n_tokens) const {
    if (!has(k)) return std::nullopt;
    const auto& v = value(k);
    if (!v.is_number_integer()) throw EngineError(path(), k, "expected a token id, got " + v.dump());
    const int64_t id = v.get<int64_t>();
    if (id < 0 || uint64_t(id) >= n_tokens)
      throw EngineError(path(), k, "token id " + std::to_string(id) + " is past the " + std::to_string(n_tokens) + " tokens");
    return id;
  }
};

std::unique_ptr<Tokenizer> byte_level_bpe(const GgufFile& g, const Keys& keys) {
  const std::string file = g.path();
  const auto& tokens = keys.array("tokenizer.ggml.tokens", nlohmann::json::value_t::string, "token strings");
  const auto& merges = keys.array("tokenizer.ggml.merges", nlohmann::json::value_t::string, "merges (\"a b\")");
  nlohmann::json types = nlohmann::json::array();
  if (keys.has("tokenizer.ggml.token_type")) {
    types = keys.array("tokenizer.ggml.token_type", nlohmann::json::value_t::number_integer, "token types");
    if (types.size() != tokens.size())
      throw EngineError(file, "tokenizer.ggml.token_type",
                        "has " + std::to_string(types.size()) + " entries for " + std::to_string(tokens.size()) + " tokens");
  }
  const std::string pre = keys.string_or("tokenizer.ggml.pre", "default");
  const PreTokenizer* rules = nullptr;
  for (const auto& p : kPreTokenizers)
    if (pre == p.pre) rules = &p;
  if (!rules) {
    std::string list;
    for (const auto& p : kPreTokenizers) list += std::string(list.empty() ? "" : ", ") + p.pre;
    throw EngineError(file, "tokenizer.ggml.pre", "pre-tokenizer '" + pre + "' is not read (supported: " + list + ")");
  }

  // The tokenizer.json this file was converted from: normal tokens form the BPE vocabulary, control and
  // user-defined tokens are added tokens, matched in the raw text before any split.
  nlohmann::json j;
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    const int64_t type = types.empty() ? 1 : types[id].get<int64_t>();
    const std::string& text = tokens[id].get_ref<const std::string&>();
    if (type == kUnused) continue;  // padding ids ([PAD151700] ...): holes, never produced or sampled
    if (type == kControl || type == kUserDefined) {
      added.push_back({{"id", id}, {"content", text}, {"special", type == kControl}, {"normalized", false}});
    } else if (!vocab.contains(text)) {  // a repeated string (padding entries) keeps its first id
      vocab[text] = id;
    }
  }
  j["model"] = {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", merges}};
  j["added_tokens"] = std::move(added);
  if (rules->nfc) j["normalizer"] = {{"type", "NFC"}};
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                                     {"use_regex", std::string(rules->regex).empty()}};
  if (std::string(rules->regex).empty()) {
    j["pre_tokenizer"] = byte_level;
  } else {
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Split"}, {"pattern", {{"Regex", rules->regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                            byte_level}}};
  }
  j["decoder"] = {{"type", "ByteLevel"}};
  auto tok = std::make_unique<BpeTokenizer>(j, file + " (tokenizer.ggml.*)");

  // BOS and EOS as tokenizer_config.json would give them. llama.cpp also ends a turn on the end-of-turn
  // and end-of-message tokens, and on the control tokens that close turns in the common chat formats.
  detail::TokenizerConfig config;
  config.present = true;
  config.file = file;
  const auto token = [&](int64_t id) { return tokens[size_t(id)].get<std::string>(); };
  config.add_bos_token = keys.boolean_if_present("tokenizer.ggml.add_bos_token").value_or(false);
  config.has_bos_token = true;
  if (const auto bos = keys.id("tokenizer.ggml.bos_token_id", tokens.size())) config.bos_token = token(*bos);
  config.has_eos_token = true;
  if (const auto eos = keys.id("tokenizer.ggml.eos_token_id", tokens.size())) config.eos_token = token(*eos);
  tok->apply_config(config);
  std::vector<int32_t> stops = tok->eos_ids();
  for (const char* k : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (const auto id = keys.id(k, tokens.size())) stops.push_back(int32_t(*id));
  for (const char* text : {"<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|return|>"})
    if (const auto id = tok->token_to_id(text); id && tok->is_special(*id)) stops.push_back(*id);
  tok->set_eos_ids(stops);
  return tok;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& g) {
  const Keys keys(g);
  const std::string model = keys.string_or("tokenizer.ggml.model", "");
  if (model.empty()) throw EngineError(g.path(), "tokenizer.ggml.model", "missing: the file carries no tokenizer");
  if (model == "gpt2") return byte_level_bpe(g, keys);
  throw EngineError(g.path(), "tokenizer.ggml.model",
                    "tokenizer '" + model + "' is not read from GGUF yet (byte-level BPE, 'gpt2', is)");
}

}  // namespace moe
