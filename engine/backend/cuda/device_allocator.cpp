#include "engine/backend/cuda/device_allocator.h"

#include <cuda_runtime.h>

#include <cstdio>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/error.h"

namespace moe::cuda {
namespace {

std::string mib(size_t bytes) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1 << 20));
  return buf;
}

}  // namespace

const char* memory_part_name(MemoryPart p) {
  switch (p) {
    case MemoryPart::Embeddings: return "embeddings";
    case MemoryPart::Attention: return "attention";
    case MemoryPart::Router: return "router";
    case MemoryPart::RoutedExperts: return "routed experts";
    case MemoryPart::SharedExperts: return "shared experts";
    case MemoryPart::DenseMlp: return "dense mlp";
    case MemoryPart::Norms: return "norms";
    case MemoryPart::Head: return "head";
    case MemoryPart::KvCache: return "kv cache";
    case MemoryPart::Activations: return "activations";
    case MemoryPart::Workspace: return "workspace";
  }
  return "?";
}

DeviceAllocator::~DeviceAllocator() {
  for (auto& [p, b] : blocks_) cudaFree(p);
}

void* DeviceAllocator::allocate(size_t bytes, MemoryPart part, int layer, const std::string& what) {
  bytes = (std::max<size_t>(bytes, 1) + 255) & ~size_t(255);
  MOE_CUDA_CHECK(cudaSetDevice(device_));
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    const Info info = device_info();
    std::string msg = "could not allocate " + mib(bytes) + " for " + what;
    if (layer >= 0) msg += " (layer " + std::to_string(layer) + ")";
    msg += ": " + std::string(cudaGetErrorString(e)) + "; the GPU has " + mib(info.free) + " free of " + mib(info.total) +
           ", this backend already holds " + mib(held_);
    throw EngineError("", "out of memory", msg);
  }
  blocks_[p] = Block{bytes, part, layer};
  by_part_layer_[{int(part), layer}] += bytes;
  held_ += bytes;
  return p;
}

void DeviceAllocator::release(void* p) {
  auto it = blocks_.find(p);
  if (it == blocks_.end()) return;
  const Block& b = it->second;
  auto& n = by_part_layer_[{int(b.part), b.layer}];
  n -= b.bytes;
  if (n == 0) by_part_layer_.erase({int(b.part), b.layer});
  held_ -= b.bytes;
  cudaFree(p);
  blocks_.erase(it);
}

size_t DeviceAllocator::bytes(MemoryPart part) const {
  size_t n = 0;
  for (const auto& [key, b] : by_part_layer_)
    if (key.first == int(part)) n += b;
  return n;
}

std::vector<MemoryUse> DeviceAllocator::uses() const {
  std::vector<MemoryUse> out;
  for (const auto& [key, b] : by_part_layer_) out.push_back({memory_part_name(MemoryPart(key.first)), key.second, b});
  return out;
}

DeviceAllocator::Info DeviceAllocator::device_info() const {
  Info i;
  int current = 0;
  if (cudaGetDevice(&current) == cudaSuccess && current != device_) cudaSetDevice(device_);
  if (cudaMemGetInfo(&i.free, &i.total) != cudaSuccess) cudaGetLastError();
  return i;
}

}  // namespace moe::cuda
