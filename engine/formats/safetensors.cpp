#include "engine/formats/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/json_file.h"

namespace moe {

namespace {

// The reference implementation refuses headers over 100 MB; a real header is a few hundred KB at most.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// The header is {name: {dtype, shape: [..], data_offsets: [..]}}: three levels. Anything much deeper is
// garbage, and refusing it before parsing keeps a hostile file from making the parser build a huge tree.
constexpr int kMaxHeaderNesting = 16;

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

[[noreturn]] void fail(const std::string& file, const std::string& field, const std::string& message) {
  throw EngineError(file, field, message);
}

std::string range_text(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code points past U+10FFFF
// included), or `n` when the whole buffer is valid.
size_t first_invalid_utf8(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += len;
  }
  return n;
}

// Deepest nesting of [ and { outside strings (stops counting once past `limit`).
int nesting_depth(const char* s, size_t n, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

// Dtypes that exist in newer safetensors but that this engine cannot hold (DType has no entry for them).
bool is_known_unsupported_dtype(const std::string& s) {
  return s == "F8_E8M0" || s == "F4" || s == "F6_E2M3" || s == "F6_E3M2" || s == "C64";
}

std::string known_dtypes_text() {
  std::string s;
  for (int t = int(DType::BOOL); t <= int(DType::F8_E5M2); ++t) {
    if (!s.empty()) s += ", ";
    s += dtype_name(DType(t));
  }
  return s;
}

// A non-negative integer that fits in int64 (safetensors shapes and offsets), or nullopt.
std::optional<uint64_t> as_count(const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return u;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) return std::nullopt;
    return uint64_t(i);
  }
  return std::nullopt;
}

// Why `v` is not a valid count, for the message.
std::string count_problem(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return "integer " + v.dump() + " is too large (over 2^63)";
  return "expected a non-negative integer, got " + describe_json(v);
}

struct Extent {
  std::string name;
  uint64_t begin;
  uint64_t end;
};

// Validates one header entry; fills `view` (without the data pointer) and returns its extent.
Extent parse_entry(const std::string& file, const std::string& tensor_name, const nlohmann::json& entry,
                   uint64_t data_size, TensorView& view) {
  // `name` is what the messages call the tensor: an empty name would vanish from them.
  const std::string name = tensor_name.empty() ? "(tensor with an empty name)" : tensor_name;
  if (!entry.is_object())
    fail(file, name, "expected an object with dtype, shape and data_offsets, got " + describe_json(entry));

  // dtype
  const auto dt = entry.find("dtype");
  if (dt == entry.end()) fail(file, name, "has no \"dtype\"");
  if (!dt->is_string()) fail(file, name, "dtype: expected a string such as \"BF16\", got " + describe_json(*dt));
  const std::string dtype_str = dt->get<std::string>();
  const auto dtype = parse_dtype(dtype_str);
  if (!dtype) {
    if (is_known_unsupported_dtype(dtype_str))
      fail(file, name, "dtype \"" + dtype_str + "\" is a safetensors dtype this engine does not support");
    fail(file, name, "dtype " + quoted_json(*dt) + " is not a safetensors dtype (known: " + known_dtypes_text() + ")");
  }

  // shape: non-negative integers whose product (over the non-zero dims, so TensorView::numel() cannot
  // overflow whatever the order) fits in int64
  const auto sh = entry.find("shape");
  if (sh == entry.end()) fail(file, name, "has no \"shape\"");
  if (!sh->is_array()) fail(file, name, "shape: expected a list of non-negative integers, got " + describe_json(*sh));
  std::vector<int64_t> shape;
  shape.reserve(sh->size());
  uint64_t nonzero_product = 1;
  bool has_zero = false;
  for (size_t i = 0; i < sh->size(); ++i) {
    const auto d = as_count((*sh)[i]);
    if (!d)
      fail(file, name, "shape[" + std::to_string(i) + "]: " + count_problem((*sh)[i]));
    if (*d == 0) has_zero = true;
    else if (__builtin_mul_overflow(nonzero_product, *d, &nonzero_product) ||
             nonzero_product > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(file, name, "shape " + sh->dump() + " has more than 2^63 elements");
    shape.push_back(int64_t(*d));
  }
  const uint64_t numel = has_zero ? 0 : nonzero_product;
  uint64_t expected_bytes = 0;
  const bool bytes_overflow = __builtin_mul_overflow(numel, uint64_t(dtype_size(*dtype)), &expected_bytes);

  // data_offsets
  const auto off = entry.find("data_offsets");
  if (off == entry.end()) fail(file, name, "has no \"data_offsets\"");
  if (!off->is_array() || off->size() != 2)
    fail(file, name, "data_offsets: expected [begin, end], got " + (off->is_array() ? "a list of " + std::to_string(off->size()) + " values" : describe_json(*off)));
  const auto begin = as_count((*off)[0]);
  const auto end = as_count((*off)[1]);
  if (!begin) fail(file, name, "data_offsets[0] (begin): " + count_problem((*off)[0]));
  if (!end) fail(file, name, "data_offsets[1] (end): " + count_problem((*off)[1]));
  if (*end < *begin) fail(file, name, "data_offsets " + range_text(*begin, *end) + " end before begin");
  if (*end > data_size)
    fail(file, name, "data_offsets " + range_text(*begin, *end) + " end beyond the data buffer of " +
                         std::to_string(data_size) + " bytes (file truncated?)");
  if (bytes_overflow || *end - *begin != expected_bytes)
    fail(file, name, "data_offsets " + range_text(*begin, *end) + " hold " + std::to_string(*end - *begin) +
                         " bytes but shape " + shape_text(shape) + " of " + dtype_str + " needs " +
                         (bytes_overflow ? std::string("more than 2^64") : std::to_string(expected_bytes)));

  view.name = tensor_name;
  view.dtype = *dtype;
  view.shape = std::move(shape);
  view.nbytes = size_t(*end - *begin);
  view.file = file;
  return Extent{name, *begin, *end};  // the name as messages show it
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// SafetensorsFile

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  auto mapped = std::make_unique<MappedFile>(path);
  const std::string file = mapped->path();
  const auto* bytes = reinterpret_cast<const unsigned char*>(mapped->data());
  const uint64_t size = mapped->size();

  // Header length: u64 little-endian.
  if (size < 8)
    fail(file, "header length",
         "file is " + std::to_string(size) +
             " bytes, too short for the 8-byte header length a safetensors file starts with (file truncated?)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kMaxHeaderBytes)
    fail(file, "header length",
         "header length " + std::to_string(n) + " is over the " + std::to_string(kMaxHeaderBytes) +
             "-byte limit (not a safetensors file, or a corrupted one)");
  if (n > size - 8)
    fail(file, "header length",
         "header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
             " bytes, so at most " + std::to_string(size - 8) + ") (file truncated?)");

  // Header: UTF-8 JSON object.
  const char* header = reinterpret_cast<const char*>(bytes + 8);
  if (n == 0) fail(file, "header", "is empty (expected a JSON object)");
  if (header[0] != '{') fail(file, "header", "does not start with '{' (not a safetensors file?)");
  if (const size_t bad = first_invalid_utf8(bytes + 8, n); bad != n)
    fail(file, "header", "byte " + std::to_string(8 + bad) + " of the file is not valid UTF-8");
  if (nesting_depth(header, n, kMaxHeaderNesting) > kMaxHeaderNesting)
    fail(file, "header", "JSON nested more than " + std::to_string(kMaxHeaderNesting) + " levels deep");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(header, header + n);
  } catch (const nlohmann::json::parse_error& e) {
    std::string why = e.what();
    if (const size_t colon = why.find(": "); colon != std::string::npos) why = why.substr(colon + 2);
    fail(file, "header", "not valid JSON (at byte " + std::to_string(8 + (e.byte > 0 ? e.byte - 1 : 0)) +
                             " of the file): " + why);
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    std::string why = e.what();
    if (const size_t bracket = why.find("] "); bracket != std::string::npos) why = why.substr(bracket + 2);
    fail(file, "header", "not valid JSON: " + why);
  }
  if (!json.is_object()) fail(file, "header", "expected a JSON object, got " + describe_json(json));

  std::unique_ptr<SafetensorsFile> out(new SafetensorsFile(std::move(mapped)));
  const uint64_t data_size = size - 8 - n;
  const std::byte* data = out->file_->data() + 8 + n;

  std::vector<Extent> extents;
  extents.reserve(json.size());
  for (const auto& [name, entry] : json.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(file, name, "expected an object of strings, got " + describe_json(entry));
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          fail(file, name, "value of \"" + key + "\" must be a string, got " + describe_json(value));
        out->metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    TensorView view;
    extents.push_back(parse_entry(file, name, entry, data_size, view));
    view.data = data + extents.back().begin;
    out->tensors_.emplace(name, std::move(view));
  }

  // No two tensors may share a byte. Zero-size tensors hold no bytes and cannot overlap anything.
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Extent* previous = nullptr;  // the non-empty extent reaching furthest so far
  for (const Extent& e : extents) {
    if (e.begin == e.end) continue;
    if (previous != nullptr && e.begin < previous->end)
      fail(file, e.name, "data_offsets " + range_text(e.begin, e.end) + " overlap tensor '" + previous->name +
                             "' at " + range_text(previous->begin, previous->end));
    if (previous == nullptr || e.end > previous->end) previous = &e;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// TensorStore

TensorStore TensorStore::open_folder(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  TensorStore store;
  store.source_ = dir.string();
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail(store.source_, "", "model folder not found");
  if (!fs::is_directory(dir, ec)) fail(store.source_, "", "is not a folder (expected a model folder)");

  const fs::path index_path = dir / kIndexName;
  if (fs::exists(index_path, ec)) {
    const std::string index_file = index_path.string();
    const nlohmann::json index = load_json_file(index_path);
    if (!index.is_object()) fail(index_file, "", "expected a JSON object, got " + describe_json(index));
    const auto wm = index.find("weight_map");
    if (wm == index.end()) fail(index_file, "weight_map", "missing");
    if (!wm->is_object()) fail(index_file, "weight_map", "expected an object {tensor: shard file}, got " + describe_json(*wm));
    if (wm->empty()) fail(index_file, "weight_map", "is empty: it lists no tensor");

    // Check every shard name before opening any, so the error names a tensor that needs it.
    std::map<std::string, std::string> shard_of;  // tensor → shard file name
    std::set<std::string> shards;
    for (const auto& [tensor, shard] : wm->items()) {
      if (!shard.is_string()) fail(index_file, tensor, "shard: expected a file name, got " + describe_json(shard));
      const std::string name = shard.get<std::string>();
      const fs::path rel(name);
      bool escapes = name.empty() || rel.is_absolute();
      for (const auto& part : rel) escapes = escapes || part == "..";
      if (escapes) fail(index_file, tensor, "shard \"" + name + "\" is not a file name inside the model folder");
      if (!shards.count(name)) {
        const fs::path shard_path = dir / rel;
        if (!fs::exists(shard_path, ec))
          fail(index_file, tensor, "its shard \"" + name + "\" (named in weight_map) does not exist in " + store.source_);
        if (!fs::is_regular_file(shard_path, ec))
          fail(index_file, tensor, "its shard \"" + name + "\" (named in weight_map) is not a regular file");
        shards.insert(name);
      }
      shard_of[tensor] = name;
    }
    std::map<std::string, const SafetensorsFile*> opened;
    for (const std::string& name : shards) {
      auto f = SafetensorsFile::open(dir / name);
      opened[name] = f.get();
      store.add(std::move(f));
    }
    for (const auto& [tensor, shard] : shard_of) {
      const SafetensorsFile* f = opened.at(shard);
      if (!f->tensors().count(tensor))
        fail(f->path(), tensor, std::string("listed in ") + kIndexName + " for this shard but absent from it");
    }
    return store;
  }

  const fs::path single = dir / kSingleName;
  if (fs::exists(single, ec)) {
    store.add(SafetensorsFile::open(single));
    return store;
  }

  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors" && entry.is_regular_file(ec)) files.push_back(entry.path());
  }
  if (ec) fail(store.source_, "", "cannot list the folder: " + ec.message());
  if (files.empty())
    fail(store.source_, "",
         std::string("no ") + kIndexName + ", " + kSingleName + " or other *.safetensors file in this folder");
  std::sort(files.begin(), files.end());
  for (const auto& f : files) store.add(SafetensorsFile::open(f));
  return store;
}

void TensorStore::add(std::unique_ptr<SafetensorsFile> file) {
  for (const auto& [name, view] : file->tensors()) {
    if (const auto it = index_.find(name); it != index_.end())
      fail(file->path(), name, "tensor is also defined in " + it->second->file);
  }
  for (const auto& [name, view] : file->tensors()) index_.emplace(name, &view);
  files_.push_back(std::move(file));
}

const TensorView* TensorStore::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& TensorStore::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (t == nullptr) fail(source_, name, "tensor is missing");
  return *t;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, view] : index_) out.push_back(name);
  return out;
}

std::vector<std::string> TensorStore::file_paths() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

size_t TensorStore::total_bytes() const {
  size_t total = 0;
  for (const auto& [name, view] : index_) total += view->nbytes;
  return total;
}

// ---------------------------------------------------------------------------------------------------
// Writing

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();

  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name == "__metadata__") fail(file, t.name, "a tensor cannot be called __metadata__");
    if (header.contains(t.name)) fail(file, t.name, "two tensors have this name");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail(file, t.name, "shape " + shape_text(t.shape) + " has a negative dimension");
      if (__builtin_mul_overflow(numel, uint64_t(d), &numel)) fail(file, t.name, "shape is too large");
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes) || nbytes != t.nbytes)
      fail(file, t.name, "nbytes " + std::to_string(t.nbytes) + " does not match shape " + shape_text(t.shape) +
                             " of " + std::string(dtype_name(t.dtype)));
    if (t.nbytes > 0 && t.data == nullptr) fail(file, t.name, "no data");
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error&) {
    fail(file, "", "a tensor name or a metadata string is not valid UTF-8");
  }
  // Pad with spaces so that the data buffer starts 8-byte aligned (what the reference writer does).
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));

  std::vector<BytesToWrite> parts = {{len, 8}, {text.data(), text.size()}};
  for (const TensorToWrite& t : tensors) parts.push_back({t.data, t.nbytes});
  write_file_atomically(path, parts);
}

}  // namespace moe
