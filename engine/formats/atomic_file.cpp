#include "engine/formats/atomic_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>

#include "engine/common/error.h"

namespace moe {

namespace {

void write_all(int fd, const void* data, size_t n, const std::string& file) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw EngineError(file, "", std::string("write failed: ") + std::strerror(errno));
    }
    p += w;
    n -= size_t(w);
  }
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::span<const BytesToWrite> parts) {
  const std::string file = path.string();
  const std::string tmp = file + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw EngineError(file, "", "cannot create " + tmp + ": " + std::strerror(errno));
  try {
    for (const BytesToWrite& part : parts)
      if (part.size > 0) write_all(fd, part.data, part.size, file);
    if (::fsync(fd) != 0) throw EngineError(file, "", std::string("fsync failed: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw EngineError(file, "", std::string("close failed: ") + std::strerror(err));
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw EngineError(file, "", "cannot rename " + tmp + " into place: " + std::strerror(err));
  }
  // Make the rename itself durable; best effort (some file systems refuse fsync on a folder).
  const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  const BytesToWrite part{bytes.data(), bytes.size()};
  write_file_atomically(path, std::span<const BytesToWrite>(&part, 1));
}

}  // namespace moe
