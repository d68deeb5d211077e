#include "inspect/trace_concat.h"

#include <algorithm>

#include "engine/common/error.h"

namespace moe::inspect {
namespace {

// Appends `rows` rows of width `width` from src (or zeros when src is shorter than that).
template <typename T>
void append_rows(std::vector<T>& dst, const std::vector<T>& src, size_t rows, size_t width, T fill = T{}) {
  const size_t n = rows * width;
  for (size_t i = 0; i < n; ++i) dst.push_back(i < src.size() ? src[i] : fill);
}

// Routing rows [rows][M][k_src] widened to k_dst.
template <typename T>
void append_routing(std::vector<T>& dst, const std::vector<T>& src, size_t rows, size_t M, size_t k_src, size_t k_dst, T pad) {
  for (size_t r = 0; r < rows * M; ++r)
    for (size_t j = 0; j < k_dst; ++j) {
      const size_t i = r * k_src + j;
      dst.push_back(j < k_src && i < src.size() ? src[i] : pad);
    }
}

}  // namespace

Trace concat_traces(const std::vector<Trace>& parts) {
  Trace out;
  if (parts.empty()) return out;
  const Trace& first = parts.front();
  out.n_layers = first.n_layers;
  out.n_heads = first.n_heads;
  out.n_experts = first.n_experts;
  out.moe_layers = first.moe_layers;
  out.metadata_json = first.metadata_json;
  for (const Trace& p : parts) {
    if (p.n_layers != out.n_layers || p.n_heads != out.n_heads || p.n_experts != out.n_experts || p.moe_layers != out.moe_layers)
      throw EngineError("", "trace shape", "the traces to join come from different model shapes");
    out.top_k = std::max(out.top_k, p.top_k);
    out.attention_topk = std::max(out.attention_topk, p.attention_topk);
  }
  const size_t M = out.moe_layers.size(), K = size_t(out.top_k), E = size_t(out.n_experts), L = size_t(out.n_layers),
               H = size_t(out.n_heads);
  auto any = [&](auto member) { return std::any_of(parts.begin(), parts.end(), [&](const Trace& p) { return !(p.*member).empty(); }); };
  const bool gate = any(&Trace::shared_gate), probs = any(&Trace::router_probs), attn = any(&Trace::attn_entropy),
             norms = any(&Trace::hidden_norm), times = any(&Trace::layer_time_s);
  int32_t step_offset = 0, segment_offset = 0, row_offset = 0;
  double time_offset = 0;
  for (const Trace& p : parts) {
    const size_t N = size_t(p.size()), S = p.step_tokens.size(), k = size_t(p.top_k);
    out.tokens.insert(out.tokens.end(), p.tokens.begin(), p.tokens.end());
    out.positions.insert(out.positions.end(), p.positions.begin(), p.positions.end());
    out.phases.insert(out.phases.end(), p.phases.begin(), p.phases.end());
    out.forced.insert(out.forced.end(), p.forced.begin(), p.forced.end());
    append_rows(out.generated, p.generated, N, 1);
    for (int32_t s : p.step) out.step.push_back(s + step_offset);
    for (int32_t s : p.segment) out.segment.push_back(s + segment_offset);
    append_rows(out.has_routing, p.has_routing, N, 1);
    append_routing(out.expert_ids, p.expert_ids, N, M, k, K, int32_t(-1));
    append_routing(out.expert_weights, p.expert_weights, N, M, k, K, 0.0f);
    append_rows(out.router_entropy, p.router_entropy, N, M);
    append_rows(out.top1_margin, p.top1_margin, N, M);
    if (gate) append_rows(out.shared_gate, p.shared_gate, N, M);
    // The has_* flags always cover every row (zeros where a part lacks the column).
    append_rows(out.has_router_probs, p.has_router_probs, N, 1);
    append_rows(out.has_attention, p.has_attention, N, 1);
    append_rows(out.has_hidden_norm, p.has_hidden_norm, N, 1);
    append_rows(out.has_layer_time, p.has_layer_time, S, 1);
    if (probs) append_rows(out.router_probs, p.router_probs, N, M * E);
    if (attn) {
      append_rows(out.attn_entropy, p.attn_entropy, N, L * H);
      append_rows(out.attn_max, p.attn_max, N, L * H);
      append_rows(out.attn_topk_mass, p.attn_topk_mass, N, L * H);
      append_rows(out.attn_first_mass, p.attn_first_mass, N, L * H);
    }
    if (norms) append_rows(out.hidden_norm, p.hidden_norm, N, L);
    for (int32_t f : p.step_first_token) out.step_first_token.push_back(f + row_offset);
    out.step_tokens.insert(out.step_tokens.end(), p.step_tokens.begin(), p.step_tokens.end());
    out.step_time_s.insert(out.step_time_s.end(), p.step_time_s.begin(), p.step_time_s.end());
    for (double e : p.step_end_s) out.step_end_s.push_back(e + time_offset);
    if (times) append_rows(out.layer_time_s, p.layer_time_s, S, L);
    for (auto row : p.attention_rows) {
      row.step += step_offset;
      out.attention_rows.push_back(std::move(row));
    }
    out.forced_stops.insert(out.forced_stops.end(), p.forced_stops.begin(), p.forced_stops.end());
    out.segments.insert(out.segments.end(), p.segments.begin(), p.segments.end());
    step_offset += int32_t(S);
    segment_offset += int32_t(p.segments.size());
    row_offset += int32_t(N);
    if (!p.step_end_s.empty()) time_offset += p.step_end_s.back();
  }
  return out;
}

}  // namespace moe::inspect
