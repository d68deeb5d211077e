// moe-inspect: the workbench's command line. `info` describes a model, `generate` runs it.
#include <cstdio>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "engine/common/error.h"
#include "engine/model/model.h"
#include "engine/runtime/session.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "inspect/expert_load.h"

using namespace moe;
using nlohmann::json;

namespace {

const char* kUsage = R"(usage:
  moe-inspect info     (MODEL_DIR | --synthetic CONFIG.json) [--context N] [--json]
  moe-inspect generate (MODEL_DIR | --synthetic CONFIG.json) (--prompt TEXT | --chat TEXT | --prompt-ids 1,2,3)
                       [--system TEXT] [--think | --no-think] [--max-tokens N] [--greedy]
                       [--temperature T] [--top-k K] [--top-p P] [--min-p P]
                       [--repetition-penalty R] [--presence-penalty P] [--seed S]
                       [--threads N] [--context N] [--tokenizer DIR] [--json]

MODEL_DIR is a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer files).
--synthetic builds random weights of the shape a config.json describes (--dtype bf16|f16|f32), so
real shapes (Qwen3-30B-A3B, Mixtral 8x7B, ...) can be tried without their files.
--prompt feeds raw text; --chat wraps it in the model's chat template (--think/--no-think for Qwen3).
Sampling defaults come from the model's generation_config.json; any option given overrides them.
--json prints one JSON object per line: {"type":"token",...} per token, then {"type":"result",...}.
)";

std::string layer_list(const ModelSpec& s) {
  int moe = s.n_moe_layers();
  std::ostringstream o;
  o << s.n_layers << " (" << moe << " MoE, " << s.n_layers - moe << " dense)";
  return o.str();
}

json info_json(const Model& m, int context) {
  const auto& s = m.spec();
  const auto z = compute_model_size(s);
  json j;
  j["family"] = s.family;
  j["model_type"] = s.model_type;
  j["source"] = m.is_synthetic() ? "synthetic" : m.dir().string();
  j["layers"] = s.n_layers;
  j["moe_layers"] = s.n_moe_layers();
  j["hidden_size"] = s.hidden;
  j["attention"] = {{"heads", s.attn.n_heads}, {"kv_heads", s.attn.n_kv_heads}, {"head_dim", s.attn.head_dim},
                    {"qk_norm", s.attn.qk_norm == QkNorm::PerHead ? "per head" : s.attn.qk_norm == QkNorm::WholeProjection ? "whole projection" : "none"},
                    {"qkv_bias", s.attn.qkv_bias}, {"rope_theta", s.attn.rope_theta}};
  j["experts"] = s.moe.n_experts;
  j["top_k"] = s.moe.top_k;
  j["expert_ffn"] = s.moe.expert_ffn;
  j["renormalize_top_k"] = s.moe.renormalize;
  j["shared_expert_ffn"] = s.moe.shared_ffn;
  j["dense_ffn"] = s.dense_ffn;
  j["vocab_size"] = s.vocab_size;
  j["tied_embeddings"] = s.tied_embeddings;
  j["max_positions"] = s.max_positions;
  j["params"] = {{"total", z.total_params}, {"active_per_token", z.active_params}, {"embedding", z.embedding_params},
                 {"attention", z.attention_params}, {"routed_experts", z.routed_expert_params},
                 {"shared_experts", z.shared_expert_params}, {"dense_mlp", z.dense_mlp_params},
                 {"router", z.router_params}, {"lm_head", z.lm_head_params}};
  // KV cache: this engine's CPU cache stores F32; a BF16 cache (GPU) would be half.
  const size_t kv_f32 = size_t(z.kv_values_per_token) * 4;
  j["kv_cache_bytes_per_token"] = {{"f32", kv_f32}, {"bf16", kv_f32 / 2}};
  j["weights_bytes"] = m.weight_bytes();
  j["context"] = context;
  j["memory_needed_bytes"] = m.weight_bytes() + kv_f32 * size_t(context);
  j["unused_tensors"] = m.unused_tensors();
  return j;
}

void print_info(const Model& m, int context, const Tokenizer* tok, const ChatTemplate* chat) {
  const auto& s = m.spec();
  const auto z = compute_model_size(s);
  const size_t kv = size_t(z.kv_values_per_token) * 4;
  std::printf("model         %s\n", m.is_synthetic() ? "synthetic weights" : m.dir().string().c_str());
  std::printf("family        %s (%s)\n", s.family.c_str(), s.model_type.c_str());
  std::printf("layers        %s\n", layer_list(s).c_str());
  std::printf("hidden        %d\n", s.hidden);
  std::printf("attention     %d heads, %d KV heads, head_dim %d, q/k norm %s%s, RoPE θ %g\n", s.attn.n_heads,
              s.attn.n_kv_heads, s.attn.head_dim,
              s.attn.qk_norm == QkNorm::PerHead ? "per head" : s.attn.qk_norm == QkNorm::WholeProjection ? "whole projection" : "none",
              s.attn.qkv_bias ? ", qkv bias" : "", s.attn.rope_theta);
  if (s.is_moe()) {
    std::printf("experts       %d routed, top-%d, width %d, %s top-k weights\n", s.moe.n_experts, s.moe.top_k,
                s.moe.expert_ffn, s.moe.renormalize ? "renormalised" : "raw softmax");
    if (s.moe.shared_ffn) std::printf("shared expert width %d%s\n", s.moe.shared_ffn, s.moe.shared_gate ? ", sigmoid gate" : "");
  } else {
    std::printf("experts       none (dense, MLP width %d)\n", s.dense_ffn);
  }
  std::printf("vocab         %d%s\n", s.vocab_size, s.tied_embeddings ? " (tied embeddings)" : "");
  std::printf("parameters    %s total, %s active per token\n", cli::count_str(double(z.total_params)).c_str(),
              cli::count_str(double(z.active_params)).c_str());
  std::printf("              attention %s, routed experts %s, shared %s, dense MLP %s, embeddings %s, head %s\n",
              cli::count_str(double(z.attention_params)).c_str(), cli::count_str(double(z.routed_expert_params)).c_str(),
              cli::count_str(double(z.shared_expert_params)).c_str(), cli::count_str(double(z.dense_mlp_params)).c_str(),
              cli::count_str(double(z.embedding_params)).c_str(), cli::count_str(double(z.lm_head_params)).c_str());
  std::printf("weights       %s as stored\n", cli::bytes_str(double(m.weight_bytes())).c_str());
  std::printf("KV cache      %s per token (F32 on the CPU; %s in BF16)\n", cli::bytes_str(double(kv)).c_str(),
              cli::bytes_str(double(kv / 2)).c_str());
  std::printf("memory needed %s for a %d-token context\n", cli::bytes_str(double(m.weight_bytes() + kv * size_t(context))).c_str(), context);
  if (tok) std::printf("tokenizer     %s, %d tokens\n", tok->kind().c_str(), tok->size());
  if (chat) std::printf("chat format   %s\n", chat->format_name().c_str());
  if (!m.unused_tensors().empty()) {
    std::printf("unused        %zu tensors in the checkpoint were not used:", m.unused_tensors().size());
    for (size_t i = 0; i < m.unused_tensors().size() && i < 5; ++i) std::printf(" %s", m.unused_tensors()[i].c_str());
    std::printf("%s\n", m.unused_tensors().size() > 5 ? " ..." : "");
  }
  std::printf("backend       CPU (%s)\n", cli::gpu_status().c_str());
}

// Text for a terminal: control characters other than newline and tab are shown as \xNN, so a
// model's output can never move the cursor or change the terminal's state.
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

int run_info(const cli::Args& args) {
  auto model = cli::open_model(args, /*shape_only=*/true);
  const int context = int(args.integer_or("context", 4096));
  std::unique_ptr<Tokenizer> tok;
  std::optional<ChatTemplate> chat;
  if (!model->is_synthetic()) {
    try {
      tok = Tokenizer::load(model->dir());
      chat = ChatTemplate::from_model_dir(model->dir());
    } catch (const EngineError& e) {
      std::fprintf(stderr, "note: no usable tokenizer: %s\n", e.what());
    }
  }
  if (args.flag("json")) {
    json j = info_json(*model, context);
    if (tok) j["tokenizer"] = {{"kind", tok->kind()}, {"size", tok->size()}};
    if (chat) j["chat_format"] = chat->format_name();
    std::cout << j.dump(2) << "\n";
  } else {
    print_info(*model, context, tok.get(), chat ? &*chat : nullptr);
  }
  return 0;
}

int run_generate(const cli::Args& args) {
  auto model = cli::open_model(args);
  const auto& spec = model->spec();
  const bool as_json = args.flag("json");

  std::unique_ptr<Tokenizer> tok;
  GenerationConfig gen;
  if (auto dir = args.get("tokenizer")) tok = Tokenizer::load(*dir);
  else if (!model->is_synthetic()) tok = Tokenizer::load(model->dir());
  if (!model->is_synthetic()) gen = load_generation_config(model->dir());

  std::vector<int32_t> prompt;
  std::string rendered;
  if (auto ids = args.get("prompt-ids")) {
    prompt = parse_ids(*ids);
  } else if (auto text = args.get("prompt")) {
    if (!tok) throw EngineError("", "--prompt", "this model has no tokenizer; use --prompt-ids or --tokenizer DIR");
    rendered = *text;
    prompt = tok->encode(rendered, true);
  } else if (auto chat_text = args.get("chat")) {
    if (!tok) throw EngineError("", "--chat", "this model has no tokenizer; use --prompt-ids or --tokenizer DIR");
    const auto tpl = ChatTemplate::from_model_dir(args.get_or("tokenizer", model->dir().string()));
    std::vector<ChatMessage> msgs;
    if (auto sys = args.get("system")) msgs.push_back({"system", *sys});
    msgs.push_back({"user", *chat_text});
    std::optional<bool> thinking;
    if (args.flag("think")) thinking = true;
    if (args.flag("no-think")) thinking = false;
    rendered = tpl.render(msgs, true, thinking);
    prompt = tok->encode(rendered, false);
  } else {
    throw EngineError("", "--prompt", "give --prompt TEXT, --chat TEXT or --prompt-ids");
  }

  GenerateOptions opt;
  opt.max_new_tokens = int(args.integer_or("max-tokens", gen.max_new_tokens > 0 ? gen.max_new_tokens : 128));
  opt.sampling = gen.sampling;
  if (args.flag("greedy")) opt.sampling.greedy = true;
  if (args.get("temperature")) {
    opt.sampling.temperature = float(args.number_or("temperature", 1.0));
    opt.sampling.greedy = opt.sampling.temperature <= 0;
  }
  opt.sampling.top_k = int(args.integer_or("top-k", opt.sampling.top_k));
  opt.sampling.top_p = float(args.number_or("top-p", opt.sampling.top_p));
  opt.sampling.min_p = float(args.number_or("min-p", opt.sampling.min_p));
  opt.sampling.repetition_penalty = float(args.number_or("repetition-penalty", opt.sampling.repetition_penalty));
  opt.sampling.presence_penalty = float(args.number_or("presence-penalty", opt.sampling.presence_penalty));
  opt.sampling.seed = uint64_t(args.integer_or("seed", int64_t(opt.sampling.seed)));
  // Stop on every end-of-sequence id we know of: generation_config, config.json and the tokenizer's.
  opt.stop_ids = gen.eos_ids;
  for (int32_t e : spec.eos_ids) opt.stop_ids.push_back(e);
  if (tok)
    for (int32_t e : tok->eos_ids()) opt.stop_ids.push_back(e);
  if (args.flag("ignore-eos")) opt.stop_ids.clear();
  if (tok) opt.allowed_vocab = tok->size();

  BackendOptions bo;
  bo.threads = int(args.integer_or("threads", 0));
  bo.max_context = int(args.integer_or("context", 4096));
  Session session(*model, bo);
  inspect::ExpertLoad load = [&] {
    std::vector<int> layers;
    for (int l = 0; l < spec.n_layers; ++l)
      if (spec.layer_is_moe[size_t(l)]) layers.push_back(l);
    return inspect::ExpertLoad(layers, spec.moe.n_experts);
  }();

  if (!as_json) std::fprintf(stderr, "[%s; %zu prompt tokens; %s]\n", session.backend().describe().c_str(), prompt.size(),
                             opt.sampling.greedy ? "greedy" : "sampling");
  std::optional<StreamDecoder> stream;
  if (tok) stream.emplace(*tok, true);
  std::string text;
  auto on_token = [&](const TokenEvent& ev) {
    std::string piece = stream ? stream->push(ev.id) : "";
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), ev.id) != opt.stop_ids.end()) piece.clear();
    text += piece;
    if (as_json) {
      json j = {{"type", "token"}, {"index", ev.index}, {"id", ev.id}, {"text", piece}, {"t", ev.elapsed_s}};
      std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
    } else {
      std::cout << (tok ? terminal_safe(piece) : std::to_string(ev.id) + " ") << std::flush;
    }
    return true;
  };
  const auto r = session.generate(prompt, opt, on_token, spec.is_moe() ? &load : nullptr);
  if (stream) {
    std::string tail = stream->flush();
    text += tail;
    if (!as_json) std::cout << terminal_safe(tail);
  }
  const int n_gen = int(r.tokens.size());
  const double decode_tps = n_gen > 1 && r.decode_s > 0 ? (n_gen - 1) / r.decode_s : 0;
  const double prefill_tps = r.prefill_s > 0 ? (r.prompt_tokens - r.reused_tokens) / r.prefill_s : 0;
  if (as_json) {
    json j = {{"type", "result"}, {"prompt_ids", prompt}, {"tokens", r.tokens}, {"text", text},
              {"stop_reason", stop_reason_name(r.reason)}, {"prompt_tokens", r.prompt_tokens},
              {"prefill_s", r.prefill_s}, {"decode_s", r.decode_s}, {"prefill_tokens_per_s", prefill_tps},
              {"decode_tokens_per_s", decode_tps}, {"backend", session.backend().describe()}};
    if (!rendered.empty()) j["prompt_text"] = rendered;
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
    std::fprintf(stderr, "[%d tokens, stop: %s; prefill %.1f tok/s, decode %.1f tok/s]\n", n_gen, stop_reason_name(r.reason),
                 prefill_tps, decode_tps);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> flags = {"json", "greedy", "think", "no-think", "ignore-eos"};
  cli::Args args(argc, argv, 2, flags);
  const std::vector<std::string> common = {"synthetic", "dtype", "seed", "synthetic-max-gib", "context", "json", "threads"};
  std::vector<std::string> known = common;
  if (cmd == "generate")
    for (const char* k : {"prompt", "chat", "prompt-ids", "system", "think", "no-think", "max-tokens", "greedy", "temperature",
                          "top-k", "top-p", "min-p", "repetition-penalty", "presence-penalty", "tokenizer", "ignore-eos"})
      known.push_back(k);
  if (auto bad = args.unknown(known); !bad.empty()) {
    std::fprintf(stderr, "error: unknown option --%s for '%s'\n%s", bad[0].c_str(), cmd.c_str(), kUsage);
    return 2;
  }
  try {
    if (cmd == "info") return run_info(args);
    if (cmd == "generate") return run_generate(args);
    std::fprintf(stderr, "error: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const EngineError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
