#pragma once
// The interface every backend implements: one forward entry that runs a chunk of tokens through the
// whole model and appends their keys and values to the backend's KV cache. The CPU backend is the
// reference; the CUDA backend (engine/backend/cuda) implements the same contract.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/common/dtype.h"
#include "engine/hooks/interventions.h"
#include "engine/hooks/step_observer.h"

namespace moe {

class Model;

// Where the forward pass runs. Auto: the GPU when one works, else the CPU (make_backend says which).
enum class Device { Auto, Cpu, Cuda };
const char* device_name(Device device);                   // "auto", "cpu", "cuda"
bool parse_device(const std::string& name, Device& out);  // false for anything else
// The KV cache dtypes a backend may be asked for: "f32" or "bf16" (false for anything else).
bool parse_kv_dtype(const std::string& name, DType& out);

struct BackendOptions {
  int threads = 0;          // CPU threads; 0 = all cores
  int max_context = 4096;   // KV cache capacity in tokens (clamped to the model's max positions)
  int prefill_chunk = 64;   // tokens per forward call during prefill
  Device device = Device::Cpu;
  int cuda_device = 0;      // which GPU (CUDA device index)
  // The GPU's KV cache: F32 gives the CPU backend's numbers (the parity tests' tolerances); BF16 halves
  // the cache's bytes and its share of decode traffic. The CPU backend always caches F32.
  DType kv_dtype = DType::F32;
  // Called while a GPU backend uploads the weights: (bytes done, bytes in all). Returning false cancels
  // the upload (the backend's constructor then throws EngineError with field "cancelled").
  std::function<bool(size_t, size_t)> upload_progress = {};
};

// Memory the backend holds, by what it holds (the memory view draws this). The CPU backend reports its
// KV cache and workspace (the weights stay in the mapped files); the CUDA backend every allocation of
// its allocator, plus what the device has and what other processes use.
struct MemoryUse {
  std::string part;   // "attention", "router", "routed experts", "shared experts", "dense mlp", "norms",
                      // "embeddings", "head", "kv cache", "activations", "workspace"
  int layer = -1;     // for weights: the layer (-1: not per layer)
  size_t bytes = 0;
};
struct DeviceMemory {
  std::string device;           // "cpu" or the GPU's name
  size_t total_bytes = 0;       // the device's memory (0: unknown)
  size_t free_bytes = 0;        // free now (0: unknown)
  size_t other_bytes = 0;       // used by other processes and the driver (GPU only)
  size_t kv_used_bytes = 0;     // cached tokens × bytes per token
  std::vector<MemoryUse> uses;  // this backend's allocations
  size_t bytes_of(const std::string& part) const;  // Σ over uses of that part
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
  // Everything above by part, and the device's totals (cheap: no synchronisation).
  virtual DeviceMemory device_memory() const;
  virtual bool is_gpu() const { return false; }
};

// Throws EngineError when tokens would overflow the cache (field "context") or an id is outside the
// vocabulary (field "token id"); every backend's forward() starts with it.
void check_forward_input(std::span<const int32_t> tokens, int cached, int capacity, int vocab_size);

// The CPU backend (always available).
std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

// The backend options.device asks for. A GPU that is asked for (or found, with Auto) but cannot be used
// (no device, a driver too old, out of memory while loading) falls back to the CPU; `note` says which
// backend runs and why, in one line for the user ("CUDA: NVIDIA H200 (sm_90)" or "no CUDA device
// found; running on the CPU"). A cancelled upload is not a failure to fall back from: it throws.
struct MadeBackend {
  std::unique_ptr<Backend> backend;
  std::string note;
};
MadeBackend make_backend(const Model& model, const BackendOptions& options);

}  // namespace moe
