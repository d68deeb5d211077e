#pragma once
// Writing a file so that a reader (or the next start after a crash) finds either the old contents or
// the new, never a mix: the bytes go to path + ".tmp", are flushed to disk (fsync), and the temporary
// file is renamed over the target, which is atomic on POSIX file systems; then the folder is synced so
// the rename itself survives a crash (best effort). Every file the project writes for users — trace
// files, CSV tables, saved sessions, resumable corpus progress — goes through here.
#include <cstddef>
#include <filesystem>
#include <span>
#include <string_view>

namespace moe {

// One piece of the file's contents, written in order.
struct BytesToWrite {
  const void* data;
  size_t size;
};

// Throws EngineError(path, "", why) when any step fails; the temporary file is removed then.
void write_file_atomically(const std::filesystem::path& path, std::span<const BytesToWrite> parts);
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

}  // namespace moe
