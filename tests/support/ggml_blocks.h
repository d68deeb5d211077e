#pragma once
// GGML block-quantized weights for tests that run whole models on them (the GGUF loader's own tests use
// real files): random but valid blocks of a type, and a way to swap a loaded model's matrices for such
// blocks, or for the F32 values of what they hold. Header-only.
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/common/dtype.h"
#include "engine/common/fp8.h"
#include "engine/common/ggml_quants.h"
#include "engine/common/packed_int.h"
#include "engine/formats/safetensors.h"
#include "engine/model/model.h"
#include "tests/support/test_support.h"

namespace moe::test {

// Every GGML block type, the most used first: what Q4_K_M and Q5_K_M files are made of, then the
// fallbacks; GPT-OSS's experts; the IQ4 files (IQ4_XS, and the UD mixes); then the 1- to 3-bit IQ types of
// the small downloads of the largest MoEs.
inline const std::vector<DType> kGgmlBlockTypes = {
    DType::Q8_0,    DType::Q4_K,   DType::Q6_K,  DType::Q5_K,    DType::Q4_0,  DType::Q5_0,  DType::Q4_1,
    DType::Q5_1,    DType::Q3_K,   DType::Q2_K,  DType::MXFP4_GGML, DType::IQ4_NL, DType::IQ4_XS,
    DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M};

#ifdef MOE_TEST_DATA_DIR  // (the tests have it; the benchmarks that use the helpers below do not)
// One type's reference rows (tests/data/ggml_quants/reference.safetensors, which
// tests/make_ggml_quant_reference.py made with gguf-py): the stored blocks and gguf-py's values of them.
struct GgmlReferenceRows {
  int64_t rows = 0, cols = 0;
  const uint8_t* blocks = nullptr;  // [rows, row_bytes(t, cols)]
  const float* values = nullptr;    // [rows, cols]
};
inline GgmlReferenceRows ggml_reference_rows(DType t) {
  static const std::unique_ptr<SafetensorsFile> file =
      SafetensorsFile::open(std::string(MOE_TEST_DATA_DIR) + "/ggml_quants/reference.safetensors");
  const std::string name(dtype_name(t));
  const TensorView& blocks = file->tensors().at(name + ".blocks");
  const TensorView& values = file->tensors().at(name + ".values");
  return {values.shape.at(0), values.shape.at(1), reinterpret_cast<const uint8_t*>(blocks.data),
          reinterpret_cast<const float*>(values.data)};
}
#endif

// The byte offsets of a block's f16 fields (d, and dmin or m), and a magnitude for d (and dmin) that
// gives values of about ±0.05 from random quants and packed scales, as trained weights have. MXFP4_GGML
// has no f16 field: its scale is the E8M0 byte at offset 0 (2^(e − 127), e_low to e_low + 2). IQ1_M's d
// is spread over the top nibbles of the four u16 at split_d (f16 bits 4k … 4k + 3 in u16 k).
struct BlockScales {
  std::vector<size_t> offsets;
  float d = 0, dmin = 0;
  int e_low = -1;
  int split_d = -1;
};
inline BlockScales block_scales(DType t) {
  switch (t) {
    case DType::Q4_0: return {{0}, 0.01f, 0};
    case DType::Q4_1: return {{0, 2}, 0.006f, 0.04f};
    case DType::Q5_0: return {{0}, 0.005f, 0};
    case DType::Q5_1: return {{0, 2}, 0.003f, 0.04f};
    case DType::Q8_0: return {{0}, 0.0006f, 0};
    case DType::Q2_K: return {{80, 82}, 0.01f, 0.006f};
    case DType::Q3_K: return {{108}, 0.003f, 0};
    case DType::Q4_K: return {{0, 2}, 0.0005f, 0.002f};
    case DType::Q5_K: return {{0, 2}, 0.00025f, 0.002f};
    case DType::Q6_K: return {{208}, 0.00005f, 0};
    case DType::MXFP4_GGML: return {{}, 0, 0, 118};  // 2^-9 to 2^-7 times FP4 values up to 6
    case DType::IQ4_NL: return {{0}, 0.0004f, 0};   // times table values up to 127
    case DType::IQ4_XS: return {{0}, 0.00005f, 0};  // times 6-bit scales −32 to 31, times the table
    case DType::IQ2_XXS:                             // times (0.5 + ls) / 4 up to 3.9, times ±8 … ±43
    case DType::IQ2_XS:
    case DType::IQ2_S: return {{0}, 0.0004f, 0};
    case DType::IQ3_XXS: return {{0}, 0.0002f, 0};  // times (0.5 + ls) / 2 up to 7.8, times ±4 … ±62
    case DType::IQ3_S: return {{0}, 0.0002f, 0};    // times 1 + 2·ls up to 31, times ±1 … ±15
    case DType::IQ1_S: return {{0}, 0.004f, 0};     // times 2k + 1 up to 15, times −1.125 … 1.125
    case DType::IQ1_M: return {{}, 0.004f, 0, -1, 48};
    default: return {};
  }
}

// rows × row_bytes(t, cols) bytes of random blocks: random quants and packed scales; each f16 field
// ±(0.5–1)·its magnitude (block_scales), each E8M0 byte one of three, F8_E4M3_B128's F32 scale about
// 0.04 / 448 with no NaN codes, the packed integers' BF16 or F16 scale about 0.04 / 8 (8 bits: / 128), so every
// value is finite and moderate.
inline std::vector<uint8_t> random_blocks(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  const BlockFormat f = block_format(t);
  const BlockScales s = block_scales(t);
  std::vector<uint8_t> bytes(size_t(rows) * row_bytes(t, cols));
  std::mt19937 rng(seed);
  for (auto& b : bytes) b = uint8_t(rng());
  std::uniform_real_distribution<float> mag(0.5f, 1.0f);
  for (size_t at = 0; at < bytes.size(); at += f.bytes) {
    for (size_t i = 0; i < s.offsets.size(); ++i) {
      const float v = (i == 0 ? s.d : s.dmin) * mag(rng) * (rng() & 1 ? -1.0f : 1.0f);
      const uint16_t h = f32_to_f16(v);
      std::memcpy(&bytes[at + s.offsets[i]], &h, 2);
    }
    if (s.e_low >= 0) bytes[at] = uint8_t(s.e_low + int(rng() % 3));
    if (t >= DType::PACKED_I4_B32 && t <= DType::PACKED_I8_F16_B32) {  // a BF16 or F16 scale: values of ±0.04 at most
      const bool i8 = t == DType::PACKED_I8_B32 || t == DType::PACKED_I8_F16_B32;
      const float scale = 0.04f / (i8 ? 128.0f : 8.0f) * mag(rng);
      const uint16_t h = gpu_compute_dtype(t) == DType::BF16 ? f32_to_bf16(scale) : f32_to_f16(scale);
      std::memcpy(&bytes[at], &h, 2);
      if (f.bytes == 20) bytes[at + 2] = uint8_t(rng() % 16), bytes[at + 3] = 0;  // a zero point, stored plus 8
    }
    if (t == DType::F8_E4M3_B128) {  // an F32 scale of an FP8 release's size, and no NaN codes
      const float scale = 0.04f / 448.0f * mag(rng);
      std::memcpy(&bytes[at], &scale, 4);
      for (size_t i = 4; i < f.bytes; ++i)
        if ((bytes[at + i] & 0x7f) == 0x7f) bytes[at + i] ^= 1;
    }
    if (s.split_d >= 0) {
      const uint16_t h = f32_to_f16(s.d * mag(rng) * (rng() & 1 ? -1.0f : 1.0f));
      for (int k = 0; k < 4; ++k) {
        uint8_t& top = bytes[at + size_t(s.split_d + 2 * k + 1)];
        top = uint8_t((top & 0x0f) | (((h >> (4 * k)) & 15) << 4));
      }
    }
  }
  return bytes;
}

// Every matrix of a loaded model the forward pass reads (present ones: rows > 0), with a name for
// messages. An LM head tied to the embeddings is not visited (it is the embeddings' matrix).
inline void for_each_matrix(ModelWeights& w, const std::function<void(WeightMatrix&, const std::string&)>& fn) {
  const bool tied = w.lm_head.data == w.embed.data;
  fn(w.embed, "embed");
  if (!tied) fn(w.lm_head, "lm_head");
  for (size_t l = 0; l < w.layers.size(); ++l) {
    LayerWeights& L = w.layers[l];
    const std::string at = " of layer " + std::to_string(l);
    auto visit = [&](WeightMatrix& m, const std::string& name) {
      if (m.rows > 0) fn(m, name + at);
    };
    for (auto [m, name] : {std::pair<WeightMatrix*, const char*>{&L.q, "q"}, {&L.k, "k"}, {&L.v, "v"}, {&L.o, "o"},
                           {&L.q_a, "q_a"}, {&L.kv_a, "kv_a"}, {&L.kv_b, "kv_b"}, {&L.router, "router"},
                           {&L.shared.gate, "shared gate"}, {&L.shared.up, "shared up"}, {&L.shared.down, "shared down"},
                           {&L.shared_gate, "shared expert gate"}, {&L.mlp.gate, "mlp gate"}, {&L.mlp.up, "mlp up"},
                           {&L.mlp.down, "mlp down"}})
      visit(*m, name);
    for (size_t e = 0; e < L.experts.size(); ++e) {
      visit(L.experts[e].gate, "expert " + std::to_string(e) + " gate");
      visit(L.experts[e].up, "expert " + std::to_string(e) + " up");
      visit(L.experts[e].down, "expert " + std::to_string(e) + " down");
    }
  }
  if (tied) w.lm_head = w.embed;
}

// Tests swap matrices of a loaded model. Model hands out its weights as const; the Model object itself
// is not const, so writing through the cast is well defined. The swapped-in bytes live in `owned`.
class WeightSwap {
 public:
  explicit WeightSwap(Model& m) : w_(const_cast<ModelWeights&>(m.weights())) {}
  ModelWeights& weights() { return w_; }

  // m becomes random blocks of type t, its shape kept.
  void to_blocks(WeightMatrix& m, DType t, uint32_t seed) {
    owned_.push_back(random_blocks(t, m.rows, m.cols, seed));
    m.data = owned_.back().data();
    m.dtype = t;
    m.scales = nullptr;
    m.row_step = 1;
    m.tiles = {};
  }
  // m becomes fine-grained FP8 (engine/common/fp8.h): random E4M3 bytes (no NaN codes) with an F32 scale per
  // tile_rows × tile_cols tile, of about 0.04 / 448 each, so that the values lie within about ±0.04.
  void to_fp8(WeightMatrix& m, int64_t tile_rows, int64_t tile_cols, uint32_t seed) {
    std::mt19937 rng(seed);
    owned_.emplace_back(size_t(m.rows * m.cols));
    for (uint8_t& b : owned_.back()) b = uint8_t(rng()), b = (b & 0x7f) == 0x7f ? uint8_t(b ^ 1) : b;
    m.data = owned_.back().data();
    const int64_t grid_cols = tile_count(m.cols, tile_cols), n = tile_count(m.rows, tile_rows) * grid_cols;
    owned_.emplace_back(size_t(n) * sizeof(float));
    auto* scales = reinterpret_cast<float*>(owned_.back().data());
    std::uniform_real_distribution<float> mag(0.5f, 1.0f);
    for (int64_t i = 0; i < n; ++i) scales[i] = 0.04f / 448.0f * mag(rng);
    m.dtype = DType::F8_E4M3;
    m.tiles = {scales, tile_rows, tile_cols, grid_cols, 0};
    m.scales = nullptr;
    m.row_step = 1;
  }
  // m becomes compressed-tensors' packed integers (engine/common/packed_int.h; `packed`: PACKED_I4 or PACKED_I8):
  // random values with a scale of `scales_dtype` per group of `group` columns, of about 0.04 / 8 each (8 bits:
  // / 128), and with `zero_points` a random zero point per group within 3 of the midpoint, so that the values lie
  // within about ±0.04 (±0.06 with zero points).
  void to_packed_int(WeightMatrix& m, DType packed, int64_t group, uint32_t seed, DType scales_dtype = DType::BF16,
                     bool zero_points = false) {
    std::mt19937 rng(seed);
    owned_.emplace_back(matrix_bytes(packed, m.rows, m.cols));
    for (uint8_t& b : owned_.back()) b = uint8_t(rng());
    m.data = owned_.back().data();
    const int64_t groups = m.cols / group;
    owned_.emplace_back(size_t(m.rows * groups) * sizeof(float));
    auto* scales = reinterpret_cast<float*>(owned_.back().data());
    std::uniform_real_distribution<float> mag(0.5f, 1.0f);
    const float range = packed == DType::PACKED_I8 ? 128.0f : 8.0f;
    for (int64_t i = 0; i < m.rows * groups; ++i) scales[i] = round_to_dtype(0.04f / range * mag(rng), scales_dtype);
    m.dtype = packed;
    m.tiles = {scales, 1, group, groups, 0, scales_dtype};
    if (zero_points) {
      owned_.emplace_back(size_t(m.rows * groups));
      for (uint8_t& z : owned_.back()) z = uint8_t(int(rng() % 7) - 3);
      m.tiles.zero_points = reinterpret_cast<const int8_t*>(owned_.back().data());
    }
    m.scales = nullptr;
    m.row_step = 1;
  }
  // m becomes F32 holding `from`'s values (from: any dtype dequantize_row reads, the same shape).
  void to_f32_of(WeightMatrix& m, const WeightMatrix& from) {
    owned_.emplace_back(size_t(from.rows * from.cols) * 4);
    auto* out = reinterpret_cast<float*>(owned_.back().data());
    const size_t stride = row_bytes(from.dtype, from.cols);
    for (int64_t r = 0; r < from.rows; ++r)
      dequantize_row(static_cast<const uint8_t*>(from.data) + size_t(r) * stride, from.dtype, from.cols, out + r * from.cols);
    m.data = out;
    m.dtype = DType::F32;
    m.rows = from.rows;
    m.cols = from.cols;
    m.scales = nullptr;
    m.row_step = 1;
    m.tiles = {};
  }
  // m becomes F32 holding random values in ±0.04.
  void to_random_f32(WeightMatrix& m, uint32_t seed) {
    owned_.emplace_back(size_t(m.rows * m.cols) * 4);
    auto* out = reinterpret_cast<float*>(owned_.back().data());
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-0.04f, 0.04f);
    for (int64_t i = 0; i < m.rows * m.cols; ++i) out[i] = dist(rng);
    m.data = out;
    m.dtype = DType::F32;
    m.scales = nullptr;
    m.row_step = 1;
    m.tiles = {};
  }

 private:
  ModelWeights& w_;
  std::vector<std::vector<uint8_t>> owned_;  // (a vector's buffer does not move when the outer vector grows)
};

// Every matrix becomes blocks, the types taken in turn from `types` (each matrix's width a multiple of
// its block); the routers become random F32, as GGUF files keep them. So a model of a few matrices
// mixes every type within its attention, its experts and its dense MLP.
inline void quantize_every_matrix(WeightSwap& swap, const std::vector<DType>& types, uint32_t seed) {
  size_t i = 0;
  for_each_matrix(swap.weights(), [&](WeightMatrix& m, const std::string& name) {
    if (name.rfind("router", 0) == 0) swap.to_random_f32(m, seed + uint32_t(i));
    else swap.to_blocks(m, types[i % types.size()], seed + uint32_t(i));
    ++i;
  });
}

// A Qwen3-MoE config whose every matrix width is a multiple of 256 (every block type fits): hidden 256,
// 2 heads of 128 (one KV head), 4 experts of 256 (top 2), layer 1 a dense MLP of 512, 300 tokens.
inline std::string quantizable_qwen3_moe_config() {
  return R"({"model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 256,
    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 128,
    "intermediate_size": 512, "moe_intermediate_size": 256, "num_experts": 4, "num_experts_per_tok": 2,
    "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [1], "hidden_act": "silu",
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "rope_scaling": null, "max_position_embeddings": 256,
    "attention_bias": false, "tie_word_embeddings": false, "vocab_size": 300, "bos_token_id": 1,
    "eos_token_id": 2, "torch_dtype": "bfloat16"})";
}

// That config as a synthetic model of `dtype` written into dir (two threads fill it).
inline std::unique_ptr<Model> quantizable_model(ScratchDir& dir, DType dtype) {
  dir.write("config.json", quantizable_qwen3_moe_config());
  SyntheticOptions so;
  so.threads = 2;
  so.dtype = dtype;
  return Model::synthetic(dir.path, so);
}

}  // namespace moe::test
