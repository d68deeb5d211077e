// dependent_launch.cuh: whether launches ask for programmatic dependent launch.
#include "engine/backend/cuda/kernels/dependent_launch.cuh"

#include <cstdlib>
#include <cstring>

namespace moe::cuda {
namespace {

// Compiled like every kernel here: its attributes say which code the device runs.
__global__ void arch_probe_kernel() {}

}  // namespace

bool dependent_launches() {
  static const bool on = [] {
    const char* env = std::getenv("MOE_CUDA_PDL");
    if (env && std::strcmp(env, "0") == 0) return false;
    // The code that runs must have been compiled for sm_90 or later, from PTX of 9.0 or later: only
    // then does wait_for_inputs() hold the griddepcontrol.wait the overlap needs (a build for sm_80
    // alone, JIT-compiled on an H100, has none).
    cudaFuncAttributes a{};
    if (cudaFuncGetAttributes(&a, reinterpret_cast<const void*>(arch_probe_kernel)) != cudaSuccess) {
      cudaGetLastError();  // not an error of the launch that asked
      return false;
    }
    return a.binaryVersion >= 90 && a.ptxVersion >= 90;
  }();
  return on;
}

}  // namespace moe::cuda
