// A deterministic mutation fuzzer for SafetensorsFile::open, small enough to run under ctest in seconds.
// Valid files are bent in thousands of seeded ways (bit flips, truncations, header-length rewrites, edits
// of the JSON fields); every mutant must either open with every tensor inside the mapping, or throw an
// EngineError that names the file. Anything else (another exception, a crash, a sanitizer report) fails.
// The open-ended libFuzzer version is tests/fuzz/safetensors_fuzz.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <typeinfo>
#include <string>
#include <vector>

#include "engine/common/error.h"
#include "engine/formats/safetensors.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSeed = 0x5afe7e5050ull;
constexpr int kIterations = 6000;

using test::read_file;
using test::ScratchDir;
using test::write_file;  // a fresh file each time: see its comment on ext4

uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0 && bytes.size() >= 8; --i) n = (n << 8) | static_cast<unsigned char>(bytes[size_t(i)]);
  return n;
}

void set_header_length(std::string& bytes, uint64_t n) {
  if (bytes.size() < 8) bytes.resize(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((n >> (8 * i)) & 0xff);
}

// Small valid files: the seeds every mutation starts from.
std::vector<std::string> seed_files(const ScratchDir& dir) {
  std::vector<std::string> seeds;
  const std::vector<float> f32(12, 0.5f);
  const std::vector<uint16_t> half(6, 0x3c00);
  const std::vector<int64_t> i64 = {1, 2, 3};
  const std::vector<uint8_t> u8 = {1, 2, 3, 4, 5};
  const auto put = [&](const std::vector<TensorToWrite>& tensors, const std::map<std::string, std::string>& meta) {
    const fs::path p = dir / "seed.safetensors";
    write_safetensors(p, tensors, meta);
    seeds.push_back(read_file(p));
  };
  put({{"w", DType::F32, {3, 4}, f32.data(), 48}}, {});
  put({{"a", DType::F16, {2, 3}, half.data(), 12},
       {"b", DType::I64, {3}, i64.data(), 24},
       {"c", DType::U8, {5}, u8.data(), 5},
       {"s", DType::F32, {}, f32.data(), 4},
       {"z", DType::BF16, {0, 7}, nullptr, 0}},
      {{"format", "pt"}});
  put({{"x", DType::BF16, {6}, half.data(), 12}, {"y", DType::F32, {1, 1, 2}, f32.data(), 8}},
      {{"format", "pt"}, {"step", "10"}});
  return seeds;
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::string mutate(std::string bytes) {
    const int rounds = below(2) == 0 ? 1 : 2 + int(below(2));  // one mutation often, so some mutants stay valid
    for (int r = 0; r < rounds; ++r) {
      switch (below(8)) {
        case 7: edit_json(bytes, /*benign=*/true); break;
        case 0: flip_bits(bytes); break;
        case 1: truncate(bytes); break;
        case 2: rewrite_header_length(bytes); break;
        case 3: edit_json(bytes); break;
        case 4: edit_json(bytes); break;
        case 5: splice_header(bytes); break;
        default: interesting_byte(bytes); break;
      }
    }
    return bytes;
  }

 private:
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  // Where to aim: mostly the header, where the structure is.
  size_t position(const std::string& bytes) {
    if (bytes.empty()) return 0;
    const uint64_t header_end = std::min<uint64_t>(bytes.size(), 8 + std::min<uint64_t>(header_length(bytes), bytes.size()));
    if (below(4) != 0 && header_end > 0) return size_t(below(header_end));
    return size_t(below(bytes.size()));
  }

  void flip_bits(std::string& bytes) {
    if (bytes.empty()) return;
    const int n = 1 + int(below(4));
    for (int i = 0; i < n; ++i) bytes[position(bytes)] ^= char(1u << below(8));
  }

  void truncate(std::string& bytes) { bytes.resize(size_t(below(bytes.size() + 1))); }

  void rewrite_header_length(std::string& bytes) {
    const uint64_t n = header_length(bytes);
    const uint64_t size = bytes.size();
    const uint64_t choices[] = {0,
                                1,
                                n - 1,
                                n + 1,
                                n + 8,
                                size - 8,
                                size - 7,
                                size,
                                100'000'000,
                                100'000'001,
                                uint64_t(1) << 63,
                                ~uint64_t(0),
                                ~uint64_t(0) - 7,
                                rng_(),
                                below(size + 16)};
    set_header_length(bytes, choices[below(std::size(choices))]);
  }

  nlohmann::json random_value(int depth = 0) {
    switch (below(depth > 2 ? 8 : 10)) {
      case 0: return nullptr;
      case 1: return below(2) == 1;
      case 2: return int64_t(below(64)) - 16;
      case 3: return rng_();                                     // often past int64
      case 4: return -int64_t(rng_() >> 1);
      case 5: return double(below(1000)) / 7.0;
      case 6: return std::string(below(2) ? "F32" : "\xce\xbb");
      case 7: return int64_t(1) << below(64);
      case 8: {
        nlohmann::json a = nlohmann::json::array();
        for (uint64_t i = below(4); i > 0; --i) a.push_back(random_value(depth + 1));
        return a;
      }
      default: {
        nlohmann::json o = nlohmann::json::object();
        o["k"] = random_value(depth + 1);
        return o;
      }
    }
  }

  nlohmann::json random_offset(uint64_t data_size) {
    switch (below(6)) {
      case 0: return data_size;
      case 1: return data_size + 1;
      case 2: return below(data_size + 1);
      case 3: return uint64_t(1) << below(64);
      case 4: return ~uint64_t(0) - below(16);
      default: return random_value();
    }
  }

  // Parse the header, change one thing in it, write it back (with a fresh length, sometimes padded).
  // A benign edit keeps the file valid, so that the success path is fuzzed too.
  void edit_json(std::string& bytes, bool benign = false) {
    if (bytes.size() < 8) return;
    const uint64_t n = header_length(bytes);
    if (n > bytes.size() - 8) return;
    nlohmann::json header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + ptrdiff_t(n), nullptr, false);
    if (header.is_discarded() || !header.is_object() || header.empty()) return;
    const std::string data = bytes.substr(size_t(8 + n));

    std::vector<std::string> names;
    for (const auto& [k, v] : header.items()) names.push_back(k);
    const std::string name = names[below(names.size())];
    nlohmann::json& entry = header[name];
    const auto pick_field = [&]() -> nlohmann::json* {
      if (!entry.is_object() || entry.empty()) return nullptr;
      auto it = entry.begin();
      std::advance(it, ptrdiff_t(below(entry.size())));
      return &*it;
    };

    switch (benign ? 100 + below(4) : below(12)) {
      case 100:  // the same bytes seen as U8
        if (entry.is_object() && entry["data_offsets"].is_array() && entry["data_offsets"].size() == 2 &&
            entry["data_offsets"][0].is_number_unsigned() && entry["data_offsets"][1].is_number_unsigned()) {
          entry["dtype"] = "U8";
          entry["shape"] = {entry["data_offsets"][1].get<uint64_t>() - entry["data_offsets"][0].get<uint64_t>()};
        }
        break;
      case 101:  // a fresh name
        if (name != "__metadata__") {
          nlohmann::json moved = header[name];
          header.erase(name);
          header["renamed_" + std::to_string(rng_())] = moved;
        }
        break;
      case 102:  // other metadata strings
        header["__metadata__"] = {{"format", "pt"}, {"note", std::string(below(40), 'n')}};
        break;
      case 103: {  // flip a bit in the data buffer
        const size_t at = size_t(8 + n + below(bytes.size() - 8 - n + 1));
        if (at < bytes.size()) bytes[at] ^= char(1u << below(8));
        return;
      }
      case 0:  // another dtype, known or not
        if (entry.is_object()) {
          static const char* dtypes[] = {"F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "F8_E4M3", "F4", "C64", "f32", ""};
          entry["dtype"] = dtypes[below(std::size(dtypes))];
        }
        break;
      case 1:  // another shape
        if (entry.is_object()) {
          nlohmann::json shape = nlohmann::json::array();
          for (uint64_t i = below(4); i > 0; --i)
            shape.push_back(below(3) == 0 ? random_value() : nlohmann::json(below(9)));
          entry["shape"] = shape;
        }
        break;
      case 2:
      case 3:  // other offsets
        if (entry.is_object()) {
          nlohmann::json& off = entry["data_offsets"];
          if (off.is_array() && off.size() == 2 && below(4) != 0) off[below(2)] = random_offset(data.size());
          else off = nlohmann::json::array({random_offset(data.size()), random_offset(data.size())});
        }
        break;
      case 4:  // swap begin and end
        if (entry.is_object() && entry["data_offsets"].is_array() && entry["data_offsets"].size() == 2)
          std::swap(entry["data_offsets"][0], entry["data_offsets"][1]);
        break;
      case 5:  // drop a field
        if (entry.is_object() && !entry.empty()) entry.erase(entry.begin());
        break;
      case 6:  // one field or the whole entry becomes anything
        if (nlohmann::json* f = pick_field(); f != nullptr && below(2) == 0) *f = random_value();
        else entry = random_value();
        break;
      case 7:  // copy another tensor's offsets: overlaps
        if (names.size() > 1 && entry.is_object()) {
          const nlohmann::json& other = header[names[below(names.size())]];
          if (other.is_object() && other.contains("data_offsets")) entry["data_offsets"] = other["data_offsets"];
        }
        break;
      case 8:  // metadata of the wrong kind
        header["__metadata__"] = below(2) ? random_value() : nlohmann::json::object({{"k", random_value()}});
        break;
      case 9:  // a new tensor somewhere in the buffer
        header["new" + std::to_string(below(100))] = {
            {"dtype", "U8"}, {"shape", {below(data.size() + 2)}}, {"data_offsets", {below(data.size() + 1), below(data.size() + 2)}}};
        break;
      case 10:  // shift all offsets of one tensor
        if (entry.is_object() && entry["data_offsets"].is_array() && entry["data_offsets"].size() == 2 &&
            entry["data_offsets"][0].is_number_unsigned() && entry["data_offsets"][1].is_number_unsigned()) {
          const uint64_t d = below(9);
          entry["data_offsets"][0] = entry["data_offsets"][0].get<uint64_t>() + d;
          entry["data_offsets"][1] = entry["data_offsets"][1].get<uint64_t>() + d;
        }
        break;
      default:  // rename: collisions, the metadata key, odd bytes
        if (names.size() > 0) {
          nlohmann::json moved = header[name];
          header.erase(name);
          static const char* new_names[] = {"__metadata__", "", "w", "a", "\xe2\x82\xac", "x y"};
          header[new_names[below(std::size(new_names))]] = moved;
        }
        break;
    }
    std::string text = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (below(2) == 0) text.append((8 - text.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    set_header_length(out, text.size());
    bytes = out + text + data;
  }

  // Insert or delete a few header bytes without fixing the length.
  void splice_header(std::string& bytes) {
    const size_t at = position(bytes);
    if (below(2) == 0 && at < bytes.size()) {
      bytes.erase(at, size_t(1 + below(std::min<uint64_t>(8, bytes.size() - at))));
    } else {
      static const char* snippets[] = {"{", "}", "[", "]", "\"", ",", ":", "-", "0", "99999999999999999999", "1e999",
                                       "\\u0000", "\xff", "\xc0\xaf", " ", "null"};
      bytes.insert(std::min(at, bytes.size()), snippets[below(std::size(snippets))]);
    }
  }

  void interesting_byte(std::string& bytes) {
    if (bytes.empty()) return;
    static const char interesting[] = {'{', '}', '[', ']', '"', ',', ':', '-', '0', '9', 'e', '.', ' ', '\0',
                                       '\x7f', '\x80', '\xbf', '\xc0', '\xed', '\xf4', '\xff'};
    bytes[position(bytes)] = interesting[below(std::size(interesting))];
  }

  std::mt19937_64 rng_;
};

// Everything a successful open promises: every tensor's bytes inside the mapping, sizes that match
// the shapes, no two tensors sharing a byte.
void check_opened(const SafetensorsFile& file) {
  const std::byte* lo = file.mapping().data();
  const std::byte* hi = lo + file.mapping().size();
  std::vector<std::pair<const std::byte*, const std::byte*>> spans;
  for (const auto& [name, t] : file.tensors()) {
    ASSERT_EQ(t.name, name);
    ASSERT_GE(t.data, lo) << name;
    ASSERT_LE(t.data, hi) << name;
    ASSERT_LE(t.nbytes, size_t(hi - t.data)) << name;
    ASSERT_EQ(uint64_t(t.numel()) * dtype_size(t.dtype), t.nbytes) << name;
    for (int64_t d : t.shape) ASSERT_GE(d, 0) << name;
    unsigned sum = 0;  // touch every byte: a pointer outside the mapping faults here
    for (size_t i = 0; i < t.nbytes; ++i) sum += unsigned(t.data[i]);
    (void)sum;
    if (t.nbytes > 0) spans.emplace_back(t.data, t.data + t.nbytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) ASSERT_LE(spans[i - 1].second, spans[i].first) << "tensors overlap";
}

TEST(SafetensorsFuzz, MutantsOpenCleanlyOrThrowEngineError) {
  ScratchDir dir;
  const std::vector<std::string> seeds = seed_files(dir);
  for (const std::string& s : seeds) {  // the seeds themselves are valid
    write_file(dir / "seed_check.safetensors", s);
    ASSERT_NO_THROW(SafetensorsFile::open(dir / "seed_check.safetensors"));
  }

  Mutator mutator(kSeed);
  const fs::path path = dir / "mutant.safetensors";
  int opened = 0, refused = 0;
  for (int i = 0; i < kIterations; ++i) {
    const std::string bytes = mutator.mutate(seeds[size_t(i) % seeds.size()]);
    write_file(path, bytes);
    try {
      const auto file = SafetensorsFile::open(path);
      ++opened;
      check_opened(*file);
      if (::testing::Test::HasFatalFailure()) {
        write_file(dir / "failing.safetensors", bytes);
        FAIL() << "iteration " << i << ": opened a file whose tensors break the promises";
      }
    } catch (const EngineError& e) {
      ++refused;
      ASSERT_EQ(e.file(), path.string()) << "iteration " << i << ": " << e.what();
      ASSERT_GT(std::strlen(e.what()), path.string().size() + 4) << "iteration " << i;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << i << ": " << typeid(e).name() << ": " << e.what();
    } catch (...) {
      FAIL() << "iteration " << i << ": unknown exception";
    }
  }
  // Both outcomes must be common, or the mutations are too mild (or too wild) to test anything.
  EXPECT_GT(opened, kIterations / 20) << "refused " << refused;
  EXPECT_GT(refused, kIterations / 4) << "opened " << opened;
  std::printf("[ fuzz     ] %d mutants: %d opened, %d refused with EngineError\n", kIterations, opened, refused);
}

}  // namespace
}  // namespace moe
