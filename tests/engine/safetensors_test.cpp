// safetensors: what we write reads back bit for bit, sharded folders load through their index, and every
// way a file can lie gives an EngineError that names the file and the field.
#include "engine/formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/common/error.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::ScratchDir;
using test::write_file;

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((v >> (8 * i)) & 0xff);
  return s;
}

// A raw safetensors file: the header text exactly as given, then `data_bytes` zero bytes.
std::string raw_file(const std::string& header, size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\0');
}

// Opening `path` with `open` must throw EngineError whose message contains every fragment.
template <typename Open>
void expect_engine_error(const Open& open, const fs::path& path, const std::vector<std::string>& fragments) {
  try {
    open(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const EngineError& e) {
    const std::string what = e.what();
    for (const std::string& f : fragments) EXPECT_NE(what.find(f), std::string::npos) << "'" << f << "' not in: " << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an EngineError: " << e.what();
  }
}

// Opening `path` must throw EngineError whose message names the file and contains every fragment.
void expect_open_error(const fs::path& path, std::initializer_list<std::string> fragments) {
  std::vector<std::string> all = {path.string()};
  all.insert(all.end(), fragments);
  expect_engine_error([](const fs::path& p) { SafetensorsFile::open(p); }, path, all);
}

void expect_folder_error(const fs::path& dir, std::initializer_list<std::string> fragments) {
  expect_engine_error([](const fs::path& p) { TensorStore::open_folder(p); }, dir, fragments);
}

template <typename T>
TensorToWrite tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& v) {
  return TensorToWrite{name, dtype, std::move(shape), v.data(), v.size() * sizeof(T)};
}

// ---------------------------------------------------------------------------------------------------
// Round trips

TEST(Safetensors, RoundTripKeepsDtypesShapesBytesAndMetadata) {
  ScratchDir dir;
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  std::vector<uint16_t> f16, bf16;
  for (float x : {0.5f, -1.0f, 65504.0f, 5.96e-8f}) f16.push_back(f32_to_f16(x));
  for (float x : {1.0f, -3.0f, 0.15625f, 1e20f}) bf16.push_back(f32_to_bf16(x));
  const std::vector<int64_t> i64 = {-1, 0, int64_t(1) << 40};
  const std::vector<float> scalar = {42.0f};
  const std::vector<float> empty;

  const fs::path path = dir / "t.safetensors";
  write_safetensors(path,
                    {tensor("a.f32", DType::F32, {2, 3}, f32), tensor("b.f16", DType::F16, {4}, f16),
                     tensor("c.bf16", DType::BF16, {2, 2}, bf16), tensor("d.i64", DType::I64, {3}, i64),
                     tensor("scalar", DType::F32, {}, scalar), tensor("empty", DType::F32, {0, 4}, empty)},
                    {{"format", "pt"}, {"note", "h\xc3\xa9llo"}});
  EXPECT_FALSE(fs::exists(dir / "t.safetensors.tmp"));

  const auto file = SafetensorsFile::open(path);
  ASSERT_EQ(file->tensors().size(), 6u);
  EXPECT_EQ(file->metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "h\xc3\xa9llo"}}));

  const auto check = [&](const std::string& name, DType dtype, std::vector<int64_t> shape, const void* bytes,
                         size_t nbytes) {
    SCOPED_TRACE(name);
    const TensorView& t = file->tensors().at(name);
    EXPECT_EQ(t.name, name);
    EXPECT_EQ(t.dtype, dtype);
    EXPECT_EQ(t.shape, shape);
    EXPECT_EQ(t.nbytes, nbytes);
    EXPECT_EQ(t.file, path.string());
    if (nbytes > 0) {
      EXPECT_EQ(std::memcmp(t.data, bytes, nbytes), 0);
    }
  };
  check("a.f32", DType::F32, {2, 3}, f32.data(), 24);
  check("b.f16", DType::F16, {4}, f16.data(), 8);
  check("c.bf16", DType::BF16, {2, 2}, bf16.data(), 8);
  check("d.i64", DType::I64, {3}, i64.data(), 24);
  check("scalar", DType::F32, {}, scalar.data(), 4);
  check("empty", DType::F32, {0, 4}, nullptr, 0);
  EXPECT_EQ(file->tensors().at("scalar").numel(), 1);
  EXPECT_EQ(file->tensors().at("empty").numel(), 0);

  float back[4];
  convert_to_f32(file->tensors().at("c.bf16").data, DType::BF16, 4, back);
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], -3.0f);
  EXPECT_EQ(back[2], 0.15625f);

  // The header is padded with spaces so the data buffer starts 8-byte aligned, as the reference writes it.
  const std::string bytes = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
}

TEST(Safetensors, WriteReplacesAnExistingFile) {
  ScratchDir dir;
  const fs::path path = dir / "t.safetensors";
  const std::vector<float> one = {1, 2, 3}, two = {4};
  write_safetensors(path, {tensor("x", DType::F32, {3}, one)});
  write_safetensors(path, {tensor("y", DType::F32, {1}, two)});
  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->tensors().count("x"), 0u);
  EXPECT_EQ(*reinterpret_cast<const float*>(file->tensors().at("y").data), 4.0f);
}

TEST(Safetensors, WriteRefusesBytesThatDoNotMatchTheShape) {
  ScratchDir dir;
  const std::vector<float> v = {1, 2, 3};
  const fs::path path = dir / "t.safetensors";
  EXPECT_THROW(write_safetensors(path, {TensorToWrite{"x", DType::F32, {4}, v.data(), 12}}), EngineError);
  EXPECT_THROW(write_safetensors(path, {tensor("x", DType::F32, {3}, v), tensor("x", DType::F32, {3}, v)}),
               EngineError);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir / "t.safetensors.tmp"));
}

TEST(Safetensors, ReadsAFileWrittenByHand) {
  // The layout the Python reference produces: sorted keys, metadata first, header padded with spaces.
  ScratchDir dir;
  std::string header =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string data(8, '\0');
  const float w[2] = {0.25f, -4.0f};
  std::memcpy(data.data(), w, 8);
  write_file(dir / "h.safetensors", le64(header.size()) + header + data);
  const auto file = SafetensorsFile::open(dir / "h.safetensors");
  const float* got = reinterpret_cast<const float*>(file->tensors().at("w").data);
  EXPECT_EQ(got[0], 0.25f);
  EXPECT_EQ(got[1], -4.0f);
}

// ---------------------------------------------------------------------------------------------------
// Folders

TEST(TensorStore, LoadsShardsThroughTheIndex) {
  ScratchDir dir;
  const std::vector<float> a = {1, 2}, b = {3, 4, 5};
  write_safetensors(dir / "model-00001-of-00002.safetensors", {tensor("a", DType::F32, {2}, a)});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {tensor("b", DType::F32, {3}, b)});
  write_file(dir / "model.safetensors.index.json",
             R"({"metadata": {"total_size": 20}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                  "b": "model-00002-of-00002.safetensors"}})");
  const TensorStore store = TensorStore::open_folder(dir.path);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(store.total_bytes(), 20u);
  EXPECT_EQ(reinterpret_cast<const float*>(store.get("b").data)[2], 5.0f);
  EXPECT_NE(store.get("a").file.find("model-00001-of-00002.safetensors"), std::string::npos);
  EXPECT_EQ(store.find("c"), nullptr);
  try {
    store.get("c");
    ADD_FAILURE();
  } catch (const EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("'c'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir.path.string()), std::string::npos) << e.what();
  }
}

TEST(TensorStore, LoadsASingleModelFile) {
  ScratchDir dir;
  const std::vector<float> a = {1, 2};
  write_safetensors(dir / "model.safetensors", {tensor("a", DType::F32, {2}, a)});
  write_safetensors(dir / "other.safetensors", {tensor("b", DType::F32, {2}, a)});  // ignored: model.safetensors wins
  const TensorStore store = TensorStore::open_folder(dir.path);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a"}));
}

TEST(TensorStore, FallsBackToEverySafetensorsFile) {
  ScratchDir dir;
  const std::vector<float> a = {1, 2};
  write_safetensors(dir / "b.safetensors", {tensor("from_b", DType::F32, {2}, a)});
  write_safetensors(dir / "a.safetensors", {tensor("from_a", DType::F32, {2}, a)});
  write_file(dir / "notes.txt", "not a model");
  const TensorStore store = TensorStore::open_folder(dir.path);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"from_a", "from_b"}));
}

TEST(TensorStore, RefusesATensorDefinedTwice) {
  ScratchDir dir;
  const std::vector<float> a = {1, 2};
  write_safetensors(dir / "a.safetensors", {tensor("w", DType::F32, {2}, a)});
  write_safetensors(dir / "b.safetensors", {tensor("w", DType::F32, {2}, a)});
  expect_folder_error(dir.path, {"b.safetensors", "'w'", "a.safetensors"});
}

TEST(TensorStore, EmptyFolderNamesTheFolder) {
  ScratchDir dir;
  expect_folder_error(dir.path, {dir.path.string(), "no model.safetensors.index.json"});
  expect_folder_error(dir / "missing", {"missing", "not found"});
}

TEST(TensorStore, IndexNamingAMissingShard) {
  ScratchDir dir;
  const std::vector<float> a = {1, 2};
  write_safetensors(dir / "model-00001-of-00002.safetensors", {tensor("a", DType::F32, {2}, a)});
  write_file(dir / "model.safetensors.index.json",
             R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})");
  expect_folder_error(dir.path,
                      {"model.safetensors.index.json", "'b'", "model-00002-of-00002.safetensors", "does not exist"});
}

TEST(TensorStore, TensorListedInTheIndexButAbsentFromItsShard) {
  ScratchDir dir;
  const std::vector<float> a = {1, 2};
  write_safetensors(dir / "model-00001-of-00001.safetensors", {tensor("a", DType::F32, {2}, a)});
  write_file(dir / "model.safetensors.index.json",
             R"({"weight_map": {"a": "model-00001-of-00001.safetensors", "ghost": "model-00001-of-00001.safetensors"}})");
  expect_folder_error(dir.path, {"model-00001-of-00001.safetensors", "'ghost'", "absent"});
}

TEST(TensorStore, IndexErrors) {
  ScratchDir dir;
  write_file(dir / "model.safetensors.index.json", R"({"metadata": {}})");
  expect_folder_error(dir.path, {"model.safetensors.index.json", "'weight_map'", "missing"});
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": {}})");
  expect_folder_error(dir.path, {"model.safetensors.index.json", "'weight_map'", "empty"});
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"a": 3}})");
  expect_folder_error(dir.path, {"model.safetensors.index.json", "'a'", "integer 3"});
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"a": "../outside.safetensors"}})");
  expect_folder_error(dir.path, {"model.safetensors.index.json", "'a'", "inside the model folder"});
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": )");
  expect_folder_error(dir.path, {"model.safetensors.index.json", "not valid JSON"});
}

// ---------------------------------------------------------------------------------------------------
// Files that lie

class BadSafetensors : public ::testing::Test {
 protected:
  // Writes `bytes` as bad.safetensors and returns its path.
  fs::path put(const std::string& bytes) {
    const fs::path p = dir_ / "bad.safetensors";
    write_file(p, bytes);
    return p;
  }
  // A valid two-tensor file's bytes.
  std::string valid() {
    const std::vector<float> a(16, 1.0f), b(8, 2.0f);
    const fs::path p = dir_ / "valid.safetensors";
    write_safetensors(p, {tensor("alpha", DType::F32, {4, 4}, a), tensor("beta", DType::F32, {8}, b)});
    return read_file(p);
  }
  ScratchDir dir_;
};

TEST_F(BadSafetensors, EmptyAndShorterThanTheLength) {
  for (size_t cut : {0, 1, 3, 7}) {
    SCOPED_TRACE(cut);
    expect_open_error(put(valid().substr(0, cut)), {"'header length'", std::to_string(cut) + " bytes"});
  }
}

TEST_F(BadSafetensors, TruncatedInsideTheHeader) {
  const std::string bytes = valid();
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  for (size_t cut : {size_t(8), size_t(9), size_t(8 + n / 2), size_t(8 + n - 1)}) {
    SCOPED_TRACE(cut);
    expect_open_error(put(bytes.substr(0, cut)), {"'header length'", "past the end of the file", "truncated"});
  }
}

TEST_F(BadSafetensors, TruncatedInsideTheData) {
  const std::string bytes = valid();
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  // alpha is [0, 64), beta [64, 96): cutting in beta's bytes names beta, cutting in alpha's names alpha.
  expect_open_error(put(bytes.substr(0, 8 + n + 70)), {"'beta'", "data_offsets [64, 96)", "beyond", "truncated"});
  expect_open_error(put(bytes.substr(0, 8 + n + 10)), {"'alpha'", "data_offsets [0, 64)", "beyond", "truncated"});
  expect_open_error(put(bytes.substr(0, bytes.size() - 1)), {"'beta'", "beyond the data buffer of 95 bytes"});
}

TEST_F(BadSafetensors, HeaderLengthBeyondTheFile) {
  std::string bytes = valid();
  const std::string rewritten = le64(bytes.size()) + bytes.substr(8);
  expect_open_error(put(rewritten), {"'header length'", std::to_string(bytes.size()), "past the end"});
}

TEST_F(BadSafetensors, HeaderLengthHuge) {
  const std::string bytes = valid();
  for (uint64_t n : {uint64_t(1) << 63, ~uint64_t(0), uint64_t(100'000'001)}) {
    SCOPED_TRACE(n);
    expect_open_error(put(le64(n) + bytes.substr(8)), {"'header length'", std::to_string(n), "limit"});
  }
}

TEST_F(BadSafetensors, HeaderNotJson) {
  expect_open_error(put(raw_file("{not json}", 0)), {"'header'", "not valid JSON"});
  expect_open_error(put(raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})", 4)),
                    {"'header'", "not valid JSON"});
  expect_open_error(put(raw_file(R"({"a": 1e999})", 0)), {"'header'", "not valid JSON"});
  expect_open_error(put(raw_file("", 0)), {"'header'", "empty"});
  expect_open_error(put(raw_file("{\"\xff\": 1}", 0)), {"'header'", "not valid UTF-8"});
  expect_open_error(put(raw_file("{\"\xc0\xaf\": 1}", 0)), {"'header'", "not valid UTF-8"});  // overlong '/'
  expect_open_error(put(raw_file("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", 0)),
                    {"'header'", "nested"});
}

TEST_F(BadSafetensors, HeaderNotAnObject) {
  expect_open_error(put(raw_file("[1, 2]  ", 0)), {"'header'", "does not start with '{'"});
  expect_open_error(put(raw_file("\"text\"", 0)), {"'header'", "does not start with '{'"});
  expect_open_error(put(raw_file(" {}", 0)), {"'header'", "does not start with '{'"});
  expect_open_error(put(raw_file(R"({"a": 1})", 0)), {"'a'", "expected an object", "integer 1"});
}

TEST_F(BadSafetensors, Dtype) {
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}})", 4)),
                    {"'w'", "dtype", "\"F7\"", "known: BOOL"});
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}})", 1)),
                    {"'w'", "dtype", "\"F4\"", "does not support"});
  expect_open_error(put(raw_file(R"({"w": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}})", 4)),
                    {"'w'", "dtype", "integer 32"});
  expect_open_error(put(raw_file(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4)), {"'w'", "\"dtype\""});
}

TEST_F(BadSafetensors, Shape) {
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4)),
                    {"'w'", "shape[0]", "non-negative", "integer -1"});
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 10]}})", 10)),
                    {"'w'", "shape[0]", "number 2.5"});
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [1, "2"], "data_offsets": [0, 8]}})", 8)),
                    {"'w'", "shape[1]", "string \"2\""});
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})", 16)),
                    {"'w'", "shape", "integer 4"});
  expect_open_error(
      put(raw_file(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}})", 16)),
      {"'w'", "shape", "2^63"});
  // 2^62 elements of 4 bytes: the element count fits, the byte count does not.
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 16]}})", 16)),
                    {"'w'", "data_offsets", "more than 2^64"});
  // A zero dimension after huge ones: numel() must stay computable, so this is refused too.
  expect_open_error(
      put(raw_file(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}})", 0)),
      {"'w'", "shape", "2^63"});
}

TEST_F(BadSafetensors, OffsetsOutOfRange) {
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]}})", 1024)),
                    {"'w'", "data_offsets [0, 4096) end beyond the data buffer of 1024 bytes"});
  expect_open_error(
      put(raw_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551616]}})", 4)),
      {"'w'", "data_offsets[0]"});
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4)),
                    {"'w'", "data_offsets[0]", "integer -4"});
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", 8)),
                    {"'w'", "data_offsets", "[begin, end]", "3 values"});
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [1]}})", 4)), {"'w'", "\"data_offsets\""});
}

TEST_F(BadSafetensors, EndBeforeBegin) {
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8)),
                    {"'w'", "data_offsets [8, 4)", "end before begin"});
}

TEST_F(BadSafetensors, SizeDoesNotMatchShapeTimesDtype) {
  expect_open_error(put(raw_file(R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 24]}})", 24)),
                    {"'w'", "data_offsets [0, 24) hold 24 bytes but shape [2, 3] of BF16 needs 12"});
  expect_open_error(put(raw_file(R"({"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 0]}})", 0)),
                    {"'w'", "shape [] of F32 needs 4"});
}

TEST_F(BadSafetensors, OverlappingTensors) {
  expect_open_error(put(raw_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})",
                                 20)),
                    {"'b'", "overlap", "'a'", "[0, 16)"});
  // Containment, listed in the other order; and two tensors on the same bytes.
  expect_open_error(put(raw_file(R"({"inner": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                                    "outer": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                                 16)),
                    {"'inner'", "overlap", "'outer'"});
  expect_open_error(put(raw_file(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "y": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})",
                                 8)),
                    {"'y'", "overlap", "'x'"});
}

TEST_F(BadSafetensors, AcceptsZeroSizeTensorsAnywhereAndGaps) {
  // A zero-size tensor owns no byte; gaps between tensors are harmless.
  const auto file = SafetensorsFile::open(put(raw_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                    "z": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
                                    "b": {"dtype": "U8", "shape": [2], "data_offsets": [20, 22]}})",
                                                       24)));
  EXPECT_EQ(file->tensors().size(), 3u);
  EXPECT_EQ(file->tensors().at("z").nbytes, 0u);
}

TEST_F(BadSafetensors, Metadata) {
  expect_open_error(put(raw_file(R"({"__metadata__": ["pt"]})", 0)), {"'__metadata__'", "object of strings"});
  expect_open_error(put(raw_file(R"({"__metadata__": {"format": "pt", "step": 3}})", 0)),
                    {"'__metadata__'", "\"step\"", "integer 3"});
}

TEST_F(BadSafetensors, NotAFile) {
  expect_open_error(dir_ / "nothing.safetensors", {"not found"});
  expect_open_error(dir_.path, {"folder"});
}

}  // namespace
}  // namespace moe
