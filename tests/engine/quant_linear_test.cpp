// GPTQ's and AWQ's QuantLinear layouts (engine/common/quant_linear.h), read into packed_int.h's rows. The reference,
// tests/data/quant_linear (tests/make_quant_linear_reference.py): weights dequantized by GPTQModel itself (which
// transformers loads both formats with), GPTQ in its v1 format (zero points stored less 1, some of them 0, whose
// word add carries) and v2, 4 and 8 bits, per group and per row, AWQ in AutoAWQ's GEMM layout, with F16, BF16 and F32
// scales. Checked: the rows, their zero points and scales give the reference's values bit for bit; a symmetric
// layer's zero points are all the midpoint, so it loads without them.
#include "engine/common/quant_linear.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/common/packed_int.h"
#include "engine/formats/safetensors.h"

namespace moe {
namespace {

struct Case {
  std::string name;
  QuantLinearLayout layout;
  bool gptq_v1;
  bool symmetric;
};
const Case kCases[] = {{"gptq_i4_g32_v1_f16", QuantLinearLayout::Gptq, true, true},
                       {"gptq_i4_g16_v1_f16", QuantLinearLayout::Gptq, true, false},
                       {"gptq_i8_row_v2_bf16", QuantLinearLayout::Gptq, false, false},
                       {"gptq_i8_g32_v1_f32", QuantLinearLayout::Gptq, true, false},
                       {"awq_i4_g32_f16", QuantLinearLayout::Awq, false, false},
                       {"awq_i4_g16_bf16", QuantLinearLayout::Awq, false, false}};

TEST(QuantLinear, RowsHoldGptqModelsValues) {
  auto file = SafetensorsFile::open(std::string(MOE_TEST_DATA_DIR) + "/quant_linear/reference.safetensors");
  const auto& t = file->tensors();
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const TensorView& values = t.at(c.name + ".values");
    const TensorView& qweight = t.at(c.name + ".qweight");
    const TensorView& scales = t.at(c.name + ".scales");
    const int64_t rows = values.shape[0], cols = values.shape[1], groups = scales.shape[0];
    const int bits = c.layout == QuantLinearLayout::Awq ? 4 : int(qweight.shape[0] * 32 / cols);
    const DType dtype = bits == 4 ? DType::PACKED_I4 : DType::PACKED_I8;

    std::vector<uint8_t> packed(size_t(rows * cols * bits / 8));
    quant_linear_values(c.layout, bits, reinterpret_cast<const uint8_t*>(qweight.data), rows, cols, packed.data());
    std::vector<int8_t> zeros(size_t(rows * groups));
    const bool asymmetric = quant_linear_zero_points(c.layout, bits, c.gptq_v1,
                                                     reinterpret_cast<const uint8_t*>(t.at(c.name + ".qzeros").data),
                                                     rows, groups, zeros.data());
    EXPECT_EQ(asymmetric, !c.symmetric);
    std::vector<float> by_group(size_t(groups * rows)), f32(size_t(rows * groups));
    convert_to_f32(scales.data, scales.dtype, by_group.size(), by_group.data());
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t r = 0; r < rows; ++r) f32[size_t(r * groups + g)] = by_group[size_t(g * rows + r)];
    TileScales tiles{f32.data(), 1, cols / groups, groups, 0, scales.dtype};
    if (asymmetric) tiles.zero_points = zeros.data();

    const auto* want = reinterpret_cast<const float*>(values.data);
    std::vector<float> got(static_cast<size_t>(cols));
    int64_t wrong = 0;
    for (int64_t r = 0; r < rows; ++r) {
      packed_int_dequantize_row(dtype, packed.data(), cols, tiles, r, got.data());
      for (int64_t col = 0; col < cols; ++col)
        if (std::memcmp(&got[size_t(col)], &want[r * cols + col], 4) != 0 && wrong++ < 5)
          ADD_FAILURE() << "row " << r << " col " << col << ": " << got[size_t(col)] << ", GPTQModel " << want[r * cols + col];
    }
    EXPECT_EQ(wrong, 0);
  }
}

// GPTQ v1's word add carries: a stored zero point of 15 (a z of 0) becomes 0 and adds 1 to the next one, as
// GPTQModel does; AWQ's nibbles go to outputs 0 2 4 6 1 3 5 7 of their word.
TEST(QuantLinear, ZeroPointsFollowTheirLayouts) {
  const uint32_t word = 0x0000007fu;  // nibbles 0 to 7: 15, 7, 0, …
  uint8_t bytes[4];
  std::memcpy(bytes, &word, 4);
  int8_t z[8];
  quant_linear_zero_points(QuantLinearLayout::Gptq, 4, true, bytes, 8, 1, z);
  const int8_t v1[8] = {0 - 8, 8 + 1 - 8, 1 - 8, 1 - 8, 1 - 8, 1 - 8, 1 - 8, 1 - 8};  // 0x11111190: 0, 9, 1, …
  for (int r = 0; r < 8; ++r) EXPECT_EQ(z[r], v1[r]) << "output " << r;
  quant_linear_zero_points(QuantLinearLayout::Awq, 4, false, bytes, 8, 1, z);
  const int8_t awq[8] = {15 - 8, 0 - 8, 7 - 8, 0 - 8, 0 - 8, 0 - 8, 0 - 8, 0 - 8};  // nibble 1 is output 2
  for (int r = 0; r < 8; ++r) EXPECT_EQ(z[r], awq[r]) << "output " << r;
}

}  // namespace
}  // namespace moe
