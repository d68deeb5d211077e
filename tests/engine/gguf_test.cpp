// GGUF: the reader against the committed files (tests/make_gguf_goldens.py wrote them with gguf-py), its
// errors on files that lie, a deterministic mutation fuzzer, and a GGUF model's metadata, tensors and
// tokenizer read as the Hugging Face checkpoint they were converted from.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "engine/common/error.h"
#include "engine/common/ggml_quants.h"
#include "engine/formats/gguf.h"
#include "engine/formats/json_file.h"
#include "engine/formats/safetensors.h"
#include "engine/model/model.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/ggml_blocks.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

const std::string kModels = std::string(MOE_TEST_DATA_DIR) + "/models/";
using test::GgufBuilder;
using test::ScratchDir;
using test::error_of;


std::string f32_bytes(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

// A small valid file: a few kinds of metadata and two tensors.
GgufBuilder small_file() {
  GgufBuilder b;
  b.metadata["general.architecture"] = "qwen3moe";
  b.metadata["general.count"] = 7;
  b.metadata["general.ratio"] = 0.5;
  b.metadata["general.flag"] = true;
  b.metadata["general.names"] = {"a", "bc"};
  b.metadata["general.nested"] = nlohmann::json::array({nlohmann::json::array({1, 2}), nlohmann::json::array({3})});
  b.tensors.push_back({"a.weight", 0, {2, 3}, f32_bytes({1, 2, 3, 4, 5, 6})});
  b.tensors.push_back({"b.weight", 1, {4}, std::string(8, '\x3c')});
  return b;
}

TEST(Gguf, ReadsMetadataShapesAndData) {
  ScratchDir dir;
  const auto path = dir.write("small.gguf", small_file().bytes());
  EXPECT_TRUE(is_gguf_file(path));
  EXPECT_FALSE(is_gguf_file(dir.write("x.safetensors", "not gguf")));
  auto g = GgufFile::open(path);
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->metadata()["general.architecture"], "qwen3moe");
  EXPECT_EQ(g->metadata()["general.count"], 7);
  EXPECT_EQ(g->metadata()["general.ratio"], 0.5);
  EXPECT_EQ(g->metadata()["general.flag"], true);
  EXPECT_EQ(g->metadata()["general.names"][1], "bc");
  EXPECT_EQ(g->metadata()["general.nested"][0][1], 2);
  const GgufTensor* a = g->find("a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->view.shape, (std::vector<int64_t>{3, 2}));  // GGUF {2, 3} is PyTorch [3, 2]
  EXPECT_EQ(a->view.dtype, DType::F32);
  EXPECT_TRUE(a->readable);
  EXPECT_EQ(a->view.nbytes, 24u);
  float v[6];
  std::memcpy(v, a->view.data, 24);
  EXPECT_EQ(v[5], 6.0f);
  EXPECT_EQ(g->find("b.weight")->view.dtype, DType::F16);
  // Data starts at the alignment, and each tensor at an aligned offset.
  EXPECT_EQ(g->data_offset() % 32, 0u);
  EXPECT_EQ(g->find("b.weight")->offset, 32u);
}

// The committed golden file holds the safetensors checkpoint's weights: the same bytes, dims reversed,
// and the experts of a layer stacked in order.
TEST(Gguf, GoldenFileHoldsTheCheckpointsWeights) {
  auto g = GgufFile::open(kModels + "qwen3_moe/model.gguf");
  auto st = SafetensorsFile::open(kModels + "qwen3_moe/model.safetensors");
  const auto same = [&](const std::string& gguf_name, const std::string& hf_name, size_t offset = 0) {
    const GgufTensor* t = g->find(gguf_name);
    const TensorView& h = st->tensors().at(hf_name);
    ASSERT_NE(t, nullptr) << gguf_name;
    ASSERT_LE(offset + h.nbytes, t->view.nbytes);
    EXPECT_EQ(std::memcmp(t->view.data + offset, h.data, h.nbytes), 0) << gguf_name << " vs " << hf_name;
  };
  EXPECT_EQ(g->metadata()["general.architecture"], "qwen3moe");
  EXPECT_EQ(g->find("token_embd.weight")->view.shape, (std::vector<int64_t>{512, 48}));
  EXPECT_EQ(g->find("blk.2.ffn_gate_exps.weight")->view.shape, (std::vector<int64_t>{8, 32, 48}));
  same("token_embd.weight", "model.embed_tokens.weight");
  same("blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight");
  same("blk.2.ffn_down_exps.weight", "model.layers.2.mlp.experts.5.down_proj.weight", 5 * 48 * 32 * 4);
  same("blk.0.ffn_up_exps.weight", "model.layers.0.mlp.experts.7.up_proj.weight", 7 * 32 * 48 * 4);
}

TEST(Gguf, ErrorsNameTheFileAndTheField) {
  ScratchDir dir;
  auto open_bytes = [&](const std::string& bytes) {
    return error_of([&] { GgufFile::open(dir.write("bad.gguf", bytes)); });
  };
  auto open = [&](const GgufBuilder& b) { return open_bytes(b.bytes()); };
  const std::string good = small_file().bytes();

  std::string bytes = good;
  bytes[0] = 'X';
  EXPECT_NE(open_bytes(bytes).find("'magic': not a GGUF file"), std::string::npos);
  EXPECT_NE(open_bytes(bytes).find("bad.gguf"), std::string::npos);

  GgufBuilder b = small_file();
  b.version = 0x03000000u;
  EXPECT_NE(open(b).find("big-endian"), std::string::npos);
  b.version = 1;
  EXPECT_NE(open(b).find("version 1"), std::string::npos);
  b.version = 4;
  EXPECT_NE(open(b).find("unknown GGUF version 4"), std::string::npos);

  // Every truncation of a valid file is an error that names the file (or, at the very end, a valid file).
  for (size_t n = 0; n < good.size(); ++n) {
    const std::string e = open_bytes(good.substr(0, n));
    EXPECT_NE(e.find("bad.gguf"), std::string::npos) << "cut at " << n;
  }
  EXPECT_NE(open_bytes(good.substr(0, 30)).find("'metadata_kv_count': 6 pairs cannot fit"), std::string::npos);
  EXPECT_NE(open_bytes(good.substr(0, good.find("b.weight") + 4)).find("'tensor info 1': truncated: a tensor name needs 8 bytes"),
            std::string::npos);
  EXPECT_NE(open_bytes(good.substr(0, good.size() - 1)).find("'b.weight': truncated"), std::string::npos);

  // Lying counts and lengths.
  bytes = good;
  bytes[8] = '\x7f';  // tensor_count
  EXPECT_NE(open_bytes(bytes).find("'tensor_count'"), std::string::npos);
  bytes = good;
  bytes[23] = '\x10';  // metadata_kv_count, high byte
  EXPECT_NE(open_bytes(bytes).find("'metadata_kv_count'"), std::string::npos);
  bytes = good;
  bytes[31] = '\x7f';  // the first key's length, high byte
  EXPECT_NE(open_bytes(bytes).find("metadata key"), std::string::npos);

  b = small_file();
  b.metadata["general.alignment"] = 48;
  EXPECT_NE(open(b).find("'general.alignment': must be a power of two"), std::string::npos);

  b = small_file();
  b.tensors[0].ggml_type = 99;
  EXPECT_NE(open(b).find("'a.weight': unknown ggml type 99"), std::string::npos);
  b = small_file();
  b.tensors[0] = {"q.weight", 8, {48, 1}, std::string(34 * 2, '\0')};  // Q8_0 rows of 48: not whole blocks
  EXPECT_NE(open(b).find("'q.weight': the first dim 48 is not a multiple of Q8_0's block of 32"), std::string::npos);
  b = small_file();
  b.tensors[0].ne = {2, 3, 1, 1, 1};
  EXPECT_NE(open(b).find("has 5 dims"), std::string::npos);
  b = small_file();
  b.tensors[0].ne = {uint64_t(1) << 62, 16};
  EXPECT_NE(open(b).find("overflow"), std::string::npos);
  b = small_file();
  b.tensors[1].ne = {400};  // claims more data than the file has
  EXPECT_NE(open(b).find("'b.weight': truncated"), std::string::npos);
  b = small_file();
  b.tensors[1].name = "a.weight";
  EXPECT_NE(open(b).find("'a.weight': the tensor appears twice"), std::string::npos);
  b = small_file();
  b.tensors[0].name = std::string(65, 'n');
  EXPECT_NE(open(b).find("tensor names are at most 64 bytes"), std::string::npos);

  // An offset off the alignment, and two tensors over the same bytes: edit the second info's offset.
  b = small_file();
  bytes = b.bytes();
  const size_t info = bytes.find("b.weight") + 8 + 4 + 8 + 4;  // name, n_dims, ne[0], type → offset
  bytes[info] = 8;
  EXPECT_NE(open_bytes(bytes).find("'b.weight': data offset 8 is not a multiple of the alignment 32"), std::string::npos);
  bytes[info] = 0;
  EXPECT_NE(open_bytes(bytes).find("overlaps the data of 'a.weight'"), std::string::npos);

  // Nested arrays past the limit, and an unknown value type.
  b = small_file();
  nlohmann::json deep = 1;
  for (int i = 0; i < 10; ++i) deep = nlohmann::json::array({deep});
  b.metadata["general.deep"] = deep;
  EXPECT_NE(open(b).find("nested deeper"), std::string::npos);
  bytes = good;
  const size_t type_at = bytes.find("general.architecture") + std::string("general.architecture").size();
  bytes[type_at] = 42;
  EXPECT_NE(open_bytes(bytes).find("'general.architecture': unknown value type 42"), std::string::npos);
}

// Seeded mutants of the small file and of the golden file's header: each either opens with every tensor
// inside the mapping, or throws an EngineError naming the file. Anything else fails the test.
TEST(Gguf, MutantsOpenOrFailWithEngineError) {
  ScratchDir dir;
  std::vector<std::string> seeds = {small_file().bytes()};
  {
    const std::string golden = test::read_file(kModels + "qwen3_moe/model.gguf");
    seeds.push_back(golden.substr(0, 1 << 15));  // header and some data: mostly truncated tensors
  }
  std::mt19937_64 rng(0x66756767);
  int opened = 0, refused = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string bytes = seeds[size_t(i) % seeds.size()];
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = size_t(rng() % bytes.size());
      switch (rng() % 4) {
        case 0: bytes[at] = char(rng()); break;                      // a random byte
        case 1: bytes[at] = char(bytes[at] ^ (1 << (rng() % 8))); break;  // a bit flip
        case 2: bytes.resize(at); break;                              // truncation
        default: bytes[at] = char(0xff); break;                       // a huge count or length
      }
      if (bytes.empty()) bytes = "G";
    }
    const auto path = dir.write("m.gguf", bytes);
    try {
      auto g = GgufFile::open(path);
      for (const auto& [name, t] : g->tensors()) {
        ASSERT_GE(t.view.data, g->mapping().data());
        ASSERT_LE(t.view.data + t.view.nbytes, g->mapping().data() + g->mapping().size()) << name;
      }
      ++opened;
    } catch (const EngineError& e) {
      ASSERT_NE(std::string(e.what()).find("m.gguf"), std::string::npos) << e.what();
      ++refused;
    }
  }
  EXPECT_GT(opened, 0);
  EXPECT_GT(refused, 0);
}

// The model side: a file rewritten with one thing wrong gives an error naming the file and the key or
// tensor, never a crash.
TEST(GgufModel, ErrorsNameTheMetadataKeyOrTensor) {
  ScratchDir dir;
  auto g = GgufFile::open(kModels + "qwen3_moe/model.gguf");
  auto load = [&](const GgufBuilder& b) { return error_of([&] { Model::load(dir.write("m.gguf", b.bytes())); }); };

  GgufBuilder b = GgufBuilder::from_file(*g);
  EXPECT_EQ(load(b), "");  // unchanged, it loads

  b.metadata["general.architecture"] = "gemma3";
  EXPECT_NE(load(b).find("'general.architecture': GGUF architecture 'gemma3' is not read (supported: qwen3moe"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata.erase("qwen3moe.expert_used_count");
  EXPECT_NE(load(b).find("m.gguf: 'qwen3moe.expert_used_count': missing from the metadata"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["qwen3moe.attention.head_count"] = nlohmann::json::array({4, 4, 4});
  EXPECT_NE(load(b).find("'qwen3moe.attention.head_count': per-layer values"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["qwen3moe.block_count"] = "three";
  EXPECT_NE(load(b).find("'qwen3moe.block_count': expected an integer"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["qwen3moe.expert_gating_func"] = 2;
  EXPECT_NE(load(b).find("'qwen3moe.expert_gating_func': gating function 2 is not read here (only softmax, 1, is)"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.tensor("blk.1.attn_k.weight")->ggml_type = 17;  // IQ2_XS: 74 bytes per 256 values; rows of 48 fail first
  EXPECT_NE(load(b).find("blk.1.attn_k.weight"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.tensor("blk.1.attn_k.weight")->ggml_type = 24;  // I8: a type the engine does not compute with
  b.tensor("blk.1.attn_k.weight")->data.resize(32 * 48);
  EXPECT_NE(load(b).find("'blk.1.attn_k.weight': ggml type I8 is not read"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.tensor("blk.2.ffn_down_exps.weight")->ne = {32, 48, 7};  // 7 experts where the metadata says 8
  EXPECT_NE(load(b).find("'blk.2.ffn_down_exps.weight': dims [32, 48, 7] (innermost first) disagree with the metadata, which implies [32, 48, 8]"),
            std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.tensors.erase(b.tensors.begin() + 3);
  EXPECT_NE(load(b).find("tensor is missing (the metadata implies it"), std::string::npos);
}

// What a GGUF model reads from its metadata, against the checkpoint it was converted from.
TEST(GgufModel, SpecMatchesTheCheckpoint) {
  for (const char* name : {"qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "llama", "qwen3_dense", "deepseek_v2", "minimax_m2", "glm4_moe",
                           "ernie4_5_moe"}) {
    auto a = Model::load(kModels + name);
    auto b = Model::load(kModels + name + "/model.gguf");
    const ModelSpec &s = a->spec(), &t = b->spec();
    EXPECT_TRUE(b->is_gguf());
    EXPECT_EQ(t.model_type, s.model_type) << name;
    EXPECT_EQ(t.hidden, s.hidden) << name;
    EXPECT_EQ(t.n_layers, s.n_layers) << name;
    EXPECT_EQ(t.vocab_size, s.vocab_size) << name;
    EXPECT_EQ(t.attn.n_heads, s.attn.n_heads) << name;
    EXPECT_EQ(t.attn.n_kv_heads, s.attn.n_kv_heads) << name;
    EXPECT_EQ(t.attn.head_dim, s.attn.head_dim) << name;
    EXPECT_EQ(t.attn.qk_norm, s.attn.qk_norm) << name;
    EXPECT_EQ(t.attn.qkv_bias, s.attn.qkv_bias) << name;
    EXPECT_FLOAT_EQ(float(t.attn.rope_theta), float(s.attn.rope_theta)) << name;
    EXPECT_FLOAT_EQ(t.rms_eps, s.rms_eps) << name;
    EXPECT_EQ(t.moe.n_experts, s.moe.n_experts) << name;
    EXPECT_EQ(t.moe.top_k, s.moe.top_k) << name;
    EXPECT_EQ(t.moe.expert_ffn, s.moe.expert_ffn) << name;
    EXPECT_EQ(t.moe.renormalize, s.moe.renormalize) << name;
    EXPECT_EQ(t.moe.shared_ffn, s.moe.shared_ffn) << name;
    EXPECT_EQ(t.moe.shared_gate, s.moe.shared_gate) << name;
    EXPECT_EQ(t.layer_is_moe, s.layer_is_moe) << name;
    EXPECT_EQ(t.tied_embeddings, s.tied_embeddings) << name;
    EXPECT_EQ(b->weight_bytes(), a->weight_bytes()) << name;  // F32 in both
    // Every tensor is read, but GLM-4.5's nextn block past the last layer.
    for (const auto& unused : b->unused_tensors())
      EXPECT_TRUE(t.model_type == "glm4_moe" && unused.starts_with("blk." + std::to_string(t.n_layers) + ".")) << name << ": " << unused;
    EXPECT_EQ(t.attn.rotary_dim, s.attn.rotary_dim) << name;
    EXPECT_EQ(t.attn.o_bias, s.attn.o_bias) << name;
    EXPECT_EQ(t.moe.selection_bias, s.moe.selection_bias) << name;
    // llama.cpp permutes Llama's q and k rows for adjacent-pair RoPE; the others keep rotate-half, except
    // DeepSeek's and ERNIE's, which pair adjacent dims in both.
    const bool adjacent = t.model_type == "llama" || t.model_type == "mixtral" || t.model_type == "deepseek_v2" ||
                          t.model_type == "ernie4_5_moe";
    EXPECT_EQ(t.attn.rope_style, adjacent ? RopeStyle::Interleaved : RopeStyle::RotateHalf) << name;
    EXPECT_EQ(t.attn.mla.kv_lora_rank, s.attn.mla.kv_lora_rank) << name;
    EXPECT_EQ(t.attn.mla.q_lora_rank, s.attn.mla.q_lora_rank) << name;
    EXPECT_EQ(t.attn.mla.qk_nope_dim, s.attn.mla.qk_nope_dim) << name;
    EXPECT_EQ(t.attn.mla.v_head_dim, s.attn.mla.v_head_dim) << name;
    EXPECT_EQ(t.attn.rotary_dim, s.attn.rotary_dim) << name;
    EXPECT_FLOAT_EQ(t.attn.softmax_scale, s.attn.softmax_scale) << name;
    EXPECT_EQ(t.moe.score, s.moe.score) << name;
    EXPECT_EQ(t.moe.n_group, s.moe.n_group) << name;
    EXPECT_EQ(t.moe.topk_group, s.moe.topk_group) << name;
    EXPECT_EQ(t.moe.group_score, s.moe.group_score) << name;
    EXPECT_FLOAT_EQ(t.moe.routed_scale, s.moe.routed_scale) << name;
  }
}

// deepseek2 as llama.cpp writes it today: kv_b split per head into attn_k_b (transposed) and attn_v_b,
// the *_mla width keys, a sigmoid router with groups, and a multi-token-prediction block past the last
// layer. The rebuilt kv_b is the checkpoint's, byte for byte.
TEST(GgufModel, DeepSeek2SplitKvbAndNextnBlock) {
  auto hf = Model::load(kModels + "deepseek_v3");
  auto gg = Model::load(kModels + "deepseek_v3_gguf/model.gguf");
  const ModelSpec &s = hf->spec(), &t = gg->spec();
  EXPECT_EQ(t.model_type, "deepseek_v3");
  EXPECT_EQ(t.n_layers, 3);
  EXPECT_EQ(t.attn.mla.q_lora_rank, s.attn.mla.q_lora_rank);
  EXPECT_EQ(t.attn.mla.kv_lora_rank, s.attn.mla.kv_lora_rank);
  EXPECT_EQ(t.attn.mla.qk_nope_dim, s.attn.mla.qk_nope_dim);
  EXPECT_EQ(t.attn.mla.v_head_dim, s.attn.mla.v_head_dim);
  EXPECT_EQ(t.moe.score, RouterScore::Sigmoid);
  EXPECT_TRUE(t.moe.selection_bias);
  EXPECT_EQ(t.moe.n_group, s.moe.n_group);
  EXPECT_EQ(t.moe.topk_group, s.moe.topk_group);
  EXPECT_EQ(t.moe.renormalize, s.moe.renormalize);
  EXPECT_FLOAT_EQ(t.moe.routed_scale, s.moe.routed_scale);
  EXPECT_EQ(t.moe.shared_ffn, s.moe.shared_ffn);
  EXPECT_EQ(t.layer_is_moe, s.layer_is_moe);
  EXPECT_EQ(gg->weight_bytes(), hf->weight_bytes());
  // Everything is read but the nextn block.
  for (const auto& name : gg->unused_tensors()) EXPECT_TRUE(name.starts_with("blk.3.")) << name;
  EXPECT_FALSE(gg->unused_tensors().empty());
  for (int l = 0; l < 3; ++l) {
    const WeightMatrix &a = hf->weights().layers[size_t(l)].kv_b, &b = gg->weights().layers[size_t(l)].kv_b;
    ASSERT_EQ(b.dtype, DType::F32);
    ASSERT_EQ(b.rows, a.rows);
    ASSERT_EQ(b.cols, a.cols);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.bytes()), 0) << "layer " << l;
  }
}

// gpt-oss as llama.cpp writes it: experts in ggml's MXFP4, gate and up (and their biases) apart, the
// settings the file leaves to llama.cpp (sliding window on even layers, the clamp at 7).
TEST(GgufModel, GptOssSettingsAndExperts) {
  auto m = Model::load(kModels + "gpt_oss_gguf/model.gguf");
  const ModelSpec& s = m->spec();
  EXPECT_EQ(s.model_type, "gpt_oss");
  EXPECT_EQ(s.layer_window, (std::vector<int>{4, 0, 4, 0}));
  EXPECT_TRUE(s.attn.sinks);
  EXPECT_TRUE(s.attn.qkv_bias);
  EXPECT_TRUE(s.attn.o_bias);
  EXPECT_FLOAT_EQ(s.moe.glu_limit, 7.0f);
  EXPECT_TRUE(s.moe.expert_bias);
  EXPECT_TRUE(s.moe.router_logit_bias);
  EXPECT_EQ(s.attn.head_dim, 24);
  EXPECT_EQ(s.moe.expert_ffn, 32);
  EXPECT_TRUE(m->unused_tensors().empty());
  const auto& X = m->weights().layers[2].experts[5];
  EXPECT_EQ(X.gate.dtype, DType::MXFP4_GGML);
  EXPECT_EQ(X.down.dtype, DType::MXFP4_GGML);
  ASSERT_EQ(X.gate_bias.size(), 32u);
  ASSERT_EQ(X.up_bias.size(), 32u);
  ASSERT_EQ(X.down_bias.size(), 64u);
  // The biases are the file's [E, I] and [E, H] rows of expert 5.
  auto g = GgufFile::open(kModels + "gpt_oss_gguf/model.gguf");
  const auto row = [&](const char* name, size_t width) {
    const float* p = reinterpret_cast<const float*>(g->find(name)->view.data) + 5 * width;
    return std::vector<float>(p, p + width);
  };
  EXPECT_EQ(X.gate_bias, row("blk.2.ffn_gate_exps.bias", 32));
  EXPECT_EQ(X.up_bias, row("blk.2.ffn_up_exps.bias", 32));
  EXPECT_EQ(X.down_bias, row("blk.2.ffn_down_exps.bias", 64));

  // A bias table in a block type is refused by name (its values are read as F32, F16 or BF16).
  ScratchDir dir;
  GgufBuilder b = GgufBuilder::from_file(*g);
  test::GgufTensorBytes* bias = b.tensor("blk.1.ffn_up_exps.bias");
  ASSERT_EQ(bias->ne, (std::vector<uint64_t>{32, 8}));
  const std::vector<uint8_t> q8 = test::random_blocks(DType::Q8_0, 8, 32, 3);
  bias->ggml_type = 8;
  bias->data.assign(reinterpret_cast<const char*>(q8.data()), q8.size());
  EXPECT_NE(error_of([&] { Model::load(dir.write("m.gguf", b.bytes())); })
                .find("blk.1.ffn_up_exps.bias: 'dtype': Q8_0 where a table of F32, F16 or BF16 values belongs"),
            std::string::npos);
}

// A block-quantized attn_v_b beside an F32 attn_k_b: the rebuilt kv_b is F32, with the v rows decoded.
TEST(GgufModel, DeepSeek2SplitKvbDecodesBlockTypes) {
  ScratchDir dir;
  auto g = GgufFile::open(kModels + "deepseek_v3_gguf/model.gguf");
  GgufBuilder b = GgufBuilder::from_file(*g);
  test::GgufTensorBytes* vb = b.tensor("blk.1.attn_v_b.weight");
  ASSERT_NE(vb, nullptr);
  ASSERT_EQ(vb->ne, (std::vector<uint64_t>{32, 12, 4}));  // {kv_lora, v, heads}
  const std::vector<uint8_t> q8 = test::random_blocks(DType::Q8_0, 4 * 12, 32, 5);
  vb->ggml_type = 8;
  vb->data.assign(reinterpret_cast<const char*>(q8.data()), q8.size());
  auto model = Model::load(dir.write("m.gguf", b.bytes()));
  auto hf = Model::load(kModels + "deepseek_v3");
  const WeightMatrix &kv_b = model->weights().layers[1].kv_b, &ref = hf->weights().layers[1].kv_b;
  ASSERT_EQ(kv_b.dtype, DType::F32);
  const auto* got = static_cast<const float*>(kv_b.data);
  const auto* want = static_cast<const float*>(ref.data);
  const int64_t nope = 16, v = 12, cols = 32;
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t h = 0; h < 4; ++h) {
    for (int64_t i = 0; i < nope; ++i)
      for (int64_t c = 0; c < cols; ++c) {
        const size_t at = size_t((h * (nope + v) + i) * cols + c);
        ASSERT_EQ(got[at], want[at]) << "k row " << i << " of head " << h;
      }
    for (int64_t j = 0; j < v; ++j) {
      dequantize_row(q8.data() + size_t(h * v + j) * row_bytes(DType::Q8_0, cols), DType::Q8_0, cols, row.data());
      for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(got[size_t((h * (nope + v) + nope + j) * cols + c)], row[size_t(c)]);
    }
  }
}

TEST(GgufModel, DeepSeek2ErrorsNameTheKeyOrTensor) {
  ScratchDir dir;
  auto g = GgufFile::open(kModels + "deepseek_v3_gguf/model.gguf");
  auto load = [&](const GgufBuilder& b) { return error_of([&] { Model::load(dir.write("m.gguf", b.bytes())); }); };
  GgufBuilder b = GgufBuilder::from_file(*g);
  EXPECT_EQ(load(b), "");

  auto erase = [](GgufBuilder& f, const std::string& name) {
    std::erase_if(f.tensors, [&](const test::GgufTensorBytes& t) { return t.name == name; });
  };
  erase(b, "blk.2.attn_v_b.weight");
  EXPECT_NE(load(b).find("'blk.2.attn_v_b.weight': tensor is missing (its pair blk.2.attn_k_b.weight is here)"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  erase(b, "blk.2.attn_v_b.weight");
  erase(b, "blk.2.attn_k_b.weight");
  EXPECT_NE(load(b).find("'blk.2.attn_kv_b.weight': tensor is missing"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.tensor("blk.0.attn_k_b.weight")->ne = {16, 16, 8};  // the same bytes as 8 heads of 16 latent columns
  EXPECT_NE(load(b).find("'blk.0.attn_k_b.weight': dims {16, 16, 8} with blk.0.attn_v_b.weight {32, 12, 4} do not make "
                         "the metadata's kv_b of 112 rows of 32"),
            std::string::npos);
  b.tensor("blk.0.attn_k_b.weight")->ne = {16, 16, 4};  // heads and widths agree, the latent does not
  EXPECT_NE(load(b).find("'blk.0.attn_k_b.weight': dims {16, 16, 4} with"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["deepseek2.expert_gating_func"] = 3;
  EXPECT_NE(load(b).find("'deepseek2.expert_gating_func': gating function 3 is not read here (softmax 1 and sigmoid 2 are)"),
            std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["deepseek2.nextn_predict_layers"] = 4;
  EXPECT_NE(load(b).find("'deepseek2.nextn_predict_layers': 4 leaves no decoder layer of 4"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["deepseek2.rope.dimension_count"] = 24;
  EXPECT_NE(load(b).find("'deepseek2.rope.dimension_count': 24 must be positive and below the key width 24"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata.erase("deepseek2.attention.kv_lora_rank");
  EXPECT_NE(load(b).find("'deepseek2.attention.kv_lora_rank': missing from the metadata"), std::string::npos);
}

// ernie4_5-moe: the MoE layer keys and the shared experts' width as llama.cpp reads them, and errors
// naming the key or tensor.
TEST(GgufModel, Ernie45MoeLayersSharedWidthAndErrors) {
  ScratchDir dir;
  auto g = GgufFile::open(kModels + "ernie4_5_moe/model.gguf");
  auto load = [&](const GgufBuilder& b) { return error_of([&] { Model::load(dir.write("m.gguf", b.bytes())); }); };
  GgufBuilder b = GgufBuilder::from_file(*g);
  EXPECT_EQ(load(b), "");

  // The shared width comes from expert_shared_feed_forward_length when stated (as llama.cpp sizes the
  // tensors), else from the count.
  b.metadata["ernie4_5-moe.expert_shared_count"] = 5;
  EXPECT_EQ(load(b), "");
  b.metadata.erase("ernie4_5-moe.expert_shared_feed_forward_length");
  EXPECT_NE(load(b).find("'blk.1.ffn_gate_shexp.weight': dims [64, 32] (innermost first) disagree with the metadata, which implies [64, 80]"),
            std::string::npos)
      << load(b);
  b.metadata["ernie4_5-moe.expert_shared_count"] = 2;
  EXPECT_EQ(load(b), "");
  b.metadata["ernie4_5-moe.expert_shared_feed_forward_length"] = 24;  // the converter's guess for this model
  EXPECT_NE(load(b).find("'ernie4_5-moe.expert_shared_feed_forward_length': 24 is not a whole number of experts of width 16"),
            std::string::npos);

  // MoE layers start at leading_dense_block_count: from 2 on, layer 1 is dense and its MLP is missing.
  b = GgufBuilder::from_file(*g);
  b.metadata["ernie4_5-moe.leading_dense_block_count"] = 2;
  EXPECT_NE(load(b).find("'blk.1.ffn_gate.weight': tensor is missing"), std::string::npos);
  b.metadata.erase("ernie4_5-moe.leading_dense_block_count");
  EXPECT_NE(load(b).find("'ernie4_5-moe.leading_dense_block_count': missing from the metadata"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["ernie4_5-moe.interleave_moe_layer_step"] = 0;
  EXPECT_NE(load(b).find("'ernie4_5-moe.interleave_moe_layer_step': must be at least 1"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["ernie4_5-moe.rope.dimension_count"] = 8;
  EXPECT_NE(load(b).find("'ernie4_5-moe.rope.dimension_count': ERNIE-4.5 rotates whole heads of 16 dims"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.tensors.push_back({"blk.0.attn_q.bias", 0, {64}, std::string(64 * 4, '\0')});
  EXPECT_NE(load(b).find("'blk.0.attn_q.bias': ERNIE-4.5 with biases (use_bias) is not read"), std::string::npos);

  b = GgufBuilder::from_file(*g);
  b.metadata["ernie4_5-moe.expert_gating_func"] = 2;
  EXPECT_NE(load(b).find("'ernie4_5-moe.expert_gating_func': gating function 2 is not read here (only softmax, 1, is)"),
            std::string::npos);
}

// The tokenizer and chat template a GGUF file carries give the ids and prompts of the tokenizer.json and
// tokenizer_config.json they were converted from.
TEST(GgufTokenizer, MatchesTheTokenizerItWasConvertedFrom) {
  const std::string folder = kModels + "qwen3_moe";
  auto hf = Tokenizer::load(folder);
  auto gg = Tokenizer::load(folder + "/model.gguf");
  EXPECT_EQ(gg->kind(), "byte-level BPE");
  EXPECT_EQ(gg->size(), hf->size());
  for (const char* text : {"Hello world, it's 2026!", "<|im_start|>user\nWhat is 4821 + 739?<|im_end|>\n",
                           "<think>\n\n</think>\n\n  spaces   and\ttabs\n\n", "naïve café 数字 123456"}) {
    EXPECT_EQ(gg->encode(text), hf->encode(text)) << text;
    EXPECT_EQ(gg->decode(gg->encode(text)), hf->decode(hf->encode(text))) << text;
  }
  for (int32_t id = 0; id < hf->size(); ++id) {
    EXPECT_EQ(gg->id_to_token(id), hf->id_to_token(id)) << id;
    EXPECT_EQ(gg->is_special(id), hf->is_special(id)) << id;
  }
  // <|im_end|> ends a turn (eos), and llama.cpp's end-of-generation set adds <|endoftext|>.
  const auto stops = gg->eos_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), *hf->token_to_id("<|im_end|>")), stops.end());
  EXPECT_NE(std::find(stops.begin(), stops.end(), *hf->token_to_id("<|endoftext|>")), stops.end());

  const ChatTemplate a = ChatTemplate::from_model_dir(folder), b = ChatTemplate::from_model_dir(folder + "/model.gguf");
  EXPECT_EQ(b.format_name(), a.format_name());
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(b.render(msgs, true), a.render(msgs, true));
}

// The split rules of byte-level GGUF vocabularies (tokenizer.ggml.pre): for GPT-OSS ("gpt-4o"), DeepSeek-V3
// ("deepseek-v3": three splits in turn), GLM-4.5 ("glm4") and DeepSeek-V2 ("deepseek-llm": six), a small BPE trained with the family's rules
// (tests/make_gguf_tokenizers.py): the GGUF's ids are HF tokenizers' on the tokenizer.json it was written from,
// as are our tokenizer.json reader's. The names llama.cpp gives the same rules read the same.
TEST(GgufTokenizer, SplitRulesMatchHfTokenizers) {
  const std::string dir = std::string(MOE_TEST_DATA_DIR) + "/tokenizers/";
  ScratchDir scratch;
  for (const auto& [folder, aliases] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"o200k", {"minimax-m2"}}, {"deepseek_v3", {}}, {"glm4", {"chatglm-bpe"}}, {"deepseek_llm", {}}}) {
    SCOPED_TRACE(folder);
    auto gguf = Tokenizer::load(dir + folder + "/tokenizer.gguf");
    auto json = Tokenizer::load(dir + folder);
    const nlohmann::json expected = load_json_file(dir + folder + "_expected.json");
    EXPECT_EQ(GgufFile::open(dir + folder + "/tokenizer.gguf")->metadata()["tokenizer.ggml.pre"], expected["pre"]);
    std::vector<std::unique_ptr<Tokenizer>> renamed;
    for (const auto& pre : aliases) {
      GgufBuilder b = GgufBuilder::from_file(*GgufFile::open(dir + folder + "/tokenizer.gguf"));
      b.metadata["tokenizer.ggml.pre"] = pre;
      renamed.push_back(Tokenizer::load(scratch.write(pre + ".gguf", b.bytes())));
    }
    EXPECT_EQ(gguf->size(), expected["size"].get<int32_t>());
    for (const auto& c : expected["cases"]) {
      const std::string text = c["text"];
      const auto want = c["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(gguf->encode(text, false), want) << text;
      EXPECT_EQ(json->encode(text, false), want) << text;
      EXPECT_EQ(gguf->decode(want), text) << text;
      for (const auto& r : renamed) EXPECT_EQ(r->encode(text, false), want) << text;
    }
  }
  // GPT-OSS's <|return|> ends a turn.
  auto gguf = Tokenizer::load(dir + "o200k/tokenizer.gguf");
  const auto ret = gguf->token_to_id("<|return|>");
  ASSERT_TRUE(ret.has_value());
  EXPECT_TRUE(gguf->is_special(*ret));
  EXPECT_NE(std::find(gguf->eos_ids().begin(), gguf->eos_ids().end(), *ret), gguf->eos_ids().end());
}

// Kimi K2 (tokenizer.ggml.pre "kimi-k2"): llama.cpp's converter writes its tiktoken ranks as a byte-level vocabulary
// (tests/make_gguf_tokenizers.py restates it on the tiktoken test folder). Read back as the tiktoken tokenizer it
// was, its ids are tiktoken's own: tests/data/tiktoken/expected.json, made with the tiktoken library on that folder.
TEST(GgufTokenizer, KimiK2IsTheTiktokenItWasConvertedFrom) {
  const std::string data = MOE_TEST_DATA_DIR;
  const std::string path = data + "/tokenizers/kimi_k2/tokenizer.gguf";
  auto gg = Tokenizer::load(path);
  auto folder = Tokenizer::load(data + "/tiktoken/model");
  EXPECT_EQ(gg->kind(), "tiktoken BPE");
  ASSERT_EQ(gg->size(), folder->size());
  const nlohmann::json expected = load_json_file(data + "/tiktoken/expected.json");
  ASSERT_GE(expected["cases"].size(), 50u);
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(text.substr(0, 80));
    const auto want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(gg->encode(text), want);
    EXPECT_EQ(gg->decode(want), c["decoded"].get<std::string>());
  }
  const int32_t base = expected["base_tokens"];
  for (int32_t id = 0; id < gg->size(); ++id) {
    EXPECT_EQ(gg->id_to_token(id), folder->id_to_token(id)) << id;
    // The converter types every special token control, the reserved ones too; the folder flags the named ones.
    EXPECT_EQ(gg->is_special(id), id >= base) << id;
  }
  EXPECT_EQ(gg->bos_id(), folder->bos_id());
  EXPECT_EQ(gg->encode("hi", true), gg->encode("hi", false)) << "no add_bos_token key: no BOS, as in the folder";
  const auto stops = gg->eos_ids();
  for (const char* stop : {"[EOS]", "<|im_end|>"})
    EXPECT_NE(std::find(stops.begin(), stops.end(), *folder->token_to_id(stop)), stops.end()) << stop;

  const ChatTemplate a = ChatTemplate::from_model_dir(data + "/tiktoken/model"), b = ChatTemplate::from_model_dir(path);
  EXPECT_EQ(b.format_name(), a.format_name());
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(b.render(msgs, true), a.render(msgs, true));

  // What a tiktoken vocabulary cannot be: the errors name the key and the token.
  ScratchDir dir;
  auto load = [&](const GgufBuilder& bad) { return error_of([&] { Tokenizer::load(dir.write("k.gguf", bad.bytes())); }); };
  const auto g = GgufFile::open(path);
  GgufBuilder bad = GgufBuilder::from_file(*g);
  bad.metadata["tokenizer.ggml.token_type"][size_t(base) + 3] = 1;
  EXPECT_NE(load(bad).find("'tokenizer.ggml.token_type[" + std::to_string(base + 3) + "]': a normal token after"),
            std::string::npos);
  bad = GgufBuilder::from_file(*g);
  bad.metadata["tokenizer.ggml.tokens"][300] = "中文";
  EXPECT_NE(load(bad).find("'tokenizer.ggml.tokens[300]': token \"中文\" is not bytes spelled through GPT-2's byte table"),
            std::string::npos);
  bad = GgufBuilder::from_file(*g);
  bad.metadata.erase("tokenizer.ggml.merges");
  EXPECT_EQ(Tokenizer::load(dir.write("k.gguf", bad.bytes()))->encode("hello"), gg->encode("hello"))
      << "the ranks decide; the merges are not needed";
  bad = GgufBuilder::from_file(*g);
  bad.metadata["tokenizer.ggml.tokens"][301] = bad.metadata["tokenizer.ggml.tokens"][300];
  EXPECT_NE(load(bad).find("'tokenizer.ggml.tokens[301]': the same bytes as rank 300"), std::string::npos);
  bad = GgufBuilder::from_file(*g);
  bad.metadata["tokenizer.ggml.tokens"][size_t(*folder->token_to_id("A"))] = "ĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠ";
  EXPECT_NE(load(bad).find("byte 65 has no rank"), std::string::npos);
}

TEST(GgufTokenizer, ErrorsNameTheKey) {
  ScratchDir dir;
  auto g = GgufFile::open(kModels + "qwen3_moe/model.gguf");
  auto load = [&](const GgufBuilder& b) { return error_of([&] { Tokenizer::load(dir.write("t.gguf", b.bytes())); }); };
  GgufBuilder b = GgufBuilder::from_file(*g);
  b.metadata["tokenizer.ggml.pre"] = "deepseek-coder";
  EXPECT_NE(load(b).find("'tokenizer.ggml.pre': pre-tokenizer 'deepseek-coder' is not read"), std::string::npos);
  b = GgufBuilder::from_file(*g);
  b.metadata["tokenizer.ggml.model"] = "t5";
  EXPECT_NE(load(b).find("'tokenizer.ggml.model': tokenizer 't5' is not read"), std::string::npos);
  b = GgufBuilder::from_file(*g);
  b.metadata["tokenizer.ggml.token_type"].erase(0);
  EXPECT_NE(load(b).find("'tokenizer.ggml.token_type': has"), std::string::npos);
  b = GgufBuilder::from_file(*g);
  b.metadata["tokenizer.ggml.eos_token_id"] = 100000;
  EXPECT_NE(load(b).find("'tokenizer.ggml.eos_token_id': token id 100000 is past"), std::string::npos);
  b = GgufBuilder::from_file(*g);
  b.metadata.erase("tokenizer.ggml.model");
  EXPECT_NE(load(b).find("the file carries no tokenizer"), std::string::npos);
  b = GgufBuilder::from_file(*g);
  b.metadata["tokenizer.ggml.merges"][3] = "nospace";
  EXPECT_NE(load(b).find("merges"), std::string::npos);
}

}  // namespace
}  // namespace moe
