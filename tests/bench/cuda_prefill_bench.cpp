// Prefill kernels on the GPU, one layer at a time (a plain main, not a gtest). moe-bench gives the
// whole prompt's tokens/s; this says which kernel the time goes to and how close each gets to the
// tensor cores, so the prefill target (≥ 25k tokens/s at 2k on Qwen3-30B-A3B, BENCHMARKS.md) can be
// tuned kernel by kernel.
//
// Default shape: one Qwen3-30B-A3B layer (hidden 2048, 128 experts of ffn 768, top-8, 32 query heads
// on 4 KV heads of 128) at T = 2048 tokens, BF16 weights, random routing spread evenly over the experts.
// Timed with CUDA events, best and median of --repeats:
//   - routed experts: group_by_expert, gate/up, down, combine (FLOPs: 2 · 3 · hidden · ffn per pair);
//   - prefill attention at pos0 0, causal, on the F32 path and on the tensor cores (both kernels), without
//     and with the hook statistics (FLOPs: 4 · head_dim · Σ_t (t + 1) per head).
// It also prints what 48 such layers would take against the 82 ms a 2k prompt may spend at 25k tokens/s.
// The dense projections (cuBLAS) are not here: the library's speed is not ours to tune.
//
// Options: --tokens T --hidden H --ffn F --experts E --top-k K --heads NH --kv-heads NKV --head-dim D
//          --layers L (for the projection; default 48) --repeats R (default 10)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_probe.h"
#include "engine/backend/cuda/kernels/attention.cuh"
#include "engine/backend/cuda/kernels/experts.cuh"
#include "engine/backend/cuda/kernels/fill.cuh"
#include "tests/bench/cuda_bench_support.h"

using namespace moe;
using namespace moe::cuda;
using bench::Buffer;
using bench::time_it;
using bench::Timing;

namespace {

struct Options {
  int tokens = 2048, hidden = 2048, ffn = 768, experts = 128, top_k = 8;
  int heads = 32, kv_heads = 4, head_dim = 128, layers = 48, repeats = 10;
};

Options parse(int argc, char** argv) {
  Options o;
  bench::parse_flags(argc, argv, "cuda_prefill_bench",
                     {{"--tokens", &o.tokens}, {"--hidden", &o.hidden}, {"--ffn", &o.ffn}, {"--experts", &o.experts},
                      {"--top-k", &o.top_k}, {"--heads", &o.heads}, {"--kv-heads", &o.kv_heads},
                      {"--head-dim", &o.head_dim}, {"--layers", &o.layers}, {"--repeats", &o.repeats}});
  return o;
}

// weight_bytes: the weights the kernel must stream (every expert's, once) — at 2k tokens nearly every
// expert is selected, so the expert GEMMs are bound by memory as much as by the tensor cores.
void report(const char* what, const Timing& t, double flops, double weight_bytes = 0) {
  const double s = t.best_ms * 1e-3;
  std::printf("%-46s best %9.3f ms  median %9.3f ms  %8.1f TFLOP/s (best)", what, t.best_ms, t.median_ms,
              s > 0 ? flops / s / 1e12 : 0.0);
  if (weight_bytes > 0 && s > 0) std::printf("  %7.0f GB/s of weights", weight_bytes / s / 1e9);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const Probe probe = probe_devices();
  if (probe.devices.empty()) {
    std::fprintf(stderr, "cuda_prefill_bench: no GPU (%s)\n", probe.problem.c_str());
    return 1;
  }
  std::printf("device: %s\n", probe.devices.front().name.c_str());
  std::printf("shape: T=%d hidden=%d ffn=%d experts=%d top-k=%d heads=%d/%d head_dim=%d, BF16 weights\n", o.tokens,
              o.hidden, o.ffn, o.experts, o.top_k, o.heads, o.kv_heads, o.head_dim);
  const int T = o.tokens, H = o.hidden, F = o.ffn, E = o.experts, K = o.top_k;

  // ---- routed experts ----
  const size_t per_matrix = size_t(H) * size_t(F);
  Buffer weights(3 * size_t(E) * per_matrix * 2);
  fill_random(weights.p, DType::BF16, 3 * size_t(E) * per_matrix, 1, 0.02f, nullptr);
  std::vector<const void*> gate(static_cast<size_t>(E)), up(static_cast<size_t>(E)), down(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) {
    const auto* base = weights.as<const uint16_t>() + 3 * size_t(e) * per_matrix;
    gate[size_t(e)] = base;
    up[size_t(e)] = base + per_matrix;
    down[size_t(e)] = base + 2 * per_matrix;
  }
  Buffer tables(3 * size_t(E) * sizeof(void*));
  const void** tab = tables.as<const void*>();
  MOE_CUDA_CHECK(cudaMemcpy(tab, gate.data(), size_t(E) * sizeof(void*), cudaMemcpyHostToDevice));
  MOE_CUDA_CHECK(cudaMemcpy(tab + E, up.data(), size_t(E) * sizeof(void*), cudaMemcpyHostToDevice));
  MOE_CUDA_CHECK(cudaMemcpy(tab + 2 * E, down.data(), size_t(E) * sizeof(void*), cudaMemcpyHostToDevice));
  ExpertTable et;
  et.gate = tab;
  et.up = tab + E;
  et.down = tab + 2 * E;
  et.dtype = DType::BF16;
  et.n_experts = E;
  et.hidden = H;
  et.ffn = F;

  // K distinct experts per token, uniformly: every expert gets about T·K / E pairs, as a trained router's
  // load-balancing loss aims for.
  std::vector<int32_t> selected(size_t(T) * size_t(K));
  std::vector<float> route_w(selected.size(), 1.0f / float(K));
  std::mt19937 rng(7);
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) order[size_t(e)] = e;
  for (int t = 0; t < T; ++t) {
    std::shuffle(order.begin(), order.end(), rng);
    std::copy_n(order.begin(), std::min(K, E), selected.begin() + ptrdiff_t(t) * K);
  }
  const size_t P = selected.size();
  Buffer d_sel(P * 4), d_w(P * 4), d_group(expert_grouping_ints(T, K, E) * 4), d_x(size_t(T) * H * 4),
      d_x16(size_t(T) * H * 2), d_h(P * F * 2), d_yp(P * H * 4), d_y(size_t(T) * H * 4);
  MOE_CUDA_CHECK(cudaMemcpy(d_sel.p, selected.data(), P * 4, cudaMemcpyHostToDevice));
  MOE_CUDA_CHECK(cudaMemcpy(d_w.p, route_w.data(), P * 4, cudaMemcpyHostToDevice));
  fill_random(d_x.p, DType::F32, size_t(T) * H, 2, 1.0f, nullptr);

  const double expert_flops = 2.0 * 3.0 * double(H) * double(F) * double(P);
  const Timing group = time_it(o.repeats, [&] { group_by_expert(d_sel.as<int32_t>(), T, K, E, d_group.as<int32_t>(), nullptr); });
  const Timing gate_up = time_it(o.repeats, [&] {
    experts_gate_up_grouped(et, d_group.as<int32_t>(), T, K, d_x.as<float>(), d_x16.p, d_h.p, nullptr);
  });
  const Timing down_t = time_it(o.repeats, [&] {
    experts_down_grouped(et, d_group.as<int32_t>(), T, K, d_h.p, d_yp.as<float>(), nullptr);
  });
  const Timing combine = time_it(o.repeats, [&] {
    experts_combine(d_group.as<int32_t>(), d_w.as<float>(), T, K, H, d_yp.as<float>(), d_y.as<float>(), nullptr);
  });
  report("experts: group_by_expert", group, 0);
  const double matrix_bytes = double(E) * double(per_matrix) * 2.0;  // one BF16 matrix of every expert
  report("experts: gate/up GEMM (BF16 tensor cores; x → BF16 included)", gate_up, expert_flops * 2.0 / 3.0,
         2.0 * matrix_bytes);
  report("experts: down GEMM (BF16 tensor cores)", down_t, expert_flops / 3.0, matrix_bytes);
  report("experts: combine", combine, 0);
  const double experts_ms = group.best_ms + gate_up.best_ms + down_t.best_ms + combine.best_ms;

  // ---- prefill attention ----
  const int NH = o.heads, NKV = o.kv_heads, D = o.head_dim;
  const size_t q_stride = size_t(NH + 2 * NKV) * size_t(D);
  Buffer d_q(size_t(T) * q_stride * 4), d_k(size_t(T) * NKV * D * 4), d_v(size_t(T) * NKV * D * 4),
      d_out(size_t(T) * NH * D * 4), d_pos(4), d_stats(4 * size_t(T) * NH * 4);
  fill_random(d_q.p, DType::F32, size_t(T) * q_stride, 3, 1.0f, nullptr);
  fill_random(d_k.p, DType::F32, size_t(T) * NKV * D, 4, 1.0f, nullptr);
  fill_random(d_v.p, DType::F32, size_t(T) * NKV * D, 5, 1.0f, nullptr);
  MOE_CUDA_CHECK(cudaMemset(d_pos.p, 0, 4));
  AttentionShape shape;
  shape.n_heads = NH;
  shape.n_kv_heads = NKV;
  shape.head_dim = D;
  shape.capacity = T;
  shape.kv_dtype = DType::F32;
  shape.scale = 1.0f / std::sqrt(float(D));
  AttentionStats stats;
  float* s = d_stats.as<float>();
  const size_t plane = size_t(T) * NH;
  stats.entropy = s;
  stats.max_weight = s + plane;
  stats.topk_mass = s + 2 * plane;
  stats.first_mass = s + 3 * plane;
  stats.token_stride = NH;
  const double attn_flops = 4.0 * double(D) * double(NH) * (double(T) * double(T + 1) / 2.0);
  double attention_ms = 0;
  // The F32 path (F32 models); the TF32 tensor cores as BF16/F16 models run them, in registers (mma,
  // where head_dim allows) and through shared memory (WMMA, MOE_CUDA_MMA_ATTENTION=0); with statistics,
  // the WMMA kernel computes them (and the mma kernel then the outputs).
  struct Variant {
    const char* what;
    bool tc, mma, stats;
  };
  for (const Variant& v : {Variant{"F32", false, false, false}, Variant{"F32, with statistics", false, false, true},
                           Variant{"TF32 tensor cores, mma in registers", true, true, false},
                           Variant{"TF32 tensor cores, WMMA through shared memory", true, false, false},
                           Variant{"TF32 tensor cores, with statistics", true, true, true}}) {
    shape.tensor_cores = v.tc;
    shape.prefill_mma = v.mma;
    const Timing t = time_it(o.repeats, [&] {
      attention_prefill(d_q.as<float>(), int64_t(q_stride), T, d_k.p, d_v.p, d_pos.as<int32_t>(), shape,
                        d_out.as<float>(), v.stats ? &stats : nullptr, nullptr);
    });
    report((std::string("attention: ") + v.what).c_str(), t, attn_flops);
    if (v.tc && v.mma && !v.stats) attention_ms = t.best_ms;  // what prefill runs at the routing hook level
  }

  const double layers_ms = double(o.layers) * (experts_ms + attention_ms);
  std::printf("%d layers of experts + attention (tensor cores, no statistics): %.1f ms for %d tokens, "
              "against %.1f ms at 25k tokens/s (projections, norms and router not included)\n",
              o.layers, layers_ms, T, double(T) / 25000.0 * 1e3);
  return 0;
}
