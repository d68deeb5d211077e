#include "engine/common/ggml_quants.h"

#include <stdexcept>
#include <string>


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
    // The IQ1–IQ3 types: the decoders' sizes (their fields are read by offset, in ggml_decode.h).
    case DType::IQ2_XXS: return {256, ggml::IQ2_XXS::kBytes};
    case DType::IQ2_XS: return {256, ggml::IQ2_XS::kBytes};
    case DType::IQ2_S: return {256, ggml::IQ2_S::kBytes};
    case DType::IQ3_XXS: return {256, ggml::IQ3_XXS::kBytes};
    case DType::IQ3_S: return {256, ggml::IQ3_S::kBytes};
    case DType::IQ1_S: return {256, ggml::IQ1_S::kBytes};
    case DType::IQ1_M: return {256, ggml::IQ1_M::kBytes};
    case DType::F8_E4M3_B128: return {ggml::F8_E4M3_B128::kValues, ggml::F8_E4M3_B128::kBytes};
    case DType::PACKED_I4_B32: return {ggml::PACKED_I4_B32::kValues, ggml::PACKED_I4_B32::kBytes};
    case DType::PACKED_I4_F16_B32: return {ggml::PACKED_I4_F16_B32::kValues, ggml::PACKED_I4_F16_B32::kBytes};
    case DType::PACKED_I4_ZP_B32: return {ggml::PACKED_I4_ZP_B32::kValues, ggml::PACKED_I4_ZP_B32::kBytes};
    case DType::PACKED_I4_ZP_F16_B32: return {ggml::PACKED_I4_ZP_F16_B32::kValues, ggml::PACKED_I4_ZP_F16_B32::kBytes};
    case DType::PACKED_I8_B32: return {ggml::PACKED_I8_B32::kValues, ggml::PACKED_I8_B32::kBytes};
    case DType::PACKED_I8_F16_B32: return {ggml::PACKED_I8_F16_B32::kValues, ggml::PACKED_I8_F16_B32::kBytes};
    default: return {1, dtype_size(t)};  // MXFP4 and the plain types (0 bytes for MXFP4)
  }
}

static_assert(ggml::Q4_0::kBytes == sizeof(BlockQ4_0) && ggml::Q4_1::kBytes == sizeof(BlockQ4_1) &&
              ggml::Q5_0::kBytes == sizeof(BlockQ5_0) && ggml::Q5_1::kBytes == sizeof(BlockQ5_1) &&
              ggml::Q8_0::kBytes == sizeof(BlockQ8_0) && ggml::Q2_K::kBytes == sizeof(BlockQ2_K) &&
              ggml::Q3_K::kBytes == sizeof(BlockQ3_K) && ggml::Q4_K::kBytes == sizeof(BlockQ4_K) &&
              ggml::Q5_K::kBytes == sizeof(BlockQ5_K) && ggml::Q6_K::kBytes == sizeof(BlockQ6_K) &&
              ggml::MXFP4_GGML::kBytes == sizeof(BlockMXFP4_GGML) && ggml::IQ4_NL::kBytes == sizeof(BlockIQ4_NL) &&
              ggml::IQ4_XS::kBytes == sizeof(BlockIQ4_XS), "the decoders' block sizes are the layouts'");

namespace {

// Each block's values, one 32-value group at a time.
template <class D>
void dequantize_blocks(const void* row, int64_t n, float* dst) {
  const auto* b = static_cast<const uint8_t*>(row);
  for (int64_t i = 0; i < n / D::kValues; ++i)
    for (int g = 0; g < D::kValues; g += 32) D::template run<32>(b + i * D::kBytes, g, dst + i * D::kValues + g);
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
  ggml::visit_block_type(t, [&](auto d) { dequantize_blocks<decltype(d)>(row, n, dst); });
}

}  // namespace moe
