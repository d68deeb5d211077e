#pragma once
// A loaded model: its spec, its weights (in place in the mmap'd checkpoint, or synthetic), and the
// files that came with it. Loading checks every tensor's presence, dtype and shape against config.json.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/formats/safetensors.h"
#include "engine/model/model_spec.h"
#include "engine/model/weights.h"

namespace moe {

// Weights the loader had to copy into the engine's layout (GPT-OSS's transposed experts), or made for
// a synthetic model beside its arena (MXFP4 scales).
using OwnedWeights = std::vector<std::unique_ptr<std::byte[]>>;

struct SyntheticOptions {
  DType dtype = DType::BF16;
  uint64_t seed = 1;
  // Distinct random bytes are capped at this size; larger models reuse (alias) the same memory for
  // later tensors, which keeps every access a real DRAM read while fitting in RAM. 0: no cap.
  size_t max_distinct_bytes = size_t(8) << 30;
  int threads = 0;  // for filling the memory; 0 = all cores
  // Describe the shapes only: no memory is allocated and the weights have no data (for `info` on
  // shapes larger than this machine). Such a model cannot run.
  bool shape_only = false;
};

// Bytes of the weights as the engine holds them, by what they are.
struct WeightBytes {
  size_t attention = 0;       // projections, their biases and norms, sinks
  size_t routed_experts = 0;  // matrices and biases
  size_t shared_experts = 0;  // matrices and the shared expert's gate
  size_t embeddings = 0;      // the embedding, and the LM head when untied
  size_t other = 0;           // routers, dense MLPs, layer and final norms
  size_t total() const { return attention + routed_experts + shared_experts + embeddings + other; }
};

class Model {
 public:
  // A Hugging Face checkpoint folder (config.json + safetensors: single, sharded or several files), or a
  // GGUF file (engine/model/gguf_model.h).
  static std::unique_ptr<Model> load(const std::filesystem::path& dir);
  // Random weights of the shape a config.json describes (a file, or a folder holding config.json).
  static std::unique_ptr<Model> synthetic(const std::filesystem::path& config, const SyntheticOptions& options);

  ~Model();
  const ModelSpec& spec() const { return spec_; }
  const ModelWeights& weights() const { return weights_; }
  // The folder, or the GGUF file (empty for synthetic). Tokenizer::load and ChatTemplate::from_model_dir
  // take either.
  const std::filesystem::path& dir() const { return dir_; }
  bool is_gguf() const { return gguf_ != nullptr; }
  // The files the weights are read from: the safetensors files, or every part of a GGUF model (none
  // for synthetic weights).
  std::vector<std::filesystem::path> weight_files() const;
  bool is_synthetic() const { return synthetic_; }
  bool has_weights() const { return weights_.embed.data != nullptr; }
  // Bytes of weights the forward pass reads (matrices in their stored dtype, plus F32 vectors).
  size_t weight_bytes() const { return weight_bytes_.total(); }
  // The same by part: with MXFP4 experts the parts differ in bytes per parameter.
  const WeightBytes& weight_bytes_by_part() const { return weight_bytes_; }
  // Bytes of the weight matrices by their stored type ("Q4_K", "BF16", ...): a GGUF file mixes several. The
  // copies of FP8 and packed integer matrices' scales (and zero points, and activation order's input orders) come as
  // "scales". Vectors (norms, biases), held as F32, are not counted.
  std::map<std::string, size_t> matrix_bytes_by_dtype() const;
  // Bytes of distinct synthetic memory (less than weight_bytes when aliased).
  size_t synthetic_bytes() const { return synthetic_bytes_; }
  // Checkpoint tensors no part of the model used (e.g. rotary_emb.inv_freq), for `info`.
  const std::vector<std::string>& unused_tensors() const { return unused_; }

 private:
  Model() = default;
  static std::unique_ptr<Model> load_gguf(const std::filesystem::path& path);
  ModelSpec spec_;
  ModelWeights weights_;
  std::filesystem::path dir_;
  bool synthetic_ = false;
  WeightBytes weight_bytes_;
  size_t synthetic_bytes_ = 0;
  std::unique_ptr<TensorStore> store_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<std::byte[]> synthetic_memory_;
  OwnedWeights owned_weights_;
  std::vector<std::string> unused_;
};

}  // namespace moe
