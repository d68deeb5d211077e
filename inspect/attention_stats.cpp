#include "inspect/attention_stats.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace moe::inspect {
namespace {

struct Sums {
  int64_t tokens = 0, topk_tokens = 0;
  double entropy = 0, normalized_entropy = 0, max = 0, first_mass = 0, topk_mass = 0;
};

std::optional<double> mean(double sum, int64_t n) {
  if (n <= 0) return std::nullopt;
  return sum / double(n);
}

// Mean of the set values; unset when none is.
template <class Get>
std::optional<double> mean_over(std::span<const HeadAttention> heads, Get get) {
  double sum = 0;
  int64_t n = 0;
  for (const HeadAttention& h : heads)
    if (const std::optional<double> v = get(h)) {
      sum += *v;
      n += 1;
    }
  return mean(sum, n);
}

}  // namespace

const char* head_kind_name(HeadKind kind) {
  switch (kind) {
    case HeadKind::Sink: return "sink";
    case HeadKind::Sparse: return "sparse";
    case HeadKind::Diffuse: return "diffuse";
    case HeadKind::LocalOrOther: return "local/other";
  }
  return "?";
}

std::optional<HeadKind> classify_head(const HeadAttention& head) {
  if (head.tokens <= 0) return std::nullopt;
  if (head.mean_first_mass && *head.mean_first_mass >= kSinkFirstMass) return HeadKind::Sink;
  if (head.mean_topk_mass && *head.mean_topk_mass >= kSparseTopKMass) return HeadKind::Sparse;
  if (head.mean_normalized_entropy && *head.mean_normalized_entropy >= kDiffuseNormalizedEntropy)
    return HeadKind::Diffuse;
  return HeadKind::LocalOrOther;
}

std::vector<HeadAttention> attention_by_head(const Trace& trace, const TokenFilter& filter) {
  const int L = std::max(0, trace.n_layers), H = std::max(0, trace.n_heads);
  const size_t per_row = size_t(L) * size_t(H);
  std::vector<Sums> sums(per_row);
  auto covered = [&](const std::vector<float>& column, int64_t row) {
    return per_row > 0 && column.size() >= (size_t(row) + 1) * per_row;
  };
  for (int64_t row : select_tokens(trace, filter)) {
    if (size_t(row) >= trace.has_attention.size() || !trace.has_attention[size_t(row)]) continue;
    if (size_t(row) >= trace.positions.size()) continue;
    const int64_t position = trace.positions[size_t(row)];
    if (position <= 0) continue;  // one key: nothing to learn about the head
    if (!covered(trace.attn_entropy, row) || !covered(trace.attn_max, row) || !covered(trace.attn_topk_mass, row) ||
        !covered(trace.attn_first_mass, row))
      continue;
    const double log_keys = std::log(double(position) + 1.0);
    const bool topk_informative = position + 1 > trace.attention_topk;
    const size_t base = size_t(row) * per_row;
    for (size_t i = 0; i < per_row; ++i) {
      Sums& s = sums[i];
      s.tokens += 1;
      s.entropy += trace.attn_entropy[base + i];
      s.normalized_entropy += trace.attn_entropy[base + i] / log_keys;
      s.max += trace.attn_max[base + i];
      s.first_mass += trace.attn_first_mass[base + i];
      if (topk_informative) {
        s.topk_tokens += 1;
        s.topk_mass += trace.attn_topk_mass[base + i];
      }
    }
  }
  std::vector<HeadAttention> heads;
  heads.reserve(per_row);
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      const Sums& s = sums[size_t(l) * size_t(H) + size_t(h)];
      HeadAttention a;
      a.layer = l;
      a.head = h;
      a.tokens = s.tokens;
      a.mean_entropy = mean(s.entropy, s.tokens);
      a.mean_normalized_entropy = mean(s.normalized_entropy, s.tokens);
      a.mean_max = mean(s.max, s.tokens);
      a.mean_first_mass = mean(s.first_mass, s.tokens);
      a.topk_tokens = s.topk_tokens;
      a.mean_topk_mass = mean(s.topk_mass, s.topk_tokens);
      a.kind = classify_head(a);
      heads.push_back(a);
    }
  return heads;
}

std::vector<LayerAttentionSummary> summarize_attention_layers(std::span<const HeadAttention> heads) {
  std::vector<LayerAttentionSummary> out;
  size_t i = 0;
  while (i < heads.size()) {
    size_t j = i;
    while (j < heads.size() && heads[j].layer == heads[i].layer) ++j;
    const std::span<const HeadAttention> layer = heads.subspan(i, j - i);
    LayerAttentionSummary s;
    s.layer = heads[i].layer;
    for (const HeadAttention& h : layer)
      if (h.kind) {
        s.heads_with_data += 1;
        s.kinds[size_t(*h.kind)] += 1;
      }
    s.mean_entropy = mean_over(layer, [](const HeadAttention& h) { return h.mean_entropy; });
    s.mean_normalized_entropy = mean_over(layer, [](const HeadAttention& h) { return h.mean_normalized_entropy; });
    s.mean_first_mass = mean_over(layer, [](const HeadAttention& h) { return h.mean_first_mass; });
    out.push_back(s);
    i = j;
  }
  return out;
}

namespace {

std::string thresholds_note() {
  auto num = [](double v) { return Cell(v, 2).formatted(); };
  return "kind, first that holds: sink (first_mass >= " + num(kSinkFirstMass) + "), sparse (topk_mass >= " +
         num(kSparseTopKMass) + "), diffuse (normalized_entropy >= " + num(kDiffuseNormalizedEntropy) +
         "), else local/other";
}

}  // namespace

Table attention_head_table(std::span<const HeadAttention> heads, int attention_topk) {
  Table t;
  t.title = "Attention per head";
  t.columns = {"layer", "head", "tokens", "entropy", "normalized_entropy", "max", "topk_mass", "first_mass", "kind"};
  for (const HeadAttention& h : heads)
    t.add_row({h.layer, h.head, h.tokens, Cell::optional(h.mean_entropy), Cell::optional(h.mean_normalized_entropy),
               Cell::optional(h.mean_max), Cell::optional(h.mean_topk_mass), Cell::optional(h.mean_first_mass),
               h.kind ? Cell(head_kind_name(*h.kind)) : Cell()});
  t.notes.push_back("means over tokens at position > 0; entropy in nats; normalized_entropy = entropy / ln(position + 1)");
  t.notes.push_back("topk_mass: mass of the " + std::to_string(attention_topk) + " largest weights, over tokens with more than " +
                    std::to_string(attention_topk) + " keys");
  t.notes.push_back(thresholds_note());
  return t;
}

Table attention_layer_table(std::span<const LayerAttentionSummary> layers) {
  Table t;
  t.title = "Attention per layer";
  t.columns = {"layer", "heads", "sink", "sparse", "diffuse", "local/other", "entropy", "normalized_entropy", "first_mass"};
  for (const LayerAttentionSummary& s : layers)
    t.add_row({s.layer, s.heads_with_data, s.kinds[0], s.kinds[1], s.kinds[2], s.kinds[3], Cell::optional(s.mean_entropy),
               Cell::optional(s.mean_normalized_entropy), Cell::optional(s.mean_first_mass)});
  t.notes.push_back("heads: heads with attention statistics; entropy, normalized_entropy, first_mass: means over them");
  t.notes.push_back(thresholds_note());
  return t;
}

}  // namespace moe::inspect
