#pragma once
// Small kernels that show what the CUDA emulator catches (emulator_test.cpp). Compiled through the same
// rewrite as the engine's kernels.
#include <cuda_runtime.h>

namespace moe_emu::test {

// Lanes 0–15 wait at __syncthreads while lanes 16–31 wait for them at __syncwarp: a GPU hangs.
void launch_divergent_barrier(int* out);
// Lane 31 returns, then the others shuffle with a mask that names it.
void launch_shuffle_with_returned_lane(float* out);
// out[block] = Σ in[block·n + i] over n ≤ 256 threads, through shared memory, with or without the
// barrier between the writes and thread 0's reads.
void launch_block_sums(const float* in, int n, int blocks, float* out, bool with_barrier, cudaStream_t stream);
// out[0] = value (one thread).
void launch_store(int* out, int value, cudaStream_t stream);
// Adds *in to *out (one thread): a graph input read when the graph runs.
void launch_add(const int* in, int* out, cudaStream_t stream);
// An empty kernel with the given block size and dynamic shared memory.
cudaError_t launch_empty(int threads, size_t shared_bytes, bool raise_shared_limit);

}  // namespace moe_emu::test
