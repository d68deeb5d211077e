// Trace measures against values worked out by hand on a six-token trace: token selection, routing per
// layer with its tables, router certainty from probs or from the trace's columns, co-activation,
// expert preference by token class and by phase, tokens and time by phase, and the expert-cache what-if.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "inspect/token_class.h"
#include "inspect/trace_measures.h"

namespace moe::inspect {
namespace {

// Four layers, MoE at layers 1 and 3 (ordinals 0 and 1), four experts, top-2 slots.
//
//  row token pos phase     step | MoE 0 (layer 1)          | MoE 1 (layer 3)
//   0   10    0  user       0   | {0,1} w {0.6, 0.4}       | {0,1} w {0.5, 0.5}
//   1   11    1  user       0   | {0,2} w {0.7, 0.3}       | {0,1}
//   2   12    2  user       0   | {0,1} w {0.5, 0.5}       | {0,1}
//   3   20    3  thinking   1   | {1,0} w {0.8, 0.2}       | {0,1}
//   4   21    4  thinking   2   | {2,-1} w {1.0, 0}        | {0,1}
//   5   30    5  answer     3   | {3,0} w {0.9, 0.1}       | {0,1}
//
// Steps: 0 ran rows 0-2 in 0.3 s, 1 ran row 3 in 0.05 s, 2 ran row 4 in 0.07 s, 3 ran row 5 in 0.1 s.
// router.probs only on rows 0-2: MoE 0 {0.4, 0.3, 0.2, 0.1}, MoE 1 {0.5, 0.5, 0, 0}.
// Columns (every row): router_entropy MoE 0 = 0.9 0.8 0.7 0.6 0.5 0.4, MoE 1 = 0.2;
//                      top1_margin   MoE 0 = 0.1 0.2 0.3 0.4 0.5 0.6, MoE 1 = 0.
Trace six_token_trace() {
  Trace t;
  t.n_layers = 4;
  t.n_heads = 1;
  t.n_experts = 4;
  t.top_k = 2;
  t.moe_layers = {1, 3};
  t.tokens = {10, 11, 12, 20, 21, 30};
  t.positions = {0, 1, 2, 3, 4, 5};
  const auto U = uint8_t(Phase::User), T = uint8_t(Phase::Thinking), A = uint8_t(Phase::Answer);
  t.phases = {U, U, U, T, T, A};
  t.forced = {0, 0, 0, 0, 0, 0};
  t.step = {0, 0, 0, 1, 2, 3};
  t.segment = {0, 0, 0, 0, 0, 0};
  t.has_routing = {1, 1, 1, 1, 1, 1};
  // [row][moe][slot]
  t.expert_ids = {0, 1, 0, 1,  //
                  0, 2, 0, 1,  //
                  0, 1, 0, 1,  //
                  1, 0, 0, 1,  //
                  2, -1, 0, 1,  //
                  3, 0, 0, 1};
  t.expert_weights = {0.6f, 0.4f, 0.5f, 0.5f,  //
                      0.7f, 0.3f, 0.5f, 0.5f,  //
                      0.5f, 0.5f, 0.5f, 0.5f,  //
                      0.8f, 0.2f, 0.5f, 0.5f,  //
                      1.0f, 0.0f, 0.5f, 0.5f,  //
                      0.9f, 0.1f, 0.5f, 0.5f};
  t.router_entropy = {0.9f, 0.2f, 0.8f, 0.2f, 0.7f, 0.2f, 0.6f, 0.2f, 0.5f, 0.2f, 0.4f, 0.2f};
  t.top1_margin = {0.1f, 0.0f, 0.2f, 0.0f, 0.3f, 0.0f, 0.4f, 0.0f, 0.5f, 0.0f, 0.6f, 0.0f};
  t.has_router_probs = {1, 1, 1, 0, 0, 0};
  t.router_probs.assign(6 * 2 * 4, 0.0f);
  for (int row = 0; row < 3; ++row) {
    float* p = &t.router_probs[size_t(row) * 8];
    p[0] = 0.4f, p[1] = 0.3f, p[2] = 0.2f, p[3] = 0.1f;
    p[4] = 0.5f, p[5] = 0.5f;
  }
  t.step_first_token = {0, 3, 4, 5};
  t.step_tokens = {3, 1, 1, 1};
  t.step_time_s = {0.3, 0.05, 0.07, 0.1};
  t.step_end_s = {0.3, 0.35, 0.42, 0.52};
  return t;
}

TokenFilter rows(int64_t begin, int64_t end) {
  TokenFilter f;
  f.begin = begin;
  f.end = end;
  return f;
}

// ---- Token selection -------------------------------------------------------------------------------

TEST(TokenSelection, WholeTraceWindowsPhasesAndOrigins) {
  const Trace t = six_token_trace();
  using Rows = std::vector<int64_t>;
  EXPECT_EQ(select_tokens(t, {}), (Rows{0, 1, 2, 3, 4, 5}));

  TokenFilter last2;
  last2.last = 2;
  EXPECT_EQ(select_tokens(t, last2), (Rows{4, 5}));
  EXPECT_EQ(select_tokens(t, rows(1, 3)), (Rows{1, 2}));

  TokenFilter both = rows(1, 4);
  both.last = 4;  // rows 2..5, and [1, 4): rows 2 and 3
  EXPECT_EQ(select_tokens(t, both), (Rows{2, 3}));

  EXPECT_EQ(select_tokens(t, rows(-5, 100)), (Rows{0, 1, 2, 3, 4, 5}));  // clamped to the trace
  EXPECT_EQ(select_tokens(t, rows(4, 2)), Rows{});                       // empty window

  TokenFilter thinking;
  thinking.phase = Phase::Thinking;
  EXPECT_EQ(select_tokens(t, thinking), (Rows{3, 4}));
  thinking.last = 2;  // the thinking tokens among the last two rows
  EXPECT_EQ(select_tokens(t, thinking), (Rows{4}));

  TokenFilter generated;
  generated.origin = TokenOrigin::Generated;
  EXPECT_EQ(select_tokens(t, generated), (Rows{3, 4, 5}));
  TokenFilter prompt;
  prompt.origin = TokenOrigin::Prompt;
  EXPECT_EQ(select_tokens(t, prompt), (Rows{0, 1, 2}));
  prompt.phase = Phase::Answer;  // contradictory: nothing
  EXPECT_EQ(select_tokens(t, prompt), Rows{});

  // With the Session's `generated` column, origin follows it rather than the phase: an answer token of
  // a re-read assistant turn (row 3 here) is prompt.
  Trace marked = t;
  marked.generated = {0, 0, 0, 0, 1, 1};
  EXPECT_EQ(select_tokens(marked, generated), (Rows{4, 5}));
  prompt.phase.reset();
  EXPECT_EQ(select_tokens(marked, prompt), (Rows{0, 1, 2, 3}));
}

TEST(TokenSelection, Describe) {
  EXPECT_EQ(describe({}), "all tokens");
  TokenFilter f = rows(10, 20);
  f.phase = Phase::Thinking;
  EXPECT_EQ(describe(f), "rows [10, 20), thinking");
  TokenFilter g;
  g.last = 64;
  g.origin = TokenOrigin::Generated;
  EXPECT_EQ(describe(g), "last 64 rows, generated");
}

TEST(TokenSelection, OutOfRangePhaseCountsAsOther) {
  Trace t = six_token_trace();
  t.phases[0] = 17;
  EXPECT_EQ(phase_of(t, 0), Phase::Other);
  EXPECT_EQ(phase_of(t, 99), Phase::Other);
  TokenFilter other;
  other.phase = Phase::Other;
  EXPECT_EQ(select_tokens(t, other), (std::vector<int64_t>{0}));
}

TEST(TokenSelection, RoutingSamplesDropEmptySlots) {
  const Trace t = six_token_trace();
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5};
  std::vector<int64_t> sampled;
  const auto samples = routing_samples(t, all, 0, &sampled);
  ASSERT_EQ(samples.size(), 6u);
  EXPECT_EQ(sampled, all);
  EXPECT_EQ(samples[4].experts, (std::vector<int32_t>{2}));  // the -1 slot is gone
  EXPECT_EQ(samples[4].weights, (std::vector<float>{1.0f}));
  EXPECT_EQ(samples[0].probs, (std::vector<float>{0.4f, 0.3f, 0.2f, 0.1f}));
  EXPECT_TRUE(samples[3].probs.empty());  // not captured on row 3
  EXPECT_EQ(moe_ordinal_of_layer(t, 3), 1);
  EXPECT_EQ(moe_ordinal_of_layer(t, 2), -1);
}

TEST(TokenSelection, RowsWithoutRoutingOrShortColumnsAreSkipped) {
  Trace t = six_token_trace();
  t.has_routing[1] = 0;
  t.expert_ids.resize(4 * 4);  // a truncated file: rows 4 and 5 are not covered
  std::vector<int64_t> sampled;
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5};
  routing_samples(t, all, 0, &sampled);
  EXPECT_EQ(sampled, (std::vector<int64_t>{0, 2, 3}));
}

// ---- Routing per MoE layer ---------------------------------------------------------------------------

TEST(TraceRouting, LoadMeasuresPerLayer) {
  const Trace t = six_token_trace();
  const std::vector<LayerRouting> layers = routing_by_layer(t, {});
  ASSERT_EQ(layers.size(), 2u);
  const LayerRouting& l1 = layers[0];
  EXPECT_EQ(l1.layer, 1);
  EXPECT_EQ(l1.stats.tokens, 6);
  // MoE 0 counts: e0 5 (rows 0,1,2,3,5), e1 3 (0,2,3), e2 2 (1,4), e3 1 (5); 11 selections.
  EXPECT_EQ(l1.stats.counts, (std::vector<int64_t>{5, 3, 2, 1}));
  // 11 selections / 6 tokens = 1.83, rounded: the random baseline uses k = 2.
  EXPECT_EQ(l1.stats.top_k, 2);
  // Mean 2.75; deviations 2.25 0.25 -0.75 -1.75, squares sum 8.75, variance 2.1875: CV = 1.479020 / 2.75.
  EXPECT_NEAR(l1.stats.count_load.cv, 0.5378254348, 1e-9);
  // MaxVio 5 / 2.75 - 1 = 0.818182. Gini: sorted 1 2 3 5 weighted -3 -1 1 3: 13 / (4 * 11) = 0.295455.
  EXPECT_NEAR(l1.stats.count_load.max_vio, 0.8181818182, 1e-9);
  EXPECT_NEAR(l1.stats.count_load.gini, 13.0 / 44.0, 1e-12);
  // Shares 5/11 3/11 2/11 1/11: entropy / ln 4 = 0.894965.
  EXPECT_NEAR(l1.stats.count_load.normalized_entropy, 0.8949645377, 1e-9);
  EXPECT_DOUBLE_EQ(l1.stats.count_load.dead_experts, 0.0);
  // Gate weight: e0 0.6+0.7+0.5+0.2+0.1 = 2.1, e1 0.4+0.5+0.8 = 1.7, e2 0.3+1.0 = 1.3, e3 0.9.
  EXPECT_NEAR(l1.stats.gate_weights[0], 2.1, 1e-6);
  EXPECT_NEAR(l1.stats.gate_weights[2], 1.3, 1e-6);

  // MoE 1 (layer 3): every token to {0, 1}: counts 6 6 0 0, mean 3, std 3: CV 1; MaxVio 1;
  // Gini (-3*0 - 1*0 + 6 + 18) / (4 * 12) = 0.5; entropy ln 2 / ln 4 = 0.5; two dead experts.
  const LayerRouting& l3 = layers[1];
  EXPECT_EQ(l3.layer, 3);
  EXPECT_EQ(l3.stats.counts, (std::vector<int64_t>{6, 6, 0, 0}));
  EXPECT_NEAR(l3.stats.count_load.cv, 1.0, 1e-12);
  EXPECT_NEAR(l3.stats.count_load.max_vio, 1.0, 1e-12);
  EXPECT_NEAR(l3.stats.count_load.gini, 0.5, 1e-12);
  EXPECT_NEAR(l3.stats.count_load.normalized_entropy, 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(l3.stats.count_load.dead_experts, 2.0);
  // Random baseline: dead experts exactly 4 * (1 - 2/4)^6 = 0.0625.
  EXPECT_NEAR(l3.stats.random.dead_experts, 0.0625, 1e-12);
}

TEST(TraceRouting, PhaseFilterChangesTheLoad) {
  const Trace t = six_token_trace();
  TokenFilter thinking;
  thinking.phase = Phase::Thinking;
  const std::vector<LayerRouting> layers = routing_by_layer(t, thinking);
  // Rows 3 and 4 in MoE 0: {1, 0} and {2}: counts 1 1 1 0, mean 0.75, variance 0.1875: CV 0.57735.
  EXPECT_EQ(layers[0].stats.tokens, 2);
  EXPECT_EQ(layers[0].stats.counts, (std::vector<int64_t>{1, 1, 1, 0}));
  EXPECT_NEAR(layers[0].stats.count_load.cv, std::sqrt(0.1875) / 0.75, 1e-12);
  // 3 selections / 2 tokens = 1.5 rounds (away from zero) to 2.
  EXPECT_EQ(layers[0].stats.top_k, 2);
}

TEST(TraceRouting, RouterCertaintyFromColumnsWhenProbsAreMissing) {
  const Trace t = six_token_trace();
  const std::vector<LayerRouting> layers = routing_by_layer(t, {});
  // Rows 3-5 have no probs, so the columns are used for every token:
  // entropy (0.9+0.8+0.7+0.6+0.5+0.4)/6 = 0.65, margin (0.1+...+0.6)/6 = 0.35.
  EXPECT_EQ(layers[0].certainty_source, RouterCertaintySource::TraceColumns);
  ASSERT_TRUE(layers[0].mean_router_entropy && layers[0].mean_top1_margin);
  EXPECT_NEAR(*layers[0].mean_router_entropy, 0.65, 1e-6);
  EXPECT_NEAR(*layers[0].mean_top1_margin, 0.35, 1e-6);
  EXPECT_NEAR(*layers[1].mean_router_entropy, 0.2, 1e-6);
}

TEST(TraceRouting, RouterCertaintyFromProbsWhenEveryTokenHasThem) {
  const Trace t = six_token_trace();
  const std::vector<LayerRouting> layers = routing_by_layer(t, rows(0, 3));
  // Rows 0-2 all carry {0.4, 0.3, 0.2, 0.1}: entropy -(0.4 ln 0.4 + 0.3 ln 0.3 + 0.2 ln 0.2 + 0.1 ln 0.1)
  // / ln 4 = 0.923220 and margin 0.1 (the columns would say 0.8 and 0.2).
  EXPECT_EQ(layers[0].certainty_source, RouterCertaintySource::Probabilities);
  EXPECT_NEAR(*layers[0].mean_router_entropy, 0.9232196723, 1e-6);
  EXPECT_NEAR(*layers[0].mean_top1_margin, 0.1, 1e-6);
  // MoE 1: {0.5, 0.5, 0, 0}: entropy ln 2 / ln 4 = 0.5, margin 0.
  EXPECT_NEAR(*layers[1].mean_router_entropy, 0.5, 1e-6);
  EXPECT_NEAR(*layers[1].mean_top1_margin, 0.0, 1e-6);
}

TEST(TraceRouting, NoSelectedTokenHasNoCertainty) {
  const Trace t = six_token_trace();
  const std::vector<LayerRouting> layers = routing_by_layer(t, rows(3, 3));
  EXPECT_EQ(layers[0].stats.tokens, 0);
  EXPECT_EQ(layers[0].certainty_source, RouterCertaintySource::None);
  EXPECT_FALSE(layers[0].mean_router_entropy.has_value());
}

TEST(TraceRouting, SummaryTable) {
  const Trace t = six_token_trace();
  const std::vector<LayerRouting> layers = routing_by_layer(t, {});
  const Table table = routing_summary_table(layers);
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(table.at(0, "layer").integer, 1);
  EXPECT_EQ(table.at(0, "tokens").integer, 6);
  EXPECT_NEAR(*table.at(0, "cv").number(), 0.5378254348, 1e-9);
  EXPECT_DOUBLE_EQ(*table.at(0, "cv_uniform").number(), 0.0);
  EXPECT_DOUBLE_EQ(*table.at(0, "entropy_uniform").number(), 1.0);
  EXPECT_EQ(table.at(1, "dead").kind, Cell::Kind::Integer);
  EXPECT_EQ(table.at(1, "dead").integer, 2);
  EXPECT_NEAR(*table.at(1, "dead_random").number(), 0.0625, 1e-12);
  EXPECT_NEAR(*table.at(0, "router_entropy").number(), 0.65, 1e-6);
  EXPECT_GT(*table.at(0, "cv_random").number(), 0.0);
  // The source of the router certainty is said.
  bool says_columns = false;
  for (const std::string& note : table.notes) says_columns |= note.find("columns") != std::string::npos;
  EXPECT_TRUE(says_columns);
}

TEST(TraceRouting, ExpertLoadTable) {
  const Trace t = six_token_trace();
  const Table table = expert_load_table(routing_by_layer(t, {}));
  ASSERT_EQ(table.rows.size(), 8u);  // 2 layers x 4 experts
  EXPECT_EQ(table.at(0, "layer").integer, 1);
  EXPECT_EQ(table.at(0, "expert").integer, 0);
  EXPECT_EQ(table.at(0, "selections").integer, 5);
  EXPECT_NEAR(*table.at(0, "share").number(), 5.0 / 11.0, 1e-12);
  // Gate weight of MoE 0 sums to 6 (each token's weights sum to 1): e0 2.1 / 6 = 0.35.
  EXPECT_NEAR(*table.at(0, "gate_weight").number(), 2.1, 1e-6);
  EXPECT_NEAR(*table.at(0, "gate_share").number(), 0.35, 1e-6);
  EXPECT_EQ(table.at(7, "layer").integer, 3);
  EXPECT_EQ(table.at(7, "selections").integer, 0);
  EXPECT_DOUBLE_EQ(*table.at(7, "share").number(), 0.0);
}

TEST(TraceRouting, CoactivationOfAChosenLayer) {
  const Trace t = six_token_trace();
  // MoE 0 pairs: rows 0, 2, 3 {0,1}; row 1 {0,2}; row 5 {3,0}; row 4 has one expert.
  const CoactivationMatrix m = coactivation(t, {}, 0);
  EXPECT_EQ(m.at(0, 1), 3);
  EXPECT_EQ(m.at(1, 0), 3);
  EXPECT_EQ(m.at(0, 2), 1);
  EXPECT_EQ(m.at(0, 3), 1);
  EXPECT_EQ(m.at(1, 2), 0);
  EXPECT_EQ(m.at(0, 0), 5);
  EXPECT_EQ(m.at(2, 2), 2);
  const Table table = coactivation_table(m, 1);
  EXPECT_EQ(table.title, "Co-activation, layer 1");
  EXPECT_EQ(table.columns, (std::vector<std::string>{"expert", "e0", "e1", "e2", "e3"}));
  EXPECT_EQ(table.at(0, "expert").text, "e0");
  EXPECT_EQ(table.at(0, "e1").integer, 3);
  EXPECT_EQ(table.at(3, "e0").integer, 1);
  EXPECT_THROW(coactivation(t, {}, 2), std::out_of_range);
}

// ---- Expert preference -------------------------------------------------------------------------------

TEST(TracePreference, ByPhase) {
  const Trace t = six_token_trace();
  const PreferenceByLayer pref = expert_preference_by_phase(t, {});
  EXPECT_EQ(pref.category_kind, "phase");
  ASSERT_EQ(pref.categories.size(), size_t(kPhaseCount));
  const ExpertPreference& p = pref.layers[0].preference;
  // MoE 0 selections: user (rows 0-2) e0 3, e1 2, e2 1; thinking (3-4) e0 1, e1 1, e2 1; answer (5) e0 1, e3 1.
  const int user = int(Phase::User), answer = int(Phase::Answer);
  EXPECT_EQ(p.category_tokens[size_t(user)], 3);
  EXPECT_EQ(p.count(user, 0), 3);
  EXPECT_EQ(p.count(answer, 3), 1);
  // nPMI(answer, e3): p(c,e) = 1/11, p(c) = 2/11, p(e) = 1/11: ln(11/2) / ln 11 = 0.710935.
  EXPECT_NEAR(p.npmi_at(answer, 3), 0.7109351737, 1e-9);
  // nPMI(user, e0): 3/11 / (6/11 * 5/11) = 1.1: ln 1.1 / -ln(3/11) = 0.073356.
  EXPECT_NEAR(p.npmi_at(user, 0), 0.0733559825, 1e-9);
  EXPECT_DOUBLE_EQ(p.npmi_at(answer, 1), -1.0);  // never together

  const Table table = preference_table(pref);
  // Categories with tokens: user, thinking, answer; 3 x 4 experts x 2 layers.
  EXPECT_EQ(table.rows.size(), 24u);
  EXPECT_EQ(table.columns[1], "phase");
  EXPECT_EQ(table.at(0, "phase").text, "user");
  EXPECT_EQ(table.at(0, "category_tokens").integer, 3);
  EXPECT_NEAR(*table.at(0, "npmi").number(), 0.0733559825, 1e-9);
}

TEST(TracePreference, ByTokenClassDecodesEachIdOnce) {
  const Trace t = six_token_trace();
  int decodes = 0;
  TokenText text;
  text.decode = [&](int32_t id) -> std::string {
    ++decodes;
    switch (id) {
      case 10: return "Hello";
      case 11: return ",";
      case 12: return " 42";
      case 20: return "<think>";
      case 21: return "x";
      case 30: return "7";
    }
    return "";
  };
  text.is_special = [](int32_t id) { return id == 20; };
  const PreferenceByLayer pref = expert_preference_by_class(t, {}, text);
  EXPECT_EQ(decodes, 6);  // six distinct ids, two layers
  EXPECT_EQ(pref.category_kind, "token_class");
  const ExpertPreference& p = pref.layers[0].preference;
  const int letters = int(TokenClass::Letters), digits = int(TokenClass::Digits),
            special = int(TokenClass::Special), punct = int(TokenClass::Punctuation);
  EXPECT_EQ(p.category_tokens[size_t(letters)], 2);  // "Hello", "x"
  EXPECT_EQ(p.category_tokens[size_t(digits)], 2);   // " 42", "7"
  EXPECT_EQ(p.category_tokens[size_t(special)], 1);  // "<think>"
  EXPECT_EQ(p.category_tokens[size_t(punct)], 1);    // ","
  // Special is row 3 {1, 0}: nPMI(special, e1) = ln((1/11) / (2/11 * 3/11)) / ln 11 = ln(11/6) / ln 11 = 0.252778.
  EXPECT_NEAR(p.npmi_at(special, 1), 0.2527782637, 1e-9);
}

// ---- Phases --------------------------------------------------------------------------------------------

TEST(TracePhases, TokensAndTimeSplitOverTheStepsTokens) {
  const Trace t = six_token_trace();
  const PhaseTotals totals = phase_totals(t, {});
  EXPECT_EQ(totals.tokens[size_t(Phase::User)], 3);
  EXPECT_EQ(totals.tokens[size_t(Phase::Thinking)], 2);
  EXPECT_EQ(totals.tokens[size_t(Phase::Answer)], 1);
  EXPECT_EQ(totals.total_tokens(), 6);
  // User: the 0.3 s prefill; thinking 0.05 + 0.07; answer 0.1; total 0.52.
  EXPECT_NEAR(totals.time_s[size_t(Phase::User)], 0.3, 1e-12);
  EXPECT_NEAR(totals.time_s[size_t(Phase::Thinking)], 0.12, 1e-12);
  EXPECT_NEAR(totals.time_s[size_t(Phase::Answer)], 0.1, 1e-12);
  EXPECT_NEAR(totals.total_time_s(), 0.52, 1e-12);
  EXPECT_EQ(totals.untimed_tokens, 0);

  // Rows 1-3: two thirds of the prefill (0.2 s) and step 1 (0.05 s).
  const PhaseTotals part = phase_totals(t, rows(1, 4));
  EXPECT_NEAR(part.time_s[size_t(Phase::User)], 0.2, 1e-12);
  EXPECT_NEAR(part.time_s[size_t(Phase::Thinking)], 0.05, 1e-12);
}

TEST(TracePhases, MissingStepTokensFallBackToRowsAndMissingStepsAreUntimed) {
  Trace t = six_token_trace();
  t.step_tokens.clear();  // split over the rows of the step the trace holds: still 3 for step 0
  t.step[5] = 9;          // no such step
  const PhaseTotals totals = phase_totals(t, {});
  EXPECT_NEAR(totals.time_s[size_t(Phase::User)], 0.3, 1e-12);
  EXPECT_NEAR(totals.time_s[size_t(Phase::Answer)], 0.0, 1e-12);
  EXPECT_EQ(totals.untimed_tokens, 1);
  const Table table = time_by_phase_table(totals);
  EXPECT_EQ(table.notes.back(), "1 tokens have no step time and count as 0 s");
}

TEST(TracePhases, Tables) {
  const Trace t = six_token_trace();
  const PhaseTotals totals = phase_totals(t, {});
  const Table tokens = tokens_by_phase_table(totals);
  ASSERT_EQ(tokens.rows.size(), size_t(kPhaseCount) + 1);
  EXPECT_EQ(tokens.at(1, "phase").text, "user");
  EXPECT_EQ(tokens.at(1, "tokens").integer, 3);
  EXPECT_NEAR(*tokens.at(1, "share").number(), 0.5, 1e-12);
  EXPECT_EQ(tokens.at(5, "phase").text, "total");
  EXPECT_EQ(tokens.at(5, "tokens").integer, 6);

  const Table time = time_by_phase_table(totals);
  EXPECT_NEAR(*time.at(2, "time_s").number(), 0.12, 1e-12);
  EXPECT_NEAR(*time.at(2, "share").number(), 0.12 / 0.52, 1e-12);
  EXPECT_NEAR(*time.at(2, "ms_per_token").number(), 60.0, 1e-9);
  EXPECT_NEAR(*time.at(1, "ms_per_token").number(), 100.0, 1e-9);
  EXPECT_TRUE(time.at(0, "ms_per_token").empty());  // no system token
  EXPECT_NEAR(*time.at(5, "time_s").number(), 0.52, 1e-12);
}

// ---- Expert-cache what-if ------------------------------------------------------------------------------

TEST(TraceCache, AccessListsFromTheRouting) {
  const Trace t = six_token_trace();
  const auto layers = cache_access_lists(t, {});
  ASSERT_EQ(layers.size(), 2u);
  using Ids = std::vector<std::vector<int32_t>>;
  EXPECT_EQ(layers[0], (Ids{{0, 1}, {0, 2}, {0, 1}, {1, 0}, {2}, {3, 0}}));
  EXPECT_EQ(layers[1], Ids(6, {0, 1}));
}

TEST(TraceCache, WhatIfTable) {
  const Trace t = six_token_trace();
  CacheWhatIfOptions options;
  options.capacities = {2, 4};
  options.policies = {CachePolicy::Lru};
  options.expert_bytes = 1000;
  const std::vector<ExpertCacheResult> results = expert_cache_what_if(t, {}, options);
  ASSERT_EQ(results.size(), 2u);
  // Capacity 2, LRU, MoE 0 (resident set after each token):
  //   {0,1}: 2 misses -> {0,1}; {0,2}: 0 hit, 2 miss evicts 1 -> {0,2}; {0,1}: 0 hit, 1 miss evicts 2
  //   -> {0,1}; {1,0}: 2 hits; {2}: miss, least recent is 1 -> {0,2}; {3,0}: 3 miss, 0 is the token's
  //   own, evict 2 -> {0,3}, 0 hit. 11 accesses, 5 hits, 6 misses, 4 compulsory.
  // MoE 1: {0,1} six times: 12 accesses, 2 (compulsory) misses.
  // Total: 23 accesses, 15 hits, 8 misses, 6 compulsory, 8000 bytes.
  const ExpertCacheResult& r = results[0];
  EXPECT_EQ(r.capacity, 2);
  EXPECT_EQ(r.accesses, 23);
  EXPECT_EQ(r.hits, 15);
  EXPECT_EQ(r.misses, 8);
  EXPECT_EQ(r.compulsory_misses, 6);
  EXPECT_EQ(r.bytes_moved, 8000u);
  // Capacity 4 holds everything: only the 6 compulsory misses.
  EXPECT_EQ(results[1].misses, 6);

  const Table table = expert_cache_table(results, t.n_moe(), options.expert_bytes);
  EXPECT_EQ(table.at(0, "policy").text, "lru");
  EXPECT_NEAR(*table.at(0, "hit_rate").number(), 15.0 / 23.0, 1e-12);
  EXPECT_EQ(table.at(0, "bytes_moved").integer, 8000);
  EXPECT_EQ(table.at(0, "compulsory_misses").integer, 6);
  EXPECT_EQ(table.at(1, "resident_bytes").integer, 4 * 2 * 1000);
}

TEST(TraceCache, DefaultCapacitiesAndBothPolicies) {
  const Trace t = six_token_trace();
  CacheWhatIfOptions options;
  const auto results = expert_cache_what_if(t, {}, options);
  // Capacities 1, 2, 4 (= n_experts) for LRU, then for LFU.
  ASSERT_EQ(results.size(), 6u);
  EXPECT_EQ(results[0].capacity, 1);
  EXPECT_EQ(results[2].capacity, 4);
  EXPECT_EQ(results[0].policy, CachePolicy::Lru);
  EXPECT_EQ(results[3].policy, CachePolicy::Lfu);
  EXPECT_EQ(results[3].capacity, 1);
}

}  // namespace
}  // namespace moe::inspect
