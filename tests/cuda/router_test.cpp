// The fused router kernel (engine/backend/cuda/kernels/router.cu) against a scalar reference that
// follows cpu_backend.cpp's moe_block / record_routing line by line; and its decode form, which computes
// the logits in the same kernel, against the two kernels it replaces.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend/cuda/kernels/linear.cuh"
#include "engine/backend/cuda/kernels/router.cuh"
#include "tests/cuda/gpu_test_support.h"

namespace moe::cuda {
namespace {

using test::DeviceVector;

struct Case {
  std::string name;
  int E = 8, T = 1, top_k = 2, slots = 2;
  bool softmax = true, renormalize = false;
  float routed_scale = 1.0f;
  int n_group = 1, topk_group = 1;  // group-limited selection when n_group > 1 and topk_group < n_group
  bool group_top2 = true;           // a group scores the sum of its two best biased scores, else its best
  bool selection_bias = false, user_bias = false;
  bool logit_bias = false;  // the router's own bias on the logits (GPT-OSS)
  std::vector<int32_t> masked, forced;
  bool record = true;
  // Which record outputs are asked for when record is on (all by default).
  bool rec_ids = true, rec_weights = true, rec_entropy = true, rec_margin = true, rec_probs = true;
  int n_moe_layers = 1, moe_ordinal = 0;
  enum class Logits { Random, Ties } logits = Logits::Random;
  uint32_t seed = 1;
};

struct Ref {
  std::vector<int32_t> selected;  // [T][slots]
  std::vector<float> weights;     // [T][slots]
  std::vector<int32_t> rec_ids;   // [T][slots]
  std::vector<float> rec_weights, entropy, margin, probs;  // [T][slots], [T], [T], [T][E]
  bool near_tie = false;          // the data has two different scores too close to order reliably
};

// cpu_backend.cpp's moe_block (scores, selection, weights) and record_routing, for T tokens.
Ref reference(const Case& c, std::vector<float> logits, const std::vector<float>& sel_bias,
              const std::vector<float>& user_bias, const std::vector<float>& logit_bias) {
  const int E = c.E, T = c.T, K = c.top_k, KS = c.slots;
  Ref r;
  r.selected.assign(size_t(T * KS), -1);
  r.weights.assign(size_t(T * KS), 0.0f);
  r.rec_ids.assign(size_t(T * KS), -1);
  r.rec_weights.assign(size_t(T * KS), 0.0f);
  r.entropy.assign(size_t(T), 0.0f);
  r.margin.assign(size_t(T), 0.0f);
  r.probs.assign(size_t(T) * size_t(E), 0.0f);
  auto is_masked = [&](int e) { return std::find(c.masked.begin(), c.masked.end(), e) != c.masked.end(); };
  for (int t = 0; t < T; ++t) {
    float* p = &logits[size_t(t) * size_t(E)];
    if (!logit_bias.empty())  // the model's bias first, then the intervention's (float additions, in order)
      for (int e = 0; e < E; ++e) p[e] += logit_bias[size_t(e)];
    if (!user_bias.empty())
      for (int e = 0; e < E; ++e) p[e] += user_bias[size_t(e)];
    for (int32_t e : c.masked) p[e] = -INFINITY;
    if (c.softmax) {
      const float mx = *std::max_element(p, p + E);
      float sum = 0;
      for (int e = 0; e < E; ++e) sum += (p[e] = std::exp(p[e] - mx));
      for (int e = 0; e < E; ++e) p[e] /= sum;
    } else {
      for (int e = 0; e < E; ++e) p[e] = 1.0f / (1.0f + std::exp(-p[e]));
    }
    int n_sel = 0;
    int32_t* sel = &r.selected[size_t(t * KS)];
    for (int32_t e : c.forced)
      if (std::find(sel, sel + n_sel, e) == sel + n_sel) sel[n_sel++] = e;
    std::vector<int32_t> order;
    for (int e = 0; e < E; ++e)
      if (std::find(sel, sel + n_sel, e) == sel + n_sel && !is_masked(e)) order.push_back(e);
    auto biased = [&](int e) { return p[e] + (sel_bias.empty() ? 0.0f : sel_bias[size_t(e)]); };
    auto better = [&](int a, int b) { return biased(a) > biased(b) || (biased(a) == biased(b) && a < b); };
    const int rest = K - n_sel;
    auto mid = order.end();
    if (c.n_group > 1 && c.topk_group < c.n_group) {
      // The group limit: each group's score from its candidates (best, or best + second best; −inf with
      // too few), the topk_group best groups kept (ties to the lower group), their candidates first.
      const int per = E / c.n_group;
      std::vector<float> score(size_t(c.n_group));
      for (int g = 0; g < c.n_group; ++g) {
        std::vector<float> v;
        for (int32_t e : order)
          if (e / per == g) v.push_back(biased(e));
        std::sort(v.begin(), v.end(), std::greater<float>());
        while (v.size() < 2) v.push_back(-INFINITY);
        score[size_t(g)] = c.group_top2 ? v[0] + v[1] : v[0];
      }
      std::vector<int> groups(size_t(c.n_group));
      std::iota(groups.begin(), groups.end(), 0);
      std::stable_sort(groups.begin(), groups.end(), [&](int a, int b) { return score[size_t(a)] > score[size_t(b)]; });
      const float in = score[size_t(groups[size_t(c.topk_group - 1)])], out = score[size_t(groups[size_t(c.topk_group)])];
      if (in != out && std::fabs(in - out) <= 2e-6f * std::max(std::fabs(in), std::fabs(out))) r.near_tie = true;
      std::vector<bool> kept(size_t(c.n_group), false);
      for (int i = 0; i < c.topk_group; ++i) kept[size_t(groups[size_t(i)])] = true;
      mid = std::stable_partition(order.begin(), order.end(), [&](int32_t e) { return kept[size_t(e / per)]; });
    }
    if (mid - order.begin() >= rest) {
      std::partial_sort(order.begin(), order.begin() + rest, mid, better);
    } else {
      std::sort(order.begin(), mid, better);
      std::partial_sort(mid, order.begin() + rest, order.end(), better);
    }
    // The GPU's exp differs from the host's by an ulp or two: the order is only comparable where the
    // scores that decide it (the chosen ones and the best one left out) are equal or clearly apart
    // (2e-6 relative: several times that difference).
    for (int j = 0; j + 1 < std::min<int>(rest + 1, int(order.size())); ++j) {
      const float a = biased(order[size_t(j)]), b = biased(order[size_t(j + 1)]);
      if (a != b && std::fabs(a - b) <= 2e-6f * std::max(std::fabs(a), std::fabs(b))) r.near_tie = true;
    }
    for (int j = 0; j < rest; ++j) sel[n_sel++] = order[size_t(j)];
    float wsum = 0;
    for (int j = 0; j < K; ++j) wsum += p[sel[j]];
    float* w = &r.weights[size_t(t * KS)];
    for (int j = 0; j < K; ++j) {
      float wj = p[sel[j]];
      if (c.renormalize && wsum > 0) wj /= wsum;
      w[j] = wj * c.routed_scale;
    }
    // record_routing
    std::vector<int> ok(static_cast<size_t>(K));
    std::iota(ok.begin(), ok.end(), 0);
    std::stable_sort(ok.begin(), ok.end(), [&](int a, int b) { return w[a] > w[b]; });
    for (int j = 0; j + 1 < K; ++j) {
      const float a = w[ok[size_t(j)]], b = w[ok[size_t(j + 1)]];
      if (a != b && std::fabs(a - b) <= 2e-6f * std::max(std::fabs(a), std::fabs(b))) r.near_tie = true;
    }
    for (int j = 0; j < K; ++j) {
      r.rec_ids[size_t(t * KS + j)] = sel[ok[size_t(j)]];
      r.rec_weights[size_t(t * KS + j)] = w[ok[size_t(j)]];
    }
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += p[e];
    double h = 0, p1 = 0, p2 = 0;
    for (int e = 0; e < E; ++e) {
      const double q = sum > 0 ? p[e] / sum : 0.0;
      if (q > 0) h -= q * std::log(q);
      if (q > p1) p2 = p1, p1 = q;
      else if (q > p2) p2 = q;
    }
    r.entropy[size_t(t)] = E > 1 ? float(h / std::log(double(E))) : 0.0f;
    r.margin[size_t(t)] = float(p1 - p2);
    std::copy(p, p + E, &r.probs[size_t(t) * size_t(E)]);
  }
  return r;
}

std::vector<float> make_logits(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> lg(size_t(c.T) * size_t(c.E));
  for (int t = 0; t < c.T; ++t) {
    float* row = &lg[size_t(t) * size_t(c.E)];
    if (c.logits == Case::Logits::Ties) {
      // Token 0 mod 3: all equal; 1: equal in groups of 4; 2: two values only.
      for (int e = 0; e < c.E; ++e)
        row[e] = t % 3 == 0 ? 0.25f : t % 3 == 1 ? 0.5f * float((e * 7 % c.E) / 4) : (e % 5 == 2 ? 1.0f : -1.0f);
    } else {
      std::normal_distribution<float> d(0.0f, 2.0f);
      for (int e = 0; e < c.E; ++e) row[e] = d(rng);
    }
  }
  return lg;
}

// Weights and probabilities: the GPU's expf is within 2 ulp of the host's, and its sums run in another
// order (a few ulp more); a renormalisation divides two such values. 4e-6 relative covers that with margin.
bool near_rel(float got, float want) { return std::fabs(got - want) <= 4e-6f * std::fabs(want) + 1e-9f; }

template <typename Set>
Case make_case(Set set) {
  Case c;
  set(c);
  return c;
}

// Case c's parameters over the device arrays given (each used when c asks for it).
RouterParams params_of(const Case& c, const DeviceVector<float>& sel_bias, const DeviceVector<float>& user_bias,
                       const DeviceVector<int32_t>& masked, const DeviceVector<int32_t>& forced,
                       const DeviceVector<float>& logit_bias) {
  RouterParams p;
  p.n_experts = c.E;
  p.top_k = c.top_k;
  p.slots = c.slots;
  p.softmax = c.softmax;
  p.renormalize = c.renormalize;
  p.routed_scale = c.routed_scale;
  p.n_group = c.n_group;
  p.topk_group = c.topk_group;
  p.group_top2 = c.group_top2;
  p.selection_bias = c.selection_bias ? sel_bias.get() : nullptr;
  p.user_bias = c.user_bias ? user_bias.get() : nullptr;
  p.logit_bias = c.logit_bias ? logit_bias.get() : nullptr;
  p.masked = c.masked.empty() ? nullptr : masked.get();
  p.n_masked = int(c.masked.size());
  p.forced = c.forced.empty() ? nullptr : forced.get();
  p.n_forced = int(c.forced.size());
  return p;
}

void run_case(const Case& c) {
  SCOPED_TRACE(c.name);
  const int E = c.E, T = c.T, S = c.slots, M = c.n_moe_layers, m = c.moe_ordinal;
  std::vector<float> sel_bias, user_bias, logit_bias;
  if (c.selection_bias) sel_bias = test::random_floats(size_t(E), c.seed + 101, 0.05f);
  if (c.user_bias) user_bias = test::random_floats(size_t(E), c.seed + 202, 1.5f);
  if (c.logit_bias) logit_bias = test::random_floats(size_t(E), c.seed + 303, 2.0f);
  // Data without near ties between different scores at the selection boundary (see reference()).
  std::vector<float> logits;
  Ref ref;
  for (uint32_t s = c.seed;; ++s) {
    logits = make_logits(c, s);
    ref = reference(c, logits, sel_bias, user_bias, logit_bias);
    if (!ref.near_tie) break;
    ASSERT_LT(s, c.seed + 50) << "no tie-free data found";
  }

  DeviceVector<float> d_logits(logits);
  DeviceVector<float> d_sel_bias(sel_bias), d_user_bias(user_bias), d_logit_bias(logit_bias);
  DeviceVector<int32_t> d_masked(c.masked), d_forced(c.forced);
  const RouterParams p = params_of(c, d_sel_bias, d_user_bias, d_masked, d_forced, d_logit_bias);

  // Outputs pre-filled with sentinels: pads must be written, other MoE layers' rows must stay untouched.
  constexpr int32_t kIdSentinel = -77;
  constexpr float kSentinel = 12345.0f;
  DeviceVector<int32_t> d_sel(std::vector<int32_t>(size_t(T * S), kIdSentinel));
  DeviceVector<float> d_w(std::vector<float>(size_t(T * S), kSentinel));
  const size_t TM = size_t(T) * size_t(M);
  DeviceVector<int32_t> d_rids(std::vector<int32_t>(TM * size_t(S), kIdSentinel));
  DeviceVector<float> d_rw(std::vector<float>(TM * size_t(S), kSentinel));
  DeviceVector<float> d_ent(std::vector<float>(TM, kSentinel));
  DeviceVector<float> d_mar(std::vector<float>(TM, kSentinel));
  DeviceVector<float> d_probs(std::vector<float>(TM * size_t(E), kSentinel));
  RoutingOutput out;
  out.selected = d_sel.get();
  out.weights = d_w.get();
  out.n_moe_layers = M;
  out.moe_ordinal = m;
  if (c.record) {
    if (c.rec_ids) out.rec_ids = d_rids.get();
    if (c.rec_weights) out.rec_weights = d_rw.get();
    if (c.rec_entropy) out.rec_entropy = d_ent.get();
    if (c.rec_margin) out.rec_margin = d_mar.get();
    if (c.rec_probs) out.rec_probs = d_probs.get();
  }
  route(d_logits.get(), T, p, out, nullptr);
  MOE_CUDA_CHECK(cudaDeviceSynchronize());

  const auto sel = d_sel.download();
  const auto w = d_w.download();
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < S; ++j) {
      const size_t i = size_t(t * S + j);
      ASSERT_EQ(sel[i], ref.selected[i]) << "token " << t << " slot " << j;
      ASSERT_TRUE(near_rel(w[i], ref.weights[i]))
          << "token " << t << " slot " << j << ": " << w[i] << " vs " << ref.weights[i];
      if (j >= c.top_k) {
        ASSERT_EQ(w[i], 0.0f);
      }
    }
  for (int t = 0; t < T; ++t)
    for (int32_t e : c.masked)
      for (int j = 0; j < S; ++j) ASSERT_NE(sel[size_t(t * S + j)], e) << "masked expert selected";

  const auto rids = d_rids.download();
  const auto rw = d_rw.download();
  const auto ent = d_ent.download();
  const auto mar = d_mar.download();
  const auto probs = d_probs.download();
  for (int t = 0; t < T; ++t)
    for (int mm = 0; mm < M; ++mm) {
      const size_t tm = size_t(t) * size_t(M) + size_t(mm);
      const bool here = c.record && mm == m;
      for (int j = 0; j < S; ++j) {
        const size_t i = tm * size_t(S) + size_t(j), ri = size_t(t * S + j);
        if (here && c.rec_ids) {
          ASSERT_EQ(rids[i], ref.rec_ids[ri]) << "record token " << t << " rank " << j;
        } else {
          ASSERT_EQ(rids[i], kIdSentinel);
        }
        if (here && c.rec_weights) {
          ASSERT_TRUE(near_rel(rw[i], ref.rec_weights[ri])) << "record token " << t << " rank " << j;
        } else {
          ASSERT_EQ(rw[i], kSentinel);
        }
      }
      // Entropy and margin: the CPU computes them in double from p; p differs by a few ulp (F32).
      if (here && c.rec_entropy) {
        ASSERT_NEAR(ent[tm], ref.entropy[size_t(t)], 2e-6) << "token " << t;
      } else {
        ASSERT_EQ(ent[tm], kSentinel);
      }
      if (here && c.rec_margin) {
        ASSERT_NEAR(mar[tm], ref.margin[size_t(t)], 2e-6) << "token " << t;
      } else {
        ASSERT_EQ(mar[tm], kSentinel);
      }
      for (int e = 0; e < E; ++e) {
        const float got = probs[tm * size_t(E) + size_t(e)], want = ref.probs[size_t(t) * size_t(E) + size_t(e)];
        if (here && c.rec_probs) {
          ASSERT_TRUE(near_rel(got, want)) << "probs token " << t << " expert " << e << ": " << got << " vs " << want;
          if (want == 0.0f) {
            ASSERT_EQ(got, 0.0f);  // masked: exactly 0
          }
        } else {
          ASSERT_EQ(got, kSentinel);
        }
      }
    }
}

TEST(Router, SoftmaxRenormalizedTop8Of128) {
  MOE_REQUIRE_GPU();
  Case c = make_case([](Case& c_) {
    c_.name = "qwen3-like"; c_.E = 128; c_.T = 37; c_.top_k = 8; c_.slots = 8; c_.softmax = true;
    c_.renormalize = true;
  });
  run_case(c);
  c.T = 1;
  run_case(c);
}

TEST(Router, SoftmaxNotRenormalizedScaledWithPadding) {
  MOE_REQUIRE_GPU();
  // E not a multiple of 32, slots > top_k (the pads), routed_scale ≠ 1.
  Case c = make_case([](Case& c_) {
    c_.name = "E=60 k=4 slots=6"; c_.E = 60; c_.T = 37; c_.top_k = 4; c_.slots = 6; c_.renormalize = false;
    c_.routed_scale = 2.5f;
  });
  run_case(c);
  c.T = 1;
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=8 k=2 (mixtral-like)"; c_.E = 8; c_.T = 37; c_.top_k = 2; c_.slots = 2;
    c_.renormalize = true;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=64 k=8 (olmoe-like)"; c_.E = 64; c_.T = 37; c_.top_k = 8; c_.slots = 8;
    c_.renormalize = false;
  });
  run_case(c);
}

TEST(Router, SigmoidWithSelectionBias) {
  MOE_REQUIRE_GPU();
  // DeepSeek-V3-like: sigmoid scores, a selection-only bias, renormalised and scaled weights.
  Case c = make_case([](Case& c_) {
    c_.name = "E=256 sigmoid bias"; c_.E = 256; c_.T = 37; c_.top_k = 8; c_.slots = 8; c_.softmax = false;
    c_.renormalize = true; c_.routed_scale = 2.5f; c_.selection_bias = true;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=8 sigmoid plain"; c_.E = 8; c_.T = 37; c_.top_k = 2; c_.slots = 3; c_.softmax = false;
    c_.renormalize = false; c_.routed_scale = 1.0f;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=60 sigmoid bias, no renorm"; c_.E = 60; c_.T = 1; c_.top_k = 6; c_.slots = 6;
    c_.softmax = false; c_.renormalize = false; c_.routed_scale = 0.75f; c_.selection_bias = true;
  });
  run_case(c);
}

TEST(Router, GroupLimitedSelection) {
  MOE_REQUIRE_GPU();
  // DeepSeek-V3 (noaux_tc): 8 groups of 32, the 4 best by their two best biased scores, top-8 in them.
  Case c = make_case([](Case& c_) {
    c_.name = "E=256 8 groups keep 4"; c_.E = 256; c_.T = 37; c_.top_k = 8; c_.slots = 8; c_.softmax = false;
    c_.renormalize = true; c_.routed_scale = 2.5f; c_.selection_bias = true; c_.n_group = 8; c_.topk_group = 4;
  });
  run_case(c);
  c.T = 1;
  run_case(c);
  // DeepSeek-V2 (group_limited_greedy): softmax, a group scores its best, no bias, not renormalised.
  c = make_case([](Case& c_) {
    c_.name = "E=160 8 groups keep 3 by max"; c_.E = 160; c_.T = 37; c_.top_k = 6; c_.slots = 6;
    c_.softmax = true; c_.renormalize = false; c_.routed_scale = 16.0f; c_.n_group = 8; c_.topk_group = 3;
    c_.group_top2 = false;
  });
  run_case(c);
  // More groups than lanes: each lane scores several groups.
  c = make_case([](Case& c_) {
    c_.name = "E=256 64 groups keep 5"; c_.E = 256; c_.T = 37; c_.top_k = 8; c_.slots = 8; c_.softmax = false;
    c_.renormalize = true; c_.selection_bias = true; c_.n_group = 64; c_.topk_group = 5;
  });
  run_case(c);
  // Equal scores everywhere: groups and experts tie to the lower index.
  c = make_case([](Case& c_) {
    c_.name = "ties E=64 8 groups keep 2"; c_.E = 64; c_.T = 9; c_.top_k = 4; c_.slots = 4; c_.softmax = false;
    c_.n_group = 8; c_.topk_group = 2; c_.logits = Case::Logits::Ties;
  });
  run_case(c);
}

TEST(Router, GroupLimitWithMasksAndForcedExperts) {
  MOE_REQUIRE_GPU();
  // Masks leave every group two candidates and the forced expert 15 leaves group 3 one (so it scores
  // −inf); one kept group holds 2 of the 3 experts still to choose: the third comes from the others.
  Case c = make_case([](Case& c_) {
    c_.name = "E=16 4 groups keep 1, masks"; c_.E = 16; c_.T = 37; c_.top_k = 4; c_.slots = 4;
    c_.softmax = false; c_.renormalize = true; c_.selection_bias = true; c_.n_group = 4; c_.topk_group = 1;
    c_.masked = {0, 1, 4, 5, 8, 9, 12, 13}; c_.forced = {15};
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=64 8 groups keep 3, interventions"; c_.E = 64; c_.T = 37; c_.top_k = 6; c_.slots = 8;
    c_.softmax = false; c_.renormalize = true; c_.routed_scale = 2.5f; c_.selection_bias = true;
    c_.user_bias = true; c_.n_group = 8; c_.topk_group = 3; c_.masked = {0, 9, 63}; c_.forced = {2, 40};
  });
  run_case(c);
}

TEST(Router, InterventionsBiasMasksForced) {
  MOE_REQUIRE_GPU();
  // User bias, masks (including expert 0 and the last), forced experts with a duplicate (taken once).
  Case c = make_case([](Case& c_) {
    c_.name = "E=64 interventions"; c_.E = 64; c_.T = 37; c_.top_k = 6; c_.slots = 8; c_.softmax = true;
    c_.renormalize = true; c_.routed_scale = 1.0f; c_.user_bias = true; c_.masked = {0, 63, 17, 5};
    c_.forced = {2, 40, 2};
  });
  run_case(c);
  c.softmax = false;
  c.name = "E=64 interventions sigmoid";
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=128 masks + selection bias"; c_.E = 128; c_.T = 37; c_.top_k = 8; c_.slots = 8;
    c_.softmax = false; c_.renormalize = true; c_.routed_scale = 2.5f; c_.selection_bias = true;
    c_.user_bias = true; c_.masked = {1, 2, 3, 4, 100}; c_.forced = {127};
  });
  run_case(c);
}

// GPT-OSS: the router layer's bias is added to the logits before anything else (softmax over the top k =
// renormalised softmax); with an intervention's bias and masks on top of it.
TEST(Router, LogitBiasBeforeInterventions) {
  MOE_REQUIRE_GPU();
  Case c = make_case([](Case& c_) {
    c_.name = "E=32 k=4 logit bias"; c_.E = 32; c_.T = 23; c_.top_k = 4; c_.slots = 4; c_.renormalize = true;
    c_.logit_bias = true;
  });
  run_case(c);
  c.name = "E=32 k=4 logit bias + user bias, masks, forced";
  c.user_bias = true;
  c.masked = {0, 7};
  c.forced = {31};
  c.slots = 5;
  run_case(c);
}

TEST(Router, ForcedExpertWithTinyProbability) {
  MOE_REQUIRE_GPU();
  // Expert 3's logit is pushed to −30 by the user bias; it is still chosen first, and its weight sorts last.
  const int E = 32;
  Case c = make_case([](Case& c_) {
    c_.name = "tiny forced"; c_.E = E; c_.T = 5; c_.top_k = 4; c_.slots = 4; c_.softmax = true;
    c_.renormalize = true; c_.forced = {3};
  });
  std::vector<float> logits = make_logits(c, 9);
  for (int t = 0; t < c.T; ++t) logits[size_t(t * E + 3)] = -30.0f;
  const Ref ref = reference(c, logits, {}, {}, {});
  ASSERT_FALSE(ref.near_tie);
  DeviceVector<float> d_logits(logits);
  DeviceVector<int32_t> d_forced(c.forced);
  RouterParams p;
  p.n_experts = E;
  p.top_k = 4;
  p.slots = 4;
  p.renormalize = true;
  p.forced = d_forced.get();
  p.n_forced = 1;
  DeviceVector<int32_t> d_sel(size_t(c.T * 4)), d_rids(size_t(c.T * 4));
  DeviceVector<float> d_w(size_t(c.T * 4)), d_rw(size_t(c.T * 4));
  RoutingOutput out;
  out.selected = d_sel.get();
  out.weights = d_w.get();
  out.n_moe_layers = 1;
  out.rec_ids = d_rids.get();
  out.rec_weights = d_rw.get();
  route(d_logits.get(), c.T, p, out, nullptr);
  const auto sel = d_sel.download(), rids = d_rids.download();
  const auto w = d_w.download(), rw = d_rw.download();
  for (int t = 0; t < c.T; ++t) {
    EXPECT_EQ(sel[size_t(t * 4)], 3);
    EXPECT_EQ(rids[size_t(t * 4 + 3)], 3);
    EXPECT_LT(rw[size_t(t * 4 + 3)], 1e-9f);
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(sel[size_t(t * 4 + j)], ref.selected[size_t(t * 4 + j)]);
      EXPECT_EQ(rids[size_t(t * 4 + j)], ref.rec_ids[size_t(t * 4 + j)]);
      EXPECT_TRUE(near_rel(w[size_t(t * 4 + j)], ref.weights[size_t(t * 4 + j)]));
      EXPECT_TRUE(near_rel(rw[size_t(t * 4 + j)], ref.rec_weights[size_t(t * 4 + j)]));
    }
  }
}

TEST(Router, DenseTopKEqualsE) {
  MOE_REQUIRE_GPU();
  Case c = make_case([](Case& c_) {
    c_.name = "dense E=8"; c_.E = 8; c_.T = 37; c_.top_k = 8; c_.slots = 8; c_.renormalize = true;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "dense E=60"; c_.E = 60; c_.T = 9; c_.top_k = 60; c_.slots = 60; c_.renormalize = false;
    c_.routed_scale = 1.5f;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "dense E=60 with masks"; c_.E = 60; c_.T = 9; c_.top_k = 50; c_.slots = 60;
    c_.renormalize = true; c_.masked = {0, 1, 2, 3, 4, 5, 6, 7, 8, 59}; c_.forced = {33};
  });
  run_case(c);
}

TEST(Router, TiesGoToTheLowerIdAndKeepSlotOrderInTheRecord) {
  MOE_REQUIRE_GPU();
  Case c = make_case([](Case& c_) {
    c_.name = "ties E=128"; c_.E = 128; c_.T = 37; c_.top_k = 8; c_.slots = 8; c_.renormalize = true;
    c_.logits = Case::Logits::Ties;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "ties E=60 sigmoid"; c_.E = 60; c_.T = 9; c_.top_k = 5; c_.slots = 7; c_.softmax = false;
    c_.logits = Case::Logits::Ties;
  });
  run_case(c);
  // All equal logits: the first top_k ids, equal weights, margin 0, entropy 1.
  c = make_case([](Case& c_) {
    c_.name = "ties E=8"; c_.E = 8; c_.T = 3; c_.top_k = 3; c_.slots = 3; c_.logits = Case::Logits::Ties;
  });
  run_case(c);
}

TEST(Router, LargeExpertCounts) {
  MOE_REQUIRE_GPU();
  Case c = make_case([](Case& c_) {
    c_.name = "E=256 k=8"; c_.E = 256; c_.T = 37; c_.top_k = 8; c_.slots = 8; c_.renormalize = true;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=1024 k=32"; c_.E = 1024; c_.T = 37; c_.top_k = 32; c_.slots = 32; c_.renormalize = true;
    c_.routed_scale = 2.0f; c_.selection_bias = true;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=1024 dense"; c_.E = 1024; c_.T = 3; c_.top_k = 1024; c_.slots = 1024; c_.renormalize = true;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "E=1 k=1"; c_.E = 1; c_.T = 5; c_.top_k = 1; c_.slots = 2; c_.renormalize = true;
  });
  run_case(c);
}

TEST(Router, RecordOffPartialAndOtherLayers) {
  MOE_REQUIRE_GPU();
  Case c = make_case([](Case& c_) {
    c_.name = "record off"; c_.E = 128; c_.T = 37; c_.top_k = 8; c_.slots = 8; c_.renormalize = true;
    c_.record = false;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "probs only, layer 2 of 3"; c_.E = 64; c_.T = 37; c_.top_k = 8; c_.slots = 8;
    c_.rec_ids = false; c_.rec_weights = false; c_.rec_entropy = false; c_.rec_margin = false;
    c_.n_moe_layers = 3; c_.moe_ordinal = 2;
  });
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "topk + entropy, layer 1 of 4"; c_.E = 60; c_.T = 9; c_.top_k = 4; c_.slots = 6;
    c_.softmax = false; c_.rec_probs = false; c_.n_moe_layers = 4; c_.moe_ordinal = 1;
  });
  c.rec_margin = false;
  run_case(c);
  c = make_case([](Case& c_) {
    c_.name = "everything, layer 0 of 2"; c_.E = 60; c_.T = 9; c_.top_k = 4; c_.slots = 6;
    c_.renormalize = true; c_.n_moe_layers = 2; c_.moe_ordinal = 0;
  });
  run_case(c);
}

// Decode: route_decode (the router's projection and the routing in one kernel, routing in the last
// block to finish) gives bit for bit what linear_decode followed by route gives, for the logits, the
// selection, the weights and every record array; twice on one counter, which each launch leaves at 0.
TEST(Router, DecodeWithItsProjectionInOneKernel) {
  MOE_REQUIRE_GPU();
  const std::pair<Case, DType> cases[] = {
      {make_case([](Case& c_) {
         c_.name = "qwen3-like E=128 k=8, BF16"; c_.E = 128; c_.top_k = 8; c_.slots = 8; c_.renormalize = true;
       }),
       DType::BF16},
      {make_case([](Case& c_) {
         c_.name = "E=60 k=4 slots=6, sigmoid, biases, masks, forced, F32"; c_.E = 60; c_.top_k = 4; c_.slots = 6;
         c_.softmax = false; c_.renormalize = true; c_.selection_bias = true; c_.user_bias = true;
         c_.masked = {3, 17}; c_.forced = {41};
       }),
       DType::F32},
      {make_case([](Case& c_) {
         c_.name = "E=32 k=4 (gpt-oss-like: a bias on the logits), BF16"; c_.E = 32; c_.top_k = 4; c_.slots = 4;
         c_.renormalize = true; c_.logit_bias = true;
       }),
       DType::BF16},
      {make_case([](Case& c_) {
         c_.name = "E=8 k=2 (mixtral-like), F16"; c_.E = 8; c_.top_k = 2; c_.slots = 2; c_.renormalize = true;
       }),
       DType::F16},
  };
  const int H = 264;  // not a multiple of the 16-bit chunk times 32 lanes: a partial last pass
  for (const auto& [c, dtype] : cases) {
    SCOPED_TRACE(c.name);
    const int E = c.E, S = c.slots;
    std::vector<float> w = test::random_floats(size_t(E) * H, 61u, 0.2f);
    const std::vector<uint8_t> bytes = test::stored_as(dtype, w);
    DeviceVector<uint8_t> d_wm(bytes);
    DeviceVector<float> d_x(test::random_floats(size_t(H), 62u, 1.0f));
    const DeviceMatrix W{d_wm.get(), dtype, E, H};
    DeviceVector<float> d_sel_bias(test::random_floats(size_t(E), 63u, 0.05f));
    DeviceVector<float> d_user_bias(test::random_floats(size_t(E), 64u, 1.0f));
    DeviceVector<float> d_logit_bias(test::random_floats(size_t(E), 65u, 2.0f));
    DeviceVector<int32_t> d_masked(c.masked), d_forced(c.forced);
    const RouterParams p = params_of(c, d_sel_bias, d_user_bias, d_masked, d_forced, d_logit_bias);

    // Everything one routing writes, as downloaded host arrays.
    struct Outputs {
      DeviceVector<float> logits, weights, rec_weights, entropy, margin, probs;
      DeviceVector<int32_t> selected, rec_ids;
      explicit Outputs(int E_, int S_)
          : logits(size_t(E_)), weights(size_t(S_)), rec_weights(size_t(S_)), entropy(1), margin(1),
            probs(size_t(E_)), selected(size_t(S_)), rec_ids(size_t(S_)) {}
      RoutingOutput routing() {
        RoutingOutput o;
        o.selected = selected.get();
        o.weights = weights.get();
        o.n_moe_layers = 1;
        o.rec_ids = rec_ids.get();
        o.rec_weights = rec_weights.get();
        o.rec_entropy = entropy.get();
        o.rec_margin = margin.get();
        o.rec_probs = probs.get();
        return o;
      }
      void expect_same_as(const Outputs& o) const {
        EXPECT_EQ(logits.download(), o.logits.download()) << "logits";
        EXPECT_EQ(selected.download(), o.selected.download()) << "selected";
        EXPECT_EQ(weights.download(), o.weights.download()) << "weights";
        EXPECT_EQ(rec_ids.download(), o.rec_ids.download()) << "record ids";
        EXPECT_EQ(rec_weights.download(), o.rec_weights.download()) << "record weights";
        EXPECT_EQ(entropy.download(), o.entropy.download()) << "entropy";
        EXPECT_EQ(margin.download(), o.margin.download()) << "margin";
        EXPECT_EQ(probs.download(), o.probs.download()) << "probs";
      }
    };
    Outputs two(E, S);
    linear_decode(W, d_x.get(), two.logits.get(), false, nullptr);
    route(two.logits.get(), 1, p, two.routing(), nullptr);
    DeviceVector<unsigned> d_counter(std::vector<unsigned>{0u});
    for (int run = 0; run < 2; ++run) {
      SCOPED_TRACE("launch " + std::to_string(run + 1));
      Outputs one(E, S);
      route_decode(W, d_x.get(), one.logits.get(), p, one.routing(), d_counter.get(), nullptr);
      one.expect_same_as(two);
      EXPECT_EQ(d_counter.download()[0], 0u);
    }
  }
}

}  // namespace
}  // namespace moe::cuda
