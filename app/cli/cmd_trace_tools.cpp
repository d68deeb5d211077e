// moe-inspect stats / compare / cache-sim: the measures of saved traces as tables (issue 4).
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "app/cli/commands.h"
#include "app/cli/table_output.h"
#include "engine/common/error.h"
#include "engine/model/model.h"
#include "engine/model/weights.h"
#include "engine/tokenizer/tokenizer.h"
#include "inspect/attention_stats.h"
#include "inspect/trace_compare.h"
#include "inspect/trace_file.h"
#include "inspect/trace_measures.h"

namespace moe::cli {
namespace {

inspect::TokenFilter filter_from_args(const Args& args) {
  inspect::TokenFilter f;
  if (auto p = args.get("phase")) {
    bool found = false;
    for (int i = 0; i < kPhaseCount; ++i)
      if (*p == phase_name(Phase(i))) f.phase = Phase(i), found = true;
    if (!found) throw EngineError("", "--phase", "expected system, user, thinking, answer or other, got '" + *p + "'");
  }
  if (args.get("last")) f.last = args.integer_or("last", 0);
  if (args.get("from")) f.begin = args.integer_or("from", 0);
  if (args.get("to")) f.end = args.integer_or("to", 0);
  return f;
}

std::string trace_arg(const Args& args, size_t index, const char* what) {
  if (args.positional().size() <= index) throw EngineError("", what, std::string("give the trace file (") + what + ")");
  return args.positional()[index];
}

// The tokenizer of the trace's model (metadata "model"), or --tokenizer DIR; none when neither loads.
std::unique_ptr<Tokenizer> trace_tokenizer(const Args& args, const inspect::Trace& trace) {
  std::string dir = args.get_or("tokenizer", "");
  if (dir.empty()) {
    const auto meta = nlohmann::json::parse(trace.metadata_json, nullptr, false);
    if (meta.is_object() && meta.contains("model") && meta["model"].is_string()) dir = meta["model"].get<std::string>();
  }
  if (dir.empty() || dir == "synthetic") return nullptr;
  try {
    return Tokenizer::load(dir);
  } catch (const EngineError& e) {
    std::fprintf(stderr, "note: no tokenizer for token classes (%s)\n", e.what());
    return nullptr;
  }
}

}  // namespace

int run_stats(const Args& args) {
  const auto trace = inspect::load_trace(trace_arg(args, 0, "TRACE"));
  const auto filter = filter_from_args(args);
  std::vector<NamedTable> tables;
  const auto layers = inspect::routing_by_layer(trace, filter);
  inspect::Table summary = inspect::routing_summary_table(layers);
  summary.notes.push_back("tokens: " + inspect::describe(filter));
  tables.push_back({"routing", summary});
  tables.push_back({"expert_load", inspect::expert_load_table(layers)});
  const auto totals = inspect::phase_totals(trace, filter);
  tables.push_back({"tokens_by_phase", inspect::tokens_by_phase_table(totals)});
  tables.push_back({"time_by_phase", inspect::time_by_phase_table(totals)});
  if (auto tok = trace_tokenizer(args, trace)) {
    inspect::TokenText text;
    const Tokenizer* t = tok.get();
    text.decode = [t](int32_t id) { return t->decode(std::span<const int32_t>(&id, 1)); };
    text.is_special = [t](int32_t id) { return t->is_special(id); };
    tables.push_back({"preference_by_class", inspect::preference_table(inspect::expert_preference_by_class(trace, filter, text))});
  }
  tables.push_back({"preference_by_phase", inspect::preference_table(inspect::expert_preference_by_phase(trace, filter))});
  if (args.get("layer")) {
    const int layer = int(args.integer_or("layer", 0));
    const int m = inspect::moe_ordinal_of_layer(trace, layer);
    if (m < 0) throw EngineError("", "--layer", "layer " + std::to_string(layer) + " is not an MoE layer of this trace");
    tables.push_back({"coactivation", inspect::coactivation_table(inspect::coactivation(trace, filter, m), layer)});
  }
  const auto heads = inspect::attention_by_head(trace, filter);
  if (!heads.empty()) {
    tables.push_back({"attention_layers", inspect::attention_layer_table(inspect::summarize_attention_layers(heads))});
    if (args.flag("heads")) tables.push_back({"attention_heads", inspect::attention_head_table(heads, trace.attention_topk)});
  }
  print_tables(args, tables);
  return 0;
}

int run_compare(const Args& args) {
  const auto a = inspect::load_trace(trace_arg(args, 0, "TRACE_A"));
  const auto b = inspect::load_trace(trace_arg(args, 1, "TRACE_B"));
  print_tables(args, comparison_named_tables(inspect::compare_traces(a, b, filter_from_args(args))));
  return 0;
}

std::vector<NamedTable> comparison_named_tables(const inspect::TraceComparison& comparison) {
  const char* names[] = {"load_divergence", "tokens_by_phase", "time_by_phase", "first_difference"};
  std::vector<NamedTable> tables;
  const auto ts = inspect::comparison_tables(comparison);
  for (size_t k = 0; k < ts.size(); ++k) tables.push_back({k < 4 ? names[k] : "table" + std::to_string(k), ts[k]});
  return tables;
}

int run_cache_sim(const Args& args) {
  const auto trace = inspect::load_trace(trace_arg(args, 0, "TRACE"));
  inspect::CacheWhatIfOptions o;
  if (auto caps = args.get("capacities")) {
    size_t b = 0;
    while (b <= caps->size()) {
      const size_t e = std::min(caps->find(',', b), caps->size());
      try {
        o.capacities.push_back(std::stoi(caps->substr(b, e - b)));
      } catch (const std::exception&) {
        throw EngineError("", "--capacities", "expected comma-separated integers, got '" + *caps + "'");
      }
      b = e + 1;
    }
  }
  // Bytes per expert: --expert-bytes, else from the model the trace names (gate+up+down in its dtype).
  o.expert_bytes = uint64_t(args.integer_or("expert-bytes", 0));
  if (o.expert_bytes == 0 && !args.positional().empty()) {
    const auto meta = nlohmann::json::parse(trace.metadata_json, nullptr, false);
    std::string dir = args.get_or("model", meta.is_object() && meta.contains("model") && meta["model"].is_string() ? meta["model"].get<std::string>() : "");
    if (!dir.empty() && dir != "synthetic") {
      try {
        auto model = Model::load(dir);
        for (const auto& layer : model->weights().layers)
          if (!layer.experts.empty()) {
            for (const WeightMatrix* w : {&layer.experts[0].gate, &layer.experts[0].up, &layer.experts[0].down})
              o.expert_bytes += uint64_t(w->bytes());
            break;
          }
      } catch (const EngineError& e) {
        std::fprintf(stderr, "note: cannot size the experts (%s); pass --expert-bytes\n", e.what());
      }
    }
  }
  const auto results = inspect::expert_cache_what_if(trace, filter_from_args(args), o);
  print_tables(args, {{"cache_sim", inspect::expert_cache_table(results, trace.n_moe(), o.expert_bytes)}});
  return 0;
}

}  // namespace moe::cli
