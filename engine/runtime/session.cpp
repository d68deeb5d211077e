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

Session::Session(const Model& model, const BackendOptions& options)
    : model_(model), backend_(make_cpu_backend(model, options)) {}

Session::Session(const Model& model, std::unique_ptr<Backend> backend) : model_(model), backend_(std::move(backend)) {}

void Session::reset() {
  backend_->truncate(0);
  cached_.clear();
}

std::vector<float> Session::score(const std::vector<int32_t>& tokens, StepObserver* observer) {
  reset();
  std::vector<float> logits(tokens.size() * size_t(model_.spec().vocab_size));
  backend_->forward(tokens, true, logits.data(), observer);
  cached_ = tokens;
  return logits;
}

GenerationResult Session::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                   const std::function<bool(const TokenEvent&)>& on_token, StepObserver* observer) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  stop_requested_.store(false);
  GenerationResult r;
  r.prompt_tokens = int(prompt.size());
  if (prompt.empty()) throw EngineError("", "prompt", "the prompt is empty");

  // Reuse the longest cached prefix, but always run at least the last prompt token to get its logits.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  backend_->truncate(int(common));
  cached_.resize(common);
  r.reused_tokens = int(common);

  const int V = model_.spec().vocab_size;
  const int32_t allowed = opt.allowed_vocab > 0 ? std::min(opt.allowed_vocab, V) : V;
  std::vector<float> logits(static_cast<size_t>(V));
  std::span<const int32_t> rest(prompt.data() + common, prompt.size() - common);
  if (backend_->cached() + int(rest.size()) > backend_->capacity())
    throw EngineError("", "context", "the prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                                         std::to_string(backend_->capacity()));
  backend_->forward(rest, false, logits.data(), observer);
  cached_.insert(cached_.end(), rest.begin(), rest.end());
  const auto t_prefill = clock::now();
  r.prefill_s = std::chrono::duration<double>(t_prefill - t0).count();

  Sampler sampler(opt.sampling, allowed);
  std::vector<int32_t> context = prompt;
  for (int i = 0; i < opt.max_new_tokens; ++i) {
    if (stop_requested_.load()) {
      r.reason = StopReason::StoppedByUser;
      break;
    }
    const int32_t id = sampler.sample(logits, context, prompt.size());
    r.tokens.push_back(id);
    context.push_back(id);
    const bool is_stop = std::find(opt.stop_ids.begin(), opt.stop_ids.end(), id) != opt.stop_ids.end();
    bool keep_going = true;
    if (on_token) keep_going = on_token(TokenEvent{id, i, std::chrono::duration<double>(clock::now() - t0).count()});
    if (is_stop) {
      r.reason = StopReason::EndOfSequence;
      break;
    }
    if (!keep_going || stop_requested_.load()) {
      r.reason = StopReason::StoppedByUser;
      break;
    }
    if (i + 1 == opt.max_new_tokens) {
      r.reason = StopReason::MaxTokens;
      break;
    }
    if (backend_->cached() + 1 > backend_->capacity()) {
      r.reason = StopReason::ContextFull;
      break;
    }
    backend_->forward(std::span<const int32_t>(&id, 1), false, logits.data(), observer);
    cached_.push_back(id);
  }
  r.decode_s = std::chrono::duration<double>(clock::now() - t_prefill).count();
  return r;
}

}  // namespace moe
