#pragma once
// Fine-grained FP8, the format of DeepSeek-V3's, Kimi K2's and MiniMax-M2's releases and of Qwen3's -FP8
// checkpoints (config.json: quantization_config {quant_method "fp8", fmt "e4m3", weight_block_size [128, 128]};
// transformers' integrations/finegrained_fp8.py). A matrix is stored as F8_E4M3 bytes, row-major like any other
// weight, beside `<name>_scale_inv`: one F32 scale per tile of tile_rows × tile_cols weights, ceil(rows /
// tile_rows) × ceil(cols / tile_cols) of them, the last tiles of a row or a column partial where the sizes are
// not multiples (DeepSeek-V3's kv_a_proj_with_mqa has 576 rows). Weight (r, c) is
//   e4m3_value(q[r][c]) · scale[r / tile_rows][c / tile_cols],
// one f32 product, as the reference dequantises it (DeepSeek's weight_dequant, transformers' Fp8Dequantize).
// Activations are not quantized: the forward pass multiplies these values against F32 activations.
#include <cstddef>
#include <cstdint>

#include "engine/common/ggml_decode.h"
#include "engine/common/tile_scales.h"

namespace moe {

// dst[0..n) = columns [c0, c0 + n) of one row: q its bytes from column 0, scales its tiles' scales
// (TileScales::row_scales), tile_cols columns to a tile.
void fp8_dequantize_cols(const uint8_t* q, const float* scales, int64_t tile_cols, int64_t c0, int64_t n, float* dst);
// dst[0..cols) = row r of an FP8 matrix whose row 0 is at data.
inline void fp8_dequantize_row(const void* data, int64_t cols, const TileScales& tiles, int64_t r, float* dst) {
  fp8_dequantize_cols(static_cast<const uint8_t*>(data) + r * cols, tiles.row_scales(r), tiles.tile_cols, 0, cols, dst);
}

// Whether a matrix of `cols` columns in tiles `tile_cols` wide can be held as F8_E4M3_B128 blocks: whole blocks,
// each in one tile.
inline bool fp8_fits_blocks(int64_t cols, int64_t tile_cols) {
  return cols % ggml::F8_E4M3_B128::kValues == 0 && tile_cols % ggml::F8_E4M3_B128::kValues == 0;
}
// One row (n values; fp8_fits_blocks) as F8_E4M3_B128 blocks into dst: each block its tile's scale, then its 128
// bytes as stored. The values are the same bit for bit.
void fp8_to_blocks(const uint8_t* q, const float* scales, int64_t tile_cols, int64_t n, uint8_t* dst);

}  // namespace moe
