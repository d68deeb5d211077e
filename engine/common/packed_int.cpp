#include "engine/common/packed_int.h"

namespace moe {

float round_to_dtype(float f, DType to) {
  if (to == DType::BF16) return bf16_to_f32(f32_to_bf16(f));
  if (to == DType::F16) return f16_to_f32(f32_to_f16(f));
  return f;
}

void packed_int_dequantize_cols(DType t, const uint8_t* row, const float* scales, int64_t tile_cols, DType round_to,
                                int64_t c0, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = c0 + i;
    dst[i] = round_to_dtype(float(packed_int_value(t, row, c)) * scales[c / tile_cols], round_to);
  }
}

}  // namespace moe
