#pragma once
// A GGUF file read as a model: its metadata ({arch}.embedding_length, .expert_count, ...; SPECS.md §11.2)
// rendered as the config.json the family adapters read, and llama.cpp's tensor names (blk.L.attn_q, ...)
// as a TensorNaming. The forward pass and the backends see the same ModelSpec and weights as for a
// Hugging Face folder.
#include <string>

#include <nlohmann/json.hpp>

#include "engine/formats/gguf.h"
#include "engine/model/family.h"

namespace moe {

struct GgufModelConfig {
  nlohmann::json config;  // config.json's keys (model_type, hidden_size, ...)
  std::string config_name;  // how errors name it: "<file> (metadata)"
  TensorNaming names;
  // llama.cpp's converter permutes the q and k rows of `llama`-architecture models so that RoPE pairs
  // adjacent dims (SPECS.md §1.3): such files are run with interleaved RoPE.
  bool interleaved_rope = false;
};

// The GGUF architectures read, and what they become.
std::vector<std::string> supported_gguf_architectures();

// Throws EngineError naming the file and the metadata key when a key is missing or wrong, or the
// architecture is one we do not read.
GgufModelConfig read_gguf_model_config(const GgufFile& file);

}  // namespace moe
