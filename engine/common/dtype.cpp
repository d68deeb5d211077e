#include "engine/common/dtype.h"

#include <cmath>

#include "engine/common/ggml_quants.h"
#include "engine/common/mxfp4.h"
#include "engine/common/packed_int.h"

namespace moe {

namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
};
constexpr DTypeInfo kTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},       {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},   {DType::U16, "U16", 2},     {DType::I32, "I32", 4},
    {DType::U32, "U32", 4},   {DType::I64, "I64", 8},     {DType::U64, "U64", 8},
    {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2},   {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};
// Weight types of other formats: named, but never parsed from a safetensors header.
constexpr DTypeInfo kBlockTypes[] = {
    {DType::MXFP4, "MXFP4", 0}, {DType::Q4_0, "Q4_0", 0}, {DType::Q4_1, "Q4_1", 0}, {DType::Q5_0, "Q5_0", 0},
    {DType::Q5_1, "Q5_1", 0},   {DType::Q8_0, "Q8_0", 0}, {DType::Q2_K, "Q2_K", 0}, {DType::Q3_K, "Q3_K", 0},
    {DType::Q4_K, "Q4_K", 0},   {DType::Q5_K, "Q5_K", 0}, {DType::Q6_K, "Q6_K", 0},
    {DType::MXFP4_GGML, "MXFP4_GGML", 0},  // ggml's MXFP4 block (GGUF type 39); "MXFP4" is Hugging Face's
    {DType::IQ4_NL, "IQ4_NL", 0},  {DType::IQ4_XS, "IQ4_XS", 0},  // GGUF types 20 and 23, as ggml names them
    {DType::IQ2_XXS, "IQ2_XXS", 0}, {DType::IQ2_XS, "IQ2_XS", 0}, {DType::IQ2_S, "IQ2_S", 0},
    {DType::IQ3_XXS, "IQ3_XXS", 0}, {DType::IQ3_S, "IQ3_S", 0},   {DType::IQ1_S, "IQ1_S", 0},
    {DType::IQ1_M, "IQ1_M", 0},
    {DType::F8_E4M3_B128, "F8_E4M3_B128", 0},  // FP8 weights and their scale, 128 to a block (the GPU's copy)
    {DType::PACKED_I4_B32, "PACKED_I4_B32", 0},  // 4-bit packed integers and their scale, 32 to a block (likewise)
    {DType::PACKED_I4_F16_B32, "PACKED_I4_F16_B32", 0},  // the same with an F16 scale
    {DType::PACKED_I4_ZP_B32, "PACKED_I4_ZP_B32", 0},  // and with their group's zero point
    {DType::PACKED_I4_ZP_F16_B32, "PACKED_I4_ZP_F16_B32", 0},
    {DType::PACKED_I8_B32, "PACKED_I8_B32", 0},  // 8-bit packed integers and their scale, 32 to a block
    {DType::PACKED_I8_F16_B32, "PACKED_I8_F16_B32", 0},
    {DType::PACKED_I4, "PACKED_I4", 0}, {DType::PACKED_I8, "PACKED_I8", 0},  // compressed-tensors' pack-quantized
};
}  // namespace

size_t dtype_size(DType t) {
  for (const auto& i : kTypes)
    if (i.type == t) return i.size;
  return 0;
}

size_t matrix_bytes(DType t, int64_t rows, int64_t cols) {
  if (t == DType::MXFP4) return mxfp4_bytes(rows, cols);
  if (is_block_quantized(t)) return size_t(rows) * row_bytes(t, cols);
  if (is_packed_int(t)) return size_t(rows) * packed_int_row_bytes(t, cols);
  return size_t(rows) * size_t(cols) * dtype_size(t);
}

std::string_view dtype_name(DType t) {
  for (const auto& i : kTypes)
    if (i.type == t) return i.name;
  for (const auto& i : kBlockTypes)
    if (i.type == t) return i.name;
  return "?";
}

std::optional<DType> parse_dtype(std::string_view s) {
  for (const auto& i : kTypes)
    if (i.name == s) return i.type;
  return std::nullopt;
}

float f16_to_f32(uint16_t h) { return ggml::f16_bits_to_f32(h); }

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return sign | 0x7e00u;  // NaN
  const float a = std::fabs(f);
  if (a >= 65520.0f) return sign | 0x7c00u;  // overflow → inf
  if (a < 6.103515625e-05f) {                // subnormal or zero: round(a / 2^-24)
    const float q = std::nearbyint(a * 16777216.0f);
    return sign | uint16_t(q);
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  // mantissa with 10 fraction bits: a = (1 + frac) * 2^(e-1)
  float scaled = std::nearbyint((m * 2.0f - 1.0f) * 1024.0f);
  int exp = e - 1 + 15;
  if (scaled >= 1024.0f) {
    scaled = 0.0f;
    ++exp;
  }
  if (exp >= 31) return sign | 0x7c00u;
  return sign | uint16_t(exp << 10) | uint16_t(scaled);
}

void convert_to_f32(const void* src, DType t, size_t n, float* dst) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    default:
      for (size_t i = 0; i < n; ++i) dst[i] = 0.0f;
  }
}

}  // namespace moe
