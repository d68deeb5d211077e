// The CUDA backend against the CPU backend (the reference, itself checked against transformers in
// golden_model_test): every golden checkpoint, prefill in chunks and decode step by step (the CUDA-graph
// path), with every hook record compared. Runs where a GPU is; skipped with the reason elsewhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/gpu_memory_plan.h"
#include "engine/common/error.h"
#include "engine/formats/safetensors.h"
#include "engine/model/model.h"
#include "tests/cuda/gpu_test_support.h"

namespace moe {
namespace {

const std::string kModels = std::string(MOE_TEST_DATA_DIR) + "/models/";
const std::string kConfigs = std::string(MOE_TEST_DATA_DIR) + "/../../resources/configs/";

// "NAME.gguf" is the folder's model.gguf (tests/make_gguf_goldens.py).
std::string case_dir(const std::string& name) {
  if (name.rfind("demo/", 0) == 0) return std::string(MOE_TEST_DATA_DIR) + "/../../resources/demo/" + name.substr(5);
  if (name.ends_with(".gguf")) return kModels + name.substr(0, name.size() - 5) + "/model.gguf";
  return kModels + name;
}

// The prompt of a golden case (transformers' reference input), or a fixed one for the demo models.
std::vector<int32_t> prompt_of(const std::string& name) {
  if (name.rfind("demo/", 0) == 0) return {1, 5, 9, 14, 3, 22, 7, 30, 2, 11, 17, 4};
  const std::string folder = name.ends_with(".gguf") ? name.substr(0, name.size() - 5) : name;
  auto f = SafetensorsFile::open(kModels + folder + "/reference.safetensors");
  const TensorView& v = f->tensors().at("prompt_ids");
  std::vector<int64_t> ids(size_t(v.numel()));
  std::memcpy(ids.data(), v.data, v.nbytes);
  return {ids.begin(), ids.end()};
}

// Keeps a copy of every step record.
struct Keep : StepObserver {
  HookRequest request;
  std::vector<StepRecord> records;
  HookRequest ask() const override { return request; }
  void observe(const StepRecord& r) override { records.push_back(r); }
};

HookRequest everything() {
  HookRequest r = HookRequest::for_level(HookLevel::Full, {{0, 0}, {1, 1}});
  r.router_probs = true;
  r.attention_topk = 4;
  return r;
}

// Logits of the prompt (every position, prefill in chunks) and of `decode` greedy steps after it.
struct Outcome {
  std::vector<float> prompt_logits;
  std::vector<std::vector<float>> step_logits;
  std::vector<int32_t> generated;
  Keep keep;
};

Outcome run(Backend& b, const std::vector<int32_t>& prompt, int V, int decode, const std::vector<int32_t>* force_tokens = nullptr) {
  Outcome r;
  r.keep.request = everything();
  r.prompt_logits.resize(prompt.size() * size_t(V));
  b.forward(prompt, true, r.prompt_logits.data(), &r.keep);
  std::vector<float> logits(static_cast<size_t>(V));
  int32_t next = int32_t(std::max_element(r.prompt_logits.end() - V, r.prompt_logits.end()) - (r.prompt_logits.end() - V));
  for (int i = 0; i < decode; ++i) {
    // Both backends are fed the same tokens (the CPU's choices), so a near tie cannot make them diverge.
    if (force_tokens) next = (*force_tokens)[size_t(i)];
    r.generated.push_back(next);
    b.forward(std::span<const int32_t>(&next, 1), false, logits.data(), &r.keep);
    r.step_logits.push_back(logits);
    next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  return r;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LT(cuda::test::nmse(got, want), tol) << what;
}

// Whether every weight is F32. A checkpoint can mix: gpt_oss_mxfp4's experts are MXFP4, expanded to BF16,
// beside F32 attention, and the GPU rounds what its 16-bit expert GEMMs multiply to BF16.
bool all_f32(const Model& model) {
  if (model.weights().embed.dtype != DType::F32) return false;
  for (const LayerWeights& L : model.weights().layers)
    if (!L.experts.empty() && L.experts[0].gate.dtype != DType::F32) return false;
  return true;
}

class CudaParity : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaParity, LogitsRoutingAndRecordsMatchTheCpu) {
  MOE_REQUIRE_GPU();
  auto model = Model::load(case_dir(GetParam()));
  const int V = model->spec().vocab_size;
  const double tol = all_f32(*model) ? 1e-6 : 1e-3;  // the bounds: FP32 weights and BF16/F16 weights
  BackendOptions o;
  o.threads = 2;
  o.max_context = 128;
  o.prefill_chunk = 5;  // several chunks, the last one short
  auto cpu = make_cpu_backend(*model, o);
  auto gpu = cuda::make_cuda_backend(*model, o);
  EXPECT_TRUE(gpu->is_gpu());
  const auto prompt = prompt_of(GetParam());
  const Outcome want = run(*cpu, prompt, V, 6);
  const Outcome got = run(*gpu, prompt, V, 6, &want.generated);

  expect_close(got.prompt_logits, want.prompt_logits, tol, "prompt logits");
  for (size_t i = 0; i < want.step_logits.size(); ++i)
    expect_close(got.step_logits[i], want.step_logits[i], tol, "decode step " + std::to_string(i));
  ASSERT_EQ(got.keep.records.size(), want.keep.records.size());
  for (size_t s = 0; s < want.keep.records.size(); ++s) {
    const StepRecord& a = got.keep.records[s];
    const StepRecord& b = want.keep.records[s];
    const std::string at = "step " + std::to_string(s);
    ASSERT_EQ(a.n_tokens, b.n_tokens) << at;
    EXPECT_EQ(a.first_position, b.first_position) << at;
    EXPECT_EQ(a.top_k, b.top_k) << at;
    // Routing: the same expert set for every token and MoE layer (Jaccard 1.0), weights close.
    ASSERT_EQ(a.expert_ids.size(), b.expert_ids.size()) << at;
    const size_t K = size_t(b.top_k);
    for (size_t i = 0; i < b.expert_ids.size(); i += std::max<size_t>(K, 1)) {
      const std::set<int32_t> ga(a.expert_ids.begin() + long(i), a.expert_ids.begin() + long(i + K));
      const std::set<int32_t> gb(b.expert_ids.begin() + long(i), b.expert_ids.begin() + long(i + K));
      EXPECT_EQ(ga, gb) << at << " slot row " << i / K;
    }
    expect_close(a.expert_weights, b.expert_weights, tol, at + " routing weights");
    expect_close(a.router_probs, b.router_probs, tol, at + " router probs");
    expect_close(a.router_entropy, b.router_entropy, tol, at + " router entropy");
    expect_close(a.shared_gate, b.shared_gate, tol, at + " shared gate");
    expect_close(a.attn_entropy, b.attn_entropy, tol, at + " attention entropy");
    expect_close(a.attn_max, b.attn_max, tol, at + " attention max");
    expect_close(a.attn_topk_mass, b.attn_topk_mass, tol, at + " attention top-k mass");
    expect_close(a.attn_first_mass, b.attn_first_mass, tol, at + " attention first mass");
    expect_close(a.hidden_norm, b.hidden_norm, tol, at + " hidden norms");
    ASSERT_EQ(a.attention_rows.size(), b.attention_rows.size()) << at;
    for (size_t i = 0; i < b.attention_rows.size(); ++i) {
      EXPECT_EQ(a.attention_rows[i].position, b.attention_rows[i].position) << at;
      expect_close(a.attention_rows[i].weights, b.attention_rows[i].weights, tol, at + " attention row");
    }
    ASSERT_EQ(a.layer_time_s.size(), b.layer_time_s.size()) << at;
    for (double t : a.layer_time_s) EXPECT_GT(t, 0.0) << at;
  }
  // The cache can be cut back and the same continuation recomputed.
  gpu->truncate(int(prompt.size()));
  std::vector<float> again(static_cast<size_t>(V));
  int32_t first = want.generated[0];
  gpu->forward(std::span<const int32_t>(&first, 1), false, again.data(), nullptr);
  expect_close(again, want.step_logits[0], tol, "after truncate");
}

// A BF16 KV cache rounds every cached K and V to 8 bits of mantissa: the prompt and the first decode
// step stay within the BF16 bound of the CPU's F32 cache. (Later steps are not compared: one rounded
// router input can flip a near tie, which the F32 default exists to rule out.)
TEST_P(CudaParity, Bf16KvCacheStaysWithinTheBf16Bound) {
  MOE_REQUIRE_GPU();
  auto model = Model::load(case_dir(GetParam()));
  const int V = model->spec().vocab_size;
  BackendOptions o;
  o.threads = 2;
  o.max_context = 128;
  o.prefill_chunk = 5;
  auto cpu = make_cpu_backend(*model, o);
  o.kv_dtype = DType::BF16;
  auto gpu = cuda::make_cuda_backend(*model, o);
  EXPECT_EQ(gpu->kv_cache_bytes_per_token(), cpu->kv_cache_bytes_per_token() / 2);
  const auto prompt = prompt_of(GetParam());
  const Outcome want = run(*cpu, prompt, V, 1);
  const Outcome got = run(*gpu, prompt, V, 1, &want.generated);
  expect_close(got.prompt_logits, want.prompt_logits, 1e-3, "prompt logits");
  expect_close(got.step_logits[0], want.step_logits[0], 1e-3, "first decode step");
}

INSTANTIATE_TEST_SUITE_P(Families, CudaParity,
                         ::testing::Values("qwen3_moe", "qwen3_moe_sparse_step", "qwen3_dense", "qwen2_moe", "mixtral",
                                           "olmoe", "llama", "glm4_moe", "deepseek_v2", "deepseek_v3", "minimax_m2", "ernie4_5_moe", "gpt_oss", "gpt_oss_bf16",
                                           "gpt_oss_mxfp4", "qwen3_moe_fp8", "deepseek_v3_fp8", "qwen3_moe_w4a16", "mixtral_w4a16", "qwen3_moe_gptq", "mixtral_gptq_act_order", "qwen3_awq", "qwen3_moe_bf16",
                                           "qwen3_moe_f16", "mixtral_sharded", "demo/moe", "demo/dense", "mixtral.gguf",
                                           "deepseek_v3_gguf.gguf", "gpt_oss_gguf.gguf"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '/', '_');
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

// A replayed CUDA graph computes exactly what the same step launched kernel by kernel does.
TEST(CudaBackend, GraphReplayEqualsEagerLaunches) {
  MOE_REQUIRE_GPU();
  auto model = Model::load(kModels + "qwen3_moe");
  const int V = model->spec().vocab_size;
  BackendOptions o;
  o.max_context = 64;
  auto graphs = cuda::make_cuda_backend(*model, o);
  setenv("MOE_CUDA_GRAPHS", "0", 1);
  auto eager = cuda::make_cuda_backend(*model, o);
  unsetenv("MOE_CUDA_GRAPHS");
  EXPECT_NE(eager->describe().find("graphs off"), std::string::npos);
  const auto prompt = prompt_of("qwen3_moe");
  const Outcome a = run(*graphs, prompt, V, 8);
  const Outcome b = run(*eager, prompt, V, 8, &a.generated);
  for (size_t i = 0; i < a.step_logits.size(); ++i) EXPECT_EQ(a.step_logits[i], b.step_logits[i]) << "step " << i;
}

// Decode kernels that finish with the step after them in their last block (MOE_CUDA_FUSE, on by default)
// compute what the separate kernels compute: the same routing and hook records, and logits that differ
// only by the order of the norms' sums of squares (another block size). qwen3_moe closes its MoE layers
// in the experts' down projection, qwen2_moe (a shared expert) with a kernel of its own, qwen3_dense in
// its MLP's down projection.
TEST(CudaBackend, FusedTailsEqualSeparateKernels) {
  MOE_REQUIRE_GPU();
  for (const char* name : {"qwen3_moe", "qwen2_moe", "qwen3_dense"}) {
    SCOPED_TRACE(name);
    auto model = Model::load(kModels + name);
    const int V = model->spec().vocab_size;
    BackendOptions o;
    o.max_context = 64;
    auto fused = cuda::make_cuda_backend(*model, o);
    setenv("MOE_CUDA_FUSE", "0", 1);
    auto separate = cuda::make_cuda_backend(*model, o);
    unsetenv("MOE_CUDA_FUSE");
    EXPECT_EQ(fused->describe().find("fused tails off"), std::string::npos);
    EXPECT_NE(separate->describe().find("fused tails off"), std::string::npos);
    const auto prompt = prompt_of(name);
    const Outcome a = run(*separate, prompt, V, 6);
    const Outcome b = run(*fused, prompt, V, 6, &a.generated);
    EXPECT_EQ(a.prompt_logits, b.prompt_logits) << "the prompt runs the same kernels either way";
    for (size_t i = 0; i < a.step_logits.size(); ++i)
      expect_close(b.step_logits[i], a.step_logits[i], 1e-10, "decode step " + std::to_string(i));
    ASSERT_EQ(a.keep.records.size(), b.keep.records.size());
    for (size_t i = 0; i < a.keep.records.size(); ++i) {
      EXPECT_EQ(a.keep.records[i].expert_ids, b.keep.records[i].expert_ids) << "record " << i;
      expect_close(b.keep.records[i].expert_weights, a.keep.records[i].expert_weights, 1e-10,
                   "routing weights, record " + std::to_string(i));
    }
  }
}

// Interventions (masks, forced experts, k, bias) route the same on both backends: prompt logits within
// 1e-6 and the same experts in every step record, whose top_k is the one in force. Returns the GPU
// backend for further checks.
std::unique_ptr<Backend> expect_interventions_match(const std::string& name, const Model& model,
                                                    const Interventions& iv, int top_k) {
  SCOPED_TRACE(name);
  BackendOptions o;
  o.max_context = 64;
  o.prefill_chunk = 4;
  auto cpu = make_cpu_backend(model, o);
  auto gpu = cuda::make_cuda_backend(model, o);
  cpu->set_interventions(iv);
  gpu->set_interventions(iv);
  const auto prompt = prompt_of(name);
  const int V = model.spec().vocab_size;
  const Outcome want = run(*cpu, prompt, V, 3);
  const Outcome got = run(*gpu, prompt, V, 3, &want.generated);
  expect_close(got.prompt_logits, want.prompt_logits, 1e-6, "prompt logits");
  EXPECT_EQ(got.keep.records.size(), want.keep.records.size());
  for (size_t s = 0; s < std::min(got.keep.records.size(), want.keep.records.size()); ++s) {
    EXPECT_EQ(got.keep.records[s].top_k, top_k);
    EXPECT_EQ(got.keep.records[s].expert_ids, want.keep.records[s].expert_ids) << "step " << s;
  }
  return gpu;
}

TEST(CudaBackend, InterventionsMatchTheCpu) {
  MOE_REQUIRE_GPU();
  auto model = Model::load(kModels + "olmoe");
  const auto& spec = model->spec();
  Interventions iv;
  iv.layer(0, spec.n_layers).masked = {0, 3};
  iv.layer(1, spec.n_layers).forced = {5};
  iv.layer(1, spec.n_layers).top_k = spec.moe.top_k + 2;
  iv.layer(1, spec.n_layers).router_bias.assign(size_t(spec.moe.n_experts), 0.0f);
  iv.layer(1, spec.n_layers).router_bias[2] = 3.0f;
  auto gpu = expect_interventions_match("olmoe", *model, iv, spec.moe.top_k + 2);
  EXPECT_THROW(gpu->set_interventions([&] {
                 Interventions bad;
                 bad.layer(0, spec.n_layers).masked = {spec.moe.n_experts};
                 return bad;
               }()),
               EngineError);
  // GLM-4.5's group-limited router under masks and a forced expert (router.cuh: the other groups fill
  // the slots the masks empty in the kept ones).
  auto glm = Model::load(kModels + "glm4_moe");
  const auto& gs = glm->spec();
  Interventions giv;
  giv.layer(1, gs.n_layers).masked = {0, 2, 4, 6};
  giv.layer(2, gs.n_layers).masked = {1};
  giv.layer(2, gs.n_layers).forced = {7};
  expect_interventions_match("glm4_moe", *glm, giv, gs.moe.top_k);
}

// The allocator's tags add up to the plan made before loading: weights and KV cache exactly per part
// up to alignment, the rest within a few MiB. Memory by part is what the memory view draws.
TEST(CudaBackend, MemoryByPartMatchesThePlan) {
  MOE_REQUIRE_GPU();
  // A gated shared expert; a router bias; latent attention without and with q-LoRA; whole-projection
  // q/k norms; dense and MoE layers interleaved with an ungated shared expert.
  for (const char* name : {"qwen2_moe", "glm4_moe", "deepseek_v2", "deepseek_v3", "minimax_m2", "ernie4_5_moe"}) {
    SCOPED_TRACE(name);
    auto model = Model::load(kModels + name);
    BackendOptions o;
    o.max_context = 100;
    auto gpu = cuda::make_cuda_backend(*model, o);
    const GpuMemoryPlan plan = plan_gpu_memory(model->spec(), GpuPlanOptions{DType::F32, 100, o.prefill_chunk, 0});
    const DeviceMemory m = gpu->device_memory();
    EXPECT_GT(m.total_bytes, 0u);
    EXPECT_EQ(m.bytes_of("kv cache"), plan.kv_cache_bytes);
    EXPECT_EQ(gpu->kv_cache_bytes_allocated(), plan.kv_cache_bytes);
    for (const auto& part : plan.weights) {
      const size_t got = m.bytes_of(part.part);
      EXPECT_GE(got, part.bytes) << part.part;
      EXPECT_LE(got, part.bytes + size_t(64) * 1024) << part.part;  // 256-byte alignment of each block
    }
    const size_t rest = m.bytes_of("activations") + m.bytes_of("workspace");
    EXPECT_NEAR(double(rest), double(plan.activation_bytes + plan.workspace_bytes), double(size_t(4) << 20));
    EXPECT_EQ(gpu->workspace_bytes(), rest);
  }
}

// A real shape made on the GPU (no files): Qwen3-30B-A3B in BF16 when it fits; otherwise OLMoE.
TEST(CudaBackend, SyntheticRealShapeRunsOnTheGpu) {
  MOE_REQUIRE_GPU();
  SyntheticOptions so;
  so.shape_only = true;
  for (const char* config : {"qwen3-30b-a3b.json", "olmoe-1b-7b.json"}) {
    auto model = Model::synthetic(kConfigs + config, so);
    const GpuMemoryPlan plan = plan_gpu_memory(model->spec(), GpuPlanOptions{DType::BF16, 4096, 64, 0});
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    if (plan.total_bytes() > free_b) continue;
    BackendOptions o;
    o.max_context = 4096;
    auto gpu = cuda::make_cuda_backend(*model, o);
    const std::vector<int32_t> prompt(100, 42);
    std::vector<float> logits(static_cast<size_t>(model->spec().vocab_size));
    gpu->forward(prompt, false, logits.data(), nullptr);
    int32_t t = 7;
    gpu->forward(std::span<const int32_t>(&t, 1), false, logits.data(), nullptr);
    EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); })) << config;
    // The plan's routed experts, plus each layer's table of expert pointers.
    EXPECT_NEAR(double(gpu->device_memory().bytes_of("routed experts")), double(plan.weights[3].bytes), double(1 << 20))
        << config;
    return;
  }
  GTEST_SKIP() << "not enough free GPU memory for a real shape";
}

// Out of memory names what does not fit, and make_backend falls back to the CPU where it can.
TEST(CudaBackend, OutOfMemoryNamesWhatDoesNotFit) {
  MOE_REQUIRE_GPU();
  SyntheticOptions so;
  so.shape_only = true;
  so.dtype = DType::F32;  // Mixtral 8x7B in F32: 187 GB, more than any single GPU has
  auto model = Model::synthetic(kConfigs + "mixtral-8x7b.json", so);
  try {
    cuda::make_cuda_backend(*model, BackendOptions{});
    FAIL() << "expected out of memory";
  } catch (const EngineError& e) {
    EXPECT_EQ(e.field(), "out of memory");
    EXPECT_NE(std::string(e.what()).find("routed experts"), std::string::npos) << e.what();
  }
  BackendOptions auto_device;
  auto_device.device = Device::Auto;
  EXPECT_THROW(make_backend(*model, auto_device), EngineError);  // no weights for the CPU either
  auto real = Model::load(kModels + "qwen3_moe");
  const MadeBackend made = make_backend(*real, auto_device);
  EXPECT_TRUE(made.backend->is_gpu()) << made.note;
}

// GPT-OSS (attention sinks, sliding windows, router and expert biases, the clamped gate) runs on the
// GPU: make_backend picks it (the parity cases above check what it computes).
TEST(CudaBackend, GptOssRunsOnTheGpu) {
  MOE_REQUIRE_GPU();
  auto model = Model::load(kModels + "gpt_oss");
  BackendOptions o;
  o.device = Device::Auto;
  o.max_context = 64;
  const MadeBackend made = make_backend(*model, o);
  EXPECT_TRUE(made.backend->is_gpu()) << made.note;
  EXPECT_EQ(made.note.find("running on the CPU"), std::string::npos) << made.note;
}

// Multi-head latent attention runs on the GPU (make_backend picks it) with the CPU's compact cache:
// one row of kv_lora + rope values per token and layer, no V (deepseek_v3: 3 layers × (32 + 8)).
TEST(CudaBackend, LatentAttentionCachesOneLatentRowPerToken) {
  MOE_REQUIRE_GPU();
  auto model = Model::load(kModels + "deepseek_v3");
  BackendOptions auto_device;
  auto_device.device = Device::Auto;
  auto_device.max_context = 64;
  const MadeBackend made = make_backend(*model, auto_device);
  EXPECT_TRUE(made.backend->is_gpu()) << made.note;
  EXPECT_EQ(made.backend->kv_cache_bytes_per_token(), size_t(3) * 40 * 4);
  EXPECT_EQ(made.backend->kv_cache_bytes_allocated(), size_t(64) * 3 * 40 * 4);  // a multiple of 256
  auto_device.kv_dtype = DType::BF16;
  EXPECT_EQ(cuda::make_cuda_backend(*model, auto_device)->kv_cache_bytes_per_token(), size_t(3) * 40 * 2);
}

// Cancelling the upload stops the load with field "cancelled" (not a fall back to the CPU).
TEST(CudaBackend, UploadProgressAndCancel) {
  MOE_REQUIRE_GPU();
  auto model = Model::load(kModels + "mixtral");
  BackendOptions o;
  size_t last = 0, total = 0;
  o.upload_progress = [&](size_t done, size_t all) {
    EXPECT_GE(done, last);
    last = done;
    total = all;
    return true;
  };
  cuda::make_cuda_backend(*model, o);
  EXPECT_EQ(last, total);
  EXPECT_GT(total, 0u);
  o.upload_progress = [](size_t, size_t) { return false; };
  o.device = Device::Cuda;
  try {
    make_backend(*model, o);
    FAIL() << "expected a cancelled load";
  } catch (const EngineError& e) {
    EXPECT_EQ(e.field(), "cancelled");
  }
}

}  // namespace
}  // namespace moe
