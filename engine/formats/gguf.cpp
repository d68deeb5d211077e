#include "engine/formats/gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "engine/common/error.h"
#include "engine/formats/json_file.h"

namespace moe {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
// Limits past anything a real file has, so that a lying count fails with a message instead of
// making us allocate without bound: the largest vocabularies are ~260k tokens, names ≤ 64 bytes.
constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;
constexpr int kMaxArrayNesting = 8;
constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kMaxNameBytes = 64;

// ggml's types: name, values per block, bytes per block (gguf-py constants.py GGML_QUANT_SIZES).
struct GgmlType {
  uint32_t id;
  const char* name;
  int64_t block_values;
  uint64_t block_bytes;
};
constexpr GgmlType kGgmlTypes[] = {
    {0, "F32", 1, 4},          {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},       {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 40},
    {10, "Q2_K", 256, 84},     {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},    {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98},  {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},         {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},        {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

const GgmlType* find_ggml_type(uint32_t id) {
  for (const auto& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

// Metadata value types (the GGUF spec's gguf_type).
enum ValueType : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64, kValueTypes };

// Bounds-checked little-endian reads over the mapped header; every failure names the field being read.
class Reader {
 public:
  Reader(const MappedFile& f) : file_(f.path()), p_(f.data()), size_(f.size()) {}
  uint64_t offset() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& field, const char* what) const {
    if (n > remaining())
      throw EngineError(file_, field,
                        std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes at offset " +
                            std::to_string(pos_) + ", but the file has " + std::to_string(remaining()) + " left");
  }
  template <typename T>
  T get(const std::string& field, const char* what) {
    need(sizeof(T), field, what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const std::string& field, const char* what, uint64_t max_bytes = kMaxStringBytes) {
    const uint64_t n = get<uint64_t>(field, what);
    if (n > max_bytes)
      throw EngineError(file_, field, std::string(what) + " claims " + std::to_string(n) + " bytes (at most " +
                                          std::to_string(max_bytes) + " are allowed)");
    need(n, field, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(n));
    pos_ += n;
    return s;
  }

 private:
  std::string file_;
  const std::byte* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

const char* value_type_name(uint32_t t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  return t < kValueTypes ? names[t] : "?";
}

// The smallest number of bytes one value of type t takes (arrays: their element type and count).
uint64_t min_value_bytes(uint32_t t) {
  switch (t) {
    case U8: case I8: case BOOL: return 1;
    case U16: case I16: return 2;
    case U32: case I32: case F32: return 4;
    case STRING: case U64: case I64: case F64: return 8;
    case ARRAY: return 12;
    default: return 1;
  }
}

nlohmann::json read_value(Reader& r, uint32_t type, const std::string& key, const std::string& file, int depth) {
  switch (type) {
    case U8: return r.get<uint8_t>(key, "a u8 value");
    case I8: return r.get<int8_t>(key, "an i8 value");
    case U16: return r.get<uint16_t>(key, "a u16 value");
    case I16: return r.get<int16_t>(key, "an i16 value");
    case U32: return r.get<uint32_t>(key, "a u32 value");
    case I32: return r.get<int32_t>(key, "an i32 value");
    case F32: return r.get<float>(key, "an f32 value");
    case U64: return r.get<uint64_t>(key, "a u64 value");
    case I64: return r.get<int64_t>(key, "an i64 value");
    case F64: return r.get<double>(key, "an f64 value");
    case BOOL: {
      const uint8_t b = r.get<uint8_t>(key, "a bool value");
      if (b > 1) throw EngineError(file, key, "a bool value must be 0 or 1, not " + std::to_string(b));
      return b == 1;
    }
    case STRING: return r.string(key, "a string value");
    case ARRAY: {
      if (depth >= kMaxArrayNesting)
        throw EngineError(file, key, "arrays nested deeper than " + std::to_string(kMaxArrayNesting) + " levels");
      const uint32_t elem = r.get<uint32_t>(key, "an array's element type");
      if (elem >= kValueTypes)
        throw EngineError(file, key, "unknown array element type " + std::to_string(elem));
      const uint64_t n = r.get<uint64_t>(key, "an array's length");
      if (n > r.remaining() / min_value_bytes(elem))
        throw EngineError(file, key, "the array claims " + std::to_string(n) + " " + value_type_name(elem) +
                                         " elements, more than the " + std::to_string(r.remaining()) +
                                         " bytes left in the file can hold");
      nlohmann::json a = nlohmann::json::array();
      a.get_ref<nlohmann::json::array_t&>().reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) a.push_back(read_value(r, elem, key, file, depth + 1));
      return a;
    }
    default: throw EngineError(file, key, "unknown value type " + std::to_string(type));
  }
}

std::string dims_text(const std::vector<uint64_t>& ne) {
  std::string s = "{";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "}";
}

}  // namespace

std::optional<DType> dtype_of_ggml_type(uint32_t id) {
  switch (id) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 30: return DType::BF16;
    case 2: return DType::Q4_0;
    case 3: return DType::Q4_1;
    case 6: return DType::Q5_0;
    case 7: return DType::Q5_1;
    case 8: return DType::Q8_0;
    case 10: return DType::Q2_K;
    case 11: return DType::Q3_K;
    case 12: return DType::Q4_K;
    case 13: return DType::Q5_K;
    case 14: return DType::Q6_K;
    case 20: return DType::IQ4_NL;
    case 23: return DType::IQ4_XS;
    case 16: return DType::IQ2_XXS;
    case 17: return DType::IQ2_XS;
    case 22: return DType::IQ2_S;
    case 18: return DType::IQ3_XXS;
    case 21: return DType::IQ3_S;
    case 19: return DType::IQ1_S;
    case 29: return DType::IQ1_M;
    case 39: return DType::MXFP4_GGML;  // ggml's MXFP4 block (its scale inside), not Hugging Face's MXFP4
    default: return std::nullopt;
  }
}

bool is_gguf_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

const nlohmann::json& GgufMetadata::value(const std::string& k) const {
  if (!has(k)) throw EngineError(path(), k, "missing from the metadata");
  return g_.metadata()[k];
}

int64_t GgufMetadata::integer(const std::string& k) const {
  const auto& v = value(k);
  if (v.is_array()) throw EngineError(path(), k, "per-layer values (an array) are not read; expected one integer");
  if (!v.is_number_integer()) throw EngineError(path(), k, "expected an integer, got " + describe_json(v));
  const int64_t i = v.is_number_unsigned() ? int64_t(v.get<uint64_t>()) : v.get<int64_t>();
  if (i < 0) throw EngineError(path(), k, "must not be negative, got " + std::to_string(i));
  return i;
}

double GgufMetadata::number(const std::string& k) const {
  const auto& v = value(k);
  if (!v.is_number()) throw EngineError(path(), k, "expected a number, got " + describe_json(v));
  return v.get<double>();
}

bool GgufMetadata::boolean(const std::string& k) const {
  const auto& v = value(k);
  if (!v.is_boolean()) throw EngineError(path(), k, "expected a bool, got " + describe_json(v));
  return v.get<bool>();
}

std::string GgufMetadata::string(const std::string& k) const {
  const auto& v = value(k);
  if (!v.is_string()) throw EngineError(path(), k, "expected a string, got " + describe_json(v));
  return v.get<std::string>();
}

std::optional<bool> GgufMetadata::boolean_if_present(const std::string& k) const {
  return has(k) ? std::optional<bool>(boolean(k)) : std::nullopt;
}

std::string GgufMetadata::string_or(const std::string& k, const std::string& fallback) const {
  return has(k) ? string(k) : fallback;
}

const GgufTensor* GgufFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::unique_ptr<GgufFile> GgufFile::open_part(const std::filesystem::path& path) {
  std::unique_ptr<GgufFile> g(new GgufFile(std::make_unique<MappedFile>(path)));
  const std::string file = g->file_->path();
  Reader r(*g->file_);

  const uint32_t magic = r.get<uint32_t>("magic", "the magic");
  if (magic != kMagic) throw EngineError(file, "magic", "not a GGUF file (it does not start with the bytes \"GGUF\")");
  const uint32_t version = r.get<uint32_t>("version", "the version");
  if (version == 0x03000000u || version == 0x02000000u)
    throw EngineError(file, "version", "a big-endian GGUF file; only little-endian files are read");
  if (version == 1) throw EngineError(file, "version", "GGUF version 1 (32-bit counts) is not read; convert the file again with a current llama.cpp");
  if (version != 2 && version != 3)
    throw EngineError(file, "version", "unknown GGUF version " + std::to_string(version) + " (2 and 3 are read)");
  g->version_ = version;
  const uint64_t n_tensors = r.get<uint64_t>("tensor_count", "the tensor count");
  const uint64_t n_kv = r.get<uint64_t>("metadata_kv_count", "the metadata count");
  // A key/value pair takes at least 8 + 4 + 1 bytes and a tensor info at least 8 + 4 + 8 + 4 + 8.
  if (n_kv > r.remaining() / 13)
    throw EngineError(file, "metadata_kv_count", std::to_string(n_kv) + " pairs cannot fit in the " +
                                                     std::to_string(r.remaining()) + " bytes that follow");
  if (n_tensors > r.remaining() / 32)
    throw EngineError(file, "tensor_count", std::to_string(n_tensors) + " tensor infos cannot fit in the " +
                                                std::to_string(r.remaining()) + " bytes that follow");

  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string where = "metadata pair " + std::to_string(i);
    const std::string key = r.string(where, "a metadata key", 1 << 16);
    if (key.empty()) throw EngineError(file, where, "empty metadata key");
    const uint32_t type = r.get<uint32_t>(key, "the value type");
    if (type >= kValueTypes) throw EngineError(file, key, "unknown value type " + std::to_string(type));
    if (g->metadata_.contains(key)) throw EngineError(file, key, "the key appears twice");
    g->metadata_[key] = read_value(r, type, key, file, 0);
  }

  if (g->metadata_.contains("general.alignment")) {
    const auto& a = g->metadata_["general.alignment"];
    if (!a.is_number_unsigned() || a.get<uint64_t>() == 0 || (a.get<uint64_t>() & (a.get<uint64_t>() - 1)) != 0)
      throw EngineError(file, "general.alignment", "must be a power of two, not " + describe_json(a));
    g->alignment_ = a.get<uint64_t>();
  }

  struct Info {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t offset;
  };
  std::vector<Info> infos;
  infos.reserve(size_t(n_tensors));
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string where = "tensor info " + std::to_string(i);
    Info t;
    t.name = r.string(where, "a tensor name", 1 << 16);
    if (t.name.empty()) throw EngineError(file, where, "empty tensor name");
    if (t.name.size() > kMaxNameBytes)
      throw EngineError(file, t.name, "tensor names are at most " + std::to_string(kMaxNameBytes) + " bytes");
    if (!names.insert(t.name).second) throw EngineError(file, t.name, "the tensor appears twice");
    const uint32_t n_dims = r.get<uint32_t>(t.name, "the number of dims");
    if (n_dims == 0 || n_dims > kMaxDims)
      throw EngineError(file, t.name, "has " + std::to_string(n_dims) + " dims (1 to 4 are allowed)");
    for (uint32_t d = 0; d < n_dims; ++d) t.ne.push_back(r.get<uint64_t>(t.name, "a dim"));
    t.type = r.get<uint32_t>(t.name, "the ggml type");
    t.offset = r.get<uint64_t>(t.name, "the data offset");
    infos.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t end_of_infos = r.offset();
  const uint64_t data_start = (end_of_infos + g->alignment_ - 1) / g->alignment_ * g->alignment_;
  const uint64_t size = g->file_->size();
  if (data_start > size && n_tensors > 0)
    throw EngineError(file, "tensor data", "truncated: the data section would start at " + std::to_string(data_start) +
                                               ", past the end of the file (" + std::to_string(size) + " bytes)");
  g->data_offset_ = data_start;
  const uint64_t data_size = data_start <= size ? size - data_start : 0;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) in the data section, to find overlaps
  std::vector<const std::string*> range_names;
  for (auto& info : infos) {
    const GgmlType* type = find_ggml_type(info.type);
    if (!type) throw EngineError(file, info.name, "unknown ggml type " + std::to_string(info.type));
    uint64_t numel = 1;
    for (uint64_t d : info.ne) {
      if (d > uint64_t(std::numeric_limits<int64_t>::max()) || (d != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / d))
        throw EngineError(file, info.name, "dims " + dims_text(info.ne) + " overflow");
      numel *= d;
    }
    if (info.ne[0] % uint64_t(type->block_values) != 0)
      throw EngineError(file, info.name, "the first dim " + std::to_string(info.ne[0]) + " is not a multiple of " +
                                             type->name + "'s block of " + std::to_string(type->block_values) + " values");
    const uint64_t blocks = numel / uint64_t(type->block_values);
    if (type->block_bytes != 0 && blocks > std::numeric_limits<uint64_t>::max() / type->block_bytes)
      throw EngineError(file, info.name, "dims " + dims_text(info.ne) + " overflow");
    const uint64_t nbytes = blocks * type->block_bytes;
    if (info.offset % g->alignment_ != 0)
      throw EngineError(file, info.name, "data offset " + std::to_string(info.offset) + " is not a multiple of the alignment " +
                                             std::to_string(g->alignment_));
    if (info.offset > data_size || nbytes > data_size - info.offset)
      throw EngineError(file, info.name, "truncated: its " + std::to_string(nbytes) + " bytes at data offset " +
                                             std::to_string(info.offset) + " run past the end of the file (the data section has " +
                                             std::to_string(data_size) + " bytes)");
    GgufTensor t;
    t.view.name = info.name;
    t.view.file = file;
    for (auto it = info.ne.rbegin(); it != info.ne.rend(); ++it) t.view.shape.push_back(int64_t(*it));
    t.view.data = g->file_->data() + data_start + info.offset;
    t.view.nbytes = size_t(nbytes);
    t.ggml_type = info.type;
    t.type_name = type->name;
    t.offset = info.offset;
    if (const auto dt = dtype_of_ggml_type(info.type)) {
      t.view.dtype = *dt;
      t.readable = true;
    } else if (info.type == 24) {
      t.view.dtype = DType::I8;
    } else if (info.type == 26) {
      t.view.dtype = DType::I32;
    } else if (info.type == 28) {
      t.view.dtype = DType::F64;
    }
    if (nbytes > 0) ranges.push_back({info.offset, info.offset + nbytes}), range_names.push_back(&info.name);
    g->tensors_.emplace(info.name, std::move(t));
  }
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a].first < ranges[b].first; });
  for (size_t i = 1; i < order.size(); ++i)
    if (ranges[order[i]].first < ranges[order[i - 1]].second)
      throw EngineError(file, *range_names[order[i]], "its data overlaps the data of '" + *range_names[order[i - 1]] + "'");
  return g;
}

namespace {

// gguf-split's part names: "-00002-of-00005.gguf" after the prefix.
std::string split_suffix(int64_t index, int64_t count) {
  char s[64];
  std::snprintf(s, sizeof s, "-%05lld-of-%05lld.gguf", static_cast<long long>(index + 1), static_cast<long long>(count));
  return s;
}

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::filesystem::path& path) {
  std::unique_ptr<GgufFile> given = open_part(path);
  const GgufMetadata gm(*given);
  if (!gm.has("split.count") || gm.integer("split.count") <= 1) return given;
  const int64_t count = gm.integer("split.count");
  const int64_t index = gm.integer("split.no");
  if (index >= count)
    throw EngineError(given->path(), "split.no", std::to_string(index) + " is not below split.count " + std::to_string(count));
  const std::string name = path.filename().string(), suffix = split_suffix(index, count);
  if (!name.ends_with(suffix) || name.size() == suffix.size())
    throw EngineError(given->path(), "split.no",
                      "part " + std::to_string(index + 1) + " of " + std::to_string(count) + " of a split model, but its name does not end in '" +
                          suffix + "', so the other parts cannot be found (gguf-split names them <prefix>" + split_suffix(0, count) +
                          " and so on)");
  const std::string prefix = path.string().substr(0, path.string().size() - suffix.size());

  std::vector<std::unique_ptr<GgufFile>> parts(static_cast<size_t>(count));
  parts[size_t(index)] = std::move(given);
  for (int64_t i = 0; i < count; ++i) {
    auto& part = parts[size_t(i)];
    if (!part) {
      const std::string p = prefix + split_suffix(i, count);
      std::error_code ec;
      if (!std::filesystem::is_regular_file(p, ec))
        throw EngineError(p, "", "missing: part " + std::to_string(i + 1) + " of the " + std::to_string(count) + " files of the model split as " +
                                     path.string());
      part = open_part(p);
    }
    const GgufMetadata m(*part);
    if (!m.has("split.count") || m.integer("split.count") != count)
      throw EngineError(part->path(), "split.count", "this part says " + (m.has("split.count") ? quoted_json(m.value("split.count")) : std::string("nothing")) +
                                                        ", but " + path.string() + " says " + std::to_string(count));
    if (m.integer("split.no") != i)
      throw EngineError(part->path(), "split.no", std::to_string(m.integer("split.no")) + ", but the file's name makes it " + std::to_string(i));
  }

  // The model: the first part's metadata, every part's tensors; the mappings stay alive with it.
  std::unique_ptr<GgufFile> g = std::move(parts[0]);
  for (int64_t i = 1; i < count; ++i) {
    for (auto& [tname, t] : parts[size_t(i)]->tensors_) {
      if (const GgufTensor* other = g->find(tname))
        throw EngineError(t.view.file, tname, "the tensor is also in " + other->view.file);
      t.part = int(i);
      g->tensors_.emplace(tname, std::move(t));
    }
    g->more_parts_.push_back(std::move(parts[size_t(i)]->file_));
  }
  const GgufMetadata m(*g);
  if (m.has("split.tensors.count") && uint64_t(m.integer("split.tensors.count")) != g->tensors_.size())
    throw EngineError(g->path(), "split.tensors.count",
                      std::to_string(m.integer("split.tensors.count")) + " tensors, but the " + std::to_string(count) + " parts hold " +
                          std::to_string(g->tensors_.size()));
  return g;
}

std::vector<std::string> GgufFile::part_paths() const {
  std::vector<std::string> out{path()};
  for (const auto& f : more_parts_) out.push_back(f->path());
  return out;
}

}  // namespace moe
