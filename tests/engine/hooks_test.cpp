// The hook protocol (ask/observe, levels) and router interventions, on the tiny golden checkpoints.
// Interventions are checked against transformers (tests/make_intervention_goldens.py): masked experts
// and the dense mode (top-k = all experts) give transformers' logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>

#include "engine/backend/cpu/matmul.h"
#include "engine/common/error.h"
#include "engine/formats/safetensors.h"
#include "engine/hooks/interventions.h"
#include "engine/model/model.h"
#include "engine/runtime/session.h"

namespace moe {
namespace {

const std::string kModels = std::string(MOE_TEST_DATA_DIR) + "/models/";

template <typename T>
std::vector<T> read(const TensorView& v) {
  std::vector<T> out(size_t(v.numel()));
  if (v.nbytes) std::memcpy(out.data(), v.data, v.nbytes);
  return out;
}

// Keeps every record a level asks for; the level may change between steps.
struct Recorder : StepObserver {
  HookLevel level = HookLevel::Routing;
  std::vector<AttentionRowRequest> rows;
  int attention_topk = 8;
  std::vector<StepRecord> records;
  HookRequest ask() const override {
    HookRequest r = HookRequest::for_level(level, rows);
    r.attention_topk = attention_topk;
    return r;
  }
  void observe(const StepRecord& r) override { records.push_back(r); }
};

// max |a − b| ≤ tol · max |b| per row of V values.
void expect_logits_near(const std::vector<float>& a, const std::vector<float>& b, int V, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t t = 0; t < a.size() / size_t(V); ++t) {
    float mx = 0, diff = 0;
    for (int v = 0; v < V; ++v) {
      mx = std::max(mx, std::abs(b[t * size_t(V) + size_t(v)]));
      diff = std::max(diff, std::abs(a[t * size_t(V) + size_t(v)] - b[t * size_t(V) + size_t(v)]));
    }
    EXPECT_LE(diff, tol * mx) << "position " << t;
  }
}

std::vector<int32_t> ids_of(const std::vector<int64_t>& v) { return std::vector<int32_t>(v.begin(), v.end()); }

class InterventionGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(InterventionGolden, MaskedExpertsMatchTransformersAndAreNeverSelected) {
  const std::string dir = kModels + GetParam();
  auto golden = SafetensorsFile::open(dir + "/interventions.safetensors");
  const auto& t = golden->tensors();
  const auto prompt = ids_of(read<int64_t>(t.at("prompt_ids")));
  const auto mask = nlohmann::json::parse(golden->metadata().at("mask"));
  auto model = Model::load(dir);
  const int V = model->spec().vocab_size;

  Interventions iv;
  for (auto& [layer, experts] : mask.items())
    iv.layer(std::stoi(layer), model->spec().n_layers).masked = experts.get<std::vector<int32_t>>();
  BackendOptions opt;
  opt.threads = 2;
  opt.prefill_chunk = 5;
  Session session(*model, opt);
  session.set_interventions(iv);
  Recorder rec;
  const auto logits = session.score(prompt, &rec);
  expect_logits_near(logits, read<float>(t.at("mask_logits")), V, 1e-4f);

  // The experts transformers selected under the mask, as sets, per MoE layer and token.
  const auto topk = read<int64_t>(t.at("mask_topk"));
  const auto& shape = t.at("mask_topk").shape;  // [M, T, k]
  const size_t M = size_t(shape[0]), T = size_t(shape[1]), K = size_t(shape[2]);
  ASSERT_EQ(T, prompt.size());
  for (const StepRecord& r : rec.records) {
    ASSERT_EQ(r.moe_layers.size(), M);
    for (int tt = 0; tt < r.n_tokens; ++tt)
      for (size_t m = 0; m < M; ++m) {
        std::vector<int32_t> ours(&r.expert_ids[(size_t(tt) * M + m) * K], &r.expert_ids[(size_t(tt) * M + m) * K] + K);
        std::vector<int32_t> ref;
        for (size_t j = 0; j < K; ++j) ref.push_back(int32_t(topk[(m * T + size_t(r.first_position + tt)) * K + j]));
        std::sort(ours.begin(), ours.end());
        std::sort(ref.begin(), ref.end());
        EXPECT_EQ(ours, ref) << "layer " << r.moe_layers[m] << " token " << r.first_position + tt;
        if (const LayerIntervention* li = iv.at(r.moe_layers[m])) {
          for (int32_t e : ours) EXPECT_EQ(std::count(li->masked.begin(), li->masked.end(), e), 0);
        }
      }
  }
}

TEST_P(InterventionGolden, TopKAllExpertsIsTheDenseModeOfTransformers) {
  const std::string dir = kModels + GetParam();
  auto golden = SafetensorsFile::open(dir + "/interventions.safetensors");
  const auto& t = golden->tensors();
  auto model = Model::load(dir);
  const ModelSpec& s = model->spec();
  Interventions iv;
  parse_intervention("--router-top-k", "all", s, iv);
  Session session(*model, BackendOptions{2, 256, 7});
  session.set_interventions(iv);
  Recorder rec;
  const auto logits = session.score(ids_of(read<int64_t>(t.at("prompt_ids"))), &rec);
  expect_logits_near(logits, read<float>(t.at("dense_logits")), s.vocab_size, 1e-4f);
  ASSERT_FALSE(rec.records.empty());
  const StepRecord& r = rec.records.front();
  EXPECT_EQ(r.top_k, s.moe.n_experts);
  std::vector<int32_t> first(r.expert_ids.begin(), r.expert_ids.begin() + s.moe.n_experts);
  std::sort(first.begin(), first.end());
  std::vector<int32_t> all(size_t(s.moe.n_experts));
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(first, all);
}

INSTANTIATE_TEST_SUITE_P(Cases, InterventionGolden, ::testing::Values("qwen3_moe", "olmoe"));

TEST(Interventions, ForcedExpertsAreAlwaysSelectedAndBiasMovesTheRouter) {
  auto model = Model::load(kModels + "qwen3_moe");
  const ModelSpec& s = model->spec();
  const std::vector<int32_t> prompt = {5, 17, 42, 99, 123, 7, 64};
  Interventions iv;
  parse_intervention("--force", "0:6", s, iv);
  parse_intervention("--router-bias", "1:3=50", s, iv);  // overwhelming: expert 3 wins every token
  Session session(*model, BackendOptions{1, 64, 64});
  session.set_interventions(iv);
  Recorder rec;
  session.score(prompt, &rec);
  const StepRecord& r = rec.records.at(0);
  const size_t M = r.moe_layers.size(), K = size_t(r.top_k);
  for (int t = 0; t < r.n_tokens; ++t) {
    const int32_t* l0 = &r.expert_ids[(size_t(t) * M + 0) * K];
    const int32_t* l1 = &r.expert_ids[(size_t(t) * M + 1) * K];
    EXPECT_NE(std::find(l0, l0 + K, 6), l0 + K) << "token " << t;
    EXPECT_EQ(l1[0], 3) << "token " << t;  // first slot = largest weight
    EXPECT_GT(r.expert_weights[(size_t(t) * M + 1) * K], 0.99f);
  }
  EXPECT_EQ(session.interventions().to_json(), R"({"0":{"forced":[6]},"1":{"router_bias":[0.0,0.0,0.0,50.0,0.0,0.0,0.0,0.0]}})");
}

// GLM-4.5's router keeps 2 of 4 groups (2 experts each), scored by their two best candidates, and
// selects 3. Masking one expert of every group leaves each group one candidate: every group scores −inf,
// the tie keeps groups 0 and 1, whose candidates 1 and 3 are chosen for every token, and the third
// expert must come from the other groups (5 or 7) rather than leave a slot empty.
TEST(Interventions, MasksThatEmptyTheKeptGroupsLeaveTheSelectionFull) {
  auto model = Model::load(kModels + "glm4_moe");
  const ModelSpec& s = model->spec();
  ASSERT_TRUE(s.moe.group_limited());
  ASSERT_EQ(s.moe.n_group, 4);
  ASSERT_EQ(s.moe.topk_group, 2);
  ASSERT_EQ(s.moe.top_k, 3);
  Interventions iv;
  parse_intervention("--mask", "1:0,2,4,6", s, iv);
  Session session(*model, BackendOptions{1, 64, 64});
  session.set_interventions(iv);
  Recorder rec;
  session.score({5, 17, 42, 99, 123, 7, 64}, &rec);
  const StepRecord& r = rec.records.at(0);
  const size_t M = r.moe_layers.size(), K = size_t(r.top_k);
  ASSERT_EQ(r.moe_layers, (std::vector<int>{1, 2}));
  for (int t = 0; t < r.n_tokens; ++t) {
    std::vector<int32_t> ids(&r.expert_ids[size_t(t) * M * K], &r.expert_ids[size_t(t) * M * K] + K);
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids[0], 1) << "token " << t;
    EXPECT_EQ(ids[1], 3) << "token " << t;
    EXPECT_TRUE(ids[2] == 5 || ids[2] == 7) << "token " << t << ": " << ids[2];
  }
}

TEST(Interventions, InvalidOnesNameTheField) {
  auto model = Model::load(kModels + "qwen3_moe_sparse_step");  // has dense layers
  const ModelSpec& s = model->spec();
  auto message = [&](const std::string& flag, const std::string& value) -> std::string {
    try {
      Interventions iv;
      parse_intervention(flag, value, s, iv);
      iv.validate(s);
    } catch (const EngineError& e) {
      return e.what();
    }
    return "accepted";
  };
  int dense = 0;
  while (s.layer_is_moe[size_t(dense)]) ++dense;
  EXPECT_NE(message("--mask", std::to_string(dense) + ":1").find("not an MoE layer"), std::string::npos);
  EXPECT_NE(message("--mask", "all:99").find("interventions.mask"), std::string::npos);
  EXPECT_NE(message("--router-top-k", "0").find("--router-top-k"), std::string::npos);
  EXPECT_NE(message("--router-top-k", std::to_string(s.moe.n_experts + 1)).find("interventions.top_k"), std::string::npos);
  EXPECT_NE(message("--force", "all:0,1,2,3,4,5").find("do not fit top-k"), std::string::npos);
  EXPECT_NE(message("--mask", "all:0,1,2,3,4").find("leaves fewer than top-k"), std::string::npos);
  EXPECT_NE(message("--mask", "all:x").find("--mask"), std::string::npos);
  EXPECT_NE(message("--mask", "1").find("LAYERS:VALUES"), std::string::npos);
  EXPECT_NE(message("--mask", "99:1").find("outside"), std::string::npos);
  EXPECT_EQ(message("--mask", "all:1"), "accepted");
}

// On Qwen3-MoE and on DeepSeek-V2's latent attention, whose heads share one cached latent (both with
// softmax routers, whose probabilities sum to 1).
TEST(Hooks, LevelsRecordWhatTheyPromiseAndNeverChangeTheLogits) {
  for (const char* name : {"qwen3_moe", "deepseek_v2"}) {
    SCOPED_TRACE(name);
    auto model = Model::load(kModels + name);
    const ModelSpec& s = model->spec();
    const std::vector<int32_t> prompt = {5, 17, 42, 99, 123, 7, 64, 200, 3};
    Session plain(*model, BackendOptions{2, 64, 4});
    const auto reference = plain.score(prompt);

    Session session(*model, BackendOptions{2, 64, 4});
    Recorder rec;
    rec.level = HookLevel::Off;
    EXPECT_EQ(session.score(prompt, &rec), reference);
    EXPECT_TRUE(rec.records.empty());  // nothing asked, nothing handed over

    rec.level = HookLevel::Routing;
    EXPECT_EQ(session.score(prompt, &rec), reference);
    ASSERT_EQ(rec.records.size(), 3u);  // chunks of 4, 4, 1
    EXPECT_EQ(rec.records[1].first_position, 4);
    EXPECT_EQ(rec.records[2].n_tokens, 1);
    EXPECT_EQ(rec.records[2].tokens, std::vector<int32_t>{3});
    const StepRecord& r = rec.records[0];
    const size_t M = r.moe_layers.size();
    EXPECT_TRUE(r.router_probs.empty());
    EXPECT_TRUE(r.attn_entropy.empty());
    for (size_t i = 0; i < r.router_entropy.size(); ++i) {
      EXPECT_GT(r.router_entropy[i], 0.0f);
      EXPECT_LE(r.router_entropy[i], 1.0f + 1e-6f);
      EXPECT_GE(r.top1_margin[i], 0.0f);
    }
    for (size_t i = 0; i + 1 < size_t(r.top_k); ++i) EXPECT_GE(r.expert_weights[i], r.expert_weights[i + 1]);

    rec.records.clear();
    rec.level = HookLevel::Full;
    EXPECT_EQ(session.score(prompt, &rec), reference);
    const StepRecord& f = rec.records.at(0);
    const size_t E = size_t(s.moe.n_experts), L = size_t(s.n_layers), Hh = size_t(s.attn.n_heads);
    ASSERT_EQ(f.router_probs.size(), size_t(f.n_tokens) * M * E);
    for (size_t tm = 0; tm < size_t(f.n_tokens) * M; ++tm) {
      double sum = 0, p1 = 0;
      for (size_t e = 0; e < E; ++e) sum += f.router_probs[tm * E + e], p1 = std::max(p1, double(f.router_probs[tm * E + e]));
      EXPECT_NEAR(sum, 1.0, 1e-5);
      // The top-1 expert of the record has the largest probability.
      EXPECT_FLOAT_EQ(f.router_probs[tm * E + size_t(f.expert_ids[tm * size_t(f.top_k)])], float(p1));
    }
    ASSERT_EQ(f.attn_entropy.size(), size_t(f.n_tokens) * L * Hh);
    for (int t = 0; t < f.n_tokens; ++t)
      for (size_t lh = 0; lh < L * Hh; ++lh) {
        const size_t i = size_t(t) * L * Hh + lh;
        const double keys = double(f.first_position + t + 1);
        EXPECT_GE(f.attn_entropy[i], -1e-6f);
        EXPECT_LE(f.attn_entropy[i], std::log(keys) + 1e-5);
        EXPECT_LE(f.attn_max[i], f.attn_topk_mass[i] + 1e-6f);
        EXPECT_LE(f.attn_topk_mass[i], 1.0f + 1e-6f);
        EXPECT_GE(f.attn_max[i], 1.0 / keys - 1e-6);
        if (t == 0) {  // the first token sees only itself
          EXPECT_FLOAT_EQ(f.attn_first_mass[i], 1.0f);
          EXPECT_NEAR(f.attn_entropy[i], 0.0f, 1e-6f);
        }
      }
    ASSERT_EQ(f.hidden_norm.size(), size_t(f.n_tokens) * L);
    for (float n : f.hidden_norm) EXPECT_GT(n, 0.0f);
    ASSERT_EQ(f.layer_time_s.size(), L);
    EXPECT_GT(std::accumulate(f.layer_time_s.begin(), f.layer_time_s.end(), 0.0), 0.0);
  }
}

// On Qwen3-MoE and on DeepSeek-V3's latent attention.
TEST(Hooks, AttentionRowsOfChosenHeadsSumToOne) {
  for (const char* name : {"qwen3_moe", "deepseek_v3"}) {
    SCOPED_TRACE(name);
    auto model = Model::load(kModels + name);
    Session session(*model, BackendOptions{1, 64, 64});
    Recorder rec;
    rec.level = HookLevel::AttentionMaps;
    rec.rows = {{1, 0}, {0, 1}, {99, 0}};  // the last one does not exist: ignored
    rec.attention_topk = 3;
    GenerateOptions g;
    g.max_new_tokens = 3;
    g.sampling.greedy = true;
    session.generate({5, 17, 42, 99}, g, {}, &rec);
    ASSERT_EQ(rec.records.size(), 3u);  // prefill + 2 decode steps (the last token is not run)
    const StepRecord& d = rec.records.back();
    ASSERT_EQ(d.attention_rows.size(), 2u);
    const size_t L = size_t(d.n_layers), H = size_t(d.n_heads);
    for (const auto& row : d.attention_rows) {
      EXPECT_EQ(row.position, 5);
      ASSERT_EQ(row.weights.size(), 6u);
      EXPECT_NEAR(std::accumulate(row.weights.begin(), row.weights.end(), 0.0), 1.0, 1e-5);
      // The statistics of the same head agree with its row: −Σ w log w, max, first-token mass.
      double entropy = 0;
      for (float w : row.weights) entropy -= w > 0 ? double(w) * std::log(double(w)) : 0.0;
      const size_t i = size_t(row.layer) * H + size_t(row.head);  // the step's only token
      ASSERT_LT(i, L * H);
      EXPECT_NEAR(d.attn_entropy[i], entropy, 1e-5);
      EXPECT_FLOAT_EQ(d.attn_max[i], *std::max_element(row.weights.begin(), row.weights.end()));
      EXPECT_FLOAT_EQ(d.attn_first_mass[i], row.weights[0]);
      std::vector<float> sorted = row.weights;  // top-k mass, k = 3 of the 6 keys
      std::sort(sorted.rbegin(), sorted.rend());
      EXPECT_NEAR(d.attn_topk_mass[i], sorted[0] + sorted[1] + sorted[2], 1e-6);
    }
  }
}

// The same agreement on rows long enough for the vectorised statistics (top-k over blocks of 8 keys,
// the entropy's sum in double over 16 keys at a time, their tails), on the SIMD and the scalar path,
// for k = 8 (the default) and k = 5, and for every head of every layer.
TEST(Hooks, AttentionStatisticsOfLongRowsMatchTheirRows) {
  auto model = Model::load(kModels + "qwen3_moe");
  std::vector<int32_t> prompt;
  for (int i = 0; i < 45; ++i) prompt.push_back(int32_t((i * 37 + 11) % 500));
  struct RestorePath {  // even when an ASSERT below ends the test early
    bool saved = cpu::force_scalar();
    ~RestorePath() { cpu::set_force_scalar(saved); }
  } restore;
  for (bool scalar : {false, true}) {
    if (!scalar && !cpu::simd_supported()) continue;
    cpu::set_force_scalar(scalar);
    for (int k : {8, 5}) {
      Session session(*model, BackendOptions{2, 128, 16});
      Recorder rec;
      rec.level = HookLevel::AttentionMaps;
      for (int l = 0; l < model->spec().n_layers; ++l)
        for (int h = 0; h < model->spec().attn.n_heads; ++h) rec.rows.push_back({l, h});
      rec.attention_topk = k;
      GenerateOptions g;
      g.max_new_tokens = 4;
      g.sampling.greedy = true;
      session.generate(prompt, g, {}, &rec);
      ASSERT_EQ(rec.records.size(), 6u);  // prefill chunks of 16, 16, 13 + 3 decode steps
      for (const StepRecord& d : rec.records) {
        const size_t H = size_t(d.n_heads), L = size_t(d.n_layers), last = size_t(d.n_tokens - 1);
        ASSERT_EQ(d.attention_rows.size(), L * H);
        for (const auto& row : d.attention_rows) {
          ASSERT_EQ(row.weights.size(), size_t(row.position) + 1);
          double entropy = 0;
          for (float w : row.weights) entropy -= w > 0 ? double(w) * std::log(double(w)) : 0.0;
          std::vector<float> sorted = row.weights;
          std::sort(sorted.rbegin(), sorted.rend());
          double mass = 0;
          for (int j = 0; j < k; ++j) mass += sorted[size_t(j)];
          const size_t i = (last * L + size_t(row.layer)) * H + size_t(row.head);  // the step's last token
          const std::string where = "position " + std::to_string(row.position) + " layer " + std::to_string(row.layer) +
                                    " head " + std::to_string(row.head) + (scalar ? " scalar" : " simd") + " k " + std::to_string(k);
          EXPECT_NEAR(d.attn_entropy[i], entropy, 1e-5) << where;
          EXPECT_FLOAT_EQ(d.attn_max[i], sorted[0]) << where;
          EXPECT_FLOAT_EQ(d.attn_first_mass[i], row.weights[0]) << where;
          EXPECT_NEAR(d.attn_topk_mass[i], mass, 1e-6) << where;
        }
      }
    }
  }
}

// GPT-OSS: a sliding-window layer's row is zero before the window; every row gives some weight to its
// head's sink, so it sums to less than 1; the statistics describe the same weights (entropy of the
// weights as they are, top-k mass of the keys, no first-token mass once position 0 left the window).
TEST(Hooks, SinksAndWindowsShowInTheRowsAndTheirStatistics) {
  auto model = Model::load(kModels + "gpt_oss");
  const ModelSpec& spec = model->spec();
  ASSERT_EQ(spec.window(0), 4);
  ASSERT_EQ(spec.window(1), 0);
  for (int k : {3, 8}) {
    Session session(*model, BackendOptions{2, 64, 4});
    Recorder rec;
    rec.level = HookLevel::AttentionMaps;
    for (int l = 0; l < spec.n_layers; ++l)
      for (int h = 0; h < spec.attn.n_heads; ++h) rec.rows.push_back({l, h});
    rec.attention_topk = k;
    GenerateOptions g;
    g.max_new_tokens = 3;
    g.sampling.greedy = true;
    session.generate({5, 17, 42, 99, 7, 123, 64, 200, 33, 9}, g, {}, &rec);
    for (const StepRecord& d : rec.records) {
      const size_t H = size_t(d.n_heads), L = size_t(d.n_layers), last = size_t(d.n_tokens - 1);
      for (const auto& row : d.attention_rows) {
        const int window = spec.window(row.layer);
        const std::string where = "position " + std::to_string(row.position) + " layer " + std::to_string(row.layer) +
                                  " head " + std::to_string(row.head) + " k " + std::to_string(k);
        ASSERT_EQ(row.weights.size(), size_t(row.position) + 1) << where;
        const int first = window > 0 ? std::max(0, row.position + 1 - window) : 0;
        for (int j = 0; j <= row.position; ++j) {
          if (j < first) EXPECT_EQ(row.weights[size_t(j)], 0.0f) << where << " key " << j;
          else EXPECT_GT(row.weights[size_t(j)], 0.0f) << where << " key " << j;
        }
        const double sum = std::accumulate(row.weights.begin(), row.weights.end(), 0.0);
        EXPECT_LT(sum, 1.0 - 1e-4) << where;  // the sink took its share
        EXPECT_GT(sum, 0.0) << where;
        double entropy = 0;
        for (float w : row.weights) entropy -= w > 0 ? double(w) * std::log(double(w)) : 0.0;
        std::vector<float> sorted = row.weights;
        std::sort(sorted.rbegin(), sorted.rend());
        double mass = 0;
        for (int j = 0; j < k && j <= row.position; ++j) mass += sorted[size_t(j)];
        const size_t i = (last * L + size_t(row.layer)) * H + size_t(row.head);
        EXPECT_NEAR(d.attn_entropy[i], entropy, 1e-5) << where;
        EXPECT_FLOAT_EQ(d.attn_max[i], sorted[0]) << where;
        EXPECT_FLOAT_EQ(d.attn_first_mass[i], row.weights[0]) << where;
        EXPECT_NEAR(d.attn_topk_mass[i], mass, 1e-6) << where;
      }
    }
  }
}

}  // namespace
}  // namespace moe
