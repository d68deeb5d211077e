#pragma once
// Small kernels that show what the CUDA emulator catches (emulator_test.cpp). Compiled through the same
// rewrite as the engine's kernels.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace moe_emu::test {

// Lanes 0–15 wait at __syncthreads while lanes 16–31 wait for them at __syncwarp: a GPU hangs.
void launch_divergent_barrier(int* out);
// Lane 31 returns, then the others shuffle with a mask that names it.
void launch_shuffle_with_returned_lane(float* out);
// out[block] = Σ in[block·n + i] over n ≤ 256 threads, through shared memory, with or without the
// barrier between the writes and thread 0's reads.
void launch_block_sums(const float* in, int n, int blocks, float* out, bool with_barrier, cudaStream_t stream);
// One block of 64 threads walks two tiles of in (64 values each) through one shared array; thread i adds
// up, over the tiles, the value thread i ^ 1 read: the other warp's tile[(i ^ 1 + 32) % 64]. Without
// reuse_barrier nothing stops a warp from staging the second tile while the other still reads the first.
void launch_tile_reuse(const float* in, float* out, bool reuse_barrier);
// out[0] = value (one thread).
void launch_store(int* out, int value, cudaStream_t stream);
// Adds *in to *out (one thread): a graph input read when the graph runs.
void launch_add(const int* in, int* out, cudaStream_t stream);
// One warp: c[16][16] = a[16][16] · b (row-major a and c; b row- or column-major per b_col_major), BF16
// inputs, F32 accumulation through wmma, with every element of the accumulator scaled by `scale` between
// two mma (an element-wise operation a legal kernel may do). c must be 32-byte aligned.
void launch_wmma_product(const __nv_bfloat16* a, const __nv_bfloat16* b, bool b_col_major, float scale, float* c);
// One warp: c[16][16] = a[16][8] · b[8][16] (row-major, F32 in memory) through TF32 fragments; with
// round_inputs the fragments are rounded with __float_to_tf32 first, else the tensor cores read the
// values as they are (their low 13 mantissa bits ignored).
void launch_tf32_product(const float* a, const float* b, bool round_inputs, float* c);
// One warp: d[16][8] = a[16][8] · b[8][8] + c[16][8] (row-major, F32 in memory) through mma_tf32_1688
// (mma_sync.cuh), the fragments laid out by the PTX ISA's per-element formulas, a and b passed as they
// are (the tensor cores read their upper 19 bits); with lane_31_returns lane 31 returns first.
void launch_mma_sync_product(const float* a, const float* b, const float* c, float* d, bool lane_31_returns);
// wmma misuse: lane 0 loads from a different row than the other lanes (kind 0); a pointer 16 bytes off
// 32-byte alignment (kind 1); lane 31 returns before the mma (kind 2).
void launch_wmma_misuse(const __nv_bfloat16* a, float* c, int kind);
// A programmatic dependent launch of `blocks` one-thread blocks: out[block] = *in, read after the wait
// for inputs (read_before_wait false) or before it (a bug the emulator must make visible). A thread
// never waits with skip_wait.
void launch_dependent_copy(const int* in, int* out, int blocks, bool read_before_wait, bool skip_wait,
                           cudaStream_t stream);
// One warp stages in[0 … 63] in shared memory by copy_async_16, thread t in[t] then in[32 + t] as two
// groups, and reads back after a barrier, as shared memory then holds them: out[t] the neighbour's first
// copy (in[(t + 1) % 32].x), out[32 + t] its own first and out[64 + t] its own second. Mode 0 waits for
// the first group before the barrier, mode 1 for none; in mode 2 the threads return without waiting.
void launch_async_copy(const int4* in, int* out, int mode);
// Each of `blocks` blocks writes in[block] to parts[block]; one block then writes their sum to *out: the
// one arrive_last (last_block.cuh) elects, counting on *counter (0), or with by_counter false the block
// of the highest index (a bug: no block is promised to finish last).
void launch_last_block_sum(const int* in, int* parts, unsigned* counter, int* out, int blocks, bool by_counter);
// An empty kernel with the given block size and dynamic shared memory.
cudaError_t launch_empty(int threads, size_t shared_bytes, bool raise_shared_limit);

}  // namespace moe_emu::test
