#pragma once
// A pre-tokenizer regex (tokenizer.json's Split pattern, or the GPT-2 regex of ByteLevel use_regex), compiled
// with PCRE2 in UTF + UCP mode and JIT-compiled where the platform allows. std::regex cannot express these
// patterns (\p{L}, \p{N}, lookahead, (?i:...) over Unicode).
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moe::detail {

class SplitRegex {
 public:
  // literal: the pattern is a plain string to find (Split's {"String": ...} form). Throws std::invalid_argument
  // with PCRE2's message and offset when the pattern does not compile.
  SplitRegex(const std::string& pattern, bool literal);
  ~SplitRegex();
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;

  // Non-overlapping, non-empty matches [begin, end) in byte offsets, left to right. `text` must be valid
  // UTF-8. Safe to call from several threads at once.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept out of the header so that pcre2.h stays private
  bool jit_ = false;
};

// The GPT-2 pre-tokenizer regex, what ByteLevel{use_regex: true} splits with.
inline constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace moe::detail
