// The CPU engine against Hugging Face transformers, on tiny random checkpoints of every family
// (tests/make_goldens.py made them; tests/data/models/README.md lists what each case exercises).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <set>
#include <string>

#include "engine/formats/safetensors.h"
#include "engine/model/model.h"
#include "engine/runtime/session.h"

namespace moe {
namespace {

const std::string kModels = std::string(MOE_TEST_DATA_DIR) + "/models/";

struct Reference {
  std::vector<int32_t> prompt;
  std::vector<float> logits;              // [T, V]
  std::vector<int64_t> topk;              // [n_moe_layers, T, k]
  std::vector<int64_t> shape_topk;
  std::vector<int64_t> router_layers;
  std::vector<int32_t> greedy;
};

template <typename T>
std::vector<T> read(const TensorView& v) {
  std::vector<T> out(size_t(v.numel()));
  if (v.nbytes) std::memcpy(out.data(), v.data, v.nbytes);
  return out;
}

Reference load_reference(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  const auto& t = f->tensors();
  Reference r;
  for (int64_t id : read<int64_t>(t.at("prompt_ids"))) r.prompt.push_back(int32_t(id));
  r.logits = read<float>(t.at("logits"));
  r.topk = read<int64_t>(t.at("router_topk"));
  r.shape_topk = t.at("router_topk").shape;
  r.router_layers = read<int64_t>(t.at("router_layers"));
  for (int64_t id : read<int64_t>(t.at("greedy_ids"))) r.greedy.push_back(int32_t(id));
  return r;
}

// Records every routing decision: [layer][token] → selected experts.
struct RoutingRecorder : StepObserver {
  std::map<int, std::map<int, std::vector<int32_t>>> chosen;
  HookRequest ask() const override { return HookRequest::for_level(HookLevel::Routing); }
  void observe(const StepRecord& r) override {
    const size_t M = r.moe_layers.size(), K = size_t(r.top_k);
    for (int t = 0; t < r.n_tokens; ++t)
      for (size_t m = 0; m < M; ++m) {
        const int32_t* ids = &r.expert_ids[(size_t(t) * M + m) * K];
        chosen[r.moe_layers[m]][r.first_position + t].assign(ids, ids + K);
      }
  }
};

class GoldenModel : public ::testing::TestWithParam<std::string> {};

// A case is a folder of tests/data/models/ holding its reference.safetensors; "NAME.gguf": the folder's
// model.gguf (tests/make_gguf_goldens.py) against the same reference; "NAME.split": the folder's split/
// GGUF parts, opened from the second; or "demo/NAME": the bundled demo
// checkpoint resources/demo/NAME with tests/data/demo/NAME.reference.safetensors
// (tests/make_demo_goldens.py).
std::pair<std::string, std::string> case_paths(const std::string& name) {
  if (name.ends_with(".gguf")) {
    const std::string folder = kModels + name.substr(0, name.size() - 5);
    return {folder + "/model.gguf", folder + "/reference.safetensors"};
  }
  if (name.ends_with(".split")) {
    const std::string folder = kModels + name.substr(0, name.size() - 6);
    return {folder + "/split/model-00002-of-00003.gguf", folder + "/reference.safetensors"};
  }
  if (name.rfind("demo/", 0) == 0) {
    const std::string demo = name.substr(5);
    return {std::string(MOE_TEST_DATA_DIR) + "/../../resources/demo/" + demo,
            std::string(MOE_TEST_DATA_DIR) + "/demo/" + demo + ".reference.safetensors"};
  }
  return {kModels + name, kModels + name + "/reference.safetensors"};
}

TEST_P(GoldenModel, LogitsRoutingAndGreedyMatchTransformers) {
  const auto [dir, reference] = case_paths(GetParam());
  const Reference ref = load_reference(reference);
  auto model = Model::load(dir);
  const int V = model->spec().vocab_size;
  const size_t T = ref.prompt.size();
  ASSERT_EQ(ref.logits.size(), T * size_t(V));

  BackendOptions opt;
  opt.threads = 2;
  opt.prefill_chunk = 5;  // several chunks, so chunked prefill is exercised against the one-pass reference
  Session session(*model, opt);
  RoutingRecorder rec;
  const std::vector<float> logits = session.score(ref.prompt, &rec);

  // Logits: both sides compute in F32 (BF16/F16 cases: the reference upcast the same rounded weights),
  // so they differ only by summation order: max |ours − ref| ≤ 1e-4 · max |ref| at every position.
  for (size_t t = 0; t < T; ++t) {
    float max_ref = 0, max_diff = 0;
    for (int v = 0; v < V; ++v) {
      max_ref = std::max(max_ref, std::fabs(ref.logits[t * V + v]));
      max_diff = std::max(max_diff, std::fabs(logits[t * V + v] - ref.logits[t * V + v]));
    }
    EXPECT_LE(max_diff, 1e-4f * max_ref) << "position " << t;
  }

  // Routing: the same expert set for every MoE layer and token.
  const int64_t n_layers = ref.shape_topk[0], k = ref.shape_topk[2];
  ASSERT_EQ(n_layers, model->spec().n_moe_layers());
  for (int64_t i = 0; i < n_layers; ++i) {
    const int layer = int(ref.router_layers[size_t(i)]);
    ASSERT_TRUE(model->spec().layer_is_moe[size_t(layer)]) << "layer " << layer;
    for (size_t t = 0; t < T; ++t) {
      std::set<int64_t> want, got;
      for (int64_t j = 0; j < k; ++j) want.insert(ref.topk[size_t((i * int64_t(T) + int64_t(t)) * k + j)]);
      for (int32_t e : rec.chosen[layer][int(t)]) got.insert(e);
      EXPECT_EQ(got, want) << "layer " << layer << " token " << t;
    }
  }
  // Dense layers report no routing.
  for (int l = 0; l < model->spec().n_layers; ++l) {
    if (!model->spec().layer_is_moe[size_t(l)]) {
      EXPECT_EQ(rec.chosen.count(l), 0u) << "dense layer " << l;
    }
  }

  // Greedy continuation, decoded step by step through the KV cache.
  GenerateOptions g;
  g.max_new_tokens = int(ref.greedy.size());
  g.sampling.greedy = true;
  const auto r = session.generate(ref.prompt, g);
  EXPECT_EQ(r.tokens, ref.greedy);
  EXPECT_EQ(r.reason, StopReason::MaxTokens);
}

INSTANTIATE_TEST_SUITE_P(Families, GoldenModel,
                         ::testing::Values("qwen3_moe", "qwen3_moe_sparse_step", "qwen3_dense", "qwen2_moe", "mixtral",
                                           "olmoe", "llama", "glm4_moe", "deepseek_v2", "deepseek_v3", "minimax_m2", "ernie4_5_moe", "gpt_oss", "qwen3_moe_bf16",
                                           "qwen3_moe_f16", "gpt_oss_bf16", "gpt_oss_mxfp4", "qwen3_moe_fp8", "deepseek_v3_fp8", "qwen3_moe_w4a16", "mixtral_w4a16", "qwen3_moe_gptq", "mixtral_gptq_act_order", "qwen3_awq", "mixtral_sharded", "demo/moe", "demo/dense",
                                           "qwen3_moe.gguf", "qwen3_dense.gguf", "qwen2_moe.gguf", "olmoe.gguf", "mixtral.gguf",
                                           "llama.gguf", "qwen3_moe_q4_k_m.gguf", "deepseek_v2.gguf", "deepseek_v3_gguf.gguf",
                                           "minimax_m2.gguf", "glm4_moe.gguf", "gpt_oss_gguf.gguf", "ernie4_5_moe.gguf",
                                           "qwen3_moe.split"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '/', '_');
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

TEST(GoldenModel, SpecReadsTheOddSettings) {
  auto sparse = Model::load(kModels + "qwen3_moe_sparse_step");
  // decoder_sparse_step 2 and mlp_only_layers [3]: only layer 1 is MoE.
  EXPECT_EQ(sparse->spec().layer_is_moe, (std::vector<bool>{false, true, false, false}));
  EXPECT_FALSE(sparse->spec().moe.renormalize);
  auto dense = Model::load(kModels + "qwen3_dense");
  EXPECT_TRUE(dense->spec().tied_embeddings);
  EXPECT_EQ(dense->weights().lm_head.data, dense->weights().embed.data);
  auto qwen3 = Model::load(kModels + "qwen3_moe");
  EXPECT_EQ(qwen3->spec().attn.head_dim, 16);
  EXPECT_NE(qwen3->spec().q_dim(), qwen3->spec().hidden);
  EXPECT_EQ(qwen3->spec().attn.qk_norm, QkNorm::PerHead);
  auto olmoe = Model::load(kModels + "olmoe");
  EXPECT_EQ(olmoe->spec().attn.qk_norm, QkNorm::WholeProjection);
  auto qwen2 = Model::load(kModels + "qwen2_moe");
  EXPECT_TRUE(qwen2->spec().attn.qkv_bias);
  EXPECT_TRUE(qwen2->spec().moe.shared_gate);
  EXPECT_TRUE(Model::load(kModels + "mixtral")->spec().moe.renormalize);
  // MiniMax-M2: whole-projection q/k norms, rotary_dim counted in dims, a sigmoid router with its bias on
  // the MoE block.
  auto minimax = Model::load(kModels + "minimax_m2");
  EXPECT_EQ(minimax->spec().family, "MiniMax-M2");
  EXPECT_EQ(minimax->spec().attn.qk_norm, QkNorm::WholeProjection);
  EXPECT_EQ(minimax->spec().attn.rotary_dim, 16);
  EXPECT_EQ(minimax->spec().attn.head_dim, 32);
  EXPECT_EQ(minimax->spec().moe.score, RouterScore::Sigmoid);
  EXPECT_TRUE(minimax->spec().moe.selection_bias);
  EXPECT_TRUE(minimax->spec().moe.renormalize);
  // ERNIE-4.5-MoE: interleaved RoPE, MoE layers 1 and 3 by start/end/interval, a softmax router with a
  // selection bias stored [1, E], an ungated shared MLP of two experts' width, tied embeddings.
  auto ernie = Model::load(kModels + "ernie4_5_moe");
  const ModelSpec& es = ernie->spec();
  EXPECT_EQ(es.attn.rope_style, RopeStyle::Interleaved);
  EXPECT_EQ(es.layer_is_moe, (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(es.moe.score, RouterScore::Softmax);
  EXPECT_TRUE(es.moe.selection_bias);
  EXPECT_EQ(ernie->weights().layers[1].router_bias.size(), 8u);
  EXPECT_EQ(es.moe.shared_ffn, 32);
  EXPECT_FALSE(es.moe.shared_gate);
  EXPECT_TRUE(es.tied_embeddings);
  EXPECT_EQ(ernie->weights().lm_head.data, ernie->weights().embed.data);
}

// DeepSeek's multi-head latent attention caches one row of latent + shared RoPE key per token and layer
// (kv_lora 32 + rope 8 here), and the absorbed form gives transformers' greedy continuation with the
// prompt prefilled in chunks of 5 (a chunk attends to the cached latents of the ones before), and again
// across a second turn that reuses the cached prefix.
TEST(GoldenModel, LatentAttentionCachesTheLatentAndPrefillsInChunks) {
  for (const char* name : {"deepseek_v2", "deepseek_v3"}) {
    SCOPED_TRACE(name);
    const std::string dir = kModels + name;
    const Reference ref = load_reference(dir + "/reference.safetensors");
    auto model = Model::load(dir);
    const auto& A = model->spec().attn;
    EXPECT_TRUE(A.is_mla());
    EXPECT_EQ(A.head_dim, 24);
    EXPECT_EQ(A.rope_offset, 16);
    EXPECT_EQ(model->spec().kv_dim(), 40);
    EXPECT_EQ(model->spec().attn_out_dim(), 4 * 12);
    Session session(*model, BackendOptions{2, 256, 5});
    EXPECT_EQ(session.backend().kv_cache_bytes_per_token(), size_t(3 * 40 * 4));
    GenerateOptions g;
    g.max_new_tokens = int(ref.greedy.size());
    g.sampling.greedy = true;
    EXPECT_EQ(session.generate(ref.prompt, g).tokens, ref.greedy);
    // Second turn: the prompt and the first 20 greedy tokens; the cached part is reused.
    std::vector<int32_t> turn2 = ref.prompt;
    turn2.insert(turn2.end(), ref.greedy.begin(), ref.greedy.begin() + 20);
    g.max_new_tokens = 12;
    const auto second = session.generate(turn2, g);
    EXPECT_GT(second.reused_tokens, 0);
    EXPECT_EQ(second.tokens, std::vector<int32_t>(ref.greedy.begin() + 20, ref.greedy.end()));
  }
}

TEST(GoldenModel, ReusesTheCachedPrefixAcrossTurns) {
  const std::string dir = kModels + "qwen3_moe";
  const Reference ref = load_reference(dir + "/reference.safetensors");
  auto model = Model::load(dir);
  Session session(*model, BackendOptions{2, 256, 64});
  GenerateOptions g;
  g.max_new_tokens = 8;
  const auto first = session.generate(ref.prompt, g);
  // Second turn: the first turn's prompt and answer plus more text; only the new part is prefilled,
  // and the continuation equals a fresh session's.
  std::vector<int32_t> turn2 = ref.prompt;
  turn2.insert(turn2.end(), first.tokens.begin(), first.tokens.end());
  turn2.insert(turn2.end(), {5, 6, 7});
  const auto second = session.generate(turn2, g);
  EXPECT_EQ(second.reused_tokens, int(ref.prompt.size() + first.tokens.size() - 1));
  Session fresh(*model, BackendOptions{1, 256, 3});
  EXPECT_EQ(fresh.generate(turn2, g).tokens, second.tokens);
}

TEST(GoldenModel, StopsOnEveryEosIdAndOnRequest) {
  const std::string dir = kModels + "llama";
  const Reference ref = load_reference(dir + "/reference.safetensors");
  auto model = Model::load(dir);
  Session session(*model, BackendOptions{1, 256, 64});
  GenerateOptions g;
  g.max_new_tokens = 32;
  g.stop_ids = {999, ref.greedy[3]};
  const auto r = session.generate(ref.prompt, g);
  ASSERT_GE(r.tokens.size(), 1u);
  EXPECT_EQ(r.reason, StopReason::EndOfSequence);
  EXPECT_EQ(r.tokens.back(), ref.greedy[3]);
  g.stop_ids.clear();
  int seen = 0;
  const auto stopped = session.generate(ref.prompt, g, [&](const TokenEvent&) { return ++seen < 5; });
  EXPECT_EQ(stopped.tokens.size(), 5u);
  EXPECT_EQ(stopped.reason, StopReason::StoppedByUser);
}

TEST(GoldenModel, PaddedVocabRowsAreNeverSampled) {
  const std::string dir = kModels + "qwen3_moe";
  const Reference ref = load_reference(dir + "/reference.safetensors");
  auto model = Model::load(dir);
  Session session(*model, BackendOptions{1, 256, 64});
  GenerateOptions g;
  g.max_new_tokens = 16;
  g.allowed_vocab = 100;  // as if the tokenizer knew only 100 ids
  g.sampling.greedy = false;
  g.sampling.temperature = 1.5f;
  for (int32_t id : session.generate(ref.prompt, g).tokens) EXPECT_LT(id, 100);
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {

TEST(SessionThreads, StopFromAnotherThreadEndsGeneration) {
  auto model = Model::load(kModels + "qwen3_moe");
  Session session(*model, BackendOptions{1, 256, 64});
  GenerateOptions g;
  g.max_new_tokens = 200;
  std::atomic<int> produced{0};
  std::thread stopper([&] {
    while (produced.load() < 3) std::this_thread::yield();
    session.stop();
  });
  const auto r = session.generate({1, 2, 3, 4}, g, [&](const TokenEvent&) {
    produced.fetch_add(1);
    // Slow the loop down so the other thread's stop lands mid-generation.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return true;
  });
  stopper.join();
  EXPECT_EQ(r.reason, StopReason::StoppedByUser);
  EXPECT_LT(r.tokens.size(), 200u);
  EXPECT_GE(r.tokens.size(), 3u);
  // A stop request does not leak into the next generation.
  g.max_new_tokens = 5;
  EXPECT_EQ(session.generate({1, 2, 3, 4}, g).tokens.size(), 5u);
}

}  // namespace
}  // namespace moe
