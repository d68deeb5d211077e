// moe-inspect generate / trace: run a prompt (raw text, token ids, or a chat message through the
// template with a thinking mode and budget), stream the tokens, and optionally save the trace.
#include <cstdio>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/commands.h"
#include "engine/common/error.h"
#include "engine/hooks/observer_fanout.h"
#include "engine/runtime/conversation.h"
#include "engine/runtime/session.h"
#include "inspect/expert_load.h"
#include "inspect/trace_file.h"
#include "inspect/trace_recorder.h"

namespace moe::cli {

using nlohmann::json;

std::string terminal_safe(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

namespace {

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      ids.push_back(int32_t(std::stol(item)));
    } catch (...) {
      throw EngineError("", "--prompt-ids", "expected comma-separated integers, got '" + item + "'");
    }
  }
  return ids;
}


}  // namespace

int run_generate(const Args& args, bool trace_command) {
  auto model = open_model(args);
  const auto& spec = model->spec();
  const bool as_json = args.flag("json");
  const auto trace_path = args.get("out");
  if (trace_command && !trace_path) throw EngineError("", "--out", "trace needs --out FILE.safetensors");

  const BackendOptions bo = backend_options_from_args(args, 4096);
  const Interventions iv = interventions_from_args(args, spec);
  const HookLevel level = hook_level_from_args(args, trace_path ? HookLevel::Full : HookLevel::Routing);

  inspect::TraceStore store;
  inspect::TraceRecorder recorder(store, level);
  std::vector<int> moe_layers;
  for (int l = 0; l < spec.n_layers; ++l)
    if (spec.layer_is_moe[size_t(l)]) moe_layers.push_back(l);
  inspect::ExpertLoad load(moe_layers, spec.moe.n_experts);
  ObserverFanout observers({spec.is_moe() ? &load : nullptr, trace_path ? &recorder : nullptr});

  std::string prompt_text, text;
  std::vector<int32_t> prompt;
  GenerationResult r;
  json settings = {{"hook_level", hook_level_name(level)}, {"interventions", json::parse(iv.to_json())}};
  std::string backend;
  auto print_token = [&](const TokenEvent& ev, const std::string& piece) {
    text += piece;
    if (as_json) {
      json j = {{"type", "token"}, {"index", ev.index}, {"id", ev.id}, {"text", piece}, {"t", ev.elapsed_s},
                {"phase", phase_name(ev.phase)}, {"forced", ev.forced}, {"marker", ev.marker}};
      std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
    } else {
      std::cout << terminal_safe(piece) << std::flush;
    }
    return true;
  };

  if (auto chat_text = args.get("chat")) {
    Conversation conv(*model, bo);
    report_device(conv.session().device_note());
    conv.session().set_interventions(iv);
    if (auto sys = args.get("system")) conv.set_system(*sys);
    TurnOptions t;
    t.mode = conv.supports_thinking() ? ThinkingMode::Think : ThinkingMode::Auto;
    if (auto m = args.get("mode")) {
      const auto mode = parse_thinking_mode(*m);
      if (!mode) throw EngineError("", "--mode", "expected think, no-think or auto, got '" + *m + "'");
      t.mode = *mode;
    }
    if (args.flag("think")) t.mode = ThinkingMode::Think;
    if (args.flag("no-think")) t.mode = ThinkingMode::NoThink;
    t.thinking_budget = int(args.integer_or("budget", -1));
    t.max_new_tokens = int(args.integer_or("max-tokens", 512));
    // Sampling: the mode's recommendation, with any flag given on top.
    const SamplingParams recommended =
        recommended_sampling(conv.chat(), conv.generation_config(), conv.will_think(t.mode, *chat_text));
    t.sampling = sampling_from_args(args, recommended);
    backend = conv.session().backend().describe();
    if (!as_json)
      std::fprintf(stderr, "[%s; mode %s%s; %s]\n", backend.c_str(), thinking_mode_name(t.mode),
                   t.thinking_budget >= 0 ? (", budget " + std::to_string(t.thinking_budget)).c_str() : "",
                   t.sampling->greedy ? "greedy" : has_sampling_flags(args) ? "sampling (overridden)" : "sampling (recommended for the mode)");
    settings["mode"] = thinking_mode_name(t.mode);
    settings["budget"] = t.thinking_budget;
    settings["sampling"] = json::parse(t.sampling->to_json());
    settings["chat_format"] = conv.chat().format_name();
    store.begin_segment(settings.dump());
    const TurnResult turn = conv.send(*chat_text, t, print_token, &observers);
    r = turn.generation;
    prompt = turn.prompt_ids;
    prompt_text = turn.prompt_text;
  } else {
    std::unique_ptr<Tokenizer> tok;
    GenerationConfig gen;
    if (auto dir = args.get("tokenizer")) tok = Tokenizer::load(*dir);
    else if (!model->is_synthetic()) tok = Tokenizer::load(model->dir());
    if (!model->is_synthetic()) gen = load_generation_config(model->dir());
    if (auto ids = args.get("prompt-ids")) {
      prompt = parse_ids(*ids);
    } else if (auto raw = args.get("prompt")) {
      if (!tok) throw EngineError("", "--prompt", "this model has no tokenizer; use --prompt-ids or --tokenizer DIR");
      prompt_text = *raw;
      prompt = tok->encode(prompt_text, true);
    } else {
      throw EngineError("", "--prompt", "give --chat TEXT, --prompt TEXT or --prompt-ids");
    }
    GenerateOptions opt;
    opt.max_new_tokens = int(args.integer_or("max-tokens", gen.max_new_tokens > 0 ? gen.max_new_tokens : 128));
    opt.sampling = sampling_from_args(args, gen.sampling);
    opt.stop_ids = gen.eos_ids;
    for (int32_t e : spec.eos_ids) opt.stop_ids.push_back(e);
    if (tok)
      for (int32_t e : tok->eos_ids()) opt.stop_ids.push_back(e);
    if (args.flag("ignore-eos")) opt.stop_ids.clear();
    if (tok) opt.allowed_vocab = tok->size();
    Session session(*model, bo);
    report_device(session.device_note());
    session.set_interventions(iv);
    backend = session.backend().describe();
    if (!as_json)
      std::fprintf(stderr, "[%s; %zu prompt tokens; %s]\n", backend.c_str(), prompt.size(), opt.sampling.greedy ? "greedy" : "sampling");
    settings["sampling"] = json::parse(opt.sampling.to_json());
    store.begin_segment(settings.dump());
    std::optional<StreamDecoder> stream;
    if (tok) stream.emplace(*tok, true);
    r = session.generate(prompt, opt, [&](const TokenEvent& ev) {
      std::string piece = stream ? stream->push(ev.id) : std::to_string(ev.id) + " ";
      if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), ev.id) != opt.stop_ids.end()) piece.clear();
      return print_token(ev, piece);
    }, &observers);
    if (stream) {
      const std::string tail = stream->flush();
      text += tail;
      if (!as_json) std::cout << terminal_safe(tail);
    }
  }

  const int n_gen = int(r.tokens.size());
  const double decode_tps = n_gen > 1 && r.decode_s > 0 ? (n_gen - 1) / r.decode_s : 0;
  const double prefill_tps = r.prefill_s > 0 ? (r.prompt_tokens - r.reused_tokens) / r.prefill_s : 0;
  json forced = json::array();
  for (const ForcedStop& f : r.forced_stops) {
    forced.push_back({{"position", f.position}, {"thinking_tokens", f.thinking_tokens}, {"budget", f.budget}});
    store.add_forced_stop({f.position, f.thinking_tokens, f.budget});
  }
  if (trace_path) {
    json meta = {{"model", model->is_synthetic() ? "synthetic" : model->dir().string()}, {"family", spec.family},
                 {"prompt_text", prompt_text}, {"prompt_ids", prompt}, {"settings", settings}, {"backend", backend},
                 {"engine_version", MOE_VERSION}, {"output_text", text}};
    store.set_metadata_json(meta.dump(-1, ' ', false, json::error_handler_t::replace));
    inspect::save_trace(store.snapshot(), *trace_path);
  }
  if (as_json) {
    json j = {{"type", "result"}, {"prompt_ids", prompt}, {"tokens", r.tokens}, {"text", text},
              {"stop_reason", stop_reason_name(r.reason)}, {"prompt_tokens", r.prompt_tokens},
              {"prefill_s", r.prefill_s}, {"decode_s", r.decode_s}, {"prefill_tokens_per_s", prefill_tps},
              {"decode_tokens_per_s", decode_tps}, {"backend", backend}, {"thinking_tokens", r.thinking_tokens},
              {"forced_stops", forced}};
    if (!prompt_text.empty()) j["prompt_text"] = prompt_text;
    if (trace_path) j["trace"] = *trace_path;
    if (spec.is_moe()) {
      json layers = json::array();
      for (size_t row = 0; row < load.layers().size(); ++row) {
        json counts = json::array();
        for (int e = 0; e < load.n_experts(); ++e) counts.push_back(load.count(int(row), e));
        layers.push_back({{"layer", load.layers()[row]}, {"tokens", load.tokens(int(row))}, {"counts", counts},
                          {"cv", load.coefficient_of_variation(int(row))}, {"dead", load.dead_experts(int(row))}});
      }
      j["expert_load"] = layers;
    }
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    std::cout << std::endl;
    std::fprintf(stderr, "[%d tokens (%d thinking), stop: %s; prefill %.1f tok/s, decode %.1f tok/s%s]\n", n_gen,
                 r.thinking_tokens, stop_reason_name(r.reason), prefill_tps, decode_tps,
                 r.forced_stops.empty() ? "" : "; thinking cut by the budget");
    if (trace_path) std::fprintf(stderr, "[trace: %s, %lld tokens]\n", trace_path->c_str(), (long long)store.size());
  }
  return 0;
}

}  // namespace moe::cli
