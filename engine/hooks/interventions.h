#pragma once
// Interventions on the router, per layer (DESIGN.md, "Hooks"): the other direction of the hooks.
// Applied by the backend's router in this order, for each token of an MoE layer:
//   1. logits += router_bias                (before the score function, so it moves the weights too)
//   2. logits[masked] = -inf                (a masked expert gets probability 0 and is never selected)
//   3. scores = softmax or sigmoid(logits)  (the model's score function)
//   4. selection = forced experts first (in the given order), then the best remaining scores, until
//      k = top_k (or the model's k when 0) experts are chosen; k = n_experts is the dense mode
//   5. weights = scores of the selection, renormalised when the model renormalises, then scaled.
// Masking a softmax router this way renormalises the distribution over the experts left, which is what
// a transformers golden gets by adding -inf to the masked columns of the router logits.
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct ModelSpec;

struct LayerIntervention {
  std::vector<int32_t> masked;     // expert ids never selected
  std::vector<int32_t> forced;     // expert ids always selected
  int top_k = 0;                   // 0: the model's top-k; 1 … n_experts
  std::vector<float> router_bias;  // added to the router logits; empty or n_experts values
  bool empty() const { return masked.empty() && forced.empty() && top_k == 0 && router_bias.empty(); }
};

struct Interventions {
  std::vector<LayerIntervention> layers;  // indexed by layer; empty or n_layers entries

  bool empty() const;
  const LayerIntervention* at(int layer) const;  // null when none for that layer
  LayerIntervention& layer(int index, int n_layers);  // grows `layers` to n_layers on first use
  // The largest k any MoE layer will select (the model's k when nothing overrides it).
  int max_top_k(const ModelSpec& spec) const;
  // Throws EngineError naming the field when an intervention does not fit the model: a layer that is
  // not MoE, an expert id out of range, forced and masked overlapping, k out of [1, n_experts], more
  // forced experts than k, fewer unmasked experts than k, a bias of the wrong length.
  void validate(const ModelSpec& spec) const;
  // A JSON object describing every non-empty layer (for trace metadata), e.g.
  // {"3": {"masked": [1, 2], "top_k": 16}}; "{}" when empty.
  std::string to_json() const;
};

// Parses the command-line forms (layers: "all", "3", "0-2", "0,2,5"):
//   --mask "LAYERS:E,E,..."   --force "LAYERS:E,..."   --router-top-k "LAYERS:K", "K" or "all" (all layers)
//   --router-bias "LAYERS:E=VALUE,E=VALUE"
// Each adds to `into`. Throws EngineError(field = the flag) on a malformed value.
void parse_intervention(const std::string& flag, const std::string& value, const ModelSpec& spec, Interventions& into);

}  // namespace moe
