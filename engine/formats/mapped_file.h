#pragma once
// A read-only memory map of a whole file. Weights are read in place from it; nothing is copied.
#include <cstddef>
#include <filesystem>
#include <string>

namespace moe {

class MappedFile {
 public:
  // Maps the file; throws EngineError(path, "", why) when it cannot be opened or mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moe
