#include "inspect/expert_load.h"

#include <algorithm>

namespace moe::inspect {

ExpertLoad::ExpertLoad(std::vector<int> moe_layers, int n_experts)
    : layers_(std::move(moe_layers)), n_experts_(n_experts) {
  clear();
}

void ExpertLoad::clear() {
  tokens_.assign(layers_.size(), 0);
  counts_.assign(layers_.size() * size_t(n_experts_), 0);
  weights_.assign(layers_.size() * size_t(n_experts_), 0.0);
}

int ExpertLoad::row_of(int layer) const {
  auto it = std::find(layers_.begin(), layers_.end(), layer);
  return it == layers_.end() ? -1 : int(it - layers_.begin());
}

HookRequest ExpertLoad::ask() const {
  HookRequest r;
  r.routing = true;
  return r;
}

void ExpertLoad::observe(const StepRecord& rec) {
  if (!rec.has_routing()) return;
  const size_t M = rec.moe_layers.size(), K = size_t(rec.top_k);
  for (int t = 0; t < rec.n_tokens; ++t)
    for (size_t m = 0; m < M; ++m) {
      const size_t at = (size_t(t) * M + m) * K;
      add(rec.moe_layers[m], std::span<const int32_t>(&rec.expert_ids[at], K), std::span<const float>(&rec.expert_weights[at], K));
    }
}

void ExpertLoad::add(int layer, std::span<const int32_t> experts, std::span<const float> weights) {
  const int row = row_of(layer);
  if (row < 0) return;
  tokens_[size_t(row)] += 1;
  for (size_t j = 0; j < experts.size(); ++j) {
    const int32_t e = experts[j];
    if (e < 0 || e >= n_experts_) continue;
    counts_[size_t(row) * size_t(n_experts_) + size_t(e)] += 1;
    weights_[size_t(row) * size_t(n_experts_) + size_t(e)] += j < weights.size() ? weights[j] : 0.0;
  }
}

double ExpertLoad::share(int row, int expert) const {
  int64_t total = 0;
  for (int e = 0; e < n_experts_; ++e) total += count(row, e);
  return total ? double(count(row, expert)) / double(total) : 0.0;
}

LoadMeasures ExpertLoad::measures(int row) const {
  return load_measures(std::span<const int64_t>(&counts_[size_t(row) * size_t(n_experts_)], size_t(n_experts_)));
}

double ExpertLoad::coefficient_of_variation(int row) const { return measures(row).cv; }

int ExpertLoad::dead_experts(int row) const { return int(measures(row).dead_experts); }

}  // namespace moe::inspect
