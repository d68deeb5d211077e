#include "engine/model/families.h"

namespace moe {

namespace {
const std::vector<FamilyAdapter>& registry() {
  static const std::vector<FamilyAdapter> families = {
      qwen3_moe_family(), qwen3_family(), qwen2_moe_family(), mixtral_family(), olmoe_family(), llama_family(),
      glm4_moe_family(), deepseek_v2_family(), deepseek_v3_family(), minimax_m2_family(),
      ernie4_5_moe_family(), gpt_oss_family(),
  };
  return families;
}
}  // namespace

const FamilyAdapter* find_family(const std::string& model_type) {
  for (const auto& f : registry())
    if (f.model_type == model_type) return &f;
  return nullptr;
}

std::vector<std::string> supported_model_types() {
  std::vector<std::string> out;
  for (const auto& f : registry()) out.push_back(f.model_type);
  return out;
}

}  // namespace moe
