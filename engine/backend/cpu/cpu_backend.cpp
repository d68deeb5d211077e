// The CPU forward pass, written once against ModelSpec (SPECS.md §0–§8):
//   x = embed[tokens]
//   per layer:  a = RMSNorm(x);  q,k,v = proj(a) (+bias);  q/k norm (per head or whole projection);
//               clip; RoPE; append k,v to the cache; causal GQA attention; x += o_proj(attn)
//               (sliding-window layers see only the last W keys; GPT-OSS's sinks join each softmax)
//               m = RMSNorm(x);  x += MoE(m) (router (+bias) softmax → top-k → renorm? → scale; experts
//                               with biases and GPT-OSS's clamped gate; shared expert) or MLP(m) (SwiGLU)
//   logits = lm_head(RMSNorm(x))
// Weights are read in place in their stored dtype; activations and accumulation are F32.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/matmul.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/step_record_setup.h"
#include "engine/backend/weight_rows.h"
#include "engine/common/error.h"
#include "engine/common/ggml_quants.h"
#include "engine/hooks/interventions.h"
#include "engine/model/model.h"
#include "engine/model/rope_frequencies.h"

namespace moe {
namespace {

using cpu::MatrixRef;
using cpu::ThreadPool;

MatrixRef ref(const WeightMatrix& w) { return MatrixRef{w.data, w.dtype, w.rows, w.cols, w.scales, w.row_step, w.tiles}; }

// y = w ⊙ x / sqrt(mean(x²) + eps), in place over n values.
void rmsnorm(float* x, const float* w, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float r = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * r * w[i];
}

float silu(float z) { return z / (1.0f + std::exp(-z)); }
float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(const Model& model, const BackendOptions& opt)
      : s_(model.spec()), w_(model.weights()), pool_(opt.threads) {
    if (!model.has_weights()) throw EngineError("", "weights", "this model describes shapes only and has no weights to run");
    capacity_ = std::max(1, std::min(opt.max_context, s_.max_positions > 0 ? s_.max_positions : opt.max_context));
    chunk_ = std::max(1, opt.prefill_chunk);
    const size_t per_layer = size_t(capacity_) * size_t(s_.kv_dim());
    k_cache_.assign(size_t(s_.n_layers) * per_layer, 0.0f);
    if (!s_.attn.is_mla()) v_cache_.assign(size_t(s_.n_layers) * per_layer, 0.0f);  // MLA: V is the latent in K's rows
    inv_freq_ = rope_inv_freq(s_.attn);  // as HF computes them (plain or YaRN)
    for (int l = 0; l < s_.n_layers; ++l)
      if (s_.layer_is_moe[size_t(l)]) moe_layers_.push_back(l);
    max_k_ = s_.moe.top_k;
    resize_buffers(chunk_);
  }

  std::string describe() const override {
    return "CPU, " + std::to_string(pool_.size()) + " threads, " + cpu::simd_path();
  }
  int cached() const override { return n_cached_; }
  void truncate(int n) override { n_cached_ = std::clamp(n, 0, n_cached_); }
  int capacity() const override { return capacity_; }
  size_t kv_cache_bytes_allocated() const override { return (k_cache_.size() + v_cache_.size()) * sizeof(float); }
  size_t workspace_bytes() const override {
    size_t floats = inv_freq_.capacity() + weights_.capacity() + stats_scratch_.capacity() + slot_weight_.capacity();
    for (const auto* b : {&x_, &a_, &q_, &k_, &v_, &attn_, &y_, &scores_, &gate_, &up_, &xe_, &ye_, &router_, &q_lora_,
                          &q_absorbed_, &latent_out_, &head_out_, &w_uk_})
      floats += b->capacity();
    size_t ints = selected_.capacity() + expert_order_.capacity() + order_k_.capacity() + slot_token_.capacity();
    size_t record = rec_.expert_ids.capacity() * 4 + rec_.expert_weights.capacity() * 4 + rec_.router_probs.capacity() * 4 +
                    (rec_.attn_entropy.capacity() + rec_.attn_max.capacity() + rec_.attn_topk_mass.capacity() +
                     rec_.attn_first_mass.capacity()) * 4;
    return floats * sizeof(float) + ints * sizeof(int32_t) + record;
  }
  size_t kv_cache_bytes_per_token() const override {
    return size_t(s_.kv_rows_per_token()) * size_t(s_.n_layers) * size_t(s_.kv_dim()) * sizeof(float);
  }

  void set_interventions(const Interventions& iv) override {
    iv.validate(s_);
    iv_ = iv;
    max_k_ = iv_.max_top_k(s_);
    resize_buffers(chunk_);
  }

  void forward(std::span<const int32_t> tokens, bool all_logits, float* logits, StepObserver* obs, StepTags tags) override {
    check_forward_input(tokens, n_cached_, capacity_, s_.vocab_size);
    for (size_t begin = 0; begin < tokens.size(); begin += size_t(chunk_)) {
      const int T = int(std::min(tokens.size() - begin, size_t(chunk_)));
      const bool last_chunk = begin + size_t(T) == tokens.size();
      float* out = nullptr;
      if (logits && all_logits) out = logits + begin * size_t(s_.vocab_size);
      else if (logits && last_chunk) out = logits;
      // Ask before the step; nothing is computed or copied for a request nobody made.
      req_ = obs ? obs->ask() : HookRequest{};
      const bool record = obs && req_.any();
      const auto t0 = std::chrono::steady_clock::now();
      if (record) begin_record(tokens.subspan(begin, size_t(T)), tags, begin);
      run_chunk(tokens.subspan(begin, size_t(T)), out, all_logits, record);
      if (record) {
        rec_.step_time_s = seconds_since(t0);
        obs->observe(rec_);
      }
    }
  }

 private:
  void resize_buffers(int T) {
    const size_t H = size_t(s_.hidden), t = size_t(T);
    x_.resize(t * H);
    a_.resize(t * H);
    q_.resize(t * size_t(s_.q_dim()));
    k_.resize(t * size_t(s_.kv_dim()));
    v_.resize(s_.attn.is_mla() ? 0 : t * size_t(s_.kv_dim()));  // MLA: no separate V rows
    attn_.resize(t * size_t(std::max(s_.q_dim(), s_.attn_out_dim())));
    if (s_.attn.is_mla()) {
      const auto& m = s_.attn.mla;
      const size_t nh = size_t(s_.attn.n_heads);
      q_lora_.resize(t * size_t(m.q_lora_rank));
      q_absorbed_.resize(t * nh * size_t(s_.kv_dim()));
      latent_out_.resize(nh * t * size_t(m.kv_lora_rank));
      head_out_.resize(nh * t * size_t(m.v_head_dim));
      w_uk_.resize(size_t(pool_.size()) * size_t(m.qk_nope_dim) * size_t(m.kv_lora_rank));
    }
    y_.resize(t * H);
    scores_.resize(size_t(pool_.size()) * size_t(capacity_));
    const size_t ffn = size_t(std::max({s_.dense_ffn, s_.moe.expert_ffn, s_.moe.shared_ffn, 1}));
    gate_.resize(t * ffn);
    up_.resize(t * ffn);
    xe_.resize(t * H);
    ye_.resize(t * H);
    router_.resize(t * size_t(std::max(1, s_.moe.n_experts)));
    expert_order_.reserve(size_t(std::max(1, s_.moe.n_experts)));
    slot_token_.resize(t);  // each token selects an expert at most once
    slot_weight_.resize(t);
    selected_.resize(t * size_t(max_k_));
    weights_.resize(t * size_t(max_k_));
    // Per pool thread: the row's shifted scores (capacity_) and the top-k buffer (k ≤ keys ≤ capacity_).
    stats_scratch_.resize(2 * scores_.size());
  }

  void begin_record(std::span<const int32_t> tokens, const StepTags& tags, size_t offset) {
    const bool has_gate = std::any_of(moe_layers_.begin(), moe_layers_.end(),
                                      [&](int l) { return bool(w_.layers[size_t(l)].shared_gate); });
    prepare_step_record(rec_, req_, RecordShape{&s_, &moe_layers_, max_k_, has_gate, n_cached_}, tokens, tags, offset);
  }

  void run_chunk(std::span<const int32_t> tokens, float* logits, bool all_logits, bool record) {
    const int T = int(tokens.size());
    const int64_t H = s_.hidden;
    for (int t = 0; t < T; ++t) weight_row_to_f32(w_.embed, tokens[size_t(t)], &x_[size_t(t * H)]);
    for (int l = 0; l < s_.n_layers; ++l) {
      const auto t0 = std::chrono::steady_clock::now();
      attention_block(l, T, record);
      if (s_.layer_is_moe[size_t(l)]) moe_block(l, T, record);
      else mlp_block(l, T);
      if (record && req_.hidden_norms)
        for (int t = 0; t < T; ++t) {
          const float* xt = &x_[size_t(t * H)];
          rec_.hidden_norm[size_t(t) * size_t(s_.n_layers) + size_t(l)] = float(std::sqrt(cpu::dot_f32_f64(xt, xt, H)));
        }
      if (record && req_.layer_times) rec_.layer_time_s[size_t(l)] = seconds_since(t0);
    }
    if (!logits) {
      n_cached_ += T;
      return;
    }
    const int first = all_logits ? 0 : T - 1;
    const int n = T - first;
    for (int t = first; t < T; ++t) rmsnorm(&x_[size_t(t * H)], w_.final_norm.data(), H, s_.rms_eps);
    cpu::matmul(pool_, ref(w_.lm_head), &x_[size_t(first * H)], n, logits);
    n_cached_ += T;
  }

  // x += o_proj(attention(RMSNorm(x)))
  void attention_block(int l, int T, bool record) {
    if (s_.attn.is_mla()) return mla_attention_block(l, T, record);
    const auto& L = w_.layers[size_t(l)];
    const auto& A = s_.attn;
    const int64_t H = s_.hidden, qd = s_.q_dim(), kvd = s_.kv_dim(), hd = A.head_dim;
    std::copy(x_.begin(), x_.begin() + T * H, a_.begin());
    for (int t = 0; t < T; ++t) rmsnorm(&a_[size_t(t * H)], L.attn_norm.data(), H, s_.rms_eps);
    cpu::matmul(pool_, ref(L.q), a_.data(), T, q_.data());
    cpu::matmul(pool_, ref(L.k), a_.data(), T, k_.data());
    cpu::matmul(pool_, ref(L.v), a_.data(), T, v_.data());
    for (int t = 0; t < T; ++t) {
      float* q = &q_[size_t(t * qd)];
      float* k = &k_[size_t(t * kvd)];
      float* v = &v_[size_t(t * kvd)];
      if (!L.q_bias.empty()) {
        for (int64_t i = 0; i < qd; ++i) q[i] += L.q_bias[size_t(i)];
        for (int64_t i = 0; i < kvd; ++i) k[i] += L.k_bias[size_t(i)];
        for (int64_t i = 0; i < kvd; ++i) v[i] += L.v_bias[size_t(i)];
      }
      if (A.qk_norm == QkNorm::PerHead) {
        for (int h = 0; h < A.n_heads; ++h) rmsnorm(q + h * hd, L.q_norm.data(), hd, s_.rms_eps);
        for (int h = 0; h < A.n_kv_heads; ++h) rmsnorm(k + h * hd, L.k_norm.data(), hd, s_.rms_eps);
      } else if (A.qk_norm == QkNorm::WholeProjection) {
        rmsnorm(q, L.q_norm.data(), qd, s_.rms_eps);
        rmsnorm(k, L.k_norm.data(), kvd, s_.rms_eps);
      }
      if (A.clip_qkv > 0) {
        for (float* p : {q, k, v}) {
          const int64_t n = p == q ? qd : kvd;
          for (int64_t i = 0; i < n; ++i) p[i] = std::clamp(p[i], -A.clip_qkv, A.clip_qkv);
        }
      }
      const int pos = n_cached_ + t;
      for (int h = 0; h < A.n_heads; ++h) rope(q + h * hd + A.rope_offset, pos);
      for (int h = 0; h < A.n_kv_heads; ++h) rope(k + h * hd + A.rope_offset, pos);
      const size_t slot = (size_t(l) * size_t(capacity_) + size_t(pos)) * size_t(kvd);
      std::memcpy(&k_cache_[slot], k, size_t(kvd) * sizeof(float));
      std::memcpy(&v_cache_[slot], v, size_t(kvd) * sizeof(float));
    }
    const float* kc = &k_cache_[size_t(l) * size_t(capacity_) * size_t(kvd)];
    const float* vc = &v_cache_[size_t(l) * size_t(capacity_) * size_t(kvd)];
    AttendLayout g;
    g.q = q_.data(), g.q_token_stride = qd, g.q_head_stride = hd, g.qk_len = hd;
    g.k = kc, g.v = vc, g.row_stride = kvd, g.kv_head_stride = hd, g.v_len = hd;
    g.group = A.n_heads / A.n_kv_heads;
    g.out = attn_.data(), g.out_token_stride = qd, g.out_head_stride = hd;
    attend(l, T, record, g);
    cpu::matmul(pool_, ref(L.o), attn_.data(), T, y_.data());
    add_attention_output(L, T);
  }

  // x += y (+ the o_proj bias) over the chunk.
  void add_attention_output(const LayerWeights& L, int T) {
    const int64_t H = s_.hidden;
    for (int64_t i = 0; i < T * H; ++i) x_[size_t(i)] += y_[size_t(i)] + (L.o_bias.empty() ? 0.0f : L.o_bias[size_t(i % H)]);
  }

  // Where attend() finds each (token, head)'s query, its KV head's cache rows and its output.
  struct AttendLayout {
    const float* q = nullptr;
    int64_t q_token_stride = 0, q_head_stride = 0, qk_len = 0;  // q·k over qk_len values
    const float* k = nullptr;         // the layer's cache rows (row_stride apart), K at kv_head · kv_head_stride
    const float* v = nullptr;         // V likewise, v_len values
    int64_t row_stride = 0, kv_head_stride = 0, v_len = 0;
    int group = 1;                    // query heads per KV head
    float* out = nullptr;
    int64_t out_token_stride = 0, out_head_stride = 0;
  };

  // Causal attention over the cache (this chunk's rows already written), one (token, head) pair per
  // work item, with the hook statistics. A sliding-window layer sees only the last `window` keys; a
  // head's sink logit (GPT-OSS) joins the softmax denominator and weighs no value.
  void attend(int l, int T, bool record, const AttendLayout& g) {
    const auto& A = s_.attn;
    const float scale = A.scale();
    const int64_t items = int64_t(T) * A.n_heads;
    const int window = s_.window(l);
    const float* sinks = w_.layers[size_t(l)].sinks.empty() ? nullptr : w_.layers[size_t(l)].sinks.data();
    // Work items are split in contiguous chunks, one chunk per pool thread: chunk i uses score row i.
    std::atomic<int> next_row{0};
    const bool stats = record && req_.attention_stats;
    pool_.parallel_for(items, [&](int64_t b, int64_t e) {
      const size_t row = size_t(next_row.fetch_add(1));
      float* sc = &scores_[row * size_t(capacity_)];
      float* shifted = &stats_scratch_[2 * row * size_t(capacity_)];  // score − max of each key (stats only)
      float* topk = shifted + capacity_;
      for (int64_t it = b; it < e; ++it) {
        const int t = int(it / A.n_heads), h = int(it % A.n_heads);
        const int64_t kv_off = int64_t(h / g.group) * g.kv_head_stride;
        const int n_keys = n_cached_ + t + 1;
        const int first = window > 0 ? std::max(0, n_keys - window) : 0;  // the first key this query sees
        const int n = n_keys - first;  // sc[j] belongs to key first + j
        const float* q = g.q + t * g.q_token_stride + h * g.q_head_stride;
        const float* k = g.k + int64_t(first) * g.row_stride + kv_off;
        const float* v = g.v + int64_t(first) * g.row_stride + kv_off;
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) {
          sc[j] = cpu::dot_f32(q, k + j * g.row_stride, g.qk_len) * scale;
          mx = std::max(mx, sc[j]);
        }
        const float shift = sinks ? std::max(mx, sinks[h]) : mx;
        // The softmax numerators e^x, x = score − shift, and their sum, in the same order at every hook
        // level (the logits must not depend on the level). With attention statistics asked for, x is
        // also kept: the entropy needs Σ e^x·x, and accumulating that here, across the call to exp,
        // would put a double add per key through a register spilled around the call (a profile put
        // that line at ~3% of a decode step of the demo model); one store per key here and a
        // vectorised dot product afterwards cost far less.
        float sum = 0;
        for (int j = 0; j < n; ++j) {
          const float x = sc[j] - shift;
          if (stats) shifted[j] = x;
          sc[j] = std::exp(x);
          sum += sc[j];
        }
        const float denominator = sinks ? sum + std::exp(sinks[h] - shift) : sum;
        float* out = g.out + t * g.out_token_stride + h * g.out_head_stride;
        std::fill(out, out + g.v_len, 0.0f);
        const float inv = 1.0f / denominator;
        if (record) record_attention(l, t, h, AttendRow{sc, shifted, sum, inv, std::exp(mx - shift) * inv, first, n_keys}, T, topk);
        for (int j = 0; j < n; ++j) cpu::axpy_f32(sc[j] * inv, v + j * g.row_stride, out, g.v_len);
      }
    });
  }

  // Multi-head latent attention in the absorbed form (SPECS.md §6.3–6.4). The cache row of a token is
  // [c ; k_pe]: the normed latent (kv_lora) and the RoPE'd shared key part. Each head's query becomes
  // [W_UK_hᵀ·q_nope_h ; q_pe_h], so the scores are the naive form's q_h·k_h; the head attends over the
  // latents, and W_UV_h turns the weighted latent into its value output. The same scores and outputs as
  // expanding K and V per head, for a cache of kv_lora + rope values per token and layer.
  void mla_attention_block(int l, int T, bool record) {
    const auto& L = w_.layers[size_t(l)];
    const auto& A = s_.attn;
    const auto& m = A.mla;
    const int64_t H = s_.hidden, nh = A.n_heads, qk = A.head_dim, nope = m.qk_nope_dim, rope_dims = A.rotary_dim;
    const int64_t kl = m.kv_lora_rank, kvd = s_.kv_dim(), vd = m.v_head_dim, qd = s_.q_dim();
    std::copy(x_.begin(), x_.begin() + T * H, a_.begin());
    for (int t = 0; t < T; ++t) rmsnorm(&a_[size_t(t * H)], L.attn_norm.data(), H, s_.rms_eps);
    if (L.q_a) {  // q-LoRA: q_b(RMSNorm(q_a(a)))
      const int64_t ql = m.q_lora_rank;
      cpu::matmul(pool_, ref(L.q_a), a_.data(), T, q_lora_.data());
      for (int t = 0; t < T; ++t) {
        float* r = &q_lora_[size_t(t * ql)];
        for (int64_t i = 0; i < ql && !L.q_a_bias.empty(); ++i) r[i] += L.q_a_bias[size_t(i)];
        rmsnorm(r, L.q_a_norm.data(), ql, s_.rms_eps);
      }
      cpu::matmul(pool_, ref(L.q), q_lora_.data(), T, q_.data());
    } else {
      cpu::matmul(pool_, ref(L.q), a_.data(), T, q_.data());
    }
    cpu::matmul(pool_, ref(L.kv_a), a_.data(), T, k_.data());
    float* kc = &k_cache_[size_t(l) * size_t(capacity_) * size_t(kvd)];
    for (int t = 0; t < T; ++t) {
      float* row = &k_[size_t(t * kvd)];
      for (int64_t i = 0; i < kvd && !L.kv_a_bias.empty(); ++i) row[i] += L.kv_a_bias[size_t(i)];
      rmsnorm(row, L.kv_a_norm.data(), kl, s_.rms_eps);
      const int pos = n_cached_ + t;
      rope(row + kl, pos);
      for (int64_t h = 0; h < nh; ++h) rope(&q_[size_t(t * qd + h * qk + nope)], pos);
      std::memcpy(kc + size_t(pos) * size_t(kvd), row, size_t(kvd) * sizeof(float));
    }
    // Absorb W_UK into the queries, one head per work item: W_UK_h (nope × kv_lora, kv_b's first nope rows
    // of the head) is converted to F32 once per chunk, then q_abs = Σ_i q_nope[i] · W_UK_h[i].
    const size_t kvb_row = row_bytes(L.kv_b.dtype, kl);
    const auto* kvb = static_cast<const std::byte*>(L.kv_b.data);
    std::atomic<int> next_scratch{0};
    pool_.parallel_for(nh, [&](int64_t b, int64_t e) {
      float* w = &w_uk_[size_t(next_scratch.fetch_add(1)) * size_t(nope * kl)];
      for (int64_t h = b; h < e; ++h) {
        for (int64_t i = 0; i < nope; ++i) weight_row_to_f32(L.kv_b, h * (nope + vd) + i, w + i * kl);
        for (int t = 0; t < T; ++t) {
          const float* qh = &q_[size_t(t * qd + h * qk)];
          float* out = &q_absorbed_[size_t((t * nh + h) * kvd)];
          std::fill(out, out + kl, 0.0f);
          for (int64_t i = 0; i < nope; ++i) cpu::axpy_f32(qh[i], w + i * kl, out, kl);
          std::copy(qh + nope, qh + nope + rope_dims, out + kl);
        }
      }
    });
    AttendLayout g;
    g.q = q_absorbed_.data(), g.q_token_stride = nh * kvd, g.q_head_stride = kvd, g.qk_len = kvd;
    g.k = kc, g.v = kc, g.row_stride = kvd, g.kv_head_stride = 0, g.v_len = kl;  // one KV head; V = the latent
    g.group = int(nh);
    g.out = latent_out_.data(), g.out_token_stride = kl, g.out_head_stride = T * kl;  // [head][token][kv_lora]
    attend(l, T, record, g);
    // Each head's value output W_UV_h · latent (kv_b's last v rows of the head), then o_proj.
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t first = h * (nope + vd) + nope;
      const cpu::MatrixRef w_uv{kvb + size_t(first) * kvb_row, L.kv_b.dtype, vd, kl, nullptr, 1, L.kv_b.tiles.from_row(first)};
      cpu::matmul(pool_, w_uv, &latent_out_[size_t(h * T * kl)], T, &head_out_[size_t(h * T * vd)]);
    }
    for (int t = 0; t < T; ++t)
      for (int64_t h = 0; h < nh; ++h)
        std::copy_n(&head_out_[size_t((h * T + t) * vd)], vd, &attn_[size_t(t * nh * vd + h * vd)]);
    cpu::matmul(pool_, ref(L.o), attn_.data(), T, y_.data());
    add_attention_output(L, T);
  }

  // One attention row as attend() leaves it: e[j] = e^x for the key first + j, x = score − shift (kept in
  // `shifted` when statistics are asked for), sum = Σ e^x and inv = 1 / (sum + the sink's e^x), so that
  // e[j] · inv is the key's weight; max_weight is the largest of them.
  struct AttendRow {
    const float* e;
    const float* shifted;
    float sum, inv, max_weight;
    int first, n_keys;
  };

  // attn.stats and attn.rows of one (token, head); topk is scratch for the top-k sum. The statistics
  // describe the weights the values are mixed with: with a sink they sum to less than 1.
  void record_attention(int l, int t, int h, const AttendRow& r, int T, float* topk) {
    const int n = r.n_keys - r.first;
    if (req_.attention_stats) {
      // Entropy from the softmax sums, with no logarithm per key: with w = e^x · inv, Z = 1 / inv,
      //   −Σ w log w = Σ w · (log Z − x) = (sum / Z) · log Z − Σ e^x·x / Z.
      // Σ e^x·x is accumulated in double (dot_f32_f64), as the fused loop did before.
      const double z = 1.0 / double(r.inv);
      double entropy = double(r.sum) / z * std::log(z) - cpu::dot_f32_f64(r.e, r.shifted, n) / z;
      entropy = std::max(entropy, 0.0);  // rounding can leave −1e-7 for a one-hot row
      // Top-k mass: with no more keys than k it is all of the keys' mass, and no key needs looking at.
      const int k = std::min(n, std::max(1, req_.attention_topk));
      const float mass = (k == n ? r.sum : cpu::topk_sum_f32(r.e, n, k, topk)) * r.inv;
      const size_t i = (size_t(t) * size_t(s_.n_layers) + size_t(l)) * size_t(s_.attn.n_heads) + size_t(h);
      rec_.attn_entropy[i] = float(entropy);
      rec_.attn_max[i] = r.max_weight;
      rec_.attn_topk_mass[i] = std::min(mass, 1.0f);
      rec_.attn_first_mass[i] = r.first == 0 ? r.e[0] * r.inv : 0.0f;  // position 0 out of the window: none
    }
    if (t == T - 1)
      for (auto& row : rec_.attention_rows)
        if (row.layer == l && row.head == h) {
          row.weights.assign(size_t(r.n_keys), 0.0f);
          for (int j = 0; j < n; ++j) row.weights[size_t(r.first + j)] = r.e[j] * r.inv;
        }
  }

  // Rotary embedding of one head's rotated dims (x: the first of them) at position pos (rotate-half or
  // interleaved pairs); YaRN scales cos and sin by its attention factor.
  void rope(float* x, int pos) const {
    const int half = s_.attn.rotary_dim / 2;
    const float f = s_.attn.rope_attention_factor;
    for (int i = 0; i < half; ++i) {
      const float angle = float(pos) * inv_freq_[size_t(i)];
      const float c = std::cos(angle) * f, sn = std::sin(angle) * f;
      const int a = s_.attn.rope_style == RopeStyle::RotateHalf ? i : 2 * i;
      const int b = s_.attn.rope_style == RopeStyle::RotateHalf ? i + half : 2 * i + 1;
      const float x0 = x[a], x1 = x[b];
      x[a] = x0 * c - x1 * sn;
      x[b] = x1 * c + x0 * sn;
    }
  }

  // The FFN input m = RMSNorm_post(x) for every token of the chunk, into a_.
  void ffn_norm(int l, int T) {
    const int64_t H = s_.hidden;
    std::copy(x_.begin(), x_.begin() + T * H, a_.begin());
    for (int t = 0; t < T; ++t) rmsnorm(&a_[size_t(t * H)], w_.layers[size_t(l)].ffn_norm.data(), H, s_.rms_eps);
  }

  // out[n, H] = down( silu(gate·in) ⊙ (up·in) ) for n token rows; with the projections' biases when the
  // weights have them, and GPT-OSS's clamped gate when `clamped` (MoeSpec::glu_limit).
  void swiglu(const SwiGluWeights& w, const float* in, int n, float* out, bool clamped = false) {
    const int64_t I = w.gate.rows, H = w.down.rows;
    const float limit = s_.moe.glu_limit, alpha = s_.moe.glu_alpha;
    pool_.parallel_for(I, [&](int64_t b, int64_t e) {
      cpu::matmul_rows(ref(w.gate), in, n, gate_.data(), b, e);
      cpu::matmul_rows(ref(w.up), in, n, up_.data(), b, e);
      for (int t = 0; t < n; ++t)
        for (int64_t r = b; r < e; ++r) {
          const size_t i = size_t(t * I + r);
          float g = gate_[i], u = up_[i];
          if (!w.gate_bias.empty()) g += w.gate_bias[size_t(r)], u += w.up_bias[size_t(r)];
          if (clamped) {
            g = std::min(g, limit);
            u = std::clamp(u, -limit, limit);
            gate_[i] = (u + 1.0f) * g * sigmoid(alpha * g);
          } else {
            gate_[i] = silu(g) * u;
          }
        }
    });
    cpu::matmul(pool_, ref(w.down), gate_.data(), n, out);
    if (!w.down_bias.empty())
      for (int t = 0; t < n; ++t)
        for (int64_t j = 0; j < H; ++j) out[size_t(t * H + j)] += w.down_bias[size_t(j)];
  }

  void mlp_block(int l, int T) {
    ffn_norm(l, T);
    swiglu(w_.layers[size_t(l)].mlp, a_.data(), T, y_.data());
    for (size_t i = 0; i < size_t(T) * size_t(s_.hidden); ++i) x_[i] += y_[i];
  }

  void moe_block(int l, int T, bool record) {
    const auto& L = w_.layers[size_t(l)];
    const auto& M = s_.moe;
    const int64_t H = s_.hidden;
    const int E = M.n_experts;
    const LayerIntervention* iv = iv_.at(l);
    const int K = iv && iv->top_k > 0 ? iv->top_k : M.top_k;
    const int KS = max_k_;  // slots per token in selected_/weights_ (unused slots: -1, weight 0)
    ffn_norm(l, T);
    cpu::matmul(pool_, ref(L.router), a_.data(), T, router_.data());
    std::fill(selected_.begin(), selected_.begin() + T * KS, -1);
    std::fill(weights_.begin(), weights_.begin() + T * KS, 0.0f);
    const int m = record ? int(std::find(moe_layers_.begin(), moe_layers_.end(), l) - moe_layers_.begin()) : 0;
    std::vector<int32_t>& order = expert_order_;
    for (int t = 0; t < T; ++t) {
      float* p = &router_[size_t(t) * size_t(E)];
      for (int e = 0; e < int(L.router_logit_bias.size()); ++e) p[e] += L.router_logit_bias[size_t(e)];
      // Interventions on the logits (interventions.h): user bias, then masks.
      if (iv) {
        if (!iv->router_bias.empty())
          for (int e = 0; e < E; ++e) p[e] += iv->router_bias[size_t(e)];
        for (int32_t e : iv->masked) p[e] = -INFINITY;
      }
      // Scores (softmax or sigmoid over all experts, F32), top-k, renormalise, scale.
      if (M.score == RouterScore::Softmax) {
        const float mx = *std::max_element(p, p + E);
        float sum = 0;
        for (int e = 0; e < E; ++e) sum += (p[e] = std::exp(p[e] - mx));
        for (int e = 0; e < E; ++e) p[e] /= sum;
      } else {
        for (int e = 0; e < E; ++e) p[e] = sigmoid(p[e]);
      }
      // Selection: forced experts first, then the best biased scores among the rest (masked excluded).
      int n_sel = 0;
      int32_t* sel = &selected_[size_t(t * KS)];
      if (iv)
        for (int32_t e : iv->forced)
          if (std::find(sel, sel + n_sel, e) == sel + n_sel) sel[n_sel++] = e;
      order.clear();
      for (int e = 0; e < E; ++e)
        if (std::find(sel, sel + n_sel, e) == sel + n_sel && !(iv && is_masked(*iv, e))) order.push_back(e);
      auto biased = [&](int e) { return p[e] + (L.router_bias.empty() ? 0.0f : L.router_bias[size_t(e)]); };
      auto better = [&](int a, int b) { return biased(a) > biased(b) || (biased(a) == biased(b) && a < b); };
      const int rest = K - n_sel;
      // Group-limited: the candidates of the kept groups first, each part in score order; the other
      // groups' experts only when masks leave the kept groups fewer than `rest` candidates.
      const auto mid = M.group_limited() ? keep_best_groups(order, biased) : order.end();
      if (mid - order.begin() >= rest) {
        std::partial_sort(order.begin(), order.begin() + rest, mid, better);
      } else {
        std::sort(order.begin(), mid, better);
        std::partial_sort(mid, order.begin() + rest, order.end(), better);
      }
      for (int j = 0; j < rest; ++j) sel[n_sel++] = order[size_t(j)];
      float wsum = 0;
      for (int j = 0; j < K; ++j) wsum += p[sel[j]];
      for (int j = 0; j < K; ++j) {
        float wj = p[sel[j]];
        if (M.renormalize && wsum > 0) wj /= wsum;
        weights_[size_t(t * KS + j)] = wj * M.routed_scale;
      }
      if (record) record_routing(t, m, p, sel, &weights_[size_t(t * KS)], K);
    }
    // Experts: gather the tokens routed to each expert, run it once over them, scatter-add weighted.
    std::fill(y_.begin(), y_.begin() + T * H, 0.0f);
    for (int e = 0; e < E; ++e) {
      int n = 0;
      for (int t = 0; t < T; ++t)
        for (int j = 0; j < K; ++j)
          if (selected_[size_t(t * KS + j)] == e) {
            std::copy(&a_[size_t(t * H)], &a_[size_t((t + 1) * H)], &xe_[size_t(n * H)]);
            slot_token_[size_t(n)] = t;
            slot_weight_[size_t(n)] = weights_[size_t(t * KS + j)];
            ++n;
          }
      if (n == 0) continue;
      swiglu(L.experts[size_t(e)], xe_.data(), n, ye_.data(), M.glu_limit > 0);
      for (int i = 0; i < n; ++i)
        cpu::axpy_f32(slot_weight_[size_t(i)], &ye_[size_t(i * H)], &y_[size_t(slot_token_[size_t(i)] * H)], H);
    }
    if (M.shared_ffn > 0) {
      swiglu(L.shared, a_.data(), T, ye_.data());
      for (int t = 0; t < T; ++t) {
        float g = 1.0f;
        if (L.shared_gate) {
          float z = 0;
          cpu::matmul_rows(ref(L.shared_gate), &a_[size_t(t * H)], 1, &z, 0, 1);
          g = sigmoid(z);
          if (record && req_.routing && !rec_.shared_gate.empty()) rec_.shared_gate[size_t(t) * moe_layers_.size() + size_t(m)] = g;
        }
        cpu::axpy_f32(g, &ye_[size_t(t * H)], &y_[size_t(t * H)], H);
      }
    }
    for (size_t i = 0; i < size_t(T) * size_t(H); ++i) x_[i] += y_[i];
  }

  // Group-limited selection (SPECS.md §6.5, §7): scores each group of n_experts / n_group experts by
  // its candidates' biased scores (the best one, or the sum of the best two; −inf with too few), keeps
  // the topk_group best groups (ties to the lower group) and moves their candidates to the front of
  // `order`, keeping the order within each part. Returns the end of the kept groups' candidates.
  template <typename Biased>
  std::vector<int32_t>::iterator keep_best_groups(std::vector<int32_t>& order, const Biased& biased) {
    const auto& M = s_.moe;
    const int per_group = M.n_experts / M.n_group;
    group_top_.assign(size_t(M.n_group) * 2, -INFINITY);  // per group: best and second-best biased score
    for (int32_t e : order) {
      float* top = &group_top_[size_t(e / per_group) * 2];
      const float v = biased(e);
      if (v > top[0]) top[1] = top[0], top[0] = v;
      else if (v > top[1]) top[1] = v;
    }
    group_rank_.resize(size_t(M.n_group));
    std::iota(group_rank_.begin(), group_rank_.end(), 0);
    auto score = [&](int g) {
      const float* top = &group_top_[size_t(g) * 2];
      return M.group_score == GroupScore::Max ? top[0] : top[0] + top[1];
    };
    std::stable_sort(group_rank_.begin(), group_rank_.end(), [&](int a, int b) { return score(a) > score(b); });
    group_kept_.assign(size_t(M.n_group), 0);
    for (int i = 0; i < M.topk_group; ++i) group_kept_[size_t(group_rank_[size_t(i)])] = 1;
    return std::stable_partition(order.begin(), order.end(),
                                 [&](int32_t e) { return group_kept_[size_t(e / per_group)] != 0; });
  }

  static bool is_masked(const LayerIntervention& iv, int e) {
    return std::find(iv.masked.begin(), iv.masked.end(), e) != iv.masked.end();
  }

  // router.topk and router.probs of token t in MoE layer ordinal m. p: the scores over all experts.
  void record_routing(int t, int m, const float* p, const int32_t* sel, const float* w, int K) {
    const int E = s_.moe.n_experts;
    const size_t M = moe_layers_.size(), tm = size_t(t) * M + size_t(m);
    if (req_.routing) {
      // Selected experts in descending weight order (forced experts may have come first).
      order_k_.resize(size_t(K));
      std::iota(order_k_.begin(), order_k_.end(), 0);
      std::stable_sort(order_k_.begin(), order_k_.end(), [&](int a, int b) { return w[a] > w[b]; });
      for (int j = 0; j < K; ++j) {
        rec_.expert_ids[tm * size_t(max_k_) + size_t(j)] = sel[order_k_[size_t(j)]];
        rec_.expert_weights[tm * size_t(max_k_) + size_t(j)] = w[order_k_[size_t(j)]];
      }
      // Entropy / log E and top-1 margin of the distribution renormalised to sum 1 (sigmoid scores do not).
      double sum = 0;
      for (int e = 0; e < E; ++e) sum += p[e];
      double h = 0, p1 = 0, p2 = 0;
      for (int e = 0; e < E; ++e) {
        const double q = sum > 0 ? p[e] / sum : 0.0;
        if (q > 0) h -= q * std::log(q);
        if (q > p1) p2 = p1, p1 = q;
        else if (q > p2) p2 = q;
      }
      rec_.router_entropy[tm] = E > 1 ? float(h / std::log(double(E))) : 0.0f;
      rec_.top1_margin[tm] = float(p1 - p2);
    }
    if (req_.router_probs) std::copy(p, p + E, &rec_.router_probs[tm * size_t(E)]);
  }

  const ModelSpec& s_;
  const ModelWeights& w_;
  ThreadPool pool_;
  int capacity_ = 0;
  int chunk_ = 0;
  int n_cached_ = 0;
  std::vector<float> k_cache_, v_cache_;  // [layer][position][kv_dim]
  std::vector<float> inv_freq_;
  // Chunk buffers, [T, width] row-major.
  std::vector<float> x_, a_, q_, k_, v_, attn_, y_, scores_, gate_, up_, xe_, ye_, router_;
  // MLA: q-LoRA rows [T, q_lora], absorbed queries [T, nh, kv_dim], latent outputs [nh, T, kv_lora], head
  // outputs [nh, T, v], and one W_UK_h in F32 per pool thread.
  std::vector<float> q_lora_, q_absorbed_, latent_out_, head_out_, w_uk_;
  std::vector<int32_t> selected_;  // [T][max_k_]
  std::vector<float> weights_;
  std::vector<int32_t> expert_order_;  // router scratch: candidate expert ids sorted by score
  std::vector<int> order_k_;           // record scratch: slots sorted by weight
  std::vector<float> group_top_;       // router scratch (group-limited): two best scores per group
  std::vector<int> group_rank_;        // groups by score
  std::vector<uint8_t> group_kept_;    // 1 = among the topk_group best
  std::vector<float> stats_scratch_;   // attention statistics scratch, two rows of capacity_ per pool thread
  std::vector<int> moe_layers_;        // layer index of each MoE-layer ordinal
  Interventions iv_;
  int max_k_ = 0;                      // slots per token in the routing buffers
  HookRequest req_;                    // what the observer asked for this step
  StepRecord rec_;                     // reused across steps
  std::vector<int> slot_token_;
  std::vector<float> slot_weight_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(model, options);
}

}  // namespace moe
