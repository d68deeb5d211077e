// RoPE frequencies against transformers (tests/make_rope_reference.py): YaRN's inverse frequencies and
// cos/sin factor for Qwen3's opt-in YaRN, DeepSeek-V2-Lite's settings, an untruncated range with unequal
// mscales, and an explicit attention_factor, each read from a config.json through read_model_spec.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/formats/json_file.h"
#include "engine/model/family.h"
#include "engine/model/rope_frequencies.h"

namespace moe {
namespace {

const std::string kReference = std::string(MOE_TEST_DATA_DIR) + "/rope/yarn_reference.json";

TEST(RopeFrequencies, YarnMatchesTransformers) {
  const auto ref = load_json_file(kReference);
  ASSERT_EQ(ref["cases"].size(), 4u);
  for (const auto& c : ref["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const ModelSpec s = read_model_spec(JsonFields(c["config"], "config.json"));
    const std::vector<float> inv = rope_inv_freq(s.attn);
    const auto& want = c["inv_freq"];
    ASSERT_EQ(inv.size(), want.size());
    for (size_t i = 0; i < inv.size(); ++i) EXPECT_NEAR(inv[i], want[i].get<double>(), 1e-6 * want[i].get<double>()) << i;  // HF blends in F32
    EXPECT_NEAR(s.attn.rope_attention_factor, c["attention_factor"].get<double>(), 1e-6);
  }
}

TEST(RopeFrequencies, PlainRopeIsThetaToTheMinusTwoIOverD) {
  AttentionSpec a;
  a.rotary_dim = 8;
  a.rope_theta = 1e4;
  const auto inv = rope_inv_freq(a);
  ASSERT_EQ(inv.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(inv[size_t(i)], float(std::pow(1e4, -2.0 * i / 8)));
  EXPECT_EQ(a.rope_attention_factor, 1.0f);
}

// SPECS.md §1.4 / §6.3: DeepSeek's softmax scale is 192^-0.5 · get_mscale(40, mscale_all_dim)².
TEST(RopeFrequencies, DeepSeekSoftmaxScaleUsesMscaleAllDim) {
  const auto ref = load_json_file(kReference);
  const ModelSpec lite = read_model_spec(JsonFields(ref["cases"][1]["config"], "config.json"));
  EXPECT_NEAR(lite.attn.scale(), 0.1147214, 1e-6);
  EXPECT_NEAR(yarn_get_mscale(40, 1.0) * yarn_get_mscale(40, 1.0) / std::sqrt(192.0), 0.1352338, 1e-6);
  EXPECT_EQ(yarn_get_mscale(0.5, 1.0), 1.0);  // no magnitude change without interpolation
}

}  // namespace
}  // namespace moe
