// The routed-expert kernels (engine/backend/cuda/kernels/experts.cu), decode and grouped prefill, against
// a scalar reference of cpu_backend.cpp's SwiGLU experts: y[t] = Σ_k w[t][k] · down_e(silu(gate_e·x) ⊙ up_e·x),
// and GPT-OSS's form: biases on the three projections and the clamped gate. GGML block types (the
// experts of a GGUF file, held as blocks on the GPU): random blocks, with dequantize_row's values (which
// the CPU tests check against gguf-py) as the reference's weights; gate/up and down of different types,
// as Q4_K_M stores them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend/cuda/kernels/experts.cuh"
#include "engine/common/dtype.h"
#include "engine/common/ggml_quants.h"
#include "tests/cuda/gpu_test_support.h"
#include "tests/support/ggml_blocks.h"

namespace moe::cuda {
namespace {

using test::DeviceVector;

// E experts with weights in `dtype` (down in down_dtype) on the device, and their exact F32 values on the
// host.
struct Experts {
  int E, H, F;
  DType dtype, down_dtype;
  std::vector<std::vector<float>> gate, up, down;  // host values (already rounded to dtype)
  std::vector<std::unique_ptr<DeviceVector<uint8_t>>> buffers;
  std::unique_ptr<DeviceVector<const void*>> gate_tab, up_tab, down_tab;
  // GPT-OSS (with_gpt_oss): biases [E][F], [E][F], [E][H] and the clamped gate; none by default.
  std::vector<float> gate_b, up_b, down_b;
  std::unique_ptr<DeviceVector<float>> d_gate_b, d_up_b, d_down_b;
  float limit = 0.0f, alpha = 1.702f;

  Experts(int E_, int H_, int F_, DType dt, uint32_t seed, DType down_dt = DType::BOOL)
      : E(E_), H(H_), F(F_), dtype(dt), down_dtype(down_dt == DType::BOOL ? dt : down_dt) {
    std::vector<const void*> g(static_cast<size_t>(E)), u(static_cast<size_t>(E)), d(static_cast<size_t>(E));
    for (int e = 0; e < E; ++e) {
      gate.push_back(make(dtype, F, H, seed + 3 * uint32_t(e), 1.0f / std::sqrt(float(H)), g[size_t(e)]));
      up.push_back(make(dtype, F, H, seed + 3 * uint32_t(e) + 1, 1.0f / std::sqrt(float(H)), u[size_t(e)]));
      down.push_back(make(down_dtype, H, F, seed + 3 * uint32_t(e) + 2, 1.0f / std::sqrt(float(F)), d[size_t(e)]));
    }
    gate_tab = std::make_unique<DeviceVector<const void*>>(g);
    up_tab = std::make_unique<DeviceVector<const void*>>(u);
    down_tab = std::make_unique<DeviceVector<const void*>>(d);
  }

  // Biases of about the size of the products, and a limit that clamps a good share of gates and ups.
  void with_gpt_oss(uint32_t seed, float glu_limit) {
    gate_b = test::random_floats(size_t(E) * size_t(F), seed, 0.3f);
    up_b = test::random_floats(size_t(E) * size_t(F), seed + 1, 0.3f);
    down_b = test::random_floats(size_t(E) * size_t(H), seed + 2, 0.3f);
    d_gate_b = std::make_unique<DeviceVector<float>>(gate_b);
    d_up_b = std::make_unique<DeviceVector<float>>(up_b);
    d_down_b = std::make_unique<DeviceVector<float>>(down_b);
    limit = glu_limit;
  }

  ExpertTable table() const {
    ExpertTable t;
    if (d_gate_b) {
      t.gate_bias = d_gate_b->get();
      t.up_bias = d_up_b->get();
      t.down_bias = d_down_b->get();
      t.glu_limit = limit;
      t.glu_alpha = alpha;
    }
    t.gate = gate_tab->get();
    t.up = up_tab->get();
    t.down = down_tab->get();
    t.dtype = dtype;
    t.down_dtype = down_dtype;
    t.n_experts = E;
    t.hidden = H;
    t.ffn = F;
    return t;
  }

 private:
  // A rows × cols matrix of type t: random values stored as t, or random blocks and their values.
  std::vector<float> make(DType t, int rows, int cols, uint32_t seed, float scale, const void*& device) {
    std::vector<float> v;
    std::vector<uint8_t> bytes;
    if (is_block_quantized(t)) {
      bytes = moe::test::random_blocks(t, rows, cols, seed);
      v.resize(size_t(rows) * size_t(cols));
      for (int r = 0; r < rows; ++r)
        dequantize_row(bytes.data() + size_t(r) * row_bytes(t, cols), t, cols, v.data() + size_t(r) * size_t(cols));
    } else {
      v = test::random_floats(size_t(rows) * size_t(cols), seed, scale);
      bytes = test::stored_as(t, v);
    }
    buffers.push_back(std::make_unique<DeviceVector<uint8_t>>(bytes));
    device = buffers.back()->get();
    return v;
  }
};

// How the activations enter the products: as F32 (decode), or rounded to the weight dtype (the grouped
// prefill GEMM on the tensor cores: x, and h before the down projection).
enum class Inputs { F32, Rounded };

// Scalar reference (double accumulation): y [T][H].
std::vector<float> reference(const Experts& X, const std::vector<float>& x_in, const std::vector<int32_t>& sel,
                             const std::vector<float>& w, int T, int slots, std::vector<float>* h_out = nullptr,
                             Inputs inputs = Inputs::F32) {
  const int H = X.H, F = X.F;
  const bool rounded = inputs == Inputs::Rounded;
  const DType cdt = gpu_compute_dtype(X.dtype);  // the tensor cores' operand type
  // Rounded: the activations, and block types' decoded weights, as the tensor cores take them.
  auto wv = [&](float v) { return rounded ? double(test::round_to(cdt, v)) : double(v); };
  std::vector<float> x = x_in;
  if (rounded)
    for (float& v : x) v = test::round_to(cdt, v);
  std::vector<float> y(size_t(T) * size_t(H), 0.0f);
  if (h_out) h_out->assign(size_t(T) * size_t(slots) * size_t(F), 0.0f);
  std::vector<double> h(static_cast<size_t>(F));
  for (int t = 0; t < T; ++t) {
    const float* xt = &x[size_t(t) * size_t(H)];
    std::vector<double> acc(static_cast<size_t>(H), 0.0);
    for (int k = 0; k < slots; ++k) {
      const int e = sel[size_t(t * slots + k)];
      if (e < 0) continue;
      for (int r = 0; r < F; ++r) {
        double g = 0, u = 0;
        for (int c = 0; c < H; ++c) {
          g += wv(X.gate[size_t(e)][size_t(r) * H + c]) * xt[c];
          u += wv(X.up[size_t(e)][size_t(r) * H + c]) * xt[c];
        }
        if (!X.gate_b.empty()) {
          g += X.gate_b[size_t(e) * F + r];
          u += X.up_b[size_t(e) * F + r];
        }
        if (X.limit > 0) {  // GPT-OSS's clamped gate
          g = std::min(g, double(X.limit));
          u = std::clamp(u, -double(X.limit), double(X.limit));
          h[size_t(r)] = (u + 1.0) * g / (1.0 + std::exp(-double(X.alpha) * g));
        } else {
          h[size_t(r)] = g / (1.0 + std::exp(-g)) * u;
        }
        if (rounded) h[size_t(r)] = test::round_to(cdt, float(h[size_t(r)]));
        if (h_out) (*h_out)[(size_t(t) * slots + k) * F + r] = float(h[size_t(r)]);
      }
      for (int c = 0; c < H; ++c) {
        double d = 0;
        for (int r = 0; r < F; ++r) d += wv(X.down[size_t(e)][size_t(c) * F + r]) * h[size_t(r)];
        if (!X.down_b.empty()) d += X.down_b[size_t(e) * H + c];
        acc[size_t(c)] += double(w[size_t(t * slots + k)]) * d;
      }
    }
    for (int c = 0; c < H; ++c) y[size_t(t) * H + c] = float(acc[size_t(c)]);
  }
  return y;
}

// How close a result must be to its reference.
//   F32 inputs: F32 accumulation over up to a few thousand terms against a double reference gives
//     relative errors of a few 1e-6 per dot product, so a normalised squared error far below 1e-9 and a
//     largest error below 1e-4 of the largest value.
//   Rounded inputs: the same, except where h sits next to a rounding boundary. The kernel rounds its F32
//     h and the reference rounds its double h, so the two can land one 16-bit step apart (about one h in
//     4000 at ffn 768). Each such step moves a y value by up to 2^-8 of one of its F terms: measured NMSE
//     up to 2e-8 and a largest error 2.4e-4 of the largest value. Leaving the activations unrounded
//     instead gives an NMSE of 5e-6 in BF16.
// A wrong index or a missing term gives errors of order 1 under either.
struct Tolerance {
  double nmse = 1e-9, worst = 1e-4;
};
constexpr Tolerance kRoundedInputs{1e-7, 2e-3};

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                  Tolerance tol = {}) {
  ASSERT_EQ(got.size(), want.size()) << what;
  float mx = 0;
  for (float v : want) mx = std::max(mx, std::fabs(v));
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << " at " << i;
    const double d = std::fabs(double(got[i]) - double(want[i]));
    if (d > worst) worst = d, at = i;
  }
  EXPECT_LT(test::nmse(got, want), tol.nmse) << what;
  EXPECT_LE(worst, tol.worst * mx + 1e-7) << what << ": worst at " << at << " got " << got[at] << " want " << want[at];
}

// Selections: distinct experts per token; a hot expert in every token (the same expert chosen by many
// tokens), the last expert never chosen when slots < E, about one slot in five empty (−1).
void make_selection(int T, int slots, int E, uint32_t seed, std::vector<int32_t>& sel, std::vector<float>& w) {
  std::mt19937 rng(seed);
  sel.assign(size_t(T * slots), -1);
  w.assign(size_t(T * slots), 0.0f);
  const int hot = 1 % E, cold = slots < E ? E - 1 : -1;
  std::uniform_real_distribution<float> wd(0.05f, 1.0f);
  for (int t = 0; t < T; ++t) {
    std::vector<int32_t> pool;
    for (int e = 0; e < E; ++e)
      if (e != hot && e != cold) pool.push_back(e);
    std::shuffle(pool.begin(), pool.end(), rng);
    const int hot_slot = t % slots;
    size_t next = 0;
    for (int k = 0; k < slots; ++k) {
      int32_t e = k == hot_slot ? hot : (next < pool.size() ? pool[next++] : -1);
      if (k != hot_slot && rng() % 5 == 0) e = -1;
      sel[size_t(t * slots + k)] = e;
      w[size_t(t * slots + k)] = e >= 0 ? wd(rng) : 0.0f;
    }
  }
}

struct Shape {
  DType dtype;
  int H, F, E, slots;
  std::vector<int> Ts;
  DType down_dtype = DType::BOOL;  // BOOL: dtype
};

std::string label(const Shape& s, int T) {
  return std::string(dtype_name(s.dtype)) + (s.down_dtype != DType::BOOL ? "/" + std::string(dtype_name(s.down_dtype)) : "") + " H=" + std::to_string(s.H) + " F=" + std::to_string(s.F) +
         " E=" + std::to_string(s.E) + " slots=" + std::to_string(s.slots) + " T=" + std::to_string(T);
}

// Decode on each of the first few tokens of a selection: h and y.
void check_decode(const Experts& X, const std::vector<float>& x, const std::vector<int32_t>& sel,
                  const std::vector<float>& w, int T, int slots, const std::string& what) {
  const ExpertTable tab = X.table();
  for (int t = 0; t < std::min(T, 3); ++t) {
    SCOPED_TRACE(what + " decode token " + std::to_string(t));
    const std::vector<float> xt(x.begin() + size_t(t) * X.H, x.begin() + size_t(t + 1) * X.H);
    const std::vector<int32_t> st(sel.begin() + t * slots, sel.begin() + (t + 1) * slots);
    const std::vector<float> wt(w.begin() + t * slots, w.begin() + (t + 1) * slots);
    std::vector<float> h_ref;
    const auto y_ref = reference(X, xt, st, wt, 1, slots, &h_ref);
    DeviceVector<float> d_x(xt), d_w(wt);
    DeviceVector<int32_t> d_sel(st);
    // Pre-filled with NaN: every value must be written (h of an empty slot: 0).
    DeviceVector<float> d_h(std::vector<float>(size_t(slots) * X.F, NAN));
    DeviceVector<float> d_y(std::vector<float>(size_t(X.H), NAN));
    experts_gate_up_decode(tab, d_sel.get(), slots, d_x.get(), d_h.get(), nullptr);
    experts_down_decode(tab, d_sel.get(), d_w.get(), slots, d_h.get(), d_y.get(), nullptr);
    const auto h = d_h.download();
    for (int k = 0; k < slots; ++k) {
      if (st[size_t(k)] >= 0) continue;
      for (int r = 0; r < X.F; ++r) ASSERT_EQ(h[size_t(k) * X.F + r], 0.0f) << "empty slot " << k;
    }
    expect_close(h, h_ref, "h");
    const auto y = d_y.download();
    expect_close(y, y_ref, "y");

    // Again, finishing with the layer's residual add + RMSNorm in the last block (norm.cuh's
    // ResidualNorm), twice on one counter: y is bit-identical, and the second launch finds the counter
    // back at 0 (else no block would be last, and x would not move).
    std::vector<float> res = test::random_floats(size_t(X.H), 31u + uint32_t(t), 2.0f);
    const std::vector<float> norm_w = test::random_floats(size_t(X.H), 37u, 1.5f);
    DeviceVector<float> d_res(res), d_norm_w(norm_w), d_out(size_t(X.H)), d_l2(1);
    DeviceVector<unsigned> d_counter(std::vector<unsigned>{0u});
    ResidualNorm then;
    then.x = d_res.get();
    then.w = d_norm_w.get();
    then.out = d_out.get();
    then.norm_out = d_l2.get();
    then.eps = 1e-6f;
    then.counter = d_counter.get();
    for (int run = 0; run < 2; ++run) {
      SCOPED_TRACE("fused residual norm, launch " + std::to_string(run + 1));
      experts_down_decode(tab, d_sel.get(), d_w.get(), slots, d_h.get(), d_y.get(), nullptr, &then);
      EXPECT_EQ(d_y.download(), y);
      res = test::expect_residual_norm(res, y, {}, norm_w, then.eps, d_res.download(), d_out.download(),
                                       d_l2.download()[0]);
      EXPECT_EQ(d_counter.download()[0], 0u);
    }
  }
}

// Grouped prefill: group, gate/up, down, combine; twice, bit-identical (deterministic).
void check_grouped(const Experts& X, const std::vector<float>& x, const std::vector<int32_t>& sel,
                   const std::vector<float>& w, int T, int slots, const std::string& what) {
  SCOPED_TRACE(what + " grouped");
  const ExpertTable tab = X.table();
  // BF16/F16 weights: the tensor-core GEMM multiplies activations rounded to the weight dtype.
  const auto y_ref = reference(X, x, sel, w, T, slots, nullptr, Inputs::Rounded);
  const int P = T * slots;
  const int n_pairs = int(std::count_if(sel.begin(), sel.end(), [](int32_t e) { return e >= 0; }));
  DeviceVector<float> d_x(x), d_w(w);
  DeviceVector<int32_t> d_sel(sel);
  DeviceVector<int32_t> d_group(std::vector<int32_t>(expert_grouping_ints(T, slots, X.E), -1234567));
  constexpr float kSentinel = 98765.0f;
  // h is stored in the weight dtype; the bytes past the pairs' rows must keep the sentinel's.
  const size_t h_size = dtype_size(gpu_compute_dtype(X.dtype));
  const size_t h_bytes = size_t(P) * X.F * h_size;
  std::vector<uint8_t> h_fill(size_t(P) * X.F * 4);
  for (size_t i = 0; i < h_fill.size(); i += 4) std::memcpy(&h_fill[i], &kSentinel, 4);
  DeviceVector<uint8_t> d_h(h_fill);
  DeviceVector<uint8_t> d_x16(std::vector<uint8_t>(size_t(T) * X.H * 2 + 1, 0xff));
  DeviceVector<float> d_yp(std::vector<float>(size_t(P) * X.H, kSentinel));
  DeviceVector<float> d_y(std::vector<float>(size_t(T) * X.H, NAN));
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    group_by_expert(d_sel.get(), T, slots, X.E, d_group.get(), nullptr);
    experts_gate_up_grouped(tab, d_group.get(), T, slots, d_x.get(), d_x16.get(), d_h.get(), nullptr);
    experts_down_grouped(tab, d_group.get(), T, slots, d_h.get(), d_yp.get(), nullptr);
    experts_combine(d_group.get(), d_w.get(), T, slots, X.H, d_yp.get(), d_y.get(), nullptr);
    const auto y = d_y.download();
    if (run == 0) {
      expect_close(y, y_ref, "y", X.dtype == DType::F32 ? Tolerance{} : kRoundedInputs);
      // Pairs are numbered 0 … n_pairs − 1: the rows past them are left untouched.
      const auto h = d_h.download();
      for (size_t i = size_t(n_pairs) * X.F * h_size; i < h_bytes; ++i)
        ASSERT_EQ(h[i], h_fill[i]) << "h row past the pairs, byte " << i;
      const auto yp = d_yp.download();
      for (size_t i = size_t(n_pairs) * X.H; i < yp.size(); ++i) ASSERT_EQ(yp[i], kSentinel) << "yp row past the pairs";
      first = y;
    } else {
      ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << "not deterministic";
    }
  }
}

// glu_limit > 0: GPT-OSS's experts (biases and the clamped gate at that limit).
void run_shape(const Shape& s, uint32_t seed, float glu_limit = 0.0f) {
  Experts X(s.E, s.H, s.F, s.dtype, seed, s.down_dtype);
  if (glu_limit > 0) X.with_gpt_oss(seed + 5000, glu_limit);
  for (int T : s.Ts) {
    const std::string what = label(s, T);
    SCOPED_TRACE(what);
    const auto x = test::random_floats(size_t(T) * s.H, seed + 7 + uint32_t(T), 1.0f);
    std::vector<int32_t> sel;
    std::vector<float> w;
    make_selection(T, s.slots, s.E, seed + 11 + uint32_t(T), sel, w);
    check_decode(X, x, sel, w, T, s.slots, what);
    check_grouped(X, x, sel, w, T, s.slots, what);
  }
}

TEST(Experts, SmallF32) {
  MOE_REQUIRE_GPU();
  run_shape({DType::F32, 64, 48, 8, 2, {1, 9, 64}}, 100);
}

TEST(Experts, SmallBF16AllSlots) {
  MOE_REQUIRE_GPU();
  // slots = E: every expert can be chosen, and the hot expert is in every token.
  run_shape({DType::BF16, 64, 48, 8, 8, {1, 9, 64}}, 200);
}

TEST(Experts, F16) {
  MOE_REQUIRE_GPU();
  run_shape({DType::F16, 128, 80, 16, 4, {1, 9, 40}}, 300);
}

TEST(Experts, ManyExpertsBF16) {
  MOE_REQUIRE_GPU();
  // 128 experts, most chosen by one or two tokens, many by none; 64 tokens × 8 slots.
  run_shape({DType::BF16, 256, 96, 128, 8, {1, 9, 64}}, 400);
}

TEST(Experts, OddShapesScalarPaths) {
  MOE_REQUIRE_GPU();
  // hidden and ffn not multiples of the 16-byte chunk, of the 32-deep k tile, or of the 64-row tile.
  run_shape({DType::BF16, 36, 20, 8, 3, {1, 9, 21}}, 500);
  run_shape({DType::F32, 30, 22, 5, 3, {1, 7}}, 600);
  run_shape({DType::F16, 100, 70, 6, 2, {1, 17}}, 700);
  // Hundreds of pairs on the hot expert: three 128-pair work items, the last one partial; hidden a multiple of
  // the 16-byte chunk but not of the 32-deep k step.
  run_shape({DType::BF16, 72, 100, 4, 2, {300}}, 750);
}

TEST(Experts, Qwen3SizedBF16) {
  MOE_REQUIRE_GPU();
  // hidden 2048, ffn 768 (Qwen3-30B-A3B's expert shape), 8 experts to keep the test's memory small.
  run_shape({DType::BF16, 2048, 768, 8, 4, {1, 9, 33}}, 800);
}

TEST(Experts, LargeF32AndWideFfn) {
  MOE_REQUIRE_GPU();
  run_shape({DType::F32, 2048, 768, 4, 2, {1, 17}}, 900);
  // ffn much wider than hidden (Mixtral-like ratio).
  run_shape({DType::BF16, 128, 1024, 8, 2, {1, 17}}, 1000);
}

// GPT-OSS: biases on gate, up and down, and the clamped gate, on every path: decode, the F32 SIMT GEMM,
// the tensor-core GEMM (its accumulators start at the biases), odd shapes whose weight rows end inside a
// tile. The limit of 0.25 is within the spread of the gates and ups here, so the clamp bites: kernels
// without it, or without any one of the biases, fail this test.
TEST(Experts, GptOssBiasesAndClampedGate) {
  MOE_REQUIRE_GPU();
  run_shape({DType::F32, 64, 48, 8, 4, {1, 9, 64}}, 1200, 0.25f);
  run_shape({DType::BF16, 64, 48, 8, 4, {1, 9, 64}}, 1300, 0.25f);
  run_shape({DType::BF16, 36, 20, 8, 3, {1, 21}}, 1400, 0.25f);
  run_shape({DType::F16, 100, 70, 6, 2, {1, 17}}, 1500, 0.25f);
  run_shape({DType::BF16, 72, 100, 4, 2, {300}}, 1600, 0.25f);
}

// GGUF's block types, read where they lie: decode decodes each row's blocks in registers, the grouped
// GEMM stages them as BF16. Every type as gate/up (with another as down, as Q4_K_M pairs Q4_K with
// Q6_K), widths of one 256-value block and of several, and one width of 32-value blocks that is not a
// multiple of 256 (GPT-OSS's 2880 in miniature).
TEST(Experts, GgmlBlockTypes) {
  MOE_REQUIRE_GPU();
  const std::vector<DType>& types = moe::test::kGgmlBlockTypes;
  for (size_t i = 0; i < types.size(); ++i) {
    const DType down = types[(i + 1) % types.size()];
    run_shape({types[i], 256, 512, 6, 3, {1, 9}, down}, 2000 + 10 * uint32_t(i));
  }
  run_shape({DType::Q8_0, 96, 160, 5, 2, {1, 130}, DType::MXFP4_GGML}, 2200);
  run_shape({DType::Q4_K, 512, 256, 4, 2, {1, 17}, DType::Q6_K}, 2300, 0.25f);  // with GPT-OSS's epilogue
}

// Packed integers' blocks (engine/common/packed_int.h), read where they lie, the grouped GEMM staging them in their
// values' dtype (BF16, or F16 for F16-scaled ones): 4 bits with and without zero points and 8 bits, gate/up and down
// of different kinds but one values' dtype, as a checkpoint's layers mix them.
TEST(Experts, PackedIntBlocks) {
  MOE_REQUIRE_GPU();
  const std::pair<DType, DType> pairs[] = {{DType::PACKED_I4_ZP_B32, DType::PACKED_I8_B32},
                                           {DType::PACKED_I4_ZP_F16_B32, DType::PACKED_I8_F16_B32},
                                           {DType::PACKED_I8_F16_B32, DType::PACKED_I4_F16_B32},
                                           {DType::PACKED_I4_B32, DType::PACKED_I4_ZP_B32}};
  for (size_t i = 0; i < std::size(pairs); ++i)
    run_shape({pairs[i].first, 256, 160, 6, 3, {1, 9}, pairs[i].second}, 2400 + 10 * uint32_t(i));
}

TEST(Experts, EmptySelections) {
  MOE_REQUIRE_GPU();
  const Experts X(8, 64, 48, DType::BF16, 1100);
  const int T = 5, slots = 4;
  const auto x = test::random_floats(size_t(T) * 64, 1101);
  // No expert at all in any slot: h = 0, y = 0.
  std::vector<int32_t> sel(size_t(T * slots), -1);
  std::vector<float> w(size_t(T * slots), 0.0f);
  check_decode(X, x, sel, w, T, slots, "all empty");
  check_grouped(X, x, sel, w, T, slots, "all empty");
  // Only the last slot of the last token: one pair.
  sel.back() = 7;
  w.back() = 0.5f;
  check_decode(X, x, sel, w, T, slots, "one pair");
  check_grouped(X, x, sel, w, T, slots, "one pair");
  // Every token on expert 0 in slot 3 (140 pairs of one expert: two work items), every other token
  // also on expert 5 in slot 0, the other slots empty.
  const int T2 = 140;
  const auto x2 = test::random_floats(size_t(T2) * 64, 1102);
  std::vector<int32_t> sel2(size_t(T2 * slots), -1);
  std::vector<float> w2(size_t(T2 * slots), 0.0f);
  for (int t = 0; t < T2; ++t) {
    sel2[size_t(t * slots + 3)] = 0;
    w2[size_t(t * slots + 3)] = 1.0f + 0.01f * float(t);
    if (t % 2) {
      sel2[size_t(t * slots)] = 5;
      w2[size_t(t * slots)] = 0.25f;
    }
  }
  check_decode(X, x2, sel2, w2, T2, slots, "hot expert");
  check_grouped(X, x2, sel2, w2, T2, slots, "hot expert");
}

}  // namespace
}  // namespace moe::cuda
