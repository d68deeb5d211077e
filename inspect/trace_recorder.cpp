#include "inspect/trace_recorder.h"

namespace moe::inspect {

TraceRecorder::TraceRecorder(TraceStore& store, HookLevel level) : store_(store), level_(level) {}

void TraceRecorder::set_attention_rows(std::vector<AttentionRowRequest> rows) {
  std::lock_guard lock(rows_mutex_);
  rows_ = std::move(rows);
}

std::vector<AttentionRowRequest> TraceRecorder::attention_rows() const {
  std::lock_guard lock(rows_mutex_);
  return rows_;
}

HookRequest TraceRecorder::ask() const { return HookRequest::for_level(level(), attention_rows()); }

void TraceRecorder::observe(const StepRecord& record) { store_.append(record); }

}  // namespace moe::inspect
