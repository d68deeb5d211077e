#include "engine/formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/common/error.h"

namespace moe {

namespace {
std::string errno_text(int err) { return std::strerror(err); }

// Closes the descriptor on every path out of the constructor; the mapping outlives it.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path.string()) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw EngineError(path_, "", "file not found");
    throw EngineError(path_, "", "cannot open: " + errno_text(err));
  }
  FdCloser closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) throw EngineError(path_, "", "cannot stat: " + errno_text(errno));
  if (S_ISDIR(st.st_mode)) throw EngineError(path_, "", "is a folder, not a file");
  if (!S_ISREG(st.st_mode)) throw EngineError(path_, "", "is not a regular file");
  if (st.st_size < 0) throw EngineError(path_, "", "has a negative size");

  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) return;  // mmap of length 0 fails; an empty file is simply an empty span

  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    size_ = 0;
    throw EngineError(path_, "", "cannot map " + std::to_string(st.st_size) + " bytes: " + errno_text(err));
  }
  data_ = static_cast<const std::byte*>(p);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace moe
