#include "app/gui/workbench_feed.h"

#include <unordered_map>

#include "app/gui/engine_worker.h"
#include "engine/tokenizer/tokenizer.h"

namespace moe::app {

WorkbenchFeed::WorkbenchFeed(EngineWorker* worker, QObject* parent) : QObject(parent), worker_(worker) {
  timer_.setInterval(kIntervalMs);
  connect(&timer_, &QTimer::timeout, this, &WorkbenchFeed::refresh);
  timer_.start();
}

void WorkbenchFeed::addView(views::WorkbenchView* view) {
  views_.push_back(view);
  view->setData(data_);
}

void WorkbenchFeed::removeView(views::WorkbenchView* view) { std::erase(views_, view); }

void WorkbenchFeed::refresh() {
  const uint64_t store_version = worker_->store().version();
  const uint64_t live_version = worker_->liveVersion();
  if (store_version == seen_store_ && live_version == seen_live_) return;
  seen_store_ = store_version;
  seen_live_ = live_version;

  LiveView live = worker_->live();
  inspect::Trace live_rows = worker_->store().snapshot().materialize();
  auto trace = std::make_shared<inspect::Trace>();
  try {
    *trace = join_restored(live.base_trace.get(), std::move(live_rows));
  } catch (const std::exception&) {
    *trace = live.base_trace ? *live.base_trace : inspect::Trace{};  // shapes differ: show what was restored
  }

  // Rows already seen (those of the last snapshot) are decoded and indexed once: a row never changes
  // after it is appended, so only new rows are read. Everything starts over when the rows before are
  // no longer the same (a new chat, another model, a restored session).
  const size_t n = size_t(trace->size());
  const inspect::Trace& before = *data_.trace;
  const size_t seen = size_t(before.size());
  const bool same_rows = text_ && text_tokenizer_ == live.tokenizer && text_base_ == live.base_trace.get() && n >= seen &&
                         std::equal(before.tokens.begin(), before.tokens.end(), trace->tokens.begin()) &&
                         std::equal(before.segment.begin(), before.segment.end(), trace->segment.begin());
  const size_t first_new = same_rows ? seen : 0;
  if (same_rows) {
    text_ = std::make_shared<std::vector<std::string>>(*text_);  // views may hold the old one
  } else {
    text_ = std::make_shared<std::vector<std::string>>();
    row_of_.clear();
    text_tokenizer_ = live.tokenizer;
    text_base_ = live.base_trace.get();
  }
  // Chat token → trace row, by (segment, position) of the generated rows.
  auto key = [](int64_t segment, int64_t position) { return (segment << 32) ^ position; };
  for (size_t r = first_new; r < n; ++r) {
    const int32_t id = trace->tokens[r];
    const int32_t previous = r > 0 ? trace->tokens[r - 1] : -1;
    std::string piece;
    if (live.tokenizer && id >= 0 && id < live.tokenizer->size()) piece = live.tokenizer->token_bytes(id, previous);
    text_->push_back(std::move(piece));
    if (r < trace->generated.size() && trace->generated[r] && r < trace->segment.size())
      row_of_[key(trace->segment[r], trace->positions[r])] = int64_t(r);
  }
  for (views::ChatTurn& turn : live.turns)
    for (views::ChatToken& t : turn.tokens) {
      if (t.row >= 0 && t.row < int64_t(n)) continue;  // restored turns come with their rows
      auto it = row_of_.find(key(turn.segment, t.position));
      t.row = it == row_of_.end() ? -1 : it->second;
    }

  views::WorkbenchData d;
  d.model = live.model;
  d.trace = trace;
  d.token_text = text_;
  d.chat = std::make_shared<const std::vector<views::ChatTurn>>(std::move(live.turns));
  d.memory = std::make_shared<const std::vector<views::MemorySample>>(std::move(live.memory));
  d.version = data_.version + 1;
  data_ = d;
  for (views::WorkbenchView* v : views_) v->setData(data_);
  emit updated();
}

}  // namespace moe::app
