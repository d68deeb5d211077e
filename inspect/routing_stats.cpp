#include "inspect/routing_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace moe::inspect {
namespace {

bool valid_expert(int32_t expert, int n_experts) { return expert >= 0 && expert < n_experts; }

// Entropy of values/sum divided by log(n). A distribution over one outcome is the uniform one, so it
// gets 1, which keeps "one expert" consistent with "balanced".
double normalized_entropy(std::span<const double> values, double sum) {
  if (values.size() <= 1) return 1.0;
  double entropy = 0;
  for (double v : values) {
    if (v <= 0) continue;  // 0 log 0 = 0
    const double p = v / sum;
    entropy -= p * std::log(p);
  }
  return entropy / std::log(double(values.size()));
}

// Unbiased draw in [0, bound) from mt19937_64. std::uniform_int_distribution would do, but its
// algorithm is up to the standard library, and the random baseline must be the same everywhere.
uint64_t bounded_draw(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound: values below it would bias the result
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

}  // namespace

LoadMeasures load_measures(std::span<const double> load) {
  LoadMeasures m;
  const size_t n = load.size();
  if (n == 0) return m;
  for (double v : load) m.dead_experts += v == 0 ? 1 : 0;
  const double sum = std::accumulate(load.begin(), load.end(), 0.0);
  if (sum <= 0) return m;
  const double mean = sum / double(n);
  double variance = 0;
  for (double v : load) variance += (v - mean) * (v - mean);
  variance /= double(n);
  m.cv = std::sqrt(variance) / mean;
  m.normalized_entropy = normalized_entropy(load, sum);
  m.max_vio = *std::max_element(load.begin(), load.end()) / mean - 1.0;
  // Gini from the sorted load: sum_i (2i - n - 1) x_(i) / (n * sum), i = 1..n. Same value as the
  // mean absolute difference over all pairs / (2 * mean), in n log n instead of n^2.
  std::vector<double> sorted(load.begin(), load.end());
  std::sort(sorted.begin(), sorted.end());
  double weighted = 0;
  for (size_t i = 0; i < n; ++i) weighted += (2.0 * double(i + 1) - double(n) - 1.0) * sorted[i];
  m.gini = weighted / (double(n) * sum);
  // Rounding can leave -1e-17 where the exact answer is 0; a balance measure below 0 would confuse readers.
  m.cv = std::max(m.cv, 0.0);
  m.max_vio = std::max(m.max_vio, 0.0);
  m.gini = std::max(m.gini, 0.0);
  m.normalized_entropy = std::clamp(m.normalized_entropy, 0.0, 1.0);
  return m;
}

LoadMeasures load_measures(std::span<const int64_t> load) {
  const std::vector<double> as_double(load.begin(), load.end());
  return load_measures(std::span<const double>(as_double));
}

LoadMeasures uniform_baseline() {
  LoadMeasures m;
  m.normalized_entropy = 1.0;
  return m;
}

LoadMeasures random_routing_baseline(int64_t n_tokens, int n_experts, int top_k, const RandomBaselineOptions& options) {
  if (n_experts <= 0) return LoadMeasures{};
  const int k = std::clamp(top_k, 0, n_experts);
  if (n_tokens <= 0 || k == 0) {
    LoadMeasures m;
    m.dead_experts = n_experts;
    return m;
  }
  const int64_t per_draw = n_tokens * int64_t(k);
  const int64_t wanted = std::max(1, options.draws);
  const int64_t affordable = std::max<int64_t>(options.min_draws, options.max_selections / per_draw);
  const int64_t draws = std::max<int64_t>(1, std::min(wanted, affordable));

  std::mt19937_64 rng(options.seed);
  std::vector<int32_t> ids(static_cast<size_t>(n_experts));
  std::iota(ids.begin(), ids.end(), 0);
  std::vector<double> counts(static_cast<size_t>(n_experts));
  LoadMeasures mean;
  for (int64_t d = 0; d < draws; ++d) {
    std::fill(counts.begin(), counts.end(), 0.0);
    for (int64_t t = 0; t < n_tokens; ++t) {
      // Partial Fisher-Yates: the first k slots become a uniform k-subset. The array is not reset
      // between tokens; a uniform pick from any arrangement is still uniform.
      for (int j = 0; j < k; ++j) {
        const size_t pick = size_t(j) + size_t(bounded_draw(rng, uint64_t(n_experts - j)));
        std::swap(ids[size_t(j)], ids[pick]);
        counts[size_t(ids[size_t(j)])] += 1;
      }
    }
    const LoadMeasures m = load_measures(std::span<const double>(counts));
    mean.cv += m.cv;
    mean.normalized_entropy += m.normalized_entropy;
    mean.max_vio += m.max_vio;
    mean.gini += m.gini;
  }
  mean.cv /= double(draws);
  mean.normalized_entropy /= double(draws);
  mean.max_vio /= double(draws);
  mean.gini /= double(draws);
  // An expert escapes one token with probability 1 - k/E, and tokens are independent.
  mean.dead_experts = double(n_experts) * std::pow(1.0 - double(k) / double(n_experts), double(n_tokens));
  return mean;
}

LayerRoutingStats compute_routing_stats(std::span<const RoutingSample> samples, int n_experts, int top_k,
                                        const RandomBaselineOptions& random_options) {
  LayerRoutingStats s;
  s.n_experts = std::max(0, n_experts);
  s.top_k = top_k;
  s.tokens = int64_t(samples.size());
  s.counts.assign(size_t(s.n_experts), 0);
  s.gate_weights.assign(size_t(s.n_experts), 0.0);
  double entropy_sum = 0, margin_sum = 0;
  std::vector<double> probs;
  for (const RoutingSample& sample : samples) {
    for (size_t j = 0; j < sample.experts.size(); ++j) {
      const int32_t e = sample.experts[j];
      if (!valid_expert(e, s.n_experts)) continue;
      s.counts[size_t(e)] += 1;
      s.gate_weights[size_t(e)] += j < sample.weights.size() ? double(sample.weights[j]) : 0.0;
    }
    if (s.n_experts == 0 || sample.probs.size() != size_t(s.n_experts)) continue;
    probs.assign(sample.probs.begin(), sample.probs.end());
    for (double& p : probs) p = std::max(p, 0.0);  // a negative probability is noise, not information
    const double sum = std::accumulate(probs.begin(), probs.end(), 0.0);
    if (!(sum > 0) || !std::isfinite(sum)) continue;
    entropy_sum += normalized_entropy(probs, sum);
    double first = 0, second = 0;
    for (double p : probs) {
      if (p > first) {
        second = first;
        first = p;
      } else if (p > second) {
        second = p;
      }
    }
    margin_sum += (first - second) / sum;
    s.tokens_with_probs += 1;
  }
  s.count_load = load_measures(std::span<const int64_t>(s.counts));
  s.weighted_load = load_measures(std::span<const double>(s.gate_weights));
  s.uniform = uniform_baseline();
  s.random = random_routing_baseline(s.tokens, s.n_experts, top_k, random_options);
  if (s.tokens_with_probs > 0) {
    s.mean_router_entropy = entropy_sum / double(s.tokens_with_probs);
    s.mean_top1_margin = margin_sum / double(s.tokens_with_probs);
  }
  return s;
}

CoactivationMatrix coactivation(std::span<const RoutingSample> samples, int n_experts) {
  CoactivationMatrix m;
  m.n_experts = std::max(0, n_experts);
  m.counts.assign(size_t(m.n_experts) * size_t(m.n_experts), 0);
  const size_t n = size_t(m.n_experts);
  for (const RoutingSample& sample : samples) {
    const std::vector<int32_t>& ex = sample.experts;
    for (size_t a = 0; a < ex.size(); ++a) {
      if (!valid_expert(ex[a], m.n_experts)) continue;
      m.counts[size_t(ex[a]) * n + size_t(ex[a])] += 1;
      for (size_t b = a + 1; b < ex.size(); ++b) {
        // An id listed twice for one token is not a pair of experts; its diagonal already counts both.
        if (!valid_expert(ex[b], m.n_experts) || ex[b] == ex[a]) continue;
        m.counts[size_t(ex[a]) * n + size_t(ex[b])] += 1;
        m.counts[size_t(ex[b]) * n + size_t(ex[a])] += 1;
      }
    }
  }
  return m;
}

ExpertPreference expert_preference(std::span<const RoutingSample> samples, std::span<const int> category_of_token,
                                   int n_categories, int n_experts) {
  ExpertPreference pref;
  pref.n_categories = std::max(0, n_categories);
  pref.n_experts = std::max(0, n_experts);
  const size_t n_c = size_t(pref.n_categories), n_e = size_t(pref.n_experts);
  pref.category_tokens.assign(n_c, 0);
  pref.counts.assign(n_c * n_e, 0);
  pref.npmi.assign(n_c * n_e, 0.0);
  const size_t n_tokens = std::min(samples.size(), category_of_token.size());
  for (size_t t = 0; t < n_tokens; ++t) {
    const int c = category_of_token[t];
    if (c < 0 || c >= pref.n_categories) continue;
    pref.category_tokens[size_t(c)] += 1;
    for (int32_t e : samples[t].experts)
      if (valid_expert(e, pref.n_experts)) pref.counts[size_t(c) * n_e + size_t(e)] += 1;
  }
  std::vector<int64_t> category_total(n_c, 0), expert_total(n_e, 0);
  int64_t total = 0;
  for (size_t c = 0; c < n_c; ++c)
    for (size_t e = 0; e < n_e; ++e) {
      const int64_t n = pref.counts[c * n_e + e];
      category_total[c] += n;
      expert_total[e] += n;
      total += n;
    }
  for (size_t c = 0; c < n_c; ++c)
    for (size_t e = 0; e < n_e; ++e) {
      double& out = pref.npmi[c * n_e + e];
      if (category_total[c] == 0 || expert_total[e] == 0) continue;  // no evidence either way: 0
      const int64_t joint = pref.counts[c * n_e + e];
      if (joint == 0) {
        out = -1.0;  // the limit of nPMI as p(c, e) goes to 0
      } else if (joint == total) {
        out = 1.0;  // the only pair observed: -log p(c, e) = 0, and the limit is perfect association
      } else {
        const double p_joint = double(joint) / double(total);
        const double p_c = double(category_total[c]) / double(total);
        const double p_e = double(expert_total[e]) / double(total);
        out = std::clamp(std::log(p_joint / (p_c * p_e)) / -std::log(p_joint), -1.0, 1.0);
      }
    }
  return pref;
}

}  // namespace moe::inspect
