// ExpertLoad against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "inspect/expert_load.h"

namespace moe::inspect {
namespace {

TEST(ExpertLoad, CountsSharesWeightsCvAndDeadExperts) {
  ExpertLoad load({0, 2}, 4);
  const float w[] = {0.6f, 0.4f};
  const int32_t t0[] = {0, 1}, t1[] = {0, 2}, t2[] = {0, 1};
  load.add(0, t0, w);
  load.add(0, t1, w);
  load.add(0, t2, w);
  // Layer 0 counts: expert 0 ×3, expert 1 ×2, expert 2 ×1, expert 3 ×0 (6 selections over 3 tokens).
  EXPECT_EQ(load.tokens(0), 3);
  EXPECT_EQ(load.count(0, 0), 3);
  EXPECT_EQ(load.count(0, 1), 2);
  EXPECT_EQ(load.count(0, 3), 0);
  EXPECT_DOUBLE_EQ(load.share(0, 0), 0.5);
  EXPECT_NEAR(load.weight(0, 0), 1.8, 1e-6);  // three times 0.6 as the first choice
  EXPECT_NEAR(load.weight(0, 1), 0.8, 1e-6);
  // mean 1.5; deviations 1.5, 0.5, -0.5, -1.5 → variance 1.25 → std 1.118; CV = 1.118 / 1.5.
  EXPECT_NEAR(load.coefficient_of_variation(0), std::sqrt(1.25) / 1.5, 1e-12);
  EXPECT_EQ(load.dead_experts(0), 1);
  // Layer 2 saw nothing: no load, CV 0, every expert dead.
  EXPECT_EQ(load.tokens(1), 0);
  EXPECT_DOUBLE_EQ(load.share(1, 0), 0.0);
  EXPECT_DOUBLE_EQ(load.coefficient_of_variation(1), 0.0);
  EXPECT_EQ(load.dead_experts(1), 4);
}

TEST(ExpertLoad, IgnoresLayersAndExpertsItDoesNotTrack) {
  ExpertLoad load({1}, 2);
  const float w[] = {1.0f};
  const int32_t bad[] = {7}, ok[] = {1};
  load.add(0, ok, w);   // not a tracked layer
  load.add(1, bad, w);  // expert id out of range
  load.add(1, ok, w);
  EXPECT_EQ(load.tokens(0), 2);
  EXPECT_EQ(load.count(0, 0), 0);
  EXPECT_EQ(load.count(0, 1), 1);
  load.clear();
  EXPECT_EQ(load.tokens(0), 0);
  EXPECT_EQ(load.count(0, 1), 0);
}

TEST(ExpertLoad, BalancedRoutingHasZeroCv) {
  ExpertLoad load({0}, 2);
  const float w[] = {1.0f};
  const int32_t a[] = {0}, b[] = {1};
  load.add(0, a, w);
  load.add(0, b, w);
  EXPECT_DOUBLE_EQ(load.coefficient_of_variation(0), 0.0);
  EXPECT_EQ(load.dead_experts(0), 0);
}

}  // namespace
}  // namespace moe::inspect
