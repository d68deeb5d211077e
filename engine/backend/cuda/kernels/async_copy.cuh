#pragma once
// Asynchronous global → shared copies (cp.async, compute capability 8.0+), for kernels that stage tiles
// several steps ahead: the copies need no registers and no instructions of the thread that issued them
// until it waits, so the loads of the next stages stay in flight while this stage is multiplied.
//
// A thread issues copies, closes them into a group (commit_async), and later waits until at most N of
// its newest groups are still in flight (wait_async<N>). Its copies are then in shared memory; other
// threads see them after a __syncthreads that follows the wait. Every thread must wait for all of its
// copies before it returns. The CUDA emulator lands each copy only at its thread's wait, and faults a
// thread that returns with copies not waited for (tests/cuda_emulator/block_runner.h).
#if defined(__CUDACC__) || defined(MOE_CUDA_EMULATED)

namespace moe::cuda {

// 16 bytes from global memory to shared memory; both addresses 16-byte aligned. Cached in L2 only (.cg):
// a staged tile is read once from global memory by the block that stages it.
__device__ __forceinline__ void copy_async_16(void* dst_shared, const void* src) {
#if defined(MOE_CUDA_EMULATED)
  ::moe_emu::copy_async(dst_shared, src, 16);
#elif defined(__CUDA_ARCH__)
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(dst_shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
#endif
}

__device__ __forceinline__ void commit_async() {
#if defined(MOE_CUDA_EMULATED)
  ::moe_emu::commit_async();
#elif defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Returns once at most kNewestPending of this thread's committed groups are still in flight.
template <int kNewestPending>
__device__ __forceinline__ void wait_async() {
#if defined(MOE_CUDA_EMULATED)
  ::moe_emu::wait_async(kNewestPending);
#elif defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kNewestPending) : "memory");
#endif
}

}  // namespace moe::cuda

#endif  // __CUDACC__ || MOE_CUDA_EMULATED
