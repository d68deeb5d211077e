#include "inspect/trace_measures.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_map>

#include "inspect/token_class.h"

namespace moe::inspect {
namespace {

// True when `column` holds row `row` of an array with `per_row` values per row.
template <class T>
bool covers(const std::vector<T>& column, int64_t row, int64_t per_row) {
  return per_row > 0 && row >= 0 && int64_t(column.size()) >= (row + 1) * per_row;
}

bool flag(const std::vector<uint8_t>& column, int64_t row) {
  return row >= 0 && row < int64_t(column.size()) && column[size_t(row)] != 0;
}

bool has_routing(const Trace& t, int64_t row) {
  return flag(t.has_routing, row) && covers(t.expert_ids, row, int64_t(t.n_moe()) * t.top_k);
}

bool has_probs(const Trace& t, int64_t row) {
  return flag(t.has_router_probs, row) && covers(t.router_probs, row, int64_t(t.n_moe()) * t.n_experts);
}

std::string phase_label(int p) { return phase_name(static_cast<Phase>(p)); }

std::vector<std::string> phase_labels() {
  std::vector<std::string> names;
  for (int p = 0; p < kPhaseCount; ++p) names.push_back(phase_label(p));
  return names;
}

// Mean of a [N][M] column over rows, skipping rows the column does not cover and non-finite values.
std::optional<double> column_mean(const Trace& t, const std::vector<float>& column, std::span<const int64_t> rows, int m) {
  double sum = 0;
  int64_t n = 0;
  for (int64_t row : rows) {
    if (!covers(column, row, t.n_moe())) continue;
    const double v = column[size_t(row) * size_t(t.n_moe()) + size_t(m)];
    if (!std::isfinite(v)) continue;
    sum += v;
    n += 1;
  }
  if (n == 0) return std::nullopt;
  return sum / double(n);
}

void require_moe_index(const Trace& t, int moe_index) {
  if (moe_index < 0 || moe_index >= t.n_moe())
    throw std::out_of_range("MoE layer ordinal " + std::to_string(moe_index) + " out of range (the trace has " +
                            std::to_string(t.n_moe()) + " MoE layers)");
}

}  // namespace

// ---- Token selection -------------------------------------------------------------------------------

bool is_generated_phase(Phase phase) { return phase == Phase::Thinking || phase == Phase::Answer; }

bool is_generated(const Trace& trace, int64_t row) {
  if (size_t(row) < trace.generated.size()) return trace.generated[size_t(row)] != 0;
  return is_generated_phase(phase_of(trace, row));
}

Phase phase_of(const Trace& trace, int64_t row) {
  if (row < 0 || row >= int64_t(trace.phases.size())) return Phase::Other;
  const uint8_t p = trace.phases[size_t(row)];
  return p < kPhaseCount ? static_cast<Phase>(p) : Phase::Other;
}

std::vector<int64_t> select_tokens(const Trace& trace, const TokenFilter& filter) {
  const int64_t n = trace.size();
  int64_t lo = 0, hi = n;
  if (filter.last) lo = std::max(lo, n - std::max<int64_t>(0, *filter.last));
  if (filter.begin) lo = std::max(lo, *filter.begin);
  if (filter.end) hi = std::min(hi, *filter.end);
  std::vector<int64_t> rows;
  for (int64_t row = std::max<int64_t>(lo, 0); row < hi; ++row) {
    const Phase phase = phase_of(trace, row);
    if (filter.phase && phase != *filter.phase) continue;
    const bool generated = is_generated(trace, row);
    if (filter.origin == TokenOrigin::Generated && !generated) continue;
    if (filter.origin == TokenOrigin::Prompt && generated) continue;
    rows.push_back(row);
  }
  return rows;
}

std::string describe(const TokenFilter& filter) {
  std::vector<std::string> parts;
  if (filter.last) parts.push_back("last " + std::to_string(*filter.last) + " rows");
  if (filter.begin || filter.end)
    parts.push_back("rows [" + (filter.begin ? std::to_string(*filter.begin) : std::string("0")) + ", " +
                    (filter.end ? std::to_string(*filter.end) : std::string("end")) + ")");
  if (filter.phase) parts.push_back(phase_name(*filter.phase));
  if (filter.origin == TokenOrigin::Generated) parts.push_back("generated");
  if (filter.origin == TokenOrigin::Prompt) parts.push_back("prompt");
  if (parts.empty()) return "all tokens";
  std::string s = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) s += ", " + parts[i];
  return s;
}

int moe_ordinal_of_layer(const Trace& trace, int layer) {
  for (int m = 0; m < trace.n_moe(); ++m)
    if (trace.moe_layers[size_t(m)] == layer) return m;
  return -1;
}

std::vector<RoutingSample> routing_samples(const Trace& trace, std::span<const int64_t> rows, int moe_index,
                                           std::vector<int64_t>* sampled_rows) {
  std::vector<RoutingSample> samples;
  if (sampled_rows) sampled_rows->clear();
  if (moe_index < 0 || moe_index >= trace.n_moe()) return samples;
  const size_t M = size_t(trace.n_moe()), K = size_t(std::max(0, trace.top_k)), E = size_t(std::max(0, trace.n_experts));
  for (int64_t row : rows) {
    if (!has_routing(trace, row)) continue;
    RoutingSample sample;
    const size_t base = (size_t(row) * M + size_t(moe_index)) * K;
    const bool weights = covers(trace.expert_weights, row, int64_t(M * K));
    for (size_t j = 0; j < K; ++j) {
      const int32_t id = trace.expert_ids[base + j];
      if (id < 0) continue;  // an empty slot of a layer that ran with a smaller k
      sample.experts.push_back(id);
      sample.weights.push_back(weights ? trace.expert_weights[base + j] : 0.0f);
    }
    if (has_probs(trace, row)) {
      const size_t p = (size_t(row) * M + size_t(moe_index)) * E;
      sample.probs.assign(trace.router_probs.begin() + std::ptrdiff_t(p), trace.router_probs.begin() + std::ptrdiff_t(p + E));
    }
    samples.push_back(std::move(sample));
    if (sampled_rows) sampled_rows->push_back(row);
  }
  return samples;
}

// ---- Routing per MoE layer ---------------------------------------------------------------------------

const char* router_certainty_source_name(RouterCertaintySource source) {
  switch (source) {
    case RouterCertaintySource::None: return "none";
    case RouterCertaintySource::Probabilities: return "router.probs";
    case RouterCertaintySource::TraceColumns: return "router_entropy/top1_margin columns";
  }
  return "?";
}

std::vector<LayerRouting> routing_by_layer(const Trace& trace, const TokenFilter& filter,
                                           const RandomBaselineOptions& random_options) {
  const std::vector<int64_t> rows = select_tokens(trace, filter);
  std::vector<LayerRouting> out;
  for (int m = 0; m < trace.n_moe(); ++m) {
    LayerRouting lr;
    lr.moe_index = m;
    lr.layer = trace.moe_layers[size_t(m)];
    std::vector<int64_t> sampled;
    const std::vector<RoutingSample> samples = routing_samples(trace, rows, m, &sampled);
    int64_t selections = 0;
    for (const RoutingSample& s : samples)
      for (int32_t e : s.experts) selections += e >= 0 && e < trace.n_experts ? 1 : 0;
    const int k = samples.empty() ? trace.top_k
                                  : std::max(1, int(std::lround(double(selections) / double(samples.size()))));
    lr.stats = compute_routing_stats(samples, trace.n_experts, k, random_options);
    if (!samples.empty()) {
      if (lr.stats.tokens_with_probs == lr.stats.tokens) {
        lr.mean_router_entropy = lr.stats.mean_router_entropy;
        lr.mean_top1_margin = lr.stats.mean_top1_margin;
        lr.certainty_source = RouterCertaintySource::Probabilities;
      } else {
        lr.mean_router_entropy = column_mean(trace, trace.router_entropy, sampled, m);
        lr.mean_top1_margin = column_mean(trace, trace.top1_margin, sampled, m);
        if (lr.mean_router_entropy || lr.mean_top1_margin) lr.certainty_source = RouterCertaintySource::TraceColumns;
      }
    }
    out.push_back(std::move(lr));
  }
  return out;
}

Table routing_summary_table(std::span<const LayerRouting> layers) {
  Table t;
  t.title = "Routing per MoE layer";
  t.columns = {"layer",         "tokens",       "cv",          "cv_uniform",    "cv_random",      "entropy",
               "entropy_uniform", "entropy_random", "max_vio",   "max_vio_uniform", "max_vio_random", "gini",
               "gini_uniform",  "gini_random",  "dead",        "dead_uniform",  "dead_random",    "router_entropy",
               "top1_margin"};
  bool from_probs = false, from_columns = false;
  for (const LayerRouting& lr : layers) {
    const LayerRoutingStats& s = lr.stats;
    t.add_row({lr.layer, s.tokens, s.count_load.cv, s.uniform.cv, s.random.cv, s.count_load.normalized_entropy,
               s.uniform.normalized_entropy, s.random.normalized_entropy, s.count_load.max_vio, s.uniform.max_vio,
               s.random.max_vio, s.count_load.gini, s.uniform.gini, s.random.gini,
               int64_t(std::llround(s.count_load.dead_experts)), int64_t(std::llround(s.uniform.dead_experts)),
               s.random.dead_experts, Cell::optional(lr.mean_router_entropy), Cell::optional(lr.mean_top1_margin)});
    from_probs |= lr.certainty_source == RouterCertaintySource::Probabilities;
    from_columns |= lr.certainty_source == RouterCertaintySource::TraceColumns;
  }
  t.notes.push_back("load measures are of the selection counts; entropy = entropy of the load shares / ln(experts)");
  t.notes.push_back("_uniform: perfectly balanced load; _random: each token picks k distinct experts uniformly at "
                    "random (mean of simulated draws; dead_random is the exact expectation)");
  t.notes.push_back("router_entropy: mean router entropy / ln(experts), 1 for a uniform router; top1_margin: mean "
                    "p1 - p2, 0 for a uniform router");
  if (from_probs) t.notes.push_back("router certainty from router.probs where every routed token carries it");
  if (from_columns)
    t.notes.push_back("router certainty from the trace's router_entropy/top1_margin columns where router.probs was "
                      "not captured for every token");
  return t;
}

Table expert_load_table(std::span<const LayerRouting> layers) {
  Table t;
  t.title = "Expert load";
  t.columns = {"layer", "expert", "selections", "share", "gate_weight", "gate_share"};
  for (const LayerRouting& lr : layers) {
    const LayerRoutingStats& s = lr.stats;
    int64_t total = 0;
    double total_weight = 0;
    for (int64_t c : s.counts) total += c;
    for (double w : s.gate_weights) total_weight += w;
    for (size_t e = 0; e < s.counts.size(); ++e) {
      const Cell share = total > 0 ? Cell(double(s.counts[e]) / double(total)) : Cell();
      const Cell weight_share = total_weight > 0 ? Cell(s.gate_weights[e] / total_weight) : Cell();
      t.add_row({lr.layer, int64_t(e), s.counts[e], share, s.gate_weights[e], weight_share});
    }
  }
  t.notes.push_back("share: of the layer's selections; gate_share: of the layer's summed gate weight");
  return t;
}

CoactivationMatrix coactivation(const Trace& trace, const TokenFilter& filter, int moe_index) {
  require_moe_index(trace, moe_index);
  const std::vector<int64_t> rows = select_tokens(trace, filter);
  const std::vector<RoutingSample> samples = routing_samples(trace, rows, moe_index);
  return coactivation(samples, trace.n_experts);
}

Table coactivation_table(const CoactivationMatrix& matrix, int layer) {
  Table t;
  t.title = "Co-activation, layer " + std::to_string(layer);
  t.columns = {"expert"};
  for (int e = 0; e < matrix.n_experts; ++e) t.columns.push_back("e" + std::to_string(e));
  for (int i = 0; i < matrix.n_experts; ++i) {
    std::vector<Cell> row = {"e" + std::to_string(i)};
    for (int j = 0; j < matrix.n_experts; ++j) row.emplace_back(matrix.at(i, j));
    t.add_row(std::move(row));
  }
  t.notes.push_back("tokens that selected both experts; the diagonal is each expert's selections");
  return t;
}

// ---- Expert preference -------------------------------------------------------------------------------

std::vector<int> token_classes(const Trace& trace, std::span<const int64_t> rows, const TokenText& text) {
  std::unordered_map<int32_t, int> known;
  std::vector<int> classes;
  classes.reserve(rows.size());
  for (int64_t row : rows) {
    if (row < 0 || row >= trace.size()) {
      classes.push_back(int(TokenClass::Other));
      continue;
    }
    const int32_t id = trace.tokens[size_t(row)];
    auto it = known.find(id);
    if (it == known.end()) {
      const std::string s = text.decode ? text.decode(id) : std::string();
      const bool special = text.is_special && text.is_special(id);
      it = known.emplace(id, int(classify_token(s, special))).first;
    }
    classes.push_back(it->second);
  }
  return classes;
}

namespace {

// Expert preference per MoE layer with categories given per selected row (category_of_row[i] labels rows[i]).
PreferenceByLayer preference_by_layer(const Trace& trace, std::span<const int64_t> rows,
                                      std::span<const int> category_of_row, std::string kind,
                                      std::vector<std::string> categories) {
  PreferenceByLayer out;
  out.category_kind = std::move(kind);
  out.categories = std::move(categories);
  std::unordered_map<int64_t, int> category;
  for (size_t i = 0; i < rows.size() && i < category_of_row.size(); ++i) category[rows[i]] = category_of_row[i];
  for (int m = 0; m < trace.n_moe(); ++m) {
    std::vector<int64_t> sampled;
    const std::vector<RoutingSample> samples = routing_samples(trace, rows, m, &sampled);
    std::vector<int> labels;
    labels.reserve(sampled.size());
    for (int64_t row : sampled) labels.push_back(category.at(row));
    out.layers.push_back({m, trace.moe_layers[size_t(m)],
                          expert_preference(samples, labels, int(out.categories.size()), trace.n_experts)});
  }
  return out;
}

}  // namespace

PreferenceByLayer expert_preference_by_class(const Trace& trace, const TokenFilter& filter, const TokenText& text) {
  const std::vector<int64_t> rows = select_tokens(trace, filter);
  const std::vector<int> classes = token_classes(trace, rows, text);
  std::vector<std::string> names;
  for (int c = 0; c < kTokenClassCount; ++c) names.emplace_back(token_class_name(static_cast<TokenClass>(c)));
  return preference_by_layer(trace, rows, classes, "token_class", std::move(names));
}

PreferenceByLayer expert_preference_by_phase(const Trace& trace, const TokenFilter& filter) {
  const std::vector<int64_t> rows = select_tokens(trace, filter);
  std::vector<int> phases;
  phases.reserve(rows.size());
  for (int64_t row : rows) phases.push_back(int(phase_of(trace, row)));
  return preference_by_layer(trace, rows, phases, "phase", phase_labels());
}

Table preference_table(const PreferenceByLayer& preference) {
  Table t;
  t.title = "Expert preference by " + preference.category_kind;
  t.columns = {"layer", preference.category_kind, "category_tokens", "expert", "selections", "npmi"};
  for (const LayerPreference& lp : preference.layers) {
    const ExpertPreference& p = lp.preference;
    for (int c = 0; c < p.n_categories; ++c) {
      if (p.category_tokens[size_t(c)] == 0) continue;
      const std::string name =
          size_t(c) < preference.categories.size() ? preference.categories[size_t(c)] : std::to_string(c);
      for (int e = 0; e < p.n_experts; ++e)
        t.add_row({lp.layer, name, p.category_tokens[size_t(c)], int64_t(e), p.count(c, e), p.npmi_at(c, e)});
    }
  }
  t.notes.push_back("npmi over the (token, selected expert) pairs: 1 = the expert is chosen only for this category "
                    "and the category only goes to it, 0 = independent, -1 = never together");
  return t;
}

// ---- Phases --------------------------------------------------------------------------------------------

int64_t PhaseTotals::total_tokens() const {
  int64_t n = 0;
  for (int64_t v : tokens) n += v;
  return n;
}

double PhaseTotals::total_time_s() const {
  double s = 0;
  for (double v : time_s) s += v;
  return s;
}

PhaseTotals phase_totals(const Trace& trace, const TokenFilter& filter) {
  PhaseTotals totals;
  const size_t n_steps = trace.step_time_s.size();
  // Rows per step as the trace holds them, for steps whose step_tokens entry is missing or zero.
  std::vector<int64_t> rows_in_step(n_steps, 0);
  for (size_t row = 0; row < trace.step.size() && row < size_t(trace.size()); ++row) {
    const int32_t s = trace.step[row];
    if (s >= 0 && size_t(s) < n_steps) rows_in_step[size_t(s)] += 1;
  }
  for (int64_t row : select_tokens(trace, filter)) {
    const size_t p = size_t(phase_of(trace, row));
    totals.tokens[p] += 1;
    const int32_t s = row < int64_t(trace.step.size()) ? trace.step[size_t(row)] : -1;
    if (s < 0 || size_t(s) >= n_steps) {
      totals.untimed_tokens += 1;
      continue;
    }
    const int64_t listed = size_t(s) < trace.step_tokens.size() ? trace.step_tokens[size_t(s)] : 0;
    const int64_t split = listed > 0 ? listed : rows_in_step[size_t(s)];
    totals.time_s[p] += trace.step_time_s[size_t(s)] / double(split);
  }
  return totals;
}

Table tokens_by_phase_table(const PhaseTotals& totals) {
  Table t;
  t.title = "Tokens by phase";
  t.columns = {"phase", "tokens", "share"};
  const int64_t total = totals.total_tokens();
  auto share = [&](int64_t n) { return total > 0 ? Cell(double(n) / double(total)) : Cell(); };
  for (int p = 0; p < kPhaseCount; ++p)
    t.add_row({phase_label(p), totals.tokens[size_t(p)], share(totals.tokens[size_t(p)])});
  t.add_row({"total", total, share(total)});
  return t;
}

Table time_by_phase_table(const PhaseTotals& totals) {
  Table t;
  t.title = "Time by phase";
  t.columns = {"phase", "tokens", "time_s", "share", "ms_per_token"};
  const double total = totals.total_time_s();
  auto row = [&](std::string name, int64_t tokens, double time) {
    t.add_row({std::move(name), tokens, Cell(time, 6), total > 0 ? Cell(time / total) : Cell(),
               tokens > 0 ? Cell(1000.0 * time / double(tokens), 3) : Cell()});
  };
  for (int p = 0; p < kPhaseCount; ++p) row(phase_label(p), totals.tokens[size_t(p)], totals.time_s[size_t(p)]);
  row("total", totals.total_tokens(), total);
  t.notes.push_back("a step's wall time is split evenly over the tokens it ran");
  if (totals.untimed_tokens > 0)
    t.notes.push_back(std::to_string(totals.untimed_tokens) + " tokens have no step time and count as 0 s");
  return t;
}

// ---- Expert-cache what-if ------------------------------------------------------------------------------

const char* cache_policy_name(CachePolicy policy) {
  switch (policy) {
    case CachePolicy::Lru: return "lru";
    case CachePolicy::Lfu: return "lfu";
    case CachePolicy::LfuSinceInsertion: return "lfu-since-insertion";
  }
  return "?";
}

std::vector<std::vector<std::vector<int32_t>>> cache_access_lists(const Trace& trace, const TokenFilter& filter) {
  const std::vector<int64_t> rows = select_tokens(trace, filter);
  std::vector<std::vector<std::vector<int32_t>>> layers(size_t(std::max(0, trace.n_moe())));
  for (int m = 0; m < trace.n_moe(); ++m)
    for (RoutingSample& s : routing_samples(trace, rows, m)) layers[size_t(m)].push_back(std::move(s.experts));
  return layers;
}

std::vector<ExpertCacheResult> expert_cache_what_if(const Trace& trace, const TokenFilter& filter,
                                                    const CacheWhatIfOptions& options) {
  std::vector<int> capacities = options.capacities;
  if (capacities.empty() && trace.n_experts > 0) {
    for (int c = 1; c < trace.n_experts; c *= 2) capacities.push_back(c);
    capacities.push_back(trace.n_experts);
  }
  const auto layers = cache_access_lists(trace, filter);
  std::vector<ExpertCacheResult> out;
  for (CachePolicy policy : options.policies) {
    const auto sweep = sweep_expert_cache(layers, trace.n_experts, capacities, policy, options.expert_bytes);
    out.insert(out.end(), sweep.begin(), sweep.end());
  }
  return out;
}

Table expert_cache_table(std::span<const ExpertCacheResult> results, int n_moe_layers, uint64_t expert_bytes) {
  Table t;
  t.title = "Expert-cache what-if";
  t.columns = {"capacity", "policy", "hit_rate", "accesses", "hits", "misses", "compulsory_misses", "bytes_moved",
               "resident_bytes"};
  for (const ExpertCacheResult& r : results)
    t.add_row({r.capacity, cache_policy_name(r.policy), r.accesses > 0 ? Cell(r.hit_rate()) : Cell(), r.accesses,
               r.hits, r.misses, r.compulsory_misses, r.bytes_moved,
               uint64_t(std::max(0, r.capacity)) * uint64_t(std::max(0, n_moe_layers)) * expert_bytes});
  t.notes.push_back("capacity: experts kept on the GPU per MoE layer; caches start empty, so compulsory misses "
                    "happen at any capacity");
  t.notes.push_back("bytes per expert: " + std::to_string(expert_bytes) +
                    "; resident_bytes = capacity * MoE layers * bytes per expert");
  return t;
}

}  // namespace moe::inspect
