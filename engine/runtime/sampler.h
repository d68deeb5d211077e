#pragma once
// Picking the next token from the logits. Order as in transformers' logits processors:
// repetition penalty → presence penalty → temperature → top-k → top-p → min-p → draw (SPECS.md §10.4).
#include <cstdint>
#include <string>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace moe {

struct SamplingParams {
  bool greedy = true;               // argmax; the other fields are then ignored except the penalties
  float temperature = 1.0f;
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // HF: over prompt and generated ids; logit>0 → /p, else ·p
  float presence_penalty = 0.0f;    // OpenAI/vLLM: minus this once per id seen in the generated output
  uint64_t seed = 0;

  // A JSON object of every field (trace segment settings, chat sessions), e.g.
  // {"greedy": false, "temperature": 0.6, ...}.
  std::string to_json() const;
};

// Defaults a checkpoint ships in generation_config.json.
struct GenerationConfig {
  SamplingParams sampling;          // do_sample=false (or absent) → greedy
  std::vector<int32_t> eos_ids;     // eos_token_id, an int or a list
  std::optional<int32_t> bos_id;
  std::optional<int32_t> pad_id;
  int max_new_tokens = 0;           // 0 when not given
};

// Reads generation_config.json in the folder; an absent file gives the defaults above. Errors name the
// file and the field. Keys the file leaves out take transformers' GenerationConfig defaults (notably
// top_k 50 when not given); temperature 0 with do_sample true means greedy.
GenerationConfig load_generation_config(const std::filesystem::path& model_dir);

class Sampler {
 public:
  // allowed_vocab: ids at or past it (padded embedding rows) are never chosen.
  Sampler(const SamplingParams& params, int32_t allowed_vocab);

  // logits: one row of the model's output (size ≥ allowed_vocab); modified in place (penalties,
  // temperature). context: every id so far (prompt then generated); generated_from: index in context
  // where generation started (presence penalty looks only at generated ids).
  int32_t sample(std::span<float> logits, std::span<const int32_t> context, size_t generated_from);

  const SamplingParams& params() const { return params_; }
  // Validates (EngineError naming the field on nonsense such as top_p 2). The generator is reseeded only
  // when the seed changes, so changing temperature mid-generation does not replay earlier draws.
  void set_params(const SamplingParams& p);

 private:
  SamplingParams params_;
  int32_t allowed_vocab_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> scratch_;
  std::vector<double> weights_;  // exp(logit - max) of the candidates in scratch_
  std::vector<uint8_t> seen_;    // per vocabulary id: penalised already in this call
};

}  // namespace moe
