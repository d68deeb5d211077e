#pragma once
// The interface every backend implements: one forward entry that runs a chunk of tokens through the
// whole model and appends their keys and values to the backend's KV cache. The CPU backend is the
// reference; the CUDA backend (engine/backend/cuda) implements the same contract.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "engine/hooks/interventions.h"
#include "engine/hooks/step_observer.h"

namespace moe {

class Model;

struct BackendOptions {
  int threads = 0;          // CPU threads; 0 = all cores
  int max_context = 4096;   // KV cache capacity in tokens (clamped to the model's max positions)
  int prefill_chunk = 64;   // tokens per forward call during prefill
};

// Per-token labels the runtime knows and the backend copies into the step records (same length as the
// tokens of forward(), or empty).
struct StepTags {
  std::span<const uint8_t> phases;  // moe::Phase
  std::span<const uint8_t> forced;  // 1 = injected by the runtime
  bool generated = false;           // the tokens are output the runtime produced (decode), not prompt
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string describe() const = 0;  // e.g. "CPU, 2 threads, avx2+fma+f16c"

  // Runs tokens at positions [cached(), cached()+T) and appends them to the cache, in steps of at most
  // prefill_chunk tokens. Before each step it asks the observer (if any) what to record, and hands the
  // StepRecord over after the step (step_observer.h).
  // logits: when all_logits, [T, vocab]; else [vocab] for the last token only. May be null (no head).
  // Throws EngineError when the context would overflow the cache.
  virtual void forward(std::span<const int32_t> tokens, bool all_logits, float* logits, StepObserver* observer,
                       StepTags tags = {}) = 0;

  // Router interventions for the following steps (validated; throws EngineError naming the field).
  virtual void set_interventions(const Interventions& interventions) = 0;

  virtual int cached() const = 0;             // tokens in the KV cache
  virtual void truncate(int n_tokens) = 0;    // keep only the first n tokens (n ≤ cached())
  virtual int capacity() const = 0;           // max tokens
  virtual size_t kv_cache_bytes_allocated() const = 0;
  virtual size_t kv_cache_bytes_per_token() const = 0;
  // Bytes of the backend's other buffers (activations, router and attention scratch, the step record):
  // the workspace of the memory view. Read it on the thread that runs forward().
  virtual size_t workspace_bytes() const = 0;
};

// The CPU backend (always available).
std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

}  // namespace moe
