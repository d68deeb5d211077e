#include "engine/tokenizer/bpe_tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <queue>

#include "engine/common/error.h"
#include "engine/formats/json_file.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"

namespace moe {

namespace {

// Ids past this are taken for a broken file rather than a vocabulary (the largest real ones are ~256k).
constexpr int64_t kMaxTokenId = 1 << 24;
// Pieces longer than this are not cached (long whitespace or digit runs would only pollute the cache).
constexpr size_t kMaxCachedPiece = 64;
constexpr size_t kMaxCacheEntries = 1 << 16;

std::string type_of(const nlohmann::json& node) {
  if (node.is_object() && node.contains("type") && node["type"].is_string()) return node["type"].get<std::string>();
  return {};
}

bool contains_type(const nlohmann::json& node, const std::string& type, const char* list_key) {
  if (!node.is_object()) return false;
  const std::string t = type_of(node);
  if (t == type) return true;
  if (t == "Sequence" && node.contains(list_key) && node[list_key].is_array())
    for (const auto& child : node[list_key])
      if (contains_type(child, type, list_key)) return true;
  return false;
}

bool bool_or(const nlohmann::json& node, const char* key, bool fallback, const std::string& file,
             const std::string& field) {
  if (!node.contains(key) || node[key].is_null()) return fallback;
  if (!node[key].is_boolean()) throw EngineError(file, field + "." + key, "expected true or false");
  return node[key].get<bool>();
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

BpeTokenizer::~BpeTokenizer() = default;

bool BpeTokenizer::is_byte_level(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) return false;
  const auto& model = j["model"];
  const std::string type = type_of(model);
  if (!(type == "BPE" || (type.empty() && model.contains("merges")))) return false;
  return (j.contains("pre_tokenizer") && contains_type(j["pre_tokenizer"], "ByteLevel", "pretokenizers")) ||
         (j.contains("decoder") && contains_type(j["decoder"], "ByteLevel", "decoders"));
}

BpeTokenizer::BpeTokenizer(const nlohmann::json& j, const std::string& file) : file_(file) {
  if (!j.is_object()) throw EngineError(file_, "", "expected a JSON object");
  if (!j.contains("model") || j["model"].is_null()) throw EngineError(file_, "model", "missing");
  parse_model(j["model"]);

  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const auto& list = j["added_tokens"];
    if (!list.is_array()) throw EngineError(file_, "added_tokens", "expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      detail::AddedToken t = detail::parse_added_token(list[i], file_, field);
      if (t.id >= kMaxTokenId) throw EngineError(file_, field + ".id", "id " + std::to_string(t.id) + " is out of range");
      add_added_token(t);
    }
  }
  if (j.contains("normalizer")) parse_normalizer(j["normalizer"], "normalizer");
  if (j.contains("pre_tokenizer")) parse_pre_tokenizer(j["pre_tokenizer"], "pre_tokenizer");
  if (j.contains("post_processor")) parse_post_processor(j["post_processor"]);
  finish_tables();
  add_bos_ = template_bos_.has_value();
  bos_id_ = template_bos_;
}

void BpeTokenizer::parse_model(const nlohmann::json& model) {
  if (!model.is_object()) throw EngineError(file_, "model", "expected an object");
  const std::string type = type_of(model);
  if (model.contains("type") && !model["type"].is_string()) throw EngineError(file_, "model.type", "expected a string");
  if (type.empty() && !model.contains("merges")) throw EngineError(file_, "model.type", "missing");
  if (!type.empty() && type != "BPE") {
    const bool known = type == "WordPiece" || type == "WordLevel" || type == "Unigram";
    throw EngineError(file_, "model.type",
                      known ? "'" + type + "' models are not supported (byte-level BPE only)"
                            : "unknown model type '" + type + "'");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() &&
        !(model[key].is_string() && model[key].get<std::string>().empty()))
      throw EngineError(file_, std::string("model.") + key, "not supported by the byte-level BPE reader");
  }

  // vocab: token string → id.
  if (!model.contains("vocab") || !model["vocab"].is_object())
    throw EngineError(file_, "model.vocab", "missing or not an object of token → id");
  int64_t max_id = -1;
  for (const auto& [token, value] : model["vocab"].items()) {
    const std::string field = "model.vocab[\"" + token + "\"]";
    if (!value.is_number_integer()) throw EngineError(file_, field, "expected an integer id");
    const int64_t id = value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(kMaxTokenId)
                           ? kMaxTokenId
                           : value.get<int64_t>();
    if (id < 0 || id >= kMaxTokenId)
      throw EngineError(file_, field, "id " + quoted_json(value) + " is out of range (0.." + std::to_string(kMaxTokenId - 1) + ")");
    vocab_.emplace(token, int32_t(id));
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(size_t(max_id + 1), std::string());
  std::vector<uint8_t> used(id_to_token_.size(), 0);
  for (const auto& [token, id] : vocab_) {
    if (used[size_t(id)])
      throw EngineError(file_, "model.vocab", "id " + std::to_string(id) + " is given to both '" +
                                                  id_to_token_[size_t(id)] + "' and '" + token + "'");
    used[size_t(id)] = 1;
    id_to_token_[size_t(id)] = token;
  }

  // merges: rank = index; "a b" strings or ["a", "b"] pairs.
  if (model.contains("merges") && !model["merges"].is_null()) {
    const auto& merges = model["merges"];
    if (!merges.is_array()) throw EngineError(file_, "model.merges", "expected an array");
    merges_.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const std::string field = "model.merges[" + std::to_string(i) + "]";
      const auto& m = merges[i];
      std::string left, right;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || space == 0 || space + 1 >= s.size() ||
            s.find(' ', space + 1) != std::string::npos)
          throw EngineError(file_, field, "expected \"left right\" (two symbols separated by one space)");
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        left = m[0].get<std::string>();
        right = m[1].get<std::string>();
      } else {
        throw EngineError(file_, field, "expected \"left right\" or [\"left\", \"right\"]");
      }
      const auto l = vocab_.find(left), r = vocab_.find(right), lr = vocab_.find(left + right);
      if (l == vocab_.end()) throw EngineError(file_, field, "'" + left + "' is not in model.vocab");
      if (r == vocab_.end()) throw EngineError(file_, field, "'" + right + "' is not in model.vocab");
      if (lr == vocab_.end()) throw EngineError(file_, field, "the merged '" + left + right + "' is not in model.vocab");
      merges_.try_emplace(pair_key(l->second, r->second), Merge{int32_t(i), lr->second});
    }
  }

  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    if (!model["unk_token"].is_string()) throw EngineError(file_, "model.unk_token", "expected a string or null");
    const auto it = vocab_.find(model["unk_token"].get<std::string>());
    if (it == vocab_.end()) throw EngineError(file_, "model.unk_token", "not in model.vocab");
    unk_id_ = it->second;
  }
  fuse_unk_ = bool_or(model, "fuse_unk", false, file_, "model");
  ignore_merges_ = bool_or(model, "ignore_merges", false, file_, "model");
}

void BpeTokenizer::parse_normalizer(const nlohmann::json& node, const std::string& field) {
  if (node.is_null()) return;
  if (!node.is_object()) throw EngineError(file_, field, "expected an object or null");
  const std::string type = type_of(node);
  if (type == "NFC") normalizers_.push_back(Normalization::NFC);
  else if (type == "NFD") normalizers_.push_back(Normalization::NFD);
  else if (type == "NFKC") normalizers_.push_back(Normalization::NFKC);
  else if (type == "NFKD") normalizers_.push_back(Normalization::NFKD);
  else if (type == "Sequence") {
    if (!node.contains("normalizers") || !node["normalizers"].is_array())
      throw EngineError(file_, field + ".normalizers", "expected an array");
    const auto& list = node["normalizers"];
    for (size_t i = 0; i < list.size(); ++i) parse_normalizer(list[i], field + ".normalizers[" + std::to_string(i) + "]");
  } else {
    throw EngineError(file_, field + ".type", "normalizer '" + type + "' is not supported");
  }
}

void BpeTokenizer::parse_pre_tokenizer(const nlohmann::json& node, const std::string& field) {
  if (node.is_null()) return;
  if (!node.is_object()) throw EngineError(file_, field, "expected an object or null");
  const std::string type = type_of(node);
  if (type == "Sequence") {
    if (!node.contains("pretokenizers") || !node["pretokenizers"].is_array())
      throw EngineError(file_, field + ".pretokenizers", "expected an array");
    const auto& list = node["pretokenizers"];
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(list[i], field + ".pretokenizers[" + std::to_string(i) + "]");
  } else if (type == "Split") {
    if (!node.contains("pattern") || !node["pattern"].is_object())
      throw EngineError(file_, field + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    const auto& pattern = node["pattern"];
    bool literal = false;
    std::string source, pattern_field;
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      source = pattern["Regex"].get<std::string>();
      pattern_field = field + ".pattern.Regex";
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      source = pattern["String"].get<std::string>();
      pattern_field = field + ".pattern.String";
      literal = true;
    } else {
      throw EngineError(file_, field + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    if (bool_or(node, "invert", false, file_, field))
      throw EngineError(file_, field + ".invert", "inverted splits are not supported");
    PreTokenizeStep step;
    try {
      step.regex = std::make_shared<detail::SplitRegex>(source, literal);
    } catch (const std::invalid_argument& e) {
      throw EngineError(file_, pattern_field, std::string("bad regex: ") + e.what());
    }
    const std::string behavior =
        node.contains("behavior") && node["behavior"].is_string() ? node["behavior"].get<std::string>() : "";
    if (behavior == "Isolated") step.behavior = SplitBehavior::Isolated;
    else if (behavior == "Removed") step.behavior = SplitBehavior::Removed;
    else if (behavior == "MergedWithPrevious") step.behavior = SplitBehavior::MergedWithPrevious;
    else if (behavior == "MergedWithNext") step.behavior = SplitBehavior::MergedWithNext;
    else if (behavior == "Contiguous") step.behavior = SplitBehavior::Contiguous;
    else throw EngineError(file_, field + ".behavior", "unknown split behavior '" + behavior + "'");
    pre_steps_.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    // HF defaults: add_prefix_space true, use_regex true. The byte mapping itself happens in encode_piece.
    PreTokenizeStep step;
    step.add_prefix_space = bool_or(node, "add_prefix_space", true, file_, field);
    if (bool_or(node, "use_regex", true, file_, field))
      step.regex = std::make_shared<detail::SplitRegex>(detail::kGpt2SplitPattern, false);
    if (step.regex || step.add_prefix_space) pre_steps_.push_back(std::move(step));
  } else if (type == "Digits") {
    PreTokenizeStep step;
    const bool individual = bool_or(node, "individual_digits", false, file_, field);
    step.regex = std::make_shared<detail::SplitRegex>("\\p{N}", false);
    step.behavior = individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous;
    pre_steps_.push_back(std::move(step));
  } else {
    throw EngineError(file_, field + ".type", "pre-tokenizer '" + type + "' is not supported");
  }
}

void BpeTokenizer::parse_post_processor(const nlohmann::json& node) {
  // Only used to learn whether the template starts with a special token (a BOS added by the tokenizer);
  // tokenizer_config.json's add_bos_token / bos_token take precedence.
  if (!node.is_object()) return;
  const std::string type = type_of(node);
  if (type == "Sequence" && node.contains("processors") && node["processors"].is_array()) {
    for (const auto& child : node["processors"]) parse_post_processor(child);
    return;
  }
  if (type != "TemplateProcessing" || !node.contains("single") || !node["single"].is_array() ||
      node["single"].empty())
    return;
  const auto& first = node["single"][0];
  if (!first.is_object() || !first.contains("SpecialToken") || !first["SpecialToken"].is_object()) return;
  const auto& name = first["SpecialToken"].value("id", nlohmann::json());
  if (!name.is_string()) return;
  const std::string token = name.get<std::string>();
  if (node.contains("special_tokens") && node["special_tokens"].is_object() && node["special_tokens"].contains(token)) {
    const auto& ids = node["special_tokens"][token].value("ids", nlohmann::json());
    if (ids.is_array() && ids.size() == 1 && ids[0].is_number_integer()) {
      template_bos_ = ids[0].get<int32_t>();
      return;
    }
  }
  const auto it = added_.find(token);
  if (it != added_.end()) template_bos_ = it->second;
  else if (const auto v = vocab_.find(token); v != vocab_.end()) template_bos_ = v->second;
}

void BpeTokenizer::add_added_token(const detail::AddedToken& token) {
  if (added_.count(token.content)) return;  // first definition wins (tokenizer.json before tokenizer_config.json)
  added_tokens_.push_back(token);
  added_.emplace(token.content, token.id);
}

void BpeTokenizer::rebuild_matchers() {
  std::vector<detail::AddedToken> raw, normalized;
  for (const auto& t : added_tokens_) {
    if (!t.normalized) {
      raw.push_back(t);
    } else {
      detail::AddedToken n = t;
      n.content = normalize(t.content);
      normalized.push_back(std::move(n));
    }
  }
  raw_matcher_ = detail::AddedTokenMatcher(std::move(raw));
  normalized_matcher_ = detail::AddedTokenMatcher(std::move(normalized));
}

void BpeTokenizer::finish_tables() {
  int64_t max_id = int64_t(id_to_token_.size()) - 1;
  for (const auto& t : added_tokens_) max_id = std::max<int64_t>(max_id, t.id);
  id_to_token_.resize(size_t(max_id + 1));
  special_.assign(id_to_token_.size(), 0);
  for (const auto& t : added_tokens_) {
    id_to_token_[size_t(t.id)] = t.content;
    special_[size_t(t.id)] = t.special ? 1 : 0;
  }
  id_bytes_.resize(id_to_token_.size());
  for (size_t id = 0; id < id_to_token_.size(); ++id) id_bytes_[id] = detail::byte_level_decode(id_to_token_[id]);
  const auto& table = detail::byte_level_table();
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_.find(table.mapped[b]);
    byte_symbol_[b] = it == vocab_.end() ? -1 : it->second;
  }
  rebuild_matchers();
  std::lock_guard<std::mutex> lock(cache_mutex_);
  cache_.clear();
}

void BpeTokenizer::set_eos_ids(std::vector<int32_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  eos_ids_ = std::move(ids);
}

void BpeTokenizer::apply_config(const detail::TokenizerConfig& cfg) {
  if (!cfg.present) return;
  bool changed = false;
  for (const auto& t : cfg.added_tokens) {
    if (added_.count(t.content)) continue;
    if (t.id >= kMaxTokenId) throw EngineError(cfg.file, "added_tokens_decoder", "id out of range");
    add_added_token(t);
    changed = true;
  }
  if (changed) finish_tables();
  auto lookup = [&](const std::string& token, const char* field) -> int32_t {
    const auto id = token_to_id(token);
    if (!id) throw EngineError(cfg.file, field, "'" + token + "' is not a token of " + file_);
    return *id;
  };
  if (cfg.has_bos_token) bos_id_ = cfg.bos_token ? std::optional<int32_t>(lookup(*cfg.bos_token, "bos_token")) : std::nullopt;
  add_bos_ = cfg.add_bos_token.value_or(template_bos_.has_value());
  if (cfg.has_eos_token) {
    eos_ids_.clear();
    if (cfg.eos_token) eos_ids_.push_back(lookup(*cfg.eos_token, "eos_token"));
  }
}

std::string BpeTokenizer::normalize(std::string_view text) const {
  std::string s(text);
  if (normalizers_.empty() || is_ascii(s)) return s;  // every Unicode normal form leaves ASCII alone
  for (Normalization n : normalizers_) {
    int options = UTF8PROC_STABLE;
    switch (n) {
      case Normalization::NFC: options |= UTF8PROC_COMPOSE; break;
      case Normalization::NFD: options |= UTF8PROC_DECOMPOSE; break;
      case Normalization::NFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
      case Normalization::NFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n_out = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                                utf8proc_ssize_t(s.size()), &out, utf8proc_option_t(options));
    if (n_out >= 0 && out) s.assign(reinterpret_cast<const char*>(out), size_t(n_out));
    std::free(out);
  }
  return s;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids;
  if (add_special && add_bos_ && bos_id_) ids.push_back(*bos_id_);
  std::string repaired;
  if (!utf8::is_valid(text)) {  // the regexes and normalizers need valid UTF-8: broken bytes become U+FFFD
    repaired = utf8::lossy(text);
    text = repaired;
  }
  for (const detail::TextPiece& raw : raw_matcher_.split(text)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    const std::string normalized = normalize(raw.text);
    for (const detail::TextPiece& piece : normalized_matcher_.split(normalized)) {
      if (piece.id >= 0) ids.push_back(piece.id);
      else encode_plain(piece.text, ids);
    }
  }
  return ids;
}

void BpeTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
  std::vector<std::string> pieces{std::string(text)};
  std::vector<std::string> next;
  for (const PreTokenizeStep& step : pre_steps_) {
    next.clear();
    for (std::string& piece : pieces) {
      if (step.add_prefix_space && (piece.empty() || piece[0] != ' ')) piece.insert(0, 1, ' ');
      if (!step.regex) {
        next.push_back(std::move(piece));
        continue;
      }
      const auto matches = step.regex->find_all(piece);
      auto emit = [&](size_t b, size_t e) {
        if (e > b) next.push_back(piece.substr(b, e - b));
      };
      size_t gap = 0;       // start of the text not yet covered by a match
      size_t pending = 0;   // MergedWithNext: start of the match waiting for its gap; Contiguous: run start
      bool has_pending = false;
      for (const auto& [b, e] : matches) {
        switch (step.behavior) {
          case SplitBehavior::Isolated:
            emit(gap, b);
            emit(b, e);
            break;
          case SplitBehavior::Removed:
            emit(gap, b);
            break;
          case SplitBehavior::MergedWithPrevious:
            emit(gap, e);
            break;
          case SplitBehavior::MergedWithNext:
            emit(has_pending ? pending : gap, b);
            pending = b;
            has_pending = true;
            break;
          case SplitBehavior::Contiguous:
            if (has_pending && b == gap) break;  // extends the current run of matches
            if (has_pending) emit(pending, gap);
            emit(gap, b);
            pending = b;
            has_pending = true;
            break;
        }
        gap = e;
      }
      if (step.behavior == SplitBehavior::MergedWithNext && has_pending) emit(pending, piece.size());
      else {
        if (step.behavior == SplitBehavior::Contiguous && has_pending) emit(pending, gap);
        emit(gap, piece.size());
      }
    }
    pieces.swap(next);
  }
  for (const std::string& piece : pieces) encode_piece(piece, ids);
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.empty()) return;
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(std::string(piece));
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> out;
  merge_symbols(piece, out);
  ids.insert(ids.end(), out.begin(), out.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(piece), std::move(out));
  }
}

void BpeTokenizer::merge_symbols(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges_) {  // a piece that is a whole vocabulary entry is taken as is (Llama-3 style)
    if (const auto it = vocab_.find(detail::byte_level_encode(piece)); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols in a doubly linked list; candidate merges in a min-heap on (rank, position). Stale candidates
  // (a side already merged into something else) are recognised by their ids and skipped.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  struct Candidate {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int32_t n = int32_t(piece.size());
  std::vector<Symbol> sym(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) sym[size_t(i)] = {byte_symbol_[static_cast<unsigned char>(piece[size_t(i)])], i - 1, i + 1 < n ? i + 1 : -1};
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = sym[size_t(left)].next;
    if (right < 0) return;
    const int32_t a = sym[size_t(left)].id, b = sym[size_t(right)].id;
    if (a < 0 || b < 0) return;
    const auto it = merges_.find(pair_key(a, b));
    if (it != merges_.end()) heap.push({it->second.rank, left, a, b, it->second.merged});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = sym[size_t(c.pos)];
    if (left.id != c.left || left.next < 0 || sym[size_t(left.next)].id != c.right) continue;
    const int32_t right = left.next;
    left.id = c.merged;
    left.next = sym[size_t(right)].next;
    if (left.next >= 0) sym[size_t(left.next)].prev = c.pos;
    sym[size_t(right)].id = -2;  // dead
    consider(left.prev);
    consider(c.pos);
  }
  bool last_was_unk = false;
  for (int32_t i = 0; i >= 0 && i < n; i = sym[size_t(i)].next) {
    const int32_t id = sym[size_t(i)].id;
    if (id >= 0) {
      out.push_back(id);
      last_was_unk = false;
    } else if (unk_id_ && !(fuse_unk_ && last_was_unk)) {  // a byte missing from the vocabulary
      out.push_back(*unk_id_);
      last_was_unk = true;
    }
  }
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  return detail::decode_token_bytes(*this, ids, skip_special);
}

std::string BpeTokenizer::token_bytes(int32_t id, int32_t /*previous*/) const {
  if (id < 0 || id >= size()) return {};
  return id_bytes_[size_t(id)];
}

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (const auto it = added_.find(key); it != added_.end()) return it->second;
  if (const auto it = vocab_.find(key); it != vocab_.end()) return it->second;
  return std::nullopt;
}

std::string BpeTokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= size()) return {};
  return id_to_token_[size_t(id)];
}

bool BpeTokenizer::is_special(int32_t id) const { return id >= 0 && id < size() && special_[size_t(id)]; }

}  // namespace moe
