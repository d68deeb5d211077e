#pragma once
// Expert-cache what-if for offloading: if only `capacity` experts of each MoE layer stay on the GPU and
// the rest are fetched from host memory when a token needs them, how often does a token find its
// experts resident, and how many bytes cross the bus? Replays the routing of a trace through LRU and
// LFU caches, one cache per layer, as an engineer sizing an offloading setup would ask.
//
// Model of a step, per layer and token: the token's experts are one set (an id listed twice is needed
// once); each is a hit if resident, otherwise a miss that copies expert_bytes to the GPU and inserts
// it, evicting a victim when the cache is full. The victim is never one of the token's own experts
// while any other is resident: they are computed together, so an engine would not drop one it has
// just fetched for the same step. Caches start empty, so the first use of every expert is a miss
// (reported apart as compulsory_misses, for readers who want the warm-cache rate).
#include <cstdint>
#include <span>
#include <vector>

namespace moe::inspect {

enum class CachePolicy {
  Lru,  // evict the expert used least recently
  // Evict the expert with the fewest uses; ties go to the one used least recently. Uses are counted
  // over the whole trace so far, including while the expert was not resident ("perfect" LFU): an
  // expert that is popular overall is kept once it has been fetched again. Counting only since
  // insertion instead makes every newcomer the next victim, which freezes the cache on whichever
  // experts came first; that variant is LfuSinceInsertion, for comparison.
  Lfu,
  LfuSinceInsertion,
};

struct ExpertCacheResult {
  CachePolicy policy = CachePolicy::Lru;
  int capacity = 0;               // experts kept per layer
  int64_t accesses = 0;           // expert uses (distinct experts per token, summed over tokens and layers)
  int64_t hits = 0;
  int64_t misses = 0;             // accesses - hits
  int64_t compulsory_misses = 0;  // first use of an expert in a layer; no cache size avoids these
  uint64_t bytes_moved = 0;       // misses * expert_bytes: host-to-GPU copies
  double hit_rate() const { return accesses ? double(hits) / double(accesses) : 0.0; }
};

// One layer: token_experts[t] holds the expert ids token t selected in that layer. Ids outside
// [0, n_experts) are ignored. A capacity of 0 means nothing is kept: every access is a miss.
ExpertCacheResult simulate_expert_cache(std::span<const std::vector<int32_t>> token_experts, int n_experts,
                                        int capacity, CachePolicy policy, uint64_t expert_bytes);

// Every layer with its own cache of the same capacity; layers[l][t] = experts of token t in layer l.
// Returns one result per layer.
std::vector<ExpertCacheResult> simulate_expert_cache_layers(std::span<const std::vector<std::vector<int32_t>>> layers,
                                                            int n_experts, int capacity, CachePolicy policy,
                                                            uint64_t expert_bytes);

// Sum of per-layer results (same policy and capacity) into one line for the whole model.
ExpertCacheResult total_expert_cache(std::span<const ExpertCacheResult> per_layer);

// The whole-model totals for each capacity in turn: the curve of hit rate and bytes moved against the
// GPU memory spent on experts.
std::vector<ExpertCacheResult> sweep_expert_cache(std::span<const std::vector<std::vector<int32_t>>> layers,
                                                  int n_experts, std::span<const int> capacities, CachePolicy policy,
                                                  uint64_t expert_bytes);

}  // namespace moe::inspect
