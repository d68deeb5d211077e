#pragma once
// What a forward pass reports while it runs. Issue 2 needs only the routing decisions (to check them
// against transformers); the full hook protocol of DESIGN.md (ask/observe, levels) grows from here.
#include <cstdint>
#include <span>

namespace moe {

class StepObserver {
 public:
  virtual ~StepObserver() = default;
  // Asked once per forward call: does this observer want routing records? (Nothing is copied if not.)
  virtual bool wants_routing() const { return false; }
  // One MoE layer's decision for one token: expert ids in descending weight order and their weights
  // (after renormalisation and scaling, as applied to the expert outputs).
  // token_index counts from the first token of the forward call.
  virtual void on_routing(int layer, int token_index, std::span<const int32_t> experts, std::span<const float> weights) {}
};

}  // namespace moe
