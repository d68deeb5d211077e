#pragma once
// The online softmax of one attention row, or of a slice of its keys, shared by the attention kernels
// (attention.cu) and the host tests (tests/engine/online_softmax_test.cpp). Plain scalar C++: no CUDA
// header, so the host test builds and runs without the toolkit.
//
// State over the scores s_j pushed so far, relative to a reference m (always the largest score seen):
//   S = Σ e^(s_j − m)          the softmax denominator
//   B = Σ e^(s_j − m)(s_j − m) for the entropy: with w_j = e^(s_j − m) / S, −Σ w log w = log S − B / S
// Moving the reference to m' ≥ m (d = m − m' ≤ 0): e^(s − m') = e^(s − m)·e^d and s − m' = (s − m) + d, so
//   S' = S·e^d,   B' = e^d·(B + d·S),
// and any running Σ e^(s_j − m)·v_j (the attention values) is multiplied by the same e^d. Two slices
// merge by moving both to the larger reference and adding. With the top-k list (the k largest raw
// scores) and key 0's score the state gives every statistic of attention.cuh:
//   entropy = log S − B / S (≥ 0), max weight = 1 / S, first mass = e^(s_0 − m) / S,
//   top-k mass = Σ_{top k} e^(s_i − m) / S (exactly 1 when n_keys ≤ k; at most 1).
// Scores must be finite (q·k of finite vectors).
//
// An attention sink (GPT-OSS) is a per-head logit that joins the denominator and weighs no value: the
// weights become w_j = e^(s_j − r) / Z with Z = Σ e^(s_j − r) + e^(sink − r), and sum to less than 1.
// The statistics below take it as `sink` (−inf: none, the formulas above exactly). They move the sums
// to the reference r = max(m, sink) first, so neither e^(sink − m) nor the sums overflow:
//   entropy = (S_r / Z) log Z − B_r / Z,  max weight = e^(m − r) / Z,  first mass = e^(s_0 − r) / Z,
//   top-k mass = Σ_{top k} e^(s_i − r) / Z (S_r / Z when n_keys ≤ k),
// where S_r, B_r are S and B moved to r (softmax_rescale). They describe the weights as the model uses
// them, as the CPU backend's record_attention does.
#include <cmath>

#ifndef MOE_HD
#ifdef __CUDACC__
#define MOE_HD __host__ __device__
#else
#define MOE_HD
#endif
#endif

namespace moe::cuda {

// Capacity of the top-k list; attention.cu checks it equals kMaxStatsTopK (attention.cuh, which this
// header does not include so that it stays free of CUDA headers).
constexpr int kOnlineSoftmaxTopK = 32;

// m, S, B of a row or slice. Empty: m = −inf (S = B = 0).
struct SoftmaxSums {
  float m;
  float S;
  float B;
};

MOE_HD inline SoftmaxSums softmax_empty() { return SoftmaxSums{-INFINITY, 0.0f, 0.0f}; }

// Moves the reference of `a` to m_new (≥ a.m) and returns the factor e^(a.m − m_new) that S was
// multiplied by (the same factor rescales a running value sum). An empty state takes m_new and
// returns 0 (its value sum is zero anyway).
MOE_HD inline float softmax_rescale(SoftmaxSums& a, float m_new) {
  if (a.m == -INFINITY) {
    a.m = m_new;
    a.S = 0.0f;
    a.B = 0.0f;
    return 0.0f;
  }
  const float d = a.m - m_new;
  const float f = expf(d);
  a.B = f * (a.B + d * a.S);
  a.S *= f;
  a.m = m_new;
  return f;
}

// a ← a ∪ b. fa, fb: the factors a's and b's value sums are multiplied by before they are added
// (merged values = values_a·fa + values_b·fb). Either side may be empty.
MOE_HD inline void softmax_merge(SoftmaxSums& a, SoftmaxSums b, float& fa, float& fb) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) {  // both empty
    fa = 1.0f;
    fb = 0.0f;
    return;
  }
  fa = softmax_rescale(a, m);
  fb = softmax_rescale(b, m);
  a.S += b.S;
  a.B += b.B;
}

// One more key with (finite) score s.
MOE_HD inline void softmax_push(SoftmaxSums& a, float s) {
  if (s > a.m) softmax_rescale(a, s);
  const float x = s - a.m;
  const float e = expf(x);
  a.S += e;
  a.B += e * x;
}

// A finished, non-empty row's sums moved to the reference r = max(m, sink), and the denominator Z.
struct SoftmaxTotals {
  SoftmaxSums at_r;  // S_r and B_r, reference r
  double Z;
};
MOE_HD inline SoftmaxTotals softmax_totals(const SoftmaxSums& a, float sink) {
  SoftmaxTotals t{a, 0.0};
  softmax_rescale(t.at_r, fmaxf(a.m, sink));  // no change without a sink (a factor of exactly 1)
  t.Z = double(t.at_r.S) + double(expf(sink - t.at_r.m));
  return t;
}

// The softmax denominator relative to m itself, for the outputs: Σ e^(s_j − m) v_j divided by it.
// e^(sink − m) may overflow to inf where the sink outweighs every key by e^88: the outputs are then 0,
// as they are to F32 precision.
MOE_HD inline float softmax_denominator(const SoftmaxSums& a, float sink) { return a.S + expf(sink - a.m); }

// The statistics of a finished, non-empty row (m its largest score), with an optional sink.
MOE_HD inline float softmax_entropy(const SoftmaxSums& a, float sink = -INFINITY) {
  const SoftmaxTotals t = softmax_totals(a, sink);
  const double e = double(t.at_r.S) / t.Z * log(t.Z) - double(t.at_r.B) / t.Z;
  return float(e > 0.0 ? e : 0.0);  // rounding can leave −1e-7 for a one-hot row
}
MOE_HD inline float softmax_max_weight(const SoftmaxSums& a, float sink = -INFINITY) {
  const SoftmaxTotals t = softmax_totals(a, sink);
  return float(double(expf(a.m - t.at_r.m)) / t.Z);
}
// The weight of a key with score s (first mass: s = s_0; −inf: a key outside the row, weight 0).
MOE_HD inline float softmax_weight(const SoftmaxSums& a, float s, float sink = -INFINITY) {
  const SoftmaxTotals t = softmax_totals(a, sink);
  return float(double(expf(s - t.at_r.m)) / t.Z);
}
// Top-k mass from sum_top = Σ e^(s_i − m) over the k largest scores.
MOE_HD inline float softmax_topk_mass(const SoftmaxSums& a, float sum_top, int n_keys, int k, float sink = -INFINITY) {
  const SoftmaxTotals t = softmax_totals(a, sink);
  if (n_keys <= k) return float(double(t.at_r.S) / t.Z);  // every key: 1 without a sink
  return fminf(float(double(sum_top) * double(expf(a.m - t.at_r.m)) / t.Z), 1.0f);
}

// The k largest raw scores seen, descending (v[0 … n)); k ≤ kOnlineSoftmaxTopK.
struct TopKScores {
  int n;
  float v[kOnlineSoftmaxTopK];
};

MOE_HD inline void topk_clear(TopKScores& t) { t.n = 0; }

MOE_HD inline void topk_push(TopKScores& t, int k, float s) {
  if (k <= 0) return;
  int i;
  if (t.n < k) {
    i = t.n++;
  } else {
    if (!(s > t.v[k - 1])) return;  // a tie with the k-th changes no sum
    i = k - 1;
  }
  while (i > 0 && t.v[i - 1] < s) {
    t.v[i] = t.v[i - 1];
    --i;
  }
  t.v[i] = s;
}

// a ← the k largest of a ∪ b (both sorted descending).
MOE_HD inline void topk_merge(TopKScores& a, const TopKScores& b, int k) {
  float merged[kOnlineSoftmaxTopK];
  int i = 0, j = 0, n = 0;
  while (n < k && (i < a.n || j < b.n)) {
    if (j >= b.n || (i < a.n && a.v[i] >= b.v[j]))
      merged[n++] = a.v[i++];
    else
      merged[n++] = b.v[j++];
  }
  for (int c = 0; c < n; ++c) a.v[c] = merged[c];
  a.n = n;
}

// Σ e^(v_i − m) over the list.
MOE_HD inline float topk_sum_exp(const TopKScores& t, float m) {
  float s = 0.0f;
  for (int i = 0; i < t.n; ++i) s += expf(t.v[i] - m);
  return s;
}

// The whole state of a row or slice: sums, key 0's score (−inf where the slice does not hold key 0),
// the number of keys and the top-k list (k = 0: none kept).
struct OnlineSoftmax {
  SoftmaxSums sums;
  float first;
  int n_keys;
  int k;
  TopKScores top;

  MOE_HD explicit OnlineSoftmax(int topk = 0)
      : sums(softmax_empty()), first(-INFINITY), n_keys(0), k(topk < 0 ? 0 : (topk > kOnlineSoftmaxTopK ? kOnlineSoftmaxTopK : topk)) {
    topk_clear(top);
  }

  // The next key's score; key0: it is key 0 of the row.
  MOE_HD void push(float s, bool key0 = false) {
    softmax_push(sums, s);
    if (key0) first = s;
    ++n_keys;
    topk_push(top, k, s);
  }

  // this ← this ∪ o (both keep the same k). The factors as in softmax_merge.
  MOE_HD void merge(const OnlineSoftmax& o, float* f_self = nullptr, float* f_other = nullptr) {
    float fa, fb;
    softmax_merge(sums, o.sums, fa, fb);
    if (first == -INFINITY) first = o.first;
    n_keys += o.n_keys;
    topk_merge(top, o.top, k);
    if (f_self) *f_self = fa;
    if (f_other) *f_other = fb;
  }

  // The statistics, with the row's sink logit (−inf: none).
  MOE_HD float entropy(float sink = -INFINITY) const { return softmax_entropy(sums, sink); }
  MOE_HD float max_weight(float sink = -INFINITY) const { return softmax_max_weight(sums, sink); }
  MOE_HD float first_mass(float sink = -INFINITY) const { return softmax_weight(sums, first, sink); }
  MOE_HD float topk_mass(float sink = -INFINITY) const {
    return softmax_topk_mass(sums, topk_sum_exp(top, sums.m), n_keys, k, sink);
  }
};

}  // namespace moe::cuda
