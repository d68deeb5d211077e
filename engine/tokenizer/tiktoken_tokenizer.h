#pragma once
// tiktoken BPE (Kimi K2 and other Moonshot checkpoints): tiktoken.model holds one "base64(bytes) rank" line per
// token; the split pattern and the number of reserved special tokens come from the Python file that
// tokenizer_config.json's auto_map names (tiktoken_pattern.h); the special tokens' names from its
// added_tokens_decoder. Encoding, as the checkpoint's TikTokenTokenizer does it:
//   special tokens (all of them, named or reserved) cut out of the raw text → each stretch between them cut
//   where a run of whitespace or of non-whitespace passes 25,000 characters, and every 400,000 characters →
//   pre-tokenizer split → each piece: its own rank if it is a token, else byte-pair merges, lowest rank of the
//   merged bytes first (leftmost on ties).
// Token strings (id_to_token, token_to_id) are spelled through GPT-2's byte table, as transformers shows them.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/special_tokens.h"
#include "engine/tokenizer/split_regex.h"
#include "engine/tokenizer/tokenizer.h"

namespace moe {

class TiktokenTokenizer final : public Tokenizer {
 public:
  // What a tiktoken tokenizer is made of, wherever it was read from: a checkpoint folder (the constructor below)
  // or a GGUF file that llama.cpp's converter wrote from one (gguf_tokenizer.cpp, tokenizer.ggml.pre "kimi-k2").
  struct Parts {
    std::string file;                          // named in errors
    std::string ranks_field;                   // the field of `file` the ranks come from ("" for tiktoken.model)
    std::vector<std::string> ranks;            // rank (= id) → the token's bytes, for ids 0 .. n-1
    std::unique_ptr<detail::SplitRegex> regex;  // the split pattern, as PCRE2 runs it
    std::vector<detail::AddedToken> specials;  // ids n, n+1, ... in order; each matched in text as it is
    std::optional<int32_t> bos_id;
    std::vector<int32_t> eos_ids;
    bool add_bos = false;
  };
  // Throws EngineError naming parts.file when the ranks cannot encode every text (a byte with no rank, the same
  // bytes twice, an empty token) or the special tokens are not the ids after the ranks, or named twice.
  explicit TiktokenTokenizer(Parts parts);
  // model_file: tiktoken.model. python_file: where pat_str and num_reserved_special_tokens are read.
  // Throws EngineError naming the file and the line or field that is wrong.
  TiktokenTokenizer(const std::filesystem::path& model_file, const std::filesystem::path& python_file,
                    const detail::TokenizerConfig& config);
  ~TiktokenTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  std::string token_bytes(int32_t id, int32_t previous) const override;
  int32_t size() const override { return int32_t(bytes_.size()); }
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  std::string kind() const override { return "tiktoken BPE"; }

  int32_t base_tokens() const { return base_tokens_; }  // ranks in tiktoken.model; specials follow
  void set_eos_ids(std::vector<int32_t> ids) { eos_ids_ = std::move(ids); }
  const std::string& split_pattern() const { return pattern_; }  // as PCRE2 runs it

 private:
  struct BytesHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  void encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;
  std::optional<int32_t> rank(std::string_view bytes) const;

  std::string file_;
  std::unordered_map<std::string, int32_t, BytesHash, std::equal_to<>> ranks_;  // bytes → rank (= id)
  std::vector<std::string> bytes_;                                             // id → bytes ("" for holes)
  std::vector<uint8_t> special_;      // flagged special in tokenizer_config.json
  std::unordered_map<std::string, int32_t> special_ids_;  // every special token's text → id
  int32_t base_tokens_ = 0;
  std::string pattern_;
  std::unique_ptr<detail::SplitRegex> regex_;
  detail::AddedTokenMatcher matcher_;
  std::optional<int32_t> bos_id_;
  bool add_bos_ = false;
  std::vector<int32_t> eos_ids_;
};

}  // namespace moe
