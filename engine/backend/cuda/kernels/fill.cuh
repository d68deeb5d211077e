#pragma once
// Random weights made on the GPU (--synthetic): real shapes profiled without their files and without
// copying tens of GiB over PCIe. Values are uniform in ±scale from a counter-based hash of (seed,
// index), so they do not depend on the launch configuration.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "engine/common/dtype.h"

namespace moe::cuda {

// count values of dtype F32, F16, BF16 (uniform in ±scale) or MXFP4_GGML (random codes; count a multiple of 32).
// Throws EngineError for any other dtype.
void fill_random(void* data, DType dtype, size_t count, uint64_t seed, float scale, cudaStream_t stream);
void fill_value(float* data, size_t count, float value, cudaStream_t stream);

// Device memory bandwidth in GB/s (10⁹ bytes/s): the best of a few passes of a kernel that reads one
// buffer of `bytes` and writes another (bytes moved = 2 · bytes). Synchronises; for moe-bench.
double measure_device_bandwidth(size_t bytes);

}  // namespace moe::cuda
