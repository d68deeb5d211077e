// Attention measures per head against hand-computed means: which tokens count (position 0 never, top-k
// mass only past k keys), the normalised entropy, the head labels and their thresholds, and the tables.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "inspect/attention_stats.h"

namespace moe::inspect {
namespace {

// Two layers x two heads, attention_topk 2, six rows at positions 0-5.
//  - Rows 0-3 carry attn.stats; row 4 has values but no has_attention flag; row 5 is a generated token
//    with stats (used by the filter test).
//  - Row 0 (position 0) holds nonsense values: it must be skipped.
// Heads (per row at positions 1, 2, 3, 5):
//   L0 H0 "sink":    first mass 0.8, top-k mass 0.95, entropy 0.3
//   L0 H1 "sparse":  first mass 0.1, top-k mass 0.95 (1.0 at position 1, where 2 keys <= k), entropy 0.2
//   L1 H0 "diffuse": entropy 0.95 * ln(position + 1), first mass 1 / (position + 1), top-k mass 0.6
//   L1 H1 "other":   entropy 0.5, first mass 0.2, top-k mass 0.7 (1.0 at position 1), max 0.4
Trace attention_trace() {
  Trace t;
  t.n_layers = 2;
  t.n_heads = 2;
  t.attention_topk = 2;
  t.tokens = {1, 2, 3, 4, 5, 6};
  t.positions = {0, 1, 2, 3, 4, 5};
  const auto U = uint8_t(Phase::User), A = uint8_t(Phase::Answer);
  t.phases = {U, U, U, U, U, A};
  t.has_attention = {1, 1, 1, 1, 0, 1};
  const size_t per_row = 4;
  t.attn_entropy.assign(6 * per_row, 0.0f);
  t.attn_max.assign(6 * per_row, 0.0f);
  t.attn_topk_mass.assign(6 * per_row, 0.0f);
  t.attn_first_mass.assign(6 * per_row, 0.0f);
  for (size_t row = 0; row < 6; ++row) {
    const double pos = double(t.positions[row]);
    const size_t b = row * per_row;
    const bool few_keys = pos + 1 <= 2;
    // L0 H0
    t.attn_entropy[b + 0] = 0.3f, t.attn_max[b + 0] = 0.8f, t.attn_topk_mass[b + 0] = 0.95f, t.attn_first_mass[b + 0] = 0.8f;
    // L0 H1
    t.attn_entropy[b + 1] = 0.2f, t.attn_max[b + 1] = 0.9f, t.attn_topk_mass[b + 1] = few_keys ? 1.0f : 0.95f;
    t.attn_first_mass[b + 1] = 0.1f;
    // L1 H0
    t.attn_entropy[b + 2] = float(0.95 * std::log(pos + 1)), t.attn_max[b + 2] = float(1.0 / (pos + 1));
    t.attn_topk_mass[b + 2] = 0.6f, t.attn_first_mass[b + 2] = float(1.0 / (pos + 1));
    // L1 H1
    t.attn_entropy[b + 3] = 0.5f, t.attn_max[b + 3] = 0.4f, t.attn_topk_mass[b + 3] = few_keys ? 1.0f : 0.7f;
    t.attn_first_mass[b + 3] = 0.2f;
    if (row == 0 || row == 4)  // position 0, and the unflagged row: values that would show if counted
      for (size_t i = 0; i < per_row; ++i)
        t.attn_entropy[b + i] = 50.0f, t.attn_max[b + i] = 7.0f, t.attn_topk_mass[b + i] = 7.0f, t.attn_first_mass[b + i] = 7.0f;
  }
  return t;
}

TokenFilter prompt_only() {
  TokenFilter f;
  f.origin = TokenOrigin::Prompt;
  return f;
}

TEST(AttentionStats, MeansSkipPositionZeroAndUnflaggedRows) {
  const Trace t = attention_trace();
  const std::vector<HeadAttention> heads = attention_by_head(t, prompt_only());  // rows 0-4
  ASSERT_EQ(heads.size(), 4u);
  // Counted: rows 1, 2, 3 (positions 1, 2, 3).
  const HeadAttention& other = heads[3];
  EXPECT_EQ(other.layer, 1);
  EXPECT_EQ(other.head, 1);
  EXPECT_EQ(other.tokens, 3);
  EXPECT_NEAR(*other.mean_entropy, 0.5, 1e-6);
  // Normalised: (0.5/ln 2 + 0.5/ln 3 + 0.5/ln 4) / 3 = (0.721348 + 0.455120 + 0.360674) / 3 = 0.512380.
  EXPECT_NEAR(*other.mean_normalized_entropy, 0.5123802980, 1e-6);
  EXPECT_NEAR(*other.mean_max, 0.4, 1e-6);
  EXPECT_NEAR(*other.mean_first_mass, 0.2, 1e-6);
  // Top-k mass only at positions 2 and 3 (more than 2 keys): 0.7, not (1.0 + 0.7 + 0.7) / 3.
  EXPECT_EQ(other.topk_tokens, 2);
  EXPECT_NEAR(*other.mean_topk_mass, 0.7, 1e-6);
  EXPECT_EQ(other.kind, HeadKind::LocalOrOther);

  // Diffuse head: raw entropy 0.95 (ln 2 + ln 3 + ln 4) / 3 = 0.95 * 1.059351 = 1.006384; normalised 0.95.
  const HeadAttention& diffuse = heads[2];
  EXPECT_NEAR(*diffuse.mean_entropy, 0.95 * (std::log(2.0) + std::log(3.0) + std::log(4.0)) / 3.0, 1e-6);
  EXPECT_NEAR(*diffuse.mean_normalized_entropy, 0.95, 1e-6);
  // First mass (1/2 + 1/3 + 1/4) / 3 = 0.361111.
  EXPECT_NEAR(*diffuse.mean_first_mass, (0.5 + 1.0 / 3.0 + 0.25) / 3.0, 1e-6);
  EXPECT_EQ(diffuse.kind, HeadKind::Diffuse);

  EXPECT_EQ(heads[0].kind, HeadKind::Sink);    // first mass 0.8, although its top-k mass is 0.95 too
  EXPECT_EQ(heads[1].kind, HeadKind::Sparse);  // top-k mass 0.95, first mass 0.1
  EXPECT_NEAR(*heads[1].mean_topk_mass, 0.95, 1e-6);
}

TEST(AttentionStats, FilterSelectsTheTokens) {
  const Trace t = attention_trace();
  TokenFilter generated;
  generated.origin = TokenOrigin::Generated;  // row 5 only, position 5 (6 keys)
  const std::vector<HeadAttention> heads = attention_by_head(t, generated);
  EXPECT_EQ(heads[2].tokens, 1);
  EXPECT_NEAR(*heads[2].mean_entropy, 0.95 * std::log(6.0), 1e-6);
  EXPECT_NEAR(*heads[2].mean_first_mass, 1.0 / 6.0, 1e-6);
  // Whole trace: rows 1, 2, 3, 5.
  EXPECT_EQ(attention_by_head(t, {})[0].tokens, 4);
}

TEST(AttentionStats, NoTokensLeavesEveryMeasureUnset) {
  const Trace t = attention_trace();
  TokenFilter first_row;
  first_row.end = 1;  // position 0 only
  const std::vector<HeadAttention> heads = attention_by_head(t, first_row);
  ASSERT_EQ(heads.size(), 4u);
  EXPECT_EQ(heads[0].tokens, 0);
  EXPECT_FALSE(heads[0].mean_entropy.has_value());
  EXPECT_FALSE(heads[0].mean_topk_mass.has_value());
  EXPECT_FALSE(heads[0].kind.has_value());
  // Tokens, but none past k keys: top-k unset, and the head can still be a sink.
  TokenFilter second_row;
  second_row.begin = 1;
  second_row.end = 2;
  const std::vector<HeadAttention> early = attention_by_head(t, second_row);
  EXPECT_EQ(early[1].tokens, 1);
  EXPECT_EQ(early[1].topk_tokens, 0);
  EXPECT_FALSE(early[1].mean_topk_mass.has_value());
  EXPECT_EQ(early[0].kind, HeadKind::Sink);
}

TEST(AttentionStats, ThresholdsAreInclusiveAndOrdered) {
  HeadAttention h;
  h.tokens = 1;
  h.mean_first_mass = kSinkFirstMass;  // exactly at the threshold
  h.mean_topk_mass = 1.0;
  h.mean_normalized_entropy = 1.0;
  EXPECT_EQ(classify_head(h), HeadKind::Sink);
  h.mean_first_mass = 0.49;
  EXPECT_EQ(classify_head(h), HeadKind::Sparse);  // sparse before diffuse
  h.mean_topk_mass = 0.89;
  EXPECT_EQ(classify_head(h), HeadKind::Diffuse);
  h.mean_normalized_entropy = 0.89;
  EXPECT_EQ(classify_head(h), HeadKind::LocalOrOther);
  h.mean_topk_mass = std::nullopt;  // unknown top-k mass is not "sparse"
  EXPECT_EQ(classify_head(h), HeadKind::LocalOrOther);
  h.tokens = 0;
  EXPECT_FALSE(classify_head(h).has_value());
  EXPECT_STREQ(head_kind_name(HeadKind::LocalOrOther), "local/other");
}

TEST(AttentionStats, Tables) {
  const Trace t = attention_trace();
  const std::vector<HeadAttention> heads = attention_by_head(t, prompt_only());
  const Table per_head = attention_head_table(heads, t.attention_topk);
  ASSERT_EQ(per_head.rows.size(), 4u);
  EXPECT_EQ(per_head.at(0, "kind").text, "sink");
  EXPECT_EQ(per_head.at(3, "kind").text, "local/other");
  EXPECT_NEAR(*per_head.at(3, "normalized_entropy").number(), 0.5123802980, 1e-6);
  EXPECT_EQ(per_head.at(3, "tokens").integer, 3);

  const std::vector<LayerAttentionSummary> layers = summarize_attention_layers(heads);
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ(layers[0].kinds, (std::array<int, kHeadKindCount>{1, 1, 0, 0}));
  EXPECT_EQ(layers[1].kinds, (std::array<int, kHeadKindCount>{0, 0, 1, 1}));
  // Layer 0 mean entropy over its heads: (0.3 + 0.2) / 2.
  EXPECT_NEAR(*layers[0].mean_entropy, 0.25, 1e-6);
  const Table per_layer = attention_layer_table(layers);
  EXPECT_EQ(per_layer.at(1, "layer").integer, 1);
  EXPECT_EQ(per_layer.at(1, "heads").integer, 2);
  EXPECT_EQ(per_layer.at(1, "diffuse").integer, 1);
  EXPECT_EQ(per_layer.at(1, "local/other").integer, 1);
  EXPECT_EQ(per_layer.at(0, "sink").integer, 1);
  EXPECT_NEAR(*per_layer.at(0, "first_mass").number(), 0.45, 1e-6);  // (0.8 + 0.1) / 2
}

}  // namespace
}  // namespace moe::inspect
