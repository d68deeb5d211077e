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
// every q exactly, then multiplied), so the weights of BF16-scaled checkpoints are BF16 values. An asymmetric scheme
// adds
//   <name>.weight_zero_point  I32 [⌈rows · bits / 32⌉, groups]: one z per group, in the values' range, packed as they
//                             are but down the rows (each column of the [rows, groups] grid packed on its own),
// and weight (r, c) is round((q − z[r][c / group]) · scale[r][c / group]) (q − z is exact in the scales' dtype too).
// Activations are not quantized. GPTQ's and AWQ's layouts are rearranged into these rows at load
// (engine/common/quant_linear.h).
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

// dst[0..n) = columns [c0, c0 + n) of row r of a packed matrix whose row 0 is at data, each value less its tile's
// zero point (if any) times its tile's scale, rounded to tiles.round_to.
void packed_int_dequantize_cols(DType t, const void* data, int64_t cols, const TileScales& tiles, int64_t r, int64_t c0,
                                int64_t n, float* dst);
// dst[0..cols) = row r.
inline void packed_int_dequantize_row(DType t, const void* data, int64_t cols, const TileScales& tiles, int64_t r,
                                      float* dst) {
  packed_int_dequantize_cols(t, data, cols, tiles, r, 0, cols, dst);
}
// The zero points of a [rows, groups] grid packed down its rows (weight_zero_point: words [rows · bits / 32, groups]
// as little-endian bytes), as one int8 per tile, row-major.
void packed_int_unpack_zero_points(DType t, const uint8_t* words, int64_t rows, int64_t groups, int8_t* out);

// The blocks a matrix can be held as (the CUDA backend's copy), when its values are rounded to BF16 or F16 (its
// scales' dtype) and its groups are whole blocks of 32: 4 bits as PACKED_I4_B32 or PACKED_I4_F16_B32, with zero points
// as PACKED_I4_ZP_B32 or PACKED_I4_ZP_F16_B32; symmetric 8 bits as PACKED_I8_B32 or PACKED_I8_F16_B32. Anything else
// (F32 scales, narrower groups, 8 bits with zero points, inputs held in another order) cannot be: t itself.
inline DType packed_int_block_type(DType t, int64_t cols, const TileScales& tiles) {
  const bool f16 = tiles.round_to == DType::F16;
  if (!is_packed_int(t) || cols % 32 || tiles.tile_cols % 32 || (!f16 && tiles.round_to != DType::BF16) || tiles.input_order)
    return t;
  if (t == DType::PACKED_I8) {
    if (tiles.zero_points) return t;
    return f16 ? DType::PACKED_I8_F16_B32 : DType::PACKED_I8_B32;
  }
  if (tiles.zero_points) return f16 ? DType::PACKED_I4_ZP_F16_B32 : DType::PACKED_I4_ZP_B32;
  return f16 ? DType::PACKED_I4_F16_B32 : DType::PACKED_I4_B32;
}
// One row (n values; packed_int_block_type gave `block`) as such blocks into dst: each block its
// group's scale as BF16 or F16 (which it is), its zero point (zeros: the row's, one per group; the _ZP_ types only),
// then its bytes as stored. The values are the same bit for bit.
void packed_int_to_blocks(DType block, const uint8_t* row, const float* scales, const int8_t* zeros, int64_t tile_cols,
                          int64_t n, uint8_t* dst);

}  // namespace moe
