// The CUDA emulator catches what the CUDA tests rely on it to catch: kernels that would hang or read
// garbage on a GPU, host reads without the synchronisation they need, calls a graph capture forbids,
// and launches a GPU refuses.
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/cuda_emulator/emulator_kernels.h"

namespace moe_emu::test {
namespace {

template <typename T>
T* device_alloc(size_t n) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
  return static_cast<T*>(p);
}

TEST(CudaEmulatorDeathTest, ABarrierSomeThreadsNeverReachIsADeadlock) {
  EXPECT_DEATH(
      {
        int* out = device_alloc<int>(32);
        launch_divergent_barrier(out);
        cudaDeviceSynchronize();
      },
      "deadlock: 16 thread\\(s\\) wait at __syncthreads, 16 at a warp rendezvous");
}

TEST(CudaEmulatorDeathTest, AShuffleNamingAReturnedLaneIsReported) {
  EXPECT_DEATH(
      {
        float* out = device_alloc<float>(32);
        launch_shuffle_with_returned_lane(out);
        cudaDeviceSynchronize();
      },
      "returned");
}

TEST(CudaEmulatorDeathTest, AKernelGivenAHostPointerIsReported) {
  EXPECT_DEATH(
      {
        std::vector<int> host(1);
        launch_store(host.data(), 1, nullptr);
      },
      "launch of store_kernel: argument 0 is a pointer outside device memory");
}

// The warp matrix functions: small multiples of 1/8 give products and sums that F32 holds exactly, so
// the result must equal the exact one. B is given row-major and column-major (its transpose in memory).
TEST(CudaEmulator, WmmaProductsAreExactAndLayoutsAgree) {
  std::vector<__nv_bfloat16> a(256), b_rows(256), b_cols(256);
  std::vector<double> A(256), B(256);
  for (int i = 0; i < 256; ++i) {
    A[size_t(i)] = double((i * 7) % 9 - 4) / 8.0;
    B[size_t(i)] = double((i * 5) % 11 - 5) / 8.0;
    a[size_t(i)] = __float2bfloat16(float(A[size_t(i)]));
  }
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 16; ++n) {
      b_rows[size_t(k * 16 + n)] = __float2bfloat16(float(B[size_t(k * 16 + n)]));
      b_cols[size_t(n * 16 + k)] = __float2bfloat16(float(B[size_t(k * 16 + n)]));
    }
  __nv_bfloat16* d_a = device_alloc<__nv_bfloat16>(256);
  __nv_bfloat16* d_b = device_alloc<__nv_bfloat16>(256);
  float* d_c = device_alloc<float>(256);
  ASSERT_EQ(cudaMemcpy(d_a, a.data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
  for (const bool col_major : {false, true}) {
    SCOPED_TRACE(col_major ? "B column-major" : "B row-major");
    ASSERT_EQ(cudaMemcpy(d_b, (col_major ? b_cols : b_rows).data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
    launch_wmma_product(d_a, d_b, col_major, 0.5f, d_c);
    std::vector<float> c(256);
    ASSERT_EQ(cudaMemcpy(c.data(), d_c, 1024, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 16; ++n) {
        double want = 0;
        for (int k = 0; k < 16; ++k) want += A[size_t(m * 16 + k)] * B[size_t(k * 16 + n)];
        ASSERT_EQ(double(c[size_t(m * 16 + n)]), 1.5 * want) << "c[" << m << "][" << n << "]";
      }
  }
  cudaFree(d_a);
  cudaFree(d_b);
  cudaFree(d_c);
}

// TF32: A holds 1 + 2^-12 (below half a TF32 step) and 1 + 3·2^-12 (above), B holds ones, so every
// product row sums 8 such values. Read as they are, the low bits are dropped (each value counts as 1);
// rounded with __float_to_tf32, the second becomes 1 + 2^-10.
TEST(CudaEmulator, Tf32FragmentsDropOrRoundTheLowBits) {
  std::vector<float> a(128), b(128, 1.0f);
  for (int i = 0; i < 128; ++i)
    a[size_t(i)] = i % 2 ? 1.0f + 3.0f * std::ldexp(1.0f, -12) : 1.0f + std::ldexp(1.0f, -12);
  float* d_a = device_alloc<float>(128);
  float* d_b = device_alloc<float>(128);
  float* d_c = device_alloc<float>(256);
  ASSERT_EQ(cudaMemcpy(d_a, a.data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_b, b.data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
  std::vector<float> c(256);
  launch_tf32_product(d_a, d_b, false, d_c);
  ASSERT_EQ(cudaMemcpy(c.data(), d_c, 1024, cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : c) ASSERT_EQ(v, 8.0f);
  launch_tf32_product(d_a, d_b, true, d_c);
  ASSERT_EQ(cudaMemcpy(c.data(), d_c, 1024, cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : c) ASSERT_EQ(v, 8.0f + 4.0f * std::ldexp(1.0f, -10));
  cudaFree(d_a);
  cudaFree(d_b);
  cudaFree(d_c);
}

// mma.sync's registers have a documented layout, which kernels rely on (attention_prefill_mma.cu): the
// product of fragments gathered by the PTX ISA's formulas must be the exact product, accumulated onto c.
// Entries are small multiples of 1/8, so F32 holds every product and sum exactly. A second run scales a
// by 1 + 2^-12, which changes only bits below TF32's mantissa: the tensor cores drop them.
TEST(CudaEmulator, MmaSyncFollowsThePtxFragmentLayout) {
  std::vector<float> a(128), b(64), c(128);
  for (int i = 0; i < 128; ++i) {
    a[size_t(i)] = float((i * 7) % 9 - 4) / 8.0f;
    c[size_t(i)] = float(i % 13) / 4.0f;
  }
  for (int i = 0; i < 64; ++i) b[size_t(i)] = float((i * 5) % 11 - 5) / 8.0f;
  float* d_a = device_alloc<float>(128);
  float* d_b = device_alloc<float>(64);
  float* d_c = device_alloc<float>(128);
  float* d_d = device_alloc<float>(128);
  ASSERT_EQ(cudaMemcpy(d_b, b.data(), 256, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_c, c.data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
  for (const float extra : {0.0f, std::ldexp(1.0f, -12)}) {
    std::vector<float> a_in = a;
    for (float& v : a_in) v *= 1.0f + extra;
    ASSERT_EQ(cudaMemcpy(d_a, a_in.data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
    launch_mma_sync_product(d_a, d_b, d_c, d_d, false);
    std::vector<float> d(128);
    ASSERT_EQ(cudaMemcpy(d.data(), d_d, 512, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double want = c[size_t(m * 8 + n)];
        for (int k = 0; k < 8; ++k) want += double(a[size_t(m * 8 + k)]) * double(b[size_t(k * 8 + n)]);
        ASSERT_EQ(double(d[size_t(m * 8 + n)]), want) << "d[" << m << "][" << n << "], extra " << extra;
      }
  }
  cudaFree(d_a);
  cudaFree(d_b);
  cudaFree(d_c);
  cudaFree(d_d);
}

TEST(CudaEmulatorDeathTest, AnMmaSyncWithoutTheWholeWarpIsReported) {
  const auto run = [] {
    float* a = device_alloc<float>(128);
    float* c = device_alloc<float>(128);
    launch_mma_sync_product(a, a, c, c, true);
    cudaDeviceSynchronize();
  };
  EXPECT_DEATH(run(), "returned");
}

TEST(CudaEmulatorDeathTest, WmmaMisuseIsReported) {
  const auto run = [](int kind) {
    __nv_bfloat16* a = device_alloc<__nv_bfloat16>(512);
    float* c = device_alloc<float>(256);
    launch_wmma_misuse(a, c, kind);
    cudaDeviceSynchronize();
  };
  EXPECT_DEATH(run(0), "wmma::load_matrix_sync: the lanes of a warp pass different pointers or strides");
  EXPECT_DEATH(run(1), "wmma::load_matrix_sync: the pointer is not 32-byte aligned");
  EXPECT_DEATH(run(2), "returned");
}

// Odd blocks run their threads in the reverse order: without the barrier, block 0's thread 0 sums before
// the others have written (it reads stale shared memory: zeros, or the other block's values), block 1's
// after (the other way round with MOE_CUDA_EMULATOR_ORDER=reverse). With it both are right.
TEST(CudaEmulator, AMissingBarrierGivesAWrongSum) {
  const int n = 64;
  std::vector<float> in(2 * n);
  for (int i = 0; i < 2 * n; ++i) in[size_t(i)] = float(i + 1);
  const float want[2] = {float(n * (n + 1) / 2), float(n * (3 * n + 1) / 2)};
  float* d_in = device_alloc<float>(in.size());
  float* d_out = device_alloc<float>(2);
  ASSERT_EQ(cudaMemcpy(d_in, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  std::vector<float> out(2);
  launch_block_sums(d_in, n, 2, d_out, false, nullptr);
  ASSERT_EQ(cudaMemcpy(out.data(), d_out, 2 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(int(out[0] == want[0]) + int(out[1] == want[1]), 1) << "one order reads stale shared memory, the other not";
  launch_block_sums(d_in, n, 2, d_out, true, nullptr);
  ASSERT_EQ(cudaMemcpy(out.data(), d_out, 2 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out[0], want[0]);
  EXPECT_EQ(out[1], want[1]);
  cudaFree(d_in);
  cudaFree(d_out);
}

// A barrier missing before shared memory is reused: threads that all run in turn have read the first
// tile before any of them stages the second, so two of four successive launches get it right; blocks run
// warp by warp (the other two) let the first warp stage the second tile before the second warp reads the
// first. With the barrier every launch is right.
TEST(CudaEmulator, WarpByWarpBlocksShowABarrierMissingBeforeReuse) {
  std::vector<float> in(128);
  for (int i = 0; i < 128; ++i) in[size_t(i)] = float(i + 1);
  std::vector<float> want(64);
  for (int i = 0; i < 64; ++i) want[size_t(i)] = in[size_t(((i ^ 1) + 32) % 64)] + in[size_t(64 + ((i ^ 1) + 32) % 64)];
  float* d_in = device_alloc<float>(128);
  float* d_out = device_alloc<float>(64);
  ASSERT_EQ(cudaMemcpy(d_in, in.data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
  for (const bool barrier : {false, true}) {
    int right = 0;
    for (int launch = 0; launch < 4; ++launch) {
      launch_tile_reuse(d_in, d_out, barrier);
      std::vector<float> out(64);
      ASSERT_EQ(cudaMemcpy(out.data(), d_out, 256, cudaMemcpyDeviceToHost), cudaSuccess);
      right += out == want ? 1 : 0;
    }
    EXPECT_EQ(right, barrier ? 4 : 2) << (barrier ? "with" : "without") << " the barrier before reuse";
  }
  cudaFree(d_in);
  cudaFree(d_out);
}

// Work on a stream runs when the host synchronises with it: a pinned buffer read before that is stale,
// and a synchronous copy on the legacy stream does not wait for a non-blocking stream (as on a GPU).
TEST(CudaEmulator, HostReadsSeeStreamWorkOnlyAfterSynchronising) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* d = device_alloc<int>(1);
  int* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), sizeof(int)), cudaSuccess);
  *pinned = -1;
  launch_store(d, 7, s);
  ASSERT_EQ(cudaMemcpyAsync(pinned, d, sizeof(int), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_EQ(*pinned, -1);
  int via_legacy = -1;
  ASSERT_EQ(cudaMemcpy(&via_legacy, d, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_NE(via_legacy, 7);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(*pinned, 7);
  cudaFreeHost(pinned);
  cudaFree(d);
  cudaStreamDestroy(s);
}

// A graph holds its copies and kernels; a pinned input is read when the graph runs, not when captured.
// A synchronous copy during the capture breaks it.
TEST(CudaEmulator, GraphsReplayAndCapturesRefuseSynchronousCalls) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* in = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&in), sizeof(int)), cudaSuccess);
  int* d_in = device_alloc<int>(1);
  int* d_sum = device_alloc<int>(1);
  ASSERT_EQ(cudaMemset(d_sum, 0, sizeof(int)), cudaSuccess);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(d_in, in, sizeof(int), cudaMemcpyHostToDevice, s), cudaSuccess);
  launch_add(d_in, d_sum, s);
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
  for (int v : {3, 4}) {
    *in = v;
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  }
  int sum = 0;
  ASSERT_EQ(cudaMemcpy(&sum, d_sum, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(sum, 7);

  cudaGraph_t broken = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(&sum, d_sum, sizeof(int), cudaMemcpyDeviceToHost), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &broken), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(broken, nullptr);
  cudaGetLastError();

  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  cudaFreeHost(in);
  cudaFree(d_in);
  cudaFree(d_sum);
  cudaStreamDestroy(s);
}

// A programmatic dependent grid may start before the work ahead of it: its first block runs up to the
// wait for inputs before that work does, on a stream and in a graph replay alike. A read after the wait
// sees the earlier store in every block; a read before it sees the old value in block 0.
TEST(CudaEmulator, ADependentGridSeesEarlierWorkOnlyAfterItsWait) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* in = device_alloc<int>(1);
  int* out = device_alloc<int>(3);
  auto run = [&](bool read_before_wait, bool in_graph) {
    const int old = 1;
    EXPECT_EQ(cudaMemcpy(in, &old, sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    if (in_graph) {
      EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    }
    launch_store(in, 7, s);
    launch_dependent_copy(in, out, 3, read_before_wait, false, s);
    if (in_graph) {
      EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
      EXPECT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
      EXPECT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    }
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    if (in_graph) {
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(g);
    }
    std::vector<int> got(3);
    EXPECT_EQ(cudaMemcpy(got.data(), out, 3 * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
    return got;
  };
  for (bool in_graph : {false, true}) {
    EXPECT_EQ(run(false, in_graph), (std::vector<int>{7, 7, 7})) << (in_graph ? "graph" : "stream");
    EXPECT_EQ(run(true, in_graph), (std::vector<int>{1, 7, 7})) << (in_graph ? "graph" : "stream");
  }
  cudaFree(in);
  cudaFree(out);
  cudaStreamDestroy(s);
}

TEST(CudaEmulatorDeathTest, ADependentGridThatNeverWaitsIsReported) {
  EXPECT_DEATH(
      {
        int* in = device_alloc<int>(1);
        int* out = device_alloc<int>(2);
        launch_dependent_copy(in, out, 2, false, true, nullptr);
        cudaDeviceSynchronize();
      },
      "a thread of a dependent launch returned without waiting for its inputs \\(wait_for_inputs\\) in "
      "dependent_copy_kernel");
}

// An asynchronous copy lands when its thread waits for its group, not before: what a thread reads
// without that wait is the stale shared memory a block starts with (0xff bytes). (What it reads of
// another thread's copies without a wait is a race, so only its own are checked then.)
TEST(CudaEmulator, AsynchronousCopiesLandAtTheirWait) {
  std::vector<int4> in(64);
  for (int i = 0; i < 64; ++i) in[size_t(i)] = make_int4(100 + i, 0, 0, 0);
  int4* d_in = device_alloc<int4>(in.size());
  int* d_out = device_alloc<int>(96);
  ASSERT_EQ(cudaMemcpy(d_in, in.data(), in.size() * sizeof(int4), cudaMemcpyHostToDevice), cudaSuccess);
  std::vector<int> out(96);
  for (int mode : {0, 1}) {
    launch_async_copy(d_in, d_out, mode);
    ASSERT_EQ(cudaMemcpy(out.data(), d_out, out.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
    for (int t = 0; t < 32; ++t) {
      const std::string at = "mode " + std::to_string(mode) + ", thread " + std::to_string(t);
      if (mode == 0) EXPECT_EQ(out[size_t(t)], 100 + (t + 1) % 32) << at << ": the neighbour's copy, after the barrier";
      EXPECT_EQ(out[size_t(32 + t)], mode == 0 ? 100 + t : -1) << at << ": its first group";
      EXPECT_EQ(out[size_t(64 + t)], -1) << at << ": its second group, not waited for";
    }
  }
  cudaFree(d_in);
  cudaFree(d_out);
}

// Grids alternate between ascending and descending block order: of two launches, one runs the block of
// the highest index first, so a kernel that assumes it finishes last sums parts not yet written. The
// block that counts itself last (arrive_last) is right in both orders.
TEST(CudaEmulator, BlockOrderAlternatesSoOnlyCountingFindsTheLastBlock) {
  const int blocks = 6;
  std::vector<int> in(blocks);
  for (int b = 0; b < blocks; ++b) in[size_t(b)] = 1 << b;
  int* d_in = device_alloc<int>(blocks);
  int* d_parts = device_alloc<int>(blocks);
  unsigned* d_counter = device_alloc<unsigned>(1);
  int* d_out = device_alloc<int>(1);
  ASSERT_EQ(cudaMemcpy(d_in, in.data(), blocks * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_counter, 0, sizeof(unsigned)), cudaSuccess);
  for (const bool by_counter : {true, false}) {
    std::vector<int> sums;
    for (int launch = 0; launch < 2; ++launch) {
      ASSERT_EQ(cudaMemset(d_parts, 0, blocks * sizeof(int)), cudaSuccess);
      launch_last_block_sum(d_in, d_parts, d_counter, d_out, blocks, by_counter);
      int out = 0;
      ASSERT_EQ(cudaMemcpy(&out, d_out, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
      sums.push_back(out);
    }
    if (by_counter) {
      EXPECT_EQ(sums[0], (1 << blocks) - 1);
      EXPECT_EQ(sums[1], (1 << blocks) - 1);
    } else {
      EXPECT_NE(sums[0] == (1 << blocks) - 1, sums[1] == (1 << blocks) - 1) << sums[0] << " " << sums[1];
    }
  }
  unsigned counter = 1;
  ASSERT_EQ(cudaMemcpy(&counter, d_counter, sizeof(unsigned), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(counter, 0u) << "the last block resets the counter";
  cudaFree(d_in);
  cudaFree(d_parts);
  cudaFree(d_counter);
  cudaFree(d_out);
}

TEST(CudaEmulatorDeathTest, AThreadReturningWithCopiesInFlightIsReported) {
  EXPECT_DEATH(
      {
        int4* in = device_alloc<int4>(64);
        int* out = device_alloc<int>(96);
        launch_async_copy(in, out, 2);
        cudaDeviceSynchronize();
      },
      "a thread returned with asynchronous copies it never waited for");
}

TEST(CudaEmulator, TimingAnEventNotYetReachedIsNotReady) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  cudaEvent_t a = nullptr, b = nullptr;
  ASSERT_EQ(cudaEventCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&b), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(a, s), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(b, s), cudaSuccess);
  float ms = -1;
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaErrorNotReady);
  ASSERT_EQ(cudaEventSynchronize(b), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  cudaGetLastError();
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(s);
}

// The GPU's launch limits: at most 1024 threads, and dynamic shared memory beyond 48 KiB only after
// cudaFuncSetAttribute (up to the opt-in maximum).
TEST(CudaEmulator, LaunchesBeyondTheLimitsFail) {
  EXPECT_EQ(launch_empty(1024, 0, false), cudaSuccess);
  EXPECT_EQ(launch_empty(2048, 0, false), cudaErrorInvalidConfiguration);
  EXPECT_EQ(launch_empty(128, 64 << 10, false), cudaErrorInvalidValue);
  EXPECT_EQ(launch_empty(128, 64 << 10, true), cudaSuccess);
  EXPECT_EQ(launch_empty(128, 256 << 10, true), cudaErrorInvalidValue);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(CudaEmulator, CopiesMustMatchTheirKindAndMemoryIsBounded) {
  int host = 0;
  int* d = device_alloc<int>(1);
  EXPECT_EQ(cudaMemcpy(&host, &host, sizeof(int), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, &host, 2 * sizeof(int), cudaMemcpyHostToDevice), cudaErrorInvalidValue);  // past its end
  size_t free_b = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total), cudaSuccess);
  void* too_big = nullptr;
  EXPECT_EQ(cudaMalloc(&too_big, free_b + 1), cudaErrorMemoryAllocation);
  cudaGetLastError();
  cudaFree(d);
}

// Without MOE_CUDA_EMULATOR=1 the emulator is a machine without a GPU.
TEST(CudaEmulator, HiddenUnlessEnabled) {
  const std::string was = std::getenv("MOE_CUDA_EMULATOR") ? std::getenv("MOE_CUDA_EMULATOR") : "";
  unsetenv("MOE_CUDA_EMULATOR");
  int n = -1;
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaErrorNoDevice);
  EXPECT_EQ(n, 0);
  setenv("MOE_CUDA_EMULATOR", was.c_str(), 1);
  cudaGetLastError();
}

}  // namespace
}  // namespace moe_emu::test
