#pragma once
// What a forward pass reports while it runs (DESIGN.md, "Hooks"). The protocol is ask/observe:
// before each forward step the backend asks its observer which records it wants (HookRequest), computes
// and copies only those into one preallocated StepRecord, and hands the record over once at the end of
// the step (observe) — never per layer. A step is one forward chunk: a decode token, or up to
// BackendOptions::prefill_chunk prompt tokens.
//
// Record names (stable, used by the trace file): router.topk, router.probs, router.shared_gate,
// attn.stats, attn.rows, hidden.norm, layer.time.
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace moe {

// Levels of DESIGN.md, switchable between steps.
enum class HookLevel { Off, Routing, Full, AttentionMaps };
const char* hook_level_name(HookLevel level);
std::optional<HookLevel> parse_hook_level(std::string_view name);  // "off", "routing", "full", "attention-maps"

// The phase a token belongs to (prompt tokens from the chat template's turns, generated tokens from the
// reasoning controller). Other: tokens outside any turn (raw prompts).
enum class Phase : uint8_t { System = 0, User = 1, Thinking = 2, Answer = 3, Other = 4 };
constexpr int kPhaseCount = 5;
const char* phase_name(Phase phase);

struct AttentionRowRequest {
  int layer = 0;
  int head = 0;
};

struct HookRequest {
  bool routing = false;          // router.topk (+ router entropy, top-1 margin, shared-expert gate)
  bool router_probs = false;     // router.probs: the whole distribution per MoE layer
  bool attention_stats = false;  // attn.stats: per head entropy, max weight, top-k mass, first-token mass
  int attention_topk = 8;        //   k of the top-k mass
  bool hidden_norms = false;     // hidden.norm: L2 norm of the residual stream after each layer
  bool layer_times = false;      // layer.time: wall time of each layer for the whole step
  std::vector<AttentionRowRequest> attention_rows;  // attn.rows: full rows of these heads (decode steps)

  bool any() const {
    return routing || router_probs || attention_stats || hidden_norms || layer_times || !attention_rows.empty();
  }
  void merge(const HookRequest& other);  // union of two requests
  static HookRequest for_level(HookLevel level, std::vector<AttentionRowRequest> rows = {});
};

// One step's records. Arrays are row-major with the token first; an array is empty when not asked for.
// MoE arrays are indexed by MoE-layer ordinal m (moe_layers[m] is the layer index).
struct StepRecord {
  int first_position = 0;  // position of the first token in the sequence
  int n_tokens = 0;
  std::vector<int32_t> tokens;  // [T] ids run in this step
  std::vector<uint8_t> phases;  // [T] Phase of each token (filled by the Session; Other when unknown)
  std::vector<uint8_t> forced;  // [T] 1 when the runtime injected the token (thinking budget)
  std::vector<uint8_t> generated;  // [T] 1 for tokens of the output (sampled or injected), 0 for the prompt

  int n_layers = 0, n_heads = 0, n_experts = 0;
  std::vector<int> moe_layers;
  int top_k = 0;  // slots per token and MoE layer in the routing arrays (the largest k in force)

  // router.topk: [T][M][top_k]; ids in descending weight order, -1 (weight 0) pads a layer whose k is
  // smaller. Weights as applied to the expert outputs (after renormalisation and scaling).
  std::vector<int32_t> expert_ids;
  std::vector<float> expert_weights;
  std::vector<float> router_entropy;  // [T][M] entropy of the router distribution / log(n_experts)
  std::vector<float> top1_margin;     // [T][M] p1 - p2 of the (renormalised) distribution
  std::vector<float> shared_gate;     // [T][M] sigmoid gate of the shared expert (empty if none)
  std::vector<float> router_probs;    // router.probs: [T][M][n_experts], after masks and bias

  // attn.stats: [T][n_layers][n_heads]
  // Of the weights each value is mixed with; with a sink (GPT-OSS) they sum to less than 1.
  std::vector<float> attn_entropy;     // entropy of the attention row (nats)
  std::vector<float> attn_max;         // largest weight
  std::vector<float> attn_topk_mass;   // mass of the attention_topk largest weights
  std::vector<float> attn_first_mass;  // weight on position 0 (the attention sink)
  int attention_topk = 0;

  std::vector<float> hidden_norm;   // hidden.norm: [T][n_layers]
  std::vector<double> layer_time_s;  // layer.time: [n_layers] for the whole step

  struct AttentionRow {  // attn.rows: one (layer, head) row of the last token of a decode step
    int layer = 0, head = 0, position = 0;
    std::vector<float> weights;  // [position + 1]
  };
  std::vector<AttentionRow> attention_rows;

  double step_time_s = 0;  // wall time of the forward step
  bool has_routing() const { return !expert_ids.empty(); }
};

class StepObserver {
 public:
  virtual ~StepObserver() = default;
  virtual HookRequest ask() const = 0;               // before each step: what to compute and copy
  virtual void observe(const StepRecord& record) = 0;  // after each step, on the engine thread
};

}  // namespace moe
