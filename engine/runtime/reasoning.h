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
//
// The markup is a token sequence: <think> and </think> are one token each, and OpenAI's Harmony format
// (GPT-OSS) thinks in its analysis channel, opened by <|channel|>analysis<|message|> and closed by
// <|end|><|start|>assistant<|channel|>final<|message|>, the final channel's header. The markup's tokens
// belong to the block (phase Thinking) and are reported as markers: text the chat does not show.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/hooks/step_observer.h"
#include "engine/tokenizer/chat_template.h"

namespace moe {

class Tokenizer;

// Qwen's docs form (SPECS.md §10.3): no stray "." after </think>.
inline constexpr const char* kQwenEarlyStopText =
    "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n</think>\n\n";

// The ids the controller needs, from the model's tokenizer.
struct ThinkingTokens {
  std::vector<int32_t> open;         // the markup that opens a think block: <think>
  std::vector<int32_t> close;        // and closes it: </think>
  std::vector<int32_t> early_stop;   // the early-stop text, ending with </think> and a blank line
  std::vector<int32_t> empty_close;  // the cut when nothing was thought yet ("\n\n</think>\n\n" for Qwen3)
  bool available() const { return !open.empty() && !close.empty(); }
};

// Encodes the markup and the texts. Each markup must begin with a token of its own ("<think>", or
// Harmony's "<|channel|>" and "<|end|>"); a tokenizer without them gives an unavailable set (the family
// has no thinking). Throws EngineError when a text does not contain the close markup (the model could
// never leave thinking). empty_close_text: ChatTemplate::empty_think_close() of the model's template.
ThinkingTokens thinking_tokens(const Tokenizer& tokenizer, const std::string& early_stop_text = kQwenEarlyStopText,
                               const std::string& empty_close_text = "\n\n</think>\n\n",
                               const ThinkMarkup& markup = {});

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
  // Returns its phase: Thinking for the open markup's last token, the thinking tokens and the close
  // markup; Answer otherwise. The close markup ends thinking at its first token: should the model go on
  // with something else (Harmony: another channel), that token is an answer token.
  Phase advance(int32_t id);
  // Whether the token just advanced is markup (a token of the open or close sequence; a token that
  // starts the open sequence outside a block counts although the sequence may break off after it).
  bool marker() const { return marker_; }

  bool inside() const { return inside_; }
  int thinking_tokens() const { return used_; }  // tokens after the open markup in the current/last block
  bool thought() const { return opened_; }       // a think block was opened (in prompt or output)

 private:
  const ThinkingTokens& t_;
  bool inside_ = false;
  bool opened_ = false;
  bool marker_ = false;
  int used_ = 0;
  size_t open_matched_ = 0, close_matched_ = 0;  // tokens of the markup seen so far
};

// True when the last open markup of the prompt has no close markup after it.
bool prompt_ends_inside_thinking(const std::vector<int32_t>& prompt, const ThinkingTokens& tokens);

}  // namespace moe
