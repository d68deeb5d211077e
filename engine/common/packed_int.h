#pragma once
// compressed-tensors' pack-quantized integer weights, as llm-compressor writes them and transformers reads them
// (config.json: quantization_config {quant_method "compressed-tensors", format "pack-quantized"}; the int4 experts
// of Kimi-K2-Thinking, RedHatAI's and others' W4A16 and W8A16 checkpoints). A matrix [rows, cols] is stored as
//   <name>.weight_packed  I32 [rows, cols · bits / 32]: each row's values q in order, packed densely into
//                         little-endian words from bit 0 up, each stored as q + 2^(bits − 1), unsigned;
//   <name>.weight_scale   F32, BF16 or F16 [rows, groups]: one scale per group of cols / groups columns
//                         (strategy "group"), or per row (strategy "channel": groups = 1);
//   <name>.weight_shape   the [rows, cols] it was.
// For 4 and 8 bits no value straddles a byte, so a row is its bytes in order: 4 bits put value 2i in byte i's low
// nibble and 2i + 1 in its high nibble. Weight (r, c) is
//   round(q · scale[r][c / group])
// where round is to the scales' dtype: compressed-tensors dequantises in it (q converted to that dtype, which holds
// every q exactly, then multiplied), so the weights of BF16-scaled checkpoints are BF16 values. Symmetric schemes
// only: an asymmetric one's weight_zero_point is refused at load. Activations are not quantized.
#include <cstddef>
#include <cstdint>

#include "engine/common/dtype.h"
#include "engine/common/tile_scales.h"

namespace moe {

inline bool is_packed_int(DType t) { return t == DType::PACKED_I4 || t == DType::PACKED_I8; }
inline int packed_int_bits(DType t) { return t == DType::PACKED_I4 ? 4 : 8; }
// Bytes of one row of cols values (cols · bits a multiple of 32, as the loader checks, so rows are whole words).
inline size_t packed_int_row_bytes(DType t, int64_t cols) { return size_t(cols) * size_t(packed_int_bits(t)) / 8; }

// The value q of column c of a row whose bytes start at row.
inline int packed_int_value(DType t, const uint8_t* row, int64_t c) {
  if (t == DType::PACKED_I8) return int(row[c]) - 128;
  return int((row[c / 2] >> (4 * (c % 2))) & 0xf) - 8;
}

// f rounded to the nearest value of `to` (F32: unchanged; BF16 or F16: to nearest, ties to even), as f32.
float round_to_dtype(float f, DType to);

// dst[0..n) = columns [c0, c0 + n) of one row: row its bytes from column 0, scales its tiles' scales
// (TileScales::row_scales), tile_cols columns to a tile, each product rounded to round_to.
void packed_int_dequantize_cols(DType t, const uint8_t* row, const float* scales, int64_t tile_cols, DType round_to,
                                int64_t c0, int64_t n, float* dst);
// dst[0..cols) = row r of a packed matrix whose row 0 is at data.
inline void packed_int_dequantize_row(DType t, const void* data, int64_t cols, const TileScales& tiles, int64_t r,
                                      float* dst) {
  packed_int_dequantize_cols(t, static_cast<const uint8_t*>(data) + size_t(r) * packed_int_row_bytes(t, cols),
                             tiles.row_scales(r), tiles.tile_cols, tiles.round_to, 0, cols, dst);
}

// Whether a matrix can be held as PACKED_I4_B32 blocks (the CUDA backend's copy): 4-bit, BF16 scales (its values
// BF16-rounded), whole blocks of 32 each in one group.
inline bool packed_int_fits_blocks(DType t, int64_t cols, const TileScales& tiles) {
  return t == DType::PACKED_I4 && tiles.round_to == DType::BF16 && cols % 32 == 0 && tiles.tile_cols % 32 == 0;
}
// One row (n values; packed_int_fits_blocks) as PACKED_I4_B32 blocks into dst: each block its group's scale as BF16
// (which it is), then its 16 bytes as stored. The values are the same bit for bit.
void packed_int_to_blocks(const uint8_t* row, const float* scales, int64_t tile_cols, int64_t n, uint8_t* dst);

}  // namespace moe
