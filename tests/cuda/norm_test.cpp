// The row-wise kernels (engine/backend/cuda/kernels/norm.cuh) against scalar references written here
// with the CPU backend's semantics (cpu_backend.cpp: rmsnorm accumulates in double; silu and sigmoid
// in F32 with std::exp). Shapes cover the vectorised path (n % 4 == 0, aligned), the scalar fallback
// (odd n, or a pointer off 16-byte alignment), short rows (fewer elements than a warp) and the real
// model widths (2048 … 8192, ffn up to 14336).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/backend/cuda/kernels/norm.cuh"
#include "engine/common/dtype.h"
#include "tests/cuda/gpu_test_support.h"

namespace moe::cuda {
namespace {

using test::DeviceVector;
using test::random_floats;

// Host reference: y = w ⊙ x / sqrt(mean(x²) + eps), as the CPU backend computes it.
void ref_rmsnorm(float* x, const float* w, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float r = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * r * w[i];
}

float ref_silu(float z) { return z / (1.0f + std::exp(-z)); }
float ref_sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// The GPU sums squares in F32 by a tree (per-thread partial sums, then shuffles) where the reference
// sums in double: the relative error of the sum, hence of 1/sqrt(mean + eps), stays a few 1e-7 for
// rows up to 8192 of values of one sign-mixed scale; 2e-5 relative leaves a wide margin while still
// catching any wrong element, scale or row (those are O(1) errors).
constexpr float kNormRel = 2e-5f;

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rel, float abs_tol,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const float tol = abs_tol + rel * std::fabs(want[i]);
    if (!(std::fabs(got[i] - want[i]) <= tol)) {
      if (++bad <= 5) ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements outside tolerance";
}

// ---------------------------------------------------------------------------------------------------

TEST(NormKernels, EmbedRowsAllDtypes) {
  MOE_REQUIRE_GPU();
  const int vocab = 50;
  const std::vector<int32_t> tokens = {3, 0, 49, 3, 17, 22, 8};  // repeats, first and last rows
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    for (int64_t cols : {int64_t(2048), int64_t(1000), int64_t(1004), int64_t(1001), int64_t(7)}) {
      for (bool misaligned : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " cols " + std::to_string(cols) + (misaligned ? " misaligned x" : ""));
        const std::vector<float> src = random_floats(size_t(vocab * cols), 11u + uint32_t(cols), 3.0f);
        // The table in its stored dtype, and what each element reads back as in F32.
        std::vector<float> table(src.size());
        std::vector<uint16_t> table16(src.size());
        for (size_t i = 0; i < src.size(); ++i) {
          if (dt == DType::BF16) table16[i] = f32_to_bf16(src[i]), table[i] = bf16_to_f32(table16[i]);
          else if (dt == DType::F16) table16[i] = f32_to_f16(src[i]), table[i] = f16_to_f32(table16[i]);
          else table[i] = src[i];
        }
        DeviceVector<float> d32(dt == DType::F32 ? table : std::vector<float>{});
        DeviceVector<uint16_t> d16(dt == DType::F32 ? std::vector<uint16_t>{} : table16);
        DeviceMatrix m{dt == DType::F32 ? static_cast<const void*>(d32.get()) : static_cast<const void*>(d16.get()), dt,
                       vocab, cols};
        DeviceVector<int32_t> dtok(tokens);
        const int T = int(tokens.size());
        const size_t off = misaligned ? 1 : 0;  // x + 1: not 16-byte aligned, the scalar path
        DeviceVector<float> dx(std::vector<float>(size_t(T * cols) + off, -7.0f));
        embed_rows(m, dtok.get(), T, dx.get() + off, nullptr);
        const std::vector<float> got = dx.download();
        if (misaligned) { EXPECT_EQ(got[0], -7.0f) << "wrote before x"; }
        for (int t = 0; t < T; ++t)
          for (int64_t c = 0; c < cols; ++c)
            ASSERT_EQ(got[off + size_t(t * cols + c)], table[size_t(tokens[size_t(t)] * cols + c)])
                << "token " << t << " col " << c;  // conversions to F32 are exact
      }
    }
  }
}

TEST(NormKernels, RmsnormRows) {
  MOE_REQUIRE_GPU();
  const float eps = 1e-6f;
  for (int n : {2048, 4096, 7168, 8192, 1001, 64, 5, 1}) {
    for (int T : {1, 3, 17}) {
      for (bool in_place : {false, true}) {
        SCOPED_TRACE("n " + std::to_string(n) + " T " + std::to_string(T) + (in_place ? " in place" : ""));
        std::vector<float> x = random_floats(size_t(T) * n, 100u + uint32_t(n) + uint32_t(T), 4.0f);
        for (int t = 0; t < T; ++t)  // rows of different scales: the per-row scale must be per row
          for (int i = 0; i < n; ++i) x[size_t(t) * n + i] *= float(t + 1);
        const std::vector<float> w = random_floats(size_t(n), 7u, 2.0f);
        std::vector<float> want = x;
        for (int t = 0; t < T; ++t) ref_rmsnorm(&want[size_t(t) * n], w.data(), n, eps);
        DeviceVector<float> dx(x), dw(w), dout(size_t(T) * n);
        float* out = in_place ? dx.get() : dout.get();
        rmsnorm_rows(dx.get(), dw.get(), out, T, n, eps, nullptr);
        expect_close(in_place ? dx.download() : dout.download(), want, kNormRel, 1e-6f, "out");
        if (!in_place) { EXPECT_EQ(dx.download(), x) << "x changed"; }
      }
    }
  }
}

TEST(NormKernels, RmsnormRowsScalarPathWhenMisaligned) {
  MOE_REQUIRE_GPU();
  const int n = 2048, T = 2;
  std::vector<float> x = random_floats(size_t(T) * n + 1, 5u);
  const std::vector<float> w = random_floats(size_t(n), 6u);
  std::vector<float> want(x.begin() + 1, x.end());
  for (int t = 0; t < T; ++t) ref_rmsnorm(&want[size_t(t) * n], w.data(), n, 1e-5f);
  DeviceVector<float> dx(x), dw(w), dout(size_t(T) * n);
  rmsnorm_rows(dx.get() + 1, dw.get(), dout.get(), T, n, 1e-5f, nullptr);
  expect_close(dout.download(), want, kNormRel, 1e-6f, "out");
}

TEST(NormKernels, AddRmsnormRows) {
  MOE_REQUIRE_GPU();
  const float eps = 1e-6f;
  for (int n : {2048, 7168, 1001, 6}) {
    for (int T : {1, 4}) {
      for (bool with_bias : {false, true}) {
        for (bool with_norm : {true, false}) {
          SCOPED_TRACE("n " + std::to_string(n) + " T " + std::to_string(T) + (with_bias ? " bias" : "") +
                       (with_norm ? " norm" : " add only"));
          const std::vector<float> x = random_floats(size_t(T) * n, 1u + uint32_t(n), 3.0f);
          const std::vector<float> y = random_floats(size_t(T) * n, 2u + uint32_t(n), 3.0f);
          const std::vector<float> b = random_floats(size_t(n), 3u, 0.5f);
          const std::vector<float> w = random_floats(size_t(n), 4u, 2.0f);
          // x += y + bias (the CPU adds o_proj's output and its bias first), then out = RMSNorm(x)·w.
          std::vector<float> want_x = x;
          for (int t = 0; t < T; ++t)
            for (int i = 0; i < n; ++i) {
              const size_t j = size_t(t) * n + i;
              want_x[j] += y[j] + (with_bias ? b[size_t(i)] : 0.0f);
            }
          std::vector<float> want_out = want_x;
          for (int t = 0; t < T; ++t) ref_rmsnorm(&want_out[size_t(t) * n], w.data(), n, eps);
          // ‖x‖₂ of the updated rows (hidden.norm), every third float; the gaps stay untouched.
          constexpr int64_t kStride = 3;
          std::vector<float> want_l2(size_t(T) * kStride, -1.0f);
          for (int t = 0; t < T; ++t) {
            double ss = 0;
            for (int i = 0; i < n; ++i) ss += double(want_x[size_t(t) * n + i]) * want_x[size_t(t) * n + i];
            want_l2[size_t(t) * kStride] = float(std::sqrt(ss));
          }
          DeviceVector<float> dx(x), dy(y), db(b), dw(w), dl2(std::vector<float>(want_l2.size(), -1.0f));
          const std::vector<float> sentinel(size_t(T) * n, 123.0f);
          DeviceVector<float> dout(sentinel);
          add_rmsnorm_rows(dx.get(), dy.get(), with_bias ? db.get() : nullptr, with_norm ? dw.get() : nullptr,
                           dout.get(), T, n, eps, nullptr, dl2.get(), kStride);
          // The residual add is the same two F32 additions in the same order: exact.
          EXPECT_EQ(dx.download(), want_x);
          if (with_norm) expect_close(dout.download(), want_out, kNormRel, 1e-6f, "out");
          else EXPECT_EQ(dout.download(), sentinel) << "out written without a norm weight";
          // F32 tree sum against a double sum: a few 1e-7 relative (see kNormRel).
          expect_close(dl2.download(), want_l2, kNormRel, 0.0f, "norm");
          // Without norm_out (the call a step makes when no hook asks for the norms), including the add-only
          // early return: the same x and out.
          DeviceVector<float> dx2(x), dout2(sentinel);
          add_rmsnorm_rows(dx2.get(), dy.get(), with_bias ? db.get() : nullptr, with_norm ? dw.get() : nullptr,
                           dout2.get(), T, n, eps, nullptr);
          EXPECT_EQ(dx2.download(), want_x);
          EXPECT_EQ(dout2.download(), dout.download());
        }
      }
    }
  }
}

TEST(NormKernels, ConvertF32) {
  MOE_REQUIRE_GPU();
  // Rounding cases first: ties to even (both directions), values that round up into the next
  // binade and to infinity, subnormals, signed zero, infinities and NaN.
  std::vector<float> special;
  for (uint32_t u : {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x3f807fffu, 0x7f7fffffu, 0x00000001u, 0x80000001u,
                     0x00800000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0x3f7fffffu}) {
    float f;
    std::memcpy(&f, &u, 4);
    special.push_back(f);
  }
  for (float f : {65504.0f, 65519.0f, 65520.0f, 1e-7f, 5.9604645e-08f, 2.9802322e-08f, 3.0e-08f, -1e-5f})
    special.push_back(f);
  for (int64_t count : {int64_t(1), int64_t(3), int64_t(4), int64_t(22), int64_t(1027), int64_t(100003),
                        int64_t(9'000'001)}) {
    std::vector<float> x = random_floats(size_t(count), 77u + uint32_t(count), 100.0f);
    for (size_t i = 0; i < special.size() && i < x.size(); ++i) x[i] = special[i];
    DeviceVector<float> dx(x);
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
      for (size_t off : {size_t(0), size_t(1)}) {  // off 1: output not 8/16-byte aligned, the scalar path
        if (count > 200000 && off) continue;
        SCOPED_TRACE(std::string(dtype_name(dt)) + " count " + std::to_string(count) + " out offset " +
                     std::to_string(off));
        if (dt == DType::F32) {
          DeviceVector<float> dout(size_t(count) + off);
          convert_f32(dx.get(), dout.get() + off, dt, count, nullptr);
          const std::vector<float> got = dout.download();
          for (int64_t i = 0; i < count; ++i)
            ASSERT_EQ(bits(got[off + size_t(i)]), bits(x[size_t(i)])) << "element " << i;
        } else {
          DeviceVector<uint16_t> dout(std::vector<uint16_t>(size_t(count) + off + 1, 0xabcdu));
          convert_f32(dx.get(), dout.get() + off, dt, count, nullptr);
          const std::vector<uint16_t> got = dout.download();
          if (off) { EXPECT_EQ(got[0], 0xabcdu) << "wrote before out"; }
          EXPECT_EQ(got[off + size_t(count)], 0xabcdu) << "wrote past count";
          for (int64_t i = 0; i < count; ++i) {
            const uint16_t g = got[off + size_t(i)];
            const float xi = x[size_t(i)];
            if (dt == DType::BF16) {
              ASSERT_EQ(g, f32_to_bf16(xi)) << "element " << i << " (" << xi << ")";  // bit-exact RNE
            } else if (std::isnan(xi)) {
              ASSERT_TRUE(std::isnan(f16_to_f32(g))) << "element " << i;  // NaN payloads may differ
            } else {
              ASSERT_EQ(g, f32_to_f16(xi)) << "element " << i << " (" << xi << ")";
            }
          }
        }
      }
    }
  }
}

TEST(NormKernels, SiluMulRows) {
  MOE_REQUIRE_GPU();
  for (int ffn : {768, 1408, 14336, 1001, 3}) {
    for (int T : {1, 5, 33}) {
      SCOPED_TRACE("ffn " + std::to_string(ffn) + " T " + std::to_string(T));
      const std::vector<float> gu = random_floats(size_t(T) * 2 * ffn, 9u + uint32_t(ffn) + uint32_t(T), 12.0f);
      std::vector<float> want(size_t(T) * ffn);
      for (int t = 0; t < T; ++t)
        for (int i = 0; i < ffn; ++i)
          want[size_t(t) * ffn + i] = ref_silu(gu[size_t(t) * 2 * ffn + i]) * gu[size_t(t) * 2 * ffn + ffn + i];
      DeviceVector<float> dgu(gu), dout(want.size());
      silu_mul_rows(dgu.get(), T, ffn, dout.get(), nullptr);
      // expf on the device is within 2 ulp (the host's within 1); through the division and product
      // that is a few ulp of the result: 1e-5 relative, with an absolute floor for results near 0.
      expect_close(dout.download(), want, 1e-5f, 1e-6f, "out");
    }
  }
}

TEST(NormKernels, AddGatedRows) {
  MOE_REQUIRE_GPU();
  for (int n : {2048, 7168, 1001}) {
    for (int T : {1, 6}) {
      for (bool gated : {false, true}) {
        for (bool record : {false, true}) {
          SCOPED_TRACE("n " + std::to_string(n) + " T " + std::to_string(T) + (gated ? " gated" : "") +
                       (record ? " gate_out" : ""));
          const std::vector<float> y = random_floats(size_t(T) * n, 21u + uint32_t(n), 2.0f);
          const std::vector<float> ye = random_floats(size_t(T) * n, 22u + uint32_t(n), 2.0f);
          const std::vector<float> z = random_floats(size_t(T), 23u, 6.0f);
          const int64_t gstride = 3;
          std::vector<float> want = y, want_gate(size_t(T) * gstride, -5.0f);
          for (int t = 0; t < T; ++t) {
            const float g = gated ? ref_sigmoid(z[size_t(t)]) : 1.0f;
            if (record) want_gate[size_t(t) * gstride] = g;
            for (int i = 0; i < n; ++i) want[size_t(t) * n + i] += g * ye[size_t(t) * n + i];
          }
          DeviceVector<float> dy(y), dye(ye), dz(z), dg(std::vector<float>(want_gate.size(), -5.0f));
          add_gated_rows(dy.get(), dye.get(), gated ? dz.get() : nullptr, T, n, record ? dg.get() : nullptr, gstride,
                         nullptr);
          // The device may fuse g·ye + y into one FMA (the host rounds the product first): half an ulp
          // of |g·ye| apart, plus the sigmoid's few ulp, well under 1e-6 of |y| + |ye|.
          const std::vector<float> got = dy.download();
          int bad = 0;
          for (size_t i = 0; i < got.size(); ++i) {
            const float tol = 1e-6f * (std::fabs(y[i]) + std::fabs(ye[i])) + 1e-7f;
            if (!(std::fabs(got[i] - want[i]) <= tol) && ++bad <= 5)
              ADD_FAILURE() << "y[" << i << "]: got " << got[i] << ", want " << want[i];
          }
          EXPECT_EQ(bad, 0);
          expect_close(dg.download(), want_gate, 1e-6f, 0.0f, "gate_out");  // untouched gaps are exact
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe::cuda
