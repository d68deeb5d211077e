#pragma once
// The emulated device behind the CUDA runtime and cuBLAS calls (runtime_api.cpp, cublas_api.cpp):
// memory, streams and graph capture. Work submitted to a stream is queued and runs only when the host
// synchronises with that stream (cudaStreamSynchronize, cudaEventSynchronize, cudaDeviceSynchronize,
// a synchronous copy on a stream that waits for it), so a host read without the synchronisation it
// needs sees stale data here as it would on a GPU. A non-blocking stream is not drained by the legacy
// default stream's synchronous calls, exactly as on a GPU.
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>

#include "tests/cuda_emulator/block_runner.h"

namespace moe_emu {

using Op = std::function<void()>;

// A queued piece of work. `early`, when set, is the part of it that may run before the work queued
// ahead of it has run (a dependent grid's first block, up to its wait for inputs), and does.
struct Work {
  Op run;
  Op early;
};

// Queues the work on the stream (nullptr: the legacy default stream), or records it into the stream's
// graph while the stream is being captured.
cudaError_t enqueue(cudaStream_t stream, Work work);
inline cudaError_t enqueue(cudaStream_t stream, Op op) { return enqueue(stream, Work{std::move(op), nullptr}); }

// Validates a launch (block size, shared memory against cudaFuncSetAttribute) and queues the grid.
void submit_kernel(const GridShape& shape, const void* kernel, cudaStream_t stream, std::function<void()> body);

// Inside a cudaMalloc or cudaMallocHost allocation.
bool is_device_pointer(const void* p);

// A launch the GPU would run but that is certainly wrong (e.g. a host pointer argument): report, abort.
[[noreturn]] void kernel_launch_fault(const char* kernel, const std::string& what);

// Records e as the last error (cudaGetLastError) when it is one; returns e.
cudaError_t note_error(cudaError_t e);

}  // namespace moe_emu
