#pragma once
// Byte-level BPE read from a Hugging Face tokenizer.json (Qwen2/Qwen3, OLMoE, DeepSeek style), SPECS.md §9.1:
//   added tokens (longest match, raw text) → normalizer (NFC …, via utf8proc) → pre-tokenizer splits (PCRE2
//   regexes from the file) → bytes mapped through the GPT-2 byte↔unicode table → BPE merges by rank → ids.
// Decoding maps every character of the token strings back to its byte.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/special_tokens.h"
#include "engine/tokenizer/split_regex.h"
#include "engine/tokenizer/tokenizer.h"

namespace moe {

class BpeTokenizer final : public Tokenizer {
 public:
  // Builds the tokenizer from a parsed tokenizer.json; `file` is its path, for errors. Throws EngineError
  // naming the file and the field (model, model.type, model.vocab, model.merges[i], pre_tokenizer…).
  BpeTokenizer(const nlohmann::json& tokenizer_json, const std::string& file);
  ~BpeTokenizer() override;

  // True when a tokenizer.json describes a byte-level BPE: model BPE with a ByteLevel pre-tokenizer or
  // decoder (SentencePiece-style tokenizer.json files use Metaspace / ByteFallback instead).
  static bool is_byte_level(const nlohmann::json& tokenizer_json);

  // Takes BOS/EOS, add_bos_token and extra added tokens from tokenizer_config.json.
  void apply_config(const detail::TokenizerConfig& cfg);
  // Replaces the ids that end generation (GGUF files name several: eos, end of turn, ...); duplicates dropped.
  void set_eos_ids(std::vector<int32_t> ids);

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  std::string token_bytes(int32_t id, int32_t previous) const override;
  int32_t size() const override { return int32_t(id_to_token_.size()); }
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  std::string kind() const override { return "byte-level BPE"; }

  bool add_bos() const { return add_bos_; }
  size_t merge_count() const { return merges_.size(); }

 private:
  enum class Normalization { NFC, NFD, NFKC, NFKD };
  enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };
  struct PreTokenizeStep {
    std::shared_ptr<const detail::SplitRegex> regex;  // null: no split (ByteLevel without use_regex)
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool add_prefix_space = false;
  };
  struct Merge {
    int32_t rank;
    int32_t merged;
  };

  void parse_model(const nlohmann::json& model);
  void parse_normalizer(const nlohmann::json& node, const std::string& field);
  void parse_pre_tokenizer(const nlohmann::json& node, const std::string& field);
  void parse_post_processor(const nlohmann::json& node);
  void add_added_token(const detail::AddedToken& token);
  void rebuild_matchers();
  void finish_tables();

  std::string normalize(std::string_view text) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;
  void merge_symbols(std::string_view piece, std::vector<int32_t>& out) const;

  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  std::string file_;
  std::unordered_map<std::string, int32_t> vocab_;  // token string → id (model vocabulary)
  std::unordered_map<uint64_t, Merge> merges_;      // (left id, right id) → rank and merged id
  std::vector<std::string> id_to_token_;            // all ids, model and added ("" for holes)
  std::vector<std::string> id_bytes_;               // what each id decodes to (raw bytes)
  std::vector<uint8_t> special_;                    // 1 for added tokens flagged special
  std::unordered_map<std::string, int32_t> added_;  // added token string → id
  std::vector<detail::AddedToken> added_tokens_;
  detail::AddedTokenMatcher raw_matcher_;         // added tokens with normalized = false
  detail::AddedTokenMatcher normalized_matcher_;  // added tokens with normalized = true
  std::vector<Normalization> normalizers_;
  std::vector<PreTokenizeStep> pre_steps_;
  std::array<int32_t, 256> byte_symbol_{};  // id of each byte's mapped character, -1 if not in the vocab
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> template_bos_;  // the special token the post-processor template puts first
  std::optional<int32_t> bos_id_;
  bool add_bos_ = false;
  std::vector<int32_t> eos_ids_;

  // Per-piece cache (piece bytes → ids), shared by threads.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace moe
