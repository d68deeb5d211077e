// matmul / matmul_rows / dot_f32 / axpy_f32 against a double-precision reference computed on the same
// (already rounded) weights, on both the SIMD and the scalar path; MXFP4 weights against their values
// decoded here from the format's definition.
#include "engine/backend/cpu/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/memory_bandwidth.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/dtype.h"
#include "tests/support/matmul_reference.h"
#include "engine/common/mxfp4.h"

namespace moe::cpu {
namespace {

using test::ScopedForceScalar;

// A weight matrix in one storage type, plus its exact f32 values (what the kernels must see).
struct TestMatrix {
  DType dtype;
  int64_t rows, cols;
  std::vector<uint16_t> half;  // F16 / BF16 storage
  std::vector<float> f32;      // F32 storage
  std::vector<float> exact;    // decoded values
  std::vector<uint8_t> blocks, scales;  // MXFP4 storage: rows · row_step stored rows
  int64_t row_step = 1;

  MatrixRef ref() const {
    if (dtype == DType::MXFP4) return MatrixRef{blocks.data(), dtype, rows, cols, scales.data(), row_step};
    return MatrixRef{dtype == DType::F32 ? static_cast<const void*>(f32.data()) : half.data(), dtype, rows, cols};
  }
};

TestMatrix make_matrix(DType dt, int64_t rows, int64_t cols, uint32_t seed) {
  TestMatrix m{dt, rows, cols, {}, {}, {}, {}, {}, 1};
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t n = size_t(rows * cols);
  m.exact.resize(n);
  if (dt == DType::F32) m.f32.resize(n);
  else m.half.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    if (dt == DType::F32) {
      m.f32[i] = v;
      m.exact[i] = v;
    } else if (dt == DType::BF16) {
      m.half[i] = f32_to_bf16(v);
      m.exact[i] = bf16_to_f32(m.half[i]);
    } else {
      m.half[i] = f32_to_f16(v);
      m.exact[i] = f16_to_f32(m.half[i]);
    }
  }
  return m;
}

// An MXFP4 value by the OCP definition, written out here rather than taken from the engine: E2M1 code
// (sign in bit 3, then two exponent bits and one mantissa bit) times 2^(scale − 127).
double mxfp4_value(uint8_t code, uint8_t scale) {
  const int e = (code >> 1) & 3, m = code & 1;
  const double magnitude = e == 0 ? 0.5 * m : std::ldexp(1.0 + 0.5 * m, e - 1);
  return std::ldexp(code & 8 ? -magnitude : magnitude, int(scale) - 127);
}

// A [rows, cols] MXFP4 matrix whose rows lie row_step stored rows apart, as GPT-OSS's gate and up do.
// Codes are random; scales random in [scale_lo, scale_hi]. The stored rows between this matrix's are
// filled with the largest codes and scales, so a kernel that reads them is far off.
TestMatrix make_mxfp4(int64_t rows, int64_t cols, int64_t row_step, uint32_t seed, int scale_lo = 118, int scale_hi = 130) {
  TestMatrix m{DType::MXFP4, rows, cols, {}, {}, {}, {}, {}, row_step};
  std::mt19937 rng(seed);
  const int64_t nb = cols / 32, stored = rows * row_step;
  m.blocks.assign(size_t(stored * nb * 16), 0x77);  // 6.0, 6.0
  m.scales.assign(size_t(stored * nb), 200);
  m.exact.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const size_t block = size_t((r * row_step) * nb + b);
      m.scales[block] = uint8_t(scale_lo + int(rng() % uint32_t(scale_hi - scale_lo + 1)));
      for (int j = 0; j < 16; ++j) {
        const uint8_t byte = uint8_t(rng());
        m.blocks[block * 16 + size_t(j)] = byte;
        // The low nibble holds the even element.
        m.exact[size_t(r * cols + b * 32 + 2 * j)] = float(mxfp4_value(byte & 15, m.scales[block]));
        m.exact[size_t(r * cols + b * 32 + 2 * j + 1)] = float(mxfp4_value(byte >> 4, m.scales[block]));
      }
    }
  }
  return m;
}

using test::make_x;
double max_rel_error(const TestMatrix& m, const std::vector<float>& x, int64_t T, const std::vector<float>& y) {
  return test::max_rel_error(m.exact, m.rows, m.cols, x, T, y);
}

const DType kDTypes[] = {DType::F32, DType::F16, DType::BF16};
// 4: the direct path's 2-row kernel; 5 to 32: in runs of up to 4 tokens (5 = 3 + 2, 17 = 4 + 4 + 3 + 3 + 3); 33: the
// panels.
const int64_t kTokens[] = {1, 2, 3, 4, 5, 8, 17, 32, 33};
const int64_t kCols[] = {1, 7, 61, 64, 1000};

std::string label(DType dt, int64_t T, int64_t rows, int64_t cols, const char* path) {
  return std::string(dtype_name(dt)) + " T=" + std::to_string(T) + " rows=" + std::to_string(rows) +
         " cols=" + std::to_string(cols) + " path=" + path;
}

void check_all_shapes(bool scalar) {
  ScopedForceScalar force(scalar);
  for (DType dt : kDTypes) {
    for (int64_t cols : kCols) {
      for (int64_t rows : {int64_t(1), int64_t(5), int64_t(37)}) {
        const TestMatrix m = make_matrix(dt, rows, cols, uint32_t(rows * 1000 + cols));
        for (int64_t T : kTokens) {
          const auto x = make_x(T, cols, uint32_t(T * 7 + cols));
          std::vector<float> y(size_t(T * rows), std::nanf(""));
          matmul_rows(m.ref(), x.data(), T, y.data(), 0, rows);
          EXPECT_LE(max_rel_error(m, x, T, y), 1e-5) << label(dt, T, rows, cols, simd_path());
        }
      }
    }
  }
}

TEST(Matmul, MatchesReferenceSimd) {
  if (!simd_supported()) GTEST_SKIP() << "no AVX2+FMA+F16C on this CPU";
  check_all_shapes(false);
}

TEST(Matmul, MatchesReferenceScalar) { check_all_shapes(true); }

TEST(Matmul, SimdPathName) {
  {
    ScopedForceScalar force(true);
    EXPECT_STREQ(simd_path(), "scalar");
  }
  {
    ScopedForceScalar force(false);
    EXPECT_STREQ(simd_path(), simd_supported() ? "avx2+fma+f16c" : "scalar");
  }
}

TEST(Matmul, ScalarAndSimdAgree) {
  if (!simd_supported()) GTEST_SKIP() << "no AVX2+FMA+F16C on this CPU";
  for (DType dt : kDTypes) {
    for (int64_t cols : {int64_t(61), int64_t(64), int64_t(1000), int64_t(1029)}) {
      const int64_t rows = 37;
      const TestMatrix m = make_matrix(dt, rows, cols, uint32_t(cols));
      for (int64_t T : {int64_t(1), int64_t(2), int64_t(3), int64_t(5), int64_t(17), int64_t(50), int64_t(193)}) {
        const auto x = make_x(T, cols, uint32_t(T + 11));
        std::vector<float> ys(size_t(T * rows)), yv(size_t(T * rows));
        {
          ScopedForceScalar force(true);
          matmul_rows(m.ref(), x.data(), T, ys.data(), 0, rows);
        }
        {
          ScopedForceScalar force(false);
          matmul_rows(m.ref(), x.data(), T, yv.data(), 0, rows);
        }
        // The two paths sum in different orders: agree to within 2e-5 of Σ|w·x| per output.
        for (int64_t t = 0; t < T; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            double mag = 0;
            for (int64_t c = 0; c < cols; ++c)
              mag += std::fabs(double(m.exact[size_t(r * cols + c)]) * double(x[size_t(t * cols + c)]));
            const size_t i = size_t(t * rows + r);
            ASSERT_LE(std::fabs(double(ys[i]) - double(yv[i])), 2e-5 * mag)
                << label(dt, T, rows, cols, "both") << " t=" << t << " r=" << r;
          }
        }
        // Both against the reference as well.
        EXPECT_LE(max_rel_error(m, x, T, ys), 1e-5) << label(dt, T, rows, cols, "scalar");
        EXPECT_LE(max_rel_error(m, x, T, yv), 1e-5) << label(dt, T, rows, cols, "simd");
      }
    }
  }
}

// Every half value decodes like moe::f16_to_f32 (one column, x = 1, one row per bit pattern).
TEST(Matmul, F16DecodesEveryBitPattern) {
  std::vector<uint16_t> w(65536);
  for (size_t i = 0; i < w.size(); ++i) w[i] = uint16_t(i);
  const MatrixRef W{w.data(), DType::F16, 65536, 1};
  const float x = 1.0f;
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    std::vector<float> y(65536);
    matmul_rows(W, &x, 1, y.data(), 0, 65536);
    for (size_t i = 0; i < w.size(); ++i) {
      const float want = f16_to_f32(uint16_t(i));
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(y[i])) << "bits " << i << " path " << simd_path();
      } else {
        ASSERT_EQ(y[i], want) << "bits " << i << " path " << simd_path();
      }
    }
  }
}

// Large magnitudes and long rows: still within tolerance (tails of 1..7 columns after 8-wide blocks).
TEST(Matmul, LongRowsAndTails) {
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    for (DType dt : kDTypes) {
      for (int64_t cols : {int64_t(511), int64_t(512), int64_t(513), int64_t(1031), int64_t(4099)}) {
        const TestMatrix m = make_matrix(dt, 9, cols, uint32_t(cols + 3));
        for (int64_t T : {int64_t(1), int64_t(4), int64_t(49), int64_t(100)}) {  // 100: several token tiles
          const auto x = make_x(T, cols, uint32_t(cols * 5 + T));
          std::vector<float> y(size_t(T * 9));
          matmul_rows(m.ref(), x.data(), T, y.data(), 0, 9);
          EXPECT_LE(max_rel_error(m, x, T, y), 1e-5) << label(dt, T, 9, cols, simd_path());
        }
      }
    }
  }
}

// A row range writes exactly its rows (for every token) and nothing else.
TEST(Matmul, RowRangeWritesOnlyItsRows) {
  const float kSentinel = -12345.0f;
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    for (DType dt : kDTypes) {
      const int64_t rows = 37, cols = 61;
      const TestMatrix m = make_matrix(dt, rows, cols, 99);
      for (int64_t T : kTokens) {
        const auto x = make_x(T, cols, uint32_t(T));
        std::vector<float> full(size_t(T * rows));
        matmul_rows(m.ref(), x.data(), T, full.data(), 0, rows);
        const std::pair<int64_t, int64_t> ranges[] = {{0, 0}, {0, 1}, {3, 4}, {5, 13}, {1, 36}, {30, 37}, {36, 37}};
        for (auto [b, e] : ranges) {
          std::vector<float> y(size_t(T * rows), kSentinel);
          matmul_rows(m.ref(), x.data(), T, y.data(), b, e);
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              const float v = y[size_t(t * rows + r)];
              if (r >= b && r < e) {
                ASSERT_EQ(v, full[size_t(t * rows + r)]) << label(dt, T, rows, cols, simd_path()) << " r=" << r;
              } else {
                ASSERT_EQ(v, kSentinel) << label(dt, T, rows, cols, simd_path()) << " wrote row " << r
                                        << " outside [" << b << ", " << e << ")";
              }
            }
          }
        }
      }
    }
  }
}

TEST(Matmul, PooledMatchesSingleThread) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (DType dt : kDTypes) {
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 61}, {37, 1000}, {300, 257}, {1024, 64}, {8, 64}}) {
        const TestMatrix m = make_matrix(dt, rows, cols, uint32_t(rows + cols));
        for (int64_t T : kTokens) {
          const auto x = make_x(T, cols, uint32_t(T + rows));
          std::vector<float> ref(size_t(T * rows)), y(size_t(T * rows), std::nanf(""));
          matmul_rows(m.ref(), x.data(), T, ref.data(), 0, rows);
          matmul(pool, m.ref(), x.data(), T, y.data());
          // Same kernels on the same row groups → bit-identical.
          for (size_t i = 0; i < y.size(); ++i)
            ASSERT_EQ(y[i], ref[i]) << label(dt, T, rows, cols, simd_path()) << " threads=" << threads << " i=" << i;
          EXPECT_LE(max_rel_error(m, x, T, y), 1e-5) << label(dt, T, rows, cols, simd_path());
        }
      }
    }
  }
}

TEST(Matmul, ZeroSizes) {
  ThreadPool pool(2);
  const TestMatrix m = make_matrix(DType::BF16, 5, 8, 1);
  const auto x = make_x(3, 8, 2);
  std::vector<float> y(15, 7.0f);
  matmul(pool, m.ref(), x.data(), 0, y.data());  // T = 0: nothing written
  for (float v : y) EXPECT_EQ(v, 7.0f);
  matmul_rows(m.ref(), x.data(), 3, y.data(), 2, 2);  // empty range
  for (float v : y) EXPECT_EQ(v, 7.0f);
  // cols = 0: every output is an empty sum.
  const MatrixRef empty{m.half.data(), DType::BF16, 5, 0};
  matmul(pool, empty, x.data(), 3, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(Matmul, RejectsBadInput) {
  const TestMatrix m = make_matrix(DType::F32, 4, 4, 1);
  const auto x = make_x(1, 4, 1);
  std::vector<float> y(4);
  MatrixRef bad = m.ref();
  bad.dtype = DType::I32;
  EXPECT_THROW(matmul_rows(bad, x.data(), 1, y.data(), 0, 4), std::invalid_argument);
  EXPECT_THROW(matmul_rows(m.ref(), x.data(), 1, y.data(), 0, 5), std::invalid_argument);
  EXPECT_THROW(matmul_rows(m.ref(), x.data(), 1, y.data(), 3, 2), std::invalid_argument);
  EXPECT_THROW(matmul_rows(m.ref(), x.data(), 1, y.data(), -1, 2), std::invalid_argument);
}

TEST(Matmul, DotAndAxpy) {
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    for (int64_t n : {0, 1, 7, 8, 9, 31, 32, 33, 100, 1000, 4097}) {
      const auto a = make_x(1, n, uint32_t(n + 1));
      const auto b = make_x(1, n, uint32_t(n + 2));
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += double(a[size_t(i)]) * double(b[size_t(i)]);
        mag += std::fabs(double(a[size_t(i)]) * double(b[size_t(i)]));
      }
      EXPECT_LE(std::fabs(dot_f32(a.data(), b.data(), n) - ref), 1e-5 * std::max(mag, 1e-30) + 1e-30)
          << "n=" << n << " " << simd_path();

      std::vector<float> y = b;
      y.push_back(42.0f);  // guard element past the end
      axpy_f32(0.75f, a.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const float want = b[size_t(i)] + 0.75f * a[size_t(i)];
        ASSERT_NEAR(y[size_t(i)], want, 1e-6f * std::max(1.0f, std::fabs(want))) << "n=" << n << " i=" << i;
      }
      EXPECT_EQ(y[size_t(n)], 42.0f);
    }
  }
}

// dot_f32_f64 keeps double precision: against a sequential double loop only the order of the
// additions differs (the products of two floats are exact in double).
TEST(Matmul, DotInDouble) {
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    for (int64_t n : {0, 1, 3, 4, 5, 15, 16, 17, 100, 1000, 4097}) {
      const auto a = make_x(1, n, uint32_t(n + 3));
      const auto b = make_x(1, n, uint32_t(n + 4));
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += double(a[size_t(i)]) * double(b[size_t(i)]);
        mag += std::fabs(double(a[size_t(i)]) * double(b[size_t(i)]));
      }
      EXPECT_LE(std::fabs(dot_f32_f64(a.data(), b.data(), n) - ref), 1e-13 * mag + 1e-300) << "n=" << n << " " << simd_path();
    }
  }
}

// topk_sum_f32 gives exactly the sum of the k largest added in ascending order, on both paths: rows
// in random, ascending (every value a new candidate) and descending order, with ties, every k from 1
// to past the 8 that one register holds, and lengths around the 8-value blocks.
TEST(Matmul, TopKSum) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    for (int64_t n : {1, 2, 7, 8, 9, 15, 16, 17, 40, 383, 1000}) {
      for (int order = 0; order < 4; ++order) {
        std::vector<float> v(static_cast<size_t>(n));
        for (auto& x : v) x = order == 3 ? float(rng() % 5) : u(rng);  // order 3: many ties
        if (order == 1) std::sort(v.begin(), v.end());
        if (order == 2) std::sort(v.rbegin(), v.rend());
        std::vector<float> sorted = v;
        std::sort(sorted.rbegin(), sorted.rend());
        for (int k : {1, 2, 3, 7, 8, 9, 12}) {
          if (k > n) continue;
          float want = 0;
          for (int j = k - 1; j >= 0; --j) want += sorted[size_t(j)];
          std::vector<float> scratch(size_t(k) + 1, -1.0f);
          EXPECT_EQ(topk_sum_f32(v.data(), n, k, scratch.data()), want)
              << "n=" << n << " k=" << k << " order=" << order << " " << simd_path();
          EXPECT_EQ(scratch[size_t(k)], -1.0f) << "wrote past k scratch values";
        }
      }
    }
    float one = 1.0f, s = 0;
    EXPECT_THROW(topk_sum_f32(&one, 1, 0, &s), std::invalid_argument);
    EXPECT_THROW(topk_sum_f32(&one, 1, 2, &s), std::invalid_argument);
  }
}

// Every FP4 code under every scale byte whose values are finite in F32 (255 is NaN in E8M0, and 6·2^126
// overflows) decodes exactly, subnormals included: one-hot x picks out each weight, through the decode
// GEMV (T = 1), through the few-token kernel (2 to 16 tokens at a time, x = e_c … e_c+T−1; from 9 in two runs) and
// through the expanded panels (T = cols, x the identity); mxfp4_dequantize as well. Rows of 8 blocks, so the scales
// also go through the decoders that take 8 at a time.
TEST(Mxfp4, DecodesEveryCodeAndScale) {
  const int64_t rows = 32, cols = 256, blocks = cols / 32;
  TestMatrix m = make_mxfp4(rows, cols, 1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < blocks; ++k) {
      const int64_t block = r * blocks + k;
      const auto scale = uint8_t(std::min<int64_t>(block, 250));
      m.scales[size_t(block)] = scale;
      for (int j = 0; j < 16; ++j) {
        m.blocks[size_t(block * 16 + j)] = uint8_t(j | ((15 - j) << 4));  // every code, low and high nibble
        m.exact[size_t(r * cols + k * 32 + 2 * j)] = float(mxfp4_value(uint8_t(j), scale));
        m.exact[size_t(r * cols + k * 32 + 2 * j + 1)] = float(mxfp4_value(uint8_t(15 - j), scale));
      }
    }
  }
  std::vector<float> identity(size_t(cols * cols), 0.0f);
  for (int64_t c = 0; c < cols; ++c) identity[size_t(c * cols + c)] = 1.0f;
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    mxfp4_dequantize(&m.blocks[size_t(r * blocks * 16)], &m.scales[size_t(r * blocks)], cols, row.data());
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(row[size_t(c)], m.exact[size_t(r * cols + c)]) << "row " << r << " column " << c;
  }
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    std::vector<float> y(size_t(cols * rows));
    matmul_rows(m.ref(), identity.data(), cols, y.data(), 0, rows);
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r = 0; r < rows; ++r)
        ASSERT_EQ(y[size_t(c * rows + r)], m.exact[size_t(r * cols + c)]) << "T=" << cols << " row " << r << " column " << c << " " << simd_path();
    for (int64_t c = 0; c < cols; ++c) {
      matmul_rows(m.ref(), &identity[size_t(c * cols)], 1, y.data(), 0, rows);
      for (int64_t r = 0; r < rows; ++r)
        ASSERT_EQ(y[size_t(r)], m.exact[size_t(r * cols + c)]) << "T=1 row " << r << " column " << c << " " << simd_path();
    }
    for (int64_t T = 2; T <= (scalar ? 2 : 16); ++T)  // (the scalar path takes every T alike)
      for (int64_t c0 = 0; c0 < cols; c0 += T) {
        const int64_t n = std::min(T, cols - c0);
        matmul_rows(m.ref(), &identity[size_t(c0 * cols)], n, y.data(), 0, rows);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(y[size_t(t * rows + r)], m.exact[size_t(r * cols + c0 + t)])
                << "T=" << n << " row " << r << " column " << c0 + t << " " << simd_path();
      }
  }
}

// Against double on the decoded values: rows that do and do not fill the 4 streams, widths of one
// block, of GPT-OSS (90 blocks) and across the 512-column panels, interleaved rows, every token path.
TEST(Mxfp4, MatchesReference) {
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    for (int64_t row_step : {1, 2}) {
      for (int64_t cols : {32, 64, 544, 2880}) {
        for (int64_t rows : {1, 5, 37}) {
          const TestMatrix m = make_mxfp4(rows, cols, row_step, uint32_t(rows * 1000 + cols + row_step));
          for (int64_t T : {1, 2, 3, 5, 8, 9, 16, 17, 100}) {  // 2 to 8: one pass; 9 to 16: two runs; then panels
            const auto x = make_x(T, cols, uint32_t(T * 7 + cols));
            std::vector<float> y(size_t(T * rows), std::nanf(""));
            matmul_rows(m.ref(), x.data(), T, y.data(), 0, rows);
            EXPECT_LE(max_rel_error(m, x, T, y), 1e-5)
                << label(DType::MXFP4, T, rows, cols, simd_path()) << " row_step=" << row_step;
          }
        }
      }
    }
  }
}

// Row ranges write exactly their rows, and the pool splits the rows without changing a bit.
TEST(Mxfp4, RowRangesAndThreads) {
  const float kSentinel = -12345.0f;
  const int64_t rows = 37, cols = 96;
  const TestMatrix m = make_mxfp4(rows, cols, 2, 5);
  for (bool scalar : {true, false}) {
    if (!scalar && !simd_supported()) continue;
    ScopedForceScalar force(scalar);
    for (int64_t T : {1, 3, 11, 17}) {
      const auto x = make_x(T, cols, uint32_t(T));
      std::vector<float> full(size_t(T * rows));
      matmul_rows(m.ref(), x.data(), T, full.data(), 0, rows);
      for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 1}, {3, 4}, {5, 13}, {1, 36}, {36, 37}}) {
        std::vector<float> y(size_t(T * rows), kSentinel);
        matmul_rows(m.ref(), x.data(), T, y.data(), b, e);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(y[size_t(t * rows + r)], r >= b && r < e ? full[size_t(t * rows + r)] : kSentinel)
                << "T=" << T << " r=" << r << " range [" << b << ", " << e << ") " << simd_path();
      }
      for (int threads : {2, 3}) {
        ThreadPool pool(threads);
        std::vector<float> y(size_t(T * rows));
        matmul(pool, m.ref(), x.data(), T, y.data());
        EXPECT_EQ(y, full) << "T=" << T << " threads=" << threads << " " << simd_path();
      }
    }
  }
}

TEST(Mxfp4, RejectsMatricesItCannotRead) {
  const TestMatrix m = make_mxfp4(4, 64, 1, 1);
  const auto x = make_x(1, 64, 1);
  std::vector<float> y(4);
  MatrixRef bad = m.ref();
  bad.cols = 48;  // not whole blocks
  EXPECT_THROW(matmul_rows(bad, x.data(), 1, y.data(), 0, 4), std::invalid_argument);
  bad = m.ref();
  bad.scales = nullptr;
  EXPECT_THROW(matmul_rows(bad, x.data(), 1, y.data(), 0, 4), std::invalid_argument);
  bad = m.ref();
  bad.row_step = 0;
  EXPECT_THROW(matmul_rows(bad, x.data(), 1, y.data(), 0, 4), std::invalid_argument);
  EXPECT_EQ(m.ref().rows, 4);
  EXPECT_EQ(matrix_bytes(DType::MXFP4, 4, 64), size_t(4 * 2 * 17));
}

// The STREAM-style measurement runs and reports sane numbers (small buffer: this is not a benchmark).
TEST(MemoryBandwidth, ReportsPositiveNumbers) {
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    const BandwidthResult r = measure_memory_bandwidth(pool, size_t(8) << 20, 2);
    EXPECT_EQ(r.threads, threads);
    EXPECT_EQ(r.buffer_bytes, size_t(8) << 20);
    EXPECT_GT(r.read_gbps, 0.1);
    EXPECT_GT(r.triad_gbps, 0.1);
    EXPECT_LT(r.read_gbps, 1e5);
    EXPECT_LT(r.triad_gbps, 1e5);
  }
}

}  // namespace
}  // namespace moe::cpu
