#pragma once
// Measures of a Trace, and the tables the CLI prints and the GUI exports: which tokens to look at
// (TokenFilter), routing per MoE layer (load with its baselines, router certainty, load per expert,
// co-activation, expert preference by token class and by phase), tokens and time per phase, and the
// expert-cache what-if replayed on the trace's routing.
//
// The trace is read defensively: it may come from a file, so a column shorter than its shape says is
// treated as "not captured" for the rows it does not cover, never read past its end.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/hooks/step_observer.h"
#include "inspect/expert_cache_sim.h"
#include "inspect/routing_stats.h"
#include "inspect/table.h"
#include "inspect/trace.h"

namespace moe::inspect {

// ---- Token selection -------------------------------------------------------------------------------

// Which tokens a prompt or a generation produced: the trace's `generated` column (the Session marks
// decode steps, injected tokens included). A trace without that column falls back to the phase
// (Thinking and Answer count as generated), which is wrong for assistant turns re-read as history.
// A token that ends a generation (the stop token, the last token at max_tokens) is never run, so it is
// not in a trace at all.
enum class TokenOrigin { Any, Prompt, Generated };
bool is_generated_phase(Phase phase);
bool is_generated(const Trace& trace, int64_t row);

// Every condition that is set must hold (they combine with "and"). The window is over trace rows:
// `last` keeps the last N rows of the trace, [begin, end) keeps those rows (either end may stay open);
// both together keep the rows in both. Phase and origin are then tested on the rows in the window, so
// "last 100 tokens, thinking only" is the thinking tokens among the last 100, not the last 100
// thinking tokens. A phase byte outside moe::Phase counts as Phase::Other.
struct TokenFilter {
  std::optional<int64_t> last;
  std::optional<int64_t> begin, end;
  std::optional<Phase> phase;
  TokenOrigin origin = TokenOrigin::Any;
};

// Rows of the trace that pass, ascending.
std::vector<int64_t> select_tokens(const Trace& trace, const TokenFilter& filter);

// A short description for titles and notes: "all tokens", "rows [10, 20), thinking", "last 64 rows, generated".
std::string describe(const TokenFilter& filter);

// The phase of a row (Phase::Other when the byte is out of range or the column is short).
Phase phase_of(const Trace& trace, int64_t row);

// MoE ordinal of a layer index (trace.moe_layers[m] == layer), or -1 when that layer is not an MoE layer.
int moe_ordinal_of_layer(const Trace& trace, int layer);

// One RoutingSample per row in `rows` that has routing for MoE ordinal `moe_index`: its valid ids and
// weights (the -1 slots are dropped) and, where the row has router.probs, the distribution. When
// `sampled_rows` is given it receives the row of each sample, so callers can line up other labels.
std::vector<RoutingSample> routing_samples(const Trace& trace, std::span<const int64_t> rows, int moe_index,
                                           std::vector<int64_t>* sampled_rows = nullptr);

// ---- Routing per MoE layer ---------------------------------------------------------------------------

enum class RouterCertaintySource {
  None,           // no selected token has routing
  Probabilities,  // every routed token carries router.probs: computed from them (compute_routing_stats)
  TraceColumns,   // otherwise: the engine's router_entropy / top1_margin columns, which the routing level
                  // records for every token, so the mean covers all routed tokens, not just those with probs
};
const char* router_certainty_source_name(RouterCertaintySource source);

struct LayerRouting {
  int moe_index = 0;  // MoE-layer ordinal
  int layer = 0;      // layer index in the model
  // Load measures over the selected tokens that have routing in this layer. stats.top_k (and so the
  // random baseline) is the mean number of experts a token selected, rounded: the trace's slot count
  // is the largest k in force, which overstates k for layers or steps that ran with fewer.
  LayerRoutingStats stats;
  // Router certainty, both normalised as in LayerRoutingStats: entropy / ln(n_experts) (1 = uniform
  // router) and p1 - p2 (0 = a tie at the top).
  std::optional<double> mean_router_entropy;
  std::optional<double> mean_top1_margin;
  RouterCertaintySource certainty_source = RouterCertaintySource::None;
};

std::vector<LayerRouting> routing_by_layer(const Trace& trace, const TokenFilter& filter,
                                           const RandomBaselineOptions& random_options = {});

// layer, tokens, then each load measure of the selection counts beside its uniform and random
// baselines (cv, cv_uniform, cv_random, entropy ..., max_vio ..., gini ..., dead ...), then
// router_entropy and top1_margin.
Table routing_summary_table(std::span<const LayerRouting> layers);

// One row per (layer, expert): selections, share of the layer's selections, summed gate weight, share
// of the layer's gate weight.
Table expert_load_table(std::span<const LayerRouting> layers);

// Co-activation of the experts of MoE ordinal `moe_index` over the selected tokens, as a square table:
// column "expert", then "e0" ... "e{E-1}"; the diagonal holds each expert's selections. Throws
// std::out_of_range for an ordinal the trace does not have.
CoactivationMatrix coactivation(const Trace& trace, const TokenFilter& filter, int moe_index);
Table coactivation_table(const CoactivationMatrix& matrix, int layer);

// ---- Expert preference -------------------------------------------------------------------------------

// inspect cannot load a tokenizer, so whoever can (the app, the CLI) says how to read a token: its
// decoded text (the bytes it adds to the output) and whether it is a special token. An empty
// is_special means no token is special. Each distinct id is decoded once.
struct TokenText {
  std::function<std::string(int32_t)> decode;
  std::function<bool(int32_t)> is_special;
};

// int(TokenClass) of each row in `rows`, by classify_token (token_class.h).
std::vector<int> token_classes(const Trace& trace, std::span<const int64_t> rows, const TokenText& text);

struct LayerPreference {
  int moe_index = 0;
  int layer = 0;
  ExpertPreference preference;
};

struct PreferenceByLayer {
  std::string category_kind;            // "token class" or "phase"
  std::vector<std::string> categories;  // names of the categories, by index
  std::vector<LayerPreference> layers;
};

// nPMI of (token class, expert) per MoE layer over the selected tokens (routing_stats.h, expert_preference).
PreferenceByLayer expert_preference_by_class(const Trace& trace, const TokenFilter& filter, const TokenText& text);
// The same with the token's phase as its category.
PreferenceByLayer expert_preference_by_phase(const Trace& trace, const TokenFilter& filter);

// Long form, one row per (layer, category, expert): layer, <category_kind>, category_tokens, expert,
// selections, npmi. Categories with no token are left out.
Table preference_table(const PreferenceByLayer& preference);

// ---- Phases --------------------------------------------------------------------------------------------

// Tokens and wall time per phase over the selected tokens. A step's time is split evenly over the
// tokens it ran (step_time_s / step_tokens), and a token's share goes to its phase: the time is that of
// the forward pass that read the token, so prompt tokens carry the prefill and each generated token the
// decode step that fed it back. Tokens whose step has no time (short columns) count in untimed_tokens.
struct PhaseTotals {
  std::array<int64_t, kPhaseCount> tokens{};
  std::array<double, kPhaseCount> time_s{};
  int64_t untimed_tokens = 0;
  int64_t total_tokens() const;
  double total_time_s() const;
};
PhaseTotals phase_totals(const Trace& trace, const TokenFilter& filter);

// phase, tokens, share; the last row is "total".
Table tokens_by_phase_table(const PhaseTotals& totals);
// phase, tokens, time_s, share, ms_per_token; the last row is "total".
Table time_by_phase_table(const PhaseTotals& totals);

// ---- Expert-cache what-if ------------------------------------------------------------------------------

const char* cache_policy_name(CachePolicy policy);  // "lru", "lfu", "lfu-since-insertion"

// The trace's routing as expert_cache_sim.h takes it: layers[m][t] = valid expert ids of the t-th
// selected token that has routing in MoE ordinal m. Selected tokens without routing are left out (there
// is nothing to replay for them).
std::vector<std::vector<std::vector<int32_t>>> cache_access_lists(const Trace& trace, const TokenFilter& filter);

struct CacheWhatIfOptions {
  std::vector<int> capacities;  // experts kept per layer; empty = 1, 2, 4 ... and n_experts
  std::vector<CachePolicy> policies = {CachePolicy::Lru, CachePolicy::Lfu};
  uint64_t expert_bytes = 0;  // bytes of one expert's weights (one host-to-GPU copy)
};

// Whole-model totals, for each policy in turn and, within it, each capacity.
std::vector<ExpertCacheResult> expert_cache_what_if(const Trace& trace, const TokenFilter& filter,
                                                    const CacheWhatIfOptions& options);

// capacity, policy, hit_rate, accesses, hits, misses, compulsory_misses, bytes_moved, resident_bytes
// (capacity * n_moe_layers * expert_bytes: the GPU memory the cache costs).
Table expert_cache_table(std::span<const ExpertCacheResult> results, int n_moe_layers, uint64_t expert_bytes);

}  // namespace moe::inspect
