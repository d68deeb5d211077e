#pragma once
// TraceRecorder: the engine's observer that records into a TraceStore. The engine thread calls ask()
// before and observe() after each step; the hook level and the attention rows to capture can be
// changed from any thread (a live control, DESIGN.md "Threads") and take effect at the next step.
#include <atomic>
#include <mutex>
#include <vector>

#include "engine/hooks/step_observer.h"
#include "inspect/trace_store.h"

namespace moe::inspect {

class TraceRecorder : public StepObserver {
 public:
  explicit TraceRecorder(TraceStore& store, HookLevel level = HookLevel::Routing);

  void set_level(HookLevel level) { level_.store(level, std::memory_order_relaxed); }
  HookLevel level() const { return level_.load(std::memory_order_relaxed); }
  // The (layer, head) rows captured at HookLevel::AttentionMaps.
  void set_attention_rows(std::vector<AttentionRowRequest> rows);
  std::vector<AttentionRowRequest> attention_rows() const;

  HookRequest ask() const override;                // HookRequest::for_level(level, attention rows)
  void observe(const StepRecord& record) override;  // TraceStore::append

  TraceStore& store() const { return store_; }

 private:
  TraceStore& store_;
  std::atomic<HookLevel> level_;
  mutable std::mutex rows_mutex_;
  std::vector<AttentionRowRequest> rows_;
};

}  // namespace moe::inspect
