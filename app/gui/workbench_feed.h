#pragma once
// WorkbenchFeed: the GUI side of DESIGN.md's "notify the GUI at most ~30 times a second". A timer on the
// GUI thread looks at two version counters (the trace store's and the worker's chat); when either moved
// it takes a snapshot of both (never waiting on the engine: the store's snapshot is a few pointer copies
// under a short lock, the chat a copy under the worker's live mutex, which the generation loop holds only
// to append one token), builds one WorkbenchData and hands it to every registered view.
//
// It also joins what the views need and the engine does not keep together: the decoded text of every
// trace row (decoded once per row, incrementally) and the trace row of every chat token (matched by its
// segment and sequence position, so it stays right when the hook level is off for part of a turn).
#include <QObject>
#include <QTimer>
#include <memory>
#include <unordered_map>
#include <vector>

#include "views/workbench_data.h"
#include "views/workbench_view.h"

namespace moe {
class Tokenizer;
}

namespace moe::app {

class EngineWorker;

class WorkbenchFeed : public QObject {
  Q_OBJECT
 public:
  static constexpr int kIntervalMs = 33;  // ≤ 30 updates a second

  WorkbenchFeed(EngineWorker* worker, QObject* parent = nullptr);
  void addView(views::WorkbenchView* view);
  void removeView(views::WorkbenchView* view);
  const views::WorkbenchData& data() const { return data_; }
  // Builds a snapshot now if anything changed (the timer calls it; tests may too).
  void refresh();

 signals:
  void updated();

 private:
  EngineWorker* worker_;
  QTimer timer_;
  std::vector<views::WorkbenchView*> views_;
  views::WorkbenchData data_ = views::WorkbenchData::empty();
  uint64_t seen_store_ = ~0ull, seen_live_ = ~0ull;
  // What was built from the rows of the last snapshot (data_.trace), kept for the next: their text,
  // what it was decoded with, and the row of each generated token by (segment, position).
  std::shared_ptr<std::vector<std::string>> text_;
  std::shared_ptr<const Tokenizer> text_tokenizer_;
  const void* text_base_ = nullptr;
  std::unordered_map<int64_t, int64_t> row_of_;
};

}  // namespace moe::app
