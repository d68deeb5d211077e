#pragma once
// A GGUF file read as a model: its metadata ({arch}.embedding_length, .expert_count, ...; SPECS.md §11.2)
// rendered as the config.json the family adapters read, and llama.cpp's tensor names (blk.L.attn_q, ...)
// as a TensorNaming. The forward pass and the backends see the same ModelSpec and weights as for a
// Hugging Face folder.
#include <cstddef>
#include <memory>
#include <optional>
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

// MLA's kv_b_proj as llama.cpp has stored it since April 2025: split per head into attn_k_b
// [H, kv_lora, nope] (each head's block transposed) and attn_v_b [H, v, kv_lora]. For the name of a
// layer's attn_kv_b.weight that the file lacks, join_split_kv_b rebuilds the [H·(nope + v), kv_lora] rows
// (per head: nope k rows, then v rows) in memory it returns, in the pair's type when both are the same
// F32, F16 or BF16 and in F32 otherwise (block types are decoded exactly). nullopt when the file has no
// such pair; EngineError naming the tensor when the pair disagrees with `rows` × `cols`.
struct JoinedMatrix {
  std::unique_ptr<std::byte[]> data;
  DType dtype = DType::F32;
  std::string k_b, v_b;  // the tensors it was made from
};
std::optional<JoinedMatrix> join_split_kv_b(const GgufFile& file, const std::string& kv_b_name, int64_t rows, int64_t cols);

}  // namespace moe
