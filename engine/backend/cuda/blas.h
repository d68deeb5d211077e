#pragma once
// The dense projections: y[T, out] = x[T, in] · Wᵀ with W [out, in] row-major in its stored dtype.
// One token (decode): linear_decode (kernels/linear.cuh), a bandwidth-bound matrix-vector product on F32
// x with F32 accumulation. More tokens: cuBLAS. BF16/F16 weights: x is converted to the weight dtype
// first and cuBLAS multiplies BF16 (F16) inputs with FP32 accumulation and FP32 output; F32 weights:
// plain FP32 GEMM, TF32 off (the parity tests need FP32 exactness). GGML block-typed weights: decode
// reads the blocks (linear_decode); more tokens expand W to BF16 some rows at a time in a scratch buffer
// (dequantize.cuh) and multiply as for BF16 weights. cuBLAS gets its workspace from the allocator, so a
// decode step can be captured in a CUDA graph.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/backend/cuda/device_allocator.h"
#include "engine/backend/cuda/device_matrix.h"

namespace moe::cuda {

class Blas {
 public:
  // gemm_in: a device buffer of gemm_in_elements in the weight dtype, for the converted inputs. dequant:
  // dequant_bytes of device memory (16-byte aligned) for block-typed weights' rows as BF16; may be null
  // when no such matrix goes through linear() with more than one token.
  Blas(DeviceAllocator& allocator, cudaStream_t stream, void* gemm_in, size_t gemm_in_elements, void* dequant = nullptr,
       size_t dequant_bytes = 0);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  // y = x · Wᵀ (beta = 0) or y += x · Wᵀ (accumulate). x: [T, w.cols], y: [T, w.rows].
  void linear(const DeviceMatrix& w, const float* x, int T, float* y, bool accumulate = false);

 private:
  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer<std::byte> workspace_;
  void* gemm_in_ = nullptr;
  size_t gemm_in_elements_ = 0;
  void* dequant_ = nullptr;
  size_t dequant_bytes_ = 0;
};

}  // namespace moe::cuda
