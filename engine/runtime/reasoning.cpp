#include "engine/runtime/reasoning.h"

#include <algorithm>

#include "engine/common/error.h"
#include "engine/tokenizer/tokenizer.h"

namespace moe {

namespace {

// The markup's first token: up to its first '>' ("<think>", "<|channel|>").
std::string leading_token(const std::string& markup) {
  const size_t end = markup.find('>');
  return end == std::string::npos ? markup : markup.substr(0, end + 1);
}

bool contains_run(const std::vector<int32_t>& ids, const std::vector<int32_t>& run) {
  return std::search(ids.begin(), ids.end(), run.begin(), run.end()) != ids.end();
}

// Where the last occurrence of `run` in `ids` ends (0: none).
size_t last_end(const std::vector<int32_t>& ids, const std::vector<int32_t>& run) {
  const auto at = std::find_end(ids.begin(), ids.end(), run.begin(), run.end());
  return at == ids.end() ? 0 : size_t(at - ids.begin()) + run.size();
}

}  // namespace

ThinkingTokens thinking_tokens(const Tokenizer& tok, const std::string& early_stop_text,
                               const std::string& empty_close_text, const ThinkMarkup& markup) {
  ThinkingTokens t;
  if (!tok.token_to_id(leading_token(markup.open)) || !tok.token_to_id(leading_token(markup.close))) return t;
  t.open = tok.encode(markup.open, false);
  t.close = tok.encode(markup.close, false);
  t.early_stop = tok.encode(early_stop_text, false);
  t.empty_close = tok.encode(empty_close_text, false);
  if (!contains_run(t.early_stop, t.close))
    throw EngineError("", "early-stop text", "it must contain " + markup.close + ", or the model could never leave thinking");
  if (!contains_run(t.empty_close, t.close))
    throw EngineError("", "empty think block", "it must contain " + markup.close + ", or the model could never leave thinking");
  return t;
}

ReasoningController::ReasoningController(const ThinkingTokens& tokens, bool starts_inside)
    : t_(tokens), inside_(starts_inside && tokens.available()), opened_(inside_) {}

const std::vector<int32_t>& ReasoningController::cut(int budget, bool stop_now) const {
  static const std::vector<int32_t> none;
  if (!inside_ || close_matched_ > 0 || !(stop_now || (budget >= 0 && used_ >= budget))) return none;
  return used_ == 0 ? t_.empty_close : t_.early_stop;
}

Phase ReasoningController::advance(int32_t id) {
  marker_ = false;
  if (!t_.available()) return Phase::Answer;
  if (!inside_) {
    if (id != t_.open[open_matched_]) open_matched_ = 0;  // broke off (it may start again here)
    if (id != t_.open[open_matched_]) return Phase::Answer;
    marker_ = true;
    if (++open_matched_ < t_.open.size()) return Phase::Answer;
    open_matched_ = 0;
    inside_ = opened_ = true;
    used_ = 0;
    return Phase::Thinking;
  }
  if (close_matched_ > 0 || id == t_.close[0]) {
    if (id != t_.close[close_matched_]) {  // the model went on with something else: thinking is over
      close_matched_ = 0;
      inside_ = false;
      return Phase::Answer;
    }
    marker_ = true;
    if (++close_matched_ == t_.close.size()) {
      close_matched_ = 0;
      inside_ = false;
    }
    return Phase::Thinking;
  }
  ++used_;
  return Phase::Thinking;
}

bool prompt_ends_inside_thinking(const std::vector<int32_t>& prompt, const ThinkingTokens& t) {
  if (!t.available()) return false;
  const size_t open = last_end(prompt, t.open);
  return open > 0 && open > last_end(prompt, t.close);
}

}  // namespace moe
