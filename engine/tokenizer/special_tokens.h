#pragma once
// Pieces shared by the tokenizer implementations (not part of the public interface): added tokens and how
// they are cut out of raw text (SPECS.md §9.3), what tokenizer_config.json says about BOS/EOS, and decoding
// through Tokenizer::token_bytes.
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moe {
class Tokenizer;
}

namespace moe::detail {

// One entry of tokenizer.json's added_tokens or tokenizer_config.json's added_tokens_decoder.
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;      // dropped by decode(skip_special = true)
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched in the normalised text instead of the raw text
};

// A stretch of text after the added-token split: plain text (id < 0) or one added token.
struct TextPiece {
  std::string_view text;
  int32_t id = -1;
};

// Cuts added tokens out of text, HF `tokenizers` style: at the leftmost position where any token matches,
// the longest one wins; the text between matches is returned as plain pieces (empty ones dropped).
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  std::vector<TextPiece> split(std::string_view text) const;

 private:
  std::vector<AddedToken> tokens_;
  std::array<std::vector<uint32_t>, 256> by_first_byte_;  // indices into tokens_, longest first
};

// "<s>", {"content": "<s>", ...} or null (nullopt). Throws EngineError(file, field) for anything else.
std::optional<std::string> token_content(const nlohmann::json& value, const std::string& file,
                                         const std::string& field);

// Parses one added-token object ({"id"?, "content", "special", "lstrip", ...}); `id` overrides a missing "id".
AddedToken parse_added_token(const nlohmann::json& value, const std::string& file, const std::string& field,
                             std::optional<int64_t> id = std::nullopt);

// What tokenizer_config.json says (every member empty when the file is absent).
struct TokenizerConfig {
  bool present = false;
  std::string file;
  std::optional<bool> add_bos_token;
  bool has_bos_token = false;  // the key is there (a null value then means "no BOS")
  std::optional<std::string> bos_token;
  bool has_eos_token = false;
  std::optional<std::string> eos_token;
  std::vector<AddedToken> added_tokens;  // from added_tokens_decoder
  // auto_map.AutoTokenizer's class, "tokenization_kimi.TikTokenTokenizer": where remote-code tokenizers live.
  std::optional<std::string> auto_tokenizer;
};

// Reads dir/tokenizer_config.json; a missing file gives present == false. Throws EngineError naming the
// file and the field for malformed JSON or values of the wrong kind.
TokenizerConfig read_tokenizer_config(const std::filesystem::path& dir);

// Tokenizer::decode for tokenizers whose output is the concatenation of token_bytes(id, previous id shown):
// ids flagged special are dropped when skip_special, and invalid UTF-8 in the result becomes U+FFFD.
std::string decode_token_bytes(const Tokenizer& tok, std::span<const int32_t> ids, bool skip_special);

}  // namespace moe::detail
