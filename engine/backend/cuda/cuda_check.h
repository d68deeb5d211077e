#pragma once
// Every CUDA and cuBLAS call is checked; a failure becomes an EngineError naming the call, so a front
// end prints it and goes on (with the CPU where it can) instead of aborting.
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace moe::cuda {

[[noreturn]] void throw_cuda_error(const char* call, const char* detail, const char* file, int line);

inline void check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw_cuda_error(call, cudaGetErrorString(e), file, line);
  }
}
inline void check(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) throw_cuda_error(call, cublasGetStatusString(s), file, line);
}

}  // namespace moe::cuda

#define MOE_CUDA_CHECK(expr) ::moe::cuda::check((expr), #expr, __FILE__, __LINE__)
// After a kernel launch: a bad configuration shows up here, not at the next unrelated call.
#define MOE_CUDA_CHECK_LAUNCH() ::moe::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
