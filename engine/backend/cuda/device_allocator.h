#pragma once
// The one allocator every device allocation of the CUDA backend goes through. Each block is tagged by
// what it holds (weights of a layer by part, KV cache, activations, workspace), which is what the
// memory view draws; out of memory names what did not fit, how much, and what was already held.
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend/backend.h"

namespace moe::cuda {

enum class MemoryPart : int {
  Embeddings, Attention, Router, RoutedExperts, SharedExperts, DenseMlp, Norms, Head, KvCache, Activations, Workspace
};
const char* memory_part_name(MemoryPart part);  // the MemoryUse::part spelling

class DeviceAllocator {
 public:
  explicit DeviceAllocator(int device) : device_(device) {}
  ~DeviceAllocator();
  DeviceAllocator(const DeviceAllocator&) = delete;
  DeviceAllocator& operator=(const DeviceAllocator&) = delete;

  // `bytes` of device memory (256-byte aligned) for `what`, tagged (part, layer; layer −1 when not per
  // layer). Throws EngineError (field "out of memory") naming what did not fit.
  void* allocate(size_t bytes, MemoryPart part, int layer, const std::string& what);
  void release(void* p);  // a block this allocator gave (null: nothing)

  size_t bytes_held() const { return held_; }
  size_t bytes(MemoryPart part) const;
  std::vector<MemoryUse> uses() const;  // by (part, layer), in part order

  struct Info {
    size_t total = 0, free = 0;
  };
  Info device_info() const;  // cudaMemGetInfo on this allocator's device

 private:
  struct Block {
    size_t bytes = 0;
    MemoryPart part = MemoryPart::Workspace;
    int layer = -1;
  };
  int device_ = 0;
  std::map<void*, Block> blocks_;
  std::map<std::pair<int, int>, size_t> by_part_layer_;
  size_t held_ = 0;
};

// A device buffer of n elements of T from the allocator, released with the object.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceAllocator& a, size_t n, MemoryPart part, int layer, const std::string& what)
      : a_(&a), n_(n), p_(static_cast<T*>(a.allocate(std::max<size_t>(1, n) * sizeof(T), part, layer, what))) {}
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      std::swap(a_, o.a_);
      std::swap(n_, o.n_);
      std::swap(p_, o.p_);
    }
    return *this;
  }
  void reset() {
    if (a_ && p_) a_->release(p_);
    a_ = nullptr;
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  DeviceAllocator* a_ = nullptr;
  size_t n_ = 0;
  T* p_ = nullptr;
};

}  // namespace moe::cuda
