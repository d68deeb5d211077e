#include "engine/backend/cuda_coverage.h"

#include <algorithm>
#include <vector>

namespace moe {

std::string cuda_unsupported_features(const ModelSpec& s) {
  std::vector<std::string> parts;
  if (s.attn.sinks) parts.push_back("attention sinks");
  if (std::any_of(s.layer_window.begin(), s.layer_window.end(), [](int w) { return w > 0; }))
    parts.push_back("sliding-window attention");
  if (s.moe.router_logit_bias) parts.push_back("a router bias");
  if (s.moe.expert_bias) parts.push_back("expert biases");
  if (s.moe.glu_limit > 0) parts.push_back("the clamped expert gate");
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : i + 1 == parts.size() ? " and " : ", ") + parts[i];
  return out;
}

std::string cuda_refusal(const ModelSpec& s) {
  const std::string unsupported = cuda_unsupported_features(s);
  return unsupported.empty() ? "" : "the CUDA backend does not run " + s.family + "'s " + unsupported + " yet";
}

}  // namespace moe
