#pragma once
// Shared by the CUDA tests: skip (visibly, with the reason) where no GPU works, and small helpers for
// device buffers and comparisons against the CPU reference.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_probe.h"
#include "engine/common/dtype.h"

namespace moe::cuda::test {

// Empty when a GPU can run the test; otherwise why not.
inline const std::string& why_no_gpu() {
  static const std::string why = [] {
    const Probe p = probe_devices();
    return p.devices.empty() ? p.problem : std::string();
  }();
  return why;
}

#define MOE_REQUIRE_GPU()                                                              \
  do {                                                                                 \
    if (!::moe::cuda::test::why_no_gpu().empty())                                      \
      GTEST_SKIP() << "no GPU here (" << ::moe::cuda::test::why_no_gpu() << "): CUDA test not run"; \
  } while (0)

// A device copy of a host vector, freed with the object.
template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(size_t n) : n_(n) { MOE_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(1, n) * sizeof(T))); }
  explicit DeviceVector(const std::vector<T>& host) : DeviceVector(host.size()) { upload(host); }
  ~DeviceVector() { cudaFree(p_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  void upload(const std::vector<T>& host) {
    MOE_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> host(n_);
    MOE_CUDA_CHECK(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  T* get() { return p_; }
  const T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Uniform values in [−scale, scale], reproducible.
inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// v rounded to a 16-bit dtype (to nearest even), or v itself for F32.
inline float round_to(DType dtype, float v) {
  if (dtype == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  if (dtype == DType::F16) return f16_to_f32(f32_to_f16(v));
  return v;
}

// The bytes of v stored in `dtype` (BF16, F16 or F32); v is rounded in place to what they hold.
inline std::vector<uint8_t> stored_as(DType dtype, std::vector<float>& v) {
  const size_t es = dtype_size(dtype);
  std::vector<uint8_t> bytes(v.size() * es);
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::BF16) {
      const uint16_t b = f32_to_bf16(v[i]);
      v[i] = bf16_to_f32(b);
      std::memcpy(&bytes[2 * i], &b, 2);
    } else if (dtype == DType::F16) {
      const uint16_t b = f32_to_f16(v[i]);
      v[i] = f16_to_f32(b);
      std::memcpy(&bytes[2 * i], &b, 2);
    } else {
      std::memcpy(&bytes[4 * i], &v[i], 4);
    }
  }
  return bytes;
}

// Normalised mean squared error Σ(a − b)² / Σ b² (b: the reference).
inline double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += double(a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? num / den : num;
}

// Checks what a decode kernel's fused residual add + RMSNorm (norm.cuh's ResidualNorm) left, given the
// kernel's own output y and the residual x0 before it: x = x0 + (y + bias) exactly (the same two F32
// additions as add_rmsnorm_rows), out = RMSNorm(x) · w and norm = ‖x‖₂ within 2e-5 relative (an F32
// tree sum of squares against a double one, as in norm_test.cpp). bias may be empty. Returns x.
inline std::vector<float> expect_residual_norm(const std::vector<float>& x0, const std::vector<float>& y,
                                               const std::vector<float>& bias, const std::vector<float>& w, float eps,
                                               const std::vector<float>& x, const std::vector<float>& out, float norm) {
  const size_t n = x0.size();
  std::vector<float> want_x(n);
  double ss = 0;
  for (size_t i = 0; i < n; ++i) {
    want_x[i] = x0[i] + (bias.empty() ? y[i] : y[i] + bias[i]);
    ss += double(want_x[i]) * double(want_x[i]);
  }
  EXPECT_EQ(x, want_x) << "the residual add";
  const float r = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  int bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const float want = want_x[i] * r * w[i];
    if (!(std::fabs(out[i] - want) <= 1e-6f + 2e-5f * std::fabs(want)) && ++bad <= 5)
      ADD_FAILURE() << "out[" << i << "]: got " << out[i] << ", want " << want;
  }
  EXPECT_EQ(bad, 0) << bad << " of " << n << " normed values outside tolerance";
  EXPECT_NEAR(norm, std::sqrt(ss), 2e-5 * std::sqrt(ss)) << "‖x‖₂";
  return want_x;
}

// The CPU backend's rmsnorm and rope(), for the kernels' references: RMSNorm with a double sum of
// squares, (x · r) · w; RoPE pairs (i, i + d/2) or (2i, 2i + 1) at F32 angles pos · inv_freq[i], cos and
// sin times YaRN's factor.
inline void ref_rmsnorm(float* x, const float* w, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float r = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * r * w[i];
}

inline void ref_rope(float* x, int pos, int rotary_dim, bool interleaved, const std::vector<float>& inv_freq, float factor) {
  const int half = rotary_dim / 2;
  for (int i = 0; i < half; ++i) {
    const float angle = float(pos) * inv_freq[size_t(i)];
    const float c = std::cos(angle) * factor, sn = std::sin(angle) * factor;
    const int a = interleaved ? 2 * i : i;
    const int b = interleaved ? 2 * i + 1 : i + half;
    const float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * sn;
    x[b] = x1 * c + x0 * sn;
  }
}

}  // namespace moe::cuda::test
