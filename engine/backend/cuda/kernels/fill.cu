#include "engine/backend/cuda/kernels/fill.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/error.h"
#include "engine/common/ggml_decode.h"

namespace moe::cuda {
namespace {

// SplitMix64: a good 64-bit mix of a counter.
__device__ uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__device__ float uniform(uint64_t seed, size_t i, float scale) {
  const uint32_t bits = uint32_t(mix(seed ^ mix(i)) >> 40);  // 24 random bits
  return (float(bits) * (2.0f / 16777216.0f) - 1.0f) * scale;
}

template <typename T>
__global__ void fill_kernel(T* out, size_t n, uint64_t seed, float scale) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float v = uniform(seed, i, scale);
    if constexpr (sizeof(T) == 4) out[i] = v;
    else if constexpr (std::is_same_v<T, __nv_bfloat16>) out[i] = __float2bfloat16_rn(v);
    else out[i] = __float2half_rn(v);
  }
}

// ggml MXFP4 blocks of random codes, each with the E8M0 scale 2^-7 (byte 120): values of RMS about 0.023, as the
// CPU's synthetic MXFP4 experts (model.cpp) and the uniform fill above.
__global__ void fill_mxfp4_kernel(uint8_t* out, size_t blocks, uint64_t seed) {
  for (size_t b = size_t(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks; b += size_t(gridDim.x) * blockDim.x) {
    uint8_t* block = out + b * ggml::MXFP4_GGML::kBytes;
    block[0] = 127 - 7;
    const uint64_t lo = mix(seed ^ mix(2 * b)), hi = mix(seed ^ mix(2 * b + 1));
    for (int i = 0; i < 8; ++i) block[1 + i] = uint8_t(lo >> (8 * i)), block[9 + i] = uint8_t(hi >> (8 * i));
  }
}

__global__ void value_kernel(float* out, size_t n, float value) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) out[i] = value;
}

__global__ void copy_kernel(const float4* in, float4* out, size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) out[i] = in[i];
}

unsigned grid_for(size_t n) { return unsigned(std::min<size_t>((n + 255) / 256, 65536)); }

}  // namespace

void fill_random(void* data, DType dtype, size_t count, uint64_t seed, float scale, cudaStream_t stream) {
  if (count == 0) return;
  switch (dtype) {
    // Template arguments named at every launch: the CUDA emulator build needs the kernel's address.
    case DType::F32: fill_kernel<float><<<grid_for(count), 256, 0, stream>>>(static_cast<float*>(data), count, seed, scale); break;
    case DType::BF16:
      fill_kernel<__nv_bfloat16><<<grid_for(count), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(data), count, seed, scale);
      break;
    case DType::F16: fill_kernel<__half><<<grid_for(count), 256, 0, stream>>>(static_cast<__half*>(data), count, seed, scale); break;
    case DType::MXFP4_GGML:  // GPT-OSS's experts (scale is the format's: see fill_mxfp4_kernel)
      fill_mxfp4_kernel<<<grid_for(count / ggml::MXFP4_GGML::kValues), 256, 0, stream>>>(
          static_cast<uint8_t*>(data), count / ggml::MXFP4_GGML::kValues, seed);
      break;
    default:
      throw EngineError("", "dtype", "random " + std::string(dtype_name(dtype)) + " weights are not made on the GPU");
  }
  MOE_CUDA_CHECK_LAUNCH();
}

void fill_value(float* data, size_t count, float value, cudaStream_t stream) {
  if (count == 0) return;
  value_kernel<<<grid_for(count), 256, 0, stream>>>(data, count, value);
  MOE_CUDA_CHECK_LAUNCH();
}

double measure_device_bandwidth(size_t bytes) {
  const size_t n = std::max<size_t>(bytes / sizeof(float4), 1);
  float4 *a = nullptr, *b = nullptr;
  MOE_CUDA_CHECK(cudaMalloc(&a, n * sizeof(float4)));
  if (cudaMalloc(&b, n * sizeof(float4)) != cudaSuccess) {
    cudaFree(a);
    cudaGetLastError();
    return 0;
  }
  cudaMemset(a, 0, n * sizeof(float4));
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const unsigned grid = unsigned(std::max(1, sms) * 8);
  float best_ms = 1e30f;
  for (int pass = 0; pass < 6; ++pass) {
    cudaEventRecord(start);
    copy_kernel<<<grid, 512>>>(a, b, n);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (pass > 0) best_ms = std::min(best_ms, ms);  // the first pass warms up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  MOE_CUDA_CHECK(cudaGetLastError());
  return double(2 * n * sizeof(float4)) / (double(best_ms) * 1e-3) / 1e9;
}

}  // namespace moe::cuda
