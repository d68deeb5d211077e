#pragma once
// Tokenizers as the checkpoint folder describes them: byte-level BPE from tokenizer.json (Qwen, OLMoE,
// DeepSeek style), tiktoken BPE from tiktoken.model (Kimi K2), or SentencePiece from tokenizer.model (Llama,
// Mistral style). Special settings
// (BOS, EOS, added tokens) come from tokenizer.json / tokenizer_config.json. SPECS.md §9.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads from a model folder: tokenizer.json when it holds a byte-level BPE model, else tiktoken.model (with
  // the Python file tokenizer_config.json's auto_map names, for its split pattern), else tokenizer.model
  // (SentencePiece); tokenizer_config.json for add_bos_token / bos / eos when present. A GGUF file gives
  // the tokenizer it carries (gguf_tokenizer.h). Throws EngineError
  // naming the file and the field when a file is missing or broken.
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& model_dir);

  // Text → ids. Added tokens (e.g. <|im_start|>, <think>) are matched first in the raw text.
  // add_special: prepend BOS when the tokenizer's config asks for it (add_bos_token).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Ids → text (UTF-8 errors replaced with U+FFFD). skip_special drops ids flagged special.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;
  // The raw bytes one id stands for (byte-level decoded; may be an incomplete UTF-8 sequence).
  // `previous` is the id before it in the stream (or -1), for tokenizers whose output depends on
  // position (SentencePiece strips the leading space of the first piece).
  virtual std::string token_bytes(int32_t id, int32_t previous) const = 0;

  // Number of ids the tokenizer defines (max id + 1). Model vocab rows at or past it are padding.
  virtual int32_t size() const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::string id_to_token(int32_t id) const = 0;  // the vocabulary string, unmapped
  virtual bool is_special(int32_t id) const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::vector<int32_t> eos_ids() const = 0;     // from tokenizer_config.json's eos_token
  virtual std::string kind() const = 0;                  // "byte-level BPE" / "SentencePiece BPE"
};

// Streaming detokenizer: feed ids one at a time, get back the text that is complete so far. Bytes of a
// UTF-8 character cut between tokens are held back until the character is whole (SPECS.md §12.12).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  std::string push(int32_t id);
  // End of stream: returns what was held back, invalid bytes replaced with U+FFFD.
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  int32_t previous_ = -1;
  std::string pending_;
};

}  // namespace moe
