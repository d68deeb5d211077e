// The decode matrix-vector product (engine/backend/cuda/kernels/linear.cu) against a double-precision
// reference: y = W·x (and y += W·x) with W in BF16, F16 or F32 and x in F32, on the vectorised path
// (16-byte aligned rows, several chunks per lane) and the scalar one (rows that are not); and the same
// product finishing with a residual add + RMSNorm in its last block. GGML block-typed W (held as blocks
// on the GPU): the decode product on every type, the BF16 expansion prefill hands cuBLAS
// (dequantize.cuh), and Blas::linear for several tokens going through it a few rows at a time.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <cstring>
#include <vector>

#include "engine/backend/cuda/blas.h"
#include "engine/backend/cuda/device_allocator.h"
#include "engine/backend/cuda/kernels/dequantize.cuh"
#include "engine/backend/cuda/kernels/linear.cuh"
#include "engine/common/dtype.h"
#include "engine/common/ggml_quants.h"
#include "tests/cuda/gpu_test_support.h"
#include "tests/support/ggml_blocks.h"

namespace moe::cuda {
namespace {

using test::DeviceVector;

struct Case {
  int rows, cols;
  const char* what;
};

const std::vector<DType>& kBlockTypes = moe::test::kGgmlBlockTypes;
// The blocks the GPU holds packed integers in (engine/common/packed_int.h), whose values are BF16 or F16 values.
const DType kPackedIntBlocks[] = {DType::PACKED_I4_B32,    DType::PACKED_I4_F16_B32, DType::PACKED_I4_ZP_B32,
                                  DType::PACKED_I4_ZP_F16_B32, DType::PACKED_I8_B32, DType::PACKED_I8_F16_B32};

// A rows × cols matrix stored as dt (random values, or random blocks of a block type), and its values.
std::vector<uint8_t> random_matrix(DType dt, int rows, int cols, uint32_t seed, std::vector<float>& values) {
  if (!is_block_quantized(dt)) {
    values = test::random_floats(size_t(rows) * size_t(cols), seed, 1.0f);
    return test::stored_as(dt, values);
  }
  std::vector<uint8_t> bytes = moe::test::random_blocks(dt, rows, cols, seed);
  values.resize(size_t(rows) * size_t(cols));
  for (int r = 0; r < rows; ++r)
    dequantize_row(bytes.data() + size_t(r) * row_bytes(dt, cols), dt, cols, values.data() + size_t(r) * size_t(cols));
  return bytes;
}

// Each row is checked against the bound of an F32 dot product accumulated in any order: a relative
// error of n·2^-24 of Σ|w·x| at worst; 1e-5 of it is far above what F32 accumulation over these lengths
// gives (a few 1e-7 typically) and far below a missing, repeated or misplaced term.
void check(DType dt, const Case& c, bool accumulate) {
  SCOPED_TRACE(std::string(dtype_name(dt)) + " " + c.what + (accumulate ? ", accumulate" : ""));
  std::vector<float> w;
  const std::vector<uint8_t> bytes = random_matrix(dt, c.rows, c.cols, 11u + uint32_t(c.cols), w);
  const std::vector<float> x = test::random_floats(size_t(c.cols), 7u + uint32_t(c.rows), 1.0f);
  const std::vector<float> y0 = test::random_floats(size_t(c.rows), 5u, 1.0f);
  DeviceVector<uint8_t> dw(bytes);
  DeviceVector<float> dx(x), dy(y0);
  linear_decode(DeviceMatrix{dw.get(), dt, c.rows, c.cols}, dx.get(), dy.get(), accumulate, nullptr);
  const std::vector<float> y = dy.download();
  for (int r = 0; r < c.rows; ++r) {
    double ref = accumulate ? double(y0[size_t(r)]) : 0.0, mag = std::fabs(ref);
    for (int i = 0; i < c.cols; ++i) {
      const double p = double(w[size_t(r) * size_t(c.cols) + size_t(i)]) * double(x[size_t(i)]);
      ref += p;
      mag += std::fabs(p);
    }
    ASSERT_NEAR(y[size_t(r)], ref, 1e-5 * mag + 1e-6) << "row " << r;
  }
}

TEST(LinearDecode, MatchesTheReference) {
  MOE_REQUIRE_GPU();
  const Case cases[] = {
      {37, 2048, "2048 columns: one pass of 8 chunks per lane, a partial last block"},
      {20, 4104, "4104 columns: three passes, the last partial"},
      {9, 100, "100 columns: 16-bit rows not 16-byte aligned (scalar path)"},
      {3, 13, "13 columns: fewer than a warp"},
  };
  for (DType dt : {DType::BF16, DType::F16, DType::F32})
    for (const Case& c : cases)
      for (bool acc : {false, true}) check(dt, c, acc);
}

// Block-typed rows, read where they lie: rows of one block and of several, 32-value blocks in a row that is
// not a multiple of 256 values, and an x that is not 16-byte aligned (the scalar reads).
TEST(LinearDecode, GgmlBlockTypes) {
  MOE_REQUIRE_GPU();
  const Case cases[] = {{37, 256, "256 columns: one 256-value block per row"},
                        {19, 2304, "2304 columns: several passes of the lanes"}};
  for (DType dt : kBlockTypes)
    for (const Case& c : cases)
      for (bool acc : {false, true}) check(dt, c, acc);
  for (DType dt : {DType::Q8_0, DType::Q4_0, DType::MXFP4_GGML, DType::IQ4_NL}) check(dt, {11, 2880, "2880 columns"}, false);
  for (DType dt : kPackedIntBlocks) check(dt, {19, 2304, "2304 columns"}, true);
  // x one float past an aligned address.
  std::vector<float> w;
  const std::vector<uint8_t> bytes = random_matrix(DType::Q6_K, 5, 512, 21u, w);
  const std::vector<float> x = test::random_floats(513, 22u, 1.0f);
  DeviceVector<uint8_t> dw(bytes);
  DeviceVector<float> dx(x), dy{5};
  linear_decode(DeviceMatrix{dw.get(), DType::Q6_K, 5, 512}, dx.get() + 1, dy.get(), false, nullptr);
  const std::vector<float> y = dy.download();
  for (int r = 0; r < 5; ++r) {
    double ref = 0, mag = 0;
    for (int i = 0; i < 512; ++i) {
      const double p = double(w[size_t(r) * 512 + size_t(i)]) * x[size_t(i) + 1];
      ref += p;
      mag += std::fabs(p);
    }
    EXPECT_NEAR(y[size_t(r)], ref, 1e-5 * mag + 1e-6) << "row " << r;
  }
  // A row that is not whole blocks is refused.
  EXPECT_THROW(linear_decode(DeviceMatrix{dw.get(), DType::Q6_K, 1, 128}, dx.get(), dy.get(), false, nullptr),
               std::exception);
}

// The expansion prefill hands cuBLAS: each value is dequantize_row's (gguf-py's) rounded to BF16, bit for
// bit, for rows from the middle of the matrix.
TEST(Dequantize, RowsAsBf16AreTheCpuValuesRounded) {
  MOE_REQUIRE_GPU();
  for (DType dt : kBlockTypes) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    const int rows = 9, cols = 768;
    std::vector<float> w;
    const std::vector<uint8_t> bytes = random_matrix(dt, rows, cols, 31u, w);
    DeviceVector<uint8_t> dw(bytes);
    DeviceVector<uint16_t> out(std::vector<uint16_t>(size_t(5) * cols, 0xffff));
    dequantize_rows_16(DeviceMatrix{dw.get(), dt, rows, cols}, 3, 5, out.get(), nullptr);
    const std::vector<uint16_t> got = out.download();
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], f32_to_bf16(w[size_t(3) * cols + i])) << "row " << 3 + i / cols << " column " << i % cols;
  }
}

// Packed integers' blocks expand in their values' dtype: the BF16-scaled ones to BF16, the F16-scaled ones to F16
// (which holds them exactly; BF16 would round them), each value dequantize_row's bit for bit.
TEST(Dequantize, PackedIntBlocksExpandInTheirValuesDtype) {
  MOE_REQUIRE_GPU();
  for (DType dt : kPackedIntBlocks) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    const int rows = 6, cols = 256;
    std::vector<float> w;
    const std::vector<uint8_t> bytes = random_matrix(dt, rows, cols, 37u, w);
    DeviceVector<uint8_t> dw(bytes);
    DeviceVector<uint16_t> out(size_t(rows) * cols);
    dequantize_rows_16(DeviceMatrix{dw.get(), dt, rows, cols}, 0, rows, out.get(), nullptr);
    const std::vector<uint16_t> got = out.download();
    for (size_t i = 0; i < got.size(); ++i) {
      const float back = gpu_compute_dtype(dt) == DType::F16 ? f16_to_f32(got[i]) : bf16_to_f32(got[i]);
      ASSERT_EQ(std::memcmp(&back, &w[i], 4), 0) << "value " << i << ": " << back << ", CPU " << w[i];
    }
  }
}

// The reference rows of every block type (tests/data/ggml_quants: random blocks, and for the IQ1–IQ3 types
// rows that index every codebook row), decoded on the device: gguf-py's values rounded to BF16, bit for bit.
// On a GPU this is what checks the codebooks' device copies (ggml_decode.h's MOE_IQ_CODEBOOK).
TEST(Dequantize, ReferenceRowsAreGgufPyValuesInBf16) {
  MOE_REQUIRE_GPU();
  for (DType dt : kBlockTypes) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    const moe::test::GgmlReferenceRows ref = moe::test::ggml_reference_rows(dt);
    DeviceVector<uint8_t> dw(std::vector<uint8_t>(ref.blocks, ref.blocks + ref.rows * row_bytes(dt, ref.cols)));
    DeviceVector<uint16_t> out(size_t(ref.rows * ref.cols));
    dequantize_rows_16(DeviceMatrix{dw.get(), dt, ref.rows, ref.cols}, 0, ref.rows, out.get(), nullptr);
    const std::vector<uint16_t> got = out.download();
    for (int64_t i = 0; i < ref.rows * ref.cols; ++i)
      ASSERT_EQ(got[size_t(i)], f32_to_bf16(ref.values[i])) << "value " << i << ": gguf-py " << ref.values[i];
  }
}

// Blas::linear for several tokens on block-typed W: x rounded to BF16 times W expanded to BF16, through
// a scratch that holds 7 rows, so the product goes in chunks (the last one partial) that must land in
// the right rows of y; and y += for accumulate.
TEST(Blas, BlockTypedWeightsInChunks) {
  MOE_REQUIRE_GPU();
  DeviceAllocator allocator(0);
  const int T = 5, rows = 33, cols = 512;
  DeviceVector<uint16_t> gemm_in(size_t(T) * cols);
  const size_t scratch_bytes = size_t(7) * cols * 2 + 100;
  DeviceVector<uint8_t> scratch(scratch_bytes);
  Blas blas(allocator, nullptr, gemm_in.get(), size_t(T) * cols, scratch.get(), scratch_bytes);
  for (DType dt : {DType::Q4_K, DType::Q8_0, DType::IQ4_XS}) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    std::vector<float> w;
    const std::vector<uint8_t> bytes = random_matrix(dt, rows, cols, 41u, w);
    const std::vector<float> x = test::random_floats(size_t(T) * cols, 42u, 1.0f);
    const std::vector<float> y0 = test::random_floats(size_t(T) * rows, 43u, 1.0f);
    DeviceVector<uint8_t> dw(bytes);
    DeviceVector<float> dx(x);
    for (bool acc : {false, true}) {
      DeviceVector<float> dy(y0);
      blas.linear(DeviceMatrix{dw.get(), dt, rows, cols}, dx.get(), T, dy.get(), acc);
      const std::vector<float> y = dy.download();
      for (int t = 0; t < T; ++t)
        for (int r = 0; r < rows; ++r) {
          double ref = acc ? y0[size_t(t) * rows + size_t(r)] : 0.0, mag = std::fabs(ref);
          for (int i = 0; i < cols; ++i) {
            const double p = double(test::round_to(DType::BF16, w[size_t(r) * cols + size_t(i)])) *
                             double(test::round_to(DType::BF16, x[size_t(t) * cols + size_t(i)]));
            ref += p;
            mag += std::fabs(p);
          }
          ASSERT_NEAR(y[size_t(t) * rows + size_t(r)], ref, 1e-5 * mag + 1e-6) << "token " << t << " row " << r;
        }
    }
  }
  // No scratch: refused, not run on garbage.
  Blas bare(allocator, nullptr, gemm_in.get(), size_t(T) * cols);
  std::vector<float> w;
  const std::vector<uint8_t> bytes = random_matrix(DType::Q8_0, 4, 64, 44u, w);
  DeviceVector<uint8_t> dw(bytes);
  DeviceVector<float> dx(std::vector<float>(size_t(T) * 64, 1.0f)), dy{size_t(T) * 4};
  EXPECT_THROW(bare.linear(DeviceMatrix{dw.get(), DType::Q8_0, 4, 64}, dx.get(), T, dy.get()), std::exception);
}

// The o projection's decode form: y = W·x, then in the kernel's last block x_res += y + bias and
// out = RMSNorm(x_res) · w, ‖x_res‖₂ (norm.cuh's ResidualNorm), on the vectorised and the scalar path,
// twice on one counter (the second launch must find it back at 0, or no block would be last).
TEST(LinearDecode, ThenTheResidualAddAndNorm) {
  MOE_REQUIRE_GPU();
  for (DType dt : {DType::BF16, DType::F32})
    for (int rows : {2048, 1001})
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " rows " + std::to_string(rows) + (with_bias ? " bias" : ""));
        const int cols = 520;
        std::vector<float> w = test::random_floats(size_t(rows) * size_t(cols), 3u, 1.0f);
        const std::vector<uint8_t> bytes = test::stored_as(dt, w);
        const std::vector<float> x = test::random_floats(size_t(cols), 4u, 1.0f);
        std::vector<float> res = test::random_floats(size_t(rows), 5u, 2.0f);
        const std::vector<float> bias = with_bias ? test::random_floats(size_t(rows), 6u, 0.5f) : std::vector<float>{};
        const std::vector<float> norm_w = test::random_floats(size_t(rows), 8u, 1.5f);
        DeviceVector<uint8_t> dw(bytes);
        DeviceVector<float> dx(x), dy{size_t(rows)}, dres(res), dbias(with_bias ? bias : std::vector<float>{0.0f});
        DeviceVector<float> dnorm_w(norm_w), dout{size_t(rows)}, dl2(1);
        DeviceVector<unsigned> dcounter(std::vector<unsigned>{0u});
        ResidualNorm then;
        then.x = dres.get();
        then.bias = with_bias ? dbias.get() : nullptr;
        then.w = dnorm_w.get();
        then.out = dout.get();
        then.norm_out = dl2.get();
        then.eps = 1e-5f;
        then.counter = dcounter.get();
        const DeviceMatrix m{dw.get(), dt, rows, cols};
        DeviceVector<float> dplain{size_t(rows)};
        linear_decode(m, dx.get(), dplain.get(), false, nullptr);
        const std::vector<float> plain = dplain.download();
        for (int run = 0; run < 2; ++run) {
          SCOPED_TRACE("launch " + std::to_string(run + 1));
          linear_decode(m, dx.get(), dy.get(), false, nullptr, &then);
          EXPECT_EQ(dy.download(), plain) << "y differs from the product without the tail";
          res = test::expect_residual_norm(res, plain, bias, norm_w, then.eps, dres.download(), dout.download(),
                                           dl2.download()[0]);
          EXPECT_EQ(dcounter.download()[0], 0u);
        }
      }
}

}  // namespace
}  // namespace moe::cuda
