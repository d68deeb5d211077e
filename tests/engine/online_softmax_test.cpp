// The online-softmax state the attention kernels share with the host (engine/backend/cuda/kernels/
// online_softmax.h): pushing scores one at a time, merging slices split anywhere (and in any order),
// rescaling when the max moves, and the four attention statistics against a direct two-pass
// computation in double — random rows, peaked rows, one-key rows, ties. Pure C++: runs without CUDA.
#include "engine/backend/cuda/kernels/online_softmax.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

namespace moe::cuda {
namespace {

// The statistics of attention.cuh, computed directly: max, weights, −Σ w log w, sorted weights.
struct Reference {
  double entropy = 0, max_weight = 0, first_mass = 0, topk_mass = 0;
  double m = 0, S = 0, B = 0;  // the sums at the row's max, for the state itself
};

Reference reference(const std::vector<float>& s, int topk) {
  Reference r;
  const int n = int(s.size());
  double m = -INFINITY;
  for (float x : s) m = std::max(m, double(x));
  double S = 0, B = 0;
  for (float x : s) {
    const double e = std::exp(double(x) - m);
    S += e;
    B += e * (double(x) - m);
  }
  std::vector<double> w(size_t(n), 0.0);
  double ent = 0;
  for (int j = 0; j < n; ++j) {
    w[size_t(j)] = std::exp(double(s[size_t(j)]) - m) / S;
    if (w[size_t(j)] > 0) ent -= w[size_t(j)] * std::log(w[size_t(j)]);
  }
  r.m = m;
  r.S = S;
  r.B = B;
  r.entropy = std::max(ent, 0.0);
  r.max_weight = *std::max_element(w.begin(), w.end());
  r.first_mass = w[0];
  const int k = std::min(n, std::max(1, topk));
  if (k == n) {
    r.topk_mass = 1.0;
  } else {
    std::sort(w.begin(), w.end(), std::greater<double>());
    r.topk_mass = std::min(1.0, std::accumulate(w.begin(), w.begin() + k, 0.0));
  }
  return r;
}

// F32 sums over up to a few thousand keys: relative error ~1e-6; the entropy (log S − B/S, both O(1)
// to O(10)) to a few 1e-6 absolute. The bounds leave a margin of ~10.
void expect_stats(const OnlineSoftmax& st, const Reference& r, const char* where) {
  SCOPED_TRACE(where);
  EXPECT_NEAR(st.sums.m, r.m, 0.0);
  EXPECT_NEAR(st.sums.S, r.S, 1e-5 * r.S);
  EXPECT_NEAR(st.sums.B, r.B, 1e-5 * std::abs(r.B) + 1e-6 * r.S);
  EXPECT_NEAR(st.entropy(), r.entropy, 2e-5 + 1e-5 * r.entropy);
  EXPECT_GE(st.entropy(), 0.0f);
  EXPECT_NEAR(st.max_weight(), r.max_weight, 1e-5 * r.max_weight);
  EXPECT_NEAR(st.first_mass(), r.first_mass, 1e-5 * r.first_mass + 1e-12);
  EXPECT_NEAR(st.topk_mass(), r.topk_mass, 1e-5 * r.topk_mass);
  EXPECT_LE(st.topk_mass(), 1.0f);
}

std::vector<float> random_row(int n, uint32_t seed, float spread) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, spread);
  std::vector<float> s(static_cast<size_t>(n));
  for (auto& x : s) x = d(rng);
  return s;
}

OnlineSoftmax push_all(const std::vector<float>& s, int topk, int begin = 0, int end = -1) {
  if (end < 0) end = int(s.size());
  OnlineSoftmax st(topk);
  for (int j = begin; j < end; ++j) st.push(s[size_t(j)], j == 0);
  return st;
}

TEST(OnlineSoftmax, SequentialPushMatchesTwoPass) {
  for (int n : {1, 2, 7, 33, 300, 4097})
    for (float spread : {0.3f, 2.0f, 8.0f})
      for (int topk : {1, 8, 32}) {
        const auto s = random_row(n, uint32_t(n * 131 + topk), spread);
        const OnlineSoftmax st = push_all(s, topk);
        EXPECT_EQ(st.n_keys, n);
        expect_stats(st, reference(s, topk), ("n=" + std::to_string(n) + " spread=" + std::to_string(spread) +
                                              " k=" + std::to_string(topk)).c_str());
      }
}

// Scores rising key by key: every push moves the max, so S and B are rescaled each time.
TEST(OnlineSoftmax, RescalesWhenTheMaxMoves) {
  for (float step : {0.01f, 0.5f, 3.0f}) {
    std::vector<float> s(200);
    for (size_t j = 0; j < s.size(); ++j) s[j] = -5.0f + step * float(j);
    expect_stats(push_all(s, 8), reference(s, 8), ("rising step " + std::to_string(step)).c_str());
    std::reverse(s.begin(), s.end());  // falling: the max never moves
    expect_stats(push_all(s, 8), reference(s, 8), ("falling step " + std::to_string(step)).c_str());
  }
  // softmax_rescale by hand: S' = S·e^d, B' = e^d·(B + d·S), the factor returned.
  SoftmaxSums a = softmax_empty();
  softmax_push(a, 1.0f);
  softmax_push(a, 0.0f);
  const float S = a.S, B = a.B;
  const float f = softmax_rescale(a, 3.0f);
  EXPECT_FLOAT_EQ(f, std::exp(-2.0f));
  EXPECT_FLOAT_EQ(a.S, S * f);
  EXPECT_FLOAT_EQ(a.B, f * (B - 2.0f * S));
  EXPECT_EQ(a.m, 3.0f);
  // An empty state takes the new reference and factor 0.
  SoftmaxSums e = softmax_empty();
  EXPECT_EQ(softmax_rescale(e, 2.0f), 0.0f);
  EXPECT_EQ(e.m, 2.0f);
  EXPECT_EQ(e.S, 0.0f);
}

// Weighted value sums of a slice relative to its own max (the split kernel's accumulator).
std::vector<double> slice_values(const std::vector<float>& s, const std::vector<float>& v, int dim, int begin, int end,
                                 float m) {
  std::vector<double> acc(size_t(dim), 0.0);
  for (int j = begin; j < end; ++j) {
    const double e = std::exp(double(s[size_t(j)]) - double(m));
    for (int d = 0; d < dim; ++d) acc[size_t(d)] += e * double(v[size_t(j) * size_t(dim) + size_t(d)]);
  }
  return acc;
}

// Cut the row into slices at random points (empty and one-key slices included), fold each slice on
// its own, merge them in order, backwards and as a tree: the same state, and the attention values
// rescaled with the returned factors match the direct weighted sum.
TEST(OnlineSoftmax, MergeOfSlicesInAnySplit) {
  std::mt19937 rng(7);
  const int dim = 5;
  for (int trial = 0; trial < 60; ++trial) {
    const int n = 1 + int(rng() % 600);
    const float spread = trial % 3 == 0 ? 0.5f : (trial % 3 == 1 ? 3.0f : 12.0f);
    const int topk = 1 + int(rng() % 32);
    const auto s = random_row(n, uint32_t(1000 + trial), spread);
    std::vector<float> v(size_t(n) * dim);
    std::uniform_real_distribution<float> uv(-1.0f, 1.0f);
    for (auto& x : v) x = uv(rng);

    const int n_slices = 1 + int(rng() % 12);
    std::vector<int> cuts{0, n};
    for (int c = 1; c < n_slices; ++c) cuts.push_back(int(rng() % uint32_t(n + 1)));
    std::sort(cuts.begin(), cuts.end());  // repeated cuts: empty slices

    std::vector<OnlineSoftmax> parts;
    std::vector<std::vector<double>> values;
    for (size_t c = 0; c + 1 < cuts.size(); ++c) {
      parts.push_back(push_all(s, topk, cuts[c], cuts[c + 1]));
      values.push_back(slice_values(s, v, dim, cuts[c], cuts[c + 1], parts.back().sums.m));
    }
    const Reference ref = reference(s, topk);
    std::vector<double> direct(size_t(dim), 0.0);
    for (int j = 0; j < n; ++j)
      for (int d = 0; d < dim; ++d)
        direct[size_t(d)] += std::exp(double(s[size_t(j)]) - ref.m) / ref.S * double(v[size_t(j) * dim + size_t(d)]);

    auto check_values = [&](const OnlineSoftmax& st, const std::vector<double>& acc, const char* how) {
      SCOPED_TRACE(how);
      for (int d = 0; d < dim; ++d) EXPECT_NEAR(acc[size_t(d)] / double(st.sums.S), direct[size_t(d)], 1e-5);
    };
    auto fold = [&](OnlineSoftmax& st, std::vector<double>& acc, size_t i) {
      float fa, fb;
      st.merge(parts[i], &fa, &fb);
      for (int d = 0; d < dim; ++d) acc[size_t(d)] = acc[size_t(d)] * fa + values[i][size_t(d)] * fb;
    };

    {  // in order
      OnlineSoftmax st(topk);
      std::vector<double> acc(size_t(dim), 0.0);
      for (size_t i = 0; i < parts.size(); ++i) fold(st, acc, i);
      EXPECT_EQ(st.n_keys, n);
      expect_stats(st, ref, "in order");
      check_values(st, acc, "in order");
    }
    {  // backwards
      OnlineSoftmax st(topk);
      std::vector<double> acc(size_t(dim), 0.0);
      for (size_t i = parts.size(); i-- > 0;) fold(st, acc, i);
      expect_stats(st, ref, "backwards");
      check_values(st, acc, "backwards");
    }
    {  // pairwise tree, as a warp reduction would
      std::vector<OnlineSoftmax> level = parts;
      std::vector<std::vector<double>> vals = values;
      while (level.size() > 1) {
        std::vector<OnlineSoftmax> next;
        std::vector<std::vector<double>> next_vals;
        for (size_t i = 0; i < level.size(); i += 2) {
          if (i + 1 == level.size()) {
            next.push_back(level[i]);
            next_vals.push_back(vals[i]);
            continue;
          }
          OnlineSoftmax a = level[i];
          float fa, fb;
          a.merge(level[i + 1], &fa, &fb);
          std::vector<double> acc(static_cast<size_t>(dim));
          for (int d = 0; d < dim; ++d) acc[size_t(d)] = vals[i][size_t(d)] * fa + vals[i + 1][size_t(d)] * fb;
          next.push_back(a);
          next_vals.push_back(acc);
        }
        level.swap(next);
        vals.swap(next_vals);
      }
      expect_stats(level[0], ref, "tree");
      check_values(level[0], vals[0], "tree");
    }
    {  // every slice moved to the global max and added (the decode merge kernel's order of work)
      SoftmaxSums total = softmax_empty();
      float M = -INFINITY;
      for (const auto& p : parts) M = std::max(M, p.sums.m);
      total.m = M;
      std::vector<double> acc(size_t(dim), 0.0);
      for (size_t i = 0; i < parts.size(); ++i) {
        SoftmaxSums a = parts[i].sums;
        const float f = softmax_rescale(a, M);
        total.S += a.S;
        total.B += a.B;
        for (int d = 0; d < dim; ++d) acc[size_t(d)] += values[i][size_t(d)] * f;
      }
      EXPECT_NEAR(total.S, ref.S, 1e-5 * ref.S);
      EXPECT_NEAR(softmax_entropy(total), ref.entropy, 2e-5 + 1e-5 * ref.entropy);
      for (int d = 0; d < dim; ++d) EXPECT_NEAR(acc[size_t(d)] / double(total.S), direct[size_t(d)], 1e-5);
    }
  }
}

TEST(OnlineSoftmax, MergeWithEmptyStates) {
  const auto s = random_row(50, 3, 2.0f);
  const OnlineSoftmax full = push_all(s, 8);
  OnlineSoftmax a(8);
  float fa = -1, fb = -1;
  a.merge(full, &fa, &fb);  // empty ∪ full
  EXPECT_EQ(fa, 0.0f);
  EXPECT_EQ(fb, 1.0f);
  expect_stats(a, reference(s, 8), "empty first");
  a.merge(OnlineSoftmax(8), &fa, &fb);  // full ∪ empty
  EXPECT_EQ(fa, 1.0f);
  EXPECT_EQ(fb, 0.0f);
  expect_stats(a, reference(s, 8), "empty second");
  SoftmaxSums e1 = softmax_empty();
  softmax_merge(e1, softmax_empty(), fa, fb);  // both empty
  EXPECT_EQ(e1.m, -INFINITY);
  EXPECT_EQ(e1.S, 0.0f);
}

// One key dominates: entropy ~0 (never negative), max and top-k mass ~1.
TEST(OnlineSoftmax, PeakedRows) {
  for (float peak : {10.0f, 30.0f, 80.0f, 200.0f})
    for (int at : {0, 17, 99}) {
      auto s = random_row(100, uint32_t(at + 5), 1.0f);
      s[size_t(at)] += peak;
      const OnlineSoftmax st = push_all(s, 8);
      const Reference r = reference(s, 8);
      expect_stats(st, r, ("peak " + std::to_string(peak) + " at " + std::to_string(at)).c_str());
      if (peak >= 80.0f) {  // the other weights are below e^-70: one-hot in F32
        EXPECT_LT(st.entropy(), 1e-6f);
        EXPECT_EQ(st.max_weight(), 1.0f);
        EXPECT_EQ(st.topk_mass(), 1.0f);
      }
    }
}

TEST(OnlineSoftmax, OneKeyRows) {
  for (float score : {-50.0f, 0.0f, 3.5f, 1e4f})
    for (int topk : {1, 8, 32}) {
      const OnlineSoftmax st = push_all({score}, topk);
      EXPECT_EQ(st.entropy(), 0.0f);
      EXPECT_EQ(st.max_weight(), 1.0f);
      EXPECT_EQ(st.first_mass(), 1.0f);
      EXPECT_EQ(st.topk_mass(), 1.0f);
    }
}

// Equal scores: entropy log n, every weight 1/n, top-k mass k/n; ties at the k-th place.
TEST(OnlineSoftmax, Ties) {
  for (int n : {2, 8, 9, 33, 1000}) {
    const std::vector<float> s(size_t(n), 1.25f);
    for (int topk : {1, 8, 32}) {
      const OnlineSoftmax st = push_all(s, topk);
      EXPECT_NEAR(st.entropy(), std::log(double(n)), 1e-5 * std::log(double(n)));
      EXPECT_NEAR(st.max_weight(), 1.0 / n, 1e-6 / n);
      EXPECT_NEAR(st.first_mass(), 1.0 / n, 1e-6 / n);
      const double mass = n <= topk ? 1.0 : double(topk) / n;
      EXPECT_NEAR(st.topk_mass(), mass, 1e-5 * mass);
    }
  }
  // Two levels with ties straddling the k-th place, pushed in a scrambled order.
  std::vector<float> s;
  for (int i = 0; i < 5; ++i) s.push_back(2.0f);
  for (int i = 0; i < 20; ++i) s.push_back(1.0f);
  for (int i = 0; i < 20; ++i) s.push_back(-1.0f);
  std::shuffle(s.begin() + 1, s.end(), std::mt19937(11));
  for (int topk : {3, 5, 8, 25, 32}) expect_stats(push_all(s, topk), reference(s, topk), ("ties k=" + std::to_string(topk)).c_str());
}

// An attention sink (GPT-OSS): a logit in the denominator that weighs no value. The statistics describe
// the weights as they are, summing to less than 1, against a direct computation in double, for sinks
// well below, among and far above the scores (e^(sink − m) beyond F32's range: the weights go to 0, with
// no inf or NaN).
TEST(OnlineSoftmax, SinksJoinTheDenominator) {
  for (float sink : {-30.0f, -1.0f, 0.5f, 4.0f, 95.0f, 200.0f})
    for (int n : {1, 5, 40, 700})
      for (int topk : {1, 8, 32}) {
        const auto s = random_row(n, uint32_t(n + topk), 1.5f);
        const OnlineSoftmax st = push_all(s, topk);
        double m = double(sink);
        for (float x : s) m = std::max(m, double(x));
        std::vector<double> w;
        double Z = std::exp(double(sink) - m);
        for (float x : s) Z += std::exp(double(x) - m);
        double entropy = 0, total = 0;
        for (float x : s) {
          w.push_back(std::exp(double(x) - m) / Z);
          total += w.back();
          if (w.back() > 0) entropy -= w.back() * std::log(w.back());
        }
        std::vector<double> sorted = w;
        std::sort(sorted.begin(), sorted.end(), std::greater<double>());
        const double top = std::accumulate(sorted.begin(), sorted.begin() + std::min(n, topk), 0.0);
        SCOPED_TRACE("sink " + std::to_string(sink) + " n " + std::to_string(n) + " k " + std::to_string(topk));
        EXPECT_NEAR(st.entropy(sink), entropy, 2e-5 + 1e-5 * entropy);
        EXPECT_GE(st.entropy(sink), 0.0f);
        EXPECT_NEAR(st.max_weight(sink), sorted[0], 1e-5 * sorted[0] + 1e-30);
        EXPECT_NEAR(st.first_mass(sink), w[0], 1e-5 * w[0] + 1e-30);
        EXPECT_NEAR(st.topk_mass(sink), top, 1e-5 * top + 1e-30);
        EXPECT_LE(st.topk_mass(sink), float(total) * (1 + 1e-6f) + 1e-30f);
        const double inv = std::exp(st.sums.m - m) / Z;  // 1 / the denominator relative to the keys' max
        EXPECT_NEAR(1.0 / softmax_denominator(st.sums, sink), inv, 1e-5 * inv + 1e-30);
        if (sink < -20.0f) {  // a sink far below every score: the statistics of no sink, to F32 precision
          EXPECT_NEAR(st.entropy(sink), st.entropy(), 1e-6);
          EXPECT_FLOAT_EQ(st.topk_mass(sink), st.topk_mass());
        }
      }
}

// The list itself: the k largest scores in descending order, whatever the push or merge order.
TEST(OnlineSoftmax, TopKListKeepsTheLargest) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 1 + int(rng() % 200);
    const int k = 1 + int(rng() % 32);
    std::vector<float> s(static_cast<size_t>(n));
    for (auto& x : s) x = float(int(rng() % 40)) * 0.5f;  // many ties
    TopKScores a, b, all;
    topk_clear(a);
    topk_clear(b);
    topk_clear(all);
    const int cut = int(rng() % uint32_t(n + 1));
    for (int j = 0; j < n; ++j) {
      topk_push(all, k, s[size_t(j)]);
      topk_push(j < cut ? a : b, k, s[size_t(j)]);
    }
    topk_merge(a, b, k);
    std::vector<float> sorted = s;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    const int kept = std::min(n, k);
    ASSERT_EQ(all.n, kept);
    ASSERT_EQ(a.n, kept);
    for (int i = 0; i < kept; ++i) {
      EXPECT_EQ(all.v[i], sorted[size_t(i)]);
      EXPECT_EQ(a.v[i], sorted[size_t(i)]);
    }
  }
}

}  // namespace
}  // namespace moe::cuda
