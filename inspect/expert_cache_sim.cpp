#include "inspect/expert_cache_sim.h"

#include <algorithm>
#include <set>
#include <tuple>

namespace moe::inspect {
namespace {

// Resident experts ordered by eviction preference: the first element is the policy's victim.
// Key: (uses, last use, id). LRU keeps uses at 0 so only recency counts; last-use stamps are unique,
// so the order is total and the simulation deterministic.
using EvictionKey = std::tuple<int64_t, int64_t, int32_t>;

class LayerCache {
 public:
  LayerCache(int n_experts, int capacity, CachePolicy policy)
      : n_experts_(n_experts), capacity_(std::max(0, capacity)), policy_(policy),
        resident_(size_t(n_experts), false), seen_(size_t(n_experts), false), uses_(size_t(n_experts), 0),
        last_use_(size_t(n_experts), 0), token_mark_(size_t(n_experts), -1), accessed_mark_(size_t(n_experts), -1) {}

  void run_token(int64_t token, const std::vector<int32_t>& experts, ExpertCacheResult& out) {
    // Mark the whole set first so that a miss early in the token cannot evict an expert the same
    // token still needs.
    for (int32_t e : experts)
      if (e >= 0 && e < n_experts_) token_mark_[size_t(e)] = token;
    for (int32_t e : experts) {
      if (e < 0 || e >= n_experts_ || accessed_mark_[size_t(e)] == token) continue;  // invalid or repeated
      accessed_mark_[size_t(e)] = token;
      access(token, e, out);
    }
  }

 private:
  EvictionKey key_of(int32_t e) const {
    return {policy_ == CachePolicy::Lru ? 0 : uses_[size_t(e)], last_use_[size_t(e)], e};
  }

  void access(int64_t token, int32_t e, ExpertCacheResult& out) {
    const size_t i = size_t(e);
    out.accesses += 1;
    ++clock_;
    if (resident_[i]) {
      out.hits += 1;
      order_.erase(key_of(e));
      uses_[i] += 1;
      last_use_[i] = clock_;
      order_.insert(key_of(e));
      return;
    }
    out.misses += 1;
    if (!seen_[i]) out.compulsory_misses += 1;
    seen_[i] = true;
    // Global LFU remembers uses across evictions; the since-insertion variant starts each stay afresh.
    uses_[i] = policy_ == CachePolicy::LfuSinceInsertion ? 1 : uses_[i] + 1;
    last_use_[i] = clock_;
    if (capacity_ == 0) return;  // fetched for this token and dropped
    if (int(order_.size()) >= capacity_) evict(token);
    resident_[i] = true;
    order_.insert(key_of(e));
  }

  void evict(int64_t token) {
    auto victim = order_.begin();
    while (victim != order_.end() && token_mark_[size_t(std::get<2>(*victim))] == token) ++victim;
    if (victim == order_.end()) victim = order_.begin();  // the cache holds only this token's experts
    resident_[size_t(std::get<2>(*victim))] = false;
    order_.erase(victim);
  }

  int n_experts_;
  int capacity_;
  CachePolicy policy_;
  int64_t clock_ = 0;
  std::vector<bool> resident_, seen_;
  std::vector<int64_t> uses_, last_use_;
  std::vector<int64_t> token_mark_;     // token that needs the expert most recently
  std::vector<int64_t> accessed_mark_;  // token that already accessed it (to skip repeated ids)
  std::set<EvictionKey> order_;
};

}  // namespace

ExpertCacheResult simulate_expert_cache(std::span<const std::vector<int32_t>> token_experts, int n_experts,
                                        int capacity, CachePolicy policy, uint64_t expert_bytes) {
  ExpertCacheResult out;
  out.policy = policy;
  out.capacity = std::max(0, capacity);
  LayerCache cache(std::max(0, n_experts), capacity, policy);
  for (size_t t = 0; t < token_experts.size(); ++t) cache.run_token(int64_t(t), token_experts[t], out);
  out.bytes_moved = uint64_t(out.misses) * expert_bytes;
  return out;
}

std::vector<ExpertCacheResult> simulate_expert_cache_layers(std::span<const std::vector<std::vector<int32_t>>> layers,
                                                            int n_experts, int capacity, CachePolicy policy,
                                                            uint64_t expert_bytes) {
  std::vector<ExpertCacheResult> results;
  results.reserve(layers.size());
  for (const auto& layer : layers)
    results.push_back(simulate_expert_cache(layer, n_experts, capacity, policy, expert_bytes));
  return results;
}

ExpertCacheResult total_expert_cache(std::span<const ExpertCacheResult> per_layer) {
  ExpertCacheResult total;
  if (!per_layer.empty()) {
    total.policy = per_layer.front().policy;
    total.capacity = per_layer.front().capacity;
  }
  for (const ExpertCacheResult& r : per_layer) {
    total.accesses += r.accesses;
    total.hits += r.hits;
    total.misses += r.misses;
    total.compulsory_misses += r.compulsory_misses;
    total.bytes_moved += r.bytes_moved;
  }
  return total;
}

std::vector<ExpertCacheResult> sweep_expert_cache(std::span<const std::vector<std::vector<int32_t>>> layers,
                                                  int n_experts, std::span<const int> capacities, CachePolicy policy,
                                                  uint64_t expert_bytes) {
  std::vector<ExpertCacheResult> curve;
  curve.reserve(capacities.size());
  for (int capacity : capacities) {
    const std::vector<ExpertCacheResult> per_layer =
        simulate_expert_cache_layers(layers, n_experts, capacity, policy, expert_bytes);
    ExpertCacheResult total = total_expert_cache(per_layer);
    total.policy = policy;  // also right when there are no layers
    total.capacity = std::max(0, capacity);
    curve.push_back(total);
  }
  return curve;
}

}  // namespace moe::inspect
