#include "app/gui/engine_worker.h"

#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "app/gui/memory_sample.h"
#include "app/gui/model_facts.h"
#include "app/gui/session_file.h"
#include "engine/common/error.h"
#include "engine/model/model.h"
#include "engine/runtime/conversation.h"
#include "engine/tokenizer/tokenizer.h"
#include "inspect/trace_concat.h"
#include "inspect/trace_recorder.h"

namespace moe::app {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Cancelled {};

// A model is a folder or a GGUF file; any other file inside a folder (config.json, a safetensors shard,
// the index) names its folder.
fs::path model_path(const QString& path) {
  fs::path p = path.toStdString();
  if (fs::is_regular_file(p) && !is_gguf_file(p)) p = p.parent_path();
  return p;
}

}  // namespace

inspect::Trace join_restored(const inspect::Trace* base, inspect::Trace live) {
  if (!base || base->size() == 0) return live;
  if (live.n_layers == 0) {
    live.n_layers = base->n_layers;
    live.n_heads = base->n_heads;
    live.n_experts = base->n_experts;
    live.moe_layers = base->moe_layers;
  }
  return inspect::concat_traces({*base, live});
}

EngineWorker::EngineWorker(QObject* parent)
    : QObject(parent),
      store_(std::make_unique<inspect::TraceStore>()),
      recorder_(std::make_unique<inspect::TraceRecorder>(*store_, HookLevel::Routing)) {
  session_start_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { loop(); });
}

EngineWorker::~EngineWorker() {
  {
    std::lock_guard lock(queue_mutex_);
    quit_ = true;
    queue_.clear();
  }
  cancel_load_ = true;
  stop();
  queue_cv_.notify_all();
  thread_.join();
  // The conversation refers to the model: drop it first.
  conversation_.reset();
  model_.reset();
}

void EngineWorker::post(std::string tag, std::function<void()> run) {
  {
    std::lock_guard lock(queue_mutex_);
    if (!tag.empty())
      for (auto it = queue_.begin(); it != queue_.end();)
        it = it->tag == tag ? queue_.erase(it) : std::next(it);
    queue_.push_back({std::move(tag), std::move(run)});
  }
  queue_cv_.notify_one();
}

void EngineWorker::loop() {
  for (;;) {
    Request r;
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return quit_ || !queue_.empty(); });
      if (quit_) return;
      r = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      r.run();
    } catch (const std::exception& e) {
      emit engineError(QString::fromStdString(e.what()));
    }
  }
}

// ---- Requests ---------------------------------------------------------------------------------------

void EngineWorker::loadModel(const QString& path, const LoadOptions& options) {
  cancel_load_ = false;
  post("load", [this, path, options] { doLoad(path, options); });
}

void EngineWorker::send(const TurnRequest& request) {
  post("", [this, request] { doSend(request); });
}

void EngineWorker::newChat() { post("new-chat", [this] { doNewChat(); }); }

void EngineWorker::restore(const QString& session_dir, const LoadOptions& options) {
  cancel_load_ = false;
  post("load", [this, session_dir, options] {
    SessionFile session;
    try {
      session = load_session(session_dir.toStdString());
    } catch (const std::exception& e) {
      emit sessionRestoreFailed(QString::fromStdString(e.what()));
      return;
    }
    doLoad(QString::fromStdString(session.model_path), options);
    if (conversation_ && modelPath() == QString::fromStdString(model_path(QString::fromStdString(session.model_path)).string()))
      doRestore(std::move(session));
  });
}

// ---- Live controls ----------------------------------------------------------------------------------

void EngineWorker::cancelLoad() { cancel_load_ = true; }

void EngineWorker::stop() {
  {
    std::lock_guard lock(pace_mutex_);  // so a slow-motion wait cannot miss the wake-up
    stop_ = true;
  }
  pace_cv_.notify_all();
}

void EngineWorker::setThinkingBudget(int budget) { budget_ = budget < 0 ? -1 : budget; }
void EngineWorker::stopThinkingNow() { stop_thinking_ = true; }
void EngineWorker::setHookLevel(HookLevel level) { recorder_->set_level(level); }
void EngineWorker::setPace(double tokens_per_second) {
  {
    std::lock_guard lock(pace_mutex_);
    pace_ = tokens_per_second > 0 ? tokens_per_second : 0;
  }
  pace_cv_.notify_all();
}

void EngineWorker::setInterventions(const Interventions& interventions) {
  std::lock_guard lock(interventions_mutex_);
  pending_interventions_ = interventions;
}

void EngineWorker::setAutosaveDir(const QString& dir) {
  std::lock_guard lock(live_mutex_);
  autosave_dir_ = dir;
}

QString EngineWorker::modelPath() const {
  std::lock_guard lock(live_mutex_);
  return model_path_;
}

LiveView EngineWorker::live() const {
  std::lock_guard lock(live_mutex_);
  LiveView v = live_;
  v.version = live_version_.load();
  return v;
}

void EngineWorker::touch() { live_version_.fetch_add(1); }

// ---- Worker side ------------------------------------------------------------------------------------

void EngineWorker::doLoad(const QString& path, const LoadOptions& options) {
  const fs::path dir = model_path(path);
  try {
    emit loadProgress(2, tr("Reading the model's settings and tensor index"));
    auto model = Model::load(dir);
    if (cancel_load_) throw Cancelled{};

    // Read every weight file once, so the first token does not wait on the disk and the user sees how
    // far along a large checkpoint is (and can cancel it).
    const std::vector<fs::path> files = model->weight_files();
    uint64_t total = 0;
    for (const fs::path& f : files) total += fs::file_size(f);
    std::vector<char> buffer(size_t(8) << 20);
    uint64_t done = 0;
    int last_percent = -1;
    for (const fs::path& f : files) {
      const int fd = ::open(f.c_str(), O_RDONLY);
      if (fd < 0) throw EngineError(f.string(), "", "cannot open the file");
      for (;;) {
        const ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n <= 0) break;
        done += uint64_t(n);
        const int percent = 5 + int(80.0 * double(done) / double(std::max<uint64_t>(total, 1)));
        if (percent != last_percent) {
          last_percent = percent;
          emit loadProgress(percent, tr("Reading the weights: %1 of %2 MiB").arg(done >> 20).arg(total >> 20));
        }
        if (cancel_load_) {
          ::close(fd);
          throw Cancelled{};
        }
      }
      ::close(fd);
    }

    emit loadProgress(88, tr("Tokenizer, chat template and KV cache"));
    BackendOptions bo;
    bo.threads = options.threads;
    bo.max_context = options.context;
    bo.device = options.device;
    bo.kv_dtype = options.kv_dtype;
    // A GPU backend uploads the weights: progress 88 → 98 %, and the cancel button still works.
    bo.upload_progress = [this](size_t done, size_t total) {
      emit loadProgress(88 + int(10.0 * double(done) / double(std::max<size_t>(total, 1))),
                        tr("Uploading the weights to the GPU: %1 of %2 MiB").arg(done >> 20).arg(total >> 20));
      return !cancel_load_;
    };
    std::unique_ptr<Conversation> conversation;
    try {
      conversation = std::make_unique<Conversation>(*model, bo);
    } catch (const EngineError& e) {
      if (e.field() == "cancelled") throw Cancelled{};
      throw;
    }
    std::shared_ptr<const Tokenizer> tokenizer = Tokenizer::load(dir);
    if (cancel_load_) throw Cancelled{};
    auto facts = std::make_shared<const views::ModelFacts>(model_facts(*model, *conversation));

    // Swap in: the old conversation refers to the old model, so it goes first.
    conversation_.reset();
    model_ = std::move(model);
    conversation_ = std::move(conversation);
    store_->clear();
    json meta = {{"model", dir.string()}, {"family", facts->family}, {"backend", facts->backend},
                 {"engine_version", MOE_VERSION}, {"front_end", "moe-workbench"}};
    store_->set_metadata_json(meta.dump());
    {
      std::lock_guard lock(live_mutex_);
      live_ = LiveView{};
      live_.model = facts;
      live_.tokenizer = tokenizer;
      model_path_ = QString::fromStdString(dir.string());
      session_start_ = std::chrono::steady_clock::now();
    }
    {
      std::lock_guard lock(interventions_mutex_);
      pending_interventions_.reset();
    }
    sampleMemory(0);
    touch();
    emit loadProgress(100, tr("Loaded"));
    emit modelLoaded(QString::fromStdString(dir.string()));
  } catch (const Cancelled&) {
    emit loadFailed(tr("Loading %1 was cancelled").arg(QString::fromStdString(dir.string())));
  } catch (const std::exception& e) {
    emit loadFailed(QString::fromStdString(e.what()));
  }
}

void EngineWorker::doNewChat() {
  if (!conversation_) return;
  conversation_->clear();
  conversation_->session().reset();
  store_->clear();
  {
    std::lock_guard lock(live_mutex_);
    live_.turns.clear();
    live_.base_trace.reset();
    live_.memory.clear();
    session_start_ = std::chrono::steady_clock::now();
  }
  sampleMemory(0);
  touch();
  autosave();
}

void EngineWorker::doRestore(SessionFile session) {
  std::vector<ChatMessage> messages;
  for (const auto& t : session.turns) {
    messages.push_back({"user", t.user_text});
    std::string text;
    for (const auto& k : t.tokens) text += k.piece;
    messages.push_back({"assistant", text});
  }
  conversation_->set_messages(std::move(messages));
  {
    std::lock_guard lock(live_mutex_);
    live_.turns = std::move(session.turns);
    live_.base_trace = session.trace.size() > 0 ? std::make_shared<const inspect::Trace>(std::move(session.trace)) : nullptr;
  }
  touch();
}

void EngineWorker::applyPendingInterventions() {
  std::optional<Interventions> iv;
  {
    std::lock_guard lock(interventions_mutex_);
    iv.swap(pending_interventions_);
  }
  if (!iv) return;
  try {
    conversation_->session().set_interventions(*iv);
  } catch (const std::exception& e) {
    emit engineError(QString::fromStdString(e.what()));
  }
}

void EngineWorker::sampleMemory(double t_s) {
  views::MemorySample m;
  if (conversation_) {
    const Backend& b = conversation_->session().backend();
    m = memory_sample(b.device_memory(), b.is_gpu());
  }
  m.t_s = t_s;
  m.process_rss_bytes = process_rss_bytes();
  std::lock_guard lock(live_mutex_);
  live_.memory.push_back(m);
}

void EngineWorker::doSend(const TurnRequest& request) {
  if (!conversation_) {
    emit engineError(tr("No model is loaded: open a model folder first (File ▸ Open model)."));
    return;
  }
  Conversation& conv = *conversation_;
  const auto mode = parse_thinking_mode(request.mode);
  if (!mode) {
    emit engineError(tr("Unknown thinking mode '%1'").arg(QString::fromStdString(request.mode)));
    return;
  }
  TurnOptions options;
  options.mode = conv.supports_thinking() ? *mode : ThinkingMode::Auto;
  options.max_new_tokens = request.max_new_tokens;
  options.sampling = request.sampling;
  budget_ = request.thinking_budget < 0 ? -1 : request.thinking_budget;
  options.thinking_budget = budget_.load();
  stop_ = false;  // a stop pressed for an earlier turn does not end this one
  stop_thinking_ = false;
  applyPendingInterventions();

  views::ChatTurn turn;
  turn.user_text = request.user_text;
  turn.mode = thinking_mode_name(options.mode);
  turn.thinking = conv.will_think(options.mode, request.user_text);
  turn.thinking_budget = options.thinking_budget;
  const SamplingParams sampling = options.sampling ? *options.sampling
                                                   : recommended_sampling(conv.chat(), conv.generation_config(), turn.thinking);
  json settings = {{"mode", turn.mode}, {"budget", turn.thinking_budget}, {"sampling", json::parse(sampling.to_json())},
                   {"chat_format", conv.chat().format_name()}, {"hook_level", hook_level_name(recorder_->level())},
                   {"interventions", json::parse(conv.session().interventions().to_json())}};
  int64_t base_rows = 0, base_segments = 0;
  int turn_index = 0;
  {
    std::lock_guard lock(live_mutex_);
    if (live_.base_trace) {
      base_rows = live_.base_trace->size();
      base_segments = int64_t(live_.base_trace->segments.size());
    }
    turn.segment = int(base_segments) + store_->begin_segment(settings.dump());
    turn.first_row = base_rows + store_->size();
    live_.turns.push_back(turn);
    turn_index = int(live_.turns.size()) - 1;
  }
  touch();

  const auto start = std::chrono::steady_clock::now();
  auto last_sample = start;
  int first_position = 0;
  bool previous_forced = false;
  int thinking_tokens = 0;
  double first_thinking_s = -1;

  auto on_token = [&](const TokenEvent& ev, const std::string& piece) {
    // Live controls reach the reasoning controller before the next step reads them.
    conv.control().budget.store(budget_.load());
    if (stop_thinking_.exchange(false)) conv.control().stop_now.store(true);
    Backend& backend = conv.session().backend();
    if (ev.index == 0) first_position = backend.cached();
    views::ChatToken t;
    t.piece = piece;
    t.id = ev.id;
    t.phase = ev.phase;
    t.forced = ev.forced;
    t.position = first_position + ev.index;
    t.elapsed_s = ev.elapsed_s;
    if (ev.phase == Phase::Thinking) {
      ++thinking_tokens;
      if (first_thinking_s < 0) first_thinking_s = ev.elapsed_s;
    }
    {
      std::lock_guard lock(live_mutex_);
      views::ChatTurn& live = live_.turns[size_t(turn_index)];
      if (ev.index == 0) live.time_to_first_token_s = ev.elapsed_s;
      if (ev.forced && !previous_forced && ev.phase == Phase::Thinking)
        live.forced_stops.push_back({t.position, thinking_tokens - 1, budget_.load()});
      live.tokens.push_back(std::move(t));
      live.thinking_tokens = thinking_tokens;
      if (ev.phase == Phase::Thinking) live.thinking_s = ev.elapsed_s - first_thinking_s;
      live.thinking_budget = budget_.load();
    }
    previous_forced = ev.forced;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_sample > std::chrono::milliseconds(50)) {
      last_sample = now;
      applyPendingInterventions();
      sampleMemory(std::chrono::duration<double>(now - session_start_).count());
    }
    touch();
    // Slow motion: wait until this token's slot, waking at once for a stop.
    const double pace = pace_.load();
    if (pace > 0) {
      std::unique_lock lock(pace_mutex_);
      pace_cv_.wait_until(lock, start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                            std::chrono::duration<double>((ev.index + 1) / pace)),
                          [&] { return stop_.load() || pace_.load() != pace; });
    }
    return !stop_.load();
  };

  std::string stop_reason;
  TurnResult result;
  bool ok = false;
  try {
    result = conv.send(request.user_text, options, on_token, recorder_.get());
    ok = true;
    stop_reason = stop_reason_name(result.generation.reason);
  } catch (const std::exception& e) {
    stop_reason = std::string("error: ") + e.what();
    emit engineError(QString::fromStdString(e.what()));
  }
  if (ok)
    for (const ForcedStop& f : result.generation.forced_stops) store_->add_forced_stop({f.position, f.thinking_tokens, f.budget});
  sampleMemory(std::chrono::duration<double>(std::chrono::steady_clock::now() - session_start_).count());
  {
    std::lock_guard lock(live_mutex_);
    views::ChatTurn& live = live_.turns[size_t(turn_index)];
    live.finished = true;
    live.stop_reason = stop_reason;
    live.thinking_budget = budget_.load();
    if (ok) {
      const GenerationResult& g = result.generation;
      live.forced_stops.clear();
      for (const ForcedStop& f : g.forced_stops) live.forced_stops.push_back({f.position, f.thinking_tokens, f.budget});
      live.thinking_tokens = g.thinking_tokens;
      live.thinking_s = g.thinking_s;
      live.prefill_s = g.prefill_s;
      live.decode_s = g.decode_s;
      live.prompt_tokens = g.prompt_tokens;
      live.reused_tokens = g.reused_tokens;
      live.thinking = result.effective_thinking;
    }
  }
  touch();
  emit turnFinished(turn_index, QString::fromStdString(stop_reason));
  autosave();
}

void EngineWorker::autosave() {
  QString dir;
  SessionFile file;
  std::shared_ptr<const inspect::Trace> base;
  {
    std::lock_guard lock(live_mutex_);
    dir = autosave_dir_;
    if (dir.isEmpty() || !live_.model) return;
    file.model_path = model_path_.toStdString();
    file.turns = live_.turns;
    base = live_.base_trace;
  }
  inspect::Trace live = store_->snapshot().materialize(inspect::SpilledDetail::Load);
  try {
    file.trace = join_restored(base.get(), std::move(live));
  } catch (const std::exception& e) {  // a restored trace of another shape: keep the chat, say why
    emit engineError(tr("Autosave: the trace was not saved: %1").arg(QString::fromStdString(e.what())));
  }
  try {
    save_session(dir.toStdString(), file);
    emit sessionSaved(dir);
  } catch (const std::exception& e) {
    emit engineError(tr("Autosave failed: %1").arg(QString::fromStdString(e.what())));
  }
}

}  // namespace moe::app
