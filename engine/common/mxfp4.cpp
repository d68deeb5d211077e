#include "engine/common/mxfp4.h"

namespace moe {

const int8_t kFp4TwiceValues[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

void mxfp4_dequantize(const uint8_t* blocks, const uint8_t* scales, int64_t n, float* dst) {
  for (int64_t b = 0; b < n / kMxfp4BlockValues; ++b) {
    const float scale = mxfp4_half_scale(scales[b]);
    const uint8_t* q = blocks + b * kMxfp4BlockBytes;
    float* out = dst + b * kMxfp4BlockValues;
    for (int j = 0; j < kMxfp4BlockBytes; ++j) {
      out[2 * j] = float(kFp4TwiceValues[q[j] & 15]) * scale;
      out[2 * j + 1] = float(kFp4TwiceValues[q[j] >> 4]) * scale;
    }
  }
}

void mxfp4_to_ggml_blocks(const uint8_t* blocks, const uint8_t* scales, int64_t n_blocks, uint8_t* dst) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const uint8_t* q = blocks + b * kMxfp4BlockBytes;
    uint8_t* out = dst + b * (kMxfp4BlockBytes + 1);
    const auto code = [q](int v) { return (q[v / 2] >> (4 * (v & 1))) & 15; };  // element v, Hugging Face's order
    out[0] = scales[b];
    for (int i = 0; i < 16; ++i) out[1 + i] = uint8_t(code(i) | (code(i + 16) << 4));
  }
}

}  // namespace moe
