#pragma once
// Helpers shared by the gtest files: scratch folders, whole-file reads and writes, and the tokenizer
// fixtures under tests/data/tokenizers (made by tests/make_tokenizers.py). Header-only; include it as
// "tests/support/test_support.h" (the repository root is on every test's include path).
#include <stdlib.h>  // mkdtemp

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"

namespace moe::test {

// The message of the EngineError `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const moe::EngineError& e) {
    return e.what();
  }
  return "";
}

// The whole file as raw bytes ("" when it cannot be opened).
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The file parsed as JSON; throws nlohmann::json::parse_error when it is missing or not JSON.
inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

// Writes `bytes` as the whole content of `p`. The old file is removed first rather than truncated in
// place: truncating makes ext4 flush it to disk (auto_da_alloc), which makes tests that rewrite one file
// thousands of times (the safetensors fuzzer) twenty times slower.
inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::error_code ec;
  std::filesystem::remove(p, ec);
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A fresh, empty folder under the system temp folder, unique to this instance (also across processes,
// so ctest -j is safe), removed with everything in it on destruction.
class ScratchDir {
 public:
  ScratchDir() : path(make()) {}
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // Writes `text` as path / name (replacing what was there) and returns that path.
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    const std::filesystem::path p = path / name;
    write_file(p, text);
    return p;
  }
  std::filesystem::path operator/(const std::string& name) const { return path / name; }

  const std::filesystem::path path;

 private:
  static std::filesystem::path make() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "moe_test_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    return tmpl;
  }
};

// A JSON array of token ids.
inline std::vector<int32_t> ids_of(const nlohmann::json& a) { return a.get<std::vector<int32_t>>(); }

// The name of SentencePiece's byte-fallback piece for byte b: "<0x0A>".
inline std::string byte_piece_name(unsigned char b) {
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", b);
  return name;
}

#ifdef MOE_TEST_DATA_DIR
// tests/data/tokenizers: the small bpe / spm / bpe_merges_strings tokenizer folders and their references.
inline std::filesystem::path tokenizer_data() { return std::filesystem::path(MOE_TEST_DATA_DIR) / "tokenizers"; }

// tests/data/tokenizers/expected.json: the fixed corpus with what the reference libraries make of it.
inline const nlohmann::json& tokenizer_expected() {
  static const nlohmann::json j = read_json(tokenizer_data() / "expected.json");
  return j;
}
#endif

}  // namespace moe::test
