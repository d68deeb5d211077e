#pragma once
// What every view of the workbench reads: one value snapshot of the session, handed out by the app at
// most ~30 times a second (DESIGN.md "Threads"). Views never call the engine; everything they show is
// in here. The parts are shared_ptrs to immutable data, so copying a WorkbenchData costs a few
// reference counts and a view may keep the one it was given for as long as it likes.
//
// Rows: the trace holds one row per token the model ran, in sequence order (inspect/trace.h). Chat
// tokens point at their trace row (ChatToken::row) once the token has run; a token that ended a turn
// (the stop token, the last one at max_tokens) never runs, so its row stays -1.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/hooks/step_observer.h"
#include "inspect/trace.h"

namespace moe::views {

// The model card: what the loaded model is, and what it costs. Filled by the app from the engine.
struct ModelFacts {
  std::string name;            // folder name, e.g. "moe"
  std::string path;            // folder on disk
  std::string family;          // "Qwen3-MoE"
  std::string model_type;      // config.json model_type
  int layers = 0;
  int moe_layers = 0;
  std::vector<int> moe_layer_indices;  // layer index of each MoE layer
  int experts = 0;             // routed experts per MoE layer (0: dense)
  int top_k = 0;
  int shared_experts_ffn = 0;  // width of the shared expert (0: none)
  int heads = 0, kv_heads = 0, head_dim = 0, hidden = 0, vocab = 0;
  // Multi-head latent attention (DeepSeek): the cached latent and shared RoPE key widths, and each head's
  // value width; latent_kv 0 for ordinary attention.
  int latent_kv = 0, latent_rope = 0, v_head_dim = 0;
  // GPT-OSS: a sink logit per head; sliding_window > 0 on windowed_layers of the layers (the rest see all).
  bool attention_sinks = false;
  int sliding_window = 0, windowed_layers = 0;
  int64_t total_params = 0;
  int64_t active_params = 0;          // per token at the checkpoint's top-k
  int64_t params_per_expert = 0;      // one routed expert of one layer
  int64_t always_active_params = 0;   // active_params minus the routed experts a token selects
  // Weights by part, bytes as stored.
  uint64_t attention_bytes = 0, routed_expert_bytes = 0, shared_expert_bytes = 0, embedding_bytes = 0,
           other_bytes = 0;  // other: dense MLPs, routers, norms, untied head
  uint64_t weight_bytes() const {
    return attention_bytes + routed_expert_bytes + shared_expert_bytes + embedding_bytes + other_bytes;
  }
  uint64_t kv_bytes_per_token = 0;
  int context = 0;                    // tokens the KV cache holds
  uint64_t memory_needed_bytes = 0;   // weights + a full KV cache
  uint64_t memory_available_bytes = 0;  // RAM (CPU) or free device memory (GPU)
  std::string backend;                // "CPU, 2 threads, avx2+fma+f16c"
  std::string chat_format;            // "Qwen3 (thinking)"
  bool supports_thinking = false;
  bool always_thinks = false;         // no switch: no-think cuts the block at once (DeepSeek-R1, Kimi-K2-Thinking)
};

// One generated token as the chat shows it.
struct ChatToken {
  std::string piece;        // its text (may be part of a UTF-8 character; the chat joins pieces)
  int32_t id = 0;
  Phase phase = Phase::Answer;  // Thinking or Answer
  bool forced = false;      // injected by the thinking budget
  int64_t row = -1;         // row in the trace, -1 until it has run (or when it never runs)
  int position = -1;        // its position in the sequence (the KV cache slot it takes)
  double elapsed_s = 0;     // since the turn started
};

// One exchange: the user's message and the assistant's reply as it streams.
struct ChatTurn {
  std::string user_text;
  std::string mode;               // "think", "no-think", "auto"
  bool thinking = false;          // whether the turn thinks (the effective mode)
  int segment = -1;               // trace segment of this turn
  int64_t first_row = -1;         // trace row of the turn's first prompt token that ran
  std::vector<ChatToken> tokens;  // generated, in order
  int thinking_budget = -1;       // the budget in force now (-1: none); changes live
  int thinking_tokens = 0;
  double thinking_s = 0;
  std::vector<inspect::ForcedStopRecord> forced_stops;
  bool finished = false;
  std::string stop_reason;        // stop_reason_name(): "eos", "max_tokens", "stopped", "context_full"; or "error: …"
  double time_to_first_token_s = 0;
  double prefill_s = 0, decode_s = 0;
  int prompt_tokens = 0, reused_tokens = 0;
};

// Memory at one moment (the app samples it while generating): what the backend holds, by the memory
// view's parts (the app groups the backend's finer parts into these, app/gui/memory_sample.h), and what
// the device has.
struct MemorySample {
  double t_s = 0;                 // seconds since the session started
  uint64_t kv_used_bytes = 0;     // tokens in the cache × bytes per token
  uint64_t kv_allocated_bytes = 0;
  uint64_t workspace_bytes = 0;   // scratch: router and attention buffers, logits, the step record; on the
                                  // CPU the activations too (its backend does not tell them apart)
  uint64_t activation_bytes = 0;  // the hidden states of a step (a GPU backend's own allocation)
  // The weights the backend allocated. Only a GPU backend has them: the CPU reads the weights in place
  // from the mapped files, so for it these stay 0 and the view takes the weights from ModelFacts.
  uint64_t embedding_bytes = 0, attention_bytes = 0, routed_expert_bytes = 0, shared_expert_bytes = 0,
           other_weight_bytes = 0;  // other: routers, dense MLPs, norms, the untied head
  uint64_t process_rss_bytes = 0; // resident set of the whole process, host memory (0: unknown)
  // Where the bytes above live.
  bool gpu = false;               // they are device (GPU) memory; otherwise the host's
  std::string device;             // "cpu" or the GPU's name ("": not sampled from a backend)
  uint64_t device_total_bytes = 0;  // the GPU's memory (0: unknown; the CPU backend does not say)
  uint64_t device_free_bytes = 0;   // free on the GPU now (0: unknown)
  uint64_t other_process_bytes = 0; // GPU memory held by other processes and the driver

  uint64_t weight_bytes() const {
    return embedding_bytes + attention_bytes + routed_expert_bytes + shared_expert_bytes + other_weight_bytes;
  }
};

struct WorkbenchData {
  std::shared_ptr<const ModelFacts> model;               // null: no model loaded
  std::shared_ptr<const inspect::Trace> trace;           // never null (may be empty)
  std::shared_ptr<const std::vector<std::string>> token_text;  // decoded text per trace row (may be shorter)
  std::shared_ptr<const std::vector<ChatTurn>> chat;     // never null
  std::shared_ptr<const std::vector<MemorySample>> memory;  // never null
  uint64_t version = 0;  // grows with every change

  // Empty data (no model): every pointer that must not be null is set.
  static WorkbenchData empty();
  // The text of a trace row ("" when unknown).
  const std::string& text_of(int64_t row) const;
};

}  // namespace moe::views
