#pragma once
// The tokenizer a GGUF file carries (tokenizer.ggml.*, SPECS.md §11.2), read as the Hugging Face
// tokenizer.json it was converted from: tokenizer.ggml.model "gpt2" is byte-level BPE (tokens, merges,
// and the split rules named by tokenizer.ggml.pre); token_type marks the added tokens (3 control: special;
// 4 user-defined: not special). "llama" is SentencePiece BPE with byte fallback (Llama 2, Mistral, Mixtral):
// tokens, scores and token types are rebuilt into the tokenizer.model they came from, with the same added
// tokens around it. ChatTemplate::from_model_dir reads tokenizer.chat_template.
#include <memory>

#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"

namespace moe {

// Throws EngineError naming the file and the metadata key when the tokenizer is missing, broken or of a
// kind not read.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file);

}  // namespace moe
