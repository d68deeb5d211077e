// What every backend shares: device names, the memory report of a backend without its own, and the
// checks of a forward call's input.
#include <string>

#include "engine/backend/backend.h"
#include "engine/common/error.h"

namespace moe {

const char* device_name(Device d) {
  switch (d) {
    case Device::Auto: return "auto";
    case Device::Cpu: return "cpu";
    case Device::Cuda: return "cuda";
  }
  return "?";
}

bool parse_kv_dtype(const std::string& name, DType& out) {
  if (name == "f32") out = DType::F32;
  else if (name == "bf16") out = DType::BF16;
  else return false;
  return true;
}

bool parse_device(const std::string& name, Device& out) {
  for (Device d : {Device::Auto, Device::Cpu, Device::Cuda})
    if (name == device_name(d)) {
      out = d;
      return true;
    }
  return false;
}

size_t DeviceMemory::bytes_of(const std::string& part) const {
  size_t n = 0;
  for (const auto& u : uses)
    if (u.part == part) n += u.bytes;
  return n;
}

DeviceMemory Backend::device_memory() const {
  DeviceMemory m;
  m.device = "cpu";
  m.kv_used_bytes = size_t(cached()) * kv_cache_bytes_per_token();
  m.uses.push_back({"kv cache", -1, kv_cache_bytes_allocated()});
  m.uses.push_back({"workspace", -1, workspace_bytes()});
  return m;
}

void check_forward_input(std::span<const int32_t> tokens, int cached, int capacity, int vocab_size) {
  if (cached + int64_t(tokens.size()) > capacity)
    throw EngineError("", "context", "the context of " + std::to_string(cached + tokens.size()) +
                                         " tokens exceeds the KV cache capacity of " + std::to_string(capacity));
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab_size)
      throw EngineError("", "token id", "id " + std::to_string(t) + " is outside the vocabulary (" + std::to_string(vocab_size) + ")");
}

}  // namespace moe
