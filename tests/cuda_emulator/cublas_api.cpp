// The cuBLAS calls the engine makes, for the emulator: a handle bound to a stream and a plain GEMM
// with FP32 accumulation, queued on the handle's stream like every other piece of device work.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tests/cuda_emulator/runtime.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

size_t element_bytes(cudaDataType t) {
  switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16BF:
    case CUDA_R_16F: return 2;
    default: return 0;
  }
}

float load(const void* base, size_t i, cudaDataType t) {
  switch (t) {
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

// A column-major operand of `rows` × `cols` with leading dimension ld lies in device memory.
bool operand_in_device(const void* p, cudaDataType t, int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return true;
  const size_t last = (size_t(cols) - 1) * size_t(ld) + size_t(rows) - 1;
  const auto* b = static_cast<const unsigned char*>(p);
  return moe_emu::is_device_pointer(b) && moe_emu::is_device_pointer(b + last * element_bytes(t));
}

}  // namespace

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (bytes && !moe_emu::is_device_pointer(workspace)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->workspace = workspace;
  handle->workspace_bytes = bytes;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    default: return "CUBLAS_STATUS (CUDA emulator)";
  }
}

// C = α·op(A)·op(B) + β·C, column-major; A, B in BF16/F16/F32, C in F32, FP32 accumulation (β = 0: C is
// not read, as in cuBLAS).
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B, cudaDataType Btype,
                            int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  if (m < 0 || n < 0 || k < 0 || !element_bytes(Atype) || !element_bytes(Btype) || Ctype != CUDA_R_32F ||
      (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
  if (!operand_in_device(A, Atype, ta ? k : m, ta ? m : k, lda) || !operand_in_device(B, Btype, tb ? n : k, tb ? k : n, ldb) ||
      !operand_in_device(C, Ctype, m, n, ldc))
    moe_emu::kernel_launch_fault("cublasGemmEx", "an operand lies outside device memory");
  // Scalars are read at the call (host pointer mode), so a captured GEMM keeps them.
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const cudaError_t e = moe_emu::enqueue(handle->stream, [=] {
    std::vector<float> bcol(static_cast<size_t>(k));
    auto* c = static_cast<float*>(C);
    for (int j = 0; j < n; ++j) {
      for (int p = 0; p < k; ++p) bcol[size_t(p)] = load(B, tb ? size_t(j) + size_t(p) * ldb : size_t(p) + size_t(j) * ldb, Btype);
      for (int i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (int p = 0; p < k; ++p) acc += load(A, ta ? size_t(p) + size_t(i) * lda : size_t(i) + size_t(p) * lda, Atype) * bcol[size_t(p)];
        float& out = c[size_t(i) + size_t(j) * ldc];
        out = b == 0.0f ? a * acc : a * acc + b * out;
      }
    }
  });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
