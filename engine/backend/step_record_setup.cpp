#include "engine/backend/step_record_setup.h"

#include "engine/model/model_spec.h"

namespace moe {

void prepare_step_record(StepRecord& rec, const HookRequest& req, const RecordShape& shape,
                         std::span<const int32_t> tokens, const StepTags& tags, size_t offset) {
  const ModelSpec& s = *shape.spec;
  const size_t T = tokens.size(), M = shape.moe_layers->size(), K = size_t(shape.slots);
  const size_t E = size_t(std::max(0, s.moe.n_experts)), Ln = size_t(s.n_layers), Hh = size_t(s.attn.n_heads);
  rec.first_position = shape.first_position;
  rec.n_tokens = int(T);
  rec.tokens.assign(tokens.begin(), tokens.end());
  rec.phases.assign(T, uint8_t(Phase::Other));
  rec.forced.assign(T, 0);
  rec.generated.assign(T, tags.generated ? 1 : 0);
  for (size_t t = 0; t < T; ++t) {
    if (offset + t < tags.phases.size()) rec.phases[t] = tags.phases[offset + t];
    if (offset + t < tags.forced.size()) rec.forced[t] = tags.forced[offset + t];
  }
  rec.n_layers = s.n_layers;
  rec.n_heads = s.attn.n_heads;
  rec.n_experts = s.moe.n_experts;
  rec.moe_layers = *shape.moe_layers;
  rec.top_k = M > 0 ? shape.slots : 0;  // a model without MoE layers routes nothing, whatever its buffers hold
  auto size = [](auto& v, bool on, size_t n, auto fill) { on ? v.assign(n, fill) : v.clear(); };
  size(rec.expert_ids, req.routing, T * M * K, int32_t(-1));
  size(rec.expert_weights, req.routing, T * M * K, 0.0f);
  size(rec.router_entropy, req.routing, T * M, 0.0f);
  size(rec.top1_margin, req.routing, T * M, 0.0f);
  size(rec.shared_gate, req.routing && shape.has_shared_gate, T * M, 0.0f);
  size(rec.router_probs, req.router_probs, T * M * E, 0.0f);
  for (auto* v : {&rec.attn_entropy, &rec.attn_max, &rec.attn_topk_mass, &rec.attn_first_mass})
    size(*v, req.attention_stats, T * Ln * Hh, 0.0f);
  rec.attention_topk = req.attention_stats ? req.attention_topk : 0;
  size(rec.hidden_norm, req.hidden_norms, T * Ln, 0.0f);
  size(rec.layer_time_s, req.layer_times, Ln, 0.0);
  // Rows are overwritten in place (not cleared and pushed back), so each row's weight buffer keeps its
  // capacity from step to step and a decode step allocates nothing.
  size_t n_rows = 0;
  for (const auto& r : req.attention_rows)
    if (r.layer >= 0 && r.layer < s.n_layers && r.head >= 0 && r.head < s.attn.n_heads) {
      if (n_rows == rec.attention_rows.size()) rec.attention_rows.emplace_back();
      auto& row = rec.attention_rows[n_rows++];
      row.layer = r.layer;
      row.head = r.head;
      row.position = shape.first_position + int(T) - 1;
      row.weights.clear();
    }
  rec.attention_rows.resize(n_rows);
  rec.step_time_s = 0;
}

}  // namespace moe
