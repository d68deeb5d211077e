#include "engine/runtime/conversation.h"

#include <algorithm>

#include "engine/common/error.h"
#include "engine/model/model.h"
#include "engine/runtime/phase_tagger.h"

namespace moe {

const char* thinking_mode_name(ThinkingMode mode) {
  switch (mode) {
    case ThinkingMode::Think: return "think";
    case ThinkingMode::NoThink: return "no-think";
    case ThinkingMode::Auto: return "auto";
  }
  return "?";
}

std::optional<ThinkingMode> parse_thinking_mode(std::string_view name) {
  for (ThinkingMode m : {ThinkingMode::Think, ThinkingMode::NoThink, ThinkingMode::Auto})
    if (name == thinking_mode_name(m)) return m;
  return std::nullopt;
}

std::string render_for_mode(const ChatTemplate& chat, const std::vector<ChatMessage>& messages, ThinkingMode mode) {
  std::optional<bool> enable_thinking;
  if (mode == ThinkingMode::Think) enable_thinking = true;
  if (mode == ThinkingMode::NoThink) enable_thinking = false;
  return chat.render(messages, true, enable_thinking);
}

SamplingParams recommended_sampling(const ChatTemplate& chat, const GenerationConfig& gen, bool thinking) {
  if (chat.format() != ChatFormat::Qwen3) return gen.sampling;
  SamplingParams p = gen.sampling;  // keeps the seed and penalties the checkpoint sets
  p.greedy = false;
  p.temperature = thinking ? 0.6f : 0.7f;
  p.top_p = thinking ? 0.95f : 0.8f;
  p.top_k = 20;
  p.min_p = 0.0f;
  return p;
}

namespace {

// The early-stop text is written for <think> blocks (Qwen's ends with </think>); a format with other markup
// (Harmony) is cut with its own close markup alone.
std::string early_stop_text_for(const ChatTemplate& chat, const std::string& text) {
  return chat.think_markup().close == ThinkMarkup{}.close ? text : chat.empty_think_close();
}

}  // namespace

Conversation::Conversation(const Model& model, const BackendOptions& options, const std::string& early_stop_text)
    : model_(model),
      session_(model, options),
      tok_(Tokenizer::load(model.dir())),
      chat_(ChatTemplate::from_model_dir(model.dir())),
      gen_(load_generation_config(model.dir())),
      thinking_(chat_.supports_thinking()
                    ? moe::thinking_tokens(*tok_, early_stop_text_for(chat_, early_stop_text), chat_.empty_think_close(),
                                           chat_.think_markup())
                    : ThinkingTokens{}) {}

std::vector<int32_t> Conversation::stop_ids() const {
  std::vector<int32_t> ids = gen_.eos_ids;
  for (int32_t e : model_.spec().eos_ids) ids.push_back(e);
  for (int32_t e : tok_->eos_ids()) ids.push_back(e);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

std::vector<ChatMessage> Conversation::with_user(const std::string& user_text) const {
  std::vector<ChatMessage> msgs;
  if (!system_.empty()) msgs.push_back({"system", system_});
  msgs.insert(msgs.end(), messages_.begin(), messages_.end());
  msgs.push_back({"user", user_text});
  return msgs;
}

bool Conversation::will_think(ThinkingMode mode, const std::string& user_text) const {
  if (!supports_thinking()) return false;
  if (mode != ThinkingMode::Auto) return mode == ThinkingMode::Think;
  return chat_.soft_switch(with_user(user_text)).value_or(chat_.thinks_by_default());
}

TurnResult Conversation::send(const std::string& user_text, const TurnOptions& opt,
                              const std::function<bool(const TokenEvent&, const std::string&)>& on_token,
                              StepObserver* observer) {
  if (opt.mode != ThinkingMode::Auto && !supports_thinking())
    throw EngineError(model_.dir() / "tokenizer_config.json", "chat_template",
                      std::string("this model's chat template (") + chat_.format_name() +
                          ") has no thinking; use mode auto");
  TurnResult r;
  r.effective_thinking = will_think(opt.mode, user_text);
  r.prompt_text = render_for_mode(chat_, with_user(user_text), opt.mode);
  if (supports_thinking()) r.prompt_text += chat_.thinking_opener();  // Harmony: the analysis channel's header
  r.prompt_ids = tok_->encode(r.prompt_text, false);
  r.prompt_phases = tag_prompt_phases(r.prompt_ids, *tok_);
  r.sampling = opt.sampling ? *opt.sampling : recommended_sampling(chat_, gen_, r.effective_thinking);

  GenerateOptions g;
  g.max_new_tokens = opt.max_new_tokens;
  g.sampling = r.sampling;
  g.stop_ids = stop_ids();
  g.allowed_vocab = tok_->size();
  g.prompt_phases = r.prompt_phases;
  if (supports_thinking()) {
    g.thinking = &thinking_;
    g.control = &control_;
    // A model that always thinks cannot be told not to; it is cut before its first thinking token.
    const bool cut_at_once = opt.mode == ThinkingMode::NoThink && chat_.always_thinks();
    control_.budget.store(cut_at_once ? 0 : opt.thinking_budget);
  }
  StreamDecoder stream(*tok_, true);
  std::string text;
  auto each = [&](const TokenEvent& ev) {
    std::string piece = stream.push(ev.id);
    if (std::find(g.stop_ids.begin(), g.stop_ids.end(), ev.id) != g.stop_ids.end() && !ev.forced) piece.clear();
    text += piece;
    if (!ev.marker) (ev.phase == Phase::Thinking ? r.thinking_text : r.answer_text) += piece;
    // The callback sees markup as what it is (<think>, Harmony's <|end|> … <|message|>), as the chat shows it,
    // not as the text its special tokens decode to.
    return on_token ? on_token(ev, ev.marker ? tok_->token_bytes(ev.id, -1) : piece) : true;
  };
  r.generation = session_.generate(r.prompt_ids, g, each, observer);
  const std::string tail = stream.flush();
  text += tail;
  r.answer_text += tail;
  // Harmony's history holds the final channel only (the template never renders an earlier turn's analysis), and
  // the text here has lost the channel markup (special tokens), so the answer is what goes back.
  const std::string history = chat_.format() == ChatFormat::Harmony ? r.answer_text : text;
  // Trim the blank lines the template puts around the blocks.
  auto trim = [](std::string& s) {
    const size_t b = s.find_first_not_of('\n');
    const size_t e = s.find_last_not_of('\n');
    s = b == std::string::npos ? "" : s.substr(b, e - b + 1);
  };
  trim(r.thinking_text);
  trim(r.answer_text);
  messages_.push_back({"user", user_text});
  messages_.push_back({"assistant", history});
  return r;
}

}  // namespace moe
