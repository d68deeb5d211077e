#pragma once
// GPTQ's and AWQ's QuantLinear layouts, read into the packed integer rows of packed_int.h. GPTQ: quantization_config
// quant_method "gptq" (AutoGPTQ, GPTQModel; Qwen's -GPTQ-Int4 and -GPTQ-Int8 releases). AWQ: quant_method "awq" in
// AutoAWQ's GEMM format (Qwen's -AWQ releases). A linear layer of `rows` outputs (out_features) and `cols` inputs
// (in_features) is stored as
//   <module>.qweight  I32, GPTQ: [cols · bits / 32, rows]. Each output's values run down its column, packed 32 / bits
//                     to a little-endian word from bit 0 up: word (w, r) holds inputs 32 / bits · w onwards.
//                     AWQ (4 bits): [cols, rows / 8]. Word (c, w) holds input c of outputs 8w … 8w + 7, output
//                     8w + kAwqOrder[k] in nibble k.
//   <module>.qzeros   I32 [groups, rows · bits / 32]: each group's zero points, packed across the outputs as AWQ's
//                     qweight packs its values (GPTQ in plain order, AWQ in its own).
//   <module>.scales   F16 (or BF16, F32) [groups, rows].
//   <module>.g_idx    I32 [cols] (GPTQ): each input's group, c / group_size unless activation order (desc_act)
//                     reordered them: then input c's group is its rank in the order GPTQ quantized the inputs in
//                     (largest Hessian diagonal first), over group_size, so every group still has group_size inputs
//                     but they lie anywhere. Such a layer is held with its inputs sorted by group (stably), each
//                     group's inputs adjacent, and the input order kept (TileScales::input_order).
// Values q and zero points z are unsigned (0 … 2^bits − 1). Weight (r, c) is round((q − z) · s) in the scales' dtype,
// with s and z those of input c's group; GPTQModel's torch kernel (transformers loads GPTQ with it) and AWQ's
// dequantise so. GPTQ's older checkpoint format ("gptq", v1) stores each z − 1. GPTQModel adds back 0x11111111
// (0x01010101 for 8 bits) to each qzeros word, carries included, and so does this reader. That is adding 1 to every
// z, except where a stored nibble is 2^bits − 1: a zero point of 0, which v1 cannot hold.
//
// In packed_int.h's terms, a value q is stored as q, i.e. as the signed value q − 2^(bits − 1), and its zero point is
// z − 2^(bits − 1): (q − z) is unchanged. A GPTQ value's word is already a packed_int.h row word, so the values are
// a transpose of whole words; AWQ's need each nibble moved.
#include <cstddef>
#include <cstdint>

namespace moe {

enum class QuantLinearLayout { Gptq, Awq };

// AWQ's nibble order: nibble k of a word holds output 8w + kAwqOrder[k].
inline constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// qweight (bytes of I32 words, as stored) as packed_int.h rows: dst [rows, cols · bits / 32] words. bits is 4 or 8
// (AWQ: 4); rows and cols are multiples of 32 / bits (AWQ: 8).
void quant_linear_values(QuantLinearLayout layout, int bits, const uint8_t* qweight, int64_t rows, int64_t cols,
                         uint8_t* dst);

// qzeros (bytes of I32 words [groups, rows · bits / 32], as stored) as packed_int.h's zero points: out [rows, groups],
// each z − 2^(bits − 1). gptq_v1: the words hold z − 1 (GPTQ's v1 format). Returns whether any zero point is not 0
// in those terms (a symmetric layer stores z = 2^(bits − 1) throughout).
bool quant_linear_zero_points(QuantLinearLayout layout, int bits, bool gptq_v1, const uint8_t* qzeros, int64_t rows,
                              int64_t groups, int8_t* out);

// The order in which activation order's inputs are held: order[j] is the input stored j-th, the inputs sorted by
// group_of[c] (g_idx, I32 bytes [cols] as stored), in input order within a group. False when every input c is in group
// c / (cols / groups), as without activation order: nothing to move, order untouched. Throws std::invalid_argument
// naming the first input out of the [0, groups) range, or the first group without cols / groups inputs.
bool quant_linear_input_order(const uint8_t* group_of, int64_t cols, int64_t groups, int32_t* order);

// Rows of packed values (packed_int.h: [rows, cols · bits / 32] words, bits 4 or 8) with their columns moved: column j
// of each row becomes its column order[j]. In place; rows are split over the machine's threads.
void packed_int_gather_columns(int bits, uint8_t* values, int64_t rows, int64_t cols, const int32_t* order);

}  // namespace moe
