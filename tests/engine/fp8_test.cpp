// Fine-grained FP8 (engine/common/fp8.h): F8_E4M3 weights with one F32 scale per tile, read in place. The
// reference, tests/data/fp8 (tests/make_fp8_reference.py, transformers' own dequantisation): each byte's value,
// and a 40 × 72 weight in 16 × 32 tiles, whose last tile of each row and column is partial, with scales from
// subnormal to 2.5e35. Checked: the values bit for bit wherever they are made (the row reader, the SIMD panels'
// conversion through the products, the GPU's F8_E4M3_B128 blocks); the products on both CPU paths against the
// reference's values; the few-token kernel's products with unit vectors are the values bit for bit; a matrix of
// some of the rows (MLA's W_UV rows of kv_b) reads its own rows' tiles.
#include "engine/common/fp8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
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

struct Reference {
  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(std::string(MOE_TEST_DATA_DIR) + "/fp8/reference.safetensors");
  const TensorView& at(const std::string& name) const { return file->tensors().at(name); }
  const uint8_t* bytes(const std::string& name) const { return reinterpret_cast<const uint8_t*>(at(name).data); }
  const float* floats(const std::string& name) const { return reinterpret_cast<const float*>(at(name).data); }
  int64_t rows() const { return at("codes").shape.at(0); }
  int64_t cols() const { return at("codes").shape.at(1); }
  TileScales tiles() const { return {floats("scales"), 16, 32, at("scales").shape.at(1), 0}; }
  cpu::MatrixRef matrix(const std::string& codes) const {
    return {bytes(codes), DType::F8_E4M3, rows(), cols(), nullptr, 1, tiles()};
  }
};

// The same f32, or both NaN.
bool same_value(float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, 4) == 0; }

TEST(Fp8, EveryByteIsTorchsValue) {
  const Reference ref;
  const float* want = ref.floats("e4m3");
  for (int b = 0; b < 256; ++b) EXPECT_TRUE(same_value(ggml::e4m3_value(uint8_t(b)), want[b])) << "byte " << b;
}

TEST(Fp8, RowsAreTransformersValues) {
  const Reference ref;
  ASSERT_EQ(ref.at("scales").shape, (std::vector<int64_t>{3, 3}));  // partial last tiles both ways
  const int64_t R = ref.rows(), C = ref.cols();
  const TileScales tiles = ref.tiles();
  const WeightMatrix m{ref.bytes("codes"), DType::F8_E4M3, R, C, nullptr, 1, tiles};
  std::vector<float> got(static_cast<size_t>(C)), part(static_cast<size_t>(C));
  for (int64_t r = 0; r < R; ++r) {
    const float* want = ref.floats("values") + r * C;
    weight_row_to_f32(m, r, got.data());
    for (int64_t c = 0; c < C; ++c) ASSERT_TRUE(same_value(got[size_t(c)], want[c])) << "row " << r << " column " << c;
    // Columns from the middle of a tile on, across the next.
    fp8_dequantize_cols(ref.bytes("codes") + r * C, tiles.row_scales(r), 32, 21, 40, part.data());
    for (int64_t c = 0; c < 40; ++c) ASSERT_TRUE(same_value(part[size_t(c)], want[21 + c])) << "row " << r << " column " << 21 + c;
  }
}

// The products against the reference's values in double, on both paths, for one token (the GEMV: per tile a
// sum, then its scale), a few and many (the prefill panels, the values converted 16 at a time).
TEST(Fp8, ProductsMatchTheReferenceOnBothPaths) {
  const Reference ref;
  const int64_t R = ref.rows(), C = ref.cols();
  const std::vector<float> exact(ref.floats("finite_values"), ref.floats("finite_values") + R * C);
  cpu::ThreadPool pool(2);
  for (bool scalar : {false, true}) {
    if (!scalar && !cpu::simd_supported()) continue;
    ScopedForceScalar force(scalar);
    for (int64_t T : {1, 2, 5, 8, 9, 16, 17, 100}) {  // 2 to 8: the few-token kernel; 9 to 16: in two runs
      SCOPED_TRACE(std::string(scalar ? "scalar" : "simd") + ", T = " + std::to_string(T));
      std::vector<float> x = test::make_x(T, C, uint32_t(T));
      for (float& v : x) v *= 1e-3f;  // the 2.5e35 tile's products stay far from f32's top
      std::vector<float> y(size_t(T * R));
      cpu::matmul(pool, ref.matrix("finite_codes"), x.data(), T, y.data());
      EXPECT_LE(test::max_rel_error(exact, R, C, x, T, y), 1e-5);
      // A NaN weight (0x7f at row 1, 0xff at row 3 of `codes`) makes its rows' products NaN on every path.
      cpu::matmul(pool, ref.matrix("codes"), x.data(), T, y.data());
      for (int64_t t = 0; t < T; ++t)
        for (int64_t r : {1, 3}) EXPECT_TRUE(std::isnan(y[size_t(t * R + r)])) << "token " << t << " row " << r;
    }
  }
}

// x = e_c … e_c+T−1 picks out each weight exactly through the few-token kernel (2 to 16 tokens at a time; from 9 in
// two runs), which scales each weight as the panels do: the reference's finite weights (tiles of 32 columns, the
// last 8 wide), and a matrix in tiles of 48 columns, rows of 120, so that the kernel's 32-, 16- and 8-column steps
// all run, against fp8_dequantize_row (whose values are transformers', above).
void expect_few_tokens_pick_out(const cpu::MatrixRef& W, const std::vector<float>& want) {
  const int64_t R = W.rows, C = W.cols;
  std::vector<float> eye(size_t(C * C), 0.0f), y(size_t(16 * R));
  for (int64_t c = 0; c < C; ++c) eye[size_t(c * C + c)] = 1.0f;
  for (int64_t T = 2; T <= 16; ++T)
    for (int64_t c0 = 0; c0 < C; c0 += T) {
      const int64_t n = std::min(T, C - c0);
      cpu::matmul_rows(W, &eye[size_t(c0 * C)], n, y.data(), 0, R);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < R; ++r)
          ASSERT_EQ(y[size_t(t * R + r)], want[size_t(r * C + c0 + t)])  // (−0 and +0 alike: the sums start at +0)
              << n << " tokens, row " << r << " column " << c0 + t;
    }
}

TEST(Fp8, FewTokensPickOutEveryValue) {
  if (!cpu::simd_supported()) GTEST_SKIP() << "no AVX2+FMA+F16C on this CPU (the scalar path takes every T alike)";
  const Reference ref;
  expect_few_tokens_pick_out(ref.matrix("finite_codes"), std::vector<float>(ref.floats("finite_values"),
                                                                            ref.floats("finite_values") + ref.rows() * ref.cols()));
  const int64_t R = 5, C = 120;
  std::vector<uint8_t> codes(size_t(R * C));
  std::mt19937 rng(3);
  for (uint8_t& b : codes) b = uint8_t(rng() % 0x7f) | uint8_t(rng() & 0x80);  // no NaN codes
  const std::vector<float> scales = {0.5f, 3e-3f, 7.0f};
  const TileScales tiles{scales.data(), 16, 48, 3, 0};
  std::vector<float> want(size_t(R * C));
  for (int64_t r = 0; r < R; ++r) fp8_dequantize_row(codes.data(), C, tiles, r, &want[size_t(r * C)]);
  expect_few_tokens_pick_out(cpu::MatrixRef{codes.data(), DType::F8_E4M3, R, C, nullptr, 1, tiles}, want);
}

// Rows 13 … 39 as a matrix of their own (13 is inside a tile): each row reads its own tiles, and gives what it
// gives within the whole matrix.
TEST(Fp8, RowsOfAMatrixReadTheirOwnTiles) {
  const Reference ref;
  const int64_t R = ref.rows(), C = ref.cols(), first = 13;
  const cpu::MatrixRef whole = ref.matrix("finite_codes");
  const cpu::MatrixRef some{ref.bytes("finite_codes") + first * C, DType::F8_E4M3, R - first, C, nullptr, 1,
                            whole.tiles.from_row(first)};
  std::vector<float> x = test::make_x(1, C, 9);
  for (float& v : x) v *= 1e-3f;
  std::vector<float> y_whole(static_cast<size_t>(R)), y_some(static_cast<size_t>(R - first));
  cpu::matmul_rows(whole, x.data(), 1, y_whole.data(), 0, R);
  cpu::matmul_rows(some, x.data(), 1, y_some.data(), 0, R - first);
  for (int64_t r = 0; r < R - first; ++r) EXPECT_EQ(y_some[size_t(r)], y_whole[size_t(first + r)]) << "row " << first + r;

  cpu::MatrixRef unscaled = whole;
  unscaled.tiles = {};
  EXPECT_THROW(cpu::matmul_rows(unscaled, x.data(), 1, y_whole.data(), 0, R), std::invalid_argument);
}

// How the GPU holds FP8: each 128 values of a row with its tile's scale (F8_E4M3_B128). The blocks decode, by
// the decoder the CUDA kernels share, to the row's values bit for bit: every byte, NaN codes included, under
// tiles 128 and 256 wide. Tiles narrower than a block, or rows of part of one, cannot be held so.
TEST(Fp8, GpuBlocksHoldTheSameValues) {
  const int64_t n = 512;
  std::mt19937 rng(3);
  std::vector<uint8_t> q(static_cast<size_t>(n));
  for (size_t i = 0; i < q.size(); ++i) q[i] = uint8_t(i < 256 ? i : rng());
  const std::vector<float> scales = {1.5e-4f, -3e-39f, 2.5e35f, 0.75f};
  for (int64_t tile_cols : {128, 256}) {
    SCOPED_TRACE("tiles " + std::to_string(tile_cols) + " wide");
    ASSERT_TRUE(fp8_fits_blocks(n, tile_cols));
    std::vector<uint8_t> blocks(matrix_bytes(DType::F8_E4M3_B128, 1, n));
    EXPECT_EQ(blocks.size(), size_t(n / 128 * 132));
    fp8_to_blocks(q.data(), scales.data(), tile_cols, n, blocks.data());
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
    fp8_dequantize_cols(q.data(), scales.data(), tile_cols, 0, n, want.data());
    dequantize_row(blocks.data(), DType::F8_E4M3_B128, n, got.data());
    for (int64_t c = 0; c < n; ++c) ASSERT_TRUE(same_value(got[size_t(c)], want[size_t(c)])) << "column " << c;
  }
  EXPECT_FALSE(fp8_fits_blocks(512, 64));
  EXPECT_FALSE(fp8_fits_blocks(200, 128));
}

}  // namespace
}  // namespace moe
