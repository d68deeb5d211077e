#include "engine/tokenizer/special_tokens.h"

#include <algorithm>
#include <limits>

#include "engine/common/error.h"
#include "engine/formats/json_file.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace moe::detail {

namespace {

bool is_word_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

bool flag(const nlohmann::json& obj, const char* key, const std::string& file, const std::string& field) {
  if (!obj.contains(key) || obj[key].is_null()) return false;
  if (!obj[key].is_boolean()) throw EngineError(file, field + "." + key, "expected true or false");
  return obj[key].get<bool>();
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  tokens_.erase(std::remove_if(tokens_.begin(), tokens_.end(), [](const AddedToken& t) { return t.content.empty(); }),
                tokens_.end());
  for (uint32_t i = 0; i < tokens_.size(); ++i)
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  for (auto& bucket : by_first_byte_)
    std::stable_sort(bucket.begin(), bucket.end(),
                     [&](uint32_t a, uint32_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

std::vector<TextPiece> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<TextPiece> out;
  if (tokens_.empty()) {
    if (!text.empty()) out.push_back({text, -1});
    return out;
  }
  size_t plain_start = 0;  // start of the pending plain text
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (uint32_t index : by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = tokens_[index];
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        const size_t end = i + t.content.size();
        if ((i > 0 && is_word_byte(static_cast<unsigned char>(text[i - 1]))) ||
            (end < text.size() && is_word_byte(static_cast<unsigned char>(text[end]))))
          continue;
      }
      hit = &t;
      break;  // the bucket is sorted longest first
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t plain_end = i;
    if (hit->lstrip) plain_end -= utf8::python_space_before(text, plain_start, i);
    if (plain_end > plain_start) out.push_back({text.substr(plain_start, plain_end - plain_start), -1});
    out.push_back({text.substr(i, hit->content.size()), hit->id});
    i += hit->content.size();
    if (hit->rstrip) i += utf8::python_space_after(text, i);
    plain_start = i;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
  return out;
}

std::optional<std::string> token_content(const nlohmann::json& value, const std::string& file,
                                         const std::string& field) {
  if (value.is_null()) return std::nullopt;
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string())
    return value["content"].get<std::string>();
  throw EngineError(file, field, "expected a token string, an object with \"content\", or null");
}

AddedToken parse_added_token(const nlohmann::json& value, const std::string& file, const std::string& field,
                             std::optional<int64_t> id) {
  if (!value.is_object()) throw EngineError(file, field, "expected an object");
  AddedToken t;
  if (value.contains("id")) {
    const auto& v = value["id"];
    if (!v.is_number_integer()) throw EngineError(file, field + ".id", "expected an integer id");
    id = v.get<int64_t>();
  }
  if (!id) throw EngineError(file, field + ".id", "missing");
  if (*id < 0 || *id > std::numeric_limits<int32_t>::max())
    throw EngineError(file, field + ".id", "id " + std::to_string(*id) + " is out of range");
  t.id = int32_t(*id);
  if (!value.contains("content") || !value["content"].is_string())
    throw EngineError(file, field + ".content", "expected the token string");
  t.content = value["content"].get<std::string>();
  if (t.content.empty()) throw EngineError(file, field + ".content", "empty token");
  t.special = flag(value, "special", file, field);
  t.lstrip = flag(value, "lstrip", file, field);
  t.rstrip = flag(value, "rstrip", file, field);
  t.single_word = flag(value, "single_word", file, field);
  t.normalized = flag(value, "normalized", file, field);
  return t;
}

TokenizerConfig read_tokenizer_config(const std::filesystem::path& dir) {
  TokenizerConfig cfg;
  const auto path = dir / "tokenizer_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return cfg;
  cfg.present = true;
  cfg.file = path.string();
  const nlohmann::json j = load_json_file(path);
  if (!j.is_object()) throw EngineError(cfg.file, "", "expected a JSON object");
  if (j.contains("add_bos_token") && !j["add_bos_token"].is_null()) {
    if (!j["add_bos_token"].is_boolean()) throw EngineError(cfg.file, "add_bos_token", "expected true or false");
    cfg.add_bos_token = j["add_bos_token"].get<bool>();
  }
  if (j.contains("bos_token")) {
    cfg.has_bos_token = true;
    cfg.bos_token = token_content(j["bos_token"], cfg.file, "bos_token");
  }
  if (j.contains("eos_token")) {
    cfg.has_eos_token = true;
    cfg.eos_token = token_content(j["eos_token"], cfg.file, "eos_token");
  }
  if (j.contains("added_tokens_decoder") && !j["added_tokens_decoder"].is_null()) {
    const auto& dec = j["added_tokens_decoder"];
    if (!dec.is_object()) throw EngineError(cfg.file, "added_tokens_decoder", "expected an object id → token");
    for (const auto& [key, value] : dec.items()) {
      const std::string field = "added_tokens_decoder." + key;
      int64_t id = -1;
      try {
        size_t used = 0;
        id = std::stoll(key, &used);
        if (used != key.size()) throw std::invalid_argument(key);
      } catch (const std::exception&) {
        throw EngineError(cfg.file, field, "the key is not an integer id");
      }
      cfg.added_tokens.push_back(parse_added_token(value, cfg.file, field, id));
    }
  }
  if (j.contains("auto_map") && j["auto_map"].is_object() && j["auto_map"].contains("AutoTokenizer")) {
    // A class name, or [slow class, fast class] with either one null. Anything else is left unread: only a
    // tiktoken folder needs it, and that one reports its absence.
    const auto& entry = j["auto_map"]["AutoTokenizer"];
    if (entry.is_string()) cfg.auto_tokenizer = entry.get<std::string>();
    else if (entry.is_array())
      for (const auto& name : entry)
        if (name.is_string()) {
          cfg.auto_tokenizer = name.get<std::string>();
          break;
        }
  }
  return cfg;
}

std::string decode_token_bytes(const Tokenizer& tok, std::span<const int32_t> ids, bool skip_special) {
  std::string bytes;
  int32_t previous = -1;
  for (int32_t id : ids) {
    if (skip_special && tok.is_special(id)) continue;
    bytes += tok.token_bytes(id, previous);
    previous = id;
  }
  return utf8::lossy(bytes);
}

}  // namespace moe::detail
