// Attention kernels (engine/backend/cuda/kernels/attention.cu) against a double-precision reference
// written here, with the CPU backend's semantics (attention_block + record_attention): s_j = (q_h ·
// k_{j,kvh}) · scale, kvh = h / (nh / nkv), softmax over keys 0 … pos, out = Σ w_j v_j, and the
// statistics entropy = −Σ w log w, max weight, w_0, top-k mass (1 when n_keys ≤ k).
//
// Inputs are uniform: q in [−2, 2] (scores of std ~0.7, a mildly peaked softmax), k and v in [−1, 1];
// BF16 caches are rounded on the host first, and the reference reads the rounded values, so both
// dtypes have the same tolerances. Why the tolerances: a score is an F32 dot product of ≤ 256 terms
// (absolute error ~1e-7 after the scale), the softmax sums and the weighted values are F32 sums of
// ≤ 4097 terms (relative error ~1e-6), so outputs (|out| ≤ 1) are within ~2e-7 absolute and the
// statistics within ~1e-6 relative. The bounds below (5e-6 absolute + 1e-5 relative for outputs,
// 2e-5 absolute + 1e-5 relative for the entropy, 2e-5 relative for the masses and weights) leave a
// margin of ~10–25.
#include "engine/backend/cuda/kernels/attention.cuh"
#include "engine/backend/cuda/kernels/attention_latent.cuh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/common/dtype.h"
#include "tests/cuda/gpu_test_support.h"

namespace moe::cuda {
namespace {

using test::DeviceVector;
using test::random_floats;

constexpr double kOutAbs = 5e-6, kOutRel = 1e-5;
constexpr double kEntAbs = 2e-5, kEntRel = 1e-5;
constexpr double kMassRel = 2e-5;

struct Heads {
  int nh, nkv, hd;
};

std::string name(const Heads& s, DType dt) {
  return "nh=" + std::to_string(s.nh) + " nkv=" + std::to_string(s.nkv) + " hd=" + std::to_string(s.hd) + " " +
         (dt == DType::BF16 ? "bf16" : "f32");
}

AttentionShape make_shape(const Heads& s, int capacity, DType dt) {
  AttentionShape a;
  a.n_heads = s.nh;
  a.n_kv_heads = s.nkv;
  a.head_dim = s.hd;
  a.capacity = capacity;
  a.kv_dtype = dt;
  a.scale = 1.0f / std::sqrt(float(s.hd));
  return a;
}

// A cache of `rows` rows of nkv·hd values: the bytes the kernel reads and the values they hold.
struct HostCache {
  std::vector<float> values;
  std::vector<uint8_t> bytes;
};

HostCache make_cache(size_t n, DType dt, uint32_t seed) {
  HostCache c;
  c.values = random_floats(n, seed);
  if (dt == DType::BF16) {
    c.bytes.resize(n * 2);
    for (size_t i = 0; i < n; ++i) {
      const uint16_t b = f32_to_bf16(c.values[i]);
      c.values[i] = bf16_to_f32(b);
      std::memcpy(&c.bytes[i * 2], &b, 2);
    }
  } else {
    c.bytes.resize(n * 4);
    std::memcpy(c.bytes.data(), c.values.data(), n * 4);
  }
  return c;
}

struct RowRef {
  std::vector<double> out;  // [hd]
  std::vector<double> w;    // [n_keys]
  double entropy = 0, max_weight = 0, first_mass = 0;
  // The k largest weights' sum (every weight when k ≥ the keys seen: 1, or less with a sink).
  double topk_mass(int topk) const {
    const int n = int(w.size());
    const int k = std::min(n, std::max(1, topk));
    std::vector<double> s = w;
    std::partial_sort(s.begin(), s.begin() + k, s.end(), std::greater<double>());
    double m = 0;
    for (int i = 0; i < k; ++i) m += s[size_t(i)];
    return std::min(m, 1.0);
  }
};

// Head h of query q (its hd values) over keys 0 … n_keys − 1; with a sliding window (> 0) over the last
// `window` of them only (the weights before are 0), and with a sink logit in the denominator (GPT-OSS).
RowRef reference_row(const float* q, const HostCache& K, const HostCache& V, const Heads& s, int h, int n_keys,
                     float scale, int window = 0, double sink = -INFINITY) {
  const int kvh = h / (s.nh / s.nkv);
  const size_t kvd = size_t(s.nkv) * size_t(s.hd);
  const int first = window > 0 ? std::max(0, n_keys - window) : 0;
  std::vector<double> sc(static_cast<size_t>(n_keys), -INFINITY);
  double m = sink;
  for (int j = first; j < n_keys; ++j) {
    const float* k = &K.values[size_t(j) * kvd + size_t(kvh) * size_t(s.hd)];
    double d = 0;
    for (int i = 0; i < s.hd; ++i) d += double(q[i]) * double(k[i]);
    sc[size_t(j)] = d * double(scale);
    m = std::max(m, sc[size_t(j)]);
  }
  RowRef r;
  r.w.assign(size_t(n_keys), 0.0);
  double S = std::exp(sink - m);
  for (int j = first; j < n_keys; ++j) S += std::exp(sc[size_t(j)] - m);
  r.out.assign(size_t(s.hd), 0.0);
  for (int j = first; j < n_keys; ++j) {
    const double w = std::exp(sc[size_t(j)] - m) / S;
    r.w[size_t(j)] = w;
    if (w > 0) r.entropy -= w * std::log(w);
    r.max_weight = std::max(r.max_weight, w);
    const float* v = &V.values[size_t(j) * kvd + size_t(kvh) * size_t(s.hd)];
    for (int i = 0; i < s.hd; ++i) r.out[size_t(i)] += w * double(v[i]);
  }
  r.entropy = std::max(r.entropy, 0.0);
  r.first_mass = r.w[0];
  return r;
}

// Counts mismatches of got[i] against want[i] (|got − want| ≤ abs + rel·|want|), reporting the first.
void expect_close(const float* got, const double* want, size_t n, double abs_tol, double rel_tol, const std::string& what) {
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double err = std::abs(double(got[i]) - want[i]);
    if (!(err <= abs_tol + rel_tol * std::abs(want[i]))) {
      if (bad == 0)
        ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", want " << want[i] << " (error " << err << ")";
      ++bad;
    }
  }
  if (bad > 1) ADD_FAILURE() << what << ": " << bad << " of " << n << " elements out of tolerance";
}

void expect_stat(float got, double want, double abs_tol, double rel_tol, const std::string& what) {
  EXPECT_LE(std::abs(double(got) - want), abs_tol + rel_tol * std::abs(want)) << what << ": got " << got << ", want " << want;
}

// Statistics buffers laid out as a StepRecord: value (t, h) at base[t·token_stride + h], the base
// offset by a layer; everything else keeps a NaN sentinel.
struct StatsBuffers {
  static constexpr int kLayer = 1;
  int64_t token_stride;
  size_t size;
  DeviceVector<float> entropy, max_weight, topk_mass, first_mass;
  StatsBuffers(int tokens, int nh)
      : token_stride(3 * int64_t(nh)),
        size(size_t(tokens) * size_t(3 * nh)),
        entropy(size),
        max_weight(size),
        topk_mass(size),
        first_mass(size) {
    const std::vector<float> nan(size, std::numeric_limits<float>::quiet_NaN());
    for (auto* b : {&entropy, &max_weight, &topk_mass, &first_mass}) b->upload(nan);
  }
  AttentionStats view(int nh, int topk) {
    AttentionStats s;
    const size_t off = size_t(kLayer) * size_t(nh);
    s.entropy = entropy.get() + off;
    s.max_weight = max_weight.get() + off;
    s.topk_mass = topk_mass.get() + off;
    s.first_mass = first_mass.get() + off;
    s.topk = topk;
    s.token_stride = token_stride;
    return s;
  }
  // Checks (t, h) against ref and that untouched slots kept the sentinel.
  void check(int tokens, int nh, int topk, const std::function<const RowRef&(int, int)>& ref, const std::string& what) {
    const auto e = entropy.download(), mx = max_weight.download(), tk = topk_mass.download(), f = first_mass.download();
    for (int t = 0; t < tokens; ++t)
      for (int h = 0; h < nh; ++h) {
        const size_t i = size_t(t) * size_t(token_stride) + size_t(kLayer) * size_t(nh) + size_t(h);
        const RowRef& r = ref(t, h);
        const std::string at = what + " t=" + std::to_string(t) + " h=" + std::to_string(h);
        expect_stat(e[i], r.entropy, kEntAbs, kEntRel, at + " entropy");
        expect_stat(mx[i], r.max_weight, 0, kMassRel, at + " max weight");
        expect_stat(f[i], r.first_mass, 1e-12, kMassRel, at + " first mass");
        expect_stat(tk[i], r.topk_mass(topk), 0, kMassRel, at + " top-" + std::to_string(topk) + " mass");
        EXPECT_LE(tk[i], 1.0f) << at;
        EXPECT_GE(e[i], 0.0f) << at;
      }
    size_t written = 0;
    for (size_t i = 0; i < size; ++i) written += std::isnan(e[i]) ? 0 : 1;
    EXPECT_EQ(written, size_t(tokens) * size_t(nh)) << what << ": statistics written outside their slots";
  }
};

const std::vector<Heads> kDecodeHeads = {
    {16, 4, 64}, {16, 4, 128}, {4, 4, 64}, {4, 4, 128},  // GQA 4:1 and plain MHA
    {32, 1, 128},                                          // 32 query heads on one KV head: head groups
    {8, 2, 256},                                           // widest head
    {6, 2, 72},                                            // head_dim not a power of two
    {4, 2, 36},                                            // BF16 rows not 16-byte multiples: scalar loads
};

TEST(AttentionDecode, MatchesReference) {
  MOE_REQUIRE_GPU();
  const int capacity = 4100;
  const int topks[] = {1, 8, 32};
  int run = 0;
  for (const Heads& hs : kDecodeHeads)
    for (DType dt : {DType::F32, DType::BF16}) {
      const size_t kvd = size_t(hs.nkv) * size_t(hs.hd);
      const HostCache K = make_cache(size_t(capacity) * kvd, dt, 11), V = make_cache(size_t(capacity) * kvd, dt, 12);
      DeviceVector<uint8_t> dK(K.bytes), dV(V.bytes);
      const auto q = random_floats(size_t(hs.nh) * size_t(hs.hd), 13, 2.0f);
      DeviceVector<float> dq(q), dout(size_t(hs.nh) * size_t(hs.hd));
      const AttentionShape shape = make_shape(hs, capacity, dt);
      for (int n_keys : {1, 7, 300, 4097}) {
        std::vector<RowRef> ref;
        std::vector<double> ref_out;
        for (int h = 0; h < hs.nh; ++h) {
          ref.push_back(reference_row(&q[size_t(h) * size_t(hs.hd)], K, V, hs, h, n_keys, shape.scale));
          ref_out.insert(ref_out.end(), ref.back().out.begin(), ref.back().out.end());
        }
        DeviceVector<int32_t> pos(std::vector<int32_t>{n_keys - 1});
        for (int splits : {1, 3, 32}) {
          DeviceVector<float> ws(attention_decode_workspace_floats(shape, splits));
          const std::string what = name(hs, dt) + " keys=" + std::to_string(n_keys) + " splits=" + std::to_string(splits);
          // Without statistics.
          attention_decode(dq.get(), dK.get(), dV.get(), pos.get(), shape, splits, ws.get(), dout.get(), nullptr, nullptr);
          expect_close(dout.download().data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out");
          // With statistics (the same output).
          const int topk = topks[run++ % 3];
          StatsBuffers sb(1, hs.nh);
          const AttentionStats st = sb.view(hs.nh, topk);
          attention_decode(dq.get(), dK.get(), dV.get(), pos.get(), shape, splits, ws.get(), dout.get(), &st, nullptr);
          expect_close(dout.download().data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out (stats)");
          sb.check(1, hs.nh, topk, [&](int, int h) -> const RowRef& { return ref[size_t(h)]; }, what);
        }
      }
    }
}

// GPT-OSS: each head's sink logit in [−3, 3] (against scores of std ~0.7), with and without a sliding
// window: narrower than a key tile, across tiles and slices, and wider than the context so far.
std::vector<float> sink_logits(int nh, uint32_t seed) { return random_floats(size_t(nh), seed, 3.0f); }

TEST(AttentionDecode, SlidingWindowsAndSinks) {
  MOE_REQUIRE_GPU();
  const int capacity = 1100;
  int run = 0;
  for (const Heads& hs : {Heads{8, 2, 64}, Heads{4, 4, 128}, Heads{6, 2, 72}, Heads{4, 2, 36}})
    for (DType dt : {DType::F32, DType::BF16}) {
      const size_t kvd = size_t(hs.nkv) * size_t(hs.hd);
      const HostCache K = make_cache(size_t(capacity) * kvd, dt, 14), V = make_cache(size_t(capacity) * kvd, dt, 15);
      DeviceVector<uint8_t> dK(K.bytes), dV(V.bytes);
      const auto q = random_floats(size_t(hs.nh) * size_t(hs.hd), 16, 2.0f);
      const std::vector<float> sinks = sink_logits(hs.nh, 17);
      DeviceVector<float> dq(q), dout(size_t(hs.nh) * size_t(hs.hd)), dsinks(sinks);
      for (const auto& [window, with_sinks] : {std::pair{0, true}, std::pair{1, false}, std::pair{5, true},
                                               std::pair{128, false}, std::pair{128, true}}) {
        AttentionShape shape = make_shape(hs, capacity, dt);
        shape.window = window;
        shape.sinks = with_sinks ? dsinks.get() : nullptr;
        for (int n_keys : {1, 7, 300, 1000}) {
          std::vector<RowRef> ref;
          std::vector<double> ref_out;
          for (int h = 0; h < hs.nh; ++h) {
            ref.push_back(reference_row(&q[size_t(h) * size_t(hs.hd)], K, V, hs, h, n_keys, shape.scale, window,
                                        with_sinks ? sinks[size_t(h)] : -INFINITY));
            ref_out.insert(ref_out.end(), ref.back().out.begin(), ref.back().out.end());
          }
          DeviceVector<int32_t> pos(std::vector<int32_t>{n_keys - 1});
          for (int splits : {1, 3, 32}) {
            DeviceVector<float> ws(attention_decode_workspace_floats(shape, splits));
            const std::string what = name(hs, dt) + " window=" + std::to_string(window) + (with_sinks ? " sinks" : "") +
                                     " keys=" + std::to_string(n_keys) + " splits=" + std::to_string(splits);
            attention_decode(dq.get(), dK.get(), dV.get(), pos.get(), shape, splits, ws.get(), dout.get(), nullptr, nullptr);
            expect_close(dout.download().data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out");
            const int topk = (run++ % 2) ? 3 : 8;
            StatsBuffers sb(1, hs.nh);
            const AttentionStats st = sb.view(hs.nh, topk);
            attention_decode(dq.get(), dK.get(), dV.get(), pos.get(), shape, splits, ws.get(), dout.get(), &st, nullptr);
            expect_close(dout.download().data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out (stats)");
            sb.check(1, hs.nh, topk, [&](int, int h) -> const RowRef& { return ref[size_t(h)]; }, what);
          }
        }
      }
    }
}

// Every top-k size on one long row, with peaked scores (q scaled up) so the top-k mass is far from 0
// and 1, and slices far more numerous than the keys of a few.
TEST(AttentionDecode, TopKSizesAndPeakedRows) {
  MOE_REQUIRE_GPU();
  const Heads hs{8, 2, 128};
  const int capacity = 2000, n_keys = 1999;
  for (DType dt : {DType::F32, DType::BF16}) {
    const size_t kvd = size_t(hs.nkv) * size_t(hs.hd);
    const HostCache K = make_cache(size_t(capacity) * kvd, dt, 21), V = make_cache(size_t(capacity) * kvd, dt, 22);
    DeviceVector<uint8_t> dK(K.bytes), dV(V.bytes);
    const auto q = random_floats(size_t(hs.nh) * size_t(hs.hd), 23, 12.0f);
    DeviceVector<float> dq(q), dout(size_t(hs.nh) * size_t(hs.hd));
    const AttentionShape shape = make_shape(hs, capacity, dt);
    std::vector<RowRef> ref;
    std::vector<double> ref_out;
    for (int h = 0; h < hs.nh; ++h) {
      ref.push_back(reference_row(&q[size_t(h) * size_t(hs.hd)], K, V, hs, h, n_keys, shape.scale));
      ref_out.insert(ref_out.end(), ref.back().out.begin(), ref.back().out.end());
    }
    DeviceVector<int32_t> pos(std::vector<int32_t>{n_keys - 1});
    for (int splits : {1, 7, 128})
      for (int topk : {1, 2, 5, 8, 16, 31, 32}) {
        DeviceVector<float> ws(attention_decode_workspace_floats(shape, splits));
        StatsBuffers sb(1, hs.nh);
        const AttentionStats st = sb.view(hs.nh, topk);
        attention_decode(dq.get(), dK.get(), dV.get(), pos.get(), shape, splits, ws.get(), dout.get(), &st, nullptr);
        const std::string what = name(hs, dt) + " splits=" + std::to_string(splits) + " topk=" + std::to_string(topk);
        expect_close(dout.download().data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out");
        sb.check(1, hs.nh, topk, [&](int, int h) -> const RowRef& { return ref[size_t(h)]; }, what);
      }
  }
}

// The launch depends on the shape only: a captured graph replayed after the position moved on reads
// the new position from the device.
TEST(AttentionDecode, GraphReplayFollowsThePosition) {
  MOE_REQUIRE_GPU();
  const Heads hs{16, 4, 128};
  const int capacity = 512, splits = 16;
  const DType dt = DType::BF16;
  const size_t kvd = size_t(hs.nkv) * size_t(hs.hd);
  const HostCache K = make_cache(size_t(capacity) * kvd, dt, 31), V = make_cache(size_t(capacity) * kvd, dt, 32);
  DeviceVector<uint8_t> dK(K.bytes), dV(V.bytes);
  const auto q = random_floats(size_t(hs.nh) * size_t(hs.hd), 33, 2.0f);
  DeviceVector<float> dq(q), dout(size_t(hs.nh) * size_t(hs.hd));
  const AttentionShape shape = make_shape(hs, capacity, dt);
  DeviceVector<float> ws(attention_decode_workspace_floats(shape, splits));
  DeviceVector<int32_t> pos(std::vector<int32_t>{5});
  StatsBuffers sb(1, hs.nh);
  const AttentionStats st = sb.view(hs.nh, 8);

  cudaStream_t stream;
  MOE_CUDA_CHECK(cudaStreamCreate(&stream));  // blocking: ordered after the uploads of pos
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  attention_decode(dq.get(), dK.get(), dV.get(), pos.get(), shape, splits, ws.get(), dout.get(), &st, stream);
  MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int n_keys : {6, 1, 511, 200}) {
    pos.upload(std::vector<int32_t>{n_keys - 1});
    MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<RowRef> ref;
    std::vector<double> ref_out;
    for (int h = 0; h < hs.nh; ++h) {
      ref.push_back(reference_row(&q[size_t(h) * size_t(hs.hd)], K, V, hs, h, n_keys, shape.scale));
      ref_out.insert(ref_out.end(), ref.back().out.begin(), ref.back().out.end());
    }
    const std::string what = "graph keys=" + std::to_string(n_keys);
    expect_close(dout.download().data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out");
    sb.check(1, hs.nh, 8, [&](int, int h) -> const RowRef& { return ref[size_t(h)]; }, what);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(AttentionDecode, RejectsBadArguments) {
  MOE_REQUIRE_GPU();
  AttentionShape s = make_shape({8, 3, 64}, 16, DType::F32);  // 8 heads on 3 KV heads
  EXPECT_ANY_THROW(attention_decode(nullptr, nullptr, nullptr, nullptr, s, 4, nullptr, nullptr, nullptr, nullptr));
  s = make_shape({8, 2, 64}, 16, DType::F16);
  EXPECT_ANY_THROW(attention_decode(nullptr, nullptr, nullptr, nullptr, s, 4, nullptr, nullptr, nullptr, nullptr));
  s = make_shape({8, 2, 64}, 16, DType::F32);
  EXPECT_ANY_THROW(attention_decode(nullptr, nullptr, nullptr, nullptr, s, 0, nullptr, nullptr, nullptr, nullptr));
}

struct PrefillCase {
  Heads heads;
  int T, pos0;
};

// F32 → TF32 as cvt.rna does (nearest, ties away from zero): what the tensor-core path multiplies.
float tf32(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  b = (b + 0x1000u) & 0xffffe000u;
  std::memcpy(&v, &b, 4);
  return v;
}

// Reference rows of every (t, h) of a prefill case, from q, K and V as the kernel's products read them
// (rounded to TF32 with tf32_products): the scores are then F32-exact products summed in F32.
std::vector<RowRef> prefill_reference(const PrefillCase& c, const std::vector<float>& q, int64_t q_stride,
                                      const HostCache& K, const HostCache& V, float scale, bool tf32_products,
                                      int window = 0, const std::vector<float>& sinks = {}) {
  const Heads& hs = c.heads;
  std::vector<float> qr = q;
  HostCache Kr = K, Vr = V;
  if (tf32_products)
    for (auto* values : {&qr, &Kr.values, &Vr.values})
      for (float& v : *values) v = tf32(v);
  std::vector<RowRef> ref;  // [t][h]
  for (int t = 0; t < c.T; ++t)
    for (int h = 0; h < hs.nh; ++h)
      ref.push_back(reference_row(&qr[size_t(t) * size_t(q_stride) + size_t(h) * size_t(hs.hd)], Kr, Vr, hs, h,
                                  c.pos0 + t + 1, scale, window, sinks.empty() ? -INFINITY : sinks[size_t(h)]));
  return ref;
}

// One prefill case, without and with the statistics. With tensor cores the reference reads q, K and V
// rounded to TF32 as the kernels do, so the statistics keep their bounds. The kernels also round the
// unnormalised weights e^(s − m) to TF32 before P·V, a relative error of at most 2^-11 per weight: the
// outputs (Σ w_j v_j, |v| ≤ 1) move by at most 2^-11 ≈ 4.9e-4, which is their bound there. Asking for
// the statistics must not change the outputs at all.
// window, sinks: GPT-OSS's sliding window (> 0) and per-head sink logits (non-empty).
void check_prefill(const PrefillCase& c, DType dt, bool tensor_cores, int topk, bool prefill_mma = true, int window = 0,
                   const std::vector<float>& sinks = {}) {
  const Heads& hs = c.heads;
  const int capacity = c.pos0 + c.T + 3;
  const size_t kvd = size_t(hs.nkv) * size_t(hs.hd), qd = size_t(hs.nh) * size_t(hs.hd);
  HostCache K = make_cache(size_t(capacity) * kvd, dt, 41), V = make_cache(size_t(capacity) * kvd, dt, 42);
  DeviceVector<uint8_t> dK(K.bytes), dV(V.bytes);
  // q rows inside a fused QKV output: row stride nh·hd + 2·nkv·hd.
  const int64_t q_stride = int64_t(qd + 2 * kvd);
  const auto q = random_floats(size_t(c.T) * size_t(q_stride), 43, 2.0f);
  DeviceVector<float> dq(q), dout(size_t(c.T) * qd);
  DeviceVector<int32_t> pos(std::vector<int32_t>{c.pos0});
  AttentionShape shape = make_shape(hs, capacity, dt);
  shape.tensor_cores = tensor_cores;
  shape.prefill_mma = prefill_mma;
  shape.window = window;
  DeviceVector<float> d_sinks(sinks);
  shape.sinks = sinks.empty() ? nullptr : d_sinks.get();
  // The head dims the tensor-core kernels take (attention.cuh); others take the F32 path.
  const bool tf32_products = tensor_cores && hs.hd % 16 == 0 && hs.hd <= 128;
  const bool mma = tf32_products && prefill_mma && (hs.hd == 16 || hs.hd == 32 || hs.hd == 64 || hs.hd == 128);
  const std::vector<RowRef> ref = prefill_reference(c, q, q_stride, K, V, shape.scale, tf32_products, window, sinks);
  std::vector<double> ref_out;
  for (const RowRef& r : ref) ref_out.insert(ref_out.end(), r.out.begin(), r.out.end());
  const double out_abs = tf32_products ? 4.9e-4 + kOutAbs : kOutAbs;
  const std::string what = name(hs, dt) + " T=" + std::to_string(c.T) + " pos0=" + std::to_string(c.pos0) +
                           (mma ? " mma" : tf32_products ? " wmma" : "") +
                           (window ? " window=" + std::to_string(window) : "") + (sinks.empty() ? "" : " sinks");
  attention_prefill(dq.get(), q_stride, c.T, dK.get(), dV.get(), pos.get(), shape, dout.get(), nullptr, nullptr);
  const std::vector<float> got = dout.download();
  expect_close(got.data(), ref_out.data(), ref_out.size(), out_abs, kOutRel, what + " out");

  StatsBuffers sb(c.T, hs.nh);
  const AttentionStats st = sb.view(hs.nh, topk);
  DeviceVector<float> dout2(size_t(c.T) * qd);
  attention_prefill(dq.get(), q_stride, c.T, dK.get(), dV.get(), pos.get(), shape, dout2.get(), &st, nullptr);
  EXPECT_EQ(dout2.download(), got) << what << ": the outputs depend on whether statistics are asked for";
  sb.check(c.T, hs.nh, topk, [&](int t, int h) -> const RowRef& { return ref[size_t(t) * size_t(hs.nh) + size_t(h)]; },
           what);
}

TEST(AttentionPrefill, MatchesReference) {
  MOE_REQUIRE_GPU();
  std::vector<PrefillCase> cases;
  for (const Heads& hs : {Heads{16, 4, 64}, Heads{16, 4, 128}, Heads{4, 4, 128}, Heads{8, 2, 256}, Heads{6, 2, 72},
                          Heads{4, 2, 36}})
    for (int T : {1, 5, 70})
      for (int pos0 : {0, 37}) cases.push_back({hs, T, pos0});
  cases.push_back({{8, 2, 128}, 70, 700});  // many key tiles before the diagonal
  cases.push_back({{8, 2, 256}, 33, 300});
  const int topks[] = {1, 8, 32};
  int run = 0;
  for (const PrefillCase& c : cases)
    for (DType dt : {DType::F32, DType::BF16}) check_prefill(c, dt, false, topks[run++ % 3]);
}

// The tensor-core paths (BF16/F16 models): the mma kernel for head_dim 16, 32, 64 and 128, the WMMA
// kernel for the other multiples of 16 up to 128 (96 here) and for the statistics, and the F32 path where
// neither fits (72: not a multiple of 16; 256: wider than their tiles), which must then be taken.
// T = 130 spans three query tiles of the mma kernel and pos0 = 700 some twenty key tiles before the
// diagonal.
TEST(AttentionPrefill, TensorCoresMatchTheTf32Reference) {
  MOE_REQUIRE_GPU();
  std::vector<PrefillCase> cases;
  for (const Heads& hs : {Heads{16, 4, 64}, Heads{8, 2, 128}})
    for (int T : {1, 5, 70})
      for (int pos0 : {0, 37}) cases.push_back({hs, T, pos0});
  cases.push_back({{8, 2, 128}, 70, 700});
  cases.push_back({{4, 2, 128}, 130, 3});
  cases.push_back({{4, 2, 16}, 70, 9});
  cases.push_back({{4, 1, 32}, 33, 64});
  cases.push_back({{4, 2, 96}, 40, 9});
  cases.push_back({{6, 2, 72}, 40, 9});
  cases.push_back({{8, 2, 256}, 33, 30});
  const int topks[] = {1, 8, 32};
  int run = 0;
  for (const PrefillCase& c : cases)
    for (DType dt : {DType::F32, DType::BF16}) check_prefill(c, dt, true, topks[run++ % 3]);
}

// With prefill_mma cleared (MOE_CUDA_MMA_ATTENTION=0), the WMMA kernel writes the outputs at every head_dim.
TEST(AttentionPrefill, TensorCoresWithoutMmaUseTheWmmaKernel) {
  MOE_REQUIRE_GPU();
  for (const PrefillCase& c : {PrefillCase{{8, 2, 128}, 70, 37}, PrefillCase{{4, 2, 32}, 5, 0}})
    for (DType dt : {DType::F32, DType::BF16}) check_prefill(c, dt, true, 8, false);
}

// GPT-OSS's prefill: sliding windows (3: inside one key tile; 40: across tiles and across the query tiles'
// first keys) and sinks, on every kernel: F32 SIMT, the WMMA kernel (with the statistics, and for the
// outputs with prefill_mma off), and the mma kernel (head_dim 64, GPT-OSS's).
TEST(AttentionPrefill, SlidingWindowsAndSinks) {
  MOE_REQUIRE_GPU();
  const std::vector<float> sinks8 = sink_logits(8, 18);
  struct Case {
    PrefillCase c;
    int window;
    bool sinks;
  };
  const Case cases[] = {
      {{{8, 2, 64}, 70, 37}, 0, true},   {{{8, 2, 64}, 70, 37}, 3, false}, {{{8, 2, 64}, 70, 37}, 40, true},
      {{{8, 2, 64}, 5, 0}, 40, true},    // a window wider than the context so far
      {{{8, 2, 72}, 40, 9}, 3, true},    // a head_dim the tensor-core kernels do not take: F32 throughout
      {{{8, 4, 128}, 130, 3}, 40, true},  // three query tiles of the mma kernel
  };
  int run = 0;
  for (const Case& k : cases)
    for (DType dt : {DType::F32, DType::BF16}) {
      const std::vector<float> sinks = k.sinks ? sinks8 : std::vector<float>{};
      const int topk = (run++ % 2) ? 3 : 8;
      check_prefill(k.c, dt, false, topk, true, k.window, sinks);
      if (k.c.heads.hd % 16 != 0) continue;
      check_prefill(k.c, dt, true, topk, true, k.window, sinks);
      check_prefill(k.c, dt, true, topk, false, k.window, sinks);
    }
}

TEST(AttentionRow, MatchesReference) {
  MOE_REQUIRE_GPU();
  for (const Heads& hs : {Heads{16, 4, 128}, Heads{4, 4, 64}, Heads{8, 2, 256}, Heads{4, 2, 36}})
    for (DType dt : {DType::F32, DType::BF16}) {
      const int capacity = 4100;
      const size_t kvd = size_t(hs.nkv) * size_t(hs.hd);
      const HostCache K = make_cache(size_t(capacity) * kvd, dt, 51), V = make_cache(size_t(capacity) * kvd, dt, 52);
      DeviceVector<uint8_t> dK(K.bytes);
      const auto q = random_floats(size_t(hs.nh) * size_t(hs.hd), 53, 4.0f);
      DeviceVector<float> dq(q);
      const AttentionShape shape = make_shape(hs, capacity, dt);
      for (int pos0 : {0, 37, 4000})
        for (int t : {0, 4, 99})
          for (int head : {0, hs.nh - 1}) {
            const int n_keys = pos0 + t + 1;
            DeviceVector<int32_t> pos(std::vector<int32_t>{pos0});
            DeviceVector<float> drow(size_t(capacity) + 8);
            drow.upload(std::vector<float>(size_t(capacity) + 8, -7.0f));
            attention_row(dq.get(), dK.get(), pos.get(), t, head, shape, drow.get(), nullptr);
            const auto row = drow.download();
            const RowRef r = reference_row(&q[size_t(head) * size_t(hs.hd)], K, V, hs, head, n_keys, shape.scale);
            const std::string what = name(hs, dt) + " pos0=" + std::to_string(pos0) + " t=" + std::to_string(t) +
                                     " head=" + std::to_string(head);
            // Weights are ≤ 1, each within ~1e-6 relative (score error ~1e-7, F32 sum of ≤ 4100 terms).
            expect_close(row.data(), r.w.data(), size_t(n_keys), 1e-10, kMassRel, what);
            EXPECT_EQ(row[size_t(n_keys)], -7.0f) << what << ": wrote past the row";
          }
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Multi-head latent attention over its cache (attention_latent.cuh): one KV head whose rows are
// [latent ; k_pe] (kv_lora + rope values), every query head dotted with the whole row, the values the
// rows' first kv_lora. The reference is reference_row with one KV head of that width and V = the rows
// with their k_pe zeroed (so out's first kv_lora values are the weighted latents, the rest 0).

struct LatentCase {
  int nh, kv_lora, rope;
};

LatentShape latent_shape(const LatentCase& c, int capacity, DType dt) {
  LatentShape s;
  s.n_heads = c.nh;
  s.kv_lora = c.kv_lora;
  s.rope_dim = c.rope;
  s.qk_nope = 16;
  s.v_dim = 8;
  s.capacity = capacity;
  s.kv_dtype = dt;
  s.scale = 1.0f / std::sqrt(float(c.kv_lora + c.rope) / 4.0f);
  return s;
}

// The rows' latent parts as a V cache of the same width.
HostCache latent_values(const HostCache& K, const LatentCase& c) {
  HostCache V = K;
  const size_t row = size_t(c.kv_lora + c.rope);
  for (size_t j = 0; j < V.values.size() / row; ++j)
    std::fill(V.values.begin() + long(j * row + size_t(c.kv_lora)), V.values.begin() + long((j + 1) * row), 0.0f);
  return V;
}

// The first kv_lora values of every reference row's output, in [token][head] order.
std::vector<double> latent_outputs(const std::vector<RowRef>& ref, int kv_lora) {
  std::vector<double> out;
  for (const RowRef& r : ref) out.insert(out.end(), r.out.begin(), r.out.begin() + kv_lora);
  return out;
}

// DeepSeek's width (512 + 64, 12 heads: a full group of 8 and a partial one), a narrow one (the golden
// checkpoints'), and 20 heads over a 256-wide latent.
const std::vector<LatentCase> kLatentCases = {{12, 512, 64}, {4, 32, 8}, {20, 256, 32}};

TEST(LatentAttention, DecodeMatchesReference) {
  MOE_REQUIRE_GPU();
  const int capacity = 2100;
  const int topks[] = {1, 8, 32};
  int run = 0;
  for (const LatentCase& c : kLatentCases)
    for (DType dt : {DType::F32, DType::BF16}) {
      const Heads hs{c.nh, 1, c.kv_lora + c.rope};
      const size_t row = size_t(hs.hd);
      const HostCache K = make_cache(size_t(capacity) * row, dt, 61);
      const HostCache V = latent_values(K, c);
      DeviceVector<uint8_t> dK(K.bytes);
      const auto q = random_floats(size_t(c.nh) * row, 62, 2.0f);
      DeviceVector<float> dq(q), dout(size_t(c.nh) * size_t(c.kv_lora));
      const LatentShape shape = latent_shape(c, capacity, dt);
      for (int n_keys : {1, 300, 1025}) {
        std::vector<RowRef> ref;
        for (int h = 0; h < c.nh; ++h) ref.push_back(reference_row(&q[size_t(h) * row], K, V, hs, h, n_keys, shape.scale));
        const std::vector<double> ref_out = latent_outputs(ref, c.kv_lora);
        DeviceVector<int32_t> pos(std::vector<int32_t>{n_keys - 1});
        for (int splits : {1, 32}) {
          DeviceVector<float> ws(latent_attention_workspace_floats(shape, splits));
          const std::string what = "latent nh=" + std::to_string(c.nh) + " kv_lora=" + std::to_string(c.kv_lora) +
                                   (dt == DType::BF16 ? " bf16" : " f32") + " keys=" + std::to_string(n_keys) +
                                   " splits=" + std::to_string(splits);
          latent_attention(dq.get(), 1, dK.get(), pos.get(), shape, splits, ws.get(), dout.get(), nullptr, nullptr);
          expect_close(dout.download().data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out");
          const int topk = topks[run++ % 3];
          StatsBuffers sb(1, c.nh);
          const AttentionStats st = sb.view(c.nh, topk);
          latent_attention(dq.get(), 1, dK.get(), pos.get(), shape, splits, ws.get(), dout.get(), &st, nullptr);
          expect_close(dout.download().data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out (stats)");
          sb.check(1, c.nh, topk, [&](int, int h) -> const RowRef& { return ref[size_t(h)]; }, what);
        }
      }
    }
}

TEST(LatentAttention, PrefillMatchesReference) {
  MOE_REQUIRE_GPU();
  const int topks[] = {1, 8, 32};
  int run = 0;
  for (const LatentCase& c : kLatentCases)
    for (DType dt : {DType::F32, DType::BF16})
      for (const auto& [T, pos0] : {std::pair{5, 0}, std::pair{20, 37}}) {
        const Heads hs{c.nh, 1, c.kv_lora + c.rope};
        const size_t row = size_t(hs.hd);
        const int capacity = pos0 + T + 3;
        const HostCache K = make_cache(size_t(capacity) * row, dt, 71);
        const HostCache V = latent_values(K, c);
        DeviceVector<uint8_t> dK(K.bytes);
        const auto q = random_floats(size_t(T) * size_t(c.nh) * row, 72, 2.0f);
        DeviceVector<float> dq(q), dout(size_t(T) * size_t(c.nh) * size_t(c.kv_lora));
        DeviceVector<int32_t> pos(std::vector<int32_t>{pos0});
        const LatentShape shape = latent_shape(c, capacity, dt);
        std::vector<RowRef> ref;  // [t][h]
        for (int t = 0; t < T; ++t)
          for (int h = 0; h < c.nh; ++h)
            ref.push_back(reference_row(&q[(size_t(t) * size_t(c.nh) + size_t(h)) * row], K, V, hs, h, pos0 + t + 1,
                                        shape.scale));
        const std::vector<double> ref_out = latent_outputs(ref, c.kv_lora);
        const std::string what = "latent prefill nh=" + std::to_string(c.nh) + " kv_lora=" + std::to_string(c.kv_lora) +
                                 (dt == DType::BF16 ? " bf16" : " f32") + " T=" + std::to_string(T) +
                                 " pos0=" + std::to_string(pos0);
        latent_attention(dq.get(), T, dK.get(), pos.get(), shape, 32, nullptr, dout.get(), nullptr, nullptr);
        const std::vector<float> got = dout.download();
        expect_close(got.data(), ref_out.data(), ref_out.size(), kOutAbs, kOutRel, what + " out");
        const int topk = topks[run++ % 3];
        StatsBuffers sb(T, c.nh);
        const AttentionStats st = sb.view(c.nh, topk);
        latent_attention(dq.get(), T, dK.get(), pos.get(), shape, 32, nullptr, dout.get(), &st, nullptr);
        EXPECT_EQ(dout.download(), got) << what << ": the outputs depend on whether statistics are asked for";
        sb.check(T, c.nh, topk, [&](int t, int h) -> const RowRef& { return ref[size_t(t) * size_t(c.nh) + size_t(h)]; },
                 what);
      }
}

// A row of a sliding-window layer with sinks: zeros before the window, and weights that sum to less than 1.
TEST(AttentionRow, SlidingWindowsAndSinks) {
  MOE_REQUIRE_GPU();
  const Heads hs{8, 2, 64};
  const int capacity = 600;
  for (DType dt : {DType::F32, DType::BF16}) {
    const size_t kvd = size_t(hs.nkv) * size_t(hs.hd);
    const HostCache K = make_cache(size_t(capacity) * kvd, dt, 54), V = make_cache(size_t(capacity) * kvd, dt, 55);
    DeviceVector<uint8_t> dK(K.bytes);
    const auto q = random_floats(size_t(hs.nh) * size_t(hs.hd), 56, 4.0f);
    const std::vector<float> sinks = sink_logits(hs.nh, 57);
    DeviceVector<float> dq(q), dsinks(sinks);
    for (int window : {0, 1, 4, 128}) {
      AttentionShape shape = make_shape(hs, capacity, dt);
      shape.window = window;
      shape.sinks = dsinks.get();
      for (int pos0 : {0, 37, 500})
        for (int head : {0, 5}) {
          const int t = 2, n_keys = pos0 + t + 1;
          DeviceVector<int32_t> pos(std::vector<int32_t>{pos0});
          DeviceVector<float> drow(std::vector<float>(size_t(capacity) + 8, -7.0f));
          attention_row(dq.get(), dK.get(), pos.get(), t, head, shape, drow.get(), nullptr);
          const auto row = drow.download();
          const RowRef r = reference_row(&q[size_t(head) * size_t(hs.hd)], K, V, hs, head, n_keys, shape.scale, window,
                                         sinks[size_t(head)]);
          const std::string what = name(hs, dt) + " window=" + std::to_string(window) + " pos0=" + std::to_string(pos0) +
                                   " head=" + std::to_string(head);
          expect_close(row.data(), r.w.data(), size_t(n_keys), 1e-10, kMassRel, what);
          EXPECT_EQ(row[size_t(n_keys)], -7.0f) << what << ": wrote past the row";
        }
    }
  }
}

// attn.rows of a latent model: attention_row with one KV head as wide as the latent rows (576).
TEST(LatentAttention, RowsOfTheWideCache) {
  MOE_REQUIRE_GPU();
  const LatentCase c{12, 512, 64};
  const Heads hs{c.nh, 1, c.kv_lora + c.rope};
  for (DType dt : {DType::F32, DType::BF16}) {
    const int capacity = 700;
    const size_t row = size_t(hs.hd);
    const HostCache K = make_cache(size_t(capacity) * row, dt, 81);
    DeviceVector<uint8_t> dK(K.bytes);
    const auto q = random_floats(size_t(c.nh) * row, 82, 2.0f);
    DeviceVector<float> dq(q);
    const LatentShape ls = latent_shape(c, capacity, dt);
    AttentionShape shape = make_shape(hs, capacity, dt);
    shape.scale = ls.scale;
    for (int pos0 : {0, 650})
      for (int head : {0, c.nh - 1}) {
        DeviceVector<int32_t> pos(std::vector<int32_t>{pos0});
        DeviceVector<float> drow(size_t(capacity) + 8);
        drow.upload(std::vector<float>(size_t(capacity) + 8, -7.0f));
        attention_row(dq.get(), dK.get(), pos.get(), 3, head, shape, drow.get(), nullptr);
        const auto got = drow.download();
        const RowRef r = reference_row(&q[size_t(head) * row], K, K, hs, head, pos0 + 4, shape.scale);
        const std::string what = std::string(dt == DType::BF16 ? "bf16" : "f32") + " pos0=" + std::to_string(pos0) +
                                 " head=" + std::to_string(head);
        expect_close(got.data(), r.w.data(), size_t(pos0 + 4), 1e-10, kMassRel, what);
        EXPECT_EQ(got[size_t(pos0 + 4)], -7.0f) << what << ": wrote past the row";
      }
  }
  AttentionShape too_wide = make_shape(Heads{4, 1, 1028}, 16, DType::F32);
  EXPECT_ANY_THROW(attention_row(nullptr, nullptr, nullptr, 0, 0, too_wide, nullptr, nullptr));
}

}  // namespace moe::cuda
