#include "engine/common/ggml_quants.h"

#include <stdexcept>
#include <string>

#include "engine/common/mxfp4.h"

namespace moe {

BlockFormat block_format(DType t) {
  switch (t) {
    case DType::Q4_0: return {32, sizeof(BlockQ4_0)};
    case DType::Q4_1: return {32, sizeof(BlockQ4_1)};
    case DType::Q5_0: return {32, sizeof(BlockQ5_0)};
    case DType::Q5_1: return {32, sizeof(BlockQ5_1)};
    case DType::Q8_0: return {32, sizeof(BlockQ8_0)};
    case DType::Q2_K: return {256, sizeof(BlockQ2_K)};
    case DType::Q3_K: return {256, sizeof(BlockQ3_K)};
    case DType::Q4_K: return {256, sizeof(BlockQ4_K)};
    case DType::Q5_K: return {256, sizeof(BlockQ5_K)};
    case DType::Q6_K: return {256, sizeof(BlockQ6_K)};
    case DType::MXFP4_GGML: return {32, sizeof(BlockMXFP4_GGML)};
    case DType::IQ4_NL: return {32, sizeof(BlockIQ4_NL)};
    case DType::IQ4_XS: return {256, sizeof(BlockIQ4_XS)};
    default: return {1, dtype_size(t)};  // MXFP4 and the plain types (0 bytes for MXFP4)
  }
}

namespace {

// Each function writes one block's values to out, with the reference's f32 operations in its order.

void dequantize(const BlockQ4_0& b, float* out) {
  const float d = block_f16(b.d);
  for (int j = 0; j < 16; ++j) {
    out[j] = d * float((b.qs[j] & 15) - 8);
    out[j + 16] = d * float((b.qs[j] >> 4) - 8);
  }
}

void dequantize(const BlockQ4_1& b, float* out) {
  const float d = block_f16(b.d), m = block_f16(b.m);
  for (int j = 0; j < 16; ++j) {
    out[j] = d * float(b.qs[j] & 15) + m;
    out[j + 16] = d * float(b.qs[j] >> 4) + m;
  }
}

// Q5_0/Q5_1's 5-bit quant of value i (0–31): its nibble, and bit i of qh as the fifth bit.
int q5(const uint8_t qs[16], const uint8_t qh[4], int i) {
  const int nibble = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
  return nibble | (((qh[i / 8] >> (i % 8)) & 1) << 4);
}

void dequantize(const BlockQ5_0& b, float* out) {
  const float d = block_f16(b.d);
  for (int i = 0; i < 32; ++i) out[i] = d * float(q5(b.qs, b.qh, i) - 16);
}

void dequantize(const BlockQ5_1& b, float* out) {
  const float d = block_f16(b.d), m = block_f16(b.m);
  for (int i = 0; i < 32; ++i) out[i] = d * float(q5(b.qs, b.qh, i)) + m;
}

void dequantize(const BlockQ8_0& b, float* out) {
  const float d = block_f16(b.d);
  for (int i = 0; i < 32; ++i) out[i] = float(b.qs[i]) * d;
}

// Q2_K: value h·128 + s·32 + l (h < 2, s < 4, l < 32) is bits 2s, 2s+1 of qs[h·32 + l]; each 16 values
// have a 4-bit scale (low nibble) and min (high nibble), times d and dmin.
void dequantize(const BlockQ2_K& b, float* out) {
  const float d = block_f16(b.d), dmin = block_f16(b.dmin);
  for (int v = 0; v < 256; ++v) {
    const int h = v / 128, s = (v / 32) % 4, l = v % 32;
    const int q = (b.qs[h * 32 + l] >> (2 * s)) & 3;
    const uint8_t sc = b.scales[v / 16];
    const float dl = d * float(sc & 15), ml = dmin * float(sc >> 4);
    out[v] = dl * float(q) - ml;
  }
}

// Q3_K: value v = h·128 + s·32 + l has 2 low bits as Q2_K's and a high bit, bit v/32 of hmask[l]; the
// quant is low − 4 when that bit is clear (low when set). Each 16 values have a scale (q3_k_scale).
void dequantize(const BlockQ3_K& b, float* out) {
  const float d = block_f16(b.d);
  for (int v = 0; v < 256; ++v) {
    const int h = v / 128, s = (v / 32) % 4, l = v % 32;
    const int low = (b.qs[h * 32 + l] >> (2 * s)) & 3;
    const int high = (b.hmask[l] >> (v / 32)) & 1;
    const float dl = d * float(q3_k_scale(b.scales, v / 16));
    out[v] = dl * float(low - (high ? 0 : 4));
  }
}

// Q4_K: sub-block j (32 values) = 2c + n: nibble n (0 low, 1 high) of qs[32c .. 32c + 32).
void dequantize(const BlockQ4_K& b, float* out) {
  const float d = block_f16(b.d), dmin = block_f16(b.dmin);
  uint8_t sc[8], m[8];
  k_scales_mins(b.scales, sc, m);
  for (int j = 0; j < 8; ++j) {
    const float dl = d * float(sc[j]), ml = dmin * float(m[j]);
    const uint8_t* q = b.qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; ++l) out[32 * j + l] = dl * float((q[l] >> shift) & 15) - ml;
  }
}

// Q5_K: Q4_K's nibbles with bit j of qh[l] as the fifth bit of value 32j + l.
void dequantize(const BlockQ5_K& b, float* out) {
  const float d = block_f16(b.d), dmin = block_f16(b.dmin);
  uint8_t sc[8], m[8];
  k_scales_mins(b.scales, sc, m);
  for (int j = 0; j < 8; ++j) {
    const float dl = d * float(sc[j]), ml = dmin * float(m[j]);
    const uint8_t* q = b.qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; ++l) {
      const int q5 = ((q[l] >> shift) & 15) | (((b.qh[l] >> j) & 1) << 4);
      out[32 * j + l] = dl * float(q5) - ml;
    }
  }
}

// Q6_K: per half h (128 values), value h·128 + s·32 + l takes nibble s / 2 of ql[h·64 + 32·(s % 2) + l]
// and bits 2s, 2s+1 of qh[h·32 + l] above it, minus 32; each 16 values have a signed 8-bit scale.
void dequantize(const BlockQ6_K& b, float* out) {
  const float d = block_f16(b.d);
  for (int v = 0; v < 256; ++v) {
    const int h = v / 128, s = (v / 32) % 4, l = v % 32;
    const int low = (b.ql[h * 64 + 32 * (s % 2) + l] >> (4 * (s / 2))) & 15;
    const int high = (b.qh[h * 32 + l] >> (2 * s)) & 3;
    const float dl = d * float(b.scales[v / 16]);
    out[v] = dl * float((low | (high << 4)) - 32);
  }
}

// MXFP4_GGML: value j (< 16) is the FP4 code in the low nibble of qs[j], value j + 16 the one in its high
// nibble; gguf-py takes the doubled value (its kvalues, our kFp4TwiceValues) times 2^(e − 128) (its
// e8m0_to_fp32_half, our mxfp4_half_scale: the same bits for every e).
void dequantize(const BlockMXFP4_GGML& b, float* out) {
  const float d = mxfp4_half_scale(b.e);
  for (int j = 0; j < 16; ++j) {
    out[j] = d * float(kFp4TwiceValues[b.qs[j] & 15]);
    out[j + 16] = d * float(kFp4TwiceValues[b.qs[j] >> 4]);
  }
}

// IQ4_NL: Q4_0's nibble order, each code through the table, times d.
void dequantize(const BlockIQ4_NL& b, float* out) {
  const float d = block_f16(b.d);
  for (int j = 0; j < 16; ++j) {
    out[j] = d * float(kIq4NlValues[b.qs[j] & 15]);
    out[j + 16] = d * float(kIq4NlValues[b.qs[j] >> 4]);
  }
}

// IQ4_XS: sub-block j is an IQ4_NL block's nibbles at qs + 16j, with the scale d·(ls − 32) formed first
// (gguf-py's dl), then times each table value.
void dequantize(const BlockIQ4_XS& b, float* out) {
  const float d = block_f16(b.d);
  for (int j = 0; j < 8; ++j) {
    const float dl = d * float(iq4_xs_scale(b.scales_h, b.scales_l, j) - 32);
    const uint8_t* q = b.qs + 16 * j;
    for (int l = 0; l < 16; ++l) {
      out[32 * j + l] = dl * float(kIq4NlValues[q[l] & 15]);
      out[32 * j + 16 + l] = dl * float(kIq4NlValues[q[l] >> 4]);
    }
  }
}

template <class Block>
void dequantize_blocks(const void* row, int64_t n, int64_t values, float* dst) {
  const auto* b = static_cast<const Block*>(row);
  for (int64_t i = 0; i < n / values; ++i) dequantize(b[i], dst + i * values);
}

}  // namespace

void dequantize_row(const void* row, DType t, int64_t n, float* dst) {
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
    convert_to_f32(row, t, size_t(n), dst);
    return;
  }
  if (!is_block_quantized(t))
    throw std::invalid_argument("dequantize_row: " + std::string(dtype_name(t)) + " is not F32, F16, BF16 or a GGML block type");
  const BlockFormat f = block_format(t);
  if (n % f.values)
    throw std::invalid_argument("dequantize_row: a " + std::string(dtype_name(t)) + " row holds whole blocks of " +
                                std::to_string(f.values) + " values, not " + std::to_string(n));
  switch (t) {
    case DType::Q4_0: dequantize_blocks<BlockQ4_0>(row, n, f.values, dst); break;
    case DType::Q4_1: dequantize_blocks<BlockQ4_1>(row, n, f.values, dst); break;
    case DType::Q5_0: dequantize_blocks<BlockQ5_0>(row, n, f.values, dst); break;
    case DType::Q5_1: dequantize_blocks<BlockQ5_1>(row, n, f.values, dst); break;
    case DType::Q8_0: dequantize_blocks<BlockQ8_0>(row, n, f.values, dst); break;
    case DType::Q2_K: dequantize_blocks<BlockQ2_K>(row, n, f.values, dst); break;
    case DType::Q3_K: dequantize_blocks<BlockQ3_K>(row, n, f.values, dst); break;
    case DType::Q4_K: dequantize_blocks<BlockQ4_K>(row, n, f.values, dst); break;
    case DType::Q5_K: dequantize_blocks<BlockQ5_K>(row, n, f.values, dst); break;
    case DType::Q6_K: dequantize_blocks<BlockQ6_K>(row, n, f.values, dst); break;
    case DType::MXFP4_GGML: dequantize_blocks<BlockMXFP4_GGML>(row, n, f.values, dst); break;
    case DType::IQ4_NL: dequantize_blocks<BlockIQ4_NL>(row, n, f.values, dst); break;
    case DType::IQ4_XS: dequantize_blocks<BlockIQ4_XS>(row, n, f.values, dst); break;
    default: break;
  }
}

}  // namespace moe
