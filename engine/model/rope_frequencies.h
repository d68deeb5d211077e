#pragma once
// RoPE inverse frequencies as transformers computes them, plain or YaRN (SPECS.md §1.3–1.4). Both
// backends take their tables from here, so the CPU reference and the GPU rotate by the same angles.
#include <vector>

#include "engine/model/model_spec.h"

namespace moe {

// rotary_dim / 2 values: plain theta^(-2i/d), or YaRN's blend of those and their interpolation by 1/s.
std::vector<float> rope_inv_freq(const AttentionSpec& attn);

// YaRN's magnitude factor: 1 for s ≤ 1, else 0.1·m·ln(s) + 1.
double yarn_get_mscale(double scale, double mscale = 1.0);

}  // namespace moe
