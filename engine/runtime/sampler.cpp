#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"

namespace moe {

std::string SamplingParams::to_json() const {
  const nlohmann::json j = {{"greedy", greedy},       {"temperature", temperature},
                            {"top_k", top_k},         {"top_p", top_p},
                            {"min_p", min_p},         {"repetition_penalty", repetition_penalty},
                            {"presence_penalty", presence_penalty}, {"seed", seed}};
  return j.dump();
}

namespace {

[[noreturn]] void bad_param(const std::string& field, const std::string& rule, double value) {
  throw EngineError("", field, rule + ", got " + std::to_string(value));
}

void validate(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) bad_param("temperature", "must be 0 or more", p.temperature);
  if (p.top_k < 0) bad_param("top_k", "must be 0 (off) or more", p.top_k);
  if (!(p.top_p >= 0 && p.top_p <= 1)) bad_param("top_p", "must be between 0 and 1", p.top_p);
  if (!(p.min_p >= 0 && p.min_p <= 1)) bad_param("min_p", "must be between 0 and 1", p.min_p);
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0)
    bad_param("repetition_penalty", "must be more than 0 (1 is off)", p.repetition_penalty);
  if (!std::isfinite(p.presence_penalty)) bad_param("presence_penalty", "must be a finite number", p.presence_penalty);
}

// Index of the largest logit among the first n; NaN never wins; the lowest id wins a tie (as torch.argmax).
int32_t argmax(std::span<const float> logits, size_t n) {
  int32_t best = -1;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(logits[i])) continue;
    if (best < 0 || logits[i] > logits[size_t(best)]) best = int32_t(i);
  }
  return best < 0 ? 0 : best;
}

// Uniform in [0, 1) from the top 53 bits: the same on every standard library, unlike
// std::uniform_real_distribution, so a seed gives the same tokens everywhere.
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

}  // namespace

Sampler::Sampler(const SamplingParams& params, int32_t allowed_vocab)
    : params_(params), allowed_vocab_(allowed_vocab), rng_(params.seed) {
  if (allowed_vocab <= 0) bad_param("allowed_vocab", "must be positive", allowed_vocab);
  validate(params);
}

void Sampler::set_params(const SamplingParams& p) {
  validate(p);
  const bool reseed = p.seed != params_.seed;
  params_ = p;
  if (reseed) rng_.seed(p.seed);
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> context, size_t generated_from) {
  const size_t vocab = size_t(allowed_vocab_);
  if (logits.size() < vocab)
    throw EngineError("", "logits",
                      "row has " + std::to_string(logits.size()) + " entries, fewer than the vocabulary's " +
                          std::to_string(vocab));

  // Repetition penalty (transformers): every id of prompt and output, once, shrinks toward "less likely":
  // a positive logit is divided by the penalty, a negative one multiplied.
  const float rep = params_.repetition_penalty;
  if (rep != 1.0f) {
    seen_.assign(logits.size(), 0);
    for (const int32_t id : context) {
      if (id < 0 || size_t(id) >= logits.size() || seen_[size_t(id)]) continue;
      seen_[size_t(id)] = 1;
      float& x = logits[size_t(id)];
      x = x < 0 ? x * rep : x / rep;
    }
  }
  // Presence penalty (OpenAI/vLLM): a flat subtraction, once per distinct id of the generated part only.
  if (params_.presence_penalty != 0.0f) {
    seen_.assign(logits.size(), 0);
    for (size_t i = std::min(generated_from, context.size()); i < context.size(); ++i) {
      const int32_t id = context[i];
      if (id < 0 || size_t(id) >= logits.size() || seen_[size_t(id)]) continue;
      seen_[size_t(id)] = 1;
      logits[size_t(id)] -= params_.presence_penalty;
    }
  }

  if (params_.greedy || params_.temperature == 0.0f) return argmax(logits, vocab);

  if (params_.temperature != 1.0f)
    for (size_t i = 0; i < vocab; ++i) logits[i] /= params_.temperature;

  // Candidates: every allowed id that can still be drawn.
  scratch_.clear();
  for (size_t i = 0; i < vocab; ++i) {
    const float x = logits[i];
    if (!std::isnan(x) && x != -std::numeric_limits<float>::infinity()) scratch_.emplace_back(x, int32_t(i));
  }
  if (scratch_.empty()) return argmax(logits, vocab);
  // Higher logit first; the lower id first on a tie, so the order (and so the draw) is reproducible.
  const auto before = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };

  // Top-k as transformers does it: keep every logit ≥ the k-th largest (ties with it survive).
  const size_t k = size_t(params_.top_k);
  if (k > 0 && k < scratch_.size()) {
    std::nth_element(scratch_.begin(), scratch_.begin() + ptrdiff_t(k - 1), scratch_.end(), before);
    const float kth = scratch_[k - 1].first;
    scratch_.erase(std::partition(scratch_.begin(), scratch_.end(), [kth](const auto& c) { return c.first >= kth; }),
                   scratch_.end());
  }

  const bool needs_order = params_.top_p < 1.0f || params_.min_p > 0.0f;
  if (needs_order) std::sort(scratch_.begin(), scratch_.end(), before);

  // Unnormalised probabilities relative to the most likely candidate: w = exp(logit − max) ∈ (0, 1].
  float max_logit = scratch_[0].first;
  for (const auto& c : scratch_) max_logit = std::max(max_logit, c.first);
  weights_.resize(scratch_.size());
  double total = 0.0;
  for (size_t i = 0; i < scratch_.size(); ++i) {
    weights_[i] = std::exp(double(scratch_[i].first) - double(max_logit));
    total += weights_[i];
  }

  size_t keep = scratch_.size();
  // Top-p: the smallest prefix (most likely first) whose probability reaches top_p; at least one token.
  if (params_.top_p < 1.0f) {
    const double target = double(params_.top_p) * total;
    double cumulative = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += weights_[i];
      if (cumulative >= target) {
        keep = i + 1;
        break;
      }
    }
  }
  // Min-p: drop tokens less likely than min_p × the most likely one. The ratio does not depend on the
  // normalisation, so it is the same over the top-p survivors as in transformers. The first is kept.
  if (params_.min_p > 0.0f) {
    size_t i = 1;
    while (i < keep && weights_[i] >= double(params_.min_p)) ++i;
    keep = i;
  }

  double kept_total = 0.0;
  for (size_t i = 0; i < keep; ++i) kept_total += weights_[i];
  const double u = uniform01(rng_) * kept_total;
  double cumulative = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cumulative += weights_[i];
    if (u < cumulative) return scratch_[i].second;
  }
  return scratch_[keep - 1].second;  // u landed on the rounding edge
}

}  // namespace moe
