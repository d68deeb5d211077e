// Bad checkpoints give an EngineError that names the file and the field; nothing crashes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/common/mxfp4.h"
#include "engine/formats/safetensors.h"
#include "engine/model/model.h"
#include "engine/runtime/session.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
const fs::path kSource = fs::path(MOE_TEST_DATA_DIR) / "models" / "qwen3_moe";
const fs::path kConfigs = fs::path(MOE_TEST_DATA_DIR) / ".." / ".." / "resources" / "configs";

// A scratch copy of the qwen3_moe checkpoint that each test breaks in its own way.
class BrokenCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override { copy_from(kSource); }
  void copy_from(const fs::path& source) {
    source_ = source;
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors"}) fs::copy_file(source / f, dir_ / f, fs::copy_options::overwrite_existing);
    config_ = test::read_json(dir_ / "config.json");
  }

  void write_config() { dir_.write("config.json", config_.dump(2)); }
  // Rewrites model.safetensors through `edit`, which may drop or change tensors.
  void rewrite_weights(const std::function<void(std::vector<TensorToWrite>&, std::vector<std::vector<std::byte>>&)>& edit) {
    std::vector<TensorToWrite> tensors;
    std::vector<std::vector<std::byte>> storage;
    {
      auto f = SafetensorsFile::open(source_ / "model.safetensors");
      for (const auto& [name, v] : f->tensors()) {
        storage.emplace_back(v.data, v.data + v.nbytes);
        tensors.push_back({name, v.dtype, v.shape, nullptr, v.nbytes});
      }
    }
    edit(tensors, storage);
    for (size_t i = 0; i < tensors.size(); ++i)
      if (!tensors[i].data) tensors[i].data = storage[i].data();
    write_safetensors(dir_ / "model.safetensors", tensors);
  }
  // Rewrites model.safetensors without the tensor `name`.
  void drop_tensor(const std::string& name) {
    rewrite_weights([&](auto& tensors, auto& storage) {
      for (size_t i = 0; i < tensors.size(); ++i)
        if (tensors[i].name == name) {
          tensors.erase(tensors.begin() + long(i));
          storage.erase(storage.begin() + long(i));
          break;
        }
    });
  }
  // Loading must fail with an EngineError whose message names `file` and `field`.
  void expect_error(const std::string& file, const std::string& field) {
    try {
      Model::load(dir_.path);
      FAIL() << "loaded a broken checkpoint";
    } catch (const EngineError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(file), std::string::npos) << what;
      EXPECT_NE(what.find(field), std::string::npos) << what;
    }
  }

  test::ScratchDir dir_;
  fs::path source_;
  nlohmann::json config_;
};

TEST_F(BrokenCheckpoint, MissingConfig) {
  fs::remove(dir_ / "config.json");
  expect_error("config.json", "missing");
}

TEST_F(BrokenCheckpoint, ConfigIsNotJson) {
  dir_.write("config.json", "{\"model_type\": \"qwen3_moe\", ");
  expect_error("config.json", "");
}

TEST_F(BrokenCheckpoint, UnknownModelType) {
  config_["model_type"] = "gpt_bigcode";
  write_config();
  expect_error("config.json", "model_type");
}

TEST_F(BrokenCheckpoint, MissingRequiredField) {
  config_.erase("hidden_size");
  write_config();
  expect_error("config.json", "hidden_size");
}

TEST_F(BrokenCheckpoint, FieldOfTheWrongType) {
  config_["num_hidden_layers"] = "three";
  write_config();
  expect_error("config.json", "num_hidden_layers");
}

TEST_F(BrokenCheckpoint, TopKLargerThanTheExperts) {
  config_["num_experts_per_tok"] = 99;
  write_config();
  expect_error("config.json", "num_experts_per_tok");
}

TEST_F(BrokenCheckpoint, UnsupportedRopeScalingIsRefusedByName) {
  config_["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 4.0}, {"rope_theta", 1e6}};
  write_config();
  expect_error("config.json", "rope_parameters.rope_type");
}

TEST_F(BrokenCheckpoint, YarnWithoutAFactorIsRefusedByName) {
  config_["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e6}, {"original_max_position_embeddings", 64}};
  write_config();
  expect_error("config.json", "rope_parameters.factor");
}

TEST_F(BrokenCheckpoint, YarnWithANonNumberIsRefusedByName) {
  config_["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e6}, {"factor", 4.0}, {"beta_fast", "fast"}};
  write_config();
  expect_error("config.json", "rope_parameters.beta_fast");
}

TEST_F(BrokenCheckpoint, QuantizedCheckpointsAreRefusedByName) {
  for (const char* method : {"bitsandbytes", "hqq", "exl2"}) {
    config_["quantization_config"] = {{"quant_method", method}};
    write_config();
    expect_error("config.json", "quantization_config.quant_method");
  }
  config_["quantization_config"] = {{"quant_method", "mxfp4"}};  // read for GPT-OSS's experts only
  write_config();
  expect_error("config.json", "quantization_config.quant_method");
}

// A fine-grained FP8 checkpoint (qwen3_moe_fp8: F8_E4M3 weights, BF16 scales per 32 × 16 tile): a weight's
// scales, their dtype and shape, the tile and the format are checked and named, and FP8 weights without the
// config that says how they are scaled are refused.
class BrokenFp8Checkpoint : public BrokenCheckpoint {
 protected:
  void SetUp() override { copy_from(kSource.parent_path() / "qwen3_moe_fp8"); }
};

TEST_F(BrokenFp8Checkpoint, ScalesTilesAndFormatAreNamed) {
  {
    const auto m = Model::load(dir_.path);
    const WeightMatrix& down = m->weights().layers[2].experts[5].down;  // [64, 32]: 2 × 2 tiles
    EXPECT_EQ(down.dtype, DType::F8_E4M3);
    EXPECT_EQ(down.tiles.tile_rows, 32);
    EXPECT_EQ(down.tiles.tile_cols, 16);
    EXPECT_EQ(down.tiles.grid_cols, 2);
    EXPECT_EQ(m->weights().layers[2].router.dtype, DType::BF16);  // the router is not quantized
    EXPECT_EQ(m->matrix_bytes_by_dtype().at("F8_E4M3"), size_t(3) * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 8 * 3 * 32 * 64));
  }
  drop_tensor("model.layers.1.self_attn.o_proj.weight_scale_inv");
  expect_error(dir_.path.string(), "model.layers.1.self_attn.o_proj.weight_scale_inv");
  copy_from(source_);
  rewrite_weights([](auto& tensors, auto&) {
    for (auto& t : tensors)
      if (t.name == "model.layers.2.mlp.experts.5.down_proj.weight_scale_inv") t.dtype = DType::I16;
  });
  expect_error("model.safetensors", "model.layers.2.mlp.experts.5.down_proj.weight_scale_inv");
  copy_from(source_);
  config_["quantization_config"]["weight_block_size"] = {16, 16};  // the scales no longer fit the tiles
  write_config();
  expect_error("model.safetensors", "weight_scale_inv");
  for (const nlohmann::json& bad : {nlohmann::json{0, 16}, nlohmann::json{32}, nlohmann::json(nullptr)}) {
    config_["quantization_config"]["weight_block_size"] = bad;
    write_config();
    expect_error("config.json", "quantization_config.weight_block_size");
  }
  config_["quantization_config"]["weight_block_size"] = {32, 16};
  config_["quantization_config"]["fmt"] = "e5m2";
  write_config();
  expect_error("config.json", "quantization_config.fmt");
  config_.erase("quantization_config");
  write_config();
  expect_error("model.safetensors", "F8_E4M3");
}

// A compressed-tensors checkpoint (qwen3_moe_w4a16: experts 4-bit in groups of 32 with BF16 scales, attention 8-bit
// with one scale per row): each packed weight's bits and groups come from its tensors; its scales, their dtype and
// shape, its recorded shape, its zero points' shape, and the schemes the config describes are checked and named.
class BrokenPackedCheckpoint : public BrokenCheckpoint {
 protected:
  void SetUp() override { copy_from(kSource.parent_path() / "qwen3_moe_w4a16"); }
  // Rewrites the tensor `name` with `edit` applied to it.
  void edit_tensor(const std::string& name, const std::function<void(TensorToWrite&, std::vector<std::byte>&)>& edit) {
    rewrite_weights([&](auto& tensors, auto& storage) {
      for (size_t i = 0; i < tensors.size(); ++i)
        if (tensors[i].name == name) edit(tensors[i], storage[i]);
    });
  }
  // config.json with quantization_config `good`, then edited, is refused, naming `field`.
  void expect_refused(const nlohmann::json& good, const std::function<void()>& edit, const std::string& field) {
    config_["quantization_config"] = good;
    edit();
    write_config();
    expect_error("config.json", field);
  }
  nlohmann::json& weights_scheme(int group) {
    return config_["quantization_config"]["config_groups"]["group_" + std::to_string(group)]["weights"];
  }
};

TEST_F(BrokenPackedCheckpoint, TensorsAndSchemesAreNamed) {
  {
    const auto m = Model::load(dir_.path);
    const LayerWeights& L = m->weights().layers[1];
    EXPECT_EQ(L.experts[3].down.dtype, DType::PACKED_I4);  // [64, 32]: one group of 32 a row
    EXPECT_EQ(L.experts[3].down.tiles.tile_cols, 32);
    EXPECT_EQ(L.experts[3].down.tiles.round_to, DType::BF16);
    EXPECT_EQ(L.q.dtype, DType::PACKED_I8);
    EXPECT_EQ(L.q.tiles.tile_cols, 64);  // one scale per row
    EXPECT_EQ(L.router.dtype, DType::BF16);
    const size_t experts = size_t(3) * 8 * 3 * 32 * 64;  // weights of every layer's experts
    EXPECT_EQ(m->matrix_bytes_by_dtype().at("PACKED_I4"), experts / 2);
    EXPECT_EQ(m->matrix_bytes_by_dtype().at("scales"), experts / 32 * 4 + size_t(3) * (64 + 32 + 32 + 64) * 4);
    EXPECT_EQ(m->weight_bytes_by_part().routed_experts, experts / 2 + experts / 32 * 4);
  }
  const std::string w = "model.layers.2.mlp.experts.5.down_proj.weight";
  drop_tensor(w + "_scale");
  expect_error(dir_.path.string(), w + "_scale");
  copy_from(source_);
  edit_tensor(w + "_scale", [](TensorToWrite& t, auto&) { t.dtype = DType::I16; });
  expect_error("model.safetensors", w + "_scale");
  copy_from(source_);
  edit_tensor(w + "_scale", [](TensorToWrite& t, auto&) { t.shape = {32, 2}; });  // 64 rows
  expect_error("model.safetensors", w + "_scale");
  copy_from(source_);
  edit_tensor(w + "_packed", [](TensorToWrite& t, auto&) { t.shape = {32, 8}; });  // 8 words of 4 bits: 64 columns
  expect_error("model.safetensors", w + "_packed");
  copy_from(source_);
  edit_tensor(w + "_packed", [](TensorToWrite& t, auto&) { t.dtype = DType::F32; });
  expect_error("model.safetensors", w + "_packed");
  copy_from(source_);
  edit_tensor(w + "_shape", [](TensorToWrite&, std::vector<std::byte>& bytes) { bytes[0] = std::byte{63}; });
  expect_error("model.safetensors", w + "_shape");
  copy_from(source_);
  rewrite_weights([&](auto& tensors, auto& storage) {  // an asymmetric scheme's zero points, of the wrong shape
    tensors.push_back({w + "_zero_point", DType::I32, {1, 1}, nullptr, 4});
    storage.emplace_back(4);
  });
  expect_error("model.safetensors", w + "_zero_point");
  copy_from(source_);
  rewrite_weights([&](auto& tensors, auto& storage) {  // activation order by group
    tensors.push_back({w + "_g_idx", DType::I32, {32}, nullptr, 128});
    storage.emplace_back(128);
  });
  expect_error("model.safetensors", w + "_g_idx");
  copy_from(source_);

  const nlohmann::json good = config_["quantization_config"];
  // Every scheme asymmetric, and packed weights without their zero points: refused, not read as symmetric ones.
  weights_scheme(0)["symmetric"] = false;
  weights_scheme(1)["symmetric"] = false;
  write_config();
  expect_error(dir_.path.string(), "weight_zero_point");
  weights_scheme(1)["symmetric"] = true;  // one scheme symmetric: the tensors say which weights have zero points
  write_config();
  EXPECT_NO_THROW(Model::load(dir_.path));
  expect_refused(good, [&] { weights_scheme(0)["symmetric"] = "yes"; }, "config_groups.group_0.weights.symmetric");
  expect_refused(good, [&] { weights_scheme(1)["num_bits"] = 2; }, "config_groups.group_1.weights.num_bits");
  expect_refused(good, [&] { weights_scheme(0)["type"] = "float"; }, "config_groups.group_0.weights.type");
  expect_refused(good, [&] { weights_scheme(0)["strategy"] = "tensor"; }, "config_groups.group_0.weights.strategy");
  expect_refused(good, [&] { weights_scheme(0)["actorder"] = "group"; }, "config_groups.group_0.weights.actorder");
  expect_refused(good, [&] { weights_scheme(0)["actorder"] = true; }, "config_groups.group_0.weights.actorder");
  for (const char* order : {"weight", "static"}) {  // the groups stay in input order: read as they are
    config_["quantization_config"] = good;
    weights_scheme(0)["actorder"] = order;
    write_config();
    EXPECT_NO_THROW(Model::load(dir_.path)) << order;
  }
  config_["quantization_config"] = good;
  expect_refused(good, [&] { config_["quantization_config"]["config_groups"]["group_1"]["format"] = "float-quantized"; },
          "config_groups.group_1.format");
  expect_refused(good, [&] { config_["quantization_config"]["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}}; },
          "config_groups.group_0.input_activations");
  expect_refused(good, [&] { config_["quantization_config"]["kv_cache_scheme"] = {{"num_bits", 8}}; }, "kv_cache_scheme");
  expect_refused(good, [&] { config_["quantization_config"].erase("config_groups"); }, "quantization_config.config_groups");
  config_.erase("quantization_config");
  write_config();
  expect_error("model.safetensors", "weight_packed");
}

// GPTQ and AWQ checkpoints (qwen3_moe_gptq: 4-bit, symmetric, F16 scales per group of 32, v1; qwen3_awq: 4-bit with
// zero points): each packed weight's bits and groups come from its tensors, its values are rearranged into
// packed_int.h's rows, and its tensors' dtypes and shapes, its groups' order and the formats the config names are
// checked and named.
class BrokenQuantLinearCheckpoint : public BrokenPackedCheckpoint {
 protected:
  void SetUp() override { copy_from(kSource.parent_path() / "qwen3_moe_gptq"); }
};

TEST_F(BrokenQuantLinearCheckpoint, GptqTensorsAndFormatsAreNamed) {
  {
    const auto m = Model::load(dir_.path);
    const LayerWeights& L = m->weights().layers[1];
    EXPECT_EQ(L.experts[3].down.dtype, DType::PACKED_I4);  // [64, 32]: one group of 32 a row
    EXPECT_EQ(L.experts[3].down.tiles.tile_cols, 32);
    EXPECT_EQ(L.experts[3].down.tiles.round_to, DType::F16);
    EXPECT_EQ(L.experts[3].down.tiles.zero_points, nullptr);  // symmetric: every z is 8
    EXPECT_EQ(L.q.dtype, DType::PACKED_I4);
    EXPECT_EQ(L.router.dtype, DType::F16);
    EXPECT_TRUE(m->unused_tensors().empty());  // qzeros and g_idx were read
    const size_t experts = size_t(3) * 8 * 3 * 32 * 64, attention = size_t(3) * (64 + 32 + 32 + 64) * 64;
    EXPECT_EQ(m->matrix_bytes_by_dtype().at("PACKED_I4"), (experts + attention) / 2);
    EXPECT_EQ(m->matrix_bytes_by_dtype().at("scales"), (experts + attention) / 32 * 4);
  }
  const std::string w = "model.layers.2.mlp.experts.5.down_proj";  // 64 outputs, 32 inputs
  drop_tensor(w + ".qzeros");
  expect_error(dir_.path.string(), w + ".qzeros");
  copy_from(source_);
  drop_tensor(w + ".scales");
  expect_error(dir_.path.string(), w + ".scales");
  copy_from(source_);
  edit_tensor(w + ".scales", [](TensorToWrite& t, auto&) { t.dtype = DType::I16; });
  expect_error("model.safetensors", w + ".scales");
  copy_from(source_);
  edit_tensor(w + ".scales", [](TensorToWrite& t, auto&) { t.shape = {2, 32}; });
  expect_error("model.safetensors", w + ".scales");
  copy_from(source_);
  edit_tensor(w + ".qweight", [](TensorToWrite& t, auto&) { t.shape = {8, 32}; });  // 32 outputs
  expect_error("model.safetensors", w + ".qweight");
  copy_from(source_);
  edit_tensor(w + ".qweight", [](TensorToWrite& t, auto&) { t.dtype = DType::F32; });
  expect_error("model.safetensors", w + ".qweight");
  copy_from(source_);
  edit_tensor(w + ".qzeros", [](TensorToWrite& t, auto&) { t.shape = {8, 1}; });
  expect_error("model.safetensors", w + ".qzeros");
  copy_from(source_);
  edit_tensor(w + ".g_idx", [](TensorToWrite&, std::vector<std::byte>& bytes) { bytes[0] = std::byte{1}; });
  expect_error("model.safetensors", w + ".g_idx");  // input 0 in group 1 of 1
  copy_from(source_);
  const std::string up = "model.layers.2.mlp.experts.5.up_proj";  // 64 inputs, 2 groups
  edit_tensor(up + ".g_idx", [](TensorToWrite&, std::vector<std::byte>& bytes) { bytes[0] = std::byte{1}; });
  expect_error("model.safetensors", up + ".g_idx");  // group 1 has 33 inputs
  copy_from(source_);
  edit_tensor(up + ".g_idx", [](TensorToWrite&, std::vector<std::byte>& bytes) {  // inputs 0 and 63 trade groups
    bytes[0] = std::byte{1};
    bytes[63 * 4] = std::byte{0};
  });
  {
    const auto m = Model::load(dir_.path);
    const WeightMatrix& held = m->weights().layers[2].experts[5].up;
    ASSERT_NE(held.tiles.input_order, nullptr);  // activation order: held with the inputs by group
    EXPECT_EQ(held.tiles.input_order[0], 1);
    EXPECT_EQ(held.tiles.input_order[31], 63);
    EXPECT_EQ(held.tiles.input_order[32], 0);
    EXPECT_EQ(held.tiles.input_order[63], 62);
    EXPECT_EQ(m->weights().layers[2].experts[5].gate.tiles.input_order, nullptr);
    EXPECT_EQ(m->matrix_bytes_by_dtype().at("scales"), (size_t(3) * 8 * 3 * 32 * 64 + size_t(3) * 192 * 64) / 32 * 4 + 64 * 4);
  }
  copy_from(source_);
  edit_tensor(w + ".g_idx", [](TensorToWrite& t, auto&) { t.dtype = DType::F32; });
  expect_error("model.safetensors", w + ".g_idx");
  copy_from(source_);

  const nlohmann::json good = config_["quantization_config"];
  expect_refused(good, [&] { config_["quantization_config"]["bits"] = 3; }, "quantization_config.bits");
  expect_refused(good, [&] { config_["quantization_config"]["checkpoint_format"] = "marlin"; }, "quantization_config.checkpoint_format");
  expect_refused(good, [&] { config_["quantization_config"]["pack_dtype"] = "int16"; }, "quantization_config.pack_dtype");
  config_.erase("quantization_config");
  write_config();
  expect_error("model.safetensors", "qweight");
}

TEST_F(BrokenQuantLinearCheckpoint, AwqTensorsAndFormatsAreNamed) {
  copy_from(kSource.parent_path() / "qwen3_awq");
  {
    const auto m = Model::load(dir_.path);
    const LayerWeights& L = m->weights().layers[0];
    EXPECT_EQ(L.mlp.down.dtype, DType::PACKED_I4);  // [64, 96]: 3 groups of 32 a row
    EXPECT_EQ(L.mlp.down.tiles.grid_cols, 3);
    EXPECT_NE(L.mlp.down.tiles.zero_points, nullptr);
    EXPECT_TRUE(m->unused_tensors().empty());
  }
  const std::string w = "model.layers.1.mlp.up_proj";  // 96 outputs, 64 inputs
  edit_tensor(w + ".qweight", [](TensorToWrite& t, auto&) { t.shape = {32, 24}; });  // 32 inputs
  expect_error("model.safetensors", w + ".qweight");
  copy_from(source_);
  drop_tensor(w + ".qzeros");
  expect_error(dir_.path.string(), w + ".qzeros");
  copy_from(source_);
  const nlohmann::json good = config_["quantization_config"];
  expect_refused(good, [&] { config_["quantization_config"]["version"] = "gemv"; }, "quantization_config.version");
  expect_refused(good, [&] { config_["quantization_config"]["zero_point"] = false; }, "quantization_config.zero_point");
  expect_refused(good, [&] { config_["quantization_config"]["bits"] = 8; }, "quantization_config.bits");
}

// DeepSeek's multi-head latent attention and routers: what cannot be run is refused by name, and a
// missing MLA tensor is named.
class BrokenDeepSeekCheckpoint : public BrokenCheckpoint {
 protected:
  void SetUp() override { copy_from(kSource.parent_path() / "deepseek_v2"); }
};

TEST_F(BrokenDeepSeekCheckpoint, MissingLatentRankIsNamed) {
  config_.erase("kv_lora_rank");
  write_config();
  expect_error("config.json", "kv_lora_rank");
}

TEST_F(BrokenDeepSeekCheckpoint, OddRopeWidthIsRefused) {
  config_["qk_rope_head_dim"] = 7;
  write_config();
  expect_error("config.json", "qk_rope_head_dim");
}

TEST_F(BrokenDeepSeekCheckpoint, UnknownRouterMethodIsRefused) {
  config_["topk_method"] = "noaux_tc";  // V3's, under V2's model_type
  write_config();
  expect_error("config.json", "topk_method");
}

TEST_F(BrokenDeepSeekCheckpoint, MlpBiasIsRefused) {
  config_["mlp_bias"] = true;
  write_config();
  expect_error("config.json", "mlp_bias");
}

TEST_F(BrokenDeepSeekCheckpoint, MissingKvBIsNamed) {
  drop_tensor("model.layers.1.self_attn.kv_b_proj.weight");
  expect_error(dir_.path.string(), "model.layers.1.self_attn.kv_b_proj.weight");
}

TEST_F(BrokenDeepSeekCheckpoint, WrongLatentWidthIsNamed) {
  config_["kv_lora_rank"] = 16;  // the checkpoint's latent is 32 wide
  write_config();
  expect_error("model.safetensors", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
}

// GLM-4.5's router groups and partial rotary: settings the engine cannot honour are refused by name.
class BrokenGlmCheckpoint : public BrokenCheckpoint {
 protected:
  void SetUp() override { copy_from(kSource.parent_path() / "glm4_moe"); }
};

TEST_F(BrokenGlmCheckpoint, GroupsThatDoNotDivideTheExperts) {
  config_["n_group"] = 3;  // 8 experts
  write_config();
  expect_error("config.json", "n_group");
}

TEST_F(BrokenGlmCheckpoint, MoreKeptGroupsThanGroups) {
  config_["topk_group"] = 5;
  write_config();
  expect_error("config.json", "topk_group");
}

TEST_F(BrokenGlmCheckpoint, KeptGroupsTooSmallForTopK) {
  config_["topk_group"] = 1;  // 2 experts, top-3
  write_config();
  expect_error("config.json", "num_experts_per_tok");
}

TEST_F(BrokenGlmCheckpoint, RotaryFactorWithoutAnEvenNumberOfDims) {
  config_["rope_parameters"]["partial_rotary_factor"] = 0.05;  // 16 · 0.05 = 0 dims
  write_config();
  expect_error("config.json", "rope_parameters.partial_rotary_factor");
  config_["rope_parameters"].erase("partial_rotary_factor");
  config_["partial_rotary_factor"] = 1.5;
  write_config();
  expect_error("config.json", "partial_rotary_factor");
}

TEST_F(BrokenGlmCheckpoint, MissingSelectionBias) {
  drop_tensor("model.layers.2.mlp.gate.e_score_correction_bias");
  expect_error("model.layers.2.mlp.gate.e_score_correction_bias", "");
}

TEST(GlmConfig, PartialRotaryFromEitherPlaceAndItsDefault) {
  const fs::path glm = kSource.parent_path() / "glm4_moe";
  EXPECT_EQ(Model::load(glm)->spec().attn.rotary_dim, 8);  // rope_parameters.partial_rotary_factor 0.5
  test::ScratchDir dir;
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors"}) fs::copy_file(glm / f, dir / f);
  auto config = test::read_json(dir / "config.json");
  config["rope_parameters"].erase("partial_rotary_factor");  // absent: Glm4MoeConfig's 0.5
  dir.write("config.json", config.dump(2));
  EXPECT_EQ(Model::load(dir.path)->spec().attn.rotary_dim, 8);
  config["partial_rotary_factor"] = 0.25;  // top level, as the Hub's GLM-4.5 configs have it
  dir.write("config.json", config.dump(2));
  EXPECT_EQ(Model::load(dir.path)->spec().attn.rotary_dim, 4);
}

TEST_F(BrokenCheckpoint, ShapeDisagreesWithConfig) {
  config_["moe_intermediate_size"] = 33;  // the expert tensors are [32, 48]
  write_config();
  expect_error("model.safetensors", "model.layers.0.mlp.experts.0.gate_proj.weight");
}

TEST_F(BrokenCheckpoint, HeadDimDisagreesWithConfig) {
  config_["head_dim"] = 12;
  write_config();
  expect_error("model.safetensors", "q_proj.weight");
}

TEST_F(BrokenCheckpoint, MissingTensor) {
  drop_tensor("model.layers.2.mlp.experts.7.down_proj.weight");
  expect_error(dir_.path.string(), "model.layers.2.mlp.experts.7.down_proj.weight");
}

TEST_F(BrokenCheckpoint, WeightOfAnUnsupportedDtype) {
  rewrite_weights([](auto& tensors, auto&) {
    for (auto& t : tensors)
      if (t.name == "model.layers.0.self_attn.o_proj.weight") t.dtype = DType::I32;  // same byte size as F32
  });
  expect_error("model.safetensors", "model.layers.0.self_attn.o_proj.weight");
}

TEST_F(BrokenCheckpoint, UntiedModelWithoutLmHead) {
  drop_tensor("lm_head.weight");
  expect_error(dir_.path.string(), "lm_head.weight");
}

TEST_F(BrokenCheckpoint, NotAFolder) {
  try {
    Model::load(dir_ / "config.json");
    FAIL();
  } catch (const EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos);
  }
}

TEST(SessionErrors, TokenOutsideTheVocabularyAndContextOverflow) {
  auto model = Model::load(kSource);
  Session session(*model, BackendOptions{1, 8, 4});
  GenerateOptions g;
  g.max_new_tokens = 2;
  EXPECT_THROW(session.generate({1, 2, 100000}, g), EngineError);
  EXPECT_THROW(session.generate({1, 2, -1}, g), EngineError);
  EXPECT_THROW(session.generate(std::vector<int32_t>(9, 1), g), EngineError);
  EXPECT_THROW(session.generate({}, g), EngineError);
  // After the errors the session still works, and generation stops when the context is full.
  g.max_new_tokens = 100;
  const auto r = session.generate({1, 2, 3}, g);
  EXPECT_EQ(r.reason, StopReason::ContextFull);
  EXPECT_EQ(r.tokens.size(), 6u);
}

TEST(SyntheticModel, RealShapesWithoutFiles) {
  // The shape of the qwen3_moe checkpoint, random weights: same spec, runs, counts match.
  SyntheticOptions o;
  o.dtype = DType::BF16;
  auto synth = Model::synthetic(kSource / "config.json", o);
  auto real = Model::load(kSource);
  EXPECT_EQ(synth->spec().n_moe_layers(), real->spec().n_moe_layers());
  EXPECT_EQ(compute_model_size(synth->spec()).total_params, compute_model_size(real->spec()).total_params);
  Session s(*synth, BackendOptions{2, 64, 16});
  GenerateOptions g;
  g.max_new_tokens = 4;
  EXPECT_EQ(s.generate({1, 2, 3}, g).tokens.size(), 4u);
  // A cap smaller than the model makes later tensors share memory, and it still runs.
  o.max_distinct_bytes = 64 << 10;
  auto aliased = Model::synthetic(kSource, o);
  EXPECT_LE(aliased->synthetic_bytes(), size_t(128) << 10);
  Session s2(*aliased, BackendOptions{2, 64, 16});
  EXPECT_EQ(s2.generate({1, 2, 3}, g).tokens.size(), 4u);
}

TEST(SyntheticModel, ShapeOnlyDescribesWithoutMemoryAndRefusesToRun) {
  SyntheticOptions o;
  o.shape_only = true;
  auto shapes = Model::synthetic(kSource, o);
  auto real = Model::load(kSource);
  EXPECT_FALSE(shapes->has_weights());
  EXPECT_EQ(shapes->synthetic_bytes(), 0u);
  // BF16 shapes: the matrices take half the bytes of the F32 checkpoint.
  EXPECT_GT(shapes->weight_bytes(), real->weight_bytes() / 2 - 4096);
  EXPECT_LT(shapes->weight_bytes(), real->weight_bytes() / 2 + 4096);
  EXPECT_THROW(Session(*shapes, BackendOptions{}), EngineError);
}

TEST(ModelSize, PublishedParameterCountsOfRealShapes) {
  // SPECS.md §13: Qwen3-30B-A3B has 30.53 B parameters, 3.35 B active per token.
  ModelSpec s;
  s.hidden = 2048;
  s.n_layers = 48;
  s.vocab_size = 151936;
  s.attn.n_heads = 32;
  s.attn.n_kv_heads = 4;
  s.attn.head_dim = 128;
  s.attn.qk_norm = QkNorm::PerHead;
  s.moe.n_experts = 128;
  s.moe.top_k = 8;
  s.moe.expert_ffn = 768;
  s.layer_is_moe.assign(48, true);
  const auto z = compute_model_size(s);
  EXPECT_NEAR(double(z.total_params) / 1e9, 30.53, 0.01);
  EXPECT_NEAR(double(z.active_params) / 1e9, 3.35, 0.01);
  EXPECT_EQ(z.kv_values_per_token, 49152);
}

TEST(ModelSize, PublishedParameterCountsOfGlm45) {
  // Z.ai's model cards: GLM-4.5-Air 106 B total, 12 B active; GLM-4.5 355 B total, 32 B active. Their
  // active counts leave out the embeddings and the head; GLM-4.5's total includes the multi-token
  // prediction layer (one more MoE layer, ~3.9 B) that the forward pass does not run.
  SyntheticOptions o;
  o.shape_only = true;
  const auto air = compute_model_size(Model::synthetic(kConfigs / "glm-4.5-air.json", o)->spec());
  EXPECT_NEAR(double(air.total_params) / 1e9, 106.85, 0.01);
  EXPECT_NEAR(double(air.active_params - air.embedding_params - air.lm_head_params) / 1e9, 12.18, 0.01);
  const auto full = compute_model_size(Model::synthetic(kConfigs / "glm-4.5.json", o)->spec());
  EXPECT_NEAR(double(full.total_params) / 1e9, 352.80, 0.01);
  EXPECT_NEAR(double(full.active_params - full.embedding_params - full.lm_head_params) / 1e9, 32.08, 0.01);
}

TEST(ModelSize, PublishedParameterCountsOfDeepSeek) {
  // SPECS.md §6.2 and §7: DeepSeek-V2-Lite 15.7 B total, 2.66 B active with the embeddings (DeepSeek
  // quotes 2.4 B); DeepSeek-V3 671.0 B total, 37.6 B active (without its 14 B multi-token-prediction
  // module). Their KV cache is the latent plus the shared RoPE key: 576 values per token and layer.
  SyntheticOptions o;
  o.shape_only = true;
  const auto lite_spec = Model::synthetic(kConfigs / "deepseek-v2-lite.json", o)->spec();
  const auto lite = compute_model_size(lite_spec);
  EXPECT_NEAR(double(lite.total_params) / 1e9, 15.71, 0.01);
  EXPECT_NEAR(double(lite.active_params) / 1e9, 2.66, 0.01);
  EXPECT_EQ(lite.kv_values_per_token, 27 * 576);
  EXPECT_NEAR(lite_spec.attn.scale(), 0.1147214, 1e-6);
  EXPECT_FALSE(lite_spec.moe.group_limited());  // greedy
  const auto v3 = compute_model_size(Model::synthetic(kConfigs / "deepseek-v3.json", o)->spec());
  EXPECT_NEAR(double(v3.total_params) / 1e9, 671.03, 0.01);
  EXPECT_NEAR(double(v3.active_params) / 1e9, 37.55, 0.01);
  EXPECT_EQ(v3.kv_values_per_token, 61 * 576);
}

TEST(ModelSize, PublishedParameterCountsOfMiniMaxM2) {
  // MiniMax's model card: 230 B total, 10 B active. By hand, per layer: attention 3072·(6144 + 2·1024) +
  // 6144·3072 = 44.04 M (+ the q/k norms), experts 256·3·3072·1536 = 3.624 B, router 256·3072; 62 layers,
  // plus embeddings and head of 200064·3072 = 614.6 M each. Active: attention, router and 8 of 256 experts.
  SyntheticOptions o;
  o.shape_only = true;
  const auto m = compute_model_size(Model::synthetic(kConfigs / "minimax-m2.json", o)->spec());
  EXPECT_NEAR(double(m.total_params) / 1e9, 228.69, 0.01);
  EXPECT_NEAR(double(m.active_params - m.embedding_params - m.lm_head_params) / 1e9, 9.80, 0.01);
  EXPECT_EQ(m.kv_values_per_token, 62 * 2 * 1024);
}

TEST(ModelSize, PublishedParameterCountsOfErnie45) {
  // Baidu's model card for ERNIE-4.5-21B-A3B: 21 B total, 3 B active. By hand: attention 2560·(2560 + 2·512) +
  // 2560·2560 = 15.73 M per layer; layer 0 dense (3·2560·12288 = 94.4 M); 27 MoE layers of 64 experts
  // 3·2560·1536 = 11.8 M each, top-6, plus two shared experts' width (23.6 M); tied embeddings 103424·2560.
  SyntheticOptions o;
  o.shape_only = true;
  const auto e = compute_model_size(Model::synthetic(kConfigs / "ernie-4.5-21b-a3b.json", o)->spec());
  EXPECT_NEAR(double(e.total_params) / 1e9, 21.83, 0.01);
  EXPECT_NEAR(double(e.active_params - e.embedding_params - e.lm_head_params) / 1e9, 3.08, 0.01);
  EXPECT_EQ(e.lm_head_params, 0);  // tied
}

TEST(ModelSize, PublishedParameterCountsOfGptOss) {
  // OpenAI's model card (table 1): gpt-oss-120b 116.83 B total, 5.13 B active; gpt-oss-20b 20.91 B total,
  // 3.61 B active. Their active counts take the unembedding but not the embedding. By hand for 120b: experts
  // 128·(3·2880² + 2·2880 + 2880) plus the router 2880·128 + 128, per layer, make 114.71 B over 36 layers;
  // attention 2880·(4096 + 2·512) + 4096·2880 with biases and 64 sinks, 0.96 B; embedding and head 201088·2880
  // each.
  SyntheticOptions o;
  o.shape_only = true;
  const auto big = compute_model_size(Model::synthetic(kConfigs / "gpt-oss-120b.json", o)->spec());
  EXPECT_NEAR(double(big.total_params) / 1e9, 116.83, 0.01);
  EXPECT_NEAR(double(big.active_params - big.embedding_params) / 1e9, 5.13, 0.01);
  EXPECT_NEAR(double(big.routed_expert_params + big.router_params) / 1e9, 114.71, 0.01);
  EXPECT_NEAR(double(big.attention_params) / 1e9, 0.96, 0.01);
  const auto small = compute_model_size(Model::synthetic(kConfigs / "gpt-oss-20b.json", o)->spec());
  EXPECT_NEAR(double(small.total_params) / 1e9, 20.91, 0.01);
  EXPECT_NEAR(double(small.active_params - small.embedding_params) / 1e9, 3.61, 0.01);
  EXPECT_EQ(small.kv_values_per_token, 24 * 2 * 512);
}

// GPT-OSS's MXFP4 experts are read as they are stored: an expert's gate is the even rows of its gate_up
// blocks, its up the odd rows; the weights count 17 bytes per 32 values. gpt-oss-20b's synthetic
// shape (its config names MXFP4, as the release's does) then takes what the release's files take.
TEST(ModelSize, Mxfp4ExpertsAreHeldAsStored) {
  const fs::path dir = kSource.parent_path() / "gpt_oss_mxfp4";
  auto m = Model::load(dir);
  const ModelSpec& s = m->spec();
  const int64_t H = s.hidden, I = s.moe.expert_ffn, E = s.moe.n_experts;
  const TensorStore store = TensorStore::open_folder(dir);
  for (int l = 0; l < s.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.experts.";
    const auto* gu = store.find(p + "gate_up_proj_blocks");
    const auto* gu_scales = store.find(p + "gate_up_proj_scales");
    const auto* dn = store.find(p + "down_proj_blocks");
    ASSERT_TRUE(gu && gu_scales && dn);
    const auto file = [](const TensorView* t) { return reinterpret_cast<const uint8_t*>(t->data); };
    const auto* dn_scales = store.find(p + "down_proj_scales");
    ASSERT_TRUE(dn_scales);
    // Row i of a bound matrix against stored row `stored` of the file's blocks and scales.
    auto same_row = [&](const WeightMatrix& w, int64_t i, const TensorView* blocks, const TensorView* scales, int64_t stored) {
      const Mxfp4Row row = mxfp4_row(w.data, w.scales, w.cols, w.row_step, i);
      const int64_t nb = w.cols / 32;
      return std::memcmp(row.blocks, file(blocks) + stored * nb * 16, size_t(nb * 16)) == 0 &&
             std::memcmp(row.scales, file(scales) + stored * nb, size_t(nb)) == 0;
    };
    for (int64_t e = 0; e < E; ++e) {
      const SwiGluWeights& X = m->weights().layers[size_t(l)].experts[size_t(e)];
      for (const WeightMatrix* w : {&X.gate, &X.up, &X.down}) EXPECT_EQ(w->dtype, DType::MXFP4);
      for (int64_t i = 0; i < I; ++i) {
        EXPECT_TRUE(same_row(X.gate, i, gu, gu_scales, e * 2 * I + 2 * i)) << "layer " << l << " expert " << e << " gate row " << i;
        EXPECT_TRUE(same_row(X.up, i, gu, gu_scales, e * 2 * I + 2 * i + 1)) << "layer " << l << " expert " << e << " up row " << i;
      }
      for (int64_t i = 0; i < H; ++i)
        EXPECT_TRUE(same_row(X.down, i, dn, dn_scales, e * H + i)) << "layer " << l << " expert " << e << " down row " << i;
    }
  }
  const size_t expert_bytes = size_t(3 * I * H / 32 * 17 + (2 * I + H) * 4);  // + the F32 biases
  EXPECT_EQ(m->weight_bytes_by_part().routed_experts, size_t(s.n_layers * E) * expert_bytes);

  SyntheticOptions o;
  o.shape_only = true;
  auto oss = Model::synthetic(kConfigs / "gpt-oss-20b.json", o);
  const size_t per_expert = size_t(3) * 2880 * 2880 / 32 * 17 + size_t(3 * 2880) * 4;
  EXPECT_EQ(oss->weight_bytes_by_part().routed_experts, size_t(24 * 32) * per_expert);
  EXPECT_NEAR(double(oss->weight_bytes()) / double(1 << 30), 12.83, 0.01);
  EXPECT_EQ(oss->weight_bytes(), oss->weight_bytes_by_part().total());
}

// A synthetic GPT-OSS holds MXFP4 experts too (random codes, scales of 2^-7) and runs.
TEST(SyntheticModel, Mxfp4ExpertsRun) {
  SyntheticOptions o;
  auto m = Model::synthetic(kSource.parent_path() / "gpt_oss_mxfp4", o);
  const SwiGluWeights& X = m->weights().layers[1].experts[3];
  ASSERT_EQ(X.up.dtype, DType::MXFP4);
  ASSERT_NE(X.up.data, nullptr);
  EXPECT_EQ(X.up.scales[0], 120);
  EXPECT_EQ(X.down.scales[X.down.rows * X.down.cols / 32 - 1], 120);
  Session session(*m, BackendOptions{2, 64, 16});
  GenerateOptions g;
  g.max_new_tokens = 4;
  EXPECT_EQ(session.generate({1, 2, 3}, g).tokens.size(), 4u);
}

// GPT-OSS's layer types and the tensors only it has are named when they are wrong or missing.
class BrokenGptOssCheckpoint : public BrokenCheckpoint {
 protected:
  void SetUp() override { copy_from(kSource.parent_path() / "gpt_oss"); }
};

TEST_F(BrokenGptOssCheckpoint, LayerTypesAreCheckedByName) {
  config_["layer_types"][2] = "chunked_attention";
  write_config();
  expect_error("config.json", "layer_types[2]");
  config_["layer_types"] = {"full_attention"};
  write_config();
  expect_error("config.json", "layer_types");
  config_["layer_types"] = nullptr;  // absent: transformers' default, sliding on the even layers
  config_["sliding_window"] = 0;
  write_config();
  expect_error("config.json", "sliding_window");
  config_["sliding_window"] = 6;
  write_config();
  const auto model = Model::load(dir_.path);
  EXPECT_EQ(model->spec().layer_window, (std::vector<int>{6, 0, 6, 0}));
}

TEST_F(BrokenGptOssCheckpoint, MissingSinksAndBiasesAreNamed) {
  drop_tensor("model.layers.3.self_attn.sinks");
  expect_error(dir_.path.string(), "model.layers.3.self_attn.sinks");
  copy_from(source_);
  drop_tensor("model.layers.1.mlp.router.bias");
  expect_error(dir_.path.string(), "model.layers.1.mlp.router.bias");
  copy_from(source_);
  drop_tensor("model.layers.0.mlp.experts.down_proj_bias");
  expect_error(dir_.path.string(), "model.layers.0.mlp.experts.down_proj_bias");
}

// The released layout: MXFP4 blocks and scales, each checked for its dtype (U8) and shape, and named.
TEST_F(BrokenGptOssCheckpoint, BrokenMxfp4ExpertsAreNamed) {
  copy_from(kSource.parent_path() / "gpt_oss_mxfp4");
  EXPECT_TRUE(Model::load(dir_.path)->spec().moe.experts_mxfp4);
  drop_tensor("model.layers.1.mlp.experts.down_proj_scales");
  expect_error(dir_.path.string(), "model.layers.1.mlp.experts.down_proj_scales");
  copy_from(source_);
  rewrite_weights([](auto& tensors, auto&) {
    for (auto& t : tensors)
      if (t.name == "model.layers.2.mlp.experts.gate_up_proj_blocks") t.dtype = DType::I8;
  });
  expect_error("model.safetensors", "model.layers.2.mlp.experts.gate_up_proj_blocks");
  copy_from(source_);
  config_["intermediate_size"] = 48;  // not whole blocks of 32
  write_config();
  expect_error("config.json", "intermediate_size");
}

TEST_F(BrokenGptOssCheckpoint, ExpertsStoredOutputMajorAreRefusedByTheirShape) {
  // gate_up_proj saved [E, 2I, H] (the engine's own order) instead of GPT-OSS's [E, H, 2I].
  rewrite_weights([](auto& tensors, auto&) {
    for (auto& t : tensors)
      if (t.name == "model.layers.2.mlp.experts.gate_up_proj") std::swap(t.shape[1], t.shape[2]);
  });
  expect_error("model.safetensors", "model.layers.2.mlp.experts.gate_up_proj");
}

}  // namespace
}  // namespace moe

