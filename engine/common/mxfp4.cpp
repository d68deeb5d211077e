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

}  // namespace moe
