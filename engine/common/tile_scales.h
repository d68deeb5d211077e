#pragma once
// The scales of a weight matrix stored apart from its values, one per tile of tile_rows × tile_cols weights:
// fine-grained FP8's `weight_scale_inv` (engine/common/fp8.h: 128 × 128 tiles) and compressed-tensors' packed
// integers' `weight_scale` (engine/common/packed_int.h: one row by group_size columns, or a whole row). The grid is
// ceil(rows / tile_rows) × ceil(cols / tile_cols) scales, row-major, the last tiles of a row or a column partial
// where the sizes are not multiples. The loader keeps them as F32 copies.
#include <cstdint>

#include "engine/common/dtype.h"

namespace moe {

// Where a matrix's tile scales are. A matrix may be some of the rows of a stored tensor (MLA's W_UV rows of
// kv_b_proj), so the tile of its row r is that of stored row first_row + r.
struct TileScales {
  const float* scales = nullptr;  // [ceil(stored rows / tile_rows), grid_cols], row-major
  int64_t tile_rows = 0, tile_cols = 0;
  int64_t grid_cols = 0;  // ceil(cols / tile_cols)
  int64_t first_row = 0;
  // What each product value · scale is rounded to: F32 (one f32 product, as fine-grained FP8 dequantises), or BF16
  // or F16 (compressed-tensors dequantises in its scales' dtype).
  DType round_to = DType::F32;
  // Packed integers of an asymmetric scheme only: each tile's zero point, subtracted from the value before the
  // scale (laid out as the scales); null when there are none.
  const int8_t* zero_points = nullptr;
  // Packed integers whose groups activation order reordered (GPTQ's desc_act) only: the values are held with their
  // inputs sorted by group, so that each tile's inputs are adjacent, and stored column j is input input_order[j] (a
  // permutation of the cols inputs). Null when the columns are the inputs.
  const int32_t* input_order = nullptr;
  explicit operator bool() const { return scales != nullptr; }
  // The grid_cols scales of row r's tiles.
  const float* row_scales(int64_t r) const { return scales + (first_row + r) / tile_rows * grid_cols; }
  // The grid_cols zero points of row r's tiles (zero_points set).
  const int8_t* row_zero_points(int64_t r) const { return zero_points + (first_row + r) / tile_rows * grid_cols; }
  // The tiles of the matrix made of rows r0, r0 + 1, … of this one.
  TileScales from_row(int64_t r0) const {
    TileScales t = *this;
    t.first_row += r0;
    return t;
  }
};

// Tiles along a dimension of n: ceil(n / tile).
inline int64_t tile_count(int64_t n, int64_t tile) { return (n + tile - 1) / tile; }

}  // namespace moe
