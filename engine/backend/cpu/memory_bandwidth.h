#pragma once
// A STREAM-style measurement of the machine's sustainable memory read bandwidth, so that moe-bench can
// print achieved GB/s beside what this machine can do (the roofline for batch-1 decode).
#include <cstddef>

#include "engine/backend/cpu/thread_pool.h"

namespace moe::cpu {

struct BandwidthResult {
  double read_gbps = 0;   // a pure read (sum reduction) over a buffer much larger than the caches
  double triad_gbps = 0;  // STREAM triad a = b + s·c, counting 3 arrays of traffic (2 read, 1 write)
  size_t buffer_bytes = 0;
  int threads = 0;
};

// Runs each kernel `repeats` times over buffers of `bytes` each and keeps the best time (STREAM rule).
BandwidthResult measure_memory_bandwidth(ThreadPool& pool, size_t bytes = size_t(256) << 20, int repeats = 5);

}  // namespace moe::cpu
