#include <cuda_runtime.h>

#include "engine/backend/cuda/device_probe.h"

namespace moe::cuda {

Probe probe_devices() {
  Probe p;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    p.problem = std::string("CUDA unavailable: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return p;
  }
  if (count == 0) {
    p.problem = "no CUDA device found";
    return p;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.sm_major = prop.major;
    d.sm_minor = prop.minor;
    d.total_bytes = prop.totalGlobalMem;
    if (cudaSetDevice(i) == cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_bytes = free_b;
    }
    p.devices.push_back(d);
  }
  if (p.devices.empty()) p.problem = "CUDA devices found but none could be queried";
  return p;
}

}  // namespace moe::cuda
