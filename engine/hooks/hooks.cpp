#include "engine/hooks/step_observer.h"

#include <algorithm>

namespace moe {

const char* hook_level_name(HookLevel level) {
  switch (level) {
    case HookLevel::Off: return "off";
    case HookLevel::Routing: return "routing";
    case HookLevel::Full: return "full";
    case HookLevel::AttentionMaps: return "attention-maps";
  }
  return "?";
}

std::optional<HookLevel> parse_hook_level(std::string_view name) {
  for (HookLevel l : {HookLevel::Off, HookLevel::Routing, HookLevel::Full, HookLevel::AttentionMaps})
    if (name == hook_level_name(l)) return l;
  return std::nullopt;
}

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::System: return "system";
    case Phase::User: return "user";
    case Phase::Thinking: return "thinking";
    case Phase::Answer: return "answer";
    case Phase::Other: return "other";
  }
  return "?";
}

void HookRequest::merge(const HookRequest& o) {
  routing |= o.routing;
  router_probs |= o.router_probs;
  if (o.attention_stats) attention_topk = attention_stats ? std::max(attention_topk, o.attention_topk) : o.attention_topk;
  attention_stats |= o.attention_stats;
  hidden_norms |= o.hidden_norms;
  layer_times |= o.layer_times;
  for (const auto& r : o.attention_rows)
    if (std::none_of(attention_rows.begin(), attention_rows.end(),
                     [&](const AttentionRowRequest& x) { return x.layer == r.layer && x.head == r.head; }))
      attention_rows.push_back(r);
}

HookRequest HookRequest::for_level(HookLevel level, std::vector<AttentionRowRequest> rows) {
  HookRequest r;
  if (level == HookLevel::Off) return r;
  r.routing = true;
  if (level == HookLevel::Routing) return r;
  r.router_probs = true;
  r.attention_stats = true;
  r.hidden_norms = true;
  r.layer_times = true;
  if (level == HookLevel::AttentionMaps) r.attention_rows = std::move(rows);
  return r;
}

}  // namespace moe
