// load_generation_config (declared in sampler.h): a checkpoint's generation_config.json, read with
// transformers' meaning of every key.
#include <cmath>
#include <limits>
#include <string>

#include "engine/common/error.h"
#include "engine/formats/json_file.h"
#include "engine/runtime/sampler.h"

namespace moe {

namespace {

// transformers.GenerationConfig's value for top_k when the file does not give one.
constexpr int64_t kTransformersDefaultTopK = 50;

std::string number_text(double v) {
  std::string s = std::to_string(v);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

float number_in(const JsonFields& f, const std::string& key, double fallback, double lo, double hi,
                const std::string& rule) {
  const double v = f.number_or(key, fallback);
  if (!(v >= lo && v <= hi)) throw EngineError(f.file(), key, rule + ", got " + number_text(v));
  return float(v);
}

int32_t token_id(const JsonFields& f, const std::string& key, int64_t v) {
  if (v < 0 || v > std::numeric_limits<int32_t>::max())
    throw EngineError(f.file(), key, "expected a token id (0 or more), got " + std::to_string(v));
  return int32_t(v);
}

std::optional<int32_t> optional_token_id(const JsonFields& f, const std::string& key) {
  if (!f.has(key)) return std::nullopt;
  // A few checkpoints write a list here as for eos_token_id; the first entry is the one used.
  const std::vector<int64_t> ids = f.integer_list_or_empty(key);
  if (ids.empty()) return std::nullopt;
  return token_id(f, key, ids.front());
}

}  // namespace

GenerationConfig load_generation_config(const std::filesystem::path& model_dir) {
  GenerationConfig cfg;
  const std::filesystem::path path = model_dir / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return cfg;

  const JsonFields f = JsonFields::load(path);
  SamplingParams& s = cfg.sampling;

  s.temperature = number_in(f, "temperature", 1.0, 0.0, 1e6, "must be 0 or more");
  // transformers refuses temperature 0 with sampling; we read it as "always the most likely token".
  s.greedy = !f.boolean_or("do_sample", false) || s.temperature == 0.0f;
  const int64_t top_k = f.integer_or("top_k", kTransformersDefaultTopK);
  if (top_k < 0 || top_k > std::numeric_limits<int>::max())
    throw EngineError(f.file(), "top_k", "must be 0 (off) or more, got " + std::to_string(top_k));
  s.top_k = int(top_k);
  s.top_p = number_in(f, "top_p", 1.0, 0.0, 1.0, "must be between 0 and 1");
  s.min_p = number_in(f, "min_p", 0.0, 0.0, 1.0, "must be between 0 and 1");
  s.repetition_penalty = number_in(f, "repetition_penalty", 1.0, std::numeric_limits<double>::min(), 1e6,
                                   "must be more than 0 (1 is off)");
  s.presence_penalty = number_in(f, "presence_penalty", 0.0, -1e6, 1e6, "must be a finite number");

  for (const int64_t id : f.integer_list_or_empty("eos_token_id")) cfg.eos_ids.push_back(token_id(f, "eos_token_id", id));
  cfg.bos_id = optional_token_id(f, "bos_token_id");
  cfg.pad_id = optional_token_id(f, "pad_token_id");

  const int64_t max_new = f.integer_or("max_new_tokens", 0);
  if (max_new < 0 || max_new > std::numeric_limits<int>::max())
    throw EngineError(f.file(), "max_new_tokens", "must be 0 or more, got " + std::to_string(max_new));
  cfg.max_new_tokens = int(max_new);
  return cfg;
}

}  // namespace moe
