#pragma once
// Which NVIDIA GPUs this process can use, or why none: no driver, a driver older than the runtime, no
// device. Never throws and never aborts, so a machine without a GPU simply runs on the CPU.
#include <cstddef>
#include <string>
#include <vector>

namespace moe::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  size_t total_bytes = 0;
  size_t free_bytes = 0;
};

struct Probe {
  std::vector<DeviceInfo> devices;
  std::string problem;  // why there is no usable device (empty when devices is not empty)
};

Probe probe_devices();

}  // namespace moe::cuda
