#include "engine/common/quant_linear.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace moe {
namespace {

uint32_t load_word(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

void store_word(uint8_t* p, uint32_t w) { std::memcpy(p, &w, 4); }

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

}  // namespace moe
