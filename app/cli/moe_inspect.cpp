// moe-inspect: the workbench's command line. `info` describes a model, `generate` runs it.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "engine/backend/gpu_memory_plan.h"
#include "app/cli/commands.h"
#include "engine/common/error.h"
#include "engine/model/model.h"
#include "engine/runtime/session.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "inspect/expert_load.h"

using namespace moe;
using nlohmann::json;

namespace {

const char* kUsage = R"(usage: moe-inspect COMMAND [MODEL | --synthetic CONFIG.json] [options]
MODEL is a checkpoint folder or a .gguf file; it defaults to the bundled demo model (resources/demo/moe).

  info          describe a model                    [--context N] [--json]
  generate      run a prompt and stream the tokens  (--chat TEXT | --prompt TEXT | --prompt-ids 1,2,3)
                [--mode think|no-think|auto] [--think | --no-think] [--budget N] [--system TEXT]
                [--max-tokens N] [--hook-level off|routing|full|attention-maps] [--out TRACE] [--json]
  trace         generate and save the trace          (as generate) --out TRACE.safetensors
  eval          accuracy per task and thinking mode  [--tasks A.jsonl,B.jsonl] [--limit N] [--modes think,no-think]
                [--budget N] [--max-tokens N] [--trace FILE [--hook-level L]] [--csv FILE] [--json]
  budget-sweep  accuracy against the thinking budget [--budgets 0,8,16,32,64,128,none] (+ eval's options)
  compare-modes one prompt under two settings        --chat TEXT [--a "mode=think"] [--b "mode=no-think"]
                settings: mode=..;budget=N;router-top-k=K;mask=L:E;force=L:E;temperature=T;seed=S;greedy
  corpus        teacher-forced pass over a file: perplexity and routing (resumable)
                --input FILE.txt|FILE.jsonl --out TRACE [--window N] [--limit N] [--hook-level L]
  stats         a trace's measures as tables         TRACE [--phase P] [--last N] [--from I] [--to J]
                [--layer L (co-activation)] [--heads] [--tokenizer DIR] [--csv PREFIX] [--json]
  compare       two traces side by side              TRACE_A TRACE_B [--phase P] [--csv PREFIX] [--json]
  cache-sim     expert-cache what-if on a trace      TRACE [--capacities 1,2,4] [--expert-bytes N] [--model DIR]

Sampling (generate, trace, eval, compare-modes): [--greedy] [--temperature T] [--top-k K] [--top-p P]
  [--min-p P] [--repetition-penalty R] [--presence-penalty P] [--seed S]. Chat turns start from the
  mode's recommended values (Qwen3: think T 0.6/top-p 0.95/top-k 20, no-think T 0.7/top-p 0.8/top-k 20),
  raw prompts from generation_config.json; any flag given overrides. eval and budget-sweep are greedy
  unless sampling flags are given.
Router interventions (repeatable): --mask LAYERS:E,E  --force LAYERS:E  --router-top-k [LAYERS:]K|all
  --router-bias LAYERS:E=V   (LAYERS: all, 3, 0-2, 0,2,5).
Common: [--device auto|cpu|cuda] [--gpu N] [--kv-dtype f32|bf16] [--threads N] [--context N]; --synthetic CONFIG.json
  [--dtype bf16|f16|f32] runs random weights of a real shape (made on the GPU when it runs there).
  --device auto (the default) runs on the GPU when one works, else on the CPU; the line "device: ..."
  on stderr says which. --kv-dtype bf16 halves the GPU's KV cache (f32, the default, gives the CPU's
  numbers). --json prints JSON (generate: one object per token, then the result).
)";

std::string layer_list(const ModelSpec& s) {
  int moe = s.n_moe_layers();
  std::ostringstream o;
  o << s.n_layers << " (" << moe << " MoE, " << s.n_layers - moe << " dense)";
  return o.str();
}

// What the CUDA backend would hold for this model and context (weights in their stored dtype, the KV
// cache in the chosen one).
GpuMemoryPlan gpu_plan(const Model& m, int context, DType kv_dtype) {
  GpuPlanOptions o{m.weights().embed.dtype, context, BackendOptions{}.prefill_chunk, 0, kv_dtype};
  // GGUF files mix types and keep block types group by group, and GPT-OSS's MXFP4 experts stay MXFP4: the plan
  // reads each matrix's dtype, which a synthetic model (shapes only, no data) has too, as the backend does.
  o.part_dtypes = gpu_weight_dtypes(m.spec(), m.weights());
  o.weights = &m.weights();
  return plan_gpu_memory(m.spec(), o);
}

json info_json(const Model& m, int context, DType kv_dtype) {
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
                    {"qkv_bias", s.attn.qkv_bias}, {"rope_theta", s.attn.rope_theta}, {"rotary_dim", s.attn.rotary_dim},
                    {"softmax_scale", s.attn.scale()}};
  if (s.attn.yarn.factor > 0)
    j["attention"]["yarn"] = {{"factor", s.attn.yarn.factor}, {"original_max_positions", s.attn.yarn.original_max_positions},
                              {"attention_factor", s.attn.rope_attention_factor}};
  if (s.attn.sinks) j["attention"]["sinks"] = true;
  if (!s.layer_window.empty()) j["attention"]["layer_window"] = s.layer_window;
  if (s.attn.is_mla())
    j["attention"]["mla"] = {{"q_lora_rank", s.attn.mla.q_lora_rank}, {"kv_lora_rank", s.attn.mla.kv_lora_rank},
                             {"qk_nope_head_dim", s.attn.mla.qk_nope_dim}, {"v_head_dim", s.attn.mla.v_head_dim}};
  j["experts"] = s.moe.n_experts;
  j["top_k"] = s.moe.top_k;
  j["expert_ffn"] = s.moe.expert_ffn;
  if (s.moe.expert_bias) j["expert_bias"] = true;
  if (s.moe.glu_limit > 0) j["expert_gate_clamp"] = {{"limit", s.moe.glu_limit}, {"alpha", s.moe.glu_alpha}};
  j["renormalize_top_k"] = s.moe.renormalize;
  j["router"] = {{"score", s.moe.score == RouterScore::Softmax ? "softmax" : "sigmoid"},
                 {"selection_bias", s.moe.selection_bias},
                 {"logit_bias", s.moe.router_logit_bias},
                 {"routed_scale", s.moe.routed_scale},
                 {"n_group", s.moe.n_group},
                 {"topk_group", s.moe.topk_group},
                 {"group_score", s.moe.group_score == GroupScore::Max ? "max" : "top-2 sum"}};
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
  j["matrix_bytes_by_dtype"] = m.matrix_bytes_by_dtype();
  if (m.is_gguf()) j["format"] = "GGUF";
  for (const auto& f : m.weight_files()) j["files"].push_back(f.string());
  j["context"] = context;
  j["memory_needed_bytes"] = m.weight_bytes() + kv_f32 * size_t(context);
  j["unused_tensors"] = m.unused_tensors();
  const GpuMemoryPlan plan = gpu_plan(m, context, kv_dtype);
  j["gpu_memory_plan"] = {{"total", plan.total_bytes()}, {"weights", plan.weight_bytes()}, {"kv_cache", plan.kv_cache_bytes},
                          {"activations", plan.activation_bytes}, {"workspace", plan.workspace_bytes}};
  for (const auto& u : plan.weights) j["gpu_memory_plan"]["weights_by_part"][u.part] = u.bytes;
  return j;
}

void print_info(const Model& m, int context, DType kv_dtype, const Tokenizer* tok, const ChatTemplate* chat) {
  const auto& s = m.spec();
  const auto z = compute_model_size(s);
  const size_t kv = size_t(z.kv_values_per_token) * 4;
  std::printf("model         %s\n", m.is_synthetic() ? "synthetic weights" : m.dir().string().c_str());
  if (const auto files = m.weight_files(); m.is_gguf() && files.size() > 1)
    std::printf("files         %zu parts of a split GGUF, from %s\n", files.size(), files.front().string().c_str());
  std::printf("family        %s (%s)\n", s.family.c_str(), s.model_type.c_str());
  std::printf("layers        %s\n", layer_list(s).c_str());
  std::printf("hidden        %d\n", s.hidden);
  const auto& A = s.attn;
  if (A.is_mla()) {
    const auto& a = A.mla;
    std::printf("attention     MLA, %d heads, %s, KV latent %d + shared RoPE key %d (cached), q/k %d + %d RoPE, v %d, "
                "scale %.6g, RoPE θ %g", A.n_heads,
                a.q_lora_rank ? ("q-LoRA " + std::to_string(a.q_lora_rank)).c_str() : "plain q_proj", a.kv_lora_rank,
                A.rotary_dim, a.qk_nope_dim, A.rotary_dim, a.v_head_dim, double(A.scale()), A.rope_theta);
  } else {
    std::printf("attention     %d heads, %d KV heads, head_dim %d, q/k norm %s%s, RoPE θ %g", A.n_heads, A.n_kv_heads,
                A.head_dim,
                A.qk_norm == QkNorm::PerHead ? "per head" : A.qk_norm == QkNorm::WholeProjection ? "whole projection" : "none",
                A.qkv_bias ? ", qkv bias" : "", A.rope_theta);
    if (A.rotary_dim < A.head_dim) std::printf(" on %d of %d dims", A.rotary_dim, A.head_dim);
    if (A.rope_style == RopeStyle::Interleaved) std::printf(", interleaved pairs");
  }
  if (A.yarn.factor > 0)
    std::printf(", YaRN x%g from %d (cos/sin x%.6g)", A.yarn.factor, A.yarn.original_max_positions,
                double(A.rope_attention_factor));
  if (A.sinks) std::printf(", a sink logit per head");
  if (const int windowed = int(std::count_if(s.layer_window.begin(), s.layer_window.end(), [](int w) { return w > 0; })))
    std::printf(", sliding window %d on %d of %d layers", *std::max_element(s.layer_window.begin(), s.layer_window.end()),
                windowed, s.n_layers);
  std::printf("\n");
  if (s.is_moe()) {
    const auto& M = s.moe;
    std::printf("experts       %d routed, top-%d, width %d, %s top-k weights", M.n_experts, M.top_k, M.expert_ffn,
                M.renormalize ? "renormalised" : (M.score == RouterScore::Softmax ? "raw softmax" : "raw sigmoid"));
    if (M.expert_bias) std::printf(", biases");
    if (M.glu_limit > 0) std::printf(", gate clamped at %g (alpha %g)", double(M.glu_limit), double(M.glu_alpha));
    std::printf("\n");
    std::printf("router        %s scores%s%s", M.score == RouterScore::Softmax ? "softmax" : "sigmoid",
                M.router_logit_bias ? ", logit bias" : "", M.selection_bias ? ", selection bias" : "");
    if (M.group_limited())
      std::printf(", experts of the best %d of %d groups (by %s)", M.topk_group, M.n_group,
                  M.group_score == GroupScore::Max ? "their best score" : "the sum of their two best");
    if (M.routed_scale != 1.0f) std::printf(", weights x%g", double(M.routed_scale));
    std::printf("\n");
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
  std::printf("weights       %s in memory", cli::bytes_str(double(m.weight_bytes())).c_str());
  const auto by_dtype = m.matrix_bytes_by_dtype();
  if (by_dtype.size() > 1) {  // a mix (GGUF files): the matrices' bytes in each type
    const char* sep = "; matrices ";
    for (const auto& [name, bytes] : by_dtype) {
      std::printf("%s%s %s", sep, name.c_str(), cli::bytes_str(double(bytes)).c_str());
      sep = ", ";
    }
  }
  std::printf("\n");
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
  const GpuMemoryPlan plan = gpu_plan(m, context, kv_dtype);
  std::printf("GPU memory    %s for a %d-token context: weights %s, KV cache %s, activations and workspace %s\n",
              cli::bytes_str(double(plan.total_bytes())).c_str(), plan.capacity, cli::bytes_str(double(plan.weight_bytes())).c_str(),
              cli::bytes_str(double(plan.kv_cache_bytes)).c_str(),
              cli::bytes_str(double(plan.activation_bytes + plan.workspace_bytes)).c_str());
  std::printf("GPUs          %s\n", cli::gpu_status().c_str());
}

// Text for a terminal: control characters other than newline and tab are shown as \xNN, so a
// model's output can never move the cursor or change the terminal's state.
int run_info(const cli::Args& args) {
  auto model = cli::open_model(args, /*shape_only=*/true);
  const int context = int(args.integer_or("context", 4096));
  const DType kv_dtype = cli::backend_options_from_args(args, context).kv_dtype;
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
    json j = info_json(*model, context, kv_dtype);
    if (tok) j["tokenizer"] = {{"kind", tok->kind()}, {"size", tok->size()}};
    if (chat) j["chat_format"] = chat->format_name();
    std::cout << j.dump(2) << "\n";
  } else {
    print_info(*model, context, kv_dtype, tok.get(), chat ? &*chat : nullptr);
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
  const std::vector<std::string> flags = {"json", "greedy", "think", "no-think", "ignore-eos", "heads"};
  cli::Args args(argc, argv, 2, flags);
  std::vector<std::string> common = {"synthetic", "dtype", "seed", "synthetic-max-gib", "json"};
  common.insert(common.end(), cli::device_option_names().begin(), cli::device_option_names().end());
  std::vector<std::string> known = common;
  auto add = [&](std::initializer_list<const char*> names) {
    for (const char* k : names) known.push_back(k);
  };
  auto add_all = [&](const std::vector<std::string>& names) { known.insert(known.end(), names.begin(), names.end()); };
  if (cmd == "generate" || cmd == "trace") {
    add({"prompt", "chat", "prompt-ids", "system", "think", "no-think", "mode", "budget", "max-tokens", "tokenizer", "ignore-eos",
         "hook-level", "out"});
    add_all(cli::sampling_option_names());
    add_all(cli::intervention_option_names());
  } else if (cmd == "eval" || cmd == "budget-sweep") {
    add({"tasks", "limit", "modes", "budget", "budgets", "max-tokens", "csv", "trace", "hook-level"});
    add_all(cli::sampling_option_names());
    add_all(cli::intervention_option_names());
  } else if (cmd == "compare-modes") {
    add({"chat", "a", "b", "max-tokens", "csv"});
    add_all(cli::sampling_option_names());
    add_all(cli::intervention_option_names());
  } else if (cmd == "stats" || cmd == "compare" || cmd == "cache-sim") {
    known = {"json", "csv", "phase", "last", "from", "to", "layer", "tokenizer", "heads", "capacities", "expert-bytes", "model"};
  } else if (cmd == "corpus") {
    add({"input", "out", "window", "hook-level", "limit", "csv"});
    add_all(cli::intervention_option_names());
  }
  if (auto bad = args.unknown(known); !bad.empty()) {
    std::fprintf(stderr, "error: unknown option --%s for '%s'\n%s", bad[0].c_str(), cmd.c_str(), kUsage);
    return 2;
  }
  try {
    if (cmd == "info") return run_info(args);
    if (cmd == "generate") return cli::run_generate(args, false);
    if (cmd == "trace") return cli::run_generate(args, true);
    if (cmd == "eval") return cli::run_eval(args, false);
    if (cmd == "budget-sweep") return cli::run_eval(args, true);
    if (cmd == "compare-modes") return cli::run_compare_modes(args);
    if (cmd == "stats") return cli::run_stats(args);
    if (cmd == "compare") return cli::run_compare(args);
    if (cmd == "cache-sim") return cli::run_cache_sim(args);
    if (cmd == "corpus") return cli::run_corpus(args);
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
