// moe-inspect eval / budget-sweep / compare-modes: accuracy of checkable tasks under thinking modes and
// budgets, and one prompt under two settings side by side (issue 5).
#include <cstdio>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/commands.h"
#include "app/cli/table_output.h"
#include "engine/common/error.h"
#include "engine/runtime/conversation.h"
#include "inspect/task_eval.h"
#include "inspect/trace_compare.h"
#include "inspect/trace_file.h"
#include "inspect/trace_recorder.h"

namespace moe::cli {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

// --tasks FILE[,FILE...], or the demo model's held-out sets.
std::vector<inspect::TaskRecord> task_records(const Args& args) {
  std::vector<std::string> files;
  if (auto t = args.get("tasks")) {
    files = split(*t, ',');
  } else {
    for (const char* task : {"add", "sub", "mul", "compare", "sort", "count", "word"})
      files.push_back((resources_dir() / "demo" / "data" / (std::string("test_") + task + ".jsonl")).string());
  }
  const int limit = int(args.integer_or("limit", 0));
  std::vector<inspect::TaskRecord> all;
  for (const std::string& f : files) {
    auto recs = inspect::load_task_file(f, limit);
    all.insert(all.end(), recs.begin(), recs.end());
  }
  return all;
}

// Evaluation defaults to greedy decoding, so accuracies are reproducible; sampling flags override it.
SamplingParams eval_sampling(const Args& args) {
  SamplingParams p;
  p.greedy = true;
  return sampling_from_args(args, p);
}


}  // namespace

int run_eval(const Args& args, bool budget_sweep) {
  auto model = open_model(args);
  Conversation conv(*model, backend_options_from_args(args, 2048));
  report_device(conv.session().device_note());
  conv.session().set_interventions(interventions_from_args(args, model->spec()));
  if (!conv.supports_thinking()) throw EngineError(model->dir(), "chat_template", "this model has no thinking to evaluate");
  const auto records = task_records(args);
  TurnOptions base;
  base.max_new_tokens = int(args.integer_or("max-tokens", 400));
  base.sampling = eval_sampling(args);

  std::vector<inspect::EvalSetting> settings;
  if (budget_sweep) {
    inspect::EvalSetting nothink{"no-think", base};
    nothink.turn.mode = ThinkingMode::NoThink;
    settings.push_back(nothink);
    for (const std::string& b : split(args.get_or("budgets", "0,8,16,32,64,128,none"), ',')) {
      inspect::EvalSetting s{b == "none" ? "think, no budget" : "budget " + b, base};
      s.turn.mode = ThinkingMode::Think;
      try {
        s.turn.thinking_budget = b == "none" ? -1 : std::stoi(b);
      } catch (const std::exception&) {
        throw EngineError("", "--budgets", "expected integers or 'none', got '" + b + "'");
      }
      settings.push_back(s);
    }
  } else {
    for (const std::string& m : split(args.get_or("modes", "think,no-think"), ',')) {
      const auto mode = parse_thinking_mode(m);
      if (!mode) throw EngineError("", "--modes", "expected think, no-think or auto, got '" + m + "'");
      inspect::EvalSetting s{m, base};
      s.turn.mode = *mode;
      s.turn.thinking_budget = int(args.integer_or("budget", -1));
      settings.push_back(s);
    }
  }
  std::fprintf(stderr, "[%s; %zu problems x %zu settings; %s]\n", conv.session().backend().describe().c_str(), records.size(),
               settings.size(), base.sampling->greedy ? "greedy" : "sampling");
  // --trace FILE records every problem (one segment each) at the --hook-level (default routing).
  inspect::TraceStore store;
  inspect::TraceRecorder recorder(store, hook_level_from_args(args, HookLevel::Routing));
  const auto trace_path = args.get("trace");
  inspect::EvalHooks hooks;
  if (!args.flag("json")) hooks.progress = [](int done, int total) { progress_bar(done, total, "problems"); };
  if (trace_path) {
    hooks.observer = &recorder;
    hooks.before_problem = [&](const inspect::EvalSetting& s, const inspect::TaskRecord& r) {
      store.begin_segment(nlohmann::json{{"setting", s.label}, {"task", r.task}, {"prompt", r.prompt}}.dump());
    };
    hooks.after_problem = [&](const TurnResult& r) {
      for (const ForcedStop& f : r.generation.forced_stops) store.add_forced_stop({f.position, f.thinking_tokens, f.budget});
    };
  }
  const auto scores = inspect::evaluate_tasks(conv, records, settings, hooks);
  if (trace_path) {
    store.set_metadata_json(nlohmann::json{{"model", model->dir().string()}, {"family", model->spec().family},
                                           {"command", budget_sweep ? "budget-sweep" : "eval"}, {"engine_version", MOE_VERSION}}
                                .dump());
    inspect::save_trace(store.snapshot(), *trace_path);
    std::fprintf(stderr, "[trace: %s, %lld tokens]\n", trace_path->c_str(), (long long)store.size());
  }
  inspect::Table table = inspect::task_score_table(scores);
  table.title = budget_sweep ? "Accuracy against the thinking budget" : "Accuracy by thinking mode";
  table.notes.push_back(std::string("model: ") + model->dir().string());
  print_tables(args, {{budget_sweep ? "budget_sweep" : "eval", table}});
  return 0;
}

namespace {

// "mode=think;budget=16;router-top-k=1;seed=3" → the turn options and interventions of one side.
struct Side {
  std::string label;
  TurnOptions turn;
  Interventions interventions;
};

Side parse_side(const std::string& spec, const Args& args, const Conversation& conv, const ModelSpec& model,
                const std::string& prompt) {
  Side s{spec, {}, interventions_from_args(args, model)};
  s.turn.mode = ThinkingMode::Think;
  s.turn.max_new_tokens = int(args.integer_or("max-tokens", 400));
  std::optional<SamplingParams> sampling;
  for (const std::string& kv : split(spec, ';')) {
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq), value = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (key == "mode") {
      const auto m = parse_thinking_mode(value);
      if (!m) throw EngineError("", "compare-modes setting", "mode must be think, no-think or auto, got '" + value + "'");
      s.turn.mode = *m;
    } else if (key == "budget") {
      s.turn.thinking_budget = value == "none" ? -1 : std::stoi(value);
    } else if (key == "router-top-k" || key == "mask" || key == "force") {
      parse_intervention("--" + key, value, model, s.interventions);
    } else if (key == "temperature" || key == "seed" || key == "greedy") {
      if (!sampling) sampling = SamplingParams{};
      if (key == "temperature") sampling->temperature = std::stof(value), sampling->greedy = sampling->temperature <= 0;
      if (key == "seed") sampling->seed = std::stoull(value);
      if (key == "greedy") sampling->greedy = true;
    } else {
      throw EngineError("", "compare-modes setting", "unknown key '" + key + "' (mode, budget, router-top-k, mask, force, temperature, seed, greedy)");
    }
  }
  s.interventions.validate(model);
  s.turn.sampling = sampling ? *sampling
                             : sampling_from_args(args, recommended_sampling(conv.chat(), conv.generation_config(),
                                                                             conv.will_think(s.turn.mode, prompt)));
  return s;
}

}  // namespace

int run_compare_modes(const Args& args) {
  auto model = open_model(args);
  const auto prompt = args.get("chat");
  if (!prompt) throw EngineError("", "--chat", "compare-modes needs --chat TEXT");
  Conversation conv(*model, backend_options_from_args(args, 2048));
  report_device(conv.session().device_note());
  const Side a = parse_side(args.get_or("a", "mode=think"), args, conv, model->spec(), *prompt);
  const Side b = parse_side(args.get_or("b", "mode=no-think"), args, conv, model->spec(), *prompt);
  inspect::Trace traces[2];
  std::string answers[2], thinking[2];
  int i = 0;
  for (const Side* s : {&a, &b}) {
    inspect::TraceStore store;
    inspect::TraceRecorder recorder(store, HookLevel::Routing);
    conv.clear();
    conv.session().reset();  // each side from a cold cache, so their times compare
    conv.session().set_interventions(s->interventions);
    const TurnResult r = conv.send(*prompt, s->turn, {}, &recorder);
    for (const ForcedStop& f : r.generation.forced_stops) store.add_forced_stop({f.position, f.thinking_tokens, f.budget});
    traces[i] = store.snapshot().materialize();
    answers[i] = r.answer_text;
    thinking[i] = r.thinking_text;
    ++i;
  }
  const auto cmp = inspect::compare_traces(traces[0], traces[1]);
  if (!args.flag("json")) {
    for (int k = 0; k < 2; ++k) {
      std::cout << "== " << (k ? "B: " : "A: ") << (k ? b.label : a.label) << "\n";
      if (!thinking[k].empty()) std::cout << "<think>\n" << terminal_safe(thinking[k]) << "\n</think>\n";
      std::cout << terminal_safe(answers[k]) << "\n\n";
    }
  }
  print_tables(args, comparison_named_tables(cmp));
  return 0;
}

}  // namespace moe::cli
