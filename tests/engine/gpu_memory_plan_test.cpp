// The GPU memory plan (what the CUDA backend will hold, computed before loading) on the real shape of
// Qwen3-30B-A3B and DeepSeek-V2-Lite / V3, against sizes worked out by hand from their config.json, and
// the dtype each part is held in — runs everywhere, GPU or not.
#include <gtest/gtest.h>

#include <string>

#include "engine/backend/gpu_memory_plan.h"
#include "engine/model/model.h"
#include "tests/support/ggml_blocks.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

const std::string kConfigs = std::string(MOE_TEST_DATA_DIR) + "/../../resources/configs/";

ModelSpec spec_of(const std::string& config) {
  SyntheticOptions o;
  o.shape_only = true;
  return Model::synthetic(kConfigs + config, o)->spec();
}

size_t part(const GpuMemoryPlan& p, const std::string& name) {
  for (const auto& u : p.weights)
    if (u.part == name) return u.bytes;
  ADD_FAILURE() << "no part " << name;
  return 0;
}

TEST(GpuMemoryPlan, Qwen3_30B_A3B_InBf16) {
  const ModelSpec s = spec_of("qwen3-30b-a3b.json");
  const GpuMemoryPlan p = plan_gpu_memory(s, GpuPlanOptions{DType::BF16, 4096, 64, 0, DType::BF16});
  // 48 layers × 128 experts × (gate, up, down) × 768 × 2048 × 2 bytes.
  EXPECT_EQ(part(p, "routed experts"), size_t(48) * 128 * 3 * 768 * 2048 * 2);
  // q (32 × 128) + k, v (4 × 128 each) + o, all × 2048 × 2 bytes, per layer.
  EXPECT_EQ(part(p, "attention"), size_t(48) * ((4096 + 2 * 512) * 2048 + 2048 * 4096) * 2);
  EXPECT_EQ(part(p, "embeddings"), size_t(151936) * 2048 * 2);
  EXPECT_EQ(part(p, "head"), size_t(151936) * 2048 * 2);  // not tied
  EXPECT_EQ(part(p, "router"), size_t(48) * 128 * 2048 * 2);
  EXPECT_EQ(part(p, "shared experts"), 0u);
  EXPECT_EQ(part(p, "dense mlp"), 0u);
  // Norms in F32: two per layer and the final one over 2048, plus per-head q/k norms of 128.
  EXPECT_EQ(part(p, "norms"), size_t(97) * 2048 * 4 + size_t(48) * 2 * 128 * 4);
  // The same total from the parameter count: every parameter in BF16 but the norms, which are F32.
  const ModelSize z = compute_model_size(s);
  const size_t qk_norm_params = size_t(48) * 2 * 128;
  EXPECT_EQ(p.weight_bytes(), size_t(z.total_params - z.norm_params - int64_t(qk_norm_params)) * 2 +
                                  (size_t(z.norm_params) + qk_norm_params) * 4);
  // KV cache: BF16 K and V, 48 layers × 4 KV heads × 128, for 4096 tokens.
  EXPECT_EQ(p.kv_bytes_per_token, size_t(2) * 48 * 512 * 2);
  EXPECT_EQ(p.kv_cache_bytes, p.kv_bytes_per_token * 4096);
  EXPECT_EQ(p.capacity, 4096);
  EXPECT_GE(p.workspace_bytes, kCublasWorkspaceBytes);
  // Logits of a 64-token chunk dominate the activations: 64 × 151936 F32.
  EXPECT_GE(p.activation_bytes, size_t(64) * 151936 * 4);
  EXPECT_LT(p.activation_bytes, size_t(64) * 151936 * 4 + (size_t(16) << 20));
  EXPECT_EQ(p.total_bytes(), p.weight_bytes() + p.kv_cache_bytes + p.activation_bytes + p.workspace_bytes);
}

// A GGUF Q4_K_M's parts as the CUDA backend holds them: matrices of block types in BF16, its F32 routers
// in F32 (GpuWeightDtypes per part). The GEMM inputs take the widest dtype.
TEST(GpuMemoryPlan, EachPartInItsOwnDtype) {
  const ModelSpec s = spec_of("qwen3-30b-a3b.json");
  const GpuMemoryPlan bf16 = plan_gpu_memory(s, GpuPlanOptions{DType::BF16, 4096, 64, 0});
  GpuPlanOptions o{DType::Q4_K, 4096, 64, 0};
  GpuWeightDtypes d;
  d.router = DType::F32;
  o.part_dtypes = d;
  const GpuMemoryPlan p = plan_gpu_memory(s, o);
  EXPECT_EQ(part(p, "router"), size_t(48) * 128 * 2048 * 4);
  for (const char* name : {"embeddings", "head", "attention", "routed experts", "norms"})
    EXPECT_EQ(part(p, name), part(bf16, name)) << name;
  EXPECT_EQ(p.weight_dtype_size, 4u);
  EXPECT_EQ(p.activation_bytes, bf16.activation_bytes + bf16.activations.gemm_in * 2);
  // Without per-part dtypes a block type plans as the BF16 the device holds.
  EXPECT_EQ(plan_gpu_memory(s, GpuPlanOptions{DType::Q4_K, 4096, 64, 0}).weight_bytes(), bf16.weight_bytes());
  EXPECT_EQ(plan_gpu_memory(s, GpuPlanOptions{DType::MXFP4, 4096, 64, 0}).weight_bytes(), bf16.weight_bytes());
  EXPECT_EQ(plan_gpu_memory(s, GpuPlanOptions{DType::MXFP4_GGML, 4096, 64, 0}).weight_bytes(), bf16.weight_bytes());
  EXPECT_EQ(plan_gpu_memory(s, GpuPlanOptions{DType::IQ4_XS, 4096, 64, 0}).weight_bytes(), bf16.weight_bytes());
}

// The CUDA backend's upload policy (gpu_weight_dtypes) on a model: a part keeps its one plain dtype;
// block types, and mixes, become BF16.
TEST(GpuMemoryPlan, PartsKeepOnePlainDtypeOrBecomeBf16) {
  test::ScratchDir dir;
  auto model = test::quantizable_model(dir, DType::F32);
  GpuWeightDtypes d = gpu_weight_dtypes(model->spec(), model->weights());
  EXPECT_EQ(d.attention, DType::F32);
  EXPECT_EQ(d.routed_experts, DType::F32);
  test::WeightSwap swap(*model);
  swap.to_blocks(swap.weights().layers[0].experts[1].down, DType::Q6_K, 1);  // one expert matrix of a block type
  swap.to_blocks(swap.weights().embed, DType::Q8_0, 2);
  d = gpu_weight_dtypes(model->spec(), model->weights());
  EXPECT_EQ(d.routed_experts, DType::BF16);
  EXPECT_EQ(d.embeddings, DType::BF16);
  EXPECT_EQ(d.head, DType::F32);
  EXPECT_EQ(d.attention, DType::F32);
  EXPECT_EQ(d.router, DType::F32);
  EXPECT_EQ(d.dense_mlp, DType::F32);
  swap.to_blocks(swap.weights().layers[1].mlp.down, DType::MXFP4_GGML, 3);  // GGUF's MXFP4 (type 39)
  EXPECT_EQ(gpu_weight_dtypes(model->spec(), model->weights()).dense_mlp, DType::BF16);
  swap.to_blocks(swap.weights().layers[1].mlp.gate, DType::IQ4_XS, 4);  // IQ4_XS (type 23)
  swap.to_blocks(swap.weights().layers[0].o, DType::IQ4_NL, 5);         // and IQ4_NL (type 20)
  d = gpu_weight_dtypes(model->spec(), model->weights());
  EXPECT_EQ(d.dense_mlp, DType::BF16);
  EXPECT_EQ(d.attention, DType::BF16);
  EXPECT_EQ(gpu_weight_dtype(DType::MXFP4_GGML), DType::BF16);
  EXPECT_EQ(gpu_weight_dtype(DType::IQ4_NL), DType::BF16);
  EXPECT_EQ(gpu_weight_dtype(DType::IQ4_XS), DType::BF16);
  EXPECT_EQ(gpu_weight_dtype(DType::Q4_K), DType::BF16);
  EXPECT_EQ(gpu_weight_dtype(DType::MXFP4), DType::BF16);
  EXPECT_EQ(gpu_weight_dtype(DType::F16), DType::F16);
  // A spec-only plan given a block type plans BF16 (what the device will hold).
  EXPECT_EQ(plan_gpu_memory(model->spec(), GpuPlanOptions{DType::Q4_K, 64, 8, 0}).weight_dtype_size, 2u);
}

// A GGUF Q4_K_M's layout: every group of matrices one kernel takes together (q/k/v, the experts' gate
// and up, their downs, ...) in one block type keeps its blocks on the GPU, so the plan (given the model's
// matrices) counts their own bytes; a group of mixed types counts BF16. A block-typed dense projection
// brings the scratch prefill expands it into for cuBLAS; block-typed experts alone do not.
TEST(GpuMemoryPlan, BlockGroupsKeepTheirOwnBytes) {
  test::ScratchDir dir;
  auto model = test::quantizable_model(dir, DType::F32);
  const ModelSpec& s = model->spec();
  test::WeightSwap swap(*model);
  ModelWeights& w = swap.weights();
  uint32_t seed = 1;
  LayerWeights& moe = w.layers[0];
  for (auto& e : moe.experts) {
    swap.to_blocks(e.gate, DType::Q4_K, seed++);
    swap.to_blocks(e.up, DType::Q4_K, seed++);
    swap.to_blocks(e.down, DType::Q6_K, seed++);
  }
  auto plan = [&] {
    GpuPlanOptions o{DType::F32, 64, 8, 0};
    o.part_dtypes = gpu_weight_dtypes(s, w);
    o.weights = &w;
    return plan_gpu_memory(s, o);
  };
  const int64_t H = s.hidden, F = s.moe.expert_ffn, E = s.moe.n_experts;
  GpuMemoryPlan p = plan();
  EXPECT_EQ(part(p, "routed experts"), size_t(E) * (2 * matrix_bytes(DType::Q4_K, F, H) + matrix_bytes(DType::Q6_K, H, F)));
  EXPECT_EQ(p.dequant_bytes, 0u);  // the experts read their blocks in every kernel
  EXPECT_EQ(part(p, "attention"), 2 * size_t(s.q_dim() + 2 * s.kv_dim() + s.q_dim()) * size_t(H) * 4);  // F32
  // One expert's down in another type: the layer's downs are no longer one group, and go as BF16.
  swap.to_blocks(moe.experts[1].down, DType::Q8_0, seed++);
  EXPECT_EQ(part(plan(), "routed experts"), size_t(E) * (2 * matrix_bytes(DType::Q4_K, F, H) + size_t(H * F) * 2));
  // q/k/v of one type are one group; o another; the dense MLP's gate/up and down; the head.
  LayerWeights& dense = w.layers[1];
  for (WeightMatrix* m : {&moe.q, &moe.k, &moe.v, &dense.mlp.gate, &dense.mlp.up}) swap.to_blocks(*m, DType::Q4_K, seed++);
  for (WeightMatrix* m : {&moe.o, &dense.mlp.down, &w.lm_head}) swap.to_blocks(*m, DType::Q6_K, seed++);
  swap.to_blocks(dense.q, DType::Q4_K, seed++);  // with k and v of layer 1 still F32: a mixed group
  p = plan();
  const size_t qkv_rows = size_t(s.q_dim() + 2 * s.kv_dim());
  EXPECT_EQ(part(p, "attention"), matrix_bytes(DType::Q4_K, int64_t(qkv_rows), H) + matrix_bytes(DType::Q6_K, H, s.q_dim()) +
                                      (qkv_rows + size_t(s.q_dim())) * size_t(H) * 2);  // layer 1: the part's BF16
  EXPECT_EQ(part(p, "dense mlp"), 2 * matrix_bytes(DType::Q4_K, s.dense_ffn, H) + matrix_bytes(DType::Q6_K, H, s.dense_ffn));
  EXPECT_EQ(part(p, "head"), matrix_bytes(DType::Q6_K, s.vocab_size, H));
  EXPECT_EQ(p.dequant_bytes, kDequantScratchBytes);
  EXPECT_EQ(p.workspace_bytes, plan_gpu_memory(s, GpuPlanOptions{DType::F32, 64, 8, 0}).workspace_bytes + kDequantScratchBytes);
  // What the layers' groups are, as the backend uploads them.
  const GpuLayerDtypes l0 = gpu_layer_dtypes(s, w, gpu_weight_dtypes(s, w), 0);
  EXPECT_EQ(l0.qkv, DType::Q4_K);
  EXPECT_EQ(l0.o, DType::Q6_K);
  EXPECT_EQ(l0.expert_gate_up, DType::Q4_K);
  EXPECT_EQ(l0.expert_down, DType::BF16);
  EXPECT_EQ(l0.router, DType::F32);
  EXPECT_EQ(gpu_layer_dtypes(s, w, gpu_weight_dtypes(s, w), 1).qkv, DType::BF16);
  EXPECT_EQ(gpu_compute_dtype(DType::Q4_K), DType::BF16);
  EXPECT_EQ(gpu_compute_dtype(DType::F16), DType::F16);
}

TEST(GpuMemoryPlan, SaysWhatDoesNotFit) {
  const GpuMemoryPlan p = plan_gpu_memory(spec_of("qwen3-30b-a3b.json"), GpuPlanOptions{DType::BF16, 4096, 64, 0});
  EXPECT_EQ(p.check_fits(size_t(80) << 30), "");  // an 80 GiB card holds it (57 GiB)
  const std::string why = p.check_fits(size_t(40) << 30);
  EXPECT_NE(why.find("40.00 GiB free"), std::string::npos) << why;
  EXPECT_NE(why.find("the routed experts alone are 54.00 GiB"), std::string::npos) << why;
}

TEST(GpuMemoryPlan, ContextAndDtype) {
  const ModelSpec s = spec_of("qwen3-30b-a3b.json");
  // The context is clamped to the model's max positions (40960).
  EXPECT_EQ(plan_gpu_memory(s, GpuPlanOptions{DType::BF16, 1 << 20, 64, 0}).capacity, 40960);
  // F32 weights double every matrix; the KV cache is F32 unless BF16 is asked for, whatever the weights.
  const GpuMemoryPlan f32 = plan_gpu_memory(s, GpuPlanOptions{DType::F32, 4096, 64, 0});
  const GpuMemoryPlan bf16 = plan_gpu_memory(s, GpuPlanOptions{DType::BF16, 4096, 64, 0});
  const GpuMemoryPlan bf16_kv = plan_gpu_memory(s, GpuPlanOptions{DType::BF16, 4096, 64, 0, DType::BF16});
  EXPECT_EQ(f32.kv_bytes_per_token, bf16.kv_bytes_per_token);
  EXPECT_EQ(bf16.kv_bytes_per_token, size_t(2) * 48 * 512 * 4);
  EXPECT_EQ(bf16.kv_bytes_per_token, 2 * bf16_kv.kv_bytes_per_token);
  EXPECT_EQ(part(f32, "routed experts"), 2 * part(bf16, "routed experts"));
  // More routing slots (dense mode through an intervention) grow the expert activations.
  const GpuMemoryPlan dense_mode = plan_gpu_memory(s, GpuPlanOptions{DType::BF16, 4096, 64, 128});
  EXPECT_EQ(dense_mode.slots, 128);
  EXPECT_GT(dense_mode.activation_bytes, bf16.activation_bytes);
}

// Multi-head latent attention: one cache row of kv_lora + rope per token and layer (no V), and the
// attention weights [q_a or q_proj ; kv_a], kv_b, o_proj (and q_b) with the latent's norms in F32.
TEST(GpuMemoryPlan, DeepSeekLatentAttention) {
  // DeepSeek-V2-Lite: no q-LoRA; 16 heads of q/k 128 + 64, v 128; latent 512.
  const ModelSpec lite = spec_of("deepseek-v2-lite.json");
  const GpuMemoryPlan p = plan_gpu_memory(lite, GpuPlanOptions{DType::BF16, 4096, 64, 0, DType::BF16});
  // Per layer: [q_proj (16 × 192) ; kv_a (512 + 64)] × 2048, kv_b 16 × (128 + 128) × 512, o 2048 × (16 × 128).
  EXPECT_EQ(part(p, "attention"), size_t(27) * ((3072 + 576) * 2048 + 16 * 256 * 512 + 2048 * 2048) * 2);
  EXPECT_EQ(part(p, "norms"), size_t(55) * 2048 * 4 + size_t(27) * 512 * 4);  // + the latent's norm
  EXPECT_EQ(p.kv_bytes_per_token, size_t(27) * 576 * 2);  // one BF16 row of 576 per layer
  // DeepSeek-V3 (q-LoRA 1536): the same total from the parameter count, every parameter in BF16 but the
  // norms and the router's selection bias, which are F32.
  const ModelSpec v3 = spec_of("deepseek-v3.json");
  const GpuMemoryPlan q = plan_gpu_memory(v3, GpuPlanOptions{DType::BF16, 4096, 64, 0});
  const ModelSize z = compute_model_size(v3);
  const size_t f32_params = size_t(z.norm_params) + size_t(61) * (1536 + 512) + size_t(58) * 256;
  EXPECT_EQ(q.weight_bytes(), (size_t(z.total_params) - f32_params) * 2 + f32_params * 4);
  EXPECT_EQ(q.kv_bytes_per_token, size_t(61) * 576 * 4);  // F32 by default
  // The absorbed queries (64 tokens × 128 heads × 576) are among the activations.
  EXPECT_EQ(q.activations.q_absorbed, size_t(64) * 128 * 576);
  EXPECT_EQ(q.activations.latent_out, size_t(64) * 128 * 512);
  EXPECT_EQ(q.activations.q_heads, size_t(64) * 128 * 192);
  EXPECT_EQ(q.activations.qkv, size_t(64) * (1536 + 576));
}

// GPT-OSS: besides the norms, F32 vectors for the sinks, the q/k/v and o biases, the router's bias and
// the experts' biases. With every matrix in BF16, the plan is the parameter count of gpt-oss-20b in
// 2-byte and 4-byte parts.
TEST(GpuMemoryPlan, GptOssVectors) {
  const ModelSpec s = spec_of("gpt-oss-20b.json");
  const GpuMemoryPlan p = plan_gpu_memory(s, GpuPlanOptions{DType::BF16, 4096, 64, 0});
  const ModelSize z = compute_model_size(s);
  const size_t L = 24, E = 32, H = 2880, I = 2880, nh = 64, q = 64 * 64, kv = 8 * 64;
  const size_t f32_params = size_t(z.norm_params) + L * (nh + q + 2 * kv + H) + L * E * (1 + 2 * I + H);
  EXPECT_EQ(p.weight_bytes(), (size_t(z.total_params) - f32_params) * 2 + f32_params * 4);
  EXPECT_EQ(part(p, "routed experts"), L * E * (3 * I * H * 2 + (2 * I + H) * 4));
}

// GPT-OSS's release (its experts in Hugging Face's MXFP4, gate and up rows interleaved): the experts go to the GPU
// as ggml's MXFP4 blocks, rearranged, so the plan counts the file's own bytes for them (17 per 32 values), not
// BF16's 64.
TEST(GpuMemoryPlan, GptOssMxfp4ExpertsKeepTheirBytes) {
  auto model = Model::load(std::string(MOE_TEST_DATA_DIR) + "/models/gpt_oss_mxfp4");
  const ModelSpec& s = model->spec();
  const ModelWeights& w = model->weights();
  ASSERT_EQ(w.layers[0].experts[0].gate.dtype, DType::MXFP4);
  ASSERT_EQ(w.layers[0].experts[0].gate.row_step, 2);
  const GpuWeightDtypes parts = gpu_weight_dtypes(s, w);
  EXPECT_EQ(parts.routed_experts, DType::BF16);  // the part's fallback
  for (int l = 0; l < s.n_layers; ++l) {
    const GpuLayerDtypes d = gpu_layer_dtypes(s, w, parts, l);
    EXPECT_EQ(d.expert_gate_up, DType::MXFP4_GGML) << l;
    EXPECT_EQ(d.expert_down, DType::MXFP4_GGML) << l;
  }
  GpuPlanOptions o{DType::F32, 64, 8, 0};
  o.part_dtypes = parts;
  o.weights = &w;
  const GpuMemoryPlan kept = plan_gpu_memory(s, o);
  o.weights = nullptr;  // without the matrices: every group takes its part's dtype
  const GpuMemoryPlan expanded = plan_gpu_memory(s, o);
  const size_t L = size_t(s.n_layers), E = size_t(s.moe.n_experts), H = size_t(s.hidden), F = size_t(s.moe.expert_ffn);
  EXPECT_EQ(part(kept, "routed experts"), L * E * (3 * H * F / 32 * 17 + (2 * F + H) * 4));
  EXPECT_EQ(part(expanded, "routed experts") - part(kept, "routed experts"), L * E * 3 * (H * F * 2 - H * F / 32 * 17));
  EXPECT_EQ(kept.dequant_bytes, 0u);  // the expert kernels read the blocks themselves
  // A group with one matrix of another dtype goes as the part's dtype, as for GGUF's types.
  ModelWeights mixed = w;
  mixed.layers[0].experts[1].down.dtype = DType::F32;
  EXPECT_EQ(gpu_layer_dtypes(s, mixed, parts, 0).expert_down, DType::BF16);
  EXPECT_EQ(gpu_layer_dtypes(s, mixed, parts, 0).expert_gate_up, DType::MXFP4_GGML);
}

// What the plan gives a model's routed experts, its parts in `parts` (a 64-token context).
size_t planned_routed_experts(const Model& model, const GpuWeightDtypes& parts) {
  GpuPlanOptions o{DType::BF16, 64, 8, 0};
  o.part_dtypes = parts;
  o.weights = &model.weights();
  return part(plan_gpu_memory(model.spec(), o), "routed experts");
}

// Fine-grained FP8 on the GPU. The releases' tiles (128 × 128): each group of FP8 matrices keeps its bytes, 132
// per 128 values (F8_E4M3_B128). Tiles narrower than a block (the qwen3_moe_fp8 golden's 32 × 16): the parts are
// F32, which holds every FP8 value times its scale exactly, and BF16 parts (the router, the embeddings) stay BF16.
TEST(GpuMemoryPlan, Fp8KeepsItsBytesOrGoesAsF32) {
  auto golden = Model::load(std::string(MOE_TEST_DATA_DIR) + "/models/qwen3_moe_fp8");
  const GpuWeightDtypes g = gpu_weight_dtypes(golden->spec(), golden->weights());
  EXPECT_EQ(g.attention, DType::F32);
  EXPECT_EQ(g.routed_experts, DType::F32);
  EXPECT_EQ(g.router, DType::BF16);
  EXPECT_EQ(g.embeddings, DType::BF16);
  EXPECT_EQ(gpu_layer_dtypes(golden->spec(), golden->weights(), g, 0).expert_gate_up, DType::F32);
  EXPECT_EQ(gpu_weight_dtype(DType::F8_E4M3), DType::F32);

  test::ScratchDir dir;
  auto model = test::quantizable_model(dir, DType::BF16);
  test::WeightSwap swap(*model);
  uint32_t seed = 1;
  for (auto& e : swap.weights().layers[0].experts)
    for (WeightMatrix* m : {&e.gate, &e.up, &e.down}) swap.to_fp8(*m, 128, 128, seed++);
  swap.to_fp8(swap.weights().layers[0].o, 128, 128, seed++);  // a part mixing FP8 with BF16 (q, k, v)
  const ModelSpec& s = model->spec();
  const GpuWeightDtypes parts = gpu_weight_dtypes(s, model->weights());
  EXPECT_EQ(parts.attention, DType::F32);
  const GpuLayerDtypes d = gpu_layer_dtypes(s, model->weights(), parts, 0);
  EXPECT_EQ(d.expert_gate_up, DType::F8_E4M3_B128);
  EXPECT_EQ(d.expert_down, DType::F8_E4M3_B128);
  EXPECT_EQ(d.o, DType::F8_E4M3_B128);
  EXPECT_EQ(d.qkv, DType::F32);
  const size_t E = size_t(s.moe.n_experts), H = size_t(s.hidden), F = size_t(s.moe.expert_ffn);
  EXPECT_EQ(planned_routed_experts(*model, parts), E * 3 * H * F / 128 * 132);  // layer 1 is dense
}

// compressed-tensors' packed integers on the GPU. BF16-scaled groups of whole blocks keep their bytes: the
// qwen3_moe_w4a16 golden's 4-bit experts as PACKED_I4_B32 blocks, 18 bytes per 32 weights, its 8-bit attention (one
// scale per row) as PACKED_I8_B32, 34 bytes; other packed integers take the dtype of their values, that of their
// scales (F16 for mixtral_w4a16's groups of 16), so they are exact, at the size of a 16-bit model.
TEST(GpuMemoryPlan, PackedIntegersKeepTheirBytesOrGoAsTheirScalesDtype) {
  auto qwen = Model::load(std::string(MOE_TEST_DATA_DIR) + "/models/qwen3_moe_w4a16");
  const ModelSpec& s = qwen->spec();
  const GpuWeightDtypes q = gpu_weight_dtypes(s, qwen->weights());
  EXPECT_EQ(q.attention, DType::BF16);
  EXPECT_EQ(q.routed_experts, DType::BF16);
  const GpuLayerDtypes l0 = gpu_layer_dtypes(s, qwen->weights(), q, 0);
  EXPECT_EQ(l0.expert_gate_up, DType::PACKED_I4_B32);
  EXPECT_EQ(l0.expert_down, DType::PACKED_I4_B32);
  EXPECT_EQ(l0.qkv, DType::PACKED_I8_B32);
  EXPECT_EQ(l0.o, DType::PACKED_I8_B32);
  const size_t E = size_t(s.moe.n_experts), H = size_t(s.hidden), F = size_t(s.moe.expert_ffn);
  EXPECT_EQ(planned_routed_experts(*qwen, q), size_t(s.n_layers) * E * 3 * H * F / 32 * 18);

  auto mixtral = Model::load(std::string(MOE_TEST_DATA_DIR) + "/models/mixtral_w4a16");
  const GpuWeightDtypes m = gpu_weight_dtypes(mixtral->spec(), mixtral->weights());
  EXPECT_EQ(m.attention, DType::F16);
  EXPECT_EQ(m.routed_experts, DType::F16);
  EXPECT_EQ(m.router, DType::F16);
  const GpuLayerDtypes d = gpu_layer_dtypes(mixtral->spec(), mixtral->weights(), m, 1);
  EXPECT_EQ(d.qkv, DType::F16);
  EXPECT_EQ(d.expert_down, DType::F16);

  // Mixed in one part with BF16 weights, F16-scaled values go as F32 (BF16 would round them); BF16-scaled as BF16.
  test::ScratchDir dir;
  auto model = test::quantizable_model(dir, DType::BF16);
  test::WeightSwap swap(*model);
  swap.to_packed_int(swap.weights().layers[0].o, DType::PACKED_I4, 16, 1);  // BF16 scales, groups too narrow for blocks
  EXPECT_EQ(gpu_weight_dtypes(model->spec(), model->weights()).attention, DType::BF16);
  swap.weights().layers[0].o.tiles.round_to = DType::F16;
  EXPECT_EQ(gpu_weight_dtypes(model->spec(), model->weights()).attention, DType::F32);
}

// GPTQ's and AWQ's packed integers on the GPU keep their bytes. The qwen3_moe_gptq golden's (symmetric 4-bit, F16
// scales in groups of 32) as PACKED_I4_F16_B32 blocks, 18 bytes per 32 weights; the qwen3_awq golden's, which have
// zero points, as PACKED_I4_ZP_F16_B32 blocks, 20 bytes per 32.
TEST(GpuMemoryPlan, GptqAndAwqKeepTheirBytes) {
  auto gptq = Model::load(std::string(MOE_TEST_DATA_DIR) + "/models/qwen3_moe_gptq");
  const ModelSpec& s = gptq->spec();
  const GpuWeightDtypes g = gpu_weight_dtypes(s, gptq->weights());
  const GpuLayerDtypes l2 = gpu_layer_dtypes(s, gptq->weights(), g, 2);
  EXPECT_EQ(l2.expert_gate_up, DType::PACKED_I4_F16_B32);
  EXPECT_EQ(l2.expert_down, DType::PACKED_I4_F16_B32);
  EXPECT_EQ(l2.qkv, DType::PACKED_I4_F16_B32);
  EXPECT_EQ(l2.o, DType::PACKED_I4_F16_B32);
  EXPECT_EQ(g.router, DType::F16);
  const size_t E = size_t(s.moe.n_experts), H = size_t(s.hidden), F = size_t(s.moe.expert_ffn);
  EXPECT_EQ(planned_routed_experts(*gptq, g), size_t(s.n_layers) * E * 3 * H * F / 32 * 18);

  auto awq = Model::load(std::string(MOE_TEST_DATA_DIR) + "/models/qwen3_awq");
  const GpuWeightDtypes a = gpu_weight_dtypes(awq->spec(), awq->weights());
  const GpuLayerDtypes l1 = gpu_layer_dtypes(awq->spec(), awq->weights(), a, 1);
  EXPECT_EQ(l1.qkv, DType::PACKED_I4_ZP_F16_B32);
  EXPECT_EQ(l1.o, DType::PACKED_I4_ZP_F16_B32);
  EXPECT_EQ(l1.mlp_gate_up, DType::PACKED_I4_ZP_F16_B32);
  EXPECT_EQ(l1.mlp_down, DType::PACKED_I4_ZP_F16_B32);
}

// GPTQ with activation order (the mixtral_gptq_act_order golden: groups of 32, each 64-input weight's two groups
// scattered over its inputs by g_idx) cannot be held as blocks of 32 adjacent inputs: it goes to the GPU as its
// scales' dtype, F16, and the plan counts it so. The experts' down projections (32 inputs, one group, a plain g_idx)
// still keep their bytes.
TEST(GpuMemoryPlan, ActivationOrderGoesAsItsScalesDtype) {
  auto m = Model::load(std::string(MOE_TEST_DATA_DIR) + "/models/mixtral_gptq_act_order");
  const ModelSpec& s = m->spec();
  const GpuWeightDtypes g = gpu_weight_dtypes(s, m->weights());
  const GpuLayerDtypes l1 = gpu_layer_dtypes(s, m->weights(), g, 1);
  EXPECT_EQ(l1.expert_gate_up, DType::F16);
  EXPECT_EQ(l1.expert_down, DType::PACKED_I4_F16_B32);
  EXPECT_EQ(l1.qkv, DType::F16);
  EXPECT_EQ(l1.o, DType::F16);
  const size_t E = size_t(s.moe.n_experts), H = size_t(s.hidden), F = size_t(s.moe.expert_ffn);
  EXPECT_EQ(planned_routed_experts(*m, g), size_t(s.n_layers) * E * (2 * H * F * 2 + H * F / 32 * 18));
}

}  // namespace
}  // namespace moe
