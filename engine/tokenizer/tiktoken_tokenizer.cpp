#include "engine/tokenizer/tiktoken_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <queue>
#include <sstream>

#include "engine/common/error.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tiktoken_pattern.h"
#include "engine/tokenizer/utf8.h"

namespace moe {

namespace {

// The checkpoint's encode() hands tiktoken at most this many characters at a time ...
constexpr size_t kMaxEncodeChars = 400'000;
// ... and cuts runs of whitespace or of non-whitespace longer than this (tiktoken issue 195).
constexpr size_t kMaxRunChars = 25'000;
constexpr int64_t kMaxRank = 1 << 24;

std::optional<std::string> base64_decode(std::string_view s) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  if (s.size() % 4 == 1) return std::nullopt;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    const int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// The stretches the checkpoint's _split_whitespaces_or_nonwhitespaces cuts: a new stretch starts where a
// run of whitespace (Python's str.isspace) or of non-whitespace would pass kMaxRunChars characters.
std::vector<std::string_view> split_long_runs(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0, i = 0, run = 0;
  bool run_is_space = false;
  bool first = true;
  while (i < text.size()) {
    const size_t at = i;
    const bool space = utf8::is_python_space(utf8::next(text, i));
    if (first || space != run_is_space) {
      run = 1;
      run_is_space = space;
      first = false;
    } else if (++run > kMaxRunChars) {
      out.push_back(text.substr(start, at - start));
      start = at;
      run = 1;
    }
  }
  out.push_back(text.substr(start));
  return out;
}

// A checkpoint folder's tokenizer: the ranks of tiktoken.model, the split pattern and the number of reserved special
// tokens from the Python file, the special tokens' names and BOS/EOS from tokenizer_config.json.
TiktokenTokenizer::Parts read_folder(const std::filesystem::path& model_file, const std::filesystem::path& python_file,
                                     const detail::TokenizerConfig& config) {
  TiktokenTokenizer::Parts parts;
  parts.file = model_file.string();
  const std::string& file = parts.file;
  std::ifstream in(model_file, std::ios::binary);
  if (!in) throw EngineError(file, "", "cannot open the file");
  std::vector<std::pair<int64_t, std::string>> ranked;  // the same bytes twice: the constructor says which ranks
  std::string line;
  int64_t max_rank = -1;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::string where = "line " + std::to_string(number);
    std::istringstream fields(line);
    std::string token, rank_text, extra;
    if (!(fields >> token >> rank_text) || (fields >> extra))
      throw EngineError(file, where, "expected \"<base64 bytes> <rank>\"");
    auto bytes = base64_decode(token);
    if (!bytes || bytes->empty()) throw EngineError(file, where, "the token is not base64 of at least one byte");
    int64_t rank = -1;
    try {
      size_t used = 0;
      rank = std::stoll(rank_text, &used);
      if (used != rank_text.size()) rank = -1;
    } catch (const std::exception&) {
    }
    if (rank < 0 || rank >= kMaxRank) throw EngineError(file, where, "the rank is not an integer in [0, 2^24)");
    max_rank = std::max(max_rank, rank);
    ranked.emplace_back(rank, std::move(*bytes));
  }
  if (ranked.empty()) throw EngineError(file, "", "no tokens (expected \"<base64 bytes> <rank>\" lines)");
  // The ranks must be 0..n-1: the special tokens take the ids after them.
  if (max_rank >= int64_t(ranked.size()))
    throw EngineError(file, "", "ranks are not 0.." + std::to_string(ranked.size() - 1) + " (rank " +
                                    std::to_string(max_rank) + "), so they would collide with the special tokens");
  parts.ranks.resize(ranked.size());
  for (auto& [rank, bytes] : ranked) {
    if (!parts.ranks[size_t(rank)].empty()) throw EngineError(file, "", "rank " + std::to_string(rank) + " given twice");
    parts.ranks[size_t(rank)] = std::move(bytes);
  }

  const std::string py = python_file.string();
  const auto pattern = detail::read_python_string(python_file, "pat_str");
  if (!pattern) throw EngineError(py, "pat_str", "not found (the tokenizer's split pattern)");
  try {
    parts.regex = std::make_unique<detail::SplitRegex>(detail::rust_regex_to_pcre2(*pattern), false);
  } catch (const std::invalid_argument& e) {
    throw EngineError(py, "pat_str", e.what());
  }
  const auto reserved = detail::read_python_int(python_file, "num_reserved_special_tokens");
  if (!reserved) throw EngineError(py, "num_reserved_special_tokens", "not found");
  if (*reserved < 0 || *reserved > 1 << 20) throw EngineError(py, "num_reserved_special_tokens", "out of range");
  const int64_t first_special = int64_t(parts.ranks.size()), end_special = first_special + *reserved;
  for (int64_t id = first_special; id < end_special; ++id) {
    detail::AddedToken t;
    t.id = int32_t(id);
    t.content = "<|reserved_token_" + std::to_string(id) + "|>";
    parts.specials.push_back(t);
  }
  for (const detail::AddedToken& named : config.added_tokens) {
    if (named.id < first_special || named.id >= end_special)
      throw EngineError(config.file, "added_tokens_decoder." + std::to_string(named.id),
                        "outside the special tokens [" + std::to_string(first_special) + ", " +
                            std::to_string(end_special) + ") that " + py + " reserves after the " +
                            std::to_string(first_special) + " ranks of " + file);
    parts.specials[size_t(named.id - first_special)] = named;
  }
  auto lookup = [&](const std::string& token, const char* field) -> int32_t {
    for (const detail::AddedToken& t : parts.specials)
      if (t.content == token) return t.id;
    throw EngineError(config.file, field, "'" + token + "' is not a special token");
  };
  if (config.bos_token) parts.bos_id = lookup(*config.bos_token, "bos_token");
  if (config.eos_token) parts.eos_ids.push_back(lookup(*config.eos_token, "eos_token"));
  parts.add_bos = config.add_bos_token.value_or(false);
  return parts;
}

}  // namespace

TiktokenTokenizer::~TiktokenTokenizer() = default;

TiktokenTokenizer::TiktokenTokenizer(const std::filesystem::path& model_file, const std::filesystem::path& python_file,
                                     const detail::TokenizerConfig& config)
    : TiktokenTokenizer(read_folder(model_file, python_file, config)) {}

TiktokenTokenizer::TiktokenTokenizer(Parts parts)
    : file_(std::move(parts.file)), bytes_(std::move(parts.ranks)), regex_(std::move(parts.regex)),
      bos_id_(parts.bos_id), add_bos_(parts.add_bos), eos_ids_(std::move(parts.eos_ids)) {
  const std::string& field = parts.ranks_field;
  if (bytes_.empty()) throw EngineError(file_, field, "no tokens");
  if (!regex_) throw EngineError(file_, "", "no split pattern");
  pattern_ = regex_->pattern();
  for (size_t rank = 0; rank < bytes_.size(); ++rank) {
    const std::string at = field.empty() ? "rank " + std::to_string(rank) : field + "[" + std::to_string(rank) + "]";
    if (bytes_[rank].empty()) throw EngineError(file_, at, "an empty token");
    if (!ranks_.emplace(bytes_[rank], int32_t(rank)).second)
      throw EngineError(file_, at, "the same bytes as rank " + std::to_string(ranks_.at(bytes_[rank])));
  }
  for (int b = 0; b < 256; ++b)
    if (!ranks_.count(std::string(1, char(b))))
      throw EngineError(file_, field, "byte " + std::to_string(b) + " has no rank, so some text could not be encoded");
  base_tokens_ = int32_t(bytes_.size());

  bytes_.resize(bytes_.size() + parts.specials.size());
  special_.assign(bytes_.size(), 0);
  for (size_t i = 0; i < parts.specials.size(); ++i) {
    detail::AddedToken& t = parts.specials[i];
    if (t.id != base_tokens_ + int32_t(i))
      throw EngineError(file_, field, "special token '" + t.content + "' has id " + std::to_string(t.id) +
                                          ", not " + std::to_string(base_tokens_ + int32_t(i)) +
                                          " (the special tokens follow the ranks, in order)");
    bytes_[size_t(t.id)] = t.content;
    special_[size_t(t.id)] = t.special ? 1 : 0;
    if (!special_ids_.emplace(t.content, t.id).second)
      throw EngineError(file_, field, "special token '" + t.content + "' named twice");
    // Every special token is matched in text as it is (the checkpoint encodes with allowed_special="all").
    t.lstrip = t.rstrip = t.single_word = t.normalized = false;
  }
  matcher_ = detail::AddedTokenMatcher(std::move(parts.specials));
  for (const int32_t id : eos_ids_)
    if (id < 0 || id >= size()) throw EngineError(file_, "eos", "token id " + std::to_string(id) + " is past the vocabulary");
  if (bos_id_ && (*bos_id_ < 0 || *bos_id_ >= size()))
    throw EngineError(file_, "bos", "token id " + std::to_string(*bos_id_) + " is past the vocabulary");
}

std::optional<int32_t> TiktokenTokenizer::rank(std::string_view bytes) const {
  const auto it = ranks_.find(bytes);
  if (it == ranks_.end()) return std::nullopt;
  return it->second;
}

std::vector<int32_t> TiktokenTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids;
  if (add_special && add_bos_ && bos_id_) ids.push_back(*bos_id_);
  std::string repaired;
  if (!utf8::is_valid(text)) {  // the pattern needs valid UTF-8: broken bytes become U+FFFD
    repaired = utf8::lossy(text);
    text = repaired;
  }
  for (const detail::TextPiece& piece : matcher_.split(text)) {
    if (piece.id >= 0) ids.push_back(piece.id);
    else encode_ordinary(piece.text, ids);
  }
  return ids;
}

void TiktokenTokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = start;
    for (size_t chars = 0; end < text.size() && chars < kMaxEncodeChars; ++chars) utf8::next(text, end);
    for (std::string_view stretch : split_long_runs(text.substr(start, end - start)))
      for (const auto& [b, e] : regex_->find_all(stretch)) encode_piece(stretch.substr(b, e - b), ids);  // gaps are dropped, as tiktoken does
    start = end;
  }
}

void TiktokenTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (const auto whole = rank(piece)) {  // tiktoken takes a piece that is a token as it is
    ids.push_back(*whole);
    return;
  }
  // Parts in a linked list over byte ranges; candidate merges in a min-heap on (rank of the joined bytes,
  // position), which is tiktoken's order: lowest rank first, leftmost on ties. A candidate is stale when its
  // left part no longer ends where it did or its right part no longer ends where it did.
  struct Part {
    int32_t end;   // one past its last byte; its start is the index of the part
    int32_t next;  // index of the next part, -1 at the end
    int32_t prev;
  };
  struct Candidate {
    int32_t rank, pos, left_end, right_end;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int32_t n = int32_t(piece.size());
  std::vector<Part> parts(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) parts[size_t(i)] = {i + 1, i + 1 < n ? i + 1 : -1, i - 1};
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = parts[size_t(left)].next;
    if (right < 0) return;
    const int32_t right_end = parts[size_t(right)].end;
    if (const auto r = rank(piece.substr(size_t(left), size_t(right_end - left))))
      heap.push({*r, left, parts[size_t(left)].end, right_end});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Part& left = parts[size_t(c.pos)];
    if (left.end != c.left_end || left.next < 0 || parts[size_t(left.next)].end != c.right_end) continue;
    const Part right = parts[size_t(left.next)];
    left.end = right.end;
    left.next = right.next;
    if (right.next >= 0) parts[size_t(right.next)].prev = c.pos;
    consider(left.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = parts[size_t(i)].next)
    ids.push_back(*rank(piece.substr(size_t(i), size_t(parts[size_t(i)].end - i))));  // single bytes all have ranks
}

std::string TiktokenTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  return detail::decode_token_bytes(*this, ids, skip_special);
}

std::string TiktokenTokenizer::token_bytes(int32_t id, int32_t /*previous*/) const {
  if (id < 0 || id >= size()) return {};
  return bytes_[size_t(id)];
}

std::optional<int32_t> TiktokenTokenizer::token_to_id(std::string_view token) const {
  if (const auto it = special_ids_.find(std::string(token)); it != special_ids_.end()) return it->second;
  return rank(detail::byte_level_decode(std::string(token)));
}

std::string TiktokenTokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= size()) return {};
  if (id >= base_tokens_) return bytes_[size_t(id)];
  return detail::byte_level_encode(bytes_[size_t(id)]);
}

bool TiktokenTokenizer::is_special(int32_t id) const { return id >= 0 && id < size() && special_[size_t(id)]; }

}  // namespace moe
