// moe-bench: prefill and decode speed of a model (a folder or a synthetic config) on this machine, with
// the achieved memory bandwidth of decode beside the bandwidth this machine measures (STREAM-style):
// batch-1 decode reads every active weight once per token, so bandwidth is its roofline.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "engine/backend/cpu/matmul.h"
#include "engine/backend/cpu/memory_bandwidth.h"
#include "engine/common/error.h"
#include "engine/runtime/session.h"
#ifdef MOE_HAVE_CUDA
#include "engine/backend/cuda/kernels/fill.cuh"
#endif
#include "inspect/trace_recorder.h"

using namespace moe;

namespace {

const char* kUsage = R"(usage:
  moe-bench (MODEL_DIR | MODEL.gguf | --synthetic CONFIG.json [--dtype bf16|f16|f32]) [--device auto|cpu|cuda]
            [--gpu N] [--kv-dtype f32|bf16] [--threads N] [--prompt-tokens 128] [--decode-tokens 64] [--prefill-chunk 64]
            [--repeats 3] [--bandwidth-mib 512] [--hook-levels off,routing,full] [--json]

Prints prefill tokens/s and GFLOP/s, decode tokens/s and achieved GB/s (active weights + KV cache read
per token) against the device's measured memory bandwidth (the CPU's STREAM-style read, or the GPU's
device-to-device copy), the roofline of batch-1 decode. Decode starts after the prompt, so
--prompt-tokens 4096 measures decode at a 4k context. On a GPU, synthetic weights are made on the GPU.
--hook-levels times decode at each hook level (records appended to a trace store, as the workbench
does), interleaved within each repeat, and prints each level's cost against off.
)";

// The cached keys a query at `context` reads, summed over the layers: a sliding-window layer reads only
// its window.
double keys_read_over_layers(const ModelSpec& s, int context) {
  double n = 0;
  for (int l = 0; l < s.n_layers; ++l) n += s.window(l) > 0 ? std::min(context, s.window(l)) : context;
  return n;
}

// Bytes one decode step reads: every active weight matrix once, plus the KV cache up to `context`.
double decode_bytes_per_token(const Model& m, int context, size_t kv_bytes_per_token) {
  const auto& s = m.spec();
  const auto& w = m.weights();
  double b = double(w.lm_head.bytes()) + double(matrix_bytes(w.embed.dtype, 1, s.hidden));  // one embedding row
  for (int l = 0; l < s.n_layers; ++l) {
    const auto& L = w.layers[size_t(l)];
    b += double(L.q.bytes() + L.k.bytes() + L.v.bytes() + L.o.bytes() + L.q_a.bytes() + L.kv_a.bytes() + L.kv_b.bytes());
    if (s.layer_is_moe[size_t(l)]) {
      const auto& e = L.experts[0];
      b += double(L.router.bytes()) + double(s.moe.top_k) * double(e.gate.bytes() + e.up.bytes() + e.down.bytes());
      b += double(L.shared.gate.bytes() + L.shared.up.bytes() + L.shared.down.bytes() + L.shared_gate.bytes());
    } else {
      b += double(L.mlp.gate.bytes() + L.mlp.up.bytes() + L.mlp.down.bytes());
    }
  }
  // K and V of every cached position the layers read (kv_bytes_per_token covers all layers).
  return b + double(kv_bytes_per_token) / double(s.n_layers) * keys_read_over_layers(s, context);
}

// Multiply-adds ×2 of one token through the matrices (active experts only), plus attention over `context`.
double flops_per_token(const Model& m, int context) {
  const auto z = compute_model_size(m.spec());
  const auto& s = m.spec();
  const double matmul = 2.0 * double(z.active_params - z.embedding_params - z.norm_params + (s.tied_embeddings ? z.embedding_params : 0));
  // Per head and cached key: q·k and the weighted add of v. MLA's absorbed form does both over the
  // latent row (kv_lora + rope, then kv_lora); others over head_dim.
  const auto& A = s.attn;
  const double qk = A.is_mla() ? double(s.kv_dim()) : double(A.head_dim);
  const double v = A.is_mla() ? double(A.mla.kv_lora_rank) : double(A.head_dim);
  const double attn = 2.0 * double(A.n_heads) * (qk + v) * keys_read_over_layers(s, context);
  return matmul + attn;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  cli::Args args(argc, argv, 1, {"json"});
  std::vector<std::string> known = {"synthetic", "dtype", "seed", "synthetic-max-gib", "prompt-tokens", "decode-tokens",
                                    "prefill-chunk", "repeats", "bandwidth-mib", "hook-levels", "json"};
  known.insert(known.end(), cli::device_option_names().begin(), cli::device_option_names().end());
  if (auto bad = args.unknown(known); !bad.empty()) {
    std::fprintf(stderr, "error: unknown option --%s\n%s", bad[0].c_str(), kUsage);
    return 2;
  }
  try {
    using clock = std::chrono::steady_clock;
    const int threads = int(args.integer_or("threads", 0));
    const int P = int(args.integer_or("prompt-tokens", 128));
    const int D = int(args.integer_or("decode-tokens", 64));
    const int repeats = std::max(1, int(args.integer_or("repeats", 3)));
    if (P < 1 || D < 1) throw EngineError("", "--prompt-tokens", "prompt and decode token counts must be positive");

    BackendOptions bo = cli::backend_options_from_args(args, P + D + 1);
    bo.max_context = P + D + 1;
    bo.prefill_chunk = std::max(1, int(args.integer_or("prefill-chunk", bo.prefill_chunk)));
    const bool on_gpu = cli::gpu_chosen(bo);
    const size_t bandwidth_bytes = size_t(args.integer_or("bandwidth-mib", on_gpu ? 2048 : 512)) << 20;
    cpu::BandwidthResult bw{};
#ifdef MOE_HAVE_CUDA
    if (on_gpu) {
      bw.read_gbps = bw.triad_gbps = cuda::measure_device_bandwidth(bandwidth_bytes);
      bw.buffer_bytes = bandwidth_bytes;
      std::fprintf(stderr, "GPU memory bandwidth: copy %.1f GB/s (read + write, %s buffers)\n", bw.read_gbps,
                   cli::bytes_str(double(bandwidth_bytes)).c_str());
    }
#endif
    if (!on_gpu) {
      cpu::ThreadPool pool(threads);
      bw = cpu::measure_memory_bandwidth(pool, bandwidth_bytes, 5);
      std::fprintf(stderr, "memory bandwidth: read %.1f GB/s, triad %.1f GB/s (%d threads, %s buffers)\n", bw.read_gbps,
                   bw.triad_gbps, bw.threads, cli::bytes_str(double(bw.buffer_bytes)).c_str());
    }

    const auto t_load = clock::now();
    auto model = cli::open_model(args);
    const double load_s = std::chrono::duration<double>(clock::now() - t_load).count();
    const auto& s = model->spec();
    std::fprintf(stderr, "model: %s, %s of weights, loaded in %.2f s\n", s.family.c_str(),
                 cli::bytes_str(double(model->weight_bytes())).c_str(), load_s);

    Session session(*model, bo);
    cli::report_device(session.device_note());
    std::mt19937 rng(7);
    std::vector<int32_t> prompt(static_cast<size_t>(P));
    for (auto& t : prompt) t = int32_t(rng() % uint32_t(std::min(s.vocab_size, 32000)));

    // Hook levels to time; "off" always first (the baseline).
    std::vector<HookLevel> levels = {HookLevel::Off};
    for (const std::string& name : [&] {
           std::vector<std::string> v;
           std::string item, all = args.get_or("hook-levels", "off");
           std::stringstream ss(all);
           while (std::getline(ss, item, ',')) v.push_back(item);
           return v;
         }()) {
      const auto l = parse_hook_level(name);
      if (!l) throw EngineError("", "--hook-levels", "unknown level '" + name + "'");
      if (*l != HookLevel::Off) levels.push_back(*l);
    }
    std::vector<double> best_level(levels.size(), 1e30);
    double best_prefill = 1e30, best_decode = 1e30;
    std::vector<float> logits(static_cast<size_t>(s.vocab_size));
    for (int r = 0; r < repeats; ++r) {
      // The order of the levels rotates from repeat to repeat, so none always runs first (cold).
      for (size_t step = 0; step < levels.size(); ++step) {
        const size_t li = (step + size_t(r)) % levels.size();
        inspect::TraceStore store;
        inspect::TraceRecorder recorder(store, levels[li]);
        StepObserver* obs = levels[li] == HookLevel::Off ? nullptr : &recorder;
        session.reset();
        auto t0 = clock::now();
        session.backend().forward(prompt, false, logits.data(), obs);
        auto t1 = clock::now();
        int32_t id = prompt.back();
        for (int i = 0; i < D; ++i) session.backend().forward(std::span<const int32_t>(&id, 1), false, logits.data(), obs);
        auto t2 = clock::now();
        const double decode_s = std::chrono::duration<double>(t2 - t1).count();
        best_level[li] = std::min(best_level[li], decode_s);
        if (li == 0) {  // off
          best_prefill = std::min(best_prefill, std::chrono::duration<double>(t1 - t0).count());
          best_decode = std::min(best_decode, decode_s);
        }
      }
    }
    const double prefill_tps = P / best_prefill, decode_tps = D / best_decode;
    const int mid_context = P + D / 2;
    const double bytes_tok = decode_bytes_per_token(*model, mid_context, session.backend().kv_cache_bytes_per_token());
    const double decode_gbps = bytes_tok * decode_tps / 1e9;
    const double prefill_gflops = flops_per_token(*model, P / 2) * P / best_prefill / 1e9;
    const double roofline_tps = bw.read_gbps * 1e9 / bytes_tok;

    if (args.flag("json")) {
      nlohmann::json j = {{"family", s.family}, {"backend", session.backend().describe()}, {"threads", bw.threads},
                          {"weights_bytes", model->weight_bytes()}, {"prompt_tokens", P}, {"decode_tokens", D},
                          {"prefill_tokens_per_s", prefill_tps}, {"prefill_gflops", prefill_gflops},
                          {"decode_tokens_per_s", decode_tps}, {"decode_bytes_per_token", bytes_tok},
                          {"decode_gbps", decode_gbps}, {"stream_read_gbps", bw.read_gbps}, {"stream_triad_gbps", bw.triad_gbps},
                          {"roofline_fraction", decode_gbps / bw.read_gbps}, {"roofline_tokens_per_s", roofline_tps}};
      j["hook_levels"] = nlohmann::json::array();
      for (size_t li = 0; li < levels.size(); ++li)
        j["hook_levels"].push_back({{"level", hook_level_name(levels[li])}, {"decode_tokens_per_s", D / best_level[li]},
                                    {"overhead", best_level[li] / best_level[0] - 1.0}});
      std::cout << j.dump(2) << "\n";
    } else {
      std::printf("backend          %s\n", session.backend().describe().c_str());
      std::printf("prefill          %d tokens: %.1f tokens/s, %.2f GFLOP/s\n", P, prefill_tps, prefill_gflops);
      std::printf("decode           %d tokens: %.2f tokens/s, %s read per token\n", D, decode_tps, cli::bytes_str(bytes_tok).c_str());
      std::printf("bandwidth        %.2f GB/s achieved vs %.2f GB/s measured read (%.0f%% of roofline; roofline %.2f tokens/s)\n",
                  decode_gbps, bw.read_gbps, 100.0 * decode_gbps / bw.read_gbps, roofline_tps);
      for (size_t li = 1; li < levels.size(); ++li)
        std::printf("hooks %-10s decode %.2f tokens/s, %+.1f%% time against off\n", hook_level_name(levels[li]), D / best_level[li],
                    100.0 * (best_level[li] / best_level[0] - 1.0));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
