// Routing measures, baselines, co-activation, token classes and nPMI against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "inspect/routing_stats.h"
#include "inspect/token_class.h"

namespace moe::inspect {
namespace {

// Four experts, top-2, four tokens.
//   t0 -> {0, 1} weights {0.6, 0.4}     t1 -> {0, 2} weights {0.7, 0.3}
//   t2 -> {0, 1} weights {0.5, 0.5}     t3 -> {1, 0} weights {0.8, 0.2}
// Counts: e0 4, e1 3, e2 1, e3 0 (8 selections). Gate weight: e0 2.0, e1 1.7, e2 0.3, e3 0.
std::vector<RoutingSample> four_token_fixture() {
  return {
      {{0, 1}, {0.6f, 0.4f}, {0.5f, 0.3f, 0.1f, 0.1f}},
      {{0, 2}, {0.7f, 0.3f}, {0.25f, 0.25f, 0.25f, 0.25f}},
      {{0, 1}, {0.5f, 0.5f}, {0.9f, 0.9f, 0.1f, 0.1f}},  // sigmoid-style scores: sum 2, renormalised
      {{1, 0}, {0.8f, 0.2f}, {}},                        // no distribution captured
  };
}

double plogp(double p) { return p > 0 ? p * std::log(p) : 0.0; }

TEST(RoutingStats, LoadMeasuresOfCounts) {
  const auto samples = four_token_fixture();
  const LayerRoutingStats s = compute_routing_stats(samples, 4, 2);
  EXPECT_EQ(s.tokens, 4);
  EXPECT_EQ(s.counts, (std::vector<int64_t>{4, 3, 1, 0}));
  // Counts 4 3 1 0, mean 2: deviations 2 1 -1 -2, squares 4+1+1+4 = 10, variance 10/4 = 2.5,
  // CV = sqrt(2.5) / 2 = 0.7906.
  EXPECT_NEAR(s.count_load.cv, std::sqrt(2.5) / 2.0, 1e-12);
  // Shares 0.5 0.375 0.125 0: H = -(0.5 ln 0.5 + 0.375 ln 0.375 + 0.125 ln 0.125) = 0.97431; / ln 4 = 0.70282.
  EXPECT_NEAR(s.count_load.normalized_entropy, -(plogp(0.5) + plogp(0.375) + plogp(0.125)) / std::log(4.0), 1e-12);
  EXPECT_NEAR(s.count_load.normalized_entropy, 0.70282, 1e-5);
  // MaxVio: max 4 / mean 2 - 1 = 1.
  EXPECT_NEAR(s.count_load.max_vio, 1.0, 1e-12);
  // Gini: |differences| over unordered pairs (0,1) 1, (0,3) 3, (0,4) 4, (1,3) 2, (1,4) 3, (3,4) 1 = 14;
  // over ordered pairs 28; G = 28 / (2 n^2 mean) = 28 / (2 * 16 * 2) = 0.4375.
  EXPECT_NEAR(s.count_load.gini, 0.4375, 1e-12);
  EXPECT_DOUBLE_EQ(s.count_load.dead_experts, 1.0);
}

TEST(RoutingStats, LoadMeasuresOfGateWeights) {
  const auto samples = four_token_fixture();
  const LayerRoutingStats s = compute_routing_stats(samples, 4, 2);
  // e0 0.6+0.7+0.5+0.2 = 2.0, e1 0.4+0.5+0.8 = 1.7, e2 0.3, e3 0 (floats, hence 1e-6).
  ASSERT_EQ(s.gate_weights.size(), 4u);
  EXPECT_NEAR(s.gate_weights[0], 2.0, 1e-6);
  EXPECT_NEAR(s.gate_weights[1], 1.7, 1e-6);
  EXPECT_NEAR(s.gate_weights[2], 0.3, 1e-6);
  EXPECT_DOUBLE_EQ(s.gate_weights[3], 0.0);
  // Sum 4, mean 1: deviations 1, 0.7, -0.7, -1; squares 2.98; variance 0.745; CV = sqrt(0.745).
  EXPECT_NEAR(s.weighted_load.cv, std::sqrt(0.745), 1e-6);
  // MaxVio: 2 / 1 - 1 = 1. Gini: sorted 0 0.3 1.7 2.0 with weights -3 -1 1 3: (-0.3 + 1.7 + 6) / (4 * 4) = 0.4625.
  EXPECT_NEAR(s.weighted_load.max_vio, 1.0, 1e-6);
  EXPECT_NEAR(s.weighted_load.gini, 0.4625, 1e-6);
  // Shares 0.5 0.425 0.075 0.
  EXPECT_NEAR(s.weighted_load.normalized_entropy, -(plogp(0.5) + plogp(0.425) + plogp(0.075)) / std::log(4.0), 1e-6);
  EXPECT_DOUBLE_EQ(s.weighted_load.dead_experts, 1.0);
}

TEST(RoutingStats, RouterEntropyAndMarginOverTokensWithADistribution) {
  const auto samples = four_token_fixture();
  const LayerRoutingStats s = compute_routing_stats(samples, 4, 2);
  EXPECT_EQ(s.tokens_with_probs, 3);  // t3 has none
  // t0: {0.5, 0.3, 0.1, 0.1}, margin 0.2. t1: uniform, entropy 1, margin 0.
  // t2: {0.9, 0.9, 0.1, 0.1} / 2 = {0.45, 0.45, 0.05, 0.05}, margin 0.
  const double h0 = -(plogp(0.5) + plogp(0.3) + 2 * plogp(0.1)) / std::log(4.0);
  const double h2 = -(2 * plogp(0.45) + 2 * plogp(0.05)) / std::log(4.0);
  ASSERT_TRUE(s.mean_router_entropy.has_value());
  ASSERT_TRUE(s.mean_top1_margin.has_value());
  EXPECT_NEAR(*s.mean_router_entropy, (h0 + 1.0 + h2) / 3.0, 1e-6);
  EXPECT_NEAR(*s.mean_top1_margin, 0.2 / 3.0, 1e-6);
}

TEST(RoutingStats, RouterMeasuresAreUnsetWithoutDistributions) {
  std::vector<RoutingSample> samples = {{{0}, {1.0f}, {}}, {{1}, {1.0f}, {0.5f, 0.5f, 0.0f}}};  // wrong length
  const LayerRoutingStats s = compute_routing_stats(samples, 2, 1);
  EXPECT_EQ(s.tokens_with_probs, 0);
  EXPECT_FALSE(s.mean_router_entropy.has_value());
  EXPECT_FALSE(s.mean_top1_margin.has_value());
}

TEST(RoutingStats, NoTokens) {
  const LayerRoutingStats s = compute_routing_stats({}, 4, 2);
  EXPECT_EQ(s.tokens, 0);
  EXPECT_EQ(s.counts, (std::vector<int64_t>{0, 0, 0, 0}));
  // Zero load: every measure 0 by convention, every expert dead; the random baseline agrees.
  EXPECT_DOUBLE_EQ(s.count_load.cv, 0.0);
  EXPECT_DOUBLE_EQ(s.count_load.normalized_entropy, 0.0);
  EXPECT_DOUBLE_EQ(s.count_load.max_vio, 0.0);
  EXPECT_DOUBLE_EQ(s.count_load.gini, 0.0);
  EXPECT_DOUBLE_EQ(s.count_load.dead_experts, 4.0);
  EXPECT_DOUBLE_EQ(s.random.cv, 0.0);
  EXPECT_DOUBLE_EQ(s.random.dead_experts, 4.0);
  EXPECT_FALSE(s.mean_router_entropy.has_value());
  EXPECT_EQ(coactivation({}, 4).counts, std::vector<int64_t>(16, 0));
}

TEST(RoutingStats, OneExpertIsTriviallyBalanced) {
  std::vector<RoutingSample> samples(3, RoutingSample{{0}, {1.0f}, {1.0f}});
  const LayerRoutingStats s = compute_routing_stats(samples, 1, 1);
  EXPECT_EQ(s.counts, (std::vector<int64_t>{3}));
  EXPECT_DOUBLE_EQ(s.count_load.cv, 0.0);
  EXPECT_DOUBLE_EQ(s.count_load.normalized_entropy, 1.0);
  EXPECT_DOUBLE_EQ(s.count_load.max_vio, 0.0);
  EXPECT_DOUBLE_EQ(s.count_load.gini, 0.0);
  EXPECT_DOUBLE_EQ(s.count_load.dead_experts, 0.0);
  // Random routing over one expert is the same routing.
  EXPECT_DOUBLE_EQ(s.random.cv, 0.0);
  EXPECT_DOUBLE_EQ(s.random.normalized_entropy, 1.0);
  EXPECT_DOUBLE_EQ(s.random.dead_experts, 0.0);
  // A distribution over one outcome is the uniform one (entropy 1 by convention), and p1 - p2 = 1 - 0.
  EXPECT_DOUBLE_EQ(*s.mean_router_entropy, 1.0);
  EXPECT_DOUBLE_EQ(*s.mean_top1_margin, 1.0);
}

TEST(RoutingStats, AllTokensOnOneExpertReachTheMaxima) {
  // E = 4, top-1, five tokens all to expert 2: counts 0 0 5 0, mean 1.25.
  std::vector<RoutingSample> samples(5, RoutingSample{{2}, {1.0f}, {0.0f, 0.0f, 1.0f, 0.0f}});
  const LayerRoutingStats s = compute_routing_stats(samples, 4, 1);
  // Squares 3 * 1.5625 + 3.75^2 = 18.75, variance 4.6875, std 2.1651; CV = 2.1651 / 1.25 = sqrt(3) = sqrt(E - 1).
  EXPECT_NEAR(s.count_load.cv, std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(s.count_load.max_vio, 3.0, 1e-12);  // 5 / 1.25 - 1 = E - 1
  EXPECT_NEAR(s.count_load.gini, 0.75, 1e-12);    // (E - 1) / E
  EXPECT_DOUBLE_EQ(s.count_load.normalized_entropy, 0.0);
  EXPECT_DOUBLE_EQ(s.count_load.dead_experts, 3.0);
  // A router certain of its choice: entropy 0, margin 1.
  EXPECT_NEAR(*s.mean_router_entropy, 0.0, 1e-12);
  EXPECT_NEAR(*s.mean_top1_margin, 1.0, 1e-12);
}

TEST(RoutingStats, IgnoresExpertIdsOutOfRange) {
  std::vector<RoutingSample> samples = {{{0, 9}, {0.5f, 0.5f}, {}}, {{-1, 1}, {0.5f, 0.5f}, {}}};
  const LayerRoutingStats s = compute_routing_stats(samples, 2, 2);
  EXPECT_EQ(s.counts, (std::vector<int64_t>{1, 1}));
  EXPECT_NEAR(s.gate_weights[0], 0.5, 1e-6);
  EXPECT_NEAR(s.gate_weights[1], 0.5, 1e-6);
}

TEST(RoutingBaselines, UniformIsPerfectBalance) {
  const LoadMeasures u = uniform_baseline();
  EXPECT_DOUBLE_EQ(u.cv, 0.0);
  EXPECT_DOUBLE_EQ(u.normalized_entropy, 1.0);
  EXPECT_DOUBLE_EQ(u.max_vio, 0.0);
  EXPECT_DOUBLE_EQ(u.gini, 0.0);
  EXPECT_DOUBLE_EQ(u.dead_experts, 0.0);
  // And a perfectly balanced observed load measures the same.
  const std::vector<int64_t> balanced = {3, 3, 3};
  const LoadMeasures m = load_measures(std::span<const int64_t>(balanced));
  EXPECT_NEAR(m.cv, 0.0, 1e-12);
  EXPECT_NEAR(m.normalized_entropy, 1.0, 1e-12);
  EXPECT_NEAR(m.max_vio, 0.0, 1e-12);
  EXPECT_NEAR(m.gini, 0.0, 1e-12);
}

TEST(RoutingBaselines, RandomWithOneTokenTwoExpertsIsCertain) {
  // One token picks one of two experts: the counts are always (1, 0) or (0, 1).
  // Mean 0.5, std 0.5: CV 1; entropy 0; MaxVio 1 / 0.5 - 1 = 1; Gini (1 * 1) / (2 * 1) = 0.5.
  // Dead: exactly one, and E (1 - k/E)^N = 2 * 0.5 = 1.
  const LoadMeasures r = random_routing_baseline(1, 2, 1);
  EXPECT_NEAR(r.cv, 1.0, 1e-12);
  EXPECT_NEAR(r.normalized_entropy, 0.0, 1e-12);
  EXPECT_NEAR(r.max_vio, 1.0, 1e-12);
  EXPECT_NEAR(r.gini, 0.5, 1e-12);
  EXPECT_NEAR(r.dead_experts, 1.0, 1e-12);
}

TEST(RoutingBaselines, RandomWithEveryExpertSelectedIsBalanced) {
  // top_k = E: every token selects every expert, so the load is balanced in every draw.
  const LoadMeasures r = random_routing_baseline(7, 4, 4);
  EXPECT_NEAR(r.cv, 0.0, 1e-12);
  EXPECT_NEAR(r.normalized_entropy, 1.0, 1e-12);
  EXPECT_NEAR(r.max_vio, 0.0, 1e-12);
  EXPECT_NEAR(r.gini, 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(r.dead_experts, 0.0);
  // top_k above E is the same as E.
  EXPECT_NEAR(random_routing_baseline(7, 4, 9).cv, 0.0, 1e-12);
}

TEST(RoutingBaselines, RandomWithTwoTokensTwoExpertsMatchesTheExactExpectation) {
  // Two tokens, two experts, top-1: counts (2,0) or (0,2) with probability 1/2, (1,1) with 1/2.
  //   (2,0): CV 1, entropy 0, MaxVio 1, Gini 0.5.   (1,1): CV 0, entropy 1, MaxVio 0, Gini 0.
  // Expectations: CV 0.5, entropy 0.5, MaxVio 0.5, Gini 0.25; dead 2 * 0.5^2 = 0.5 exactly.
  // 20000 draws: each measure's standard error is at most 0.5 / sqrt(20000) = 0.0035.
  RandomBaselineOptions options;
  options.draws = 20000;
  const LoadMeasures r = random_routing_baseline(2, 2, 1, options);
  EXPECT_NEAR(r.cv, 0.5, 0.015);
  EXPECT_NEAR(r.normalized_entropy, 0.5, 0.015);
  EXPECT_NEAR(r.max_vio, 0.5, 0.015);
  EXPECT_NEAR(r.gini, 0.25, 0.008);
  EXPECT_DOUBLE_EQ(r.dead_experts, 0.5);
}

TEST(RoutingBaselines, RandomCvForManyTokensIsNearTheBinomialSpread) {
  // 1000 tokens, 8 experts, top-2: each count has mean 250 and variance N p (1 - p) = 1000 * 0.25 * 0.75
  // = 187.5, so sqrt(E[population variance]) / mean = 13.69 / 250 = 0.0548. E[std] is a little below
  // sqrt(E[variance]) (Jensen; about 0.965 of it for 7 degrees of freedom): about 0.0529. An independent
  // simulation (Python's random.sample, 4000 draws) gave 0.0531. With 1000 draws our standard error is
  // about 0.0005, so 0.002 is four of them.
  RandomBaselineOptions options;
  options.draws = 1000;
  const LoadMeasures r = random_routing_baseline(1000, 8, 2, options);
  EXPECT_LT(r.cv, 0.0548);
  EXPECT_NEAR(r.cv, 0.0531, 0.002);
  EXPECT_GT(r.normalized_entropy, 0.99);
  EXPECT_DOUBLE_EQ(r.dead_experts, 8.0 * std::pow(0.75, 1000.0));  // exact formula, about 1e-124
}

TEST(RoutingBaselines, RandomIsDeterministicAndBoundedInCost) {
  const LoadMeasures a = random_routing_baseline(50, 8, 2);
  const LoadMeasures b = random_routing_baseline(50, 8, 2);
  EXPECT_EQ(a.cv, b.cv);
  EXPECT_EQ(a.gini, b.gini);
  RandomBaselineOptions other_seed;
  other_seed.seed = 1;
  EXPECT_NE(random_routing_baseline(50, 8, 2, other_seed).cv, a.cv);
  // A budget of one selection still runs min_draws draws and gives a sensible value.
  RandomBaselineOptions tiny;
  tiny.max_selections = 1;
  const LoadMeasures c = random_routing_baseline(1, 2, 1, tiny);
  EXPECT_NEAR(c.cv, 1.0, 1e-12);
  // compute_routing_stats reports the baseline for its own token count.
  const auto samples = four_token_fixture();
  EXPECT_EQ(compute_routing_stats(samples, 4, 2).random.cv, random_routing_baseline(4, 4, 2).cv);
}

TEST(Coactivation, CountsPairsSymmetricallyWithSelectionsOnTheDiagonal) {
  const auto samples = four_token_fixture();
  const CoactivationMatrix m = coactivation(samples, 4);
  // Pairs: t0 (0,1), t1 (0,2), t2 (0,1), t3 (1,0) -> (0,1) three times, (0,2) once.
  EXPECT_EQ(m.at(0, 1), 3);
  EXPECT_EQ(m.at(1, 0), 3);
  EXPECT_EQ(m.at(0, 2), 1);
  EXPECT_EQ(m.at(2, 0), 1);
  EXPECT_EQ(m.at(1, 2), 0);
  EXPECT_EQ(m.at(0, 3), 0);
  // Diagonal = the selection counts 4 3 1 0.
  EXPECT_EQ(m.at(0, 0), 4);
  EXPECT_EQ(m.at(1, 1), 3);
  EXPECT_EQ(m.at(2, 2), 1);
  EXPECT_EQ(m.at(3, 3), 0);
}

TEST(Coactivation, RepeatedAndInvalidIdsAreNotPairs) {
  std::vector<RoutingSample> samples = {{{1, 1, 7}, {}, {}}};
  const CoactivationMatrix m = coactivation(samples, 2);
  EXPECT_EQ(m.at(1, 1), 2);  // listed twice: two selections, no pair with itself
  EXPECT_EQ(m.at(0, 1), 0);
  EXPECT_EQ(m.at(0, 0), 0);
}

TEST(ExpertPreference, CountsAndNpmiByCategory) {
  const auto samples = four_token_fixture();
  const std::vector<int> category = {0, 1, 0, 1};
  const ExpertPreference p = expert_preference(samples, category, 2, 4);
  EXPECT_EQ(p.category_tokens, (std::vector<int64_t>{2, 2}));
  // Category 0 (t0, t2): e0 2, e1 2. Category 1 (t1, t3): e0 2, e1 1, e2 1. Total 8 selections.
  EXPECT_EQ(p.count(0, 0), 2);
  EXPECT_EQ(p.count(0, 1), 2);
  EXPECT_EQ(p.count(0, 2), 0);
  EXPECT_EQ(p.count(1, 0), 2);
  EXPECT_EQ(p.count(1, 1), 1);
  EXPECT_EQ(p.count(1, 2), 1);
  // Marginals: p(c0) = p(c1) = 4/8; p(e0) = 4/8, p(e1) = 3/8, p(e2) = 1/8, p(e3) = 0.
  // (c0, e0): p = 2/8; ln(0.25 / (0.5 * 0.5)) = 0 -> nPMI 0.
  EXPECT_NEAR(p.npmi_at(0, 0), 0.0, 1e-12);
  // (c0, e1): p = 2/8; ln(0.25 / (0.5 * 0.375)) = ln(4/3) = 0.28768; / -ln 0.25 = 1.38629 -> 0.20752.
  EXPECT_NEAR(p.npmi_at(0, 1), std::log(4.0 / 3.0) / std::log(4.0), 1e-12);
  // (c0, e2): never together -> -1.
  EXPECT_DOUBLE_EQ(p.npmi_at(0, 2), -1.0);
  // (c1, e1): p = 1/8; ln(0.125 / (0.5 * 0.375)) = ln(2/3) = -0.40547; / -ln 0.125 = 2.07944 -> -0.19499.
  EXPECT_NEAR(p.npmi_at(1, 1), std::log(2.0 / 3.0) / std::log(8.0), 1e-12);
  // (c1, e2): p = 1/8; ln(0.125 / (0.5 * 0.125)) = ln 2; / ln 8 = 1/3.
  EXPECT_NEAR(p.npmi_at(1, 2), 1.0 / 3.0, 1e-12);
  // Expert 3 was never selected: no evidence, 0.
  EXPECT_DOUBLE_EQ(p.npmi_at(0, 3), 0.0);
  EXPECT_DOUBLE_EQ(p.npmi_at(1, 3), 0.0);
}

TEST(ExpertPreference, PerfectAssociationAndEdges) {
  // Category 0 always to expert 0, category 1 always to expert 1 (top-1).
  std::vector<RoutingSample> samples = {{{0}, {}, {}}, {{1}, {}, {}}, {{0}, {}, {}}, {{1}, {}, {}}};
  const std::vector<int> category = {0, 1, 0, 1};
  const ExpertPreference p = expert_preference(samples, category, 2, 2);
  // p(c0, e0) = 0.5 = p(c0) = p(e0): ln(0.5 / 0.25) / -ln 0.5 = 1.
  EXPECT_NEAR(p.npmi_at(0, 0), 1.0, 1e-12);
  EXPECT_NEAR(p.npmi_at(1, 1), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(p.npmi_at(0, 1), -1.0);
  // One category and one expert: p(c, e) = 1, the only pair, nPMI 1 by convention.
  const std::vector<int> one_category = {0, 0};
  const std::vector<RoutingSample> one_expert = {{{0}, {}, {}}, {{0}, {}, {}}};
  EXPECT_DOUBLE_EQ(expert_preference(one_expert, one_category, 1, 1).npmi_at(0, 0), 1.0);
  // Labels out of range and tokens past the shorter span are skipped; no tokens gives zeros.
  const std::vector<int> labels = {5, -1, 0};
  const ExpertPreference skipped = expert_preference(samples, labels, 2, 2);
  EXPECT_EQ(skipped.category_tokens, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(skipped.count(0, 0), 1);
  const ExpertPreference empty = expert_preference({}, {}, 2, 2);
  EXPECT_EQ(empty.counts, std::vector<int64_t>(4, 0));
  EXPECT_EQ(empty.npmi, std::vector<double>(4, 0.0));
}

TEST(ExpertPreference, ByTokenClass) {
  // Digits always go to expert 0, letters to expert 1: the classes feed straight in as categories.
  const std::vector<std::string> texts = {"12", " the", "7", "cat"};
  std::vector<int> category;
  for (const std::string& text : texts) category.push_back(int(classify_token(text, false)));
  std::vector<RoutingSample> samples = {{{0}, {}, {}}, {{1}, {}, {}}, {{0}, {}, {}}, {{1}, {}, {}}};
  const ExpertPreference p = expert_preference(samples, category, kTokenClassCount, 2);
  const int digits = int(TokenClass::Digits), letters = int(TokenClass::Letters);
  EXPECT_EQ(p.category_tokens[size_t(digits)], 2);
  EXPECT_EQ(p.category_tokens[size_t(letters)], 2);
  EXPECT_NEAR(p.npmi_at(digits, 0), 1.0, 1e-12);
  EXPECT_NEAR(p.npmi_at(letters, 1), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(p.npmi_at(int(TokenClass::Cjk), 0), 0.0);  // no CJK token: no evidence
}

TEST(TokenClass, ClassifiesByTheCharactersPresent) {
  EXPECT_EQ(classify_token("123", false), TokenClass::Digits);
  EXPECT_EQ(classify_token(" 42", false), TokenClass::Digits);
  EXPECT_EQ(classify_token(" the", false), TokenClass::Letters);
  EXPECT_EQ(classify_token("Привет", false), TokenClass::Letters);
  EXPECT_EQ(classify_token("é", false), TokenClass::Letters);
  EXPECT_EQ(classify_token("...", false), TokenClass::Punctuation);
  EXPECT_EQ(classify_token(" (", false), TokenClass::Punctuation);
  EXPECT_EQ(classify_token("€", false), TokenClass::Punctuation);
  EXPECT_EQ(classify_token("😀", false), TokenClass::Punctuation);
  EXPECT_EQ(classify_token("中文", false), TokenClass::Cjk);
  EXPECT_EQ(classify_token("こんにちは", false), TokenClass::Cjk);
  EXPECT_EQ(classify_token("한국어", false), TokenClass::Cjk);
  EXPECT_EQ(classify_token("\n\n", false), TokenClass::Whitespace);
  EXPECT_EQ(classify_token("", false), TokenClass::Whitespace);
  EXPECT_EQ(classify_token("\xC2\xA0", false), TokenClass::Whitespace);      // no-break space
  EXPECT_EQ(classify_token("\xE3\x80\x80", false), TokenClass::Whitespace);  // ideographic space
  EXPECT_EQ(classify_token("<|im_start|>", true), TokenClass::Special);
  EXPECT_EQ(classify_token("a", true), TokenClass::Special);
}

TEST(TokenClass, FullwidthAndOtherScriptsDigits) {
  EXPECT_EQ(classify_token("１２", false), TokenClass::Digits);         // fullwidth digits
  EXPECT_EQ(classify_token("，", false), TokenClass::Punctuation);      // fullwidth comma
  EXPECT_EQ(classify_token("。", false), TokenClass::Punctuation);      // ideographic full stop
  EXPECT_EQ(classify_token("Ａ", false), TokenClass::Letters);          // fullwidth A
  EXPECT_EQ(classify_token("\xD9\xA3", false), TokenClass::Digits);    // U+0663 Arabic-Indic three
}

TEST(TokenClass, MixedTokensTakeTheFirstClassInPrecedence) {
  // CJK, then letters, then digits, then punctuation, then other.
  EXPECT_EQ(classify_token("a1", false), TokenClass::Letters);
  EXPECT_EQ(classify_token("1.", false), TokenClass::Digits);
  EXPECT_EQ(classify_token("日a", false), TokenClass::Cjk);
  EXPECT_EQ(classify_token("!\x01", false), TokenClass::Punctuation);
}

TEST(TokenClass, ByteFragmentsAndControlsAreOther) {
  EXPECT_EQ(classify_token("\xE4\xB8", false), TokenClass::Other);   // first two bytes of 中
  EXPECT_EQ(classify_token(" \xAD", false), TokenClass::Other);      // a lone continuation byte
  EXPECT_EQ(classify_token("\xC0\x80", false), TokenClass::Other);   // overlong NUL
  EXPECT_EQ(classify_token("\xED\xA0\x80", false), TokenClass::Other);  // a UTF-16 surrogate
  EXPECT_EQ(classify_token(std::string_view("\x01", 1), false), TokenClass::Other);
  EXPECT_EQ(token_class_name(TokenClass::Cjk), "cjk");
  EXPECT_EQ(token_class_name(TokenClass::Other), "other");
}

}  // namespace
}  // namespace moe::inspect
