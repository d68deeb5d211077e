// The latent attention's own kernels (engine/backend/cuda/kernels/attention_latent.cuh) against scalar
// references written here that follow the CPU backend's mla_attention_block: the cache row (kv_a's
// output + bias, the latent RMSNorm'd, k_pe rotated at the token's position) and q-LoRA's norm; the
// absorbed queries [W_UK_hᵀ·q_nope ; RoPE(q_pe)]; each head's values W_UV_h · latent. The attention
// itself is in attention_test.cpp (LatentAttention), next to the reference it shares.
//
// Shapes: DeepSeek-V2/V3's (12 heads here, so the token blocks and the 512-wide latent are real) and the
// golden checkpoints' (4 heads, latent 32, q_nope 16, rope 8, v 12). Tolerances: the norms are F32 tree
// sums against double ones (2e-5 relative, as norm_test.cpp); the absorption and expansion are F32 dot
// products of ≤ 512 terms of values ≤ 1 (1e-5 absolute); a BF16 cache holds the reference rounded to
// BF16, within one rounding (2^-8 relative) of it.
#include "engine/backend/cuda/kernels/attention_latent.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/common/dtype.h"
#include "tests/cuda/gpu_test_support.h"

namespace moe::cuda {
namespace {

using test::DeviceVector;
using test::random_floats;

struct Case {
  std::string name;
  int nh, kv_lora, rope, nope, v, q_lora;
  bool interleaved;
  int T, pos0;
};

const std::vector<Case> kCases = {
    {"deepseek-v3-like", 12, 512, 64, 128, 128, 96, true, 11, 37},
    {"deepseek-v2-lite-like, rotate-half", 12, 512, 64, 128, 128, 0, false, 9, 0},
    {"golden-like", 4, 32, 8, 16, 12, 24, true, 3, 5},
};

LatentShape shape_of(const Case& c, int capacity, DType kv) {
  LatentShape s;
  s.n_heads = c.nh;
  s.kv_lora = c.kv_lora;
  s.rope_dim = c.rope;
  s.qk_nope = c.nope;
  s.v_dim = c.v;
  s.capacity = capacity;
  s.kv_dtype = kv;
  s.scale = 0.1f;
  return s;
}

std::vector<float> inv_freq_of(int rope) {
  std::vector<float> f(size_t(rope / 2));
  for (size_t i = 0; i < f.size(); ++i) f[i] = std::pow(10000.0f, -2.0f * float(i) / float(rope));
  return f;
}

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want, double abs_tol, double rel_tol,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::fabs(double(got[i]) - double(want[i])) <= abs_tol + rel_tol * std::fabs(double(want[i]))) && ++bad <= 3)
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << want.size() << " values out of tolerance";
}

TEST(LatentPrepare, CacheRowsAndQLoraNormMatchTheReference) {
  MOE_REQUIRE_GPU();
  for (const Case& c : kCases)
    for (DType kv : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(c.name + (kv == DType::BF16 ? " bf16" : " f32"));
      const int row = c.kv_lora + c.rope, capacity = c.pos0 + c.T + 2, ql = c.q_lora;
      const int64_t stride = ql + row + 3;  // [q_a | kv_a] rows of the fused projection, padded
      const auto in = random_floats(size_t(c.T) * size_t(stride), 1, 2.0f);
      const auto kv_bias = random_floats(size_t(row), 2, 0.5f);
      const auto kv_norm = random_floats(size_t(c.kv_lora), 3, 1.5f);
      const auto q_bias = random_floats(size_t(ql), 4, 0.5f);
      const auto q_norm = random_floats(size_t(ql), 5, 1.5f);
      const auto inv = inv_freq_of(c.rope);
      const float factor = 1.0247f, eps = 1e-6f;

      const size_t es = dtype_size(kv);
      std::vector<uint8_t> sentinel(size_t(capacity) * size_t(row) * es, 0x5a);
      DeviceVector<uint8_t> cache(sentinel);
      DeviceVector<float> d_in(in), d_kv_bias(kv_bias), d_kv_norm(kv_norm), d_q_bias(q_bias), d_q_norm(q_norm), d_inv(inv);
      DeviceVector<float> q_out(size_t(c.T) * size_t(ql));
      DeviceVector<int32_t> pos(std::vector<int32_t>{c.pos0});
      LatentPrepareParams p;
      p.kv_bias = d_kv_bias.get();
      p.kv_norm = d_kv_norm.get();
      p.eps = eps;
      p.cache = cache.get();
      if (ql) {
        p.q_lora = ql;
        p.q_in = d_in.get();
        p.q_in_stride = stride;
        p.q_bias = d_q_bias.get();
        p.q_norm = d_q_norm.get();
        p.q_out = q_out.get();
      }
      const LatentRope rope{d_inv.get(), factor, c.interleaved};
      latent_prepare(d_in.get() + ql, stride, c.T, pos.get(), shape_of(c, capacity, kv), rope, p, nullptr);

      const auto got = cache.download();
      std::vector<float> want_q;
      for (int t = 0; t < c.T; ++t) {
        std::vector<float> r(in.begin() + long(t * stride + ql), in.begin() + long(t * stride + ql + row));
        for (int i = 0; i < row; ++i) r[size_t(i)] += kv_bias[size_t(i)];
        test::ref_rmsnorm(r.data(), kv_norm.data(), c.kv_lora, eps);
        test::ref_rope(r.data() + c.kv_lora, c.pos0 + t, c.rope, c.interleaved, inv, factor);
        std::vector<float> g(static_cast<size_t>(row));
        const size_t at = size_t(c.pos0 + t) * size_t(row);
        for (int i = 0; i < row; ++i) {
          if (kv == DType::BF16) {
            uint16_t b;
            std::memcpy(&b, &got[(at + size_t(i)) * 2], 2);
            g[size_t(i)] = bf16_to_f32(b);
          } else {
            std::memcpy(&g[size_t(i)], &got[(at + size_t(i)) * 4], 4);
          }
        }
        expect_near_all(g, r, 1e-6, kv == DType::BF16 ? 4e-3 : 2e-5, "cache row " + std::to_string(c.pos0 + t));
        if (ql) {
          std::vector<float> q(in.begin() + long(t * stride), in.begin() + long(t * stride + ql));
          for (int i = 0; i < ql; ++i) q[size_t(i)] += q_bias[size_t(i)];
          test::ref_rmsnorm(q.data(), q_norm.data(), ql, eps);
          want_q.insert(want_q.end(), q.begin(), q.end());
        }
      }
      // Rows of other positions are untouched.
      for (int r : {c.pos0 - 1, c.pos0 + c.T}) {
        if (r < 0) continue;
        const size_t at = size_t(r) * size_t(row) * es;
        EXPECT_TRUE(std::equal(got.begin() + long(at), got.begin() + long(at + size_t(row) * es), sentinel.begin()))
            << "row " << r << " was written";
      }
      if (ql) expect_near_all(q_out.download(), want_q, 1e-6, 2e-5, "q_a's norm");
    }
}

TEST(LatentAbsorbAndExpand, MatchTheReference) {
  MOE_REQUIRE_GPU();
  for (const Case& c : kCases)
    for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
      SCOPED_TRACE(c.name + " weights " + std::string(dtype_name(wt)));
      const int row = c.kv_lora + c.rope, qh = c.nope + c.rope;
      const int64_t q_stride = int64_t(c.nh) * qh + 5;
      auto w = random_floats(size_t(c.nh) * size_t(c.nope + c.v) * size_t(c.kv_lora), 11, 0.1f);
      const auto w_bytes = test::stored_as(wt, w);  // w now holds the stored values
      DeviceVector<uint8_t> d_w(w_bytes);
      const DeviceMatrix kv_b{d_w.get(), wt, int64_t(c.nh) * (c.nope + c.v), c.kv_lora};
      const auto q = random_floats(size_t(c.T) * size_t(q_stride), 12, 1.0f);
      const auto latent = random_floats(size_t(c.T) * size_t(c.nh) * size_t(c.kv_lora), 13, 1.0f);
      const auto inv = inv_freq_of(c.rope);
      DeviceVector<float> d_q(q), d_latent(latent), d_inv(inv);
      DeviceVector<float> q_abs(size_t(c.T) * size_t(c.nh) * size_t(row));
      DeviceVector<float> values(size_t(c.T) * size_t(c.nh) * size_t(c.v));
      DeviceVector<int32_t> pos(std::vector<int32_t>{c.pos0});
      const LatentShape s = shape_of(c, c.pos0 + c.T, DType::F32);
      const LatentRope rope{d_inv.get(), 1.0f, c.interleaved};
      latent_absorb_queries(d_q.get(), q_stride, c.T, pos.get(), kv_b, s, rope, q_abs.get(), nullptr);
      latent_expand_values(d_latent.get(), c.T, kv_b, s, values.get(), nullptr);

      std::vector<float> want_q, want_v;
      for (int t = 0; t < c.T; ++t)
        for (int h = 0; h < c.nh; ++h) {
          const float* qn = &q[size_t(t * q_stride + h * qh)];
          const float* wuk = &w[size_t(h) * size_t(c.nope + c.v) * size_t(c.kv_lora)];
          for (int col = 0; col < c.kv_lora; ++col) {
            double a = 0;
            for (int i = 0; i < c.nope; ++i) a += double(qn[i]) * double(wuk[size_t(i) * size_t(c.kv_lora) + size_t(col)]);
            want_q.push_back(float(a));
          }
          std::vector<float> pe(qn + c.nope, qn + qh);
          test::ref_rope(pe.data(), c.pos0 + t, c.rope, c.interleaved, inv, 1.0f);
          want_q.insert(want_q.end(), pe.begin(), pe.end());
          const float* lat = &latent[(size_t(t) * size_t(c.nh) + size_t(h)) * size_t(c.kv_lora)];
          const float* wuv = wuk + size_t(c.nope) * size_t(c.kv_lora);
          for (int j = 0; j < c.v; ++j) {
            double a = 0;
            for (int i = 0; i < c.kv_lora; ++i) a += double(wuv[size_t(j) * size_t(c.kv_lora) + size_t(i)]) * double(lat[i]);
            want_v.push_back(float(a));
          }
        }
      expect_near_all(q_abs.download(), want_q, 1e-5, 1e-5, "absorbed queries");
      expect_near_all(values.download(), want_v, 1e-5, 1e-5, "head values");
    }
}

TEST(LatentKernels, RejectBadShapes) {
  MOE_REQUIRE_GPU();
  LatentShape s = shape_of(kCases[2], 16, DType::F32);
  s.kv_lora = 30;  // not a multiple of 4
  EXPECT_ANY_THROW(latent_attention(nullptr, 1, nullptr, nullptr, s, 8, nullptr, nullptr, nullptr, nullptr));
  s = shape_of(kCases[2], 16, DType::F16);
  EXPECT_ANY_THROW(latent_prepare(nullptr, 0, 1, nullptr, s, LatentRope{}, LatentPrepareParams{}, nullptr));
  s = shape_of(kCases[2], 16, DType::F32);
  const DeviceMatrix wrong{nullptr, DType::BF16, 10, 32};
  EXPECT_ANY_THROW(latent_expand_values(nullptr, 1, wrong, s, nullptr, nullptr));
  EXPECT_ANY_THROW(latent_attention(nullptr, 1, nullptr, nullptr, s, 0, nullptr, nullptr, nullptr, nullptr));
}

}  // namespace
}  // namespace moe::cuda
