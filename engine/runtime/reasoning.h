#pragma once
// The reasoning controller (DESIGN.md, "Thinking control"; SPECS.md §10.3): follows <think>…</think>
// token by token inside the generation loop, counts the thinking tokens, and cuts thinking when it
// reaches a budget that other threads may change while the model thinks.
//
// At the budget it force-feeds the early-stop text (Qwen's documented text by default, ending in
// "</think>\n\n") instead of sampling; the model then writes its answer. A cut before any thinking
// token (budget 0) feeds only what closes the template's own empty think block ("\n\n</think>\n\n" for
// Qwen3, "</think>" for Kimi-K2-Thinking), so the block reads exactly like it. A model that closes its think
// block itself gets nothing inserted.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/hooks/step_observer.h"

namespace moe {

class Tokenizer;

// Qwen's docs form (SPECS.md §10.3): no stray "." after </think>.
inline constexpr const char* kQwenEarlyStopText =
    "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n</think>\n\n";

// The ids the controller needs, from the model's tokenizer.
struct ThinkingTokens {
  int32_t open = -1;                // <think>
  int32_t close = -1;               // </think>
  std::vector<int32_t> early_stop;  // the early-stop text, ending with </think> and a blank line
  std::vector<int32_t> empty_close; // the cut when nothing was thought yet ("\n\n</think>\n\n" for Qwen3)
  bool available() const { return open >= 0 && close >= 0; }
};

// Looks up <think> and </think> and encodes the texts. A tokenizer without them gives an unavailable
// set (the family has no thinking). Throws EngineError when a text does not contain </think> (the model
// could never leave thinking). empty_close_text: ChatTemplate::empty_think_close() of the model's template.
ThinkingTokens thinking_tokens(const Tokenizer& tokenizer, const std::string& early_stop_text = kQwenEarlyStopText,
                               const std::string& empty_close_text = "\n\n</think>\n\n");

// Live controls, written by any thread, read by the generation loop once per step.
struct ThinkingControl {
  std::atomic<int> budget{-1};         // thinking tokens allowed; negative = unlimited
  std::atomic<bool> stop_now{false};   // "stop thinking now": cut at the next step (cleared when used)
};

struct ForcedStop {
  int position = 0;         // sequence position of the first injected token
  int thinking_tokens = 0;  // thinking tokens before the cut
  int budget = -1;          // the budget in force; -1 when cut by "stop thinking now"
};

class ReasoningController {
 public:
  // starts_inside: the prompt already opened a think block (DeepSeek-R1 and Qwen3-2507-Thinking style).
  ReasoningController(const ThinkingTokens& tokens, bool starts_inside);

  // Before sampling: the tokens to inject instead (empty: sample normally). `budget` < 0 = unlimited.
  const std::vector<int32_t>& cut(int budget, bool stop_now) const;
  // Every token that enters the output (sampled or injected) goes through here, in order.
  // Returns its phase: Thinking for <think>, the thinking tokens and </think>; Answer otherwise.
  Phase advance(int32_t id);

  bool inside() const { return inside_; }
  int thinking_tokens() const { return used_; }  // tokens after <think> in the current/last block
  bool thought() const { return opened_; }       // a think block was opened (in prompt or output)

 private:
  const ThinkingTokens& t_;
  bool inside_ = false;
  bool opened_ = false;
  int used_ = 0;
};

// True when the last <think> of the prompt has no </think> after it.
bool prompt_ends_inside_thinking(const std::vector<int32_t>& prompt, const ThinkingTokens& tokens);

}  // namespace moe
