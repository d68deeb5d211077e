#pragma once
// "The last block to finish does the rest": how a decode kernel whose blocks each write a part of a
// result runs the one-block step that needs all of it (the residual add + RMSNorm after a projection,
// the router after its logits, the merge of attention's key slices) without a kernel of its own. A
// decode step is ~530 kernels whose boundaries cost about as much as reading the weights
// (BENCHMARKS.md); a separate one-block kernel does the same serial work plus a boundary.
//
// Usage (every thread of the block, after wait_for_inputs() and after its part of the result is
// written):
//   if (arrive_last(counter, n)) { ... read the other blocks' parts with __ldcg ... }
// `counter` is a device word that is 0 when the kernel starts, shared by the n blocks that take part;
// the last block sets it back to 0, so the next launch (a graph replay included) finds it so. Kernels
// of a stream run one after another, and a dependent launch touches it only after its wait
// (dependent_launch.cuh), so consecutive kernels may use the same counters.
//
// Memory order: every thread fences its writes before the block is counted; the last block fences
// again after it learns it is last, and reads the others' results through L2 (__ldcg), never through
// an L1 line or the read-only path that could predate them.
#include <cuda_runtime.h>

namespace moe::cuda {

#if defined(__CUDACC__) || defined(MOE_CUDA_EMULATED)

// True, in every thread, in the one block of the n calling with `counter` that arrives last. Block-wide:
// every thread of the block must call it (it holds barriers).
__device__ __forceinline__ bool arrive_last(unsigned* counter, unsigned n) {
  __shared__ int last;
  __threadfence();  // this block's writes are visible device-wide before it is counted
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    const unsigned before = atomicAdd(counter, 1u);
    last = before + 1u == n ? 1 : 0;
    if (last) atomicExch(counter, 0u);  // every other block has counted: ready for the next launch
  }
  __syncthreads();
  const bool is_last = last != 0;
  if (is_last) __threadfence();  // the others' writes, seen through the counter, come before our reads
  return is_last;
}

#endif  // __CUDACC__ || MOE_CUDA_EMULATED

}  // namespace moe::cuda
