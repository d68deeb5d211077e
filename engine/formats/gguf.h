#pragma once
// GGUF (versions 2 and 3; SPECS.md §11.2), llama.cpp's format: a little-endian header (magic "GGUF",
// version, tensor count, metadata count), typed metadata key/value pairs, one info per tensor (name, dims
// innermost first, ggml type, offset), then the tensor data, aligned to general.alignment (32 by
// default). Every count, length, type, dim and offset is checked on open against the file's size; a file
// that lies gets an EngineError naming the file and the key or tensor.
//
// A model too big for one file is split by llama.cpp's gguf-split (and gguf-py's writer) into
// <prefix>-00001-of-0000N.gguf ... <prefix>-0000N-of-0000N.gguf: every part is a GGUF file with the keys
// split.no, split.count and split.tensors.count, the first holds the rest of the metadata, and each
// tensor lies in exactly one part. GgufFile opens such a model whole, from any part's path.
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
  bool readable = false;  // a type the engine computes with (F32, F16, BF16, llama.cpp's Q* and IQ* types, MXFP4)
  uint64_t offset = 0;    // from the start of its part's data section
  int part = 0;           // which part of a split model holds it (view.file names that file)
};

class GgufFile {
 public:
  // Opens and validates; throws EngineError naming the file and the offending key or tensor. A part of
  // a split model opens all of its parts, found by their names, with the first part's metadata and every
  // part's tensors; a part missing, or disagreeing about the split, is an error naming it.
  static std::unique_ptr<GgufFile> open(const std::filesystem::path& path);

  uint32_t version() const { return version_; }
  // The metadata as JSON: integers, floats, booleans, strings, and arrays of them (nested as stored).
  const nlohmann::json& metadata() const { return metadata_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find(const std::string& name) const;
  const std::string& path() const { return file_->path(); }  // the first part's, for a split model
  const MappedFile& mapping() const { return *file_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // where the tensor data starts in the (first) file
  // Every file of the model, the first part first: one path, or a split model's N.
  std::vector<std::string> part_paths() const;

 private:
  explicit GgufFile(std::unique_ptr<MappedFile> f) : file_(std::move(f)) {}
  static std::unique_ptr<GgufFile> open_part(const std::filesystem::path& path);
  std::unique_ptr<MappedFile> file_;
  std::vector<std::unique_ptr<MappedFile>> more_parts_;  // parts 2 … N of a split model
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
