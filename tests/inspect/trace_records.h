#pragma once
// StepRecords built by hand for the TraceStore and trace-file tests, with every value a function of
// the token's position (and layer, head, slot ...), so a test can check any row of a trace without
// keeping what it appended.
#include <cstdint>
#include <vector>

#include "engine/hooks/step_observer.h"

namespace moe::test {

// A small model: 3 layers (MoE at 1 and 2), 2 heads, 5 experts, top-2.
struct TinyShape {
  int n_layers = 3, n_heads = 2, n_experts = 5, top_k = 2;
  std::vector<int> moe_layers = {1, 2};
  int n_moe() const { return int(moe_layers.size()); }
};

// What a record carries beyond tokens.
struct RecordParts {
  bool routing = true;
  int top_k = 2;            // slots in this record (may differ from TinyShape::top_k)
  int real_k = -1;          // slots actually filled (the rest padded with -1); -1: all
  bool shared_gate = false;
  bool router_probs = false;
  bool attention = false;
  bool hidden_norm = false;
  bool layer_time = false;
  std::vector<AttentionRowRequest> rows;  // attention rows of the step's last token
  bool shaped = true;       // false: n_layers etc. left at 0 (a record from a level-off step)
};

inline int32_t token_at(int pos) { return 1000 + pos; }
inline uint8_t phase_at(int pos) { return uint8_t(pos % kPhaseCount); }
inline uint8_t forced_at(int pos) { return pos % 7 == 3 ? 1 : 0; }
inline int32_t expert_at(int pos, int m, int j, int n_experts) { return (pos + m + 2 * j) % n_experts; }
inline float weight_at(int pos, int m, int j) { return 0.5f / float(j + 1) + 0.001f * float(pos) + 0.01f * float(m); }
inline float entropy_at(int pos, int m) { return 0.25f + 0.01f * float(pos) + 0.1f * float(m); }
inline float margin_at(int pos, int m) { return 0.75f - 0.001f * float(pos) - 0.1f * float(m); }
inline float gate_at(int pos, int m) { return 0.125f + 0.002f * float(pos + m); }
inline float prob_at(int pos, int m, int e) { return 0.01f * float(pos) + 0.1f * float(m) + 0.001f * float(e); }
// stat: 0 entropy, 1 max, 2 top-k mass, 3 first-token mass
inline float attn_at(int stat, int pos, int l, int h) {
  return float(stat) * 10.0f + 0.01f * float(pos) + 0.1f * float(l) + 0.001f * float(h);
}
inline float norm_at(int pos, int l) { return 3.0f + 0.5f * float(pos) + float(l); }
inline double layer_time_at(int first_position, int l) { return 1e-3 * double(first_position) + 1e-4 * double(l); }
inline float row_weight_at(int pos, int layer, int head, int key) {
  return 1.0f / float(pos + 1) + 0.0001f * float(key + layer + head);
}

// A step of n tokens starting at `first`.
inline StepRecord make_record(int first, int n, const RecordParts& p = {}, const TinyShape& s = {}) {
  StepRecord r;
  r.first_position = first;
  r.n_tokens = n;
  for (int i = 0; i < n; ++i) {
    r.tokens.push_back(token_at(first + i));
    r.phases.push_back(phase_at(first + i));
    r.forced.push_back(forced_at(first + i));
    r.generated.push_back(first + i >= 6 ? 1 : 0);
  }
  r.step_time_s = 0.25;
  if (!p.shaped) return r;
  r.n_layers = s.n_layers;
  r.n_heads = s.n_heads;
  r.n_experts = s.n_experts;
  r.moe_layers = s.moe_layers;
  r.top_k = p.top_k;
  const int m_count = s.n_moe();
  const int real_k = p.real_k < 0 ? p.top_k : p.real_k;
  for (int i = 0; i < n; ++i) {
    const int pos = first + i;
    for (int m = 0; m < m_count; ++m) {
      if (p.routing) {
        for (int j = 0; j < p.top_k; ++j) {
          r.expert_ids.push_back(j < real_k ? expert_at(pos, m, j, s.n_experts) : -1);
          r.expert_weights.push_back(j < real_k ? weight_at(pos, m, j) : 0.0f);
        }
        r.router_entropy.push_back(entropy_at(pos, m));
        r.top1_margin.push_back(margin_at(pos, m));
        if (p.shared_gate) r.shared_gate.push_back(gate_at(pos, m));
      }
      if (p.router_probs)
        for (int e = 0; e < s.n_experts; ++e) r.router_probs.push_back(prob_at(pos, m, e));
    }
    for (int l = 0; l < s.n_layers; ++l) {
      for (int h = 0; h < s.n_heads; ++h) {
        if (p.attention) {
          r.attn_entropy.push_back(attn_at(0, pos, l, h));
          r.attn_max.push_back(attn_at(1, pos, l, h));
          r.attn_topk_mass.push_back(attn_at(2, pos, l, h));
          r.attn_first_mass.push_back(attn_at(3, pos, l, h));
        }
      }
      if (p.hidden_norm) r.hidden_norm.push_back(norm_at(pos, l));
    }
  }
  if (p.attention) r.attention_topk = 4;
  if (p.layer_time)
    for (int l = 0; l < s.n_layers; ++l) r.layer_time_s.push_back(layer_time_at(first, l));
  const int last = first + n - 1;
  for (const auto& want : p.rows) {
    StepRecord::AttentionRow row;
    row.layer = want.layer;
    row.head = want.head;
    row.position = last;
    for (int key = 0; key <= last; ++key) row.weights.push_back(row_weight_at(last, want.layer, want.head, key));
    r.attention_rows.push_back(std::move(row));
  }
  return r;
}

// Every part a full-level (plus attention-maps) step has.
inline RecordParts full_parts(std::vector<AttentionRowRequest> rows = {{0, 1}, {2, 0}}) {
  RecordParts p;
  p.shared_gate = true;
  p.router_probs = true;
  p.attention = true;
  p.hidden_norm = true;
  p.layer_time = true;
  p.rows = std::move(rows);
  return p;
}

}  // namespace moe::test
