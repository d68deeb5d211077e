#pragma once
// Attention measures per layer and head over the selected tokens that carry attn.stats: how spread out
// each head's attention is (entropy), how peaked (max weight, top-k mass), how much it parks on the
// first token (the attention sink), and a one-word label per head so a grid of 32 x 48 heads can be
// read at a glance.
//
// What the trace holds per token and head is already a summary of the row (entropy in nats, max weight,
// top-k mass, first-token mass), so everything here is a mean over tokens. A row's length is not
// stored; under causal attention the token at position p sees p + 1 keys, which is what the normalised
// entropy and the top-k filter below rely on (for sliding-window layers it overstates the keys of tokens
// past the window).
//
// Tokens the measures skip, because the value says nothing about the head:
//  - position 0: one key, so entropy 0 and every mass 1 whatever the head does;
//  - for the top-k mass only, tokens with at most k keys (position + 1 <= attention_topk): their top-k
//    mass is 1 by construction.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "inspect/table.h"
#include "inspect/trace.h"
#include "inspect/trace_measures.h"

namespace moe::inspect {

// Thresholds of the head labels, on the means below.
inline constexpr double kSinkFirstMass = 0.5;             // sink: at least half the attention on token 0
inline constexpr double kSparseTopKMass = 0.9;            // sparse: the top-k keys hold 90% of the mass
inline constexpr double kDiffuseNormalizedEntropy = 0.9;  // diffuse: entropy within 10% of uniform over the keys

// The labels are tested in this order and the first that holds wins: a sink head is usually also
// sparse (its top key is token 0), and being a sink is the more specific statement. A head that is
// none of the three concentrates on some keys that are not the first but not enough for "sparse" —
// typically local or content heads; the stored summary cannot tell which, hence one label for both.
enum class HeadKind : int { Sink = 0, Sparse, Diffuse, LocalOrOther };
inline constexpr int kHeadKindCount = 4;
const char* head_kind_name(HeadKind kind);  // "sink", "sparse", "diffuse", "local/other"

struct HeadAttention {
  int layer = 0, head = 0;
  int64_t tokens = 0;  // selected tokens with attn.stats at position > 0
  // Means over those tokens; unset when tokens is 0.
  std::optional<double> mean_entropy;             // nats
  std::optional<double> mean_normalized_entropy;  // entropy / ln(position + 1): 1 = uniform over the keys
  std::optional<double> mean_max;
  std::optional<double> mean_first_mass;
  int64_t topk_tokens = 0;                // tokens with more than attention_topk keys
  std::optional<double> mean_topk_mass;   // over those tokens; unset when there are none
  std::optional<HeadKind> kind;           // unset when tokens is 0
};

// The label of a head from its means (unset means fail their test).
std::optional<HeadKind> classify_head(const HeadAttention& head);

// One entry per (layer, head), layer-major.
std::vector<HeadAttention> attention_by_head(const Trace& trace, const TokenFilter& filter);

struct LayerAttentionSummary {
  int layer = 0;
  int heads_with_data = 0;
  std::array<int, kHeadKindCount> kinds{};  // heads of each HeadKind
  // Means over the heads with data.
  std::optional<double> mean_entropy, mean_normalized_entropy, mean_first_mass;
};
std::vector<LayerAttentionSummary> summarize_attention_layers(std::span<const HeadAttention> heads);

// layer, head, tokens, entropy, normalized_entropy, max, topk_mass, first_mass, kind.
Table attention_head_table(std::span<const HeadAttention> heads, int attention_topk);
// layer, heads, sink, sparse, diffuse, local/other, entropy, normalized_entropy, first_mass.
Table attention_layer_table(std::span<const LayerAttentionSummary> layers);

}  // namespace moe::inspect
