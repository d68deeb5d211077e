#pragma once
// A trace: everything the engine reported for a run of tokens, as plain columns (one row per token, in
// sequence order). It is what TraceStore hands to readers as a snapshot, what the trace file holds, and
// what every measure reads. Detail arrays (router probabilities, attention statistics, hidden norms)
// exist only for the tokens whose step asked for them: `has_*` says which rows are real (the others
// are zero).
#include <cstdint>
#include <string>
#include <vector>

#include "engine/hooks/step_observer.h"

namespace moe::inspect {

// Where the thinking budget cut a think block (issue 5): the early-stop text starts at `position`.
struct ForcedStopRecord {
  int position = 0;         // sequence position of the first injected token
  int thinking_tokens = 0;  // thinking tokens generated before the cut
  int budget = 0;           // the budget in force (-1 when cut by "stop thinking now")
};

struct Trace {
  // Shape (fixed for a trace; taken from the first record).
  int n_layers = 0, n_heads = 0, n_experts = 0, top_k = 0, attention_topk = 0;
  std::vector<int> moe_layers;  // layer index of each MoE-layer ordinal
  int n_moe() const { return int(moe_layers.size()); }

  // Per token [N].
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<uint8_t> phases;  // moe::Phase
  std::vector<uint8_t> forced;  // 1 = injected by the runtime
  std::vector<uint8_t> generated;  // 1 = output of the generation loop (sampled or injected), 0 = prompt
  std::vector<int32_t> step;    // index of the forward step the token ran in
  std::vector<int32_t> segment; // index into `segments` (one per generate/score call)

  // router.topk, [N][M][top_k] and [N][M]; has_routing[N].
  std::vector<uint8_t> has_routing;
  std::vector<int32_t> expert_ids;  // -1 = empty slot
  std::vector<float> expert_weights;
  std::vector<float> router_entropy;
  std::vector<float> top1_margin;
  std::vector<float> shared_gate;  // empty when the model has no shared-expert gate

  // router.probs, [N][M][n_experts].
  std::vector<uint8_t> has_router_probs;
  std::vector<float> router_probs;

  // attn.stats, [N][n_layers][n_heads].
  std::vector<uint8_t> has_attention;
  std::vector<float> attn_entropy, attn_max, attn_topk_mass, attn_first_mass;

  // hidden.norm, [N][n_layers].
  std::vector<uint8_t> has_hidden_norm;
  std::vector<float> hidden_norm;

  // Per step [S].
  std::vector<int32_t> step_first_token;  // row of the step's first token
  std::vector<int32_t> step_tokens;       // tokens in the step
  std::vector<double> step_time_s;        // wall time of the step
  std::vector<double> step_end_s;         // seconds since the trace began, at the end of the step
  std::vector<uint8_t> has_layer_time;
  std::vector<double> layer_time_s;       // [S][n_layers]

  // attn.rows (decode steps), flattened.
  struct AttentionRow {
    int step = 0, layer = 0, head = 0, position = 0;
    std::vector<float> weights;
  };
  std::vector<AttentionRow> attention_rows;

  std::vector<ForcedStopRecord> forced_stops;

  // One entry per generate/score call: its settings as a JSON object (mode, budget, sampling,
  // interventions, hook level ...), written by whoever runs the engine.
  std::vector<std::string> segments;

  // The file's metadata: model, prompt, settings, engine version (a JSON object as text).
  std::string metadata_json = "{}";

  int64_t size() const { return int64_t(tokens.size()); }
};

}  // namespace moe::inspect
