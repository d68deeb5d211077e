// Comparison of two traces against hand-computed values: Jensen-Shannon divergence of simple
// distributions, per-layer divergence of expert loads (with a filter, and with layers or experts that
// do not match), tokens and time by phase for both, and the first generated token where they differ.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "inspect/trace_compare.h"

namespace moe::inspect {
namespace {

// A trace of top-1 routing: tokens[i] with phase phases[i] went to expert experts[i] in every MoE
// layer; every token is its own step of `step_s` seconds.
Trace routed_trace(std::vector<int32_t> tokens, std::vector<Phase> phases, std::vector<int32_t> experts,
                   int n_experts = 2, std::vector<int> moe_layers = {0}, double step_s = 0.01) {
  Trace t;
  t.n_layers = 2;
  t.n_experts = n_experts;
  t.top_k = 1;
  t.moe_layers = std::move(moe_layers);
  const size_t n = tokens.size(), m = t.moe_layers.size();
  t.tokens = std::move(tokens);
  for (size_t i = 0; i < n; ++i) {
    t.positions.push_back(int32_t(i));
    t.phases.push_back(uint8_t(phases[i]));
    t.step.push_back(int32_t(i));
    t.has_routing.push_back(1);
    for (size_t l = 0; l < m; ++l) {
      t.expert_ids.push_back(experts[i]);
      t.expert_weights.push_back(1.0f);
    }
    t.step_first_token.push_back(int32_t(i));
    t.step_tokens.push_back(1);
    t.step_time_s.push_back(step_s);
  }
  return t;
}

constexpr Phase U = Phase::User, T = Phase::Thinking, A = Phase::Answer;

TEST(JensenShannon, HandComputedPairs) {
  using V = std::vector<double>;
  // Disjoint supports: the maximum, 1 bit.
  EXPECT_NEAR(*jensen_shannon_divergence(V{1, 0}, V{0, 1}), 1.0, 1e-12);
  // [0.5, 0.5] vs [1, 0]: m = [0.75, 0.25];
  // KL(p||m) = 0.5 log2(0.5/0.75) + 0.5 log2(0.5/0.25) = 0.207519, KL(q||m) = log2(1/0.75) = 0.415037;
  // JSD = (0.207519 + 0.415037) / 2 = 0.311278.
  EXPECT_NEAR(*jensen_shannon_divergence(V{0.5, 0.5}, V{1, 0}), 0.3112781245, 1e-9);
  // Inputs are normalised first, and the measure is symmetric.
  EXPECT_NEAR(*jensen_shannon_divergence(V{1, 0}, V{2, 2}), 0.3112781245, 1e-9);
  EXPECT_NEAR(*jensen_shannon_divergence(V{3, 1, 0}, V{6, 2, 0}), 0.0, 1e-12);
  // Undefined: lengths differ, empty, zero mass, negative or non-finite entries.
  EXPECT_FALSE(jensen_shannon_divergence(V{1, 0}, V{1, 0, 0}).has_value());
  EXPECT_FALSE(jensen_shannon_divergence(V{}, V{}).has_value());
  EXPECT_FALSE(jensen_shannon_divergence(V{0, 0}, V{1, 0}).has_value());
  EXPECT_FALSE(jensen_shannon_divergence(V{-1, 2}, V{1, 0}).has_value());
  EXPECT_FALSE(jensen_shannon_divergence(V{NAN, 1}, V{1, 0}).has_value());
}

TEST(TraceCompare, LoadDivergencePerLayer) {
  // A: every token to expert 0. B: every token to expert 1. C: half and half.
  const Trace a = routed_trace({1, 2, 3, 4}, {U, U, T, A}, {0, 0, 0, 0});
  const Trace b = routed_trace({1, 2, 3, 4}, {U, U, T, A}, {1, 1, 1, 1});
  const Trace c = routed_trace({1, 2, 3, 4}, {U, U, T, A}, {0, 1, 0, 1});
  const LoadDivergence ab = expert_load_divergence(a, b);
  ASSERT_EQ(ab.layers.size(), 1u);
  EXPECT_EQ(ab.layers[0].tokens_a, 4);
  EXPECT_EQ(ab.layers[0].tokens_b, 4);
  EXPECT_NEAR(*ab.layers[0].jsd, 1.0, 1e-12);
  EXPECT_TRUE(ab.notes.empty());
  // [4, 0] vs [2, 2]: 0.311278.
  EXPECT_NEAR(*expert_load_divergence(a, c).layers[0].jsd, 0.3112781245, 1e-9);
  EXPECT_NEAR(*expert_load_divergence(c, c).layers[0].jsd, 0.0, 1e-12);
}

TEST(TraceCompare, FilterAppliesToBothTraces) {
  // A: prompt and thinking to expert 0, answer to expert 1. B: everything to expert 0.
  const Trace a = routed_trace({1, 2, 3, 4}, {U, U, A, A}, {0, 0, 1, 1});
  const Trace b = routed_trace({1, 2, 3, 4}, {U, U, A, A}, {0, 0, 0, 0});
  // Whole traces: [2, 2] vs [4, 0] = 0.311278.
  EXPECT_NEAR(*expert_load_divergence(a, b).layers[0].jsd, 0.3112781245, 1e-9);
  // User tokens only: [2, 0] vs [2, 0] = 0.
  TokenFilter user;
  user.phase = Phase::User;
  const LoadDivergence d = expert_load_divergence(a, b, user);
  EXPECT_EQ(d.layers[0].tokens_a, 2);
  EXPECT_NEAR(*d.layers[0].jsd, 0.0, 1e-12);
  // Answer tokens only: [0, 2] vs [2, 0] = 1.
  TokenFilter answer;
  answer.phase = Phase::Answer;
  EXPECT_NEAR(*expert_load_divergence(a, b, answer).layers[0].jsd, 1.0, 1e-12);
  // Nothing selected in B: unset, with the reason.
  TokenFilter thinking;
  thinking.phase = Phase::Thinking;
  const LoadDivergence none = expert_load_divergence(a, b, thinking);
  EXPECT_FALSE(none.layers[0].jsd.has_value());
  EXPECT_EQ(none.layers[0].note, "no routed token in trace A");
}

TEST(TraceCompare, UnmatchedShapesAreReportedNotCompared) {
  const Trace a = routed_trace({1, 2}, {U, A}, {0, 1}, 2, {0, 1});
  const Trace wider = routed_trace({1, 2}, {U, A}, {0, 3}, 4, {0, 1});
  const LoadDivergence d = expert_load_divergence(a, wider);
  ASSERT_EQ(d.layers.size(), 2u);
  EXPECT_FALSE(d.layers[0].jsd.has_value());
  EXPECT_EQ(d.layers[0].note, "different expert counts");
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_NE(d.notes[0].find("different expert counts (2 and 4)"), std::string::npos);

  // Layers matched by index: A has MoE layers 0 and 1, B only 1.
  const Trace b = routed_trace({1, 2}, {U, A}, {1, 0}, 2, {1});
  const LoadDivergence m = expert_load_divergence(a, b);
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.layers[0].layer, 0);
  EXPECT_EQ(m.layers[0].moe_index_b, -1);
  EXPECT_FALSE(m.layers[0].jsd.has_value());
  EXPECT_EQ(m.layers[0].note, "not an MoE layer in trace B");
  EXPECT_EQ(m.layers[1].layer, 1);
  EXPECT_EQ(m.layers[1].moe_index_a, 1);
  EXPECT_EQ(m.layers[1].moe_index_b, 0);
  EXPECT_NEAR(*m.layers[1].jsd, 0.0, 1e-12);  // [1, 1] vs [1, 1]
  EXPECT_NE(m.notes.at(0).find("different MoE layers"), std::string::npos);

  const Table table = load_divergence_table(m);
  EXPECT_TRUE(table.at(0, "jsd").empty());
  EXPECT_EQ(table.at(0, "note").text, "not an MoE layer in trace B");
  EXPECT_NEAR(*table.at(1, "jsd").number(), 0.0, 1e-12);
}

TEST(TraceCompare, FirstGeneratedDifference) {
  // Prompts differ (1 vs 9), which does not count; generated 5 6 7 vs 5 6 8.
  const Trace a = routed_trace({1, 5, 6, 7}, {U, T, A, A}, {0, 0, 0, 0});
  const Trace b = routed_trace({9, 5, 6, 8}, {U, T, A, A}, {0, 0, 0, 0});
  const FirstDifference d = first_generated_difference(a, b);
  EXPECT_EQ(d.generated_a, 3);
  EXPECT_EQ(d.generated_b, 3);
  EXPECT_EQ(d.index, 2);
  EXPECT_EQ(d.row_a, 3);
  EXPECT_EQ(d.token_a, 7);
  EXPECT_EQ(d.token_b, 8);

  // The same generation after different prompts: -1.
  const Trace same = routed_trace({9, 9, 5, 6, 7}, {U, U, T, A, A}, {0, 0, 0, 0, 0});
  EXPECT_EQ(first_generated_difference(a, same).index, -1);

  // B stops early: the difference is where it ends.
  const Trace shorter = routed_trace({1, 5, 6}, {U, T, A}, {0, 0, 0});
  const FirstDifference s = first_generated_difference(a, shorter);
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.token_a, 7);
  EXPECT_FALSE(s.token_b.has_value());
  EXPECT_EQ(s.row_b, -1);

  const Table table = first_difference_table(s);
  EXPECT_EQ(table.at(0, "first_difference").integer, 2);
  EXPECT_EQ(table.at(0, "token_a").integer, 7);
  EXPECT_TRUE(table.at(0, "token_b").empty());
}

TEST(TraceCompare, PhasesOfBothTraces) {
  // A: 2 user, 3 thinking, 1 answer at 10 ms a step. B: 2 user, 1 answer at 20 ms a step.
  const Trace a = routed_trace({1, 2, 3, 4, 5, 6}, {U, U, T, T, T, A}, {0, 0, 0, 0, 0, 0}, 2, {0}, 0.01);
  const Trace b = routed_trace({1, 2, 3}, {U, U, A}, {0, 0, 0}, 2, {0}, 0.02);
  const TraceComparison c = compare_traces(a, b);
  EXPECT_EQ(c.phases_a.tokens[size_t(Phase::Thinking)], 3);
  EXPECT_EQ(c.phases_b.tokens[size_t(Phase::Thinking)], 0);
  EXPECT_NEAR(c.phases_a.total_time_s(), 0.06, 1e-12);
  EXPECT_NEAR(c.phases_b.total_time_s(), 0.06, 1e-12);

  const std::vector<Table> tables = comparison_tables(c);
  ASSERT_EQ(tables.size(), 4u);
  const Table& tokens = tables[1];
  EXPECT_EQ(tokens.at(2, "phase").text, "thinking");
  EXPECT_EQ(tokens.at(2, "tokens_a").integer, 3);
  EXPECT_EQ(tokens.at(2, "tokens_b").integer, 0);
  EXPECT_EQ(tokens.at(5, "phase").text, "total");
  EXPECT_EQ(tokens.at(5, "tokens_a").integer, 6);
  EXPECT_EQ(tokens.at(5, "tokens_b").integer, 3);
  const Table& time = tables[2];
  EXPECT_NEAR(*time.at(2, "time_a_s").number(), 0.03, 1e-12);
  EXPECT_NEAR(*time.at(3, "ms_per_token_b").number(), 20.0, 1e-9);
  EXPECT_TRUE(time.at(2, "ms_per_token_b").empty());  // B did not think
  EXPECT_NEAR(*time.at(5, "time_b_s").number(), 0.06, 1e-12);
  EXPECT_NEAR(*time.at(5, "ms_per_token_a").number(), 10.0, 1e-9);
  // Generated: A 3 4 5 6, B 3: they agree on the first and B ends there.
  EXPECT_EQ(c.first_difference.index, 1);
}

}  // namespace
}  // namespace moe::inspect
