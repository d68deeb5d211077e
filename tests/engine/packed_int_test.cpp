// compressed-tensors' pack-quantized integers (engine/common/packed_int.h): 4- or 8-bit values packed into int32
// words, with a scale per group of columns or per row, each weight q · scale rounded to the scales' dtype. The
// reference, tests/data/packed_int (tests/make_packed_int_reference.py): weights packed and dequantized by
// compressed-tensors itself, in BF16, F16 and F32 scales, groups of 16 to 128 and whole rows (so every path of the
// CPU: the scalar one, the SIMD one, its lookup of 4-bit weights in BF16, F16 and F32), symmetric and with zero points,
// with every value of each range and F16-subnormal products. Checked: the values bit for bit as the row reader gives them and as both
// CPU paths multiply them (a product against a unit vector is the weight itself); the products against the
// reference's values in double.
#include "engine/common/packed_int.h"

#include <gtest/gtest.h>

#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "engine/backend/cpu/matmul.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/weight_rows.h"
#include "engine/common/ggml_quants.h"
#include "engine/formats/safetensors.h"
#include "tests/support/matmul_reference.h"

namespace moe {
namespace {

using test::ScopedForceScalar;

struct Weight {
  std::string name;
  DType dtype;
};
const Weight kWeights[] = {{"i4_g32_bf16", DType::PACKED_I4},
                           {"i4_g16_f16", DType::PACKED_I4},
                           {"i8_g64_f16", DType::PACKED_I8},
                           {"i8_row_f32", DType::PACKED_I8},
                           {"i4_g128_bf16", DType::PACKED_I4},
                           {"i4_row_f16", DType::PACKED_I4},
                           {"i4_g32_bf16_asym", DType::PACKED_I4},
                           {"i4_g128_f16_asym", DType::PACKED_I4},
                           {"i8_g16_f32_asym", DType::PACKED_I8},
                           {"i4_g64_f32", DType::PACKED_I4},
                           {"i4_g64_f32_asym", DType::PACKED_I4}};

struct Reference {
  std::unique_ptr<SafetensorsFile> file =
      SafetensorsFile::open(std::string(MOE_TEST_DATA_DIR) + "/packed_int/reference.safetensors");
  std::vector<std::vector<float>> scales;  // F32 copies, as the loader keeps them
  std::vector<std::vector<int8_t>> zeros;  // unpacked zero points, likewise
  const TensorView& at(const std::string& name) const { return file->tensors().at(name); }
  const float* values(const Weight& w) const { return reinterpret_cast<const float*>(at(w.name + ".values").data); }
  WeightMatrix matrix(const Weight& w) {
    const TensorView& s = at(w.name + ".scale");
    const int64_t rows = at(w.name + ".values").shape[0], cols = at(w.name + ".values").shape[1];
    const int64_t groups = s.shape[1];
    scales.emplace_back(size_t(rows * groups));
    convert_to_f32(s.data, s.dtype, scales.back().size(), scales.back().data());
    EXPECT_EQ(at(w.name + ".packed").shape[1] * 32, cols * packed_int_bits(w.dtype));
    WeightMatrix m{at(w.name + ".packed").data, w.dtype, rows, cols, nullptr, 1,
                   TileScales{scales.back().data(), 1, cols / groups, groups, 0, s.dtype}};
    if (file->tensors().count(w.name + ".zero_point")) {
      zeros.emplace_back(size_t(rows * groups));
      packed_int_unpack_zero_points(w.dtype, reinterpret_cast<const uint8_t*>(at(w.name + ".zero_point").data), rows,
                                    groups, zeros.back().data());
      m.tiles.zero_points = zeros.back().data();
    }
    return m;
  }
};

cpu::MatrixRef ref(const WeightMatrix& m) { return {m.data, m.dtype, m.rows, m.cols, m.scales, m.row_step, m.tiles}; }

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

TEST(PackedInt, RowsAreCompressedTensorsValues) {
  Reference r;
  for (const Weight& w : kWeights) {
    SCOPED_TRACE(w.name);
    const WeightMatrix m = r.matrix(w);
    const float* want = r.values(w);
    std::vector<float> got(static_cast<size_t>(m.cols)), part(static_cast<size_t>(m.cols));
    for (int64_t row = 0; row < m.rows; ++row) {
      weight_row_to_f32(m, row, got.data());
      for (int64_t c = 0; c < m.cols; ++c)
        ASSERT_TRUE(same_bits(got[size_t(c)], want[row * m.cols + c])) << "row " << row << " column " << c;
      // Columns from inside a group on, across the next.
      const int64_t c0 = 5, n = m.cols - 9;
      packed_int_dequantize_cols(w.dtype, m.data, m.cols, m.tiles, row, c0, n, part.data());
      for (int64_t c = 0; c < n; ++c)
        ASSERT_TRUE(same_bits(part[size_t(c)], want[row * m.cols + c0 + c])) << "row " << row << " column " << c0 + c;
    }
  }
}

// Against the unit vectors, a product is the weight itself, exactly: one token at a time (the GEMV), a few at a time
// (2 to 16: the 4-bit rows' few-token lookup, from 9 tokens in two runs, 9 = 5 + 4) and all of them at once (the
// prefill panels' conversion), on both paths.
TEST(PackedInt, BothPathsMultiplyTheSameValues) {
  Reference r;
  cpu::ThreadPool pool(2);
  for (const Weight& w : kWeights) {
    const WeightMatrix m = r.matrix(w);
    const int64_t R = m.rows, C = m.cols;
    const float* want = r.values(w);
    std::vector<float> eye(size_t(C * C), 0.0f);
    for (int64_t c = 0; c < C; ++c) eye[size_t(c * C + c)] = 1.0f;
    for (bool scalar : {false, true}) {
      if (!scalar && !cpu::simd_supported()) continue;
      ScopedForceScalar force(scalar);
      SCOPED_TRACE(w.name + (scalar ? ", scalar" : ", simd"));
      std::vector<float> y(size_t(C * R));
      cpu::matmul(pool, ref(m), eye.data(), C, y.data());
      for (int64_t c = 0; c < C; ++c)
        for (int64_t row = 0; row < R; ++row)
          ASSERT_TRUE(same_bits(y[size_t(c * R + row)], want[row * C + c])) << "all tokens, row " << row << " column " << c;
      for (int64_t c = 0; c < C; c += 7) {
        cpu::matmul(pool, ref(m), eye.data() + c * C, 1, y.data());
        for (int64_t row = 0; row < R; ++row)
          ASSERT_TRUE(same_bits(y[size_t(row)], want[row * C + c])) << "one token, row " << row << " column " << c;
      }
      for (int64_t T = 2; T <= 16; ++T)
        for (int64_t c0 = 0; c0 < C; c0 += T) {
          const int64_t n = std::min(T, C - c0);
          cpu::matmul(pool, ref(m), eye.data() + c0 * C, n, y.data());
          for (int64_t t = 0; t < n; ++t)
            for (int64_t row = 0; row < R; ++row)
              ASSERT_TRUE(same_bits(y[size_t(t * R + row)], want[row * C + c0 + t]))
                  << n << " tokens, row " << row << " column " << c0 + t;
        }
    }
  }
}

TEST(PackedInt, ProductsMatchTheReferenceOnBothPaths) {
  Reference r;
  cpu::ThreadPool pool(2);
  for (const Weight& w : kWeights) {
    const WeightMatrix m = r.matrix(w);
    const std::vector<float> exact(r.values(w), r.values(w) + m.rows * m.cols);
    for (bool scalar : {false, true}) {
      if (!scalar && !cpu::simd_supported()) continue;
      ScopedForceScalar force(scalar);
      for (int64_t T : {1, 2, 5, 8, 9, 13, 16, 17, 100}) {
        SCOPED_TRACE(w.name + (scalar ? ", scalar" : ", simd") + ", T = " + std::to_string(T));
        const std::vector<float> x = test::make_x(T, m.cols, uint32_t(T));
        std::vector<float> y(size_t(T * m.rows));
        cpu::matmul(pool, ref(m), x.data(), T, y.data());
        EXPECT_LE(test::max_rel_error(exact, m.rows, m.cols, x, T, y), 1e-5);
      }
    }
  }
}

// How the GPU holds packed integers: each 32 values of a row with their group's scale, BF16 or F16, and zero point
// (PACKED_I4_B32, PACKED_I4_F16_B32, PACKED_I4_ZP_B32, PACKED_I4_ZP_F16_B32, PACKED_I8_F16_B32). The blocks decode, by
// the decoder the CUDA kernels share, to the reference's values bit for bit (F16-subnormal products included), in
// groups of 32, 64 and 128 and of a whole row (the reference's) and of 64 made of groups of 32 (each scale and zero
// point then in two blocks). Groups narrower than a block, F32 scales, 8 bits with zero points and inputs held in
// activation order (GPTQ's desc_act) cannot be held so.
TEST(PackedInt, GpuBlocksHoldTheSameValues) {
  Reference r;
  const DType want_blocks[] = {DType::PACKED_I4_B32,    DType::PACKED_I4,        DType::PACKED_I8_F16_B32,
                               DType::PACKED_I8,        DType::PACKED_I4_B32,    DType::PACKED_I4_F16_B32,
                               DType::PACKED_I4_ZP_B32, DType::PACKED_I4_ZP_F16_B32, DType::PACKED_I8,
                               DType::PACKED_I4,        DType::PACKED_I4};
  static_assert(std::size(want_blocks) == std::size(kWeights));
  for (size_t i = 0; i < std::size(kWeights); ++i) {
    const Weight& w = kWeights[i];
    SCOPED_TRACE(w.name);
    const WeightMatrix m = r.matrix(w);
    const DType block = packed_int_block_type(m.dtype, m.cols, m.tiles);
    ASSERT_EQ(block, want_blocks[i]) << dtype_name(block);
    if (block == m.dtype) continue;  // none
    const bool zero_point = m.tiles.zero_points != nullptr;
    std::vector<uint8_t> blocks(matrix_bytes(block, 1, m.cols));
    EXPECT_EQ(blocks.size(), size_t(m.cols / 32) * (packed_int_bits(m.dtype) * 4 + (zero_point ? 4 : 2)));
    std::vector<float> got(static_cast<size_t>(m.cols)), want(static_cast<size_t>(m.cols));
    const auto* bytes = static_cast<const uint8_t*>(m.data);
    const size_t stride = packed_int_row_bytes(m.dtype, m.cols);
    for (int64_t row = 0; row < m.rows; ++row) {
      const int8_t* zeros = zero_point ? m.tiles.row_zero_points(row) : nullptr;
      packed_int_to_blocks(block, bytes + row * stride, m.tiles.row_scales(row), zeros, m.tiles.tile_cols, m.cols,
                           blocks.data());
      dequantize_row(blocks.data(), block, m.cols, got.data());
      for (int64_t c = 0; c < m.cols; ++c)
        ASSERT_TRUE(same_bits(got[size_t(c)], r.values(w)[row * m.cols + c])) << "row " << row << " column " << c;
      if (m.tiles.tile_cols != 32) continue;
      // Groups of 64: every other scale and zero point of the row.
      std::vector<float> wide(static_cast<size_t>(m.cols / 64));
      std::vector<int8_t> wide_zeros(wide.size());
      for (size_t g = 0; g < wide.size(); ++g) {
        wide[g] = m.tiles.row_scales(row)[2 * g];
        if (zero_point) wide_zeros[g] = zeros[2 * g];
      }
      packed_int_to_blocks(block, bytes + row * stride, wide.data(), wide_zeros.data(), 64, m.cols, blocks.data());
      dequantize_row(blocks.data(), block, m.cols, got.data());
      const TileScales wide_tiles{wide.data(), 1, 64, int64_t(wide.size()), 0, m.tiles.round_to,
                                  zero_point ? wide_zeros.data() : nullptr};
      packed_int_dequantize_row(m.dtype, bytes + row * stride, m.cols, wide_tiles, 0, want.data());
      for (int64_t c = 0; c < m.cols; ++c) ASSERT_TRUE(same_bits(got[size_t(c)], want[size_t(c)])) << "groups of 64, column " << c;
    }
  }
  // BF16-scaled 8 bits (the reference has none): a row of every value, scales of each group's sign.
  std::vector<uint8_t> row8(256);
  for (size_t c = 0; c < row8.size(); ++c) row8[c] = uint8_t(c * 7);
  const float scales8[4] = {bf16_to_f32(f32_to_bf16(3e-3f)), bf16_to_f32(f32_to_bf16(-1.7e-2f)), 1.0f, -0.25f};
  const TileScales tiles8{scales8, 1, 64, 4, 0, DType::BF16};
  ASSERT_EQ(packed_int_block_type(DType::PACKED_I8, 256, tiles8), DType::PACKED_I8_B32);
  std::vector<uint8_t> blocks8(matrix_bytes(DType::PACKED_I8_B32, 1, 256));
  EXPECT_EQ(blocks8.size(), size_t(8 * 34));
  packed_int_to_blocks(DType::PACKED_I8_B32, row8.data(), scales8, nullptr, 64, 256, blocks8.data());
  std::vector<float> got8(256), want8(256);
  dequantize_row(blocks8.data(), DType::PACKED_I8_B32, 256, got8.data());
  packed_int_dequantize_row(DType::PACKED_I8, row8.data(), 256, tiles8, 0, want8.data());
  for (size_t c = 0; c < 256; ++c) ASSERT_TRUE(same_bits(got8[c], want8[c])) << "8 bits, column " << c;

  const auto none = [](DType t, int64_t cols, const TileScales& tiles) { return packed_int_block_type(t, cols, tiles) == t; };
  EXPECT_TRUE(none(DType::PACKED_I4, 48, TileScales{nullptr, 1, 16, 3, 0, DType::BF16}));
  EXPECT_TRUE(none(DType::PACKED_I4, 256, TileScales{nullptr, 1, 32, 8, 0, DType::F32}));
  EXPECT_TRUE(none(DType::PACKED_I8, 240, TileScales{nullptr, 1, 240, 1, 0, DType::BF16}));
  const int8_t zeros[8] = {};
  EXPECT_TRUE(none(DType::PACKED_I8, 256, TileScales{nullptr, 1, 32, 8, 0, DType::F16, zeros}));
  EXPECT_FALSE(none(DType::PACKED_I4, 256, TileScales{nullptr, 1, 32, 8, 0, DType::F16, zeros}));
  std::vector<int32_t> order(256);
  for (int32_t c = 0; c < 256; ++c) order[size_t(c)] = 255 - c;
  EXPECT_TRUE(none(DType::PACKED_I4, 256, TileScales{nullptr, 1, 32, 8, 0, DType::BF16, nullptr, order.data()}));
}

TEST(PackedInt, AMatrixWithoutItsScalesOrWholeWordsIsRefused) {
  Reference r;
  WeightMatrix m = r.matrix(kWeights[0]);
  std::vector<float> x(static_cast<size_t>(m.cols)), y(static_cast<size_t>(m.rows));
  cpu::MatrixRef unscaled = ref(m);
  unscaled.tiles = {};
  EXPECT_THROW(cpu::matmul_rows(unscaled, x.data(), 1, y.data(), 0, m.rows), std::invalid_argument);
  cpu::MatrixRef ragged = ref(m);
  ragged.cols = 12;  // 48 bits a row
  ragged.tiles.tile_cols = 12;
  EXPECT_THROW(cpu::matmul_rows(ragged, x.data(), 1, y.data(), 0, m.rows), std::invalid_argument);
  EXPECT_EQ(matrix_bytes(DType::PACKED_I4, 3, 64), size_t(3 * 32));
  EXPECT_EQ(matrix_bytes(DType::PACKED_I8, 3, 64), size_t(3 * 64));
}

}  // namespace
}  // namespace moe
