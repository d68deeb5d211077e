// qkv_prepare (engine/backend/cuda/kernels/rope.cuh) against a scalar reference written here that
// follows the CPU backend's attention_block step for step: bias add, q/k RMSNorm (per head or over
// the whole projection), clip, RoPE (rotate-half or interleaved, possibly partial), then k and v into
// the cache at row pos0 + t. Cases: Qwen3-MoE-like (per-head norm), Qwen2-MoE-like (biases),
// OLMoE-like (whole-projection norm, clip), partial interleaved rotary (GLM-like), odd head dims,
// GQA groups of 1…16, pos0 > 0, F32 and BF16 caches, a padded row stride. And qkv_decode, the decode
// form inside the projection's kernel, against linear_decode + qkv_prepare.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/backend/cuda/kernels/linear.cuh"
#include "engine/backend/cuda/kernels/rope.cuh"
#include "engine/common/dtype.h"
#include "tests/cuda/gpu_test_support.h"

namespace moe::cuda {
namespace {

using test::DeviceVector;
using test::random_floats;

struct Case {
  std::string name;
  int nh, nkv, hd, rotary_dim;
  bool interleaved;
  QkNormMode norm;
  bool bias;
  float clip;
  int T;
  int pos0;
  int pad = 0;  // extra floats at the end of each fused QKV row (row_stride = nh·hd + 2·nkv·hd + pad)
  float theta = 1e6f;
  float rope_factor = 1.0f;  // YaRN's cos/sin factor
};

using test::ref_rmsnorm;
using test::ref_rope;

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Case c's parameters over the device arrays given (biases [q, k, v] and norms used as c asks).
QkvPrepareParams params_of(const Case& c, const float* inv_freq, const float* const (&bias)[3], const float* q_norm,
                           const float* k_norm) {
  QkvPrepareParams p;
  p.n_heads = c.nh;
  p.n_kv_heads = c.nkv;
  p.head_dim = c.hd;
  p.rotary_dim = c.rotary_dim;
  p.interleaved = c.interleaved;
  p.inv_freq = inv_freq;
  p.rope_factor = c.rope_factor;
  if (c.bias) p.q_bias = bias[0], p.k_bias = bias[1], p.v_bias = bias[2];
  p.qk_norm = c.norm;
  if (c.norm != QkNormMode::None) p.q_norm = q_norm, p.k_norm = k_norm;
  p.clip = c.clip;
  return p;
}

void run_case(const Case& c, DType kv_dtype) {
  SCOPED_TRACE(c.name + (kv_dtype == DType::BF16 ? " (BF16 cache)" : " (F32 cache)"));
  const int nh = c.nh, nkv = c.nkv, hd = c.hd, T = c.T;
  const int64_t qd = int64_t(nh) * hd, kvd = int64_t(nkv) * hd;
  const int64_t stride = qd + 2 * kvd + c.pad;
  const float eps = 1e-6f;
  const int capacity = c.pos0 + T + 3;  // rows after the written ones too, to check they stay

  // Inputs. Values of a few units, so that clip = 1 cuts a good share of them.
  const std::vector<float> qkv = random_floats(size_t(T) * size_t(stride), 1000u + uint32_t(nh * hd + T), 2.0f);
  const std::vector<float> q_bias = random_floats(size_t(qd), 1u, 0.5f);
  const std::vector<float> k_bias = random_floats(size_t(kvd), 2u, 0.5f);
  const std::vector<float> v_bias = random_floats(size_t(kvd), 3u, 0.5f);
  const int64_t q_norm_n = c.norm == QkNormMode::WholeProjection ? qd : hd;
  const int64_t k_norm_n = c.norm == QkNormMode::WholeProjection ? kvd : hd;
  std::vector<float> q_norm = random_floats(size_t(q_norm_n), 4u, 1.0f), k_norm = random_floats(size_t(k_norm_n), 5u, 1.0f);
  for (auto& w : q_norm) w += 1.0f;  // weights around 1, as trained norms are
  for (auto& w : k_norm) w += 1.0f;
  std::vector<float> inv_freq(size_t(c.rotary_dim / 2));
  for (int i = 0; i < c.rotary_dim / 2; ++i)
    inv_freq[size_t(i)] = float(1.0 / std::pow(double(c.theta), double(2 * i) / double(c.rotary_dim)));

  // Reference, per token, in the CPU's order.
  std::vector<float> want = qkv;
  for (int t = 0; t < T; ++t) {
    float* q = &want[size_t(t) * size_t(stride)];
    float* k = q + qd;
    float* v = k + kvd;
    if (c.bias) {
      for (int64_t i = 0; i < qd; ++i) q[i] += q_bias[size_t(i)];
      for (int64_t i = 0; i < kvd; ++i) k[i] += k_bias[size_t(i)];
      for (int64_t i = 0; i < kvd; ++i) v[i] += v_bias[size_t(i)];
    }
    if (c.norm == QkNormMode::PerHead) {
      for (int h = 0; h < nh; ++h) ref_rmsnorm(q + h * hd, q_norm.data(), hd, eps);
      for (int h = 0; h < nkv; ++h) ref_rmsnorm(k + h * hd, k_norm.data(), hd, eps);
    } else if (c.norm == QkNormMode::WholeProjection) {
      ref_rmsnorm(q, q_norm.data(), qd, eps);
      ref_rmsnorm(k, k_norm.data(), kvd, eps);
    }
    if (c.clip > 0) {
      for (int64_t i = 0; i < qd; ++i) q[i] = std::clamp(q[i], -c.clip, c.clip);
      for (int64_t i = 0; i < kvd; ++i) k[i] = std::clamp(k[i], -c.clip, c.clip);
      for (int64_t i = 0; i < kvd; ++i) v[i] = std::clamp(v[i], -c.clip, c.clip);
    }
    const int pos = c.pos0 + t;
    for (int h = 0; h < nh; ++h) ref_rope(q + h * hd, pos, c.rotary_dim, c.interleaved, inv_freq, c.rope_factor);
    for (int h = 0; h < nkv; ++h) ref_rope(k + h * hd, pos, c.rotary_dim, c.interleaved, inv_freq, c.rope_factor);
  }

  // Device run. Caches start as a sentinel pattern, distinct per element.
  const size_t cache_n = size_t(capacity) * size_t(kvd);
  const size_t esize = kv_dtype == DType::BF16 ? 2 : 4;
  std::vector<uint8_t> k_init(cache_n * esize), v_init(cache_n * esize);
  for (size_t i = 0; i < k_init.size(); ++i) k_init[i] = uint8_t(i * 7 + 1), v_init[i] = uint8_t(i * 13 + 5);
  DeviceVector<uint8_t> dk_cache(k_init), dv_cache(v_init);
  DeviceVector<float> dqkv(qkv), dqb(q_bias), dkb(k_bias), dvb(v_bias), dqn(q_norm), dkn(k_norm), dfreq(inv_freq);
  DeviceVector<int32_t> dpos(std::vector<int32_t>{c.pos0});

  QkvPrepareParams p = params_of(c, dfreq.get(), {dqb.get(), dkb.get(), dvb.get()}, dqn.get(), dkn.get());
  p.eps = eps;
  p.kv_dtype = kv_dtype;
  p.k_cache = dk_cache.get();
  p.v_cache = dv_cache.get();
  float* q = dqkv.get();
  qkv_prepare(q, q + qd, q + qd + kvd, stride, T, dpos.get(), p, nullptr);
  const std::vector<float> got = dqkv.download();
  const std::vector<uint8_t> k_got = dk_cache.download(), v_got = dv_cache.download();

  // q and k: the GPU's F32 tree sums of squares (vs the reference's double) move the norm scale by a
  // few 1e-7 relative, and its sincosf differs from the host's cosf/sinf by ≤ 2 ulp; through a
  // rotation of values of a few units that is ~1e-6 absolute. 2e-5 · (1 + |want|) is a wide margin
  // that still catches a wrong pair, angle, weight, head or order of steps (all O(1) errors).
  // v: bias add and clip are the same F32 operations as the reference's: exact. Padding: untouched.
  int bad = 0;
  for (int t = 0; t < T; ++t)
    for (int64_t i = 0; i < stride; ++i) {
      const size_t j = size_t(t) * size_t(stride) + size_t(i);
      const bool is_qk = i < qd + kvd;
      const bool ok = is_qk ? std::fabs(got[j] - want[j]) <= 2e-5f * (1.0f + std::fabs(want[j])) : got[j] == want[j];
      if (!ok && ++bad <= 8) {
        const char* part = i < qd ? "q" : i < qd + kvd ? "k" : i < qd + 2 * kvd ? "v" : "padding";
        ADD_FAILURE() << "token " << t << " " << part << " element " << i << ": got " << got[j] << ", want "
                      << want[j];
      }
    }
  EXPECT_EQ(bad, 0) << bad << " q/k/v elements wrong";

  // Cache rows pos0 … pos0 + T − 1 hold this step's k and v: F32 caches the in-place values bit for
  // bit; BF16 caches their round-to-nearest-even (checked bit-exactly against the device's own F32
  // k, v, and within half a BF16 ulp plus the tolerance above against the reference). Every other
  // byte keeps its sentinel.
  bad = 0;
  for (int row = 0; row < capacity; ++row) {
    const bool written = row >= c.pos0 && row < c.pos0 + T;
    for (int which = 0; which < 2; ++which) {
      const std::vector<uint8_t>& cache = which == 0 ? k_got : v_got;
      const std::vector<uint8_t>& init = which == 0 ? k_init : v_init;
      for (int64_t i = 0; i < kvd; ++i) {
        const size_t e = size_t(row) * size_t(kvd) + size_t(i);
        bool ok;
        if (!written) {
          ok = std::memcmp(&cache[e * esize], &init[e * esize], esize) == 0;
        } else {
          const size_t j = size_t(row - c.pos0) * size_t(stride) + size_t(qd + which * kvd + i);
          if (kv_dtype == DType::F32) {
            float f;
            std::memcpy(&f, &cache[e * 4], 4);
            ok = bits(f) == bits(got[j]);
          } else {
            uint16_t h;
            std::memcpy(&h, &cache[e * 2], 2);
            ok = h == f32_to_bf16(got[j]) &&
                 std::fabs(bf16_to_f32(h) - want[j]) <= std::ldexp(std::fabs(want[j]), -8) + 2e-5f * (1.0f + std::fabs(want[j]));
          }
        }
        if (!ok && ++bad <= 8)
          ADD_FAILURE() << (which == 0 ? "k" : "v") << " cache row " << row << (written ? " (written)" : " (not written)")
                        << " element " << i;
      }
    }
  }
  EXPECT_EQ(bad, 0) << bad << " cache elements wrong";
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // name, nh, nkv, hd, rotary, interleaved, norm, bias, clip, T, pos0, pad
      {"qwen3-moe decode", 32, 4, 128, 128, false, QkNormMode::PerHead, false, 0.0f, 1, 0},
      {"qwen3-moe decode late", 32, 4, 128, 128, false, QkNormMode::PerHead, false, 0.0f, 1, 4093},
      {"qwen3-moe prefill", 32, 4, 128, 128, false, QkNormMode::PerHead, false, 0.0f, 19, 37},
      {"qwen2-moe biases", 28, 4, 128, 128, false, QkNormMode::None, true, 0.0f, 5, 3},
      {"small qwen2 biases hd64", 14, 2, 64, 64, false, QkNormMode::None, true, 0.0f, 3, 0},
      {"olmoe whole projection", 16, 16, 128, 128, false, QkNormMode::WholeProjection, false, 0.0f, 6, 11},
      {"whole projection + clip + bias", 16, 4, 64, 64, false, QkNormMode::WholeProjection, true, 1.0f, 4, 2},
      {"per-head + clip + bias, interleaved", 8, 2, 128, 128, true, QkNormMode::PerHead, true, 1.0f, 3, 100},
      {"partial interleaved rotary (glm)", 16, 2, 128, 64, true, QkNormMode::None, true, 0.0f, 4, 9},
      {"partial rotate-half rotary", 12, 4, 256, 64, false, QkNormMode::PerHead, false, 0.0f, 2, 5000},
      {"hd 256 full rotary", 16, 8, 256, 256, false, QkNormMode::PerHead, false, 0.0f, 2, 7},
      {"odd head dim 80, rotary 40", 10, 5, 80, 40, false, QkNormMode::PerHead, true, 0.0f, 3, 1},
      {"GQA group 16, many heads", 64, 4, 128, 128, false, QkNormMode::WholeProjection, false, 0.0f, 2, 1},
      {"MHA, no rotary, clip only", 4, 4, 64, 0, false, QkNormMode::None, false, 0.5f, 2, 0},
      {"padded row stride", 8, 2, 64, 32, true, QkNormMode::PerHead, true, 1.5f, 3, 6, 5},
      {"one head", 1, 1, 64, 64, false, QkNormMode::WholeProjection, true, 0.0f, 2, 0, 0, 10000.0f},
      {"YaRN cos/sin factor (qwen3 x4)", 32, 4, 128, 128, false, QkNormMode::PerHead, false, 0.0f, 3, 50, 0, 1e6f,
       1.1386294f},
  };
  return all;
}

TEST(RopeKernels, QkvPrepareF32Cache) {
  MOE_REQUIRE_GPU();
  for (const Case& c : cases()) run_case(c, DType::F32);
}

TEST(RopeKernels, QkvPrepareBf16Cache) {
  MOE_REQUIRE_GPU();
  for (const Case& c : cases()) run_case(c, DType::BF16);
}

// pos0 lives on the device and is read at run time: the same launch parameters with a new value in
// pos0 write the next cache row (what a replayed CUDA graph relies on).
TEST(RopeKernels, PositionReadOnDevice) {
  MOE_REQUIRE_GPU();
  const int nh = 4, nkv = 2, hd = 64, kvd = nkv * hd, stride = nh * hd + 2 * kvd, capacity = 8;
  std::vector<float> freq(hd / 2);
  for (int i = 0; i < hd / 2; ++i) freq[size_t(i)] = float(1.0 / std::pow(10000.0, double(2 * i) / hd));
  DeviceVector<float> dfreq(freq), dk(std::vector<float>(size_t(capacity) * kvd, 0.0f)),
      dv(std::vector<float>(size_t(capacity) * kvd, 0.0f));
  DeviceVector<int32_t> dpos(std::vector<int32_t>{0});
  QkvPrepareParams p;
  p.n_heads = nh, p.n_kv_heads = nkv, p.head_dim = hd, p.rotary_dim = hd, p.inv_freq = dfreq.get();
  p.k_cache = dk.get(), p.v_cache = dv.get();
  const std::vector<float> row = random_floats(size_t(stride), 99u);
  for (int step = 0; step < 3; ++step) {
    dpos.upload(std::vector<int32_t>{step});
    DeviceVector<float> dqkv(row);
    qkv_prepare(dqkv.get(), dqkv.get() + nh * hd, dqkv.get() + nh * hd + kvd, stride, 1, dpos.get(), p, nullptr);
    std::vector<float> want(row.begin() + nh * hd, row.begin() + nh * hd + kvd);
    for (int h = 0; h < nkv; ++h) ref_rope(&want[size_t(h * hd)], step, hd, false, freq, 1.0f);
    const std::vector<float> k = dk.download(), v = dv.download();
    for (int i = 0; i < kvd; ++i) {
      ASSERT_NEAR(k[size_t(step * kvd + i)], want[size_t(i)], 2e-5f * (1.0f + std::fabs(want[size_t(i)])))
          << "step " << step << " element " << i;
      ASSERT_EQ(v[size_t(step * kvd + i)], row[size_t(nh * hd + kvd + i)]);
    }
    for (int r = step + 1; r < capacity; ++r)
      for (int i = 0; i < kvd; ++i) ASSERT_EQ(k[size_t(r * kvd + i)], 0.0f) << "row " << r << " written early";
  }
}

// Decode: qkv_decode (the QKV projection with each head prepared in the last block to finish its rows)
// gives bit for bit what linear_decode followed by qkv_prepare gives: q, k, v and both caches; two
// launches at consecutive positions on the same counters, which each launch leaves at 0. The cases of
// qkv_prepare above that it takes (no whole-projection norm, no padded rows); the others are refused.
TEST(RopeKernels, QkvDecodeEqualsProjectionThenPrepare) {
  MOE_REQUIRE_GPU();
  const int cols = 136;
  for (const Case& c : cases()) {
    if (c.pad != 0) continue;
    SCOPED_TRACE(c.name);
    const int nh = c.nh, nkv = c.nkv, hd = c.hd;
    const int64_t qd = int64_t(nh) * hd, kvd = int64_t(nkv) * hd, rows = qd + 2 * kvd;
    std::vector<float> freq(size_t(std::max(1, c.rotary_dim / 2)));
    for (int i = 0; i < c.rotary_dim / 2; ++i)
      freq[size_t(i)] = float(1.0 / std::pow(double(c.theta), double(2 * i) / double(c.rotary_dim)));
    std::vector<float> w = random_floats(size_t(rows) * cols, 71u, 0.3f);
    const std::vector<uint8_t> w_bf16 = test::stored_as(DType::BF16, w);
    DeviceVector<uint8_t> dw(w_bf16);
    const DeviceMatrix W{dw.get(), DType::BF16, rows, cols};
    DeviceVector<float> dx(random_floats(size_t(cols), 72u, 1.0f)), dfreq(freq);
    DeviceVector<float> dqb(random_floats(size_t(qd), 73u, 0.5f)), dkb(random_floats(size_t(kvd), 74u, 0.5f)),
        dvb(random_floats(size_t(kvd), 75u, 0.5f));
    const size_t norm_n = size_t(c.norm == QkNormMode::WholeProjection ? qd : hd);
    DeviceVector<float> dqn(random_floats(norm_n, 76u, 1.5f)), dkn(random_floats(norm_n, 77u, 1.5f));
    QkvPrepareParams p = params_of(c, dfreq.get(), {dqb.get(), dkb.get(), dvb.get()}, dqn.get(), dkn.get());
    if (qkv_decode_counters(p) == 0) {
      EXPECT_TRUE(c.norm == QkNormMode::WholeProjection || hd % 8 != 0) << "refused without a reason";
      continue;
    }
    EXPECT_EQ(qkv_decode_counters(p), nh + 2 * nkv);
    for (const DType kv : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(dtype_name(kv));
      const int capacity = c.pos0 + 2;
      const size_t cache_bytes = size_t(capacity) * size_t(kvd) * dtype_size(kv);
      DeviceVector<uint8_t> k_two(std::vector<uint8_t>(cache_bytes, 0x5a)), v_two(std::vector<uint8_t>(cache_bytes, 0xa5));
      DeviceVector<uint8_t> k_one(std::vector<uint8_t>(cache_bytes, 0x5a)), v_one(std::vector<uint8_t>(cache_bytes, 0xa5));
      DeviceVector<float> q_two{size_t(rows)}, q_one{size_t(rows)};
      DeviceVector<unsigned> counters(std::vector<unsigned>(size_t(nh + 2 * nkv), 0u));
      DeviceVector<int32_t> dpos(std::vector<int32_t>{c.pos0});
      p.kv_dtype = kv;
      for (int step = 0; step < 2; ++step) {
        SCOPED_TRACE("position " + std::to_string(c.pos0 + step));
        dpos.upload(std::vector<int32_t>{c.pos0 + step});
        p.k_cache = k_two.get();
        p.v_cache = v_two.get();
        linear_decode(W, dx.get(), q_two.get(), false, nullptr);
        qkv_prepare(q_two.get(), q_two.get() + qd, q_two.get() + qd + kvd, rows, 1, dpos.get(), p, nullptr);
        p.k_cache = k_one.get();
        p.v_cache = v_one.get();
        qkv_decode(W, dx.get(), q_one.get(), dpos.get(), p, counters.get(), nullptr);
        EXPECT_EQ(q_one.download(), q_two.download()) << "q, k, v";
        EXPECT_EQ(k_one.download(), k_two.download()) << "K cache";
        EXPECT_EQ(v_one.download(), v_two.download()) << "V cache";
        EXPECT_EQ(counters.download(), std::vector<unsigned>(size_t(nh + 2 * nkv), 0u));
      }
    }
  }
}

}  // namespace
}  // namespace moe::cuda
