#pragma once
// llama.cpp's block-quantized weight types, as GGUF files store them (SPECS.md §11.2; gguf-py's
// constants.py and quants.py are the reference). A row of n values is n / values-per-block blocks laid
// end to end; each block carries its own scales, so a row is self-contained and rows lie row_bytes apart.
#include <cstddef>
#include <cstdint>

#include "engine/common/dtype.h"
#include "engine/common/ggml_decode.h"  // the decoders, shared with the CUDA kernels

namespace moe {

struct BlockFormat {
  int64_t values = 1;  // values per block (1 for the plain types)
  size_t bytes = 0;    // bytes per block
};

// The block of a type: {32, 18} for Q4_0, {256, 144} for Q4_K, {1, dtype_size} for F32/F16/BF16...
// {1, 0} for types without a fixed layout (MXFP4, whose scales lie apart).
BlockFormat block_format(DType t);
inline bool is_block_quantized(DType t) { return t >= DType::Q4_0 && t <= DType::PACKED_I8_F16_B32; }
// True when t is a block type and a row of n values is whole blocks of it (what the kernels that decode
// blocks take).
inline bool whole_blocks(DType t, int64_t n) { return is_block_quantized(t) && n % block_format(t).values == 0; }
// What a weight dtype is multiplied in on the GPU (GEMM inputs, tensor-core operands): F32 and F16 stay;
// BF16 and the block types, whose values the kernels decode, compute in BF16, but the F16-scaled packed integers'
// blocks, whose values are F16 values (BF16 would round them), in F16.
inline DType gpu_compute_dtype(DType t) {
  if (t == DType::F32 || t == DType::F16) return t;
  return ggml::f16_valued_block(t) ? DType::F16 : DType::BF16;
}
// Bytes of one row of n values (n a multiple of the block).
inline size_t row_bytes(DType t, int64_t n) {
  const BlockFormat f = block_format(t);
  return size_t(n / f.values) * f.bytes;
}

// The blocks, byte for byte (f16 fields little-endian, as two bytes: a block is only 2-byte aligned at
// best). A value's quant q and its f32 value:
//   Q4_0  x = d·(q − 8),  q = 4 bits: byte j of qs holds value j (low nibble) and value j + 16 (high)
//   Q4_1  x = d·q + m,    q as Q4_0
//   Q5_0  x = d·(q − 16), q = nibble as Q4_0 | bit i of qh (u32, value i) << 4
//   Q5_1  x = d·q + m,    q as Q5_0
//   Q8_0  x = d·q,        q = qs[i]
//   K types: 256 values in sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K, Q5_K) values, each with its
//   own scale (and min), packed; see ggml_quants.cpp for each.
//   MXFP4_GGML  x = v·2^(e − 128), q as Q4_0 (an FP4 E2M1 code), v = kFp4TwiceValues[q] (the code's value
//   times 2: 0, ±1, ±2, ±3, ±4, ±6, ±8, ±12), e the E8M0 byte (2^(e − 127) scales the FP4 value). The
//   f32 product is gguf-py's: exact (subnormal for small e), or ±inf past f32's range (from e = 253 for
//   v = ±12 to e = 255 for all but ±1; ggml reads e = 255 as 2^128 like any other byte, not as NaN).
//   IQ4_NL  x = d·v,      q as Q4_0, v = kIq4NlValues[q] (a fixed non-linear table, denser near 0)
//   IQ4_XS  x = dl·v,     v as IQ4_NL's; 256 values in 8 sub-blocks of 32, sub-block j's 32 values from
//   qs[16j .. 16j + 16) as Q4_0's from its qs; dl = d·(ls − 32) with the 6-bit ls = nibble j of scales_l
//   (read as a little-endian u32: byte j / 2, low nibble for even j) | bits 2j, 2j + 1 of scales_h << 4.
//   IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S: 256 values, a codebook row per 8 or 4 values,
//   x = scale · q with q an integer; ggml_decode.h has each layout (no struct here: nothing but the
//   decoders reads their fields).
//   F8_E4M3_B128  x = e4m3(q)·s: not a GGUF type, but fine-grained FP8 (fp8.h) as the GPU holds it, 128 values
//   with their F32 scale to a block (ggml_decode.h).
//   PACKED_I4_B32  x = bf16(q·s): not a GGUF type either, but BF16-scaled 4-bit packed integers (packed_int.h) as
//   the GPU holds them, 32 values with their BF16 scale to a block (ggml_decode.h).
//   PACKED_I4_F16_B32  x = f16(q·s): likewise, F16-scaled (GPTQ's, and compressed-tensors' F16 schemes).
//   PACKED_I4_ZP_B32, PACKED_I4_ZP_F16_B32  x = bf16((q − z)·s), f16((q − z)·s): likewise, with the group's zero
//   point z in the block (AWQ's, compressed-tensors' asymmetric schemes).
//   PACKED_I8_B32, PACKED_I8_F16_B32  x = bf16(q·s), f16(q·s): likewise, 8-bit (GPTQ-Int8, W8A16).
struct BlockQ4_0 { uint8_t d[2]; uint8_t qs[16]; };
struct BlockQ4_1 { uint8_t d[2], m[2]; uint8_t qs[16]; };
struct BlockQ5_0 { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ5_1 { uint8_t d[2], m[2]; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ8_0 { uint8_t d[2]; int8_t qs[32]; };
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint8_t d[2], dmin[2]; };  // scale | min << 4 per 16
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint8_t d[2]; };  // 16 6-bit scales
struct BlockQ4_K { uint8_t d[2], dmin[2]; uint8_t scales[12]; uint8_t qs[128]; };  // 8 6-bit (scale, min)
struct BlockQ5_K { uint8_t d[2], dmin[2]; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint8_t d[2]; };
struct BlockMXFP4_GGML { uint8_t e; uint8_t qs[16]; };  // llama.cpp's block_mxfp4
struct BlockIQ4_NL { uint8_t d[2]; uint8_t qs[16]; };
struct BlockIQ4_XS { uint8_t d[2]; uint8_t scales_h[2]; uint8_t scales_l[4]; uint8_t qs[128]; };  // 8 6-bit scales
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 &&
              sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 &&
              sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 &&
              sizeof(BlockMXFP4_GGML) == 17 && sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);

// An f16 field of a block.
inline float block_f16(const uint8_t h[2]) { return f16_to_f32(uint16_t(h[0] | (h[1] << 8))); }

// Q4_K's and Q5_K's 12 scale bytes → the 8 sub-blocks' 6-bit scales and mins. Sub-blocks 0–3: the low
// 6 bits of bytes 0–3 (scales) and 4–7 (mins); sub-blocks 4–7: the nibbles of bytes 8–11 (scale low,
// min high) with the top 2 bits of bytes 0–3 (scales) and 4–7 (mins) above them.
inline void k_scales_mins(const uint8_t q[12], uint8_t sc[8], uint8_t m[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    m[j] = q[j + 4] & 63;
    sc[j + 4] = uint8_t((q[j + 8] & 15) | ((q[j] >> 6) << 4));
    m[j + 4] = uint8_t((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
  }
}

// dst[0..n) = the n values of one row stored in type t at `row`: a block-quantized row (n a multiple of
// the block), or F32/F16/BF16 (convert_to_f32). The decoders of ggml_decode.h (which the CUDA kernels
// share), operation for operation as gguf-py computes it in f32, so the values are the reference's bit
// for bit (ggml_quants.cpp is built with -ffp-contract=off: no fused multiply-adds). Throws std::invalid_argument for other types (MXFP4 keeps
// its scales apart: mxfp4_dequantize; MXFP4_GGML, whose blocks hold them, is read here) and for n not a
// multiple of the block.
void dequantize_row(const void* row, DType t, int64_t n, float* dst);

}  // namespace moe
