// The CPU forward pass on GGML block-quantized weights: a model whose matrices are blocks computes what
// its twin holding the same values as F32 computes (the matmul kernels themselves are checked against
// gguf-py in ggml_quants_test). Covers every place the forward pass reads a matrix: the projections
// through matmul, and the rows it reads itself (the embedding lookup, MLA's kv_b rows).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/model/model.h"
#include "tests/support/ggml_blocks.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

const std::string kModels = std::string(MOE_TEST_DATA_DIR) + "/models/";

const std::vector<DType>& kTypes = test::kGgmlBlockTypes;

// Logits of every prompt position (prefill in chunks of 4) and of three decode steps after it.
std::vector<float> logits_of(const Model& model, const std::vector<int32_t>& prompt) {
  BackendOptions o;
  o.threads = 2;
  o.max_context = 64;
  o.prefill_chunk = 4;
  auto b = make_cpu_backend(model, o);
  const size_t V = size_t(model.spec().vocab_size);
  std::vector<float> all(prompt.size() * V);
  b->forward(prompt, true, all.data(), nullptr);
  std::vector<float> step(V);
  for (int32_t t : {7, 11, 3}) {
    b->forward(std::span<const int32_t>(&t, 1), false, step.data(), nullptr);
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

// Σ(a − b)² / Σb².
double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    den += double(b[i]) * double(b[i]);
  }
  return num / den;
}

// The same numbers in two storage forms: only the order of the f32 additions differs (in the GEMV the
// split of each value into scale · q and offset), so the logits agree to f32 rounding carried through
// the layers. 1e-9 NMSE is ~3e-5 relative RMS error.
constexpr double kTwinBound = 1e-9;

TEST(QuantizedModel, CpuMatchesItsDequantizedTwin) {
  test::ScratchDir dir;
  dir.write("config.json", test::quantizable_qwen3_moe_config());
  SyntheticOptions so;
  so.threads = 2;
  auto quantized = Model::synthetic(dir.path, so);
  auto twin = Model::synthetic(dir.path, so);
  test::WeightSwap q(*quantized), f(*twin);
  test::quantize_every_matrix(q, kTypes, 100);
  std::vector<WeightMatrix*> from, to;
  test::for_each_matrix(q.weights(), [&](WeightMatrix& m, const std::string&) { from.push_back(&m); });
  test::for_each_matrix(f.weights(), [&](WeightMatrix& m, const std::string&) { to.push_back(&m); });
  ASSERT_EQ(from.size(), to.size());
  ASSERT_GT(from.size(), kTypes.size());  // every type is used
  for (size_t i = 0; i < from.size(); ++i) f.to_f32_of(*to[i], *from[i]);
  EXPECT_TRUE(is_block_quantized(quantized->weights().embed.dtype));
  EXPECT_TRUE(is_block_quantized(quantized->weights().lm_head.dtype));

  const std::vector<int32_t> prompt = {1, 5, 9, 14, 3, 22, 7, 30, 2, 11};
  const auto got = logits_of(*quantized, prompt), want = logits_of(*twin, prompt);
  for (float v : got) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LT(nmse(got, want), kTwinBound);
}

// DeepSeek-V2's latent attention reads kv_b's rows itself (W_UK per head) and multiplies by its W_UV
// rows; both find a block-quantized kv_b's rows at its row bytes. Its embedding rows likewise.
TEST(QuantizedModel, LatentAttentionAndEmbeddingRowsOfBlocks) {
  auto quantized = Model::load(kModels + "deepseek_v2");
  auto twin = Model::load(kModels + "deepseek_v2");
  test::WeightSwap q(*quantized), f(*twin);
  ASSERT_EQ(q.weights().embed.cols % 32, 0);
  q.to_blocks(q.weights().embed, DType::Q5_1, 1);
  f.to_f32_of(f.weights().embed, q.weights().embed);
  for (size_t l = 0; l < q.weights().layers.size(); ++l) {
    WeightMatrix& kv_b = q.weights().layers[l].kv_b;
    ASSERT_EQ(kv_b.cols % 32, 0);  // kv_lora_rank 32
    const DType types[] = {DType::Q4_0, DType::Q8_0, DType::MXFP4_GGML};
    q.to_blocks(kv_b, types[l % 3], uint32_t(10 + l));
    f.to_f32_of(f.weights().layers[l].kv_b, kv_b);
  }
  const std::vector<int32_t> prompt = {1, 5, 9, 14, 3, 22, 7};
  const auto got = logits_of(*quantized, prompt), want = logits_of(*twin, prompt);
  for (float v : got) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LT(nmse(got, want), kTwinBound);
}

// The Qwen3-MoE config with its routed experts in blocks of type `experts` and its embeddings in blocks of
// type `embed` (rows read through weight_row_to_f32), the rest F32, against its F32 twin.
void expect_experts_and_embeddings_match_twin(DType experts, DType embed) {
  test::ScratchDir dir;
  auto quantized = test::quantizable_model(dir, DType::F32);
  auto twin = test::quantizable_model(dir, DType::F32);
  test::WeightSwap q(*quantized), f(*twin);
  q.to_blocks(q.weights().embed, embed, 1);
  f.to_f32_of(f.weights().embed, q.weights().embed);
  int matrices = 0;
  for (size_t l = 0; l < q.weights().layers.size(); ++l) {
    for (size_t e = 0; e < q.weights().layers[l].experts.size(); ++e) {
      SwiGluWeights& from = q.weights().layers[l].experts[e];
      SwiGluWeights& to = f.weights().layers[l].experts[e];
      for (auto [m, t] : {std::pair{&from.gate, &to.gate}, {&from.up, &to.up}, {&from.down, &to.down}}) {
        q.to_blocks(*m, experts, uint32_t(100 + matrices));
        f.to_f32_of(*t, *m);
        ++matrices;
      }
    }
  }
  ASSERT_EQ(matrices, 12);  // 4 experts in layer 0 (layer 1 is dense)
  const std::vector<int32_t> prompt = {1, 5, 9, 14, 3, 22, 7, 30, 2, 11};
  const auto got = logits_of(*quantized, prompt), want = logits_of(*twin, prompt);
  for (float v : got) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LT(nmse(got, want), kTwinBound);
}

// A GGUF of GPT-OSS's kind: the routed experts in ggml's MXFP4 blocks (type 39), here the embeddings too.
TEST(QuantizedModel, Mxfp4GgmlExpertsAndEmbeddings) {
  expect_experts_and_embeddings_match_twin(DType::MXFP4_GGML, DType::MXFP4_GGML);
}

// An IQ4_XS GGUF's experts (type 23: 256 values per block, 8 scales), and IQ4_NL (type 20: 32 values per
// block, llama.cpp's fallback for IQ4_XS rows that are not whole 256-value blocks) for the embeddings.
TEST(QuantizedModel, Iq4XsExpertsAndIq4NlEmbeddings) {
  expect_experts_and_embeddings_match_twin(DType::IQ4_XS, DType::IQ4_NL);
}

// The 1- and 2-bit downloads of the largest MoEs (DeepSeek-V3, Kimi K2): IQ1_S or IQ1_M routed experts,
// IQ2_XXS or IQ3_XXS beside them.
TEST(QuantizedModel, Iq1ExpertsAndIq2Iq3Embeddings) {
  expect_experts_and_embeddings_match_twin(DType::IQ1_S, DType::IQ2_XXS);
  expect_experts_and_embeddings_match_twin(DType::IQ1_M, DType::IQ3_XXS);
}

}  // namespace
}  // namespace moe
