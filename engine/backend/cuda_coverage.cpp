#include "engine/backend/cuda_coverage.h"

#include <algorithm>
#include <vector>

namespace moe {

std::string cuda_unsupported_features(const ModelSpec& s) {
  // GPT-OSS's sinks and windows are in the GQA kernels (attention.cuh), not in latent attention's; no
  // family combines them with it yet.
  std::vector<std::string> parts;
  if (s.attn.is_mla() && s.attn.sinks) parts.push_back("attention sinks with latent attention");
  if (s.attn.is_mla() && std::any_of(s.layer_window.begin(), s.layer_window.end(), [](int w) { return w > 0; }))
    parts.push_back("sliding windows with latent attention");
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : i + 1 == parts.size() ? " and " : ", ") + parts[i];
  return out;
}

std::string cuda_refusal(const ModelSpec& s) {
  const std::string unsupported = cuda_unsupported_features(s);
  return unsupported.empty() ? "" : "the CUDA backend does not run " + s.family + "'s " + unsupported + " yet";
}

}  // namespace moe
