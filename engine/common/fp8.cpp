#include "engine/common/fp8.h"

#include <cstring>

namespace moe {

void fp8_dequantize_cols(const uint8_t* q, const float* scales, int64_t tile_cols, int64_t c0, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = c0 + i;
    dst[i] = ggml::e4m3_value(q[c]) * scales[c / tile_cols];
  }
}

void fp8_to_blocks(const uint8_t* q, const float* scales, int64_t tile_cols, int64_t n, uint8_t* dst) {
  constexpr int64_t kValues = ggml::F8_E4M3_B128::kValues;
  for (int64_t b = 0; b < n / kValues; ++b) {
    uint8_t* out = dst + b * ggml::F8_E4M3_B128::kBytes;
    const uint32_t s = ggml::f32_bits_of(scales[b * kValues / tile_cols]);
    for (int i = 0; i < 4; ++i) out[i] = uint8_t(s >> (8 * i));
    std::memcpy(out + 4, q + b * kValues, size_t(kValues));
  }
}

}  // namespace moe
