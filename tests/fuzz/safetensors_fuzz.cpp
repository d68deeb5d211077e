// libFuzzer target for SafetensorsFile::open. Not part of the CMake build (needs clang); build and run
// from the repository root with:
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/safetensors_fuzz.cpp engine/formats/safetensors.cpp engine/formats/mapped_file.cpp engine/formats/json_file.cpp engine/common/dtype.cpp -o /tmp/safetensors_fuzz && mkdir -p /tmp/st_corpus && /tmp/safetensors_fuzz -max_total_time=300 /tmp/st_corpus
//
// Pass `-dict=tests/fuzz/safetensors.dict` to steer it toward the header's keywords. The input bytes are
// the whole file. The contract checked: open() either succeeds with every tensor's bytes inside the
// mapping (and sizes that match the shapes), or throws EngineError naming the file. Any other exception
// escapes and libFuzzer reports it as a crash; the sanitizers catch the rest. The ctest-sized,
// deterministic counterpart is tests/engine/safetensors_fuzz_test.cpp.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/common/error.h"
#include "engine/formats/safetensors.h"

namespace {

// One scratch file per fuzzing process, rewritten for every input (open() takes a path).
// Never destroyed, so the atexit clean-up can still read it.
const std::string& scratch_path() {
  static const std::string* path = [] {
    auto* p = new std::string("/tmp/moe_safetensors_fuzz_XXXXXX");
    const int fd = ::mkstemp(p->data());
    if (fd < 0) ::abort();
    ::close(fd);
    return p;
  }();
  static const bool cleanup = (std::atexit([] { ::unlink(path->c_str()); }), true);
  (void)cleanup;
  return *path;
}

void write_scratch(const uint8_t* data, size_t size) {
  FILE* f = std::fopen(scratch_path().c_str(), "wb");
  if (f == nullptr) ::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) ::abort();
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_scratch(data, size);
  try {
    const auto file = moe::SafetensorsFile::open(scratch_path());
    const std::byte* lo = file->mapping().data();
    const std::byte* hi = lo + file->mapping().size();
    for (const auto& [name, t] : file->tensors()) {
      if (t.data < lo || t.data > hi || t.nbytes > size_t(hi - t.data)) __builtin_trap();
      if (uint64_t(t.numel()) * moe::dtype_size(t.dtype) != t.nbytes) __builtin_trap();
      volatile unsigned sum = 0;  // touch every byte
      for (size_t i = 0; i < t.nbytes; ++i) sum = sum + unsigned(t.data[i]);
    }
  } catch (const moe::EngineError& e) {
    if (e.file() != scratch_path()) __builtin_trap();
  }
  return 0;
}
