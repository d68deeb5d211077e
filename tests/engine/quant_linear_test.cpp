// GPTQ's and AWQ's QuantLinear layouts (engine/common/quant_linear.h), read into packed_int.h's rows. The reference,
// tests/data/quant_linear (tests/make_quant_linear_reference.py): weights dequantized by GPTQModel itself (which
// transformers loads both formats with), GPTQ in its v1 format (zero points stored less 1, some of them 0, whose
// word add carries) and v2, 4 and 8 bits, per group and per row, AWQ in AutoAWQ's GEMM layout, with F16, BF16 and F32
// scales, and GPTQ with activation order (desc_act: g_idx scattering the groups). Checked: the rows, their zero points
// and scales give the reference's values bit for bit (activation order's held by group, then moved back), and their
// products the reference's; a symmetric layer's zero points are all the midpoint, so it loads without them.
#include "engine/common/quant_linear.h"

#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/backend/cpu/matmul.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/weight_rows.h"
#include "engine/common/packed_int.h"
#include "engine/formats/safetensors.h"
#include "tests/support/matmul_reference.h"

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
                       {"awq_i4_g16_bf16", QuantLinearLayout::Awq, false, false},
                       {"gptq_i4_g16_v1_f16_act_order", QuantLinearLayout::Gptq, true, false},
                       {"gptq_i8_g32_v2_bf16_act_order", QuantLinearLayout::Gptq, false, true}};

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
    WeightMatrix m{packed.data(), dtype, rows, cols, nullptr, 1, TileScales{f32.data(), 1, cols / groups, groups, 0, scales.dtype}};
    if (asymmetric) m.tiles.zero_points = zeros.data();
    // Activation order: the inputs held sorted by group, as the loader holds them.
    std::vector<int32_t> order(static_cast<size_t>(cols));
    const bool act_order = c.name.ends_with("_act_order");
    if (t.count(c.name + ".g_idx")) {
      ASSERT_EQ(quant_linear_input_order(reinterpret_cast<const uint8_t*>(t.at(c.name + ".g_idx").data), cols, groups, order.data()),
                act_order);
    }
    if (act_order) {
      packed_int_gather_columns(bits, packed.data(), rows, cols, order.data());
      m.tiles.input_order = order.data();
    }

    const auto* want = reinterpret_cast<const float*>(values.data);
    std::vector<float> got(static_cast<size_t>(cols));
    int64_t wrong = 0;
    for (int64_t r = 0; r < rows; ++r) {
      weight_row_to_f32(m, r, got.data());
      for (int64_t col = 0; col < cols; ++col)
        if (std::memcmp(&got[size_t(col)], &want[r * cols + col], 4) != 0 && wrong++ < 5)
          ADD_FAILURE() << "row " << r << " col " << col << ": " << got[size_t(col)] << ", GPTQModel " << want[r * cols + col];
    }
    EXPECT_EQ(wrong, 0);

    // The products, on both paths, one token and several: with activation order, x gathered into the stored order.
    cpu::ThreadPool pool(2);
    const std::vector<float> exact(want, want + rows * cols);
    const cpu::MatrixRef w{m.data, m.dtype, rows, cols, nullptr, 1, m.tiles};
    for (bool scalar : {false, true}) {
      if (!scalar && !cpu::simd_supported()) continue;
      test::ScopedForceScalar force(scalar);
      for (int64_t T : {1, 5}) {
        SCOPED_TRACE(std::string(scalar ? "scalar" : "simd") + ", T = " + std::to_string(T));
        const std::vector<float> x = test::make_x(T, cols, uint32_t(T));
        std::vector<float> y(size_t(T * rows)), y_rows(size_t(T * rows));
        cpu::matmul(pool, w, x.data(), T, y.data());
        EXPECT_LE(test::max_rel_error(exact, rows, cols, x, T, y), 1e-5);
        cpu::matmul_rows(w, x.data(), T, y_rows.data(), 0, rows);
        EXPECT_EQ(y_rows, y);
      }
    }
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

// Activation order: the inputs sorted by group, in input order within each group; a plain g_idx moves nothing; a
// group out of range, or one without cols / groups inputs, is refused by name.
TEST(QuantLinear, InputOrderSortsTheInputsByGroup) {
  auto order_of = [](const std::vector<int32_t>& g_idx, int64_t groups, std::vector<int32_t>& order) {
    order.assign(g_idx.size(), -1);
    return quant_linear_input_order(reinterpret_cast<const uint8_t*>(g_idx.data()), int64_t(g_idx.size()), groups,
                                    order.data());
  };
  std::vector<int32_t> order;
  ASSERT_TRUE(order_of({1, 0, 0, 1, 1, 0, 1, 0}, 2, order));
  EXPECT_EQ(order, (std::vector<int32_t>{1, 2, 5, 7, 0, 3, 4, 6}));
  EXPECT_FALSE(order_of({0, 0, 0, 0, 1, 1, 1, 1}, 2, order));
  EXPECT_EQ(order, std::vector<int32_t>(8, -1));
  EXPECT_FALSE(order_of(std::vector<int32_t>(6, 0), 1, order));  // one group per row: nothing to reorder
  auto refusal = [&](const std::vector<int32_t>& g_idx, int64_t groups) {
    try {
      order_of(g_idx, groups, order);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(refusal({0, 2, 1, 1}, 2), "input 1 is in group 2, outside the 2 groups");
  EXPECT_EQ(refusal({0, -1, 1, 1}, 2), "input 1 is in group -1, outside the 2 groups");
  EXPECT_EQ(refusal({1, 0, 0, 1, 1, 0, 1, 1}, 2), "group 0 has 3 inputs, not 4 as every group must");
}

// Column j of every row becomes column order[j], 4 and 8 bits, with rows enough to be split over threads.
TEST(QuantLinear, GatherColumnsMovesEveryValue) {
  const int64_t rows = 300, cols = 64;
  std::vector<int32_t> order(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) order[size_t(j)] = int32_t((j * 37 + 5) % cols);  // 37 is coprime to 64
  for (int bits : {4, 8}) {
    SCOPED_TRACE(std::to_string(bits) + " bits");
    const DType t = bits == 4 ? DType::PACKED_I4 : DType::PACKED_I8;
    const size_t row_bytes = packed_int_row_bytes(t, cols);
    std::vector<uint8_t> before(row_bytes * rows);
    for (size_t i = 0; i < before.size(); ++i) before[i] = uint8_t(i * 2654435761u >> 13);
    std::vector<uint8_t> after = before;
    packed_int_gather_columns(bits, after.data(), rows, cols, order.data());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j)
        ASSERT_EQ(packed_int_value(t, &after[size_t(r) * row_bytes], j),
                  packed_int_value(t, &before[size_t(r) * row_bytes], order[size_t(j)]))
            << "row " << r << " column " << j;
  }
}

}  // namespace
}  // namespace moe
