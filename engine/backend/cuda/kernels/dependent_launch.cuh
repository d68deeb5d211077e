#pragma once
// Programmatic dependent launch (compute capability 9.0+): every kernel of a step is launched so that it
// may start while the kernel before it is still running, and waits on the device, not in the launch
// queue, for the inputs that kernel writes. A decode step is ~530 small dependent kernels; without
// this each boundary costs the previous grid's drain, the next grid's launch and its first loads from
// memory, one after another. With it the next grid's blocks are already resident when the previous
// one finishes, and the matrix-vector products have their first weight loads in flight.
//
// The contract, for every kernel launched by launch_dependent:
//   - every thread calls wait_for_inputs() before it reads anything an earlier kernel or copy wrote,
//     before it writes anything, and before it returns (an early return included);
//   - before that call a thread may only read memory no kernel of the step writes (the weights).
// wait_for_inputs() returns once the previous grid has completed and its writes are visible; since
// that grid waited for its own predecessor, all earlier work is then complete too. It also lets the
// next kernel's blocks launch (at most one grid runs ahead). The CUDA emulator checks the contract: it
// runs a dependent grid's first block up to its wait before the previous work, and faults a thread
// that returns without waiting (tests/cuda_emulator/block_runner.h).
#include <cuda_runtime.h>

#include <utility>

#include "engine/backend/cuda/cuda_check.h"

namespace moe::cuda {

// Whether launch_dependent asks for the overlap: on devices of compute capability 9.0 or later, unless
// MOE_CUDA_PDL=0. Decided at the first launch (one device per process).
bool dependent_launches();

// The rest is for kernel files (nvcc, or the emulator's rewrite of them).
#if defined(__CUDACC__) || defined(MOE_CUDA_EMULATED)

__device__ __forceinline__ void wait_for_inputs() {
#if defined(MOE_CUDA_EMULATED)
  ::moe_emu::dependency_wait();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...), as a programmatic dependent of the work before
// it on the stream when dependent_launches(). `name` is for the emulator's fault messages.
template <typename... Params, typename... Args>
void launch_dependent(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                      cudaStream_t stream, Args&&... args) {
#if defined(MOE_CUDA_EMULATED)
  ::moe_emu::launch(name, ::moe_emu::LaunchConfig(grid, block, shared_bytes, stream, dependent_launches()), kernel,
                    std::forward<Args>(args)...);
#else
  (void)name;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = dependent_launches() ? 1 : 0;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = 1;
  MOE_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
#endif
}

#endif  // __CUDACC__ || MOE_CUDA_EMULATED

}  // namespace moe::cuda
