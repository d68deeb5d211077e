#pragma once
// Element types of stored tensors, and the scalar conversions the CPU path needs.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace moe {

enum class DType : uint8_t {
  BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2,
  // Not a safetensors dtype: a weight matrix the loader assembled from MXFP4 blocks and scales
  // (engine/common/mxfp4.h). Never parsed; its size is per matrix (matrix_bytes), not per element.
  MXFP4,
  // llama.cpp's block-quantized types, as GGUF files store them (engine/common/ggml_quants.h): a row is a
  // run of blocks, each holding its own scales. Their size is per matrix (matrix_bytes), not per element.
  // MXFP4_GGML is ggml's own MXFP4 block (GGUF type 39: GPT-OSS's experts), its scale inside the block.
  // IQ4_NL and IQ4_XS (GGUF types 20 and 23) map 4-bit codes through a fixed non-linear table of 16 int8.
  // The IQ1–IQ3 types (GGUF types 16–19, 21, 22, 29) index fixed codebooks of 8 or 4 values.
  // F8_E4M3_B128 is not a GGUF type but takes the same path: F8_E4M3 weights 128 to a block with their F32
  // scale, as the CUDA backend holds a fine-grained FP8 checkpoint's matrices (engine/common/fp8.h). Nor are
  // PACKED_I4_B32 and PACKED_I4_F16_B32: 4-bit packed integers 32 to a block with their BF16 or F16 scale, as it
  // holds a symmetric 4-bit checkpoint's (compressed-tensors', GPTQ's: engine/common/packed_int.h); the _ZP_ pair
  // adds the group's zero point (AWQ's, and compressed-tensors' asymmetric schemes); PACKED_I8_B32 and
  // PACKED_I8_F16_B32 hold symmetric 8-bit ones (GPTQ-Int8, W8A16).
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4_GGML, IQ4_NL, IQ4_XS,
  IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, F8_E4M3_B128, PACKED_I4_B32, PACKED_I4_F16_B32,
  PACKED_I4_ZP_B32, PACKED_I4_ZP_F16_B32, PACKED_I8_B32, PACKED_I8_F16_B32,
  // Packed integers (engine/common/packed_int.h: compressed-tensors' pack-quantized, and GPTQ's and AWQ's rearranged
  // into its rows): 4- or 8-bit values packed densely into little-endian int32 words, each stored plus 8 or 128;
  // their scales are apart (TileScales). matrix_bytes counts the packed bytes.
  PACKED_I4, PACKED_I8
};

// Bytes per element; 0 for MXFP4 and the block-quantized types, which have no whole number of bytes per
// element.
size_t dtype_size(DType t);
// Bytes of a [rows, cols] weight matrix of type t.
size_t matrix_bytes(DType t, int64_t rows, int64_t cols);
// The safetensors spelling ("BF16", "F32", ...); "MXFP4", "Q4_K", "MXFP4_GGML", ... for the other weight
// types.
std::string_view dtype_name(DType t);
// Parses a safetensors dtype string; nullopt for strings we do not know.
std::optional<DType> parse_dtype(std::string_view s);
// True for the plain types the forward pass reads weights in (F32, F16, BF16): what a safetensors weight
// may be. (It also reads F8_E4M3 with its scales, engine/common/fp8.h, and MXFP4 and the GGML block types,
// which no safetensors header names.)
inline bool is_weight_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// bf16 → f32: the upper half of an f32.
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// f32 → bf16 with round-to-nearest-even (NaN stays NaN).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
// IEEE half → f32, subnormals included.
float f16_to_f32(uint16_t h);
// f32 → IEEE half, round-to-nearest-even.
uint16_t f32_to_f16(float f);

// Converts n elements of type t at src to f32 (t must be F32, F16 or BF16).
void convert_to_f32(const void* src, DType t, size_t n, float* dst);

}  // namespace moe
