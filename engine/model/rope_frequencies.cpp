#include "engine/model/rope_frequencies.h"

#include <algorithm>
#include <cmath>

namespace moe {

double yarn_get_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

std::vector<float> rope_inv_freq(const AttentionSpec& a) {
  const int d = a.rotary_dim;
  const double base = a.rope_theta;
  std::vector<float> inv(size_t(std::max(0, d / 2)));
  const YarnSpec& y = a.yarn;
  // The dims whose wavelength is below L0 / (2π·r) rotations: corr(r) = d·ln(L0 / (2π·r)) / (2·ln base).
  double low = 0, high = 0;
  if (y.factor > 0) {
    auto corr = [&](double rotations) {
      return double(d) * std::log(double(y.original_max_positions) / (rotations * 2 * M_PI)) / (2 * std::log(base));
    };
    low = corr(y.beta_fast), high = corr(y.beta_slow);
    if (y.truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0), high = std::min(high, double(d - 1));
    if (low == high) high += 0.001;  // HF's guard against a zero-width ramp
  }
  for (int i = 0; i < d / 2; ++i) {
    // HF computes base^(2i/d) in fp32; the result is rounded to fp32 like theirs.
    const double extra = 1.0 / std::pow(base, double(2 * i) / double(d));
    if (y.factor <= 0) {
      inv[size_t(i)] = float(extra);
      continue;
    }
    // ramp 0 → keep the original frequency (high-frequency dims), 1 → interpolate by 1/s.
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    const double keep = 1.0 - ramp;
    inv[size_t(i)] = float(extra / y.factor * (1.0 - keep) + extra * keep);
  }
  return inv;
}

}  // namespace moe
