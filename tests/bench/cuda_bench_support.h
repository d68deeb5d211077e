#pragma once
// Shared by the CUDA kernel benchmarks (cuda_prefill_bench, cuda_decode_bench): integer options, device
// buffers, and timing with CUDA events (best and median of several runs after a warm-up).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "engine/backend/cuda/cuda_check.h"

namespace moe::cuda::bench {

// `--name value` pairs, every value a positive integer; anything else exits with status 2.
inline void parse_flags(int argc, char** argv, const char* program, std::vector<std::pair<const char*, int*>> flags) {
  for (int i = 1; i < argc; ++i) {
    bool known = false;
    for (const auto& [name, value] : flags)
      if (std::strcmp(argv[i], name) == 0 && i + 1 < argc) {
        *value = std::atoi(argv[++i]);
        known = true;
      }
    bool positive = true;
    for (const auto& flag : flags) positive = positive && *flag.second > 0;
    if (!known || !positive) {
      std::fprintf(stderr, "%s: bad option %s (all options take a positive integer)\n", program, argv[i]);
      std::exit(2);
    }
  }
}

// Device memory freed with the object.
struct Buffer {
  void* p = nullptr;
  explicit Buffer(size_t bytes) { MOE_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 1))); }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

struct Timing {
  double best_ms = 0, median_ms = 0;
};

// One warm-up, then `repeats` timed runs of `work` (which enqueues on `stream`).
inline Timing time_it(int repeats, const std::function<void()>& work, cudaStream_t stream = nullptr) {
  cudaEvent_t start, stop;
  MOE_CUDA_CHECK(cudaEventCreate(&start));
  MOE_CUDA_CHECK(cudaEventCreate(&stop));
  work();
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    MOE_CUDA_CHECK(cudaEventRecord(start, stream));
    work();
    MOE_CUDA_CHECK(cudaEventRecord(stop, stream));
    MOE_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    MOE_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(double(t));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return {ms.front(), ms[ms.size() / 2]};
}

}  // namespace moe::cuda::bench
