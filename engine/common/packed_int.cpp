#include "engine/common/packed_int.h"

#include <cstring>

#include "engine/common/ggml_decode.h"

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

void packed_int_to_blocks(const uint8_t* row, const float* scales, int64_t tile_cols, int64_t n, uint8_t* dst) {
  constexpr int64_t kValues = ggml::PACKED_I4_B32::kValues;
  for (int64_t b = 0; b < n / kValues; ++b) {
    uint8_t* out = dst + b * ggml::PACKED_I4_B32::kBytes;
    const uint16_t s = f32_to_bf16(scales[b * kValues / tile_cols]);
    out[0] = uint8_t(s), out[1] = uint8_t(s >> 8);
    std::memcpy(out + 2, row + b * kValues / 2, size_t(kValues / 2));
  }
}

}  // namespace moe
