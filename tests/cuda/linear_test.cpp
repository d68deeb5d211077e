// The decode matrix-vector product (engine/backend/cuda/kernels/linear.cu) against a double-precision
// reference: y = W·x (and y += W·x) with W in BF16, F16 or F32 and x in F32, on the vectorised path
// (16-byte aligned rows, several chunks per lane) and the scalar one (rows that are not); and the same
// product finishing with a residual add + RMSNorm in its last block.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend/cuda/kernels/linear.cuh"
#include "engine/common/dtype.h"
#include "tests/cuda/gpu_test_support.h"

namespace moe::cuda {
namespace {

using test::DeviceVector;

struct Case {
  int rows, cols;
  const char* what;
};

// Each row is checked against the bound of an F32 dot product accumulated in any order: a relative
// error of n·2^-24 of Σ|w·x| at worst; 1e-5 of it is far above what F32 accumulation over these lengths
// gives (a few 1e-7 typically) and far below a missing, repeated or misplaced term.
void check(DType dt, const Case& c, bool accumulate) {
  SCOPED_TRACE(std::string(dtype_name(dt)) + " " + c.what + (accumulate ? ", accumulate" : ""));
  std::vector<float> w = test::random_floats(size_t(c.rows) * size_t(c.cols), 11u + uint32_t(c.cols), 1.0f);
  const std::vector<uint8_t> bytes = test::stored_as(dt, w);
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
