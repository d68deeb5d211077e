#pragma once
// One row of a weight matrix as f32, whatever its dtype: for what reads rows itself rather than through
// a matrix product (the embedding lookup, MLA's W_UK rows, the GPU upload's expansion to BF16).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/common/fp8.h"
#include "engine/common/ggml_quants.h"
#include "engine/common/mxfp4.h"
#include "engine/common/packed_int.h"
#include "engine/model/weights.h"

namespace moe {

// dst[0..m.cols) = row r of m, in input order: F32/F16/BF16, a GGML block type (rows row_bytes apart), F8_E4M3 (its
// tile scales apart), compressed-tensors' packed integers (likewise; their columns moved back where activation order
// stored them by group), or MXFP4 (its blocks and scales, rows row_step stored rows apart).
inline void weight_row_to_f32(const WeightMatrix& m, int64_t r, float* dst) {
  if (m.dtype == DType::F8_E4M3) {
    fp8_dequantize_row(m.data, m.cols, m.tiles, r, dst);
    return;
  }
  if (is_packed_int(m.dtype) && m.tiles.input_order) {  // stored column j is input input_order[j]
    thread_local std::vector<float> stored;
    stored.resize(size_t(m.cols));
    packed_int_dequantize_row(m.dtype, m.data, m.cols, m.tiles, r, stored.data());
    for (int64_t j = 0; j < m.cols; ++j) dst[m.tiles.input_order[j]] = stored[size_t(j)];
    return;
  }
  if (is_packed_int(m.dtype)) {
    packed_int_dequantize_row(m.dtype, m.data, m.cols, m.tiles, r, dst);
    return;
  }
  if (m.dtype == DType::MXFP4) {
    const Mxfp4Row q = mxfp4_row(m.data, m.scales, m.cols, m.row_step, r);
    mxfp4_dequantize(q.blocks, q.scales, m.cols, dst);
    return;
  }
  dequantize_row(static_cast<const std::byte*>(m.data) + size_t(r) * row_bytes(m.dtype, m.cols), m.dtype, m.cols, dst);
}

}  // namespace moe
