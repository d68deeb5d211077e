#pragma once
// Sizing a StepRecord for what the observer asked (shared by the backends, so a CPU and a GPU record of
// the same step have the same arrays): labels copied from the tags, asked-for arrays sized and zeroed
// (routing ids −1), the rest cleared, attention rows kept in place so their buffers keep capacity.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/hooks/step_observer.h"

namespace moe {

struct ModelSpec;

struct RecordShape {
  const ModelSpec* spec = nullptr;
  const std::vector<int>* moe_layers = nullptr;  // layer index of each MoE ordinal
  int slots = 0;                                 // routing slots per token (the largest k in force)
  bool has_shared_gate = false;                  // some MoE layer gates its shared expert
  int first_position = 0;                        // tokens cached before the step
};

// tokens: this step's ids; tags/offset: the forward call's tags and where this step starts in them.
void prepare_step_record(StepRecord& record, const HookRequest& request, const RecordShape& shape,
                         std::span<const int32_t> tokens, const StepTags& tags, size_t offset);

}  // namespace moe
