#pragma once
// MXFP4 (the OCP microscaling format with FP4 elements), as GPT-OSS's release stores its experts
// (transformers' integrations/mxfp4.py): a row of `cols` values is cols/32 blocks; a block is 16 bytes
// of FP4 E2M1 codes, two per byte with the *low* nibble first (element 2j in the low nibble of byte j,
// element 2j+1 in its high nibble), and one E8M0 scale byte s, kept in a separate tensor, that
// multiplies the block by 2^(s − 127). Every value is exact in F32 (and in BF16).
#include <cstddef>
#include <cstdint>

#include "engine/common/ggml_decode.h"

namespace moe {

constexpr int64_t kMxfp4BlockValues = 32;
constexpr int64_t kMxfp4BlockBytes = 16;

// Each 4-bit FP4 E2M1 code's value times 2 (bit 3 is the sign; the values are 0, ±0.5, ±1, ±1.5, ±2,
// ±3, ±4, ±6, so twice them are integers in −12…12). Times mxfp4_half_scale(s) it is exactly the
// value · 2^(s − 127), for every s: 2^(s − 128) is at worst a subnormal, and the integers have at most
// 2 significant bits. The kernels work on these.
extern const int8_t kFp4TwiceValues[16];

// 2^(s − 128) for a scale byte s, from its bits: exponent field s − 1 for s ≥ 2, subnormals below.
inline float mxfp4_half_scale(uint8_t s) { return ggml::e8m0_half(s); }

// Bytes of a [rows, cols] MXFP4 matrix: the blocks and the scales.
inline size_t mxfp4_bytes(int64_t rows, int64_t cols) {
  return size_t(rows) * size_t(cols / kMxfp4BlockValues) * size_t(kMxfp4BlockBytes + 1);
}

// Where row r of a matrix of `cols` columns starts in its blocks and in its scales, when its rows lie
// row_step stored rows apart (GPT-OSS interleaves gate and up rows: 2).
struct Mxfp4Row {
  const uint8_t* blocks;
  const uint8_t* scales;
};
inline Mxfp4Row mxfp4_row(const void* blocks, const uint8_t* scales, int64_t cols, int64_t row_step, int64_t r) {
  const int64_t n_blocks = cols / kMxfp4BlockValues, stored = r * row_step;
  return {static_cast<const uint8_t*>(blocks) + stored * n_blocks * kMxfp4BlockBytes, scales + stored * n_blocks};
}

// dst[0..n) = the n values (n a multiple of 32) of one row: its n/32 blocks and scales.
void mxfp4_dequantize(const uint8_t* blocks, const uint8_t* scales, int64_t n, float* dst);

// The n_blocks blocks and scales of one row as ggml's MXFP4 blocks (GGUF type 39, ggml::MXFP4_GGML: the scale byte,
// then element i in the low nibble of byte i and element i + 16 in its high nibble), 17 bytes each, into dst. The
// same codes and scales rearranged: the values are the same bit for bit. The CUDA backend uploads GPT-OSS's experts
// this way, so its block kernels read them as they read a GGUF's.
void mxfp4_to_ggml_blocks(const uint8_t* blocks, const uint8_t* scales, int64_t n_blocks, uint8_t* dst);

}  // namespace moe
