#pragma once
// Expert load: how many tokens each MoE layer sent to each expert, and the gate weight they carried.
// Fed by the engine's routing records (it is a StepObserver), read by the CLI and the views.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/hooks/step_observer.h"
#include "inspect/routing_stats.h"

namespace moe::inspect {

class ExpertLoad : public StepObserver {
 public:
  // moe_layers: the layer index of every MoE layer (rows of the tables), n_experts: columns.
  ExpertLoad(std::vector<int> moe_layers, int n_experts);

  // As an observer it asks for routing only, and adds every token of every step.
  HookRequest ask() const override;
  void observe(const StepRecord& record) override;
  // One token's decision in one layer (ids of -1 or out of range are skipped; layers not tracked too).
  void add(int layer, std::span<const int32_t> experts, std::span<const float> weights);

  int n_experts() const { return n_experts_; }
  const std::vector<int>& layers() const { return layers_; }
  int64_t tokens(int row) const { return tokens_[size_t(row)]; }      // tokens routed in that layer
  int64_t count(int row, int expert) const { return counts_[size_t(row) * size_t(n_experts_) + size_t(expert)]; }
  double weight(int row, int expert) const { return weights_[size_t(row) * size_t(n_experts_) + size_t(expert)]; }
  // Share of the layer's selections that went to the expert (sums to 1 over experts once any token ran).
  double share(int row, int expert) const;
  // Coefficient of variation (std/mean) of the counts of a layer; 0 = perfectly balanced.
  double coefficient_of_variation(int row) const;
  // Experts of a layer that no token selected.
  int dead_experts(int row) const;
  // Every load measure of the layer's counts (routing_stats.h).
  LoadMeasures measures(int row) const;
  void clear();

 private:
  int row_of(int layer) const;
  std::vector<int> layers_;
  int n_experts_;
  std::vector<int64_t> tokens_;
  std::vector<int64_t> counts_;
  std::vector<double> weights_;
};

}  // namespace moe::inspect
