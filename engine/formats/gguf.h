#pragma once
// GGUF (versions 2 and 3; SPECS.md §11.2), llama.cpp's single-file format: a little-endian header
// (magic "GGUF", version, tensor count, metadata count), typed metadata key/value pairs, one info per
// tensor (name, dims innermost first, ggml type, offset), then the tensor data, aligned to
// general.alignment (32 by default). Every count, length, type, dim and offset is checked on open
// against the file's size; a file that lies gets an EngineError naming the file and the key or tensor.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/formats/safetensors.h"

namespace moe {

// One tensor of a GGUF file. `view` holds the PyTorch-order shape (GGUF's dims reversed: [out, in] for
// a linear weight), the data and its size; its dtype is meaningful only when `readable`.
struct GgufTensor {
  TensorView view;
  uint32_t ggml_type = 0;
  std::string type_name;  // "Q4_K", "IQ2_XS", ...
  bool readable = false;  // a type the engine computes with (F32, F16, BF16, llama.cpp's Q* types, MXFP4)
  uint64_t offset = 0;    // from the start of the data section
};

class GgufFile {
 public:
  // Opens and validates; throws EngineError naming the file and the offending key or tensor.
  static std::unique_ptr<GgufFile> open(const std::filesystem::path& path);

  uint32_t version() const { return version_; }
  // The metadata as JSON: integers, floats, booleans, strings, and arrays of them (nested as stored).
  const nlohmann::json& metadata() const { return metadata_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find(const std::string& name) const;
  const std::string& path() const { return file_->path(); }
  const MappedFile& mapping() const { return *file_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // where the tensor data starts in the file

 private:
  explicit GgufFile(std::unique_ptr<MappedFile> f) : file_(std::move(f)) {}
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  nlohmann::json metadata_ = nlohmann::json::object();
  std::map<std::string, GgufTensor> tensors_;
};

// Typed reads of a GGUF file's metadata, each error naming the file and the key.
class GgufMetadata {
 public:
  explicit GgufMetadata(const GgufFile& file) : g_(file) {}
  const std::string& path() const { return g_.path(); }
  bool has(const std::string& key) const { return g_.metadata().contains(key); }
  const nlohmann::json& value(const std::string& key) const;  // throws when missing
  int64_t integer(const std::string& key) const;  // one non-negative integer (not per-layer values)
  double number(const std::string& key) const;
  bool boolean(const std::string& key) const;
  std::string string(const std::string& key) const;
  std::optional<bool> boolean_if_present(const std::string& key) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;

 private:
  const GgufFile& g_;
};

// Whether `path` is a GGUF file: a regular file that starts with the magic "GGUF".
bool is_gguf_file(const std::filesystem::path& path);

// The engine's type for a ggml type id, when it computes with it.
std::optional<DType> dtype_of_ggml_type(uint32_t ggml_type);

}  // namespace moe
