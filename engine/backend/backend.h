#pragma once
// The interface every backend implements: one forward entry that runs a chunk of tokens through the
// whole model and appends their keys and values to the backend's KV cache. The CPU backend is the
// reference; the CUDA backend (engine/backend/cuda) implements the same contract.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "engine/hooks/step_observer.h"

namespace moe {

class Model;

struct BackendOptions {
  int threads = 0;          // CPU threads; 0 = all cores
  int max_context = 4096;   // KV cache capacity in tokens (clamped to the model's max positions)
  int prefill_chunk = 64;   // tokens per forward call during prefill
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string describe() const = 0;  // e.g. "CPU, 2 threads, avx2+fma+f16c"

  // Runs tokens at positions [cached(), cached()+T) and appends them to the cache.
  // logits: when all_logits, [T, vocab]; else [vocab] for the last token only. May be null (no head).
  // Throws EngineError when the context would overflow the cache.
  virtual void forward(std::span<const int32_t> tokens, bool all_logits, float* logits, StepObserver* observer) = 0;

  virtual int cached() const = 0;             // tokens in the KV cache
  virtual void truncate(int n_tokens) = 0;    // keep only the first n tokens (n ≤ cached())
  virtual int capacity() const = 0;           // max tokens
  virtual size_t kv_cache_bytes_allocated() const = 0;
  virtual size_t kv_cache_bytes_per_token() const = 0;
};

// The CPU backend (always available).
std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

}  // namespace moe
