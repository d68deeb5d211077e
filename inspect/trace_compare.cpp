#include "inspect/trace_compare.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace moe::inspect {

std::optional<double> jensen_shannon_divergence(std::span<const double> p, std::span<const double> q) {
  if (p.empty() || p.size() != q.size()) return std::nullopt;
  double sum_p = 0, sum_q = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (!(p[i] >= 0) || !(q[i] >= 0) || !std::isfinite(p[i]) || !std::isfinite(q[i])) return std::nullopt;
    sum_p += p[i];
    sum_q += q[i];
  }
  if (!(sum_p > 0) || !(sum_q > 0)) return std::nullopt;
  // Written as the mean KL divergence of p and q from their midpoint m: each term is finite because
  // m_i >= p_i / 2 wherever p_i > 0.
  double jsd = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double pi = p[i] / sum_p, qi = q[i] / sum_q, mi = 0.5 * (pi + qi);
    if (pi > 0) jsd += 0.5 * pi * std::log2(pi / mi);
    if (qi > 0) jsd += 0.5 * qi * std::log2(qi / mi);
  }
  return std::clamp(jsd, 0.0, 1.0);
}

namespace {

// Selection counts per expert of MoE ordinal m over the selected rows, and the tokens routed there.
std::vector<double> selection_counts(const Trace& t, std::span<const int64_t> rows, int m, int64_t& tokens) {
  std::vector<double> counts(size_t(std::max(0, t.n_experts)), 0.0);
  const std::vector<RoutingSample> samples = routing_samples(t, rows, m);
  tokens = int64_t(samples.size());
  for (const RoutingSample& s : samples)
    for (int32_t e : s.experts)
      if (e >= 0 && e < t.n_experts) counts[size_t(e)] += 1;
  return counts;
}

}  // namespace

LoadDivergence expert_load_divergence(const Trace& a, const Trace& b, const TokenFilter& filter) {
  LoadDivergence out;
  const bool same_experts = a.n_experts == b.n_experts;
  if (!same_experts)
    out.notes.push_back("the traces have different expert counts (" + std::to_string(a.n_experts) + " and " +
                        std::to_string(b.n_experts) + "): expert loads are not comparable");
  if (a.n_moe() != b.n_moe() || a.moe_layers != b.moe_layers)
    out.notes.push_back("the traces have different MoE layers; layers are matched by index");
  const std::vector<int64_t> rows_a = select_tokens(a, filter), rows_b = select_tokens(b, filter);

  std::map<int, std::pair<int, int>> ordinals;  // layer -> (ordinal in a, ordinal in b)
  for (int m = 0; m < a.n_moe(); ++m) ordinals.try_emplace(a.moe_layers[size_t(m)], -1, -1).first->second.first = m;
  for (int m = 0; m < b.n_moe(); ++m) ordinals.try_emplace(b.moe_layers[size_t(m)], -1, -1).first->second.second = m;
  for (const auto& [layer, ordinal] : ordinals) {
    LayerDivergence d;
    d.layer = layer;
    d.moe_index_a = ordinal.first;
    d.moe_index_b = ordinal.second;
    std::vector<double> counts_a, counts_b;
    if (d.moe_index_a >= 0) counts_a = selection_counts(a, rows_a, d.moe_index_a, d.tokens_a);
    if (d.moe_index_b >= 0) counts_b = selection_counts(b, rows_b, d.moe_index_b, d.tokens_b);
    if (d.moe_index_a < 0) {
      d.note = "not an MoE layer in trace A";
    } else if (d.moe_index_b < 0) {
      d.note = "not an MoE layer in trace B";
    } else if (!same_experts) {
      d.note = "different expert counts";
    } else if (std::accumulate(counts_a.begin(), counts_a.end(), 0.0) <= 0) {
      d.note = "no routed token in trace A";
    } else if (std::accumulate(counts_b.begin(), counts_b.end(), 0.0) <= 0) {
      d.note = "no routed token in trace B";
    } else {
      d.jsd = jensen_shannon_divergence(counts_a, counts_b);
    }
    out.layers.push_back(std::move(d));
  }
  return out;
}

FirstDifference first_generated_difference(const Trace& a, const Trace& b) {
  TokenFilter generated;
  generated.origin = TokenOrigin::Generated;
  const std::vector<int64_t> rows_a = select_tokens(a, generated), rows_b = select_tokens(b, generated);
  FirstDifference d;
  d.generated_a = int64_t(rows_a.size());
  d.generated_b = int64_t(rows_b.size());
  const size_t common = std::min(rows_a.size(), rows_b.size());
  size_t i = 0;
  while (i < common && a.tokens[size_t(rows_a[i])] == b.tokens[size_t(rows_b[i])]) ++i;
  if (i == common && rows_a.size() == rows_b.size()) return d;  // the same sequence
  d.index = int64_t(i);
  if (i < rows_a.size()) {
    d.row_a = rows_a[i];
    d.token_a = a.tokens[size_t(rows_a[i])];
  }
  if (i < rows_b.size()) {
    d.row_b = rows_b[i];
    d.token_b = b.tokens[size_t(rows_b[i])];
  }
  return d;
}

TraceComparison compare_traces(const Trace& a, const Trace& b, const TokenFilter& filter) {
  TraceComparison c;
  c.load = expert_load_divergence(a, b, filter);
  c.phases_a = phase_totals(a, filter);
  c.phases_b = phase_totals(b, filter);
  c.first_difference = first_generated_difference(a, b);
  return c;
}

Table load_divergence_table(const LoadDivergence& divergence) {
  Table t;
  t.title = "Expert load divergence (Jensen-Shannon, bits)";
  t.columns = {"layer", "tokens_a", "tokens_b", "jsd", "note"};
  for (const LayerDivergence& d : divergence.layers)
    t.add_row({d.layer, d.tokens_a, d.tokens_b, Cell::optional(d.jsd), d.note});
  t.notes = divergence.notes;
  t.notes.push_back("jsd of the selection-count distributions: 0 = the same load, 1 = no expert in common");
  return t;
}

Table phase_tokens_comparison_table(const PhaseTotals& a, const PhaseTotals& b) {
  Table t;
  t.title = "Tokens by phase";
  t.columns = {"phase", "tokens_a", "tokens_b"};
  for (int p = 0; p < kPhaseCount; ++p)
    t.add_row({phase_name(static_cast<Phase>(p)), a.tokens[size_t(p)], b.tokens[size_t(p)]});
  t.add_row({"total", a.total_tokens(), b.total_tokens()});
  return t;
}

Table phase_time_comparison_table(const PhaseTotals& a, const PhaseTotals& b) {
  Table t;
  t.title = "Time by phase";
  t.columns = {"phase", "time_a_s", "time_b_s", "ms_per_token_a", "ms_per_token_b"};
  auto per_token = [](double time, int64_t tokens) { return tokens > 0 ? Cell(1000.0 * time / double(tokens), 3) : Cell(); };
  for (int p = 0; p < kPhaseCount; ++p) {
    const size_t i = size_t(p);
    t.add_row({phase_name(static_cast<Phase>(p)), Cell(a.time_s[i], 6), Cell(b.time_s[i], 6),
               per_token(a.time_s[i], a.tokens[i]), per_token(b.time_s[i], b.tokens[i])});
  }
  t.add_row({"total", Cell(a.total_time_s(), 6), Cell(b.total_time_s(), 6), per_token(a.total_time_s(), a.total_tokens()),
             per_token(b.total_time_s(), b.total_tokens())});
  t.notes.push_back("a step's wall time is split evenly over the tokens it ran");
  return t;
}

Table first_difference_table(const FirstDifference& d) {
  Table t;
  t.title = "First difference among generated tokens";
  t.columns = {"generated_a", "generated_b", "first_difference", "token_a", "token_b"};
  auto token = [](const std::optional<int32_t>& id) { return id ? Cell(*id) : Cell(); };
  t.add_row({d.generated_a, d.generated_b, d.index, token(d.token_a), token(d.token_b)});
  t.notes.push_back("first_difference: index among the generated tokens, -1 when both generated the same sequence");
  return t;
}

std::vector<Table> comparison_tables(const TraceComparison& c) {
  return {load_divergence_table(c.load), phase_tokens_comparison_table(c.phases_a, c.phases_b),
          phase_time_comparison_table(c.phases_a, c.phases_b), first_difference_table(c.first_difference)};
}

}  // namespace moe::inspect
