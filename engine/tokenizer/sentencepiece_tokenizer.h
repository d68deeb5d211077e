#pragma once
// SentencePiece tokenizer.model (Llama-2, Mistral, Mixtral style BPE with byte fallback), SPECS.md §9.4,
// encoded by libsentencepiece. Around it, Hugging Face's conventions: special tokens (<unk>, <s>, </s>, and
// added tokens from tokenizer_config.json) typed in the text are matched first and become their ids, each
// text segment between them is encoded on its own (so it gets SentencePiece's dummy-prefix "▁", like HF's
// LlamaTokenizer with legacy=True), and BOS is prepended when add_bos_token says so.
//
// Decoding follows HF's Llama decoder chain (Replace "▁"→" ", ByteFallback, Fuse, Strip one leading space):
// every piece maps to bytes on its own, and the single leading space is dropped from the first piece of the
// output. token_bytes(id, previous) does the same per token: previous == -1 means "nothing emitted yet".
//
// The model comes from a tokenizer.model file, or as ModelProto bytes built from another description of the
// vocabulary (a GGUF file's tokenizer.ggml.*, see gguf_tokenizer.h and sentencepiece_model_proto.h).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/special_tokens.h"
#include "engine/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace moe {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Loads a tokenizer.model. Throws EngineError naming the file when it is missing or not a model.
  explicit SentencePieceTokenizer(const std::filesystem::path& model_file);
  // Loads a serialized ModelProto; `name` is what errors call it ("model.gguf (tokenizer.ggml.*)").
  SentencePieceTokenizer(const std::string& model_proto, const std::string& name);
  ~SentencePieceTokenizer() override;

  // BOS/EOS, add_bos_token (default true) and added tokens from tokenizer_config.json.
  void apply_config(const detail::TokenizerConfig& cfg);
  // Replaces the ids that end generation (GGUF files name several: eos, end of turn, ...); duplicates dropped.
  void set_eos_ids(std::vector<int32_t> ids);
  // The id encode(add_special) appends (llama.cpp's add_eos_token); none by default.
  void set_appended_eos(std::optional<int32_t> id) { appended_eos_ = id; }
  // For a model piece that stands in for text a ModelProto cannot hold (a GGUF vocabulary's empty or repeated
  // strings): id_to_token and decode show `text`, token_to_id does not find the stand-in, encode never gives it.
  void set_stand_in_text(int32_t id, const std::string& text, bool special);

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  std::string token_bytes(int32_t id, int32_t previous) const override;
  int32_t size() const override { return int32_t(pieces_.size()); }
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  std::string kind() const override { return "SentencePiece BPE"; }

  bool add_bos() const { return add_bos_; }
  bool is_byte_piece(int32_t id) const { return id >= 0 && id < size() && byte_piece_[size_t(id)]; }

 private:
  void rebuild_matcher();

  std::string file_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  int32_t model_size_ = 0;                  // pieces in the model; ids past it are added tokens
  std::vector<std::string> pieces_;         // id → piece string ("▁Hello", "<0x0A>", "<s>")
  std::vector<std::string> bytes_;          // id → decoded bytes ("▁"→" ", "<0xXX>"→byte)
  std::vector<uint8_t> special_;            // control, unknown, or flagged special in tokenizer_config.json
  std::vector<uint8_t> byte_piece_;
  std::unordered_map<std::string, int32_t> piece_to_id_;
  std::vector<detail::AddedToken> matched_;  // what is cut out of raw text before SentencePiece sees it
  detail::AddedTokenMatcher matcher_;
  bool dummy_prefix_ = true;
  std::optional<int32_t> bos_id_;
  bool add_bos_ = true;
  std::vector<int32_t> eos_ids_;
  std::optional<int32_t> appended_eos_;
};

}  // namespace moe
