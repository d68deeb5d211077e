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

}  // namespace moe::cuda::test
