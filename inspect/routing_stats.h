#pragma once
// Routing measures of one MoE layer over a run of tokens: how balanced the experts are, how sure the
// router is, which experts fire together, and which experts prefer which kinds of token. Each load
// measure comes beside two baselines (perfect balance, and routing at random) so a number like
// "CV 0.4" can be read without knowing what is normal for this many tokens and experts.
//
// Input is plain values, one RoutingSample per token, so the measures can be computed over the
// whole trace, a window or one phase by passing the matching tokens.
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace moe::inspect {

// One token's routing decision in one MoE layer.
struct RoutingSample {
  std::vector<int32_t> experts;  // selected expert ids (ids outside [0, n_experts) are ignored)
  std::vector<float> weights;    // their gate weights, same order; missing entries count as 0
  std::vector<float> probs;      // the full router distribution over all experts; empty when not captured
};

// Measures of one load vector (selections or gate weight per expert).
// Conventions at the edges: a load that is zero everywhere (no tokens) has cv, max_vio and gini 0 and
// normalized_entropy 0 (read `tokens` to tell "nothing ran" from a measure); with one expert the load
// is trivially balanced (cv 0, max_vio 0, gini 0, normalized_entropy 1).
struct LoadMeasures {
  double cv = 0;                  // coefficient of variation: population std / mean; 0 = balanced
  double normalized_entropy = 0;  // entropy of load/sum divided by log(n_experts); 1 = balanced
  double max_vio = 0;             // max load / mean load - 1 (Wang et al. 2024, loss-free balancing)
  double gini = 0;                // Gini coefficient of the load; 0 = balanced, (E-1)/E = all on one expert
  double dead_experts = 0;        // experts with zero load (an expectation for the random baseline)
};

LoadMeasures load_measures(std::span<const double> load);
LoadMeasures load_measures(std::span<const int64_t> load);

// Perfect balance: cv 0, normalized entropy 1, max_vio 0, gini 0, no dead expert.
LoadMeasures uniform_baseline();

// Expected load measures when each of n_tokens tokens picks top_k distinct experts uniformly at random.
// cv, entropy, max_vio and gini have no closed form for dependent counts, so they are the mean over
// `draws` seeded simulations (mt19937_64 with our own unbiased bounded draw, hence the same numbers on
// every platform and standard library). dead_experts is exact: E * (1 - k/E)^n_tokens.
// The cost is draws * n_tokens * top_k; when that passes max_selections the number of draws is cut
// (never below min_draws), which costs little accuracy since the spread of every measure shrinks as
// tokens grow.
struct RandomBaselineOptions {
  int draws = 64;
  int min_draws = 4;
  int64_t max_selections = int64_t(1) << 25;
  uint64_t seed = 0x6d6f652d72616e64ull;
};
LoadMeasures random_routing_baseline(int64_t n_tokens, int n_experts, int top_k,
                                     const RandomBaselineOptions& options = {});

struct LayerRoutingStats {
  int n_experts = 0;
  int top_k = 0;
  int64_t tokens = 0;
  std::vector<int64_t> counts;       // selections per expert
  std::vector<double> gate_weights;  // summed gate weight per expert
  LoadMeasures count_load;           // measures of counts
  LoadMeasures weighted_load;        // measures of gate_weights
  LoadMeasures uniform;              // uniform_baseline()
  LoadMeasures random;               // random_routing_baseline(tokens, n_experts, top_k)
  // Router certainty over the tokens that carry a full distribution (probs of length n_experts with a
  // positive sum). The distribution is renormalised to sum 1 first, because sigmoid routers
  // (DeepSeek-V3 and descendants) produce scores that do not. Unset when no token carries one.
  int64_t tokens_with_probs = 0;
  std::optional<double> mean_router_entropy;  // entropy / log(n_experts): 1 = uniform router, 0 = certain
  std::optional<double> mean_top1_margin;     // p1 - p2 of the renormalised distribution
};

LayerRoutingStats compute_routing_stats(std::span<const RoutingSample> samples, int n_experts, int top_k,
                                        const RandomBaselineOptions& random_options = {});

// How often experts i and j were selected for the same token: symmetric, and the diagonal holds each
// expert's selection count (so at(i, j) / at(i, i) is the share of i's tokens that also went to j).
struct CoactivationMatrix {
  int n_experts = 0;
  std::vector<int64_t> counts;  // n_experts * n_experts, row-major
  int64_t at(int i, int j) const { return counts[size_t(i) * size_t(n_experts) + size_t(j)]; }
};
CoactivationMatrix coactivation(std::span<const RoutingSample> samples, int n_experts);

// Expert preference by token category: a token class (int(TokenClass)), a phase, or any other label.
// The events are the selections: each (token, selected expert) pair is one observation of
// (category of the token, expert). From their joint distribution,
//   nPMI(c, e) = log(p(c, e) / (p(c) p(e))) / -log p(c, e),
// in [-1, 1]: 1 = the expert is selected only for this category and the category only goes to it,
// 0 = independent, -1 = never together. When either marginal is zero there is no evidence and nPMI is
// 0; when p(c, e) = 1 (one category, one expert) it is 1.
struct ExpertPreference {
  int n_categories = 0;
  int n_experts = 0;
  std::vector<int64_t> category_tokens;  // tokens per category
  std::vector<int64_t> counts;           // selections, n_categories * n_experts, row-major
  std::vector<double> npmi;              // same shape
  int64_t count(int category, int expert) const { return counts[index(category, expert)]; }
  double npmi_at(int category, int expert) const { return npmi[index(category, expert)]; }

 private:
  size_t index(int category, int expert) const { return size_t(category) * size_t(n_experts) + size_t(expert); }
};

// category_of_token[t] labels samples[t]; tokens with a label outside [0, n_categories) are skipped,
// as are tokens past the end of either span.
ExpertPreference expert_preference(std::span<const RoutingSample> samples, std::span<const int> category_of_token,
                                   int n_categories, int n_experts);

}  // namespace moe::inspect
