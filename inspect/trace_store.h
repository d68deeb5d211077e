#pragma once
// TraceStore: the live trace of a session. The engine thread appends one StepRecord per forward step;
// any other thread (the GUI, ~30 times a second) takes a snapshot of everything appended so far and
// reads it at leisure while the engine goes on (DESIGN.md, "Threads").
//
// How it stays cheap for long sessions:
// - Rows live in chunks of `chunk_tokens` tokens (default 256). A chunk holds whole steps (a prefill
//   step longer than a chunk gets a chunk of its own), so per-step data (times, attention rows) lives
//   beside its tokens. Every buffer of a chunk is allocated to full capacity when the chunk opens and
//   never moves; the writer fills rows past the published count and publishes them under a short lock,
//   so a snapshot shares every chunk, the open one included, and copies no rows at all: taking one
//   costs a lock held for a few pointer copies. (Sealing a chunk copies one block of 64 chunk pointers
//   and the list of blocks.) Readers never wait for the writer's work, only for that lock.
// - A chunk has a fixed layout (routing width, which detail columns exist). A record that needs more
//   (top-k raised to dense mode mid-session, the hook level raised from routing to full) seals the
//   chunk early and opens a new one. Narrower rows inside a wider chunk are padded with id -1 and
//   weight 0, and the trace's top_k is the largest k seen: materialising pads every chunk to it.
// - Memory is bounded: the compact per-token data (tokens, phases, routing ids/weights/entropy/margin,
//   shared gate) and per-step times stay in memory for the whole session; the large detail (router
//   probabilities, attention statistics, hidden norms, attention rows) stays in memory only for the
//   most recent `detail_window` tokens (give or take one chunk: detail moves out a sealed chunk at a
//   time, and the open chunk always keeps its own). Older detail is appended to the spill file when
//   one is given, otherwise dropped (its rows then read has_* = 0). A snapshot's materialize() leaves
//   spilled rows out (has_* = 0) unless asked to read them back, which is what saving a trace does.
// - The spill file is created at `spill_path` and unlinked at once (POSIX): it takes disk space only
//   while the store or a snapshot still uses it, and a crash leaves nothing behind. If writing it fails
//   (disk full), that detail is dropped and spill_error() says why; the engine thread never sees an
//   exception for it.
//
// Threads: every member function is safe to call from any thread. Mutations (append, clear, ...) are
// serialised among themselves; snapshot(), size() and version() never wait for an append in progress.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "engine/hooks/step_observer.h"
#include "inspect/trace.h"

namespace moe::inspect {

namespace trace_store_internal {
struct SnapshotState;
struct StoreState;
}  // namespace trace_store_internal

// Whether materialize() reads detail back from the spill file.
enum class SpilledDetail {
  Omit,  // spilled rows read has_* = 0, as dropped ones do (cheap: what live views want)
  Load,  // read it back (what saving a trace wants; costs the I/O and the memory of all the detail)
};

// A consistent, immutable view of a TraceStore at one moment. Cheap to take, copy and keep; it holds
// the chunks it saw alive (a later clear() or spill does not change it).
class TraceSnapshot {
 public:
  TraceSnapshot();  // an empty trace

  int64_t size() const;     // tokens
  int64_t steps() const;    // forward steps
  uint64_t version() const; // the store's version() when the snapshot was taken

  // The shape (n_layers, n_heads, n_experts, moe_layers, top_k, attention_topk), segments, forced
  // stops and metadata, with empty columns: for readers that need no rows.
  Trace header() const;

  // Every row as plain columns (trace.h). A detail array is either empty (no row has it) or full size
  // with has_* marking the real rows; shared_gate is empty when no row has a shared-expert gate;
  // layer_time_s is empty when no step has layer times. O(size): for measures over the whole trace,
  // not for every repaint of a view.
  Trace materialize(SpilledDetail spilled = SpilledDetail::Omit) const;

 private:
  friend class TraceStore;
  explicit TraceSnapshot(std::shared_ptr<const trace_store_internal::SnapshotState> state);
  std::shared_ptr<const trace_store_internal::SnapshotState> state_;
};

struct TraceStoreOptions {
  int chunk_tokens = 256;        // tokens per chunk (clamped to [1, max(1, detail_window)])
  int64_t detail_window = 8192;  // most recent tokens whose detail stays in memory
  std::filesystem::path spill_path;  // where older detail goes; empty: older detail is dropped
  // Monotonic clock in seconds, for step_end_s (seconds since the first step began). Tests inject
  // one; the default is std::chrono::steady_clock.
  std::function<double()> clock;
};

class TraceStore {
 public:
  // Throws EngineError(spill_path, "", ...) when the spill file cannot be created.
  explicit TraceStore(TraceStoreOptions options = {});
  ~TraceStore();
  TraceStore(const TraceStore&) = delete;
  TraceStore& operator=(const TraceStore&) = delete;

  // Adds one step's tokens, in sequence order. The shape (n_layers, n_heads, n_experts, moe_layers)
  // comes from the first record that has one (n_layers > 0); a later record with a different shape, or
  // arrays whose sizes do not match its shape, throws std::invalid_argument and adds nothing (clear()
  // before recording another model). Records without routing (level off) still add their tokens, with
  // has_routing 0. Empty phases/forced arrays read as Phase::Other / 0. attention_topk is the first
  // non-zero one seen.
  void append(const StepRecord& record);

  TraceSnapshot snapshot() const;

  void set_metadata_json(std::string json);  // the file's metadata (model, prompt, settings ...)
  // Starts a segment (one generate/score call) with its settings as a JSON object; tokens appended
  // from now on belong to it. Returns its index. Tokens appended before the first segment have -1.
  int begin_segment(std::string settings_json);
  void add_forced_stop(const ForcedStopRecord& stop);
  // Back to the state just after construction (shape, rows, segments, stops, metadata); version()
  // still grows. Snapshots taken before keep what they saw.
  void clear();

  int64_t size() const;     // tokens appended so far
  uint64_t version() const; // grows with every change a snapshot can see (appends, spills, clear ...)
  std::string spill_error() const;  // why spilling last failed; empty when it never did
  int64_t detail_tokens_in_memory() const;  // tokens whose detail columns are still held in memory

 private:
  std::unique_ptr<trace_store_internal::StoreState> state_;
};

}  // namespace moe::inspect
