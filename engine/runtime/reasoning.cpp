#include "engine/runtime/reasoning.h"

#include <algorithm>

#include "engine/common/error.h"
#include "engine/tokenizer/tokenizer.h"

namespace moe {

ThinkingTokens thinking_tokens(const Tokenizer& tok, const std::string& early_stop_text,
                               const std::string& empty_close_text) {
  ThinkingTokens t;
  const auto open = tok.token_to_id("<think>");
  const auto close = tok.token_to_id("</think>");
  if (!open || !close) return t;
  t.open = *open;
  t.close = *close;
  t.early_stop = tok.encode(early_stop_text, false);
  t.empty_close = tok.encode(empty_close_text, false);
  if (std::find(t.early_stop.begin(), t.early_stop.end(), t.close) == t.early_stop.end())
    throw EngineError("", "early-stop text", "it must contain </think>, or the model could never leave thinking");
  if (std::find(t.empty_close.begin(), t.empty_close.end(), t.close) == t.empty_close.end())
    throw EngineError("", "empty think block", "it must contain </think>, or the model could never leave thinking");
  return t;
}

ReasoningController::ReasoningController(const ThinkingTokens& tokens, bool starts_inside)
    : t_(tokens), inside_(starts_inside && tokens.available()), opened_(inside_) {}

const std::vector<int32_t>& ReasoningController::cut(int budget, bool stop_now) const {
  static const std::vector<int32_t> none;
  if (!inside_ || !(stop_now || (budget >= 0 && used_ >= budget))) return none;
  return used_ == 0 ? t_.empty_close : t_.early_stop;
}

Phase ReasoningController::advance(int32_t id) {
  if (!t_.available()) return Phase::Answer;
  if (id == t_.open && !inside_) {
    inside_ = opened_ = true;
    used_ = 0;
    return Phase::Thinking;
  }
  if (!inside_) return Phase::Answer;
  if (id == t_.close) inside_ = false;
  else ++used_;
  return Phase::Thinking;
}

bool prompt_ends_inside_thinking(const std::vector<int32_t>& prompt, const ThinkingTokens& t) {
  if (!t.available()) return false;
  for (auto it = prompt.rbegin(); it != prompt.rend(); ++it) {
    if (*it == t.close) return false;
    if (*it == t.open) return true;
  }
  return false;
}

}  // namespace moe
