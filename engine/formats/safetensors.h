#pragma once
// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets:[begin,end)}, "__metadata__": {str: str}}, then the data buffer.
// Offsets are relative to the data buffer (byte 8+N). Every offset, size and overlap is checked on open;
// a file that lies gets an EngineError naming the file and the tensor (SPECS.md §11.1).
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/common/dtype.h"
#include "engine/formats/mapped_file.h"

namespace moe {

// A tensor inside a mapped file (or inside memory owned by someone else, e.g. synthetic weights).
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;     // PyTorch order: [out, in] for a linear weight
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  std::string file;               // where it lives, for error messages

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// One .safetensors file, mapped.
class SafetensorsFile {
 public:
  // Opens and validates; throws EngineError naming the file and the offending field.
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_->path(); }
  const MappedFile& mapping() const { return *file_; }  // every TensorView::data lies inside it

 private:
  explicit SafetensorsFile(std::unique_ptr<MappedFile> f) : file_(std::move(f)) {}
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint folder: model.safetensors, or the shards listed by
// model.safetensors.index.json (weight_map), or every *.safetensors when neither is there.
class TensorStore {
 public:
  static TensorStore open_folder(const std::filesystem::path& dir);
  // Adds one file's tensors (used by open_folder and by tests); duplicate names are an error.
  void add(std::unique_ptr<SafetensorsFile> file);

  const TensorView* find(const std::string& name) const;
  // Throws EngineError(<folder or index file>, name, "tensor is missing") when absent.
  const TensorView& get(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t total_bytes() const;
  std::vector<std::string> file_paths() const;  // the files added, in order
  const std::string& source() const { return source_; }  // the folder, for messages

 private:
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// A tensor to write: the bytes are copied from `data` (nbytes must equal numel·dtype_size).
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

// Writes a safetensors file atomically (to path + ".tmp", fsync, rename). The header is padded with
// spaces to a multiple of 8. Throws EngineError on I/O failure.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace moe
