#pragma once
// What the matmul tests share: a scope that forces the scalar path, random activations, and the error of
// y = W·x against the product in double, relative to the magnitude of the products summed (the natural scale
// of a floating-point dot product's rounding; a plain |ref| can be ~0 by cancellation).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/backend/cpu/matmul.h"

namespace moe::test {

// Forces the scalar path (or lets the CPU choose) for its lifetime, then restores the choice before it.
class ScopedForceScalar {
 public:
  explicit ScopedForceScalar(bool force) : saved_(cpu::force_scalar()) { cpu::set_force_scalar(force); }
  ~ScopedForceScalar() { cpu::set_force_scalar(saved_); }

 private:
  bool saved_;
};

inline std::vector<float> make_x(int64_t T, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> x(size_t(T * cols));
  for (auto& v : x) v = dist(rng);
  return x;
}

// exact: the [rows, cols] weights' values; x: [T, cols]; y: [T, rows]. Largest |y − ref| / Σ|w·x|.
inline double max_rel_error(const std::vector<float>& exact, int64_t rows, int64_t cols, const std::vector<float>& x,
                            int64_t T, const std::vector<float>& y) {
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double p = double(exact[size_t(r * cols + c)]) * double(x[size_t(t * cols + c)]);
        ref += p;
        mag += std::fabs(p);
      }
      const double err = std::fabs(double(y[size_t(t * rows + r)]) - ref);
      worst = std::max(worst, mag > 0 ? err / mag : err);
    }
  }
  return worst;
}

}  // namespace moe::test
