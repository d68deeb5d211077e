#include "engine/runtime/session.h"

#include <algorithm>
#include <chrono>

#include "engine/common/error.h"
#include "engine/model/model.h"

namespace moe {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::EndOfSequence: return "eos";
    case StopReason::MaxTokens: return "max_tokens";
    case StopReason::StoppedByUser: return "stopped";
    case StopReason::ContextFull: return "context_full";
  }
  return "?";
}

Session::Session(const Model& model, const BackendOptions& options) : model_(model) {
  MadeBackend made = make_backend(model, options);
  backend_ = std::move(made.backend);
  device_note_ = std::move(made.note);
}

Session::Session(const Model& model, std::unique_ptr<Backend> backend)
    : model_(model), backend_(std::move(backend)), device_note_(backend_->describe()) {}

void Session::reset() {
  backend_->truncate(0);
  cached_.clear();
  cached_phases_.clear();
}

std::vector<float> Session::score(const std::vector<int32_t>& tokens, StepObserver* observer) {
  reset();
  std::vector<float> logits(tokens.size() * size_t(model_.spec().vocab_size));
  backend_->forward(tokens, true, logits.data(), observer);
  cached_ = tokens;
  cached_phases_.assign(tokens.size(), uint8_t(Phase::Other));
  return logits;
}

void Session::set_interventions(const Interventions& interventions) {
  backend_->set_interventions(interventions);  // validates first
  interventions_ = interventions;
}

GenerationResult Session::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                   const std::function<bool(const TokenEvent&)>& on_token, StepObserver* observer) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  stop_requested_.store(false);
  if (opt.control) opt.control->stop_now.store(false);  // a click from before this turn does not count
  GenerationResult r;
  r.prompt_tokens = int(prompt.size());
  if (prompt.empty()) throw EngineError("", "prompt", "the prompt is empty");

  // Reuse the longest cached prefix, but always run at least the last prompt token to get its logits.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  backend_->truncate(int(common));
  cached_.resize(common);
  cached_phases_.resize(common);
  r.reused_tokens = int(common);

  const int V = model_.spec().vocab_size;
  const int32_t allowed = opt.allowed_vocab > 0 ? std::min(opt.allowed_vocab, V) : V;
  std::vector<float> logits(static_cast<size_t>(V));
  std::span<const int32_t> rest(prompt.data() + common, prompt.size() - common);
  if (backend_->cached() + int(rest.size()) > backend_->capacity())
    throw EngineError("", "context", "the prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                                         std::to_string(backend_->capacity()));
  std::vector<uint8_t> rest_phases(rest.size(), uint8_t(Phase::Other));
  for (size_t i = 0; i < rest.size(); ++i)
    if (common + i < opt.prompt_phases.size()) rest_phases[i] = uint8_t(opt.prompt_phases[common + i]);
  backend_->forward(rest, false, logits.data(), observer, StepTags{rest_phases, {}});
  cached_.insert(cached_.end(), rest.begin(), rest.end());
  cached_phases_.insert(cached_phases_.end(), rest_phases.begin(), rest_phases.end());
  const auto t_prefill = clock::now();
  r.prefill_s = std::chrono::duration<double>(t_prefill - t0).count();

  static const ThinkingTokens kNoThinking;
  const ThinkingTokens& thinking = opt.thinking ? *opt.thinking : kNoThinking;
  ReasoningController reasoning(thinking, prompt_ends_inside_thinking(prompt, thinking));
  Sampler sampler(opt.sampling, allowed);
  std::vector<int32_t> context = prompt;
  std::vector<int32_t> step;  // the tokens of the next forward step: one sampled, or an injected text
  std::vector<uint8_t> step_phases, step_forced;
  auto t_last = t_prefill;
  while (true) {
    if (stop_requested_.load()) {
      r.reason = StopReason::StoppedByUser;
      break;
    }
    // The budget is read every step, so a change from another thread takes effect at the next token.
    const int budget = opt.control ? opt.control->budget.load() : -1;
    const bool stop_thinking = opt.control && opt.control->stop_now.load();
    const std::vector<int32_t>& inject = reasoning.cut(budget, stop_thinking);
    const bool forced = !inject.empty();
    if (forced) {
      r.forced_stops.push_back(ForcedStop{int(cached_.size()), reasoning.thinking_tokens(), stop_thinking ? -1 : budget});
      if (stop_thinking) opt.control->stop_now.store(false);
      step = inject;
    } else {
      step.assign(1, sampler.sample(logits, context, prompt.size()));
    }
    step_phases.clear();
    step_forced.assign(step.size(), forced ? 1 : 0);
    bool is_stop = false, keep_going = true;
    const auto now = clock::now();
    const double dt = std::chrono::duration<double>(now - t_last).count() / double(step.size());
    t_last = now;
    for (int32_t id : step) {
      const Phase phase = reasoning.advance(id);
      step_phases.push_back(uint8_t(phase));
      r.tokens.push_back(id);
      r.phases.push_back(phase);
      r.forced.push_back(forced ? 1 : 0);
      if (phase == Phase::Thinking) {
        ++r.thinking_tokens;
        r.thinking_s += dt;
      }
      context.push_back(id);
      if (on_token)
        keep_going = on_token(TokenEvent{id, int(r.tokens.size()) - 1, std::chrono::duration<double>(clock::now() - t0).count(),
                                         phase, forced, reasoning.marker()}) && keep_going;
      is_stop = !forced && std::find(opt.stop_ids.begin(), opt.stop_ids.end(), id) != opt.stop_ids.end();
    }
    if (is_stop) {
      r.reason = StopReason::EndOfSequence;
      break;
    }
    if (!keep_going || stop_requested_.load()) {
      r.reason = StopReason::StoppedByUser;
      break;
    }
    if (int(r.tokens.size()) >= opt.max_new_tokens) {
      r.reason = StopReason::MaxTokens;
      break;
    }
    if (backend_->cached() + int(step.size()) > backend_->capacity()) {
      r.reason = StopReason::ContextFull;
      break;
    }
    backend_->forward(step, false, logits.data(), observer, StepTags{step_phases, step_forced, true});
    cached_.insert(cached_.end(), step.begin(), step.end());
    cached_phases_.insert(cached_phases_.end(), step_phases.begin(), step_phases.end());
  }
  r.decode_s = std::chrono::duration<double>(clock::now() - t_prefill).count();
  return r;
}

}  // namespace moe
