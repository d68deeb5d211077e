#include "engine/tokenizer/gguf_tokenizer.h"

#include <set>
#include <unordered_map>
#include <vector>

#include "engine/common/error.h"
#include "engine/formats/json_file.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/sentencepiece_model_proto.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"
#include "engine/tokenizer/special_tokens.h"
#include "engine/tokenizer/tiktoken_pattern.h"
#include "engine/tokenizer/tiktoken_tokenizer.h"

namespace moe {

namespace {

// token_type values (llama.cpp's llama_token_type; SentencePiece's piece types use the same numbers).
constexpr int64_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

// The split rules of the byte-level vocabularies llama.cpp names in tokenizer.ggml.pre, as their
// tokenizer.json files state them: Split regexes applied in turn (DeepSeek-V3 has three), or none for
// GPT-2's, which ByteLevel applies itself. Several names can share one set of rules (llama.cpp's aliases).
struct PreTokenizer {
  std::vector<const char*> names;
  std::vector<const char*> regexes;
  bool nfc;
};
const std::vector<PreTokenizer>& pre_tokenizers() {
  static const std::vector<PreTokenizer> all = {
      {{"qwen2"},
       {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
       true},
      // Llama 3's rules, which GLM-4.5's files name glm4 (older ones chatglm-bpe).
      {{"llama-bpe", "glm4", "chatglm-bpe"},
       {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
       false},
      // GPT-OSS (tiktoken's o200k_base); llama.cpp gives MiniMax-M2 the same rules.
      {{"gpt-4o", "minimax-m2"},
       {R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
       false},
      // DeepSeek-V3, R1, V3.1: digits in threes, then runs of CJK ideographs and kana, then the rest.
      {{"deepseek-v3"},
       {R"(\p{N}{1,3})", R"([一-龥぀-ゟ゠-ヿ]+)",
        R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"},
       false},
      // DeepSeek-V2, V2-Lite, Coder-V2 (and DeepSeek LLM): six splits in turn. Each line end alone; a space and a
      // run of cased letters (Unicode's Lu, Ll and Lt, as ranges); a space and ASCII or full-width punctuation;
      // trailing whitespace; CJK and Hangul; digits. Six letters are written \x{...}: their canonical (NFC) forms
      // are other characters (Greek extended, Ohm and Kelvin signs), so a normalising editor would break the ranges.
      {{"deepseek-llm"},
       {"[\r\n]",
        R"(\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D})"
        R"(ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎ)"
        R"(ꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+)",
        R"(\s?[!-/:-~！-／：-～‘-‟　-。]+)", R"(\s+$)", R"([一-龥ࠀ-一가-퟿]+)", R"(\p{N}+)"},
       false},
      {{"gpt-2"}, {}, false},
      {{"olmo"}, {}, false},
      {{"default"}, {}, false},
  };
  return all;
}

// Kimi K2's split pattern, as its tokenization_kimi.py gives it to tiktoken (Rust regex syntax: class intersections,
// \p{Han} as a Script), for tokenizer.ggml.pre "kimi-k2".
constexpr const char* kKimiK2Pattern =
    R"([\p{Han}]+)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// GgufMetadata's reads, and the two shapes only the tokenizer has: arrays of one element kind, and token ids.
class Keys : public GgufMetadata {
 public:
  using GgufMetadata::GgufMetadata;
  // elem: string, number_integer, or number_float for any number.
  const nlohmann::json& array(const std::string& k, nlohmann::json::value_t elem, const char* what) const {
    const auto& v = value(k);
    if (!v.is_array()) throw EngineError(path(), k, std::string("expected an array of ") + what);
    for (size_t i = 0; i < v.size(); ++i) {
      const bool ok = elem == nlohmann::json::value_t::string         ? v[i].is_string()
                      : elem == nlohmann::json::value_t::number_float ? v[i].is_number()
                                                                      : v[i].is_number_integer();
      if (!ok) throw EngineError(path(), k + "[" + std::to_string(i) + "]", std::string("expected ") + what);
    }
    return v;
  }
  // array(), checked to hold one entry per token.
  const nlohmann::json& per_token(const std::string& k, nlohmann::json::value_t elem, const char* what,
                                  size_t n_tokens) const {
    const auto& v = array(k, elem, what);
    if (v.size() != n_tokens)
      throw EngineError(path(), k,
                        "has " + std::to_string(v.size()) + " entries for " + std::to_string(n_tokens) + " tokens");
    return v;
  }
  std::optional<int64_t> id(const std::string& k, size_t n_tokens) const {
    if (!has(k)) return std::nullopt;
    const auto& v = value(k);
    if (!v.is_number_integer()) throw EngineError(path(), k, "expected a token id, got " + describe_json(v));
    const int64_t id = v.get<int64_t>();
    if (id < 0 || uint64_t(id) >= n_tokens)
      throw EngineError(path(), k, "token id " + std::to_string(id) + " is past the " + std::to_string(n_tokens) + " tokens");
    return id;
  }
};

// BOS and EOS as tokenizer_config.json would give them: the tokens at tokenizer.ggml.bos_token_id and
// eos_token_id, none where the key is absent (as Hugging Face's GGUF reader has it).
detail::TokenizerConfig special_tokens_config(const Keys& keys, const nlohmann::json& tokens, bool add_bos_default) {
  detail::TokenizerConfig config;
  config.present = true;
  config.file = keys.path();
  const auto token = [&](int64_t id) { return tokens[size_t(id)].get<std::string>(); };
  config.add_bos_token = keys.boolean_if_present("tokenizer.ggml.add_bos_token").value_or(add_bos_default);
  config.has_bos_token = true;
  if (const auto bos = keys.id("tokenizer.ggml.bos_token_id", tokens.size())) config.bos_token = token(*bos);
  config.has_eos_token = true;
  if (const auto eos = keys.id("tokenizer.ggml.eos_token_id", tokens.size())) config.eos_token = token(*eos);
  return config;
}

// What ends generation: EOS, and as in llama.cpp the end-of-turn and end-of-message tokens, and the control
// tokens that close turns in the common chat formats.
std::vector<int32_t> stop_ids(const Tokenizer& tok, const Keys& keys, size_t n_tokens) {
  std::vector<int32_t> stops = tok.eos_ids();
  for (const char* k : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (const auto id = keys.id(k, n_tokens)) stops.push_back(int32_t(*id));
  for (const char* text : {"<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|return|>"})
    if (const auto id = tok.token_to_id(text); id && tok.is_special(*id)) stops.push_back(*id);
  return stops;
}

// tokenizer.ggml.pre "kimi-k2": Kimi K2's tiktoken vocabulary, which llama.cpp's converter writes as a byte-level one:
// each rank's bytes spelled through GPT-2's byte table at id = rank, then the special tokens (control), and merges it
// derives from the ranks. It is read back as the tiktoken tokenizer it was (the checkpoint's own encoder: any two
// neighbours whose bytes are a token join, lowest rank first), so the ids follow from the ranks alone and the merges,
// which the converter derived from those ranks, are not needed. tokenizer.ggml.pre names the split pattern.
std::unique_ptr<Tokenizer> kimi_tiktoken(const GgufFile& g, const Keys& keys) {
  const std::string file = g.path();
  const auto& tokens = keys.array("tokenizer.ggml.tokens", nlohmann::json::value_t::string, "token strings");
  const auto& types = keys.per_token("tokenizer.ggml.token_type", nlohmann::json::value_t::number_integer,
                                     "token types", tokens.size());
  TiktokenTokenizer::Parts parts;
  parts.file = file;
  parts.ranks_field = "tokenizer.ggml.tokens";
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& text = tokens[id].get_ref<const std::string&>();
    const int64_t type = types[id].get<int64_t>();
    const std::string at = "[" + std::to_string(id) + "]";
    if (type == kNormal) {
      if (!parts.specials.empty())
        throw EngineError(file, "tokenizer.ggml.token_type" + at,
                          "a normal token after the special tokens; a tiktoken vocabulary ranks every normal token "
                          "first (id = rank)");
      std::string bytes = detail::byte_level_decode(text);
      if (detail::byte_level_encode(bytes) != text)
        throw EngineError(file, "tokenizer.ggml.tokens" + at,
                          "token " + quoted_json(tokens[id]) + " is not bytes spelled through GPT-2's byte table");
      parts.ranks.push_back(std::move(bytes));
    } else {
      detail::AddedToken t;
      t.id = int32_t(id);
      t.content = text;
      t.special = type != kUserDefined;
      parts.specials.push_back(std::move(t));
    }
  }
  parts.regex = std::make_unique<detail::SplitRegex>(detail::rust_regex_to_pcre2(kKimiK2Pattern), false);
  if (const auto bos = keys.id("tokenizer.ggml.bos_token_id", tokens.size())) parts.bos_id = int32_t(*bos);
  if (const auto eos = keys.id("tokenizer.ggml.eos_token_id", tokens.size())) parts.eos_ids.push_back(int32_t(*eos));
  parts.add_bos = keys.boolean_if_present("tokenizer.ggml.add_bos_token").value_or(false);
  auto tok = std::make_unique<TiktokenTokenizer>(std::move(parts));
  tok->set_eos_ids(stop_ids(*tok, keys, tokens.size()));
  return tok;
}

std::unique_ptr<Tokenizer> byte_level_bpe(const GgufFile& g, const Keys& keys) {
  const std::string file = g.path();
  const auto& tokens = keys.array("tokenizer.ggml.tokens", nlohmann::json::value_t::string, "token strings");
  const auto& merges = keys.array("tokenizer.ggml.merges", nlohmann::json::value_t::string, "merges (\"a b\")");
  nlohmann::json types = nlohmann::json::array();
  if (keys.has("tokenizer.ggml.token_type"))
    types = keys.per_token("tokenizer.ggml.token_type", nlohmann::json::value_t::number_integer, "token types",
                           tokens.size());
  const std::string pre = keys.string_or("tokenizer.ggml.pre", "default");
  const PreTokenizer* rules = nullptr;
  for (const auto& p : pre_tokenizers())
    for (const char* name : p.names)
      if (pre == name) rules = &p;
  if (!rules) {
    std::string list = "kimi-k2";
    for (const auto& p : pre_tokenizers())
      for (const char* name : p.names) list += std::string(", ") + name;
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
                                     {"use_regex", rules->regexes.empty()}};
  if (rules->regexes.empty()) {
    j["pre_tokenizer"] = byte_level;
  } else {
    nlohmann::json steps = nlohmann::json::array();
    for (const char* regex : rules->regexes)
      steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}});
    steps.push_back(byte_level);
    j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
  }
  j["decoder"] = {{"type", "ByteLevel"}};
  auto tok = std::make_unique<BpeTokenizer>(j, file + " (tokenizer.ggml.*)");
  tok->apply_config(special_tokens_config(keys, tokens, /*add_bos_default=*/false));
  tok->set_eos_ids(stop_ids(*tok, keys, tokens.size()));
  return tok;
}

bool is_byte_piece_name(const std::string& s) {  // "<0x0A>", upper-case hex, as SentencePiece spells them
  const auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

// tokenizer.ggml.model "llama": SentencePiece BPE with byte fallback (Llama 2, Mistral, Mixtral). Tokens, scores
// and token types become the ModelProto of the tokenizer.model they were converted from, which libsentencepiece
// encodes (sentencepiece_model_proto.h). Around it, what llama.cpp and Hugging Face's GGUF reader agree on:
// control and unknown tokens are special tokens, user-defined ones plain added tokens, all cut out of the raw
// text first; each stretch of text between them gets the dummy "▁" prefix on its own (llama.cpp; HF's legacy
// Llama tokenizers), BOS is added unless add_bos_token says not, EOS only when add_eos_token says so.
std::unique_ptr<Tokenizer> sentencepiece_bpe(const GgufFile& g, const Keys& keys) {
  using value_t = nlohmann::json::value_t;
  const std::string file = g.path();
  const auto& tokens = keys.array("tokenizer.ggml.tokens", value_t::string, "token strings");
  const size_t n = tokens.size();
  const auto& scores = keys.per_token("tokenizer.ggml.scores", value_t::number_float, "scores (numbers)", n);
  const auto& types = keys.per_token("tokenizer.ggml.token_type", value_t::number_integer, "token types", n);

  SentencePieceModelSpec spec;
  spec.pieces.resize(n);
  size_t unknowns = 0;
  for (size_t id = 0; id < n; ++id) {
    const std::string at = "[" + std::to_string(id) + "]";
    const int64_t type = types[id].get<int64_t>();
    if (type < kNormal || type > kByte)
      throw EngineError(file, "tokenizer.ggml.token_type" + at,
                        "token type " + std::to_string(type) + " is not one of llama.cpp's 1 (normal) to 6 (byte)");
    auto& piece = spec.pieces[id];
    piece.text = tokens[id].get<std::string>();
    piece.score = float(scores[id].get<double>());
    piece.type = SentencePieceType(type);
    if (type == kByte && !is_byte_piece_name(piece.text))
      throw EngineError(file, "tokenizer.ggml.tokens" + at, "byte token '" + piece.text + "' is not spelled <0xXX>");
    if (type == kUnknown) unknowns += 1;
  }
  // SentencePiece wants exactly one unknown piece. llama.cpp's converter types <unk> CONTROL when
  // tokenizer_config.json flags it special (Mixtral's does): then unknown_token_id names it.
  const auto unk = keys.id("tokenizer.ggml.unknown_token_id", n);
  if (unknowns > 1)
    throw EngineError(file, "tokenizer.ggml.token_type",
                      std::to_string(unknowns) + " tokens have type 2 (unknown); SentencePiece has one");
  if (unknowns == 0) {
    if (!unk)
      throw EngineError(file, "tokenizer.ggml.unknown_token_id",
                        "missing, and no token has type 2 (unknown): SentencePiece needs an unknown token");
    spec.pieces[size_t(*unk)].type = SentencePieceType::Unknown;
  }

  // A ModelProto cannot hold an empty piece, nor one text twice in a group (normal, user-defined and unused
  // pieces; unknown, control and byte pieces). The first id keeps the text, as in the byte-level vocabulary;
  // later ones get an unused stand-in piece that shows the token's text (set_stand_in_text below).
  const auto reserved = [](SentencePieceType t) {
    return t == SentencePieceType::Unknown || t == SentencePieceType::Control || t == SentencePieceType::Byte;
  };
  struct StandIn {
    int32_t id;
    std::string text;
    bool special;
  };
  std::vector<StandIn> stand_ins;
  std::set<std::string> texts;
  for (const auto& p : spec.pieces) texts.insert(p.text);
  std::unordered_map<std::string, int32_t> seen[2];
  std::set<int> bytes;
  for (size_t id = 0; id < n; ++id) {
    auto& piece = spec.pieces[id];
    const bool special = piece.type == SentencePieceType::Control || piece.type == SentencePieceType::Unknown;
    if (!piece.text.empty() && seen[reserved(piece.type)].emplace(piece.text, int32_t(id)).second) {
      if (piece.type == SentencePieceType::Byte) bytes.insert(std::stoi(piece.text.substr(3, 2), nullptr, 16));
      continue;
    }
    stand_ins.push_back({int32_t(id), piece.text, special});
    std::string name = "<gguf token " + std::to_string(id) + ">";
    while (texts.count(name)) name += "'";
    piece = {name, piece.score, SentencePieceType::Unused};
  }
  if (!bytes.empty() && bytes.size() != 256)
    throw EngineError(file, "tokenizer.ggml.token_type",
                      "byte tokens (type 6) cover " + std::to_string(bytes.size()) +
                          " of the 256 bytes; SentencePiece's byte fallback needs all of them or none");

  for (size_t id = 0; id < n; ++id)
    if (spec.pieces[id].type == SentencePieceType::Unknown) spec.unk_id = int32_t(id);
  spec.bos_id = int32_t(keys.id("tokenizer.ggml.bos_token_id", n).value_or(-1));
  spec.eos_id = int32_t(keys.id("tokenizer.ggml.eos_token_id", n).value_or(-1));
  spec.pad_id = int32_t(keys.id("tokenizer.ggml.padding_token_id", n).value_or(-1));
  spec.add_dummy_prefix = keys.boolean_if_present("tokenizer.ggml.add_space_prefix").value_or(true);
  spec.remove_extra_whitespaces = keys.boolean_if_present("tokenizer.ggml.remove_extra_whitespaces").value_or(false);

  auto tok =
      std::make_unique<SentencePieceTokenizer>(serialize_sentencepiece_model(spec), file + " (tokenizer.ggml.*)");
  for (const auto& s : stand_ins) tok->set_stand_in_text(s.id, s.text, s.special);
  detail::TokenizerConfig config = special_tokens_config(keys, tokens, /*add_bos_default=*/true);
  for (size_t id = 0; id < n; ++id)
    if (spec.pieces[id].type == SentencePieceType::UserDefined)
      config.added_tokens.push_back({int32_t(id), spec.pieces[id].text, false, false, false, false, false});
  tok->apply_config(config);
  if (keys.boolean_if_present("tokenizer.ggml.add_eos_token").value_or(false) && spec.eos_id >= 0)
    tok->set_appended_eos(spec.eos_id);
  tok->set_eos_ids(stop_ids(*tok, keys, n));
  return tok;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& g) {
  const Keys keys(g);
  const std::string model = keys.string_or("tokenizer.ggml.model", "");
  if (model.empty()) throw EngineError(g.path(), "tokenizer.ggml.model", "missing: the file carries no tokenizer");
  if (model == "gpt2" && keys.string_or("tokenizer.ggml.pre", "") == "kimi-k2") return kimi_tiktoken(g, keys);
  if (model == "gpt2") return byte_level_bpe(g, keys);
  if (model == "llama") return sentencepiece_bpe(g, keys);
  throw EngineError(g.path(), "tokenizer.ggml.model",
                    "tokenizer '" + model + "' is not read from GGUF yet (byte-level BPE, 'gpt2', and SentencePiece "
                    "BPE, 'llama', are)");
}

}  // namespace moe
