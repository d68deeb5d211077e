// Dense Llama (and Mistral-style dense models): GQA, rotate-half RoPE on the HF weights, SwiGLU MLP.
#include "engine/model/families.h"

namespace moe {

FamilyAdapter llama_family() {
  FamilyAdapter f;
  f.model_type = "llama";
  f.display_name = "Llama";
  f.read_config = [](const JsonFields& c, ModelSpec& s) {
    if (c.boolean_or("mlp_bias", false)) throw EngineError(c.file(), "mlp_bias", "MLP biases are not supported");
  };
  return f;
}

}  // namespace moe
