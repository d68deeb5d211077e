#pragma once
// Two traces side by side (think vs no-think, two budgets, a checkpoint before and after a fix): how far
// apart each MoE layer's expert load is, where the tokens and the time went in each, and where the two
// generations part ways.
//
// Expert loads are compared with the Jensen-Shannon divergence in bits, which is symmetric, bounded in
// [0, 1] and defined even where one run never used an expert (unlike KL). It needs the same experts on
// both sides: layers are matched by layer index, and where the expert counts differ, or a layer is MoE
// in only one trace, or one side has no routed token, the divergence is left unset with a note that
// says why.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "inspect/table.h"
#include "inspect/trace.h"
#include "inspect/trace_measures.h"

namespace moe::inspect {

// JSD(p, q) = H((p + q) / 2) - (H(p) + H(q)) / 2 with logarithms base 2, after scaling p and q to sum 1.
// Unset when the lengths differ, either is empty, holds a negative or non-finite value, or sums to 0.
std::optional<double> jensen_shannon_divergence(std::span<const double> p, std::span<const double> q);

struct LayerDivergence {
  int layer = 0;                  // layer index
  int moe_index_a = -1, moe_index_b = -1;  // MoE ordinal in each trace; -1 when not an MoE layer there
  int64_t tokens_a = 0, tokens_b = 0;      // selected tokens with routing in this layer
  std::optional<double> jsd;      // of the selection counts, normalised
  std::string note;               // why jsd is unset
};

struct LoadDivergence {
  std::vector<LayerDivergence> layers;  // by layer index, ascending
  std::vector<std::string> notes;       // whole-comparison caveats (e.g. the expert counts differ)
};

// The same filter selects the tokens of both traces.
LoadDivergence expert_load_divergence(const Trace& a, const Trace& b, const TokenFilter& filter = {});

// Where the generations first differ: the generated tokens of each trace (TokenOrigin::Generated, whole
// trace) are compared in order; index is the first i where they differ, or where the shorter one ends
// first, and -1 when both are the same sequence.
struct FirstDifference {
  int64_t generated_a = 0, generated_b = 0;  // generated tokens in each trace
  int64_t index = -1;                        // among the generated tokens
  int64_t row_a = -1, row_b = -1;            // trace rows of that token (-1 past the end)
  std::optional<int32_t> token_a, token_b;   // the ids there (unset past the end)
};
FirstDifference first_generated_difference(const Trace& a, const Trace& b);

struct TraceComparison {
  LoadDivergence load;
  PhaseTotals phases_a, phases_b;  // with the filter
  FirstDifference first_difference;
};
TraceComparison compare_traces(const Trace& a, const Trace& b, const TokenFilter& filter = {});

// layer, tokens_a, tokens_b, jsd, note.
Table load_divergence_table(const LoadDivergence& divergence);
// phase, tokens_a, tokens_b (and a "total" row).
Table phase_tokens_comparison_table(const PhaseTotals& a, const PhaseTotals& b);
// phase, time_a_s, time_b_s, ms_per_token_a, ms_per_token_b (and a "total" row).
Table phase_time_comparison_table(const PhaseTotals& a, const PhaseTotals& b);
// One row: generated_a, generated_b, first_difference, token_a, token_b.
Table first_difference_table(const FirstDifference& difference);
// All four, in that order.
std::vector<Table> comparison_tables(const TraceComparison& comparison);

}  // namespace moe::inspect
