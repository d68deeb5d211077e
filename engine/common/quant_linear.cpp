#include "engine/common/quant_linear.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace moe {
namespace {

uint32_t load_word(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

void store_word(uint8_t* p, uint32_t w) { std::memcpy(p, &w, 4); }

// f(n0, n1) over [0, n) in one range per thread of the machine, each at least `least` long (one range, on this
// thread, when n is small).
template <class F>
void split_over_threads(int64_t n, int64_t least, const F& f) {
  const int64_t threads = std::clamp<int64_t>(int64_t(std::thread::hardware_concurrency()), 1, std::max<int64_t>(n / least, 1));
  if (threads == 1) {
    f(int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t) pool.emplace_back(f, n * t / threads, n * (t + 1) / threads);
  for (std::thread& th : pool) th.join();
}

}  // namespace

void quant_linear_values(QuantLinearLayout layout, int bits, const uint8_t* qweight, int64_t rows, int64_t cols,
                         uint8_t* dst) {
  const int64_t words = cols * bits / 32;  // per output row
  if (layout == QuantLinearLayout::Gptq) {
    // [words, rows] → [rows, words], in tiles so that both sides stay in cache.
    constexpr int64_t kTile = 64;
    for (int64_t w0 = 0; w0 < words; w0 += kTile)
      for (int64_t r0 = 0; r0 < rows; r0 += kTile)
        for (int64_t w = w0; w < std::min(words, w0 + kTile); ++w)
          for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
            store_word(dst + size_t(r * words + w) * 4, load_word(qweight + size_t(w * rows + r) * 4));
    return;
  }
  // AWQ, 4 bits: the 8 words of inputs 8i … 8i + 7 for outputs 8w … 8w + 7 become those outputs' words i: an 8 × 8
  // transpose of nibbles (word j's nibble k to word k's nibble j), done as three rounds of block swaps (4 × 4
  // blocks between words j and j + 4, 2 × 2 between j and j + 2, single nibbles between j and j + 1).
  const int64_t out_words = rows / 8;
  for (int64_t w = 0; w < out_words; ++w)  // each output row written front to back
    for (int64_t i = 0; i < cols / 8; ++i) {
      uint32_t m[8];
      for (int j = 0; j < 8; ++j) m[j] = load_word(qweight + size_t((8 * i + j) * out_words + w) * 4);
      for (const auto& [d, mask] : {std::pair{4, 0x0000ffffu}, std::pair{2, 0x00ff00ffu}, std::pair{1, 0x0f0f0f0fu}})
        for (int j = 0; j < 8; ++j)
          if (!(j & d)) {
            const uint32_t t = ((m[j] >> (4 * d)) ^ m[j + d]) & mask;
            m[j + d] ^= t;
            m[j] ^= t << (4 * d);
          }
      for (int k = 0; k < 8; ++k) store_word(dst + size_t((8 * w + kAwqOrder[k]) * words + i) * 4, m[k]);
    }
}

bool quant_linear_zero_points(QuantLinearLayout layout, int bits, bool gptq_v1, const uint8_t* qzeros, int64_t rows,
                              int64_t groups, int8_t* out) {
  const int per_word = 32 / bits;
  const int64_t words = rows / per_word;
  const uint32_t mask = (1u << bits) - 1, v1_add = bits == 4 ? 0x11111111u : 0x01010101u;
  const int offset = 1 << (bits - 1);
  bool any = false;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t w = 0; w < words; ++w) {
      uint32_t word = load_word(qzeros + size_t(g * words + w) * 4);
      if (gptq_v1) word += v1_add;  // wraps, as GPTQModel's int32 add does
      for (int k = 0; k < per_word; ++k) {
        const int64_t r = per_word * w + (layout == QuantLinearLayout::Awq ? kAwqOrder[k] : k);
        const int z = int((word >> (bits * k)) & mask) - offset;
        out[r * groups + g] = int8_t(z);
        any |= z != 0;
      }
    }
  return any;
}

bool quant_linear_input_order(const uint8_t* group_of, int64_t cols, int64_t groups, int32_t* order) {
  const int64_t group = cols / groups;
  std::vector<int32_t> g(static_cast<size_t>(cols));
  bool plain = true;
  for (int64_t c = 0; c < cols; ++c) {
    std::memcpy(&g[size_t(c)], group_of + 4 * c, 4);
    if (g[size_t(c)] < 0 || g[size_t(c)] >= groups)
      throw std::invalid_argument("input " + std::to_string(c) + " is in group " + std::to_string(g[size_t(c)]) +
                                  ", outside the " + std::to_string(groups) + " groups");
    plain = plain && g[size_t(c)] == c / group;
  }
  if (plain) return false;
  // A counting sort: where each group's inputs start, then the inputs in order.
  std::vector<int64_t> start(size_t(groups) + 1, 0);
  for (int32_t gi : g) ++start[size_t(gi) + 1];
  for (int64_t k = 0; k < groups; ++k)
    if (start[size_t(k) + 1] != group)
      throw std::invalid_argument("group " + std::to_string(k) + " has " + std::to_string(start[size_t(k) + 1]) +
                                  " inputs, not " + std::to_string(group) + " as every group must");
  for (int64_t k = 0; k < groups; ++k) start[size_t(k) + 1] += start[size_t(k)];
  for (int64_t c = 0; c < cols; ++c) order[start[size_t(g[size_t(c)])]++] = int32_t(c);
  return true;
}

void packed_int_gather_columns(int bits, uint8_t* values, int64_t rows, int64_t cols, const int32_t* order) {
  const size_t row_bytes = size_t(cols) * size_t(bits) / 8;
  split_over_threads(rows, 64, [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> v(static_cast<size_t>(cols));  // the row's values, a byte each (twice as fast as nibbles)
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* dst = values + size_t(r) * row_bytes;
      if (bits == 8) {
        std::memcpy(v.data(), dst, row_bytes);
        for (int64_t j = 0; j < cols; ++j) dst[j] = v[size_t(order[j])];
        continue;
      }
      for (size_t i = 0; i < row_bytes; ++i) v[2 * i] = dst[i] & 0xf, v[2 * i + 1] = uint8_t(dst[i] >> 4);
      for (int64_t j = 0; j < cols; j += 2) dst[j / 2] = uint8_t(v[size_t(order[j])] | v[size_t(order[j + 1])] << 4);
    }
  });
}

}  // namespace moe
