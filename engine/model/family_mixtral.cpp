// Mixtral: GQA, softmax router over num_local_experts that always renormalises its top-k, experts named
// w1 (gate), w3 (up), w2 (down) under block_sparse_moe (SPECS.md §4).
#include "engine/model/families.h"

namespace moe {

FamilyAdapter mixtral_family() {
  FamilyAdapter f;
  f.model_type = "mixtral";
  f.display_name = "Mixtral";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    s.moe.n_experts = int(c.integer("num_local_experts"));
    s.moe.top_k = int(c.integer("num_experts_per_tok"));
    s.moe.expert_ffn = int(c.integer("intermediate_size"));  // intermediate_size is the expert width
    s.moe.renormalize = true;
    s.layer_is_moe.assign(s.n_layers, true);
  };
  name_mixtral_experts(f.names);
  return f;
}

void name_mixtral_experts(TensorNaming& n) {
  n.router = "model.layers.{L}.block_sparse_moe.gate.weight";
  n.expert_gate = "model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight";
  n.expert_up = "model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight";
  n.expert_down = "model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight";
  n.experts_gate_up = "model.layers.{L}.mlp.experts.gate_up_proj";
  n.experts_down = "model.layers.{L}.mlp.experts.down_proj";
  n.shared_gate_proj = n.shared_up_proj = n.shared_down_proj = n.shared_expert_gate = "";
}

}  // namespace moe
