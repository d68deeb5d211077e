#pragma once
// EngineWorker: the one thread that owns the engine (DESIGN.md "Threads", RenderDoc's replay manager).
// The GUI posts requests (load a model, send a message, start a new chat) to its queue and never waits:
// a request runs on the worker thread, and a newer request with the same tag replaces an older one
// still waiting (a second "open model" before the first started wins). Live controls — stop, the
// thinking budget, "stop thinking now", the hook level, interventions, slow motion — are atomics or
// small guarded values the generation loop reads at every token, so they act mid-generation.
//
// What the views show is read, never pushed: the worker writes step records into a TraceStore and the
// chat into a guarded LiveChat; the GUI's feed (workbench_feed.h) takes snapshots of both at most ~30
// times a second. The few signals (load progress, model loaded, turn finished, errors) are emitted on
// the worker thread and arrive queued on the GUI thread.
#include <QObject>
#include <QString>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/hooks/interventions.h"
#include "engine/runtime/sampler.h"
#include "inspect/trace.h"
#include "inspect/trace_store.h"
#include "app/gui/session_file.h"
#include "views/workbench_data.h"

namespace moe {
class Model;
class Conversation;
class Tokenizer;
}  // namespace moe

namespace moe::inspect {
class TraceRecorder;
}

namespace moe::app {

struct LoadOptions {
  int threads = 0;      // CPU threads; 0 = all cores
  int context = 4096;   // KV cache tokens
  Device device = Device::Auto;  // the GPU when one works (the model card says which runs, and why)
  DType kv_dtype = DType::F32;   // the GPU's KV cache (BackendOptions::kv_dtype)
};

struct TurnRequest {
  std::string user_text;
  std::string mode = "think";            // "think", "no-think", "auto"
  int max_new_tokens = 512;
  std::optional<SamplingParams> sampling;  // unset: the mode's recommendation
  int thinking_budget = -1;
};

// What the feed copies out of the worker: the chat so far and what it needs to decode rows.
struct LiveView {
  uint64_t version = 0;  // grows with every change of the chat, the model or the memory samples
  std::shared_ptr<const views::ModelFacts> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::shared_ptr<const inspect::Trace> base_trace;  // restored rows before the live ones (may be null)
  std::vector<views::ChatTurn> turns;
  std::vector<views::MemorySample> memory;
};

// The whole trace of a session: the restored rows (if any) followed by the live ones. The live trace
// takes the restored trace's shape while it has no rows yet.
inspect::Trace join_restored(const inspect::Trace* base, inspect::Trace live);

class EngineWorker : public QObject {
  Q_OBJECT
 public:
  explicit EngineWorker(QObject* parent = nullptr);
  ~EngineWorker() override;  // stops any generation and joins the thread

  // ---- Requests (queued; return at once) ----
  void loadModel(const QString& path, const LoadOptions& options);
  void send(const TurnRequest& request);
  void newChat();                            // forget the conversation and the trace
  // Reads a saved session folder (session_file.h), loads its model, then puts its chat back. When the
  // folder cannot be read, sessionRestoreFailed says why (the app then opens a model as usual).
  void restore(const QString& session_dir, const LoadOptions& options);

  // ---- Live controls (any thread, take effect at the next token) ----
  void cancelLoad();
  void stop();
  void setThinkingBudget(int budget);        // -1: unlimited
  void stopThinkingNow();
  void setHookLevel(HookLevel level);
  void setInterventions(const Interventions& interventions);  // validated on the worker; errors → engineError
  // Slow motion for teaching: at most this many generated tokens per second (0: as fast as it runs).
  void setPace(double tokens_per_second);

  // ---- Reading (any thread, cheap) ----
  const inspect::TraceStore& store() const { return *store_; }
  LiveView live() const;
  uint64_t liveVersion() const { return live_version_.load(); }
  // The folder of the loaded model (empty before the first load).
  QString modelPath() const;
  // Saves the chat and the trace so far (called on the worker after every turn; also by the app on exit
  // once the worker is idle). The directory is written atomically: files go to temporary names first.
  void setAutosaveDir(const QString& dir);

 signals:
  void loadProgress(int percent, const QString& stage);
  void modelLoaded(const QString& path);
  void loadFailed(const QString& error);
  void turnFinished(int turn, const QString& stop_reason);
  void engineError(const QString& error);
  void sessionSaved(const QString& dir);
  void sessionRestoreFailed(const QString& error);

 private:
  struct Request {
    std::string tag;  // non-empty: replaces a waiting request with the same tag
    std::function<void()> run;
  };
  void post(std::string tag, std::function<void()> run);
  void loop();
  void doLoad(const QString& path, const LoadOptions& options);
  void doSend(const TurnRequest& request);
  void doNewChat();
  void doRestore(SessionFile session);
  void applyPendingInterventions();
  void sampleMemory(double t_s);
  void touch();  // a change the feed must see
  void autosave();

  // Queue.
  mutable std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<Request> queue_;
  bool quit_ = false;
  std::thread thread_;

  // Engine (worker thread only, except where noted).
  std::unique_ptr<Model> model_;
  std::unique_ptr<Conversation> conversation_;
  std::unique_ptr<inspect::TraceStore> store_;          // any thread (thread-safe)
  std::unique_ptr<inspect::TraceRecorder> recorder_;  // set_level from any thread

  // Live controls.
  std::atomic<bool> cancel_load_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int> budget_{-1};
  std::atomic<bool> stop_thinking_{false};
  std::atomic<double> pace_{0};
  std::mutex pace_mutex_;
  std::condition_variable pace_cv_;  // woken by stop() so slow motion never delays a stop
  std::mutex interventions_mutex_;
  std::optional<Interventions> pending_interventions_;

  // What the feed reads.
  mutable std::mutex live_mutex_;
  LiveView live_;
  std::atomic<uint64_t> live_version_{0};
  std::chrono::steady_clock::time_point session_start_;
  QString autosave_dir_;
  QString model_path_;
};

}  // namespace moe::app
