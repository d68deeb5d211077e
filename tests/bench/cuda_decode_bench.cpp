// Decode kernels on the GPU, as a decode step runs them (a plain main, not a gtest). moe-bench gives the
// whole step's tokens/s; this says where a step's time goes, so the decode target (≥ 400 tokens/s on
// Qwen3-30B-A3B, BENCHMARKS.md) can be worked on kernel by kernel.
//
// Each kernel runs as a chain of --layers launches, one per layer, each on its own weights and KV cache
// (so L2 holds nothing of the launch before), captured in one CUDA graph and replayed, as a step is.
// Printed per launch: µs (best and median of --repeats replays), and where the kernel must read weights
// or cache, GB/s of those bytes against the device's copy bandwidth.
//   - The first line is a launch that moves almost nothing (the residual add + RMSNorm of one row): the
//     floor each of a step's ~530 kernels pays, so what fusing two of them would save.
//   - The kernels that can finish with the one-block step after them in their last block (last_block.cuh)
//     are timed both ways: the QKV projection with the q/k/v preparation, the o projection and the
//     experts' down projection with the residual add + RMSNorm, the router's projection with the
//     routing (what the backend runs unless MOE_CUDA_FUSE=0).
//   - The experts and the LM head again in GGUF block types, read as blocks (block_dot.cuh): Q4_K_M's
//     pairing (gate/up Q4_K, down Q6_K, head Q6_K), Q8_0, and the 1- to 3-bit IQ types of the "UD"
//     downloads (IQ2_XXS or IQ1_S experts), fine-grained FP8 as the GPU holds it (F8_E4M3_B128), and
//     compressed-tensors' W4A16, GPTQ's Int4 and Int8 and AWQ's likewise (PACKED_I4_B32, PACKED_I4_F16_B32,
//     PACKED_I8_F16_B32, PACKED_I4_ZP_F16_B32); GB/s counts the blocks' bytes.
//   - The last lines add one layer's kernels up, times the layers, plus the LM head: a step without the
//     embedding and the copies, against the 2.5 ms that 400 tokens/s allows; with separate and with
//     fused tails; and with the Q4_K_M experts and head in place of BF16's.
// The kernels are programmatic dependent launches where the device has them (dependent_launch.cuh);
// MOE_CUDA_PDL=0 runs the same with plain launches.
//
// Default shape: Qwen3-30B-A3B (hidden 2048, 32 query heads on 4 KV heads of 128, 128 experts of ffn
// 768, top-8, vocabulary 151936), BF16 weights, 48 layers, a context of 4096.
// Options: --hidden --heads --kv-heads --head-dim --experts --ffn --top-k --vocab --context --layers
//          --repeats (default 20) --copy-mib (the bandwidth probe's buffer, default 512)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_matrix.h"
#include "engine/backend/cuda/device_probe.h"
#include "engine/backend/cuda/kernels/attention.cuh"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/experts.cuh"
#include "engine/backend/cuda/kernels/fill.cuh"
#include "engine/backend/cuda/kernels/linear.cuh"
#include "engine/backend/cuda/kernels/norm.cuh"
#include "engine/backend/cuda/kernels/rope.cuh"
#include "engine/backend/cuda/kernels/router.cuh"
#include "engine/backend/gpu_memory_plan.h"
#include "engine/common/ggml_quants.h"
#include "tests/bench/cuda_bench_support.h"
#include "tests/support/ggml_blocks.h"

using namespace moe;
using namespace moe::cuda;
using bench::Buffer;
using bench::Timing;

namespace {

struct Options {
  int hidden = 2048, heads = 32, kv_heads = 4, head_dim = 128, experts = 128, ffn = 768, top_k = 8;
  int vocab = 151936, context = 4096, layers = 48, repeats = 20, copy_mib = 512;
};

Options parse(int argc, char** argv) {
  Options o;
  bench::parse_flags(argc, argv, "cuda_decode_bench",
                     {{"--hidden", &o.hidden}, {"--heads", &o.heads}, {"--kv-heads", &o.kv_heads},
                      {"--head-dim", &o.head_dim}, {"--experts", &o.experts}, {"--ffn", &o.ffn},
                      {"--top-k", &o.top_k}, {"--vocab", &o.vocab}, {"--context", &o.context},
                      {"--layers", &o.layers}, {"--repeats", &o.repeats}, {"--copy-mib", &o.copy_mib}});
  if (o.top_k > o.experts) o.top_k = o.experts;
  return o;
}

// `n` launches (launch(i) for i < n) captured into one graph on `stream` and replayed: time per launch.
Timing time_chain(int n, int repeats, cudaStream_t stream, const std::function<void(int)>& launch) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < n; ++i) launch(i);
  MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const Timing t = bench::time_it(repeats, [&] { MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream)); }, stream);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return {t.best_ms / n, t.median_ms / n};
}

struct Reporter {
  double copy_gbs = 0;
  void operator()(const char* what, const Timing& t, double bytes) const {
    std::printf("%-48s best %9.2f us  median %9.2f us", what, t.best_ms * 1e3, t.median_ms * 1e3);
    if (bytes > 0) {
      const double gbs = bytes / (t.best_ms * 1e-3) / 1e9;
      std::printf("  %7.1f GB/s (%3.0f %% of copy)", gbs, copy_gbs > 0 ? 100.0 * gbs / copy_gbs : 0.0);
    }
    std::printf("\n");
  }
};

// `count` matrices of rows × cols BF16, random, one after another.
struct Matrices {
  Buffer data;
  int64_t rows, cols;
  Matrices(int count, int64_t r, int64_t c, uint64_t seed)
      : data(size_t(count) * size_t(r) * size_t(c) * 2), rows(r), cols(c) {
    fill_random(data.p, DType::BF16, size_t(count) * size_t(r) * size_t(c), seed, 0.02f, nullptr);
  }
  DeviceMatrix operator[](int i) const {
    return DeviceMatrix{data.as<const uint16_t>() + size_t(i) * size_t(rows) * size_t(cols), DType::BF16, rows, cols};
  }
  double bytes() const { return double(rows) * double(cols) * 2.0; }
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const Probe probe = probe_devices();
  if (probe.devices.empty()) {
    std::fprintf(stderr, "cuda_decode_bench: no GPU (%s)\n", probe.problem.c_str());
    return 1;
  }
  const int L = o.layers, H = o.hidden, NH = o.heads, NKV = o.kv_heads, D = o.head_dim, E = o.experts, F = o.ffn,
            K = o.top_k, C = o.context;
  const int64_t qd = int64_t(NH) * D, kvd = int64_t(NKV) * D, qkv_rows = qd + 2 * kvd;
  std::printf("device: %s; dependent launches %s\n", probe.devices.front().name.c_str(),
              dependent_launches() ? "on" : "off");
  std::printf("shape: hidden=%d heads=%d/%d head_dim=%d experts=%d ffn=%d top-k=%d vocab=%d context=%d, "
              "%d layers, BF16 weights\n",
              H, NH, NKV, D, E, F, K, o.vocab, C, L);
  Reporter report;
  report.copy_gbs = measure_device_bandwidth(size_t(o.copy_mib) << 20);
  std::printf("device copy bandwidth: %.0f GB/s\n", report.copy_gbs);
  cudaStream_t st = nullptr;
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

  // Activations (shared by every layer's launch, as in the backend) and small per-layer vectors.
  Buffer x(size_t(H) * 4), y(size_t(H) * 4), a(size_t(H) * 4), norm_w(size_t(H) * 4), qkv(size_t(qkv_rows) * 4),
      attn(size_t(qd) * 4), logits(size_t(E) * 4), selected_one(size_t(K) * 4), route_w(size_t(L) * K * 4),
      h(size_t(K) * F * 4), head_out(size_t(o.vocab) * 4), qk_norm(size_t(D) * 4), inv_freq(size_t(D) * 2),
      pos0(4), counter(4);
  MOE_CUDA_CHECK(cudaMemset(counter.p, 0, 4));
  fill_random(x.p, DType::F32, size_t(H), 1, 1.0f, nullptr);
  fill_random(y.p, DType::F32, size_t(H), 2, 1.0f, nullptr);
  fill_random(a.p, DType::F32, size_t(H), 3, 1.0f, nullptr);
  fill_value(norm_w.as<float>(), size_t(H), 1.0f, nullptr);
  fill_random(qkv.p, DType::F32, size_t(qkv_rows), 4, 1.0f, nullptr);
  fill_random(attn.p, DType::F32, size_t(qd), 5, 1.0f, nullptr);
  fill_value(qk_norm.as<float>(), size_t(D), 1.0f, nullptr);
  fill_value(route_w.as<float>(), size_t(L) * K, 1.0f / float(K), nullptr);
  std::vector<float> inv(size_t(std::max(1, D / 2)));
  for (int i = 0; i < D / 2; ++i) inv[size_t(i)] = float(1.0 / std::pow(1e6, double(2 * i) / double(D)));
  MOE_CUDA_CHECK(cudaMemcpy(inv_freq.p, inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));
  const int32_t pos = C - 1;  // the token decoded sits at the end of the context
  MOE_CUDA_CHECK(cudaMemcpy(pos0.p, &pos, 4, cudaMemcpyHostToDevice));
  const float eps = 1e-6f;

  // ---- the floor: a launch that moves almost nothing ----
  const Timing floor = time_chain(L, o.repeats, st, [&](int) {
    add_rmsnorm_rows(x.as<float>(), y.as<float>(), nullptr, norm_w.as<float>(), a.as<float>(), 1, H, eps, st);
  });
  report("launch floor: residual add + RMSNorm of 1 row", floor, 0);

  // ---- attention ----
  const Matrices w_qkv(L, qkv_rows, H, 10), w_o(L, H, qd, 11), w_router(L, E, H, 12);
  // A projection of each layer (its own matrix) from `in` to `out`, and the residual add + RMSNorm in its
  // last block when `then` is given.
  auto time_linear = [&](const char* what, const Matrices& w, const Buffer& in, const Buffer& out,
                         const ResidualNorm* then = nullptr) {
    const Timing t = time_chain(
        L, o.repeats, st, [&](int l) { linear_decode(w[l], in.as<float>(), out.as<float>(), false, st, then); });
    report(what, t, w.bytes());
    return t;
  };
  const Timing t_qkv = time_linear("qkv projection (matrix-vector)", w_qkv, a, qkv);

  AttentionShape shape;
  shape.n_heads = NH;
  shape.n_kv_heads = NKV;
  shape.head_dim = D;
  shape.capacity = C;
  shape.scale = 1.0f / std::sqrt(float(D));
  Buffer ws(attention_decode_workspace_floats(shape, kDecodeAttentionSplits) * 4);
  Timing t_attn[2], t_prepare, t_qkv_fused;
  for (const DType kv : {DType::BF16, DType::F32}) {  // BF16 first: qkv_prepare is timed on it
    const size_t elem = kv == DType::F32 ? 4 : 2, layer_bytes = size_t(C) * size_t(kvd) * elem;
    Buffer kc(size_t(L) * layer_bytes), vc(size_t(L) * layer_bytes);
    fill_random(kc.p, kv, size_t(L) * size_t(C) * size_t(kvd), 20, 1.0f, nullptr);
    fill_random(vc.p, kv, size_t(L) * size_t(C) * size_t(kvd), 21, 1.0f, nullptr);
    auto* k_base = kc.as<unsigned char>();
    auto* v_base = vc.as<unsigned char>();
    if (kv == DType::BF16) {
      QkvPrepareParams p;
      p.n_heads = NH;
      p.n_kv_heads = NKV;
      p.head_dim = D;
      p.rotary_dim = D;
      p.inv_freq = inv_freq.as<float>();
      p.qk_norm = QkNormMode::PerHead;
      p.q_norm = p.k_norm = qk_norm.as<float>();
      p.eps = eps;
      p.kv_dtype = kv;
      t_prepare = time_chain(L, o.repeats, st, [&](int l) {
        p.k_cache = k_base + size_t(l) * layer_bytes;
        p.v_cache = v_base + size_t(l) * layer_bytes;
        float* q = qkv.as<float>();
        qkv_prepare(q, q + qd, q + qd + kvd, qkv_rows, 1, pos0.as<int32_t>(), p, st);
      });
      report("q/k norm, RoPE, KV write (qkv_prepare)", t_prepare, 0);
      Buffer counters(size_t(qkv_decode_counters(p)) * 4);
      MOE_CUDA_CHECK(cudaMemset(counters.p, 0, size_t(qkv_decode_counters(p)) * 4));
      t_qkv_fused = time_chain(L, o.repeats, st, [&](int l) {
        p.k_cache = k_base + size_t(l) * layer_bytes;
        p.v_cache = v_base + size_t(l) * layer_bytes;
        qkv_decode(w_qkv[l], a.as<float>(), qkv.as<float>(), pos0.as<int32_t>(), p, counters.as<unsigned>(), st);
      });
      report("qkv projection + norm, RoPE, KV write (fused)", t_qkv_fused, w_qkv.bytes());
    }
    shape.kv_dtype = kv;
    Timing& t = t_attn[kv == DType::BF16 ? 1 : 0];
    t = time_chain(L, o.repeats, st, [&](int l) {
      attention_decode(qkv.as<float>(), k_base + size_t(l) * layer_bytes, v_base + size_t(l) * layer_bytes,
                       pos0.as<int32_t>(), shape, kDecodeAttentionSplits, ws.as<float>(), attn.as<float>(), nullptr,
                       st);
    });
    const std::string what = "attention (split + merge), " + std::string(dtype_name(kv)) + " KV cache";
    report(what.c_str(), t, 2.0 * double(layer_bytes));
  }
  const Timing t_o = time_linear("o projection (matrix-vector)", w_o, attn, y);
  // The residual add + RMSNorm after a projection, in its last block.
  ResidualNorm then;
  then.x = x.as<float>();
  then.w = norm_w.as<float>();
  then.out = a.as<float>();
  then.eps = eps;
  then.counter = counter.as<unsigned>();
  const Timing t_o_fused = time_linear("o projection + residual add + RMSNorm (fused)", w_o, attn, y, &then);

  // ---- router and experts ----
  const Timing t_router = time_linear("router logits (matrix-vector)", w_router, a, logits);
  RouterParams rp;
  rp.n_experts = E;
  rp.top_k = K;
  rp.slots = K;
  rp.renormalize = true;
  RoutingOutput ro;
  ro.selected = selected_one.as<int32_t>();
  ro.weights = route_w.as<float>();
  ro.n_moe_layers = 1;
  const Timing t_route = time_chain(L, o.repeats, st, [&](int) { route(logits.as<float>(), 1, rp, ro, st); });
  report("route: softmax, top-k, weights", t_route, 0);
  const Timing t_router_fused = time_chain(L, o.repeats, st, [&](int l) {
    route_decode(w_router[l], a.as<float>(), logits.as<float>(), rp, ro, counter.as<unsigned>(), st);
  });
  report("router logits + route (fused)", t_router_fused, w_router.bytes());

  // One layer's experts; launch l selects the l-th group of K experts (cycling), so consecutive launches
  // read different experts, as consecutive layers do.
  const size_t per_matrix = size_t(F) * size_t(H);
  Buffer experts(3 * size_t(E) * per_matrix * 2);
  fill_random(experts.p, DType::BF16, 3 * size_t(E) * per_matrix, 30, 0.02f, nullptr);
  std::vector<const void*> table(3 * size_t(E));
  for (int e = 0; e < E; ++e)
    for (int m = 0; m < 3; ++m)
      table[size_t(m) * E + e] = experts.as<const uint16_t>() + (3 * size_t(e) + size_t(m)) * per_matrix;
  Buffer d_table(table.size() * sizeof(void*));
  MOE_CUDA_CHECK(cudaMemcpy(d_table.p, table.data(), table.size() * sizeof(void*), cudaMemcpyHostToDevice));
  ExpertTable et;
  et.gate = d_table.as<const void*>();
  et.up = et.gate + E;
  et.down = et.gate + 2 * E;
  et.dtype = DType::BF16;
  et.n_experts = E;
  et.hidden = H;
  et.ffn = F;
  std::vector<int32_t> sel(size_t(L) * K);
  for (size_t i = 0; i < sel.size(); ++i) sel[i] = int32_t(i % size_t(E));
  Buffer d_sel(sel.size() * 4);
  MOE_CUDA_CHECK(cudaMemcpy(d_sel.p, sel.data(), sel.size() * 4, cudaMemcpyHostToDevice));
  const auto* selected = d_sel.as<const int32_t>();
  const Timing t_gate_up = time_chain(L, o.repeats, st, [&](int l) {
    experts_gate_up_decode(et, selected + size_t(l) * K, K, a.as<float>(), h.as<float>(), st);
  });
  report("experts gate/up + SiLU (k selected)", t_gate_up, 2.0 * double(K) * double(per_matrix) * 2.0);
  const Timing t_down = time_chain(L, o.repeats, st, [&](int l) {
    experts_down_decode(et, selected + size_t(l) * K, route_w.as<float>() + size_t(l) * K, K, h.as<float>(),
                        y.as<float>(), st);
  });
  report("experts down, weighted sum (k selected)", t_down, double(K) * double(per_matrix) * 2.0);
  const Timing t_down_fused = time_chain(L, o.repeats, st, [&](int l) {
    experts_down_decode(et, selected + size_t(l) * K, route_w.as<float>() + size_t(l) * K, K, h.as<float>(),
                        y.as<float>(), st, &then);
  });
  report("experts down + residual add + RMSNorm (fused)", t_down_fused, double(K) * double(per_matrix) * 2.0);

  // ---- the LM head: one matrix, so a short chain ----
  const int head_chain = std::min(L, 4);
  const Matrices w_head(1, o.vocab, H, 40);
  const Timing t_head = time_chain(head_chain, o.repeats, st, [&](int) {
    linear_decode(w_head[0], a.as<float>(), head_out.as<float>(), false, st);
  });
  report("LM head (matrix-vector)", t_head, w_head.bytes());

  // ---- the same experts and head in GGUF block types ----
  // Random valid blocks made on the host for one layer's experts (each matrix type in one buffer, the
  // experts one after another) and uploaded; the launches select experts as above.
  struct BlockRun {
    const char* name;
    DType gate_up, down, head;
    Timing gate_up_t, down_t, head_t;
  };
  std::vector<BlockRun> block_runs = {{"Q4_K_M (Q4_K, down and head Q6_K)", DType::Q4_K, DType::Q6_K, DType::Q6_K, {}, {}, {}},
                                      {"Q8_0", DType::Q8_0, DType::Q8_0, DType::Q8_0, {}, {}, {}},
                                      {"IQ2_XXS (down IQ3_XXS, head Q6_K)", DType::IQ2_XXS, DType::IQ3_XXS, DType::Q6_K, {}, {}, {}},
                                      {"IQ1_S (down IQ2_XXS, head Q6_K)", DType::IQ1_S, DType::IQ2_XXS, DType::Q6_K, {}, {}, {}},
                                      {"FP8 (F8_E4M3_B128: an FP8 release's 128 x 128 tiles)", DType::F8_E4M3_B128,
                                       DType::F8_E4M3_B128, DType::F8_E4M3_B128, {}, {}, {}},
                                      {"W4A16 (PACKED_I4_B32: compressed-tensors' 4-bit, BF16 scales)", DType::PACKED_I4_B32,
                                       DType::PACKED_I4_B32, DType::PACKED_I4_B32, {}, {}, {}},
                                      {"GPTQ-Int4 (PACKED_I4_F16_B32: 4-bit, F16 scales)", DType::PACKED_I4_F16_B32,
                                       DType::PACKED_I4_F16_B32, DType::PACKED_I4_F16_B32, {}, {}, {}},
                                      {"AWQ (PACKED_I4_ZP_F16_B32: 4-bit, F16 scales, zero points)", DType::PACKED_I4_ZP_F16_B32,
                                       DType::PACKED_I4_ZP_F16_B32, DType::PACKED_I4_ZP_F16_B32, {}, {}, {}},
                                      {"GPTQ-Int8 (PACKED_I8_F16_B32: 8-bit, F16 scales)", DType::PACKED_I8_F16_B32,
                                       DType::PACKED_I8_F16_B32, DType::PACKED_I8_F16_B32, {}, {}, {}}};
  auto upload_blocks = [](DType t, int64_t rows, int64_t cols, uint32_t seed) {
    const std::vector<uint8_t> host = moe::test::random_blocks(t, rows, cols, seed);
    auto b = std::make_unique<Buffer>(host.size());
    MOE_CUDA_CHECK(cudaMemcpy(b->p, host.data(), host.size(), cudaMemcpyHostToDevice));
    return b;
  };
  auto whole_blocks = [&](const BlockRun& r) {
    return H % block_format(r.gate_up).values == 0 && F % block_format(r.down).values == 0 &&
           H % block_format(r.head).values == 0;
  };
  for (BlockRun& run : block_runs) {
    if (!whole_blocks(run)) {
      std::printf("%s: skipped (hidden %d or ffn %d is not whole blocks)\n", run.name, H, F);
      continue;
    }
    const size_t gu_bytes = matrix_bytes(run.gate_up, F, H), down_bytes = matrix_bytes(run.down, H, F);
    const auto gate_b = upload_blocks(run.gate_up, int64_t(E) * F, H, 50), up_b = upload_blocks(run.gate_up, int64_t(E) * F, H, 51);
    const auto down_b = upload_blocks(run.down, int64_t(E) * H, F, 52);
    std::vector<const void*> bt(3 * size_t(E));
    for (int e = 0; e < E; ++e) {
      bt[size_t(e)] = gate_b->as<const uint8_t>() + size_t(e) * gu_bytes;
      bt[size_t(E + e)] = up_b->as<const uint8_t>() + size_t(e) * gu_bytes;
      bt[size_t(2 * E + e)] = down_b->as<const uint8_t>() + size_t(e) * down_bytes;
    }
    Buffer d_bt(bt.size() * sizeof(void*));
    MOE_CUDA_CHECK(cudaMemcpy(d_bt.p, bt.data(), bt.size() * sizeof(void*), cudaMemcpyHostToDevice));
    ExpertTable bet = et;
    bet.gate = d_bt.as<const void*>();
    bet.up = bet.gate + E;
    bet.down = bet.gate + 2 * E;
    bet.dtype = run.gate_up;
    bet.down_dtype = run.down;
    std::printf("%s:\n", run.name);
    run.gate_up_t = time_chain(L, o.repeats, st, [&](int l) {
      experts_gate_up_decode(bet, selected + size_t(l) * K, K, a.as<float>(), h.as<float>(), st);
    });
    report("  experts gate/up + SiLU (k selected)", run.gate_up_t, 2.0 * double(K) * double(gu_bytes));
    run.down_t = time_chain(L, o.repeats, st, [&](int l) {
      experts_down_decode(bet, selected + size_t(l) * K, route_w.as<float>() + size_t(l) * K, K, h.as<float>(),
                          y.as<float>(), st, &then);
    });
    report("  experts down + residual add + RMSNorm (fused)", run.down_t, double(K) * double(down_bytes));
    const auto head_b = upload_blocks(run.head, o.vocab, H, 53);
    const DeviceMatrix head{head_b->p, run.head, o.vocab, H};
    run.head_t = time_chain(head_chain, o.repeats, st, [&](int) {
      linear_decode(head, a.as<float>(), head_out.as<float>(), false, st);
    });
    report("  LM head (matrix-vector)", run.head_t, double(matrix_bytes(run.head, o.vocab, H)));
  }

  // ---- a step, added up ----
  for (int fused = 0; fused < 2; ++fused)
    for (int kv = 0; kv < 2; ++kv) {
      const double shared_ms = t_attn[kv].best_ms + t_gate_up.best_ms;
      const double layer_ms =
          shared_ms + (fused ? t_qkv_fused.best_ms + t_o_fused.best_ms + t_router_fused.best_ms + t_down_fused.best_ms
                             : t_qkv.best_ms + t_prepare.best_ms + t_o.best_ms + 2 * floor.best_ms + t_router.best_ms +
                                   t_route.best_ms + t_down.best_ms);
      const double step_ms = double(L) * layer_ms + t_head.best_ms;
      std::printf("a step added up, %s KV cache, %s tails: %d layers x %.1f us + LM head = %.3f ms, %.0f tokens/s "
                  "(400 tokens/s allows 2.5 ms)\n",
                  kv ? "BF16" : "F32", fused ? "fused" : "separate", L, layer_ms * 1e3, step_ms, 1e3 / step_ms);
    }
  for (const BlockRun& run : block_runs) {  // fused tails, BF16 KV cache; attention and router as BF16's
    if (!whole_blocks(run)) continue;
    const double layer_ms = t_attn[1].best_ms + run.gate_up_t.best_ms + t_qkv_fused.best_ms + t_o_fused.best_ms +
                            t_router_fused.best_ms + run.down_t.best_ms;
    const double step_ms = double(L) * layer_ms + run.head_t.best_ms;
    std::printf("a step added up, %s experts and head, BF16 KV cache, fused tails: %.3f ms, %.0f tokens/s\n", run.name,
                step_ms, 1e3 / step_ms);
  }
  cudaStreamDestroy(st);
  return 0;
}
