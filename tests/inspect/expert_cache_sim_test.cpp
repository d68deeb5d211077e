// Expert-cache what-if replayed by hand: every hit, miss and eviction of the fixtures is written out.
#include <gtest/gtest.h>

#include <vector>

#include "inspect/expert_cache_sim.h"

namespace moe::inspect {
namespace {

using Tokens = std::vector<std::vector<int32_t>>;
constexpr uint64_t kExpertBytes = 1000;

// Four experts, top-2: t0 {0,1}, t1 {0,2}, t2 {0,1}, t3 {3,0}, t4 {1,2}.
const Tokens kTopTwo = {{0, 1}, {0, 2}, {0, 1}, {3, 0}, {1, 2}};

// Top-1: X X X Y Y Y, then Z W five times (X=0, Y=1, Z=2, W=3).
const Tokens kPopularThenAlternating = {{0}, {0}, {0}, {1}, {1}, {1}, {2}, {3}, {2}, {3},
                                        {2}, {3}, {2}, {3}, {2}, {3}};

TEST(ExpertCacheSim, LruProtectsTheTokensOwnExperts) {
  // Capacity 2, LRU (resident set after each token, most recent last):
  //   t0 {0,1}: 0 miss, 1 miss                                   -> {0,1}
  //   t1 {0,2}: 0 hit; 2 miss, evict 1 (least recent)             -> {0,2}
  //   t2 {0,1}: 0 hit; 1 miss, evict 2                            -> {0,1}
  //   t3 {3,0}: 3 miss; least recent is 0, but t3 needs it: evict 1 -> {0,3}; then 0 hit
  //   t4 {1,2}: 1 miss, evict 3 -> {0,1}; 2 miss, evict 0 (1 is t4's) -> {1,2}
  // 10 accesses, 3 hits, 7 misses; the first use of 0, 1, 2, 3 = 4 compulsory misses.
  // (Without the protection t3 would evict 0 and miss on it straight after: 2 hits.)
  const ExpertCacheResult r = simulate_expert_cache(kTopTwo, 4, 2, CachePolicy::Lru, kExpertBytes);
  EXPECT_EQ(r.policy, CachePolicy::Lru);
  EXPECT_EQ(r.capacity, 2);
  EXPECT_EQ(r.accesses, 10);
  EXPECT_EQ(r.hits, 3);
  EXPECT_EQ(r.misses, 7);
  EXPECT_EQ(r.compulsory_misses, 4);
  EXPECT_EQ(r.bytes_moved, 7 * kExpertBytes);
  EXPECT_DOUBLE_EQ(r.hit_rate(), 0.3);
}

TEST(ExpertCacheSim, LfuOnTopTwoFixture) {
  // Capacity 2, global LFU, key (uses, last use):
  //   t0: 0 miss (u1), 1 miss (u1)                                         -> {0:1, 1:1}
  //   t1: 0 hit (u2); 2 miss (u1): victims 1 (1 use) before 0 (2)          -> {0:2, 2:1}
  //   t2: 0 hit (u3); 1 miss (u2): evict 2 (1 use)                         -> {0:3, 1:2}
  //   t3: 3 miss (u1): 1 has fewer uses than 0 and 0 is t3's anyway: evict 1 -> {0:3, 3:1}; 0 hit (u4)
  //   t4: 1 miss (u3): evict 3 (1 use) -> {0:4, 1:3}; 2 miss (u2): 1 is t4's, evict 0 -> {1:3, 2:2}
  // 3 hits, 7 misses.
  const ExpertCacheResult r = simulate_expert_cache(kTopTwo, 4, 2, CachePolicy::Lfu, kExpertBytes);
  EXPECT_EQ(r.hits, 3);
  EXPECT_EQ(r.misses, 7);
  EXPECT_EQ(r.compulsory_misses, 4);
}

TEST(ExpertCacheSim, LruAgainstBothLfuCountings) {
  // Capacity 2, 16 accesses; X X X Y Y Y gives 2 misses and 4 hits under every policy (-> {X:3, Y:3}).
  // LRU: Z evicts X, W evicts Y -> {Z, W}; the remaining 8 accesses hit. 4 misses, 12 hits.
  const ExpertCacheResult lru = simulate_expert_cache(kPopularThenAlternating, 4, 2, CachePolicy::Lru, kExpertBytes);
  EXPECT_EQ(lru.hits, 12);
  EXPECT_EQ(lru.misses, 4);
  // Global LFU (uses survive eviction; ties to the least recent):
  //   Z1 evicts X (3 uses, tie with Y, X older)  {Y3, Z1}
  //   W1 evicts Z1 {Y3, W1};  Z2 evicts W1 {Y3, Z2};  W2 evicts Z2 {Y3, W2};  Z3 evicts W2 {Y3, Z3}
  //   W3: Y3 and Z3 tie, Y is older: evict Y -> {Z3, W3}; the last 4 accesses hit.
  //   Z/W: 6 misses, 4 hits; total 8 misses, 8 hits.
  const ExpertCacheResult lfu = simulate_expert_cache(kPopularThenAlternating, 4, 2, CachePolicy::Lfu, kExpertBytes);
  EXPECT_EQ(lfu.hits, 8);
  EXPECT_EQ(lfu.misses, 8);
  // LFU counting since insertion: every newcomer has 1 use and is the next victim, so Z and W evict each
  // other forever beside Y (3 uses): all 10 Z/W accesses miss. 12 misses, 4 hits.
  const ExpertCacheResult fresh =
      simulate_expert_cache(kPopularThenAlternating, 4, 2, CachePolicy::LfuSinceInsertion, kExpertBytes);
  EXPECT_EQ(fresh.hits, 4);
  EXPECT_EQ(fresh.misses, 12);
  for (const auto& r : {lru, lfu, fresh}) {
    EXPECT_EQ(r.accesses, 16);
    EXPECT_EQ(r.compulsory_misses, 4);
    EXPECT_EQ(r.bytes_moved, uint64_t(r.misses) * kExpertBytes);
  }
}

TEST(ExpertCacheSim, LfuKeepsTheFrequentExpertThatLruDrops) {
  // Capacity 2, top-1: A A A B C A.
  // LRU: {A,B}; C evicts A (least recent) -> A misses again: 2 hits, 4 misses.
  // LFU: C evicts B (1 use against A's 3) -> A hits: 3 hits, 3 misses.
  const Tokens tokens = {{0}, {0}, {0}, {1}, {2}, {0}};
  EXPECT_EQ(simulate_expert_cache(tokens, 3, 2, CachePolicy::Lru, 1).hits, 2);
  EXPECT_EQ(simulate_expert_cache(tokens, 3, 2, CachePolicy::Lfu, 1).hits, 3);
  EXPECT_EQ(simulate_expert_cache(tokens, 3, 2, CachePolicy::LfuSinceInsertion, 1).hits, 3);
}

TEST(ExpertCacheSim, CapacityZeroMissesEverything) {
  for (CachePolicy policy : {CachePolicy::Lru, CachePolicy::Lfu, CachePolicy::LfuSinceInsertion}) {
    const ExpertCacheResult r = simulate_expert_cache(kTopTwo, 4, 0, policy, kExpertBytes);
    EXPECT_EQ(r.accesses, 10);
    EXPECT_EQ(r.hits, 0);
    EXPECT_EQ(r.misses, 10);
    EXPECT_EQ(r.compulsory_misses, 4);
    EXPECT_EQ(r.bytes_moved, 10 * kExpertBytes);
    EXPECT_DOUBLE_EQ(r.hit_rate(), 0.0);
  }
}

TEST(ExpertCacheSim, CapacityOfAllExpertsMissesOnlyOnFirstUse) {
  for (CachePolicy policy : {CachePolicy::Lru, CachePolicy::Lfu, CachePolicy::LfuSinceInsertion}) {
    for (int capacity : {4, 5, 100}) {
      const ExpertCacheResult r = simulate_expert_cache(kTopTwo, 4, capacity, policy, kExpertBytes);
      // Four distinct experts: 4 misses, 6 hits, whatever the policy.
      EXPECT_EQ(r.misses, 4);
      EXPECT_EQ(r.compulsory_misses, 4);
      EXPECT_EQ(r.hits, 6);
      EXPECT_EQ(r.bytes_moved, 4 * kExpertBytes);
    }
  }
}

TEST(ExpertCacheSim, CapacityBelowTopKStillRuns) {
  // Capacity 1, LRU: t0 {0,1,2}: 0 miss; 1 miss, only t0's own 0 is resident so it goes; 2 miss, evict 1.
  // t1 {2}: hit. 4 accesses, 1 hit.
  const Tokens tokens = {{0, 1, 2}, {2}};
  const ExpertCacheResult r = simulate_expert_cache(tokens, 3, 1, CachePolicy::Lru, kExpertBytes);
  EXPECT_EQ(r.accesses, 4);
  EXPECT_EQ(r.hits, 1);
  EXPECT_EQ(r.misses, 3);
}

TEST(ExpertCacheSim, RepeatedAndInvalidIdsAndEmptyTrace) {
  // {1, 1, 9, -1}: one access (1 listed twice is needed once; 9 and -1 are not experts).
  const Tokens tokens = {{1, 1, 9, -1}, {1}};
  const ExpertCacheResult r = simulate_expert_cache(tokens, 2, 1, CachePolicy::Lru, kExpertBytes);
  EXPECT_EQ(r.accesses, 2);
  EXPECT_EQ(r.hits, 1);
  EXPECT_EQ(r.misses, 1);
  const ExpertCacheResult empty = simulate_expert_cache({}, 4, 2, CachePolicy::Lfu, kExpertBytes);
  EXPECT_EQ(empty.accesses, 0);
  EXPECT_EQ(empty.bytes_moved, 0u);
  EXPECT_DOUBLE_EQ(empty.hit_rate(), 0.0);
}

TEST(ExpertCacheSim, LayersTotalsAndSweep) {
  // Layer 0 = kTopTwo, layer 1 = kPopularThenAlternating (ids within 4 experts), one cache each.
  const std::vector<Tokens> layers = {kTopTwo, kPopularThenAlternating};
  const std::vector<ExpertCacheResult> per_layer =
      simulate_expert_cache_layers(layers, 4, 2, CachePolicy::Lru, kExpertBytes);
  ASSERT_EQ(per_layer.size(), 2u);
  EXPECT_EQ(per_layer[0].hits, 3);   // from LruProtectsTheTokensOwnExperts
  EXPECT_EQ(per_layer[1].hits, 12);  // from LruAgainstBothLfuCountings
  const ExpertCacheResult total = total_expert_cache(per_layer);
  EXPECT_EQ(total.accesses, 26);
  EXPECT_EQ(total.hits, 15);
  EXPECT_EQ(total.misses, 11);
  EXPECT_EQ(total.compulsory_misses, 8);
  EXPECT_EQ(total.bytes_moved, 11 * kExpertBytes);

  // Capacity 0: all 26 miss. 2: as above. 4: only the 8 first uses miss.
  const std::vector<int> capacities = {0, 2, 4};
  const std::vector<ExpertCacheResult> curve = sweep_expert_cache(layers, 4, capacities, CachePolicy::Lru, kExpertBytes);
  ASSERT_EQ(curve.size(), 3u);
  EXPECT_EQ(curve[0].capacity, 0);
  EXPECT_EQ(curve[0].misses, 26);
  EXPECT_EQ(curve[0].bytes_moved, 26 * kExpertBytes);
  EXPECT_EQ(curve[1].capacity, 2);
  EXPECT_EQ(curve[1].hits, 15);
  EXPECT_EQ(curve[2].capacity, 4);
  EXPECT_EQ(curve[2].misses, 8);
  EXPECT_DOUBLE_EQ(curve[2].hit_rate(), 18.0 / 26.0);
  // No layers: zeros, but the curve still names its capacities and policy.
  const std::vector<ExpertCacheResult> none = sweep_expert_cache({}, 4, capacities, CachePolicy::Lfu, kExpertBytes);
  ASSERT_EQ(none.size(), 3u);
  EXPECT_EQ(none[1].capacity, 2);
  EXPECT_EQ(none[1].policy, CachePolicy::Lfu);
  EXPECT_EQ(none[1].accesses, 0);
}

}  // namespace
}  // namespace moe::inspect
