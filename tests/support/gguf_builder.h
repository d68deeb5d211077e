#pragma once
// Writes GGUF bytes for tests (SPECS.md §11.2): metadata from JSON (integers as i64 or u64, numbers as
// f64, booleans, strings, and arrays of them), then tensor infos and data at the alignment. Tests use it
// to build small files, and to rewrite a committed file with one thing changed.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/formats/gguf.h"

namespace moe::test {

struct GgufTensorBytes {
  std::string name;
  uint32_t ggml_type = 0;      // 0 F32, 1 F16, 8 Q8_0, 12 Q4_K, ...
  std::vector<uint64_t> ne;    // innermost first
  std::string data;            // the tensor's bytes
};

class GgufBuilder {
 public:
  nlohmann::json metadata = nlohmann::json::object();
  std::vector<GgufTensorBytes> tensors;
  uint64_t alignment = 32;
  uint32_t version = 3;

  // A committed file's metadata and tensors, to edit and write back.
  static GgufBuilder from_file(const GgufFile& g) {
    GgufBuilder b;
    b.metadata = g.metadata();
    if (b.metadata.contains("general.alignment")) b.alignment = b.metadata["general.alignment"].get<uint64_t>();
    for (const auto& [name, t] : g.tensors()) {
      std::vector<uint64_t> ne(t.view.shape.rbegin(), t.view.shape.rend());
      b.tensors.push_back({name, t.ggml_type, ne, std::string(reinterpret_cast<const char*>(t.view.data), t.view.nbytes)});
    }
    return b;
  }
  GgufTensorBytes* tensor(const std::string& name) {
    for (auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }

  std::string bytes() const {
    std::string out;
    put<uint32_t>(out, 0x46554747);
    put<uint32_t>(out, version);
    put<uint64_t>(out, tensors.size());
    put<uint64_t>(out, metadata.size());
    for (const auto& [key, value] : metadata.items()) {
      put_string(out, key);
      put<uint32_t>(out, type_of(value));
      put_value(out, value);
    }
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors) {
      put_string(out, t.name);
      put<uint32_t>(out, uint32_t(t.ne.size()));
      for (uint64_t d : t.ne) put<uint64_t>(out, d);
      put<uint32_t>(out, t.ggml_type);
      put<uint64_t>(out, offset);
      offsets.push_back(offset);
      offset = align(offset + t.data.size());
    }
    out.resize(size_t(align(out.size())), '\0');
    const size_t start = out.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      out.resize(start + size_t(offsets[i]), '\0');
      out += tensors[i].data;
    }
    return out;
  }

 private:
  uint64_t align(uint64_t n) const { return (n + alignment - 1) / alignment * alignment; }
  template <typename T>
  static void put(std::string& out, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.append(b, sizeof(T));
  }
  static void put_string(std::string& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out += s;
  }
  // GGUF value types: 5 i32... here 11 i64, 10 u64, 12 f64, 7 bool, 8 string, 9 array.
  static uint32_t type_of(const nlohmann::json& v) {
    if (v.is_boolean()) return 7;
    if (v.is_number_unsigned()) return 10;
    if (v.is_number_integer()) return 11;
    if (v.is_number_float()) return 12;
    if (v.is_string()) return 8;
    if (v.is_array()) return 9;
    throw std::invalid_argument("GgufBuilder: no GGUF type for " + v.dump());
  }
  static void put_value(std::string& out, const nlohmann::json& v) {
    switch (type_of(v)) {
      case 7: put<uint8_t>(out, v.get<bool>() ? 1 : 0); break;
      case 10: put<uint64_t>(out, v.get<uint64_t>()); break;
      case 11: put<int64_t>(out, v.get<int64_t>()); break;
      case 12: put<double>(out, v.get<double>()); break;
      case 8: put_string(out, v.get<std::string>()); break;
      case 9: {
        put<uint32_t>(out, v.empty() ? 11 : type_of(v[0]));
        put<uint64_t>(out, v.size());
        for (const auto& e : v) put_value(out, e);
        break;
      }
    }
  }
};

}  // namespace moe::test
