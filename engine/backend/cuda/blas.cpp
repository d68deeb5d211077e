#include "engine/backend/cuda/blas.h"

#include <algorithm>
#include <string>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/dequantize.cuh"
#include "engine/backend/cuda/kernels/linear.cuh"
#include "engine/backend/cuda/kernels/norm.cuh"
#include "engine/backend/gpu_memory_plan.h"
#include "engine/common/error.h"
#include "engine/common/ggml_quants.h"

namespace moe::cuda {
namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

}  // namespace

Blas::Blas(DeviceAllocator& allocator, cudaStream_t stream, void* gemm_in, size_t gemm_in_elements, void* dequant,
           size_t dequant_bytes)
    : stream_(stream), gemm_in_(gemm_in), gemm_in_elements_(gemm_in_elements), dequant_(dequant), dequant_bytes_(dequant_bytes) {
  MOE_CUDA_CHECK(cublasCreate(&handle_));
  try {
    MOE_CUDA_CHECK(cublasSetStream(handle_, stream_));
    // No TF32: FP32 weights get FP32 products (CUBLAS_DEFAULT_MATH does not allow TF32).
    MOE_CUDA_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
    workspace_ = DeviceBuffer<std::byte>(allocator, kCublasWorkspaceBytes, MemoryPart::Workspace, -1, "the cuBLAS workspace");
    MOE_CUDA_CHECK(cublasSetWorkspace(handle_, workspace_.get(), kCublasWorkspaceBytes));
  } catch (...) {
    cublasDestroy(handle_);
    throw;
  }
}

Blas::~Blas() { cublasDestroy(handle_); }

void Blas::linear(const DeviceMatrix& w, const float* x, int T, float* y, bool accumulate) {
  if (T == 1) {  // decode: one bandwidth-bound kernel, x kept in F32 (linear.cuh)
    linear_decode(w, x, y, accumulate, stream_);
    return;
  }
  const bool blocks = is_block_quantized(w.dtype);
  const DType c = gpu_compute_dtype(w.dtype);  // what the GEMM multiplies
  const void* input = x;
  if (c != DType::F32) {
    const size_t n = size_t(T) * size_t(w.cols);
    if (n > gemm_in_elements_)
      throw EngineError("", "CUDA", "GEMM input of " + std::to_string(n) + " values exceeds its buffer");
    convert_f32(x, gemm_in_, c, int64_t(n), stream_);
    input = gemm_in_;
  }
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cudaDataType_t t = cuda_type(c);
  // Row-major W [out, in] is column-major Wᵀ [in, out]: C (column-major [out, T]) = op(Wᵀ)ᵀ · X. Rows
  // [r0, r0 + n) of W make rows [r0, r0 + n) of C, which lie at y + r0 with C's leading dimension.
  auto gemm = [&](const void* rows, int64_t r0, int64_t n) {
    MOE_CUDA_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), T, int(w.cols), &alpha, rows, t, int(w.cols),
                                input, t, int(w.cols), &beta, y + r0, CUDA_R_32F, int(w.rows), CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
  };
  if (!blocks) {
    gemm(w.data, 0, w.rows);
    return;
  }
  const int64_t chunk = int64_t(dequant_bytes_ / (size_t(w.cols) * 2));
  if (!dequant_ || chunk < 1)
    throw EngineError("", "CUDA", "no scratch to expand a " + std::string(dtype_name(w.dtype)) + " matrix for a prefill GEMM");
  for (int64_t r0 = 0; r0 < w.rows; r0 += chunk) {
    const int64_t n = std::min(chunk, w.rows - r0);
    dequantize_rows_16(w, r0, n, dequant_, stream_);
    gemm(dequant_, r0, n);
  }
}

}  // namespace moe::cuda
