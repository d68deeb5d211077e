#include "engine/common/packed_int.h"

#include <cstring>

#include "engine/common/ggml_quants.h"

namespace moe {

float round_to_dtype(float f, DType to) {
  if (to == DType::BF16) return bf16_to_f32(f32_to_bf16(f));
  if (to == DType::F16) return f16_to_f32(f32_to_f16(f));
  return f;
}

void packed_int_dequantize_cols(DType t, const void* data, int64_t cols, const TileScales& tiles, int64_t r, int64_t c0,
                                int64_t n, float* dst) {
  const uint8_t* row = static_cast<const uint8_t*>(data) + size_t(r) * packed_int_row_bytes(t, cols);
  const float* scales = tiles.row_scales(r);
  const int8_t* zero = tiles.zero_points ? tiles.row_zero_points(r) : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = c0 + i, g = c / tiles.tile_cols;
    const int q = packed_int_value(t, row, c) - (zero ? zero[g] : 0);
    dst[i] = round_to_dtype(float(q) * scales[g], tiles.round_to);
  }
}

void packed_int_unpack_zero_points(DType t, const uint8_t* words, int64_t rows, int64_t groups, int8_t* out) {
  // Word w of column g holds rows 32 / bits · w onwards: as a row of its own, column g's rows run through the bytes
  // of words (0, g), (1, g), …; each is read as packed_int_value reads a row.
  const int per_word = 32 / packed_int_bits(t);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* word = words + size_t((r / per_word) * groups + g) * 4;
      out[r * groups + g] = int8_t(packed_int_value(t, word, r % per_word));
    }
}

void packed_int_to_blocks(DType block, const uint8_t* row, const float* scales, const int8_t* zeros, int64_t tile_cols,
                          int64_t n, uint8_t* dst) {
  const BlockFormat f = block_format(block);
  const bool zero_point = block == DType::PACKED_I4_ZP_B32 || block == DType::PACKED_I4_ZP_F16_B32;
  const bool f16 = gpu_compute_dtype(block) == DType::F16;
  const size_t head = zero_point ? 4 : 2, value_bytes = f.bytes - head;  // 16 or 32: 4 or 8 bits a value
  for (int64_t b = 0; b < n / f.values; ++b) {
    uint8_t* out = dst + size_t(b) * f.bytes;
    const int64_t g = b * f.values / tile_cols;
    const uint16_t s = f16 ? f32_to_f16(scales[g]) : f32_to_bf16(scales[g]);
    out[0] = uint8_t(s), out[1] = uint8_t(s >> 8);
    if (zero_point) out[2] = uint8_t(zeros[g] + 8), out[3] = 0;  // z stored as the values are, plus 8
    std::memcpy(out + head, row + size_t(b) * value_bytes, value_bytes);
  }
}

}  // namespace moe
