// GGUF's block-quantized weights on the GPU. A group of matrices that one kernel takes together (q/k/v of
// a layer, one layer's experts' gate and up, ...) sharing one block type stays in its blocks, which the
// kernels decode where they lie (gpu_group_dtype); anything else goes to the device as BF16, expanded
// row by row on the host (put_matrix). Checked here: the expansion is dequantize_row rounded to BF16, bit
// for bit; models whose groups hold every block type, kept or expanded, run on the GPU within the BF16
// bound of the CPU (which reads the blocks themselves), with the memory plan equal to what is allocated.
// MXFP4_GGML's E8M0 scales span f32's whole exponent range: every exponent arrives as gguf-py's value.
// IQ4_NL's and IQ4_XS's values (a table value of up to 7 significant bits times an f16 d, and for IQ4_XS
// a 6-bit scale) do not fit BF16's 8 bits, nor do the IQ1–IQ3 types' (a codebook value times a scale
// times an f16 d): they arrive as gguf-py's values rounded to BF16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/device_weights.h"
#include "engine/backend/cuda/kernels/fill.cuh"
#include "engine/backend/gpu_memory_plan.h"
#include "engine/backend/weight_rows.h"
#include "engine/common/error.h"
#include "engine/common/fp8.h"
#include "engine/common/ggml_quants.h"
#include "engine/common/mxfp4.h"
#include "engine/common/packed_int.h"
#include "engine/formats/safetensors.h"
#include "engine/model/model.h"
#include "tests/cuda/gpu_test_support.h"
#include "tests/support/ggml_blocks.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

const std::vector<DType>& kTypes = test::kGgmlBlockTypes;

// Every block type, a matrix of several rows and blocks: what arrives on the device is each row's
// dequantize_row values rounded to BF16, and the progress adds up to the stored bytes.
TEST(CudaQuantized, EveryBlockTypeArrivesAsItsBf16Values) {
  MOE_REQUIRE_GPU();
  for (DType t : kTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t rows = 7, cols = 2 * block_format(t).values + 256;
    const std::vector<uint8_t> blocks = test::random_blocks(t, rows, cols, 3);
    const WeightMatrix m{blocks.data(), t, rows, cols};
    cuda::test::DeviceVector<uint16_t> device(size_t(rows * cols));
    size_t reported = 0;
    cuda::put_matrix(device.get(), m, DType::BF16, [&](size_t n) { reported += n; });
    EXPECT_EQ(reported, matrix_bytes(t, rows, cols));
    const std::vector<uint16_t> got = device.download();
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(blocks.data() + size_t(r) * row_bytes(t, cols), t, cols, row.data());
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(got[size_t(r * cols + c)], f32_to_bf16(row[size_t(c)])) << "row " << r << " column " << c;
    }
    // Other dtypes are made as BF16, F16 or F32, never as another block type.
    EXPECT_THROW(cuda::put_matrix(device.get(), m, t == DType::Q4_0 ? DType::Q8_0 : DType::Q4_0), EngineError);
  }
}

// One MXFP4_GGML block for each of the 256 E8M0 exponents (tests/data/ggml_quants, from gguf-py): the
// BF16 on the device reads back as gguf-py's f32 values bit for bit, subnormals (e < 2) and ±inf (e ≥ 253)
// included. Every such value is a code of at most 2 significant bits times a power of two, which BF16
// holds exactly wherever f32 does: the expansion loses nothing, and no step passes the scale through a
// narrower type (f16 would overflow past 2^15).
TEST(CudaQuantized, Mxfp4GgmlEveryExponentArrivesExactly) {
  MOE_REQUIRE_GPU();
  const auto file = SafetensorsFile::open(std::string(MOE_TEST_DATA_DIR) + "/ggml_quants/reference.safetensors");
  const TensorView& blocks = file->tensors().at("MXFP4_GGML.edges.blocks");
  const TensorView& values = file->tensors().at("MXFP4_GGML.edges.values");
  const int64_t rows = values.shape.at(0), cols = values.shape.at(1);
  ASSERT_EQ(rows * cols, 256 * 32);
  const WeightMatrix m{blocks.data, DType::MXFP4_GGML, rows, cols};
  cuda::test::DeviceVector<uint16_t> device(size_t(rows * cols));
  cuda::put_matrix(device.get(), m, DType::BF16);
  const std::vector<uint16_t> got = device.download();
  const auto* want = reinterpret_cast<const float*>(values.data);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float f = bf16_to_f32(got[size_t(i)]);
    uint32_t a, b;
    std::memcpy(&a, &f, 4);
    std::memcpy(&b, &want[i], 4);
    ASSERT_EQ(a, b) << "value " << i << " (exponent byte " << i / 32 << "): " << f << " vs gguf-py " << want[i];
  }
}

// GPT-OSS's release stores its experts in Hugging Face's MXFP4: blocks and scales apart, gate and up rows
// interleaved (row_step 2). They go to the device as ggml's MXFP4 blocks, rearranged: each row is
// mxfp4_to_ggml_blocks of its stored blocks and scales, and decodes to mxfp4_dequantize's values; the progress
// adds up to the stored bytes. Random weights made on the device (--synthetic) are such blocks too, every
// scale 2^-7 as on the CPU; other block types are not made there.
TEST(CudaQuantized, GptOssMxfp4ArrivesAsGgmlBlocks) {
  MOE_REQUIRE_GPU();
  const int64_t stored_rows = 10, cols = 96, n_blocks = cols / 32;
  std::vector<uint8_t> blocks(size_t(stored_rows * n_blocks * 16)), scales(size_t(stored_rows * n_blocks));
  uint32_t x = 12345;
  for (auto& b : blocks) b = uint8_t((x = x * 1664525u + 1013904223u) >> 24);
  for (auto& s : scales) s = uint8_t(110 + ((x = x * 1664525u + 1013904223u) >> 28));
  for (int64_t first : {0, 1}) {  // gate (even stored rows) and up (odd ones)
    SCOPED_TRACE(first ? "up" : "gate");
    const int64_t rows = stored_rows / 2;
    const WeightMatrix m{blocks.data() + first * n_blocks * 16, DType::MXFP4, rows, cols, scales.data() + first * n_blocks, 2};
    const size_t row = matrix_bytes(DType::MXFP4_GGML, 1, cols);
    cuda::test::DeviceVector<uint8_t> device(size_t(rows) * row);
    size_t reported = 0;
    cuda::put_matrix(device.get(), m, DType::MXFP4_GGML, [&](size_t n) { reported += n; });
    EXPECT_EQ(reported, matrix_bytes(DType::MXFP4, rows, cols));
    const std::vector<uint8_t> got = device.download();
    std::vector<uint8_t> want(row);
    std::vector<float> hf(static_cast<size_t>(cols)), ggml(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      const Mxfp4Row src = mxfp4_row(m.data, m.scales, cols, 2, r);
      mxfp4_to_ggml_blocks(src.blocks, src.scales, n_blocks, want.data());
      ASSERT_EQ(std::memcmp(got.data() + size_t(r) * row, want.data(), row), 0) << "row " << r;
      mxfp4_dequantize(src.blocks, src.scales, cols, hf.data());
      dequantize_row(got.data() + size_t(r) * row, DType::MXFP4_GGML, cols, ggml.data());
      ASSERT_EQ(hf, ggml) << "row " << r;
    }
    EXPECT_THROW(cuda::put_matrix(device.get(), m, DType::Q4_0), EngineError);
  }

  const size_t count = 4096;
  cuda::test::DeviceVector<uint8_t> synthetic(count / 32 * 17);
  cuda::fill_random(synthetic.get(), DType::MXFP4_GGML, count, 7, 0.04f, nullptr);
  const std::vector<uint8_t> made = synthetic.download();
  std::set<uint8_t> codes;
  for (size_t b = 0; b < count / 32; ++b) {
    ASSERT_EQ(made[b * 17], 127 - 7) << "block " << b;
    for (int i = 1; i < 17; ++i) codes.insert(made[b * 17 + size_t(i)]);
  }
  EXPECT_GT(codes.size(), 200u) << "random code bytes";
  EXPECT_THROW(cuda::fill_random(synthetic.get(), DType::Q4_K, 256, 7, 0.04f, nullptr), EngineError);
}

// The IQ types' reference rows (tests/data/ggml_quants, from gguf-py): the BF16 on the device is gguf-py's f32
// value of each weight rounded to BF16; among them every IQ4_XS sub-block scale, both IQ4 types' every code, and
// every row of the IQ1–IQ3 codebooks.
TEST(CudaQuantized, IqTypesArriveAsGgufPyValuesInBf16) {
  MOE_REQUIRE_GPU();
  for (DType t : {DType::IQ4_NL, DType::IQ4_XS, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS,
                  DType::IQ3_S, DType::IQ1_S, DType::IQ1_M}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const test::GgmlReferenceRows ref = test::ggml_reference_rows(t);
    const WeightMatrix m{ref.blocks, t, ref.rows, ref.cols};
    cuda::test::DeviceVector<uint16_t> device(size_t(ref.rows * ref.cols));
    cuda::put_matrix(device.get(), m, DType::BF16);
    const std::vector<uint16_t> got = device.download();
    for (int64_t i = 0; i < ref.rows * ref.cols; ++i)
      ASSERT_EQ(got[size_t(i)], f32_to_bf16(ref.values[i])) << "value " << i << ": gguf-py " << ref.values[i];
  }
}

// Logits of every prompt position (prefill in chunks of 4) and of greedy decode steps, the CPU's tokens
// fed to both backends; with every step's routing.
struct Outcome {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
  std::vector<std::vector<int32_t>> expert_ids;
};

struct KeepRouting : StepObserver {
  std::vector<std::vector<int32_t>> ids;
  HookRequest ask() const override { return HookRequest::for_level(HookLevel::Routing, {}); }
  void observe(const StepRecord& r) override { ids.push_back(r.expert_ids); }
};

Outcome run(Backend& b, const std::vector<int32_t>& prompt, int V, const std::vector<int32_t>* forced) {
  Outcome out;
  KeepRouting keep;
  out.logits.resize(prompt.size() * size_t(V));
  b.forward(prompt, true, out.logits.data(), &keep);
  std::vector<float> step(static_cast<size_t>(V));
  int32_t next = int32_t(std::max_element(out.logits.end() - V, out.logits.end()) - (out.logits.end() - V));
  for (int i = 0; i < 4; ++i) {
    if (forced) next = (*forced)[size_t(i)];
    out.tokens.push_back(next);
    b.forward(std::span<const int32_t>(&next, 1), false, step.data(), &keep);
    out.logits.insert(out.logits.end(), step.begin(), step.end());
    next = int32_t(std::max_element(step.begin(), step.end()) - step.begin());
  }
  out.expert_ids = keep.ids;
  return out;
}

// The CPU and the GPU on one model, prompt and decode steps: within the BF16 bound of the parity tests
// (1e-3 NMSE), choosing the same experts; the allocator's parts equal the plan within `slack` bytes (each
// allocation is 256-byte aligned, which the plan does not count). The backend's description goes to `described`.
void expect_gpu_matches_cpu(Model& model_ref, std::string& described, size_t slack = 1024) {
  Model* model = &model_ref;
  BackendOptions o;
  o.threads = 2;
  o.max_context = 64;
  o.prefill_chunk = 4;
  auto cpu = make_cpu_backend(*model, o);
  auto gpu = cuda::make_cuda_backend(*model, o);
  const int V = model->spec().vocab_size;
  const std::vector<int32_t> prompt = {1, 5, 9, 14, 3, 22, 7, 30, 2, 11};
  const Outcome want = run(*cpu, prompt, V, nullptr);
  const Outcome got = run(*gpu, prompt, V, &want.tokens);
  EXPECT_LT(cuda::test::nmse(got.logits, want.logits), 1e-3);
  ASSERT_EQ(got.expert_ids.size(), want.expert_ids.size());
  const size_t K = size_t(model->spec().moe.top_k);
  for (size_t s = 0; s < want.expert_ids.size(); ++s) {
    ASSERT_EQ(got.expert_ids[s].size(), want.expert_ids[s].size());
    for (size_t i = 0; i < want.expert_ids[s].size(); i += K) {
      const std::set<int32_t> a(got.expert_ids[s].begin() + long(i), got.expert_ids[s].begin() + long(i + K));
      const std::set<int32_t> b(want.expert_ids[s].begin() + long(i), want.expert_ids[s].begin() + long(i + K));
      EXPECT_EQ(a, b) << "step " << s << " slot row " << i / K;
    }
  }

  GpuPlanOptions po{model->weights().embed.dtype, 64, o.prefill_chunk, 0};
  po.part_dtypes = gpu_weight_dtypes(model->spec(), model->weights());
  po.weights = &model->weights();
  const GpuMemoryPlan plan = plan_gpu_memory(model->spec(), po);
  const DeviceMemory m = gpu->device_memory();
  for (const auto& part : plan.weights) {
    const size_t bytes = m.bytes_of(part.part);
    EXPECT_GE(bytes, part.bytes) << part.part;
    // The 256-byte alignment of a few blocks per part, and the expert table: under 1 KiB for the models
    // made from test::quantizable_model, so a part planned in the wrong dtype (the F32 router as BF16: 2 KiB) shows.
    EXPECT_LE(bytes, part.bytes + slack) << part.part;
  }
  const size_t rest = m.bytes_of("activations") + m.bytes_of("workspace");
  EXPECT_NEAR(double(rest), double(plan.activation_bytes + plan.workspace_bytes), double(size_t(4) << 20));
  described = gpu->describe();
}

// Every block type in one model, matrix by matrix (attention, experts and the dense MLP each mix several;
// the routers F32): a group of mixed types goes as BF16, a group of one matrix (o, a dense down
// projection, the head) keeps its blocks.
TEST(CudaQuantized, ModelOfEveryBlockTypeMatchesTheCpu) {
  MOE_REQUIRE_GPU();
  test::ScratchDir dir;
  auto model = test::quantizable_model(dir, DType::BF16);
  test::WeightSwap swap(*model);
  test::quantize_every_matrix(swap, kTypes, 7);
  const GpuWeightDtypes d = gpu_weight_dtypes(model->spec(), model->weights());
  EXPECT_EQ(d.attention, DType::BF16);
  EXPECT_EQ(d.routed_experts, DType::BF16);
  EXPECT_EQ(d.router, DType::F32);
  const GpuLayerDtypes l0 = gpu_layer_dtypes(model->spec(), model->weights(), d, 0);
  EXPECT_EQ(l0.qkv, DType::BF16);             // q, k and v of three types
  EXPECT_EQ(l0.o, model->weights().layers[0].o.dtype);  // one matrix: its own blocks
  EXPECT_EQ(l0.expert_gate_up, DType::BF16);  // experts of several types
  std::string described;
  expect_gpu_matches_cpu(*model, described);
}

// A GGUF file's layout: each group one block type (a layer's q, k and v; all its experts' gate and up;
// all their downs; ...), types differing between groups as Q4_K_M's Q4_K and Q6_K do. Every group keeps
// its blocks, so every kernel runs on blocks: the decode products, the prefill expert GEMM and the
// dense projections' expansion for cuBLAS. Three models of nine groups put all twenty types in groups.
TEST(CudaQuantized, BlocksKeptGroupByGroupMatchTheCpu) {
  MOE_REQUIRE_GPU();
  for (size_t offset : {size_t(0), size_t(9), size_t(18)}) {
    SCOPED_TRACE("types from " + std::to_string(offset));
    test::ScratchDir dir;
    auto model = test::quantizable_model(dir, DType::BF16);
    test::WeightSwap swap(*model);
    ModelWeights& w = swap.weights();
    size_t next = offset;
    std::set<DType> used;
    auto group = [&](std::vector<WeightMatrix*> ms) {
      const DType t = kTypes[next++ % kTypes.size()];
      used.insert(t);
      uint32_t seed = 100 + uint32_t(next) * 10;
      for (WeightMatrix* m : ms) swap.to_blocks(*m, t, seed++);
    };
    group({&w.lm_head});
    for (LayerWeights& L : w.layers) {
      group({&L.q, &L.k, &L.v});
      group({&L.o});
      swap.to_random_f32(L.router, 5);
      if (!L.experts.empty()) {
        std::vector<WeightMatrix*> gate_up, down;
        for (auto& e : L.experts) gate_up.insert(gate_up.end(), {&e.gate, &e.up}), down.push_back(&e.down);
        group(gate_up);
        group(down);
      } else {
        group({&L.mlp.gate, &L.mlp.up});
        group({&L.mlp.down});
      }
    }
    const GpuWeightDtypes d = gpu_weight_dtypes(model->spec(), model->weights());
    EXPECT_EQ(d.head, w.lm_head.dtype);
    const GpuLayerDtypes l0 = gpu_layer_dtypes(model->spec(), model->weights(), d, 0);
    EXPECT_EQ(l0.qkv, w.layers[0].q.dtype);
    EXPECT_EQ(l0.expert_gate_up, w.layers[0].experts[0].gate.dtype);
    EXPECT_EQ(l0.expert_down, w.layers[0].experts[0].down.dtype);
    std::string described;
    expect_gpu_matches_cpu(*model, described);
    for (DType t : used) EXPECT_NE(described.find(std::string(dtype_name(t))), std::string::npos) << described;
  }
}

// Fine-grained FP8 (engine/common/fp8.h) on the way to the GPU: rows of whole 128-value blocks each in one tile
// arrive as F8_E4M3_B128 blocks, byte for byte what fp8_to_blocks makes (the CPU test checks those against the
// FP8 values); as F32 they arrive as the values, as BF16 as the values rounded. A matrix of 200 rows in 128 × 128
// tiles (the last row tile partial, as DeepSeek-V3's kv_a_proj_with_mqa's), every byte value in it.
TEST(CudaQuantized, Fp8ArrivesAsBlocksF32OrBf16) {
  MOE_REQUIRE_GPU();
  const int64_t rows = 200, cols = 384, tile = 128, grid_cols = 3;
  std::vector<uint8_t> q(size_t(rows * cols));
  std::vector<float> scales(2 * grid_cols);
  uint32_t x = 99;
  for (size_t i = 0; i < q.size(); ++i) q[i] = i < 256 ? uint8_t(i) : uint8_t((x = x * 1664525u + 1013904223u) >> 24);
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = 1e-4f * float(i + 1);
  WeightMatrix m{q.data(), DType::F8_E4M3, rows, cols};
  m.tiles = {scales.data(), tile, tile, grid_cols, 0};
  const size_t row = matrix_bytes(DType::F8_E4M3_B128, 1, cols);
  cuda::test::DeviceVector<uint8_t> blocks(size_t(rows) * row);
  size_t reported = 0;
  cuda::put_matrix(blocks.get(), m, DType::F8_E4M3_B128, [&](size_t n) { reported += n; });
  EXPECT_EQ(reported, size_t(rows * cols));
  const std::vector<uint8_t> got = blocks.download();
  std::vector<uint8_t> want(row);
  cuda::test::DeviceVector<uint16_t> bf16(size_t(rows * cols));
  cuda::put_matrix(bf16.get(), m, DType::BF16);
  const std::vector<uint16_t> got16 = bf16.download();
  cuda::test::DeviceVector<float> f32(size_t(rows * cols));
  cuda::put_matrix(f32.get(), m, DType::F32);
  const std::vector<float> got32 = f32.download();
  std::vector<float> values(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    fp8_to_blocks(q.data() + r * cols, m.tiles.row_scales(r), tile, cols, want.data());
    ASSERT_EQ(std::memcmp(got.data() + size_t(r) * row, want.data(), row), 0) << "row " << r;
    fp8_dequantize_cols(q.data() + r * cols, m.tiles.row_scales(r), tile, 0, cols, values.data());
    for (int64_t c = 0; c < cols; ++c) {
      ASSERT_EQ(got16[size_t(r * cols + c)], f32_to_bf16(values[size_t(c)])) << "row " << r << " column " << c;
      ASSERT_EQ(std::memcmp(&got32[size_t(r * cols + c)], &values[size_t(c)], 4), 0) << "row " << r << " column " << c;
    }
  }
  EXPECT_THROW(cuda::put_matrix(blocks.get(), m, DType::Q8_0), EngineError);
}

// Packed integers (engine/common/packed_int.h) on the way to the GPU: their values are those of their scales' dtype,
// so as BF16 (BF16 scales) or F16 (F16 scales) they arrive exactly, bit for bit the values the CPU reads, as does
// F32; they arrive as the blocks packed_int_block_type names byte for byte what packed_int_to_blocks makes (the CPU
// test checks those against the values). 4 bits with and without zero points, 8 bits; every value; groups of 32.
TEST(CudaQuantized, PackedIntegersArriveAsTheirValues) {
  MOE_REQUIRE_GPU();
  const int64_t rows = 40, cols = 256, group = 32, groups = cols / group;
  std::vector<uint8_t> q(size_t(rows * cols));  // enough for 8 bits
  uint32_t x = 7;
  for (size_t i = 0; i < q.size(); ++i) q[i] = i < 256 ? uint8_t(i * 77) : uint8_t((x = x * 1664525u + 1013904223u) >> 24);
  std::vector<float> scales(size_t(rows * groups));
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = 1e-3f * float(i % 13 + 1) / 3.0f;
  std::vector<int8_t> zeros(scales.size());
  for (size_t i = 0; i < zeros.size(); ++i) zeros[i] = int8_t(int(i * 5 % 16) - 8);  // every 4-bit zero point
  struct Case {
    DType packed, scale_dtype;
    bool zero_points;
    DType block;
  };
  for (const Case& k : {Case{DType::PACKED_I4, DType::BF16, false, DType::PACKED_I4_B32},
                        Case{DType::PACKED_I4, DType::F16, false, DType::PACKED_I4_F16_B32},
                        Case{DType::PACKED_I4, DType::BF16, true, DType::PACKED_I4_ZP_B32},
                        Case{DType::PACKED_I4, DType::F16, true, DType::PACKED_I4_ZP_F16_B32},
                        Case{DType::PACKED_I8, DType::BF16, false, DType::PACKED_I8_B32},
                        Case{DType::PACKED_I8, DType::F16, false, DType::PACKED_I8_F16_B32}}) {
    SCOPED_TRACE(std::string(dtype_name(k.block)));
    std::vector<float> rounded(scales);
    for (float& s : rounded) s = round_to_dtype(s, k.scale_dtype);  // as the loader reads the stored scales
    WeightMatrix m{q.data(), k.packed, rows, cols};
    m.tiles = {rounded.data(), 1, group, groups, 0, k.scale_dtype, k.zero_points ? zeros.data() : nullptr};
    const size_t stride = packed_int_row_bytes(k.packed, cols);
    cuda::test::DeviceVector<uint16_t> halves(size_t(rows * cols));
    size_t reported = 0;
    cuda::put_matrix(halves.get(), m, k.scale_dtype, [&](size_t n) { reported += n; });
    EXPECT_EQ(reported, size_t(rows) * stride);
    const std::vector<uint16_t> got16 = halves.download();
    cuda::test::DeviceVector<float> f32(size_t(rows * cols));
    cuda::put_matrix(f32.get(), m, DType::F32);
    const std::vector<float> got32 = f32.download();
    std::vector<float> values(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      weight_row_to_f32(m, r, values.data());
      for (int64_t c = 0; c < cols; ++c) {
        const float v = values[size_t(c)];
        const uint16_t h = got16[size_t(r * cols + c)];
        const float back = k.scale_dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        ASSERT_EQ(std::memcmp(&back, &v, 4), 0) << "row " << r << " column " << c;
        ASSERT_EQ(std::memcmp(&got32[size_t(r * cols + c)], &v, 4), 0) << "row " << r << " column " << c;
      }
    }
    ASSERT_EQ(packed_int_block_type(m.dtype, m.cols, m.tiles), k.block);
    const size_t row = matrix_bytes(k.block, 1, cols);
    cuda::test::DeviceVector<uint8_t> blocks(size_t(rows) * row);
    reported = 0;
    cuda::put_matrix(blocks.get(), m, k.block, [&](size_t n) { reported += n; });
    EXPECT_EQ(reported, size_t(rows) * stride);
    const std::vector<uint8_t> got = blocks.download();
    std::vector<uint8_t> want(row);
    for (int64_t r = 0; r < rows; ++r) {
      packed_int_to_blocks(k.block, q.data() + size_t(r) * stride, m.tiles.row_scales(r),
                           k.zero_points ? m.tiles.row_zero_points(r) : nullptr, group, cols, want.data());
      ASSERT_EQ(std::memcmp(got.data() + size_t(r) * row, want.data(), row), 0) << "row " << r;
    }
  }
}

// A checkpoint whose matrices, but the embeddings and the routers, `scale` makes scaled ones (narrow: the dense MLP's
// down of layer 1, with tiles narrower than a block): each group keeps its bytes on the GPU as `blocks`, which the
// decode products, the prefill expert GEMM and the dense projections' expansion for cuBLAS read, but the narrow
// one, which goes as `narrow_part`, its part's dtype. The model runs within the BF16 bound of the CPU, which reads
// the scaled bytes in place, with the memory the plan gives.
void expect_scaled_checkpoint_keeps_its_bytes(
    const std::function<void(test::WeightSwap&, WeightMatrix&, const std::string& name, bool narrow, uint32_t seed)>& scale,
    DType blocks, DType narrow_part) {
  test::ScratchDir dir;
  auto model = test::quantizable_model(dir, DType::BF16);
  test::WeightSwap swap(*model);
  uint32_t seed = 1;
  test::for_each_matrix(swap.weights(), [&](WeightMatrix& m, const std::string& name) {
    if (name == "embed" || name.rfind("router", 0) == 0) return;
    scale(swap, m, name, name == "mlp down of layer 1", seed++);
  });
  const ModelWeights& w = model->weights();
  const GpuWeightDtypes d = gpu_weight_dtypes(model->spec(), w);
  EXPECT_EQ(d.head, blocks);
  const GpuLayerDtypes l0 = gpu_layer_dtypes(model->spec(), w, d, 0), l1 = gpu_layer_dtypes(model->spec(), w, d, 1);
  EXPECT_EQ(l0.qkv, blocks);
  EXPECT_EQ(l0.o, blocks);
  EXPECT_EQ(l0.expert_gate_up, blocks);
  EXPECT_EQ(l0.expert_down, blocks);
  EXPECT_EQ(l1.mlp_gate_up, blocks);
  EXPECT_EQ(l1.mlp_down, narrow_part);
  std::string described;
  expect_gpu_matches_cpu(*model, described);
  EXPECT_NE(described.find(std::string(dtype_name(blocks))), std::string::npos) << described;
}

// expect_scaled_checkpoint_keeps_its_bytes's `scale` for packed integers: `packed` (PACKED_I4 or PACKED_I8) with
// `scales` in groups of 32 for the experts, 128 elsewhere (as RedHatAI's, Kimi's and Qwen's releases), 16 for the
// narrow matrix, and with zero points or not.
auto packed_ints(DType packed, DType scales, bool zero_points, uint32_t seed_offset = 0) {
  return [=](test::WeightSwap& swap, WeightMatrix& m, const std::string& name, bool narrow, uint32_t seed) {
    const int64_t group = narrow ? 16 : name.find("expert") != std::string::npos ? 32 : 128;
    swap.to_packed_int(m, packed, group, seed + seed_offset, scales, zero_points);
  };
}

// A W4A16 checkpoint's layout (compressed-tensors, BF16 scales, symmetric): PACKED_I4_B32 blocks; groups of 16 go as
// BF16, which holds BF16-scaled packed values exactly.
TEST(CudaQuantized, PackedIntCheckpointKeepsItsBytes) {
  MOE_REQUIRE_GPU();
  expect_scaled_checkpoint_keeps_its_bytes(packed_ints(DType::PACKED_I4, DType::BF16, false), DType::PACKED_I4_B32,
                                           DType::BF16);
}

// A GPTQ-Int4 checkpoint's layout (F16 scales, symmetric): PACKED_I4_F16_B32 blocks, multiplied in F16 for prompts
// (their values are F16 values); groups of 16 go as F16, exactly.
TEST(CudaQuantized, F16ScaledPackedIntCheckpointKeepsItsBytes) {
  MOE_REQUIRE_GPU();
  expect_scaled_checkpoint_keeps_its_bytes(packed_ints(DType::PACKED_I4, DType::F16, false), DType::PACKED_I4_F16_B32,
                                           DType::F16);
}

// An asymmetric W4A16 checkpoint's layout (zero points; BF16 scales here, the qwen3_awq golden has AWQ's F16 ones):
// PACKED_I4_ZP_B32 blocks; groups of 16 go as BF16, exactly.
TEST(CudaQuantized, AsymmetricPackedIntCheckpointKeepsItsBytes) {
  MOE_REQUIRE_GPU();
  expect_scaled_checkpoint_keeps_its_bytes(packed_ints(DType::PACKED_I4, DType::BF16, true), DType::PACKED_I4_ZP_B32,
                                           DType::BF16);
}

// A GPTQ-Int8 checkpoint's layout (F16 scales, symmetric 8 bits): PACKED_I8_F16_B32 blocks, multiplied in F16 for
// prompts; groups of 16 go as F16, exactly. (Seeds from 100: the first ones make a model whose first router, at the
// fifth token, has its second and third experts 2e-4 apart in probability, less than rounding the prompt's
// activations to F16 moves them; the GPU, 1e-7 off the CPU in NMSE at every other position, picks the third.)
TEST(CudaQuantized, EightBitPackedIntCheckpointKeepsItsBytes) {
  MOE_REQUIRE_GPU();
  expect_scaled_checkpoint_keeps_its_bytes(packed_ints(DType::PACKED_I8, DType::F16, false, 100),
                                           DType::PACKED_I8_F16_B32, DType::F16);
}

// A fine-grained FP8 checkpoint's layout (every release's 128 × 128 tiles): F8_E4M3_B128 blocks; tiles 64 wide go
// as F32.
TEST(CudaQuantized, Fp8CheckpointKeepsItsBytes) {
  MOE_REQUIRE_GPU();
  expect_scaled_checkpoint_keeps_its_bytes(
      [](test::WeightSwap& swap, WeightMatrix& m, const std::string&, bool narrow, uint32_t seed) {
        swap.to_fp8(m, 128, narrow ? 64 : 128, seed);
      },
      DType::F8_E4M3_B128, DType::F32);  // F32 holds the FP8 values times their scales exactly
}

// GPT-OSS's release: its experts, in Hugging Face's MXFP4, stay MXFP4 on the GPU as ggml's blocks (the kernels
// GGUF's GPT-OSS runs on), and the model runs within the BF16 bound of the CPU, with the memory the plan gives.
TEST(CudaQuantized, GptOssReleaseKeepsItsMxfp4Experts) {
  MOE_REQUIRE_GPU();
  auto model = Model::load(std::string(MOE_TEST_DATA_DIR) + "/models/gpt_oss_mxfp4");
  ASSERT_EQ(model->weights().layers[0].experts[0].gate.dtype, DType::MXFP4);
  std::string described;
  // Its matrices are small (an expert's gate is 1088 bytes as blocks): each allocation's alignment, up to 256 bytes
  // for each matrix and vector of a layer, adds up to 32 KiB here; planned as BF16, the experts would be 70 KiB more
  // per layer.
  const ModelSpec& s = model->spec();
  expect_gpu_matches_cpu(*model, described, size_t(s.n_layers) * size_t(3 * s.moe.n_experts + 8) * 256);
  EXPECT_NE(described.find("MXFP4_GGML"), std::string::npos) << described;
}

}  // namespace
}  // namespace moe
