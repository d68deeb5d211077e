#include "app/gui/memory_sample.h"

#include <string_view>

namespace moe::app {

namespace {

// Where a backend part goes in the sample (backend.h lists the parts).
uint64_t* part_field(views::MemorySample& s, std::string_view part) {
  if (part == "embeddings") return &s.embedding_bytes;
  if (part == "attention") return &s.attention_bytes;
  if (part == "routed experts") return &s.routed_expert_bytes;
  if (part == "shared experts") return &s.shared_expert_bytes;
  if (part == "router" || part == "dense mlp" || part == "norms" || part == "head") return &s.other_weight_bytes;
  if (part == "kv cache") return &s.kv_allocated_bytes;
  if (part == "activations") return &s.activation_bytes;
  // Unknown parts too: the workspace is drawn from the sample on every backend, where an unknown weight
  // part would vanish on the CPU (whose weights the view takes from the model description).
  return &s.workspace_bytes;
}

}  // namespace

views::MemorySample memory_sample(const DeviceMemory& memory, bool gpu) {
  views::MemorySample s;
  for (const MemoryUse& use : memory.uses) *part_field(s, use.part) += use.bytes;
  s.kv_used_bytes = memory.kv_used_bytes;
  s.gpu = gpu;
  s.device = memory.device;
  s.device_total_bytes = memory.total_bytes;
  s.device_free_bytes = memory.free_bytes;
  s.other_process_bytes = memory.other_bytes;
  return s;
}

}  // namespace moe::app
