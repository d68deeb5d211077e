#pragma once
// A Session runs one conversation on one model: it owns the backend and its KV cache, keeps the tokens
// that are in the cache (so the next turn only prefills what is new), and generates token by token
// with a streaming callback. stop() may be called from any thread.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/hooks/interventions.h"
#include "engine/runtime/reasoning.h"
#include "engine/runtime/sampler.h"

namespace moe {

class Model;

enum class StopReason { EndOfSequence, MaxTokens, StoppedByUser, ContextFull };
const char* stop_reason_name(StopReason r);

struct GenerateOptions {
  int max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;  // ids that end generation (not emitted as text; reported in the result)
  int32_t allowed_vocab = 0;      // ids ≥ this are never sampled (the tokenizer size); 0 = the model vocab
  std::vector<Phase> prompt_phases;  // phase of each prompt token (tag_prompt_phases); empty = Other
  // Reasoning control: with thinking tokens, generated tokens are tagged thinking/answer and the budget
  // in `control` (any thread may change it while generating) cuts thinking. Null: every generated token
  // is an answer token and nothing is injected.
  const ThinkingTokens* thinking = nullptr;
  ThinkingControl* control = nullptr;  // null = unlimited budget
};

struct TokenEvent {
  int32_t id;
  int index;          // 0 for the first generated token
  double elapsed_s;   // since generate() was called
  Phase phase = Phase::Answer;
  bool forced = false;  // injected by the reasoning controller, not sampled
  bool marker = false;  // think markup (<think>, </think>, Harmony's channel headers): not shown as text
};

struct GenerationResult {
  std::vector<int32_t> tokens;   // generated ids (the stop id, if any, included last)
  StopReason reason = StopReason::MaxTokens;
  int prompt_tokens = 0;         // tokens of the prompt
  int reused_tokens = 0;         // of them, found in the cache from the previous turn
  double prefill_s = 0;          // time to the first token's logits (prefill)
  double decode_s = 0;           // time of the decode steps after it
  std::vector<Phase> phases;     // phase of each generated token
  std::vector<uint8_t> forced;   // 1 for each injected token
  std::vector<ForcedStop> forced_stops;
  int thinking_tokens = 0;       // generated tokens in the thinking phase (forced ones included)
  double thinking_s = 0;         // time spent generating them
};

class Session {
 public:
  Session(const Model& model, const BackendOptions& options);
  // For a backend made elsewhere (e.g. CUDA).
  Session(const Model& model, std::unique_ptr<Backend> backend);

  // Feeds `prompt` (the whole conversation so far; the cached prefix is reused) and generates.
  // on_token is called for each generated token, on this thread; return false from it to stop.
  GenerationResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                            const std::function<bool(const TokenEvent&)>& on_token = {},
                            StepObserver* observer = nullptr);

  // Logits of every position of `tokens` after clearing the cache ([T, vocab]); for tests and scoring.
  std::vector<float> score(const std::vector<int32_t>& tokens, StepObserver* observer = nullptr);

  void stop() { stop_requested_.store(true); }  // thread-safe; the loop checks it every step
  void reset();                                  // forget the cache
  // Router interventions from the next step on (validated: throws EngineError naming the field).
  void set_interventions(const Interventions& interventions);
  const Interventions& interventions() const { return interventions_; }
  Backend& backend() { return *backend_; }
  // Which backend runs, and why when it is not the one asked for (make_backend).
  const std::string& device_note() const { return device_note_; }
  const Model& model() const { return model_; }
  const std::vector<int32_t>& cached_tokens() const { return cached_; }

 private:
  const Model& model_;
  std::unique_ptr<Backend> backend_;
  std::string device_note_;
  std::vector<int32_t> cached_;
  std::vector<uint8_t> cached_phases_;  // Phase of each cached token
  Interventions interventions_;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace moe
