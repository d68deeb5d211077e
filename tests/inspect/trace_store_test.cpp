// TraceStore and TraceRecorder: what a snapshot holds after hand-built steps (exactly), snapshots taken
// while another thread appends, top-k raised mid-trace, level-off steps, and the detail window with and
// without a spill file.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "inspect/trace_recorder.h"
#include "inspect/trace_store.h"
#include "tests/inspect/trace_records.h"
#include "tests/support/test_support.h"

namespace moe::inspect {
namespace {

using test::make_record;
using test::RecordParts;
using test::TinyShape;

// A clock that advances one second per reading.
std::function<double()> ticking_clock() {
  auto now = std::make_shared<double>(100.0);
  return [now] { return *now += 1.0; };
}

// Checks row `row` of t against the values make_record gives position `pos`.
void expect_compact_row(const Trace& t, size_t row, int pos, bool routing, int real_k, int segment, int step) {
  SCOPED_TRACE("row " + std::to_string(row));
  ASSERT_LT(row, t.tokens.size());
  EXPECT_EQ(t.tokens[row], test::token_at(pos));
  EXPECT_EQ(t.positions[row], pos);
  EXPECT_EQ(t.phases[row], test::phase_at(pos));
  EXPECT_EQ(t.forced[row], test::forced_at(pos));
  EXPECT_EQ(t.segment[row], segment);
  EXPECT_EQ(t.step[row], step);
  EXPECT_EQ(t.has_routing[row], routing ? 1 : 0);
  const size_t m = size_t(t.n_moe()), k = size_t(t.top_k);
  for (size_t mi = 0; mi < m && !t.expert_ids.empty(); ++mi) {
    for (size_t j = 0; j < k; ++j) {
      const size_t at = (row * m + mi) * k + j;
      if (routing && int(j) < real_k) {
        EXPECT_EQ(t.expert_ids[at], test::expert_at(pos, int(mi), int(j), t.n_experts));
        EXPECT_EQ(t.expert_weights[at], test::weight_at(pos, int(mi), int(j)));
      } else {
        EXPECT_EQ(t.expert_ids[at], -1) << "slot " << j;
        EXPECT_EQ(t.expert_weights[at], 0.0f) << "slot " << j;
      }
    }
    EXPECT_EQ(t.router_entropy[row * m + mi], routing ? test::entropy_at(pos, int(mi)) : 0.0f);
    EXPECT_EQ(t.top1_margin[row * m + mi], routing ? test::margin_at(pos, int(mi)) : 0.0f);
  }
}

void expect_detail_row(const Trace& t, size_t row, int pos) {
  SCOPED_TRACE("detail row " + std::to_string(row));
  const size_t m = size_t(t.n_moe()), e = size_t(t.n_experts), l = size_t(t.n_layers), h = size_t(t.n_heads);
  ASSERT_EQ(t.has_router_probs[row], 1);
  ASSERT_EQ(t.has_attention[row], 1);
  ASSERT_EQ(t.has_hidden_norm[row], 1);
  for (size_t mi = 0; mi < m; ++mi)
    for (size_t x = 0; x < e; ++x)
      EXPECT_EQ(t.router_probs[(row * m + mi) * e + x], test::prob_at(pos, int(mi), int(x)));
  for (size_t li = 0; li < l; ++li) {
    for (size_t hi = 0; hi < h; ++hi) {
      const size_t at = (row * l + li) * h + hi;
      EXPECT_EQ(t.attn_entropy[at], test::attn_at(0, pos, int(li), int(hi)));
      EXPECT_EQ(t.attn_max[at], test::attn_at(1, pos, int(li), int(hi)));
      EXPECT_EQ(t.attn_topk_mass[at], test::attn_at(2, pos, int(li), int(hi)));
      EXPECT_EQ(t.attn_first_mass[at], test::attn_at(3, pos, int(li), int(hi)));
    }
    EXPECT_EQ(t.hidden_norm[row * l + li], test::norm_at(pos, int(li)));
  }
}

void expect_attention_row(const Trace::AttentionRow& r, int step, int layer, int head, int pos) {
  EXPECT_EQ(r.step, step);
  EXPECT_EQ(r.layer, layer);
  EXPECT_EQ(r.head, head);
  EXPECT_EQ(r.position, pos);
  ASSERT_EQ(r.weights.size(), size_t(pos) + 1);
  for (int key = 0; key <= pos; ++key) EXPECT_EQ(r.weights[size_t(key)], test::row_weight_at(pos, layer, head, key));
}

TEST(TraceStore, SnapshotHoldsExactlyWhatWasAppended) {
  TraceStoreOptions options;
  options.chunk_tokens = 4;  // the 6-token prefill gets a chunk of its own; decode steps share one
  options.clock = ticking_clock();
  TraceStore store(options);
  EXPECT_EQ(store.size(), 0);
  EXPECT_EQ(store.snapshot().materialize().size(), 0);

  store.set_metadata_json(R"({"model":"tiny"})");
  EXPECT_EQ(store.begin_segment(R"({"mode":"think"})"), 0);
  store.append(make_record(0, 6, test::full_parts({})));  // prefill: no attention rows
  for (int pos = 6; pos < 11; ++pos) store.append(make_record(pos, 1, test::full_parts()));
  store.add_forced_stop({9, 7, 8});
  EXPECT_EQ(store.size(), 11);

  const TraceSnapshot snap = store.snapshot();
  EXPECT_EQ(snap.size(), 11);
  EXPECT_EQ(snap.steps(), 6);
  EXPECT_EQ(snap.version(), store.version());
  const Trace t = snap.materialize();
  EXPECT_EQ(t.n_layers, 3);
  EXPECT_EQ(t.n_heads, 2);
  EXPECT_EQ(t.n_experts, 5);
  EXPECT_EQ(t.top_k, 2);
  EXPECT_EQ(t.attention_topk, 4);
  EXPECT_EQ(t.moe_layers, (std::vector<int>{1, 2}));
  EXPECT_EQ(t.metadata_json, R"({"model":"tiny"})");
  EXPECT_EQ(t.segments, (std::vector<std::string>{R"({"mode":"think"})"}));
  ASSERT_EQ(t.forced_stops.size(), 1u);
  EXPECT_EQ(t.forced_stops[0].position, 9);
  EXPECT_EQ(t.forced_stops[0].thinking_tokens, 7);
  EXPECT_EQ(t.forced_stops[0].budget, 8);

  ASSERT_EQ(t.size(), 11);
  for (int pos = 0; pos < 11; ++pos) {
    expect_compact_row(t, size_t(pos), pos, true, 2, 0, pos < 6 ? 0 : pos - 5);
    expect_detail_row(t, size_t(pos), pos);
    for (int m = 0; m < 2; ++m) EXPECT_EQ(t.shared_gate[size_t(pos * 2 + m)], test::gate_at(pos, m));
  }
  EXPECT_EQ(t.step_first_token, (std::vector<int32_t>{0, 6, 7, 8, 9, 10}));
  EXPECT_EQ(t.step_tokens, (std::vector<int32_t>{6, 1, 1, 1, 1, 1}));
  EXPECT_EQ(t.step_time_s, std::vector<double>(6, 0.25));
  // The clock reads 101, 102, ... at each append; the trace began at 101 - 0.25.
  EXPECT_EQ(t.step_end_s, (std::vector<double>{0.25, 1.25, 2.25, 3.25, 4.25, 5.25}));
  EXPECT_EQ(t.has_layer_time, std::vector<uint8_t>(6, 1));
  ASSERT_EQ(t.layer_time_s.size(), 18u);
  for (int s = 0; s < 6; ++s)
    for (int l = 0; l < 3; ++l)
      EXPECT_EQ(t.layer_time_s[size_t(s * 3 + l)], test::layer_time_at(t.step_first_token[size_t(s)], l));
  ASSERT_EQ(t.attention_rows.size(), 10u);  // two per decode step
  for (int s = 1; s <= 5; ++s) {
    expect_attention_row(t.attention_rows[size_t(2 * (s - 1))], s, 0, 1, s + 5);
    expect_attention_row(t.attention_rows[size_t(2 * (s - 1) + 1)], s, 2, 0, s + 5);
  }
}

TEST(TraceStore, SnapshotDoesNotChangeWhenTheStoreDoes) {
  TraceStoreOptions options;
  options.chunk_tokens = 2;
  TraceStore store(options);
  store.append(make_record(0, 1));
  const TraceSnapshot before = store.snapshot();
  const uint64_t v = store.version();
  store.append(make_record(1, 3));
  store.begin_segment("{}");
  store.append(make_record(4, 1));
  EXPECT_GT(store.version(), v);
  EXPECT_EQ(before.size(), 1);
  EXPECT_EQ(before.materialize().tokens, (std::vector<int32_t>{test::token_at(0)}));
  EXPECT_TRUE(before.materialize().segments.empty());
  const Trace now = store.snapshot().materialize();
  ASSERT_EQ(now.size(), 5);
  EXPECT_EQ(now.segment, (std::vector<int32_t>{-1, -1, -1, -1, 0}));

  store.clear();
  EXPECT_EQ(store.size(), 0);
  EXPECT_EQ(store.snapshot().materialize().size(), 0);
  EXPECT_EQ(before.materialize().size(), 1);
  // After clear() the shape is taken again from the next record.
  TinyShape other;
  other.n_experts = 9;
  store.append(make_record(0, 1, {}, other));
  EXPECT_EQ(store.snapshot().materialize().n_experts, 9);
}

TEST(TraceStore, TopKRaisedMidTraceWidensTheTrace) {
  TraceStoreOptions options;
  options.chunk_tokens = 8;
  TraceStore store(options);
  TinyShape shape;
  store.append(make_record(0, 3));  // k = 2
  const TraceSnapshot narrow = store.snapshot();
  RecordParts dense;
  dense.top_k = 5;  // every expert: "dense" mode
  store.append(make_record(3, 2, dense));
  RecordParts partly;  // k = 5 slots, 3 filled: a layer whose k is smaller
  partly.top_k = 5;
  partly.real_k = 3;
  store.append(make_record(5, 1, partly));
  store.append(make_record(6, 2));  // back to k = 2, inside the wide chunk
  store.append(make_record(8, 1));

  EXPECT_EQ(narrow.materialize().top_k, 2);
  EXPECT_EQ(narrow.materialize().expert_ids.size(), 3u * 2 * 2);
  const Trace t = store.snapshot().materialize();
  EXPECT_EQ(t.top_k, 5);
  ASSERT_EQ(t.expert_ids.size(), 9u * 2 * 5);
  for (int pos = 0; pos < 9; ++pos) {
    const int k = pos < 3 || pos >= 6 ? 2 : pos == 5 ? 3 : 5;
    expect_compact_row(t, size_t(pos), pos, true, k, -1, pos < 3 ? 0 : pos < 5 ? 1 : pos == 5 ? 2 : pos < 8 ? 3 : 4);
  }
}

TEST(TraceStore, LevelOffStepsAddTokensWithoutRouting) {
  TraceStoreOptions options;
  options.chunk_tokens = 4;
  TraceStore store(options);
  RecordParts off;
  off.routing = false;
  off.shaped = false;  // an off step may not even say the shape
  store.append(make_record(0, 2, off));
  EXPECT_EQ(store.snapshot().materialize().expert_ids.size(), 0u);
  store.append(make_record(2, 2));
  off.shaped = true;
  store.append(make_record(4, 1, off));
  store.append(make_record(5, 1));

  const Trace t = store.snapshot().materialize();
  EXPECT_EQ(t.n_layers, 3);
  ASSERT_EQ(t.size(), 6);
  EXPECT_EQ(t.has_routing, (std::vector<uint8_t>{0, 0, 1, 1, 0, 1}));
  for (int pos = 0; pos < 6; ++pos) {
    const bool routed = t.has_routing[size_t(pos)] != 0;
    const int step = pos < 2 ? 0 : pos < 4 ? 1 : pos - 2;
    expect_compact_row(t, size_t(pos), pos, routed, 2, -1, step);
  }
  // No detail was asked for: the detail arrays are empty, their masks all zero.
  EXPECT_TRUE(t.router_probs.empty());
  EXPECT_TRUE(t.attn_entropy.empty());
  EXPECT_TRUE(t.hidden_norm.empty());
  EXPECT_TRUE(t.shared_gate.empty());
  EXPECT_TRUE(t.layer_time_s.empty());
  EXPECT_EQ(t.has_attention, std::vector<uint8_t>(6, 0));
}

TEST(TraceStore, DetailOutsideTheWindowIsDroppedWithoutASpillFile) {
  TraceStoreOptions options;
  options.detail_window = 4;  // chunks shrink to 4 tokens to honour it
  TraceStore store(options);
  for (int pos = 0; pos < 20; ++pos) store.append(make_record(pos, 1, test::full_parts()));
  EXPECT_LE(store.detail_tokens_in_memory(), 8);
  EXPECT_TRUE(store.spill_error().empty());

  const Trace t = store.snapshot().materialize(SpilledDetail::Load);  // nothing to load: it was dropped
  ASSERT_EQ(t.size(), 20);
  for (int pos = 0; pos < 20; ++pos) {
    expect_compact_row(t, size_t(pos), pos, true, 2, -1, pos);
    if (pos >= 16) {
      expect_detail_row(t, size_t(pos), pos);
    } else {
      EXPECT_EQ(t.has_attention[size_t(pos)], 0) << pos;
      EXPECT_EQ(t.has_router_probs[size_t(pos)], 0) << pos;
      EXPECT_EQ(t.has_hidden_norm[size_t(pos)], 0) << pos;
      EXPECT_EQ(t.attn_entropy[size_t(pos) * 6], 0.0f);
    }
  }
  // Compact data and layer times stay; attention rows of dropped steps are gone.
  EXPECT_EQ(t.has_layer_time, std::vector<uint8_t>(20, 1));
  ASSERT_EQ(t.attention_rows.size(), 8u);
  expect_attention_row(t.attention_rows[0], 16, 0, 1, 16);
}

TEST(TraceStore, DetailOutsideTheWindowComesBackFromTheSpillFile) {
  test::ScratchDir dir;
  TraceStoreOptions options;
  options.detail_window = 4;
  options.spill_path = dir / "detail.spill";
  TraceStore store(options);
  EXPECT_FALSE(std::filesystem::exists(dir / "detail.spill"));  // unlinked as soon as it is open
  for (int pos = 0; pos < 20; ++pos) store.append(make_record(pos, 1, test::full_parts()));
  EXPECT_LE(store.detail_tokens_in_memory(), 8);
  EXPECT_TRUE(store.spill_error().empty());

  const TraceSnapshot snap = store.snapshot();
  const Trace live = snap.materialize();  // spilled rows left out
  EXPECT_EQ(live.has_attention[0], 0);
  EXPECT_EQ(live.has_attention[19], 1);

  const Trace full = snap.materialize(SpilledDetail::Load);
  ASSERT_EQ(full.size(), 20);
  for (int pos = 0; pos < 20; ++pos) {
    expect_compact_row(full, size_t(pos), pos, true, 2, -1, pos);
    expect_detail_row(full, size_t(pos), pos);
  }
  ASSERT_EQ(full.attention_rows.size(), 40u);
  for (int s = 0; s < 20; ++s) {
    expect_attention_row(full.attention_rows[size_t(2 * s)], s, 0, 1, s);
    expect_attention_row(full.attention_rows[size_t(2 * s + 1)], s, 2, 0, s);
  }

  // A snapshot keeps its spill file readable after clear() starts a new one.
  store.clear();
  for (int pos = 0; pos < 10; ++pos) store.append(make_record(pos, 1, test::full_parts()));
  const Trace again = snap.materialize(SpilledDetail::Load);
  for (int pos = 0; pos < 20; ++pos) expect_detail_row(again, size_t(pos), pos);
  const Trace fresh = store.snapshot().materialize(SpilledDetail::Load);
  ASSERT_EQ(fresh.size(), 10);
  for (int pos = 0; pos < 10; ++pos) expect_detail_row(fresh, size_t(pos), pos);
}

TEST(TraceStore, ManySmallChunksAcrossSeveralBlocks) {
  test::ScratchDir dir;
  TraceStoreOptions options;
  options.chunk_tokens = 2;
  options.detail_window = 3;
  options.spill_path = dir / "blocks.spill";
  TraceStore store(options);
  constexpr int kTokens = 301;  // 150 sealed chunks: three blocks of chunk pointers
  for (int pos = 0; pos < kTokens; ++pos) store.append(make_record(pos, 1, test::full_parts({{1, 0}})));
  EXPECT_LE(store.detail_tokens_in_memory(), 5);
  const Trace live = store.snapshot().materialize();
  EXPECT_EQ(live.has_attention[kTokens - 6], 0);
  EXPECT_EQ(live.has_attention[kTokens - 1], 1);
  const Trace t = store.snapshot().materialize(SpilledDetail::Load);
  ASSERT_EQ(t.size(), kTokens);
  ASSERT_EQ(t.attention_rows.size(), size_t(kTokens));
  for (int pos = 0; pos < kTokens; ++pos) {
    expect_compact_row(t, size_t(pos), pos, true, 2, -1, pos);
    expect_detail_row(t, size_t(pos), pos);
    expect_attention_row(t.attention_rows[size_t(pos)], pos, 1, 0, pos);
  }
}

TEST(TraceStore, LongPrefillGetsAChunkOfItsOwn) {
  TraceStoreOptions options;
  options.chunk_tokens = 4;
  options.detail_window = 4;
  TraceStore store(options);
  store.append(make_record(0, 1, test::full_parts({})));
  store.append(make_record(1, 13, test::full_parts({})));
  store.append(make_record(14, 1, test::full_parts({})));
  const Trace t = store.snapshot().materialize();
  ASSERT_EQ(t.size(), 15);
  EXPECT_EQ(t.step_tokens, (std::vector<int32_t>{1, 13, 1}));
  for (int pos = 0; pos < 15; ++pos) expect_compact_row(t, size_t(pos), pos, true, 2, -1, pos == 0 ? 0 : pos < 14 ? 1 : 2);
  // The 13-token chunk is older than the window as a whole only once 4 more tokens follow it.
  EXPECT_EQ(t.has_attention[1], 1);
  EXPECT_EQ(t.has_attention[0], 0);
}

TEST(TraceStore, RejectsRecordsThatDisagreeWithTheirShape) {
  TraceStore store;
  store.append(make_record(0, 2));
  TinyShape other;
  other.n_layers = 4;
  other.moe_layers = {1, 3};
  EXPECT_THROW(store.append(make_record(2, 1, {}, other)), std::invalid_argument);

  StepRecord short_ids = make_record(2, 1);
  short_ids.expert_ids.pop_back();
  EXPECT_THROW(store.append(short_ids), std::invalid_argument);
  StepRecord bad_expert = make_record(2, 1);
  bad_expert.expert_ids[0] = 5;
  EXPECT_THROW(store.append(bad_expert), std::invalid_argument);
  StepRecord bad_phase = make_record(2, 1);
  bad_phase.phases[0] = 9;
  EXPECT_THROW(store.append(bad_phase), std::invalid_argument);
  StepRecord bad_row = make_record(2, 1, test::full_parts());
  bad_row.attention_rows[0].weights.pop_back();
  EXPECT_THROW(store.append(bad_row), std::invalid_argument);
  StepRecord bad_tokens = make_record(2, 1);
  bad_tokens.n_tokens = 2;
  EXPECT_THROW(store.append(bad_tokens), std::invalid_argument);
  EXPECT_EQ(store.size(), 2);  // nothing was added by the rejected records
  store.append(make_record(2, 1));
  EXPECT_EQ(store.snapshot().materialize().size(), 3);
}

// The GUI takes snapshots (~30 a second in the app, as fast as it can here) while the engine thread
// appends: every snapshot must be a consistent prefix of what was appended. Run under TSan/ASan.
TEST(TraceStore, SnapshotsWhileAnotherThreadAppends) {
  test::ScratchDir dir;
  for (const bool spill : {false, true}) {
    SCOPED_TRACE(spill ? "with a spill file" : "without a spill file");
    TraceStoreOptions options;
    options.chunk_tokens = 16;
    options.detail_window = 48;
    if (spill) options.spill_path = dir / "race.spill";
    TraceStore store(options);
    constexpr int kSteps = 600;
    std::atomic<bool> done{false};
    std::atomic<int> checked{0};
    std::thread engine([&] {
      int pos = 0;
      for (int s = 0; s < kSteps; ++s) {
        // Every 20 steps, wait for the reader to take a snapshot, so the two really interleave even
        // on a busy machine.
        if (s % 20 == 0)
          for (const int seen = checked.load(); checked.load() == seen;) std::this_thread::yield();
        const int n = s % 50 == 0 ? 20 : 1;  // now and then a prefill longer than a chunk
        RecordParts p = test::full_parts(s % 3 == 0 ? std::vector<AttentionRowRequest>{{1, 1}}
                                                    : std::vector<AttentionRowRequest>{});
        if (s % 97 == 5) p.top_k = 4;  // top-k raised for a step now and then
        store.append(make_record(pos, n, p));
        pos += n;
        if (s == kSteps / 2) store.add_forced_stop({pos, 3, 3});
      }
      done = true;
    });

    // Every snapshot is a consistent prefix; every fourth one also reads the spilled detail back.
    int64_t last_size = 0;
    uint64_t last_version = 0;
    auto check = [&](const TraceSnapshot& snap, bool load_spilled) {
      EXPECT_GE(snap.size(), last_size);
      EXPECT_GE(snap.version(), last_version);
      last_size = snap.size();
      last_version = snap.version();
      const Trace t = snap.materialize(load_spilled ? SpilledDetail::Load : SpilledDetail::Omit);
      ASSERT_EQ(t.size(), snap.size());
      ASSERT_EQ(int64_t(t.step_first_token.size()), snap.steps());
      for (size_t row = 0; row < t.tokens.size(); ++row) {
        ASSERT_EQ(t.tokens[row], test::token_at(int(row)));
        ASSERT_EQ(t.positions[row], int(row));
        ASSERT_EQ(t.expert_ids[row * 2 * size_t(t.top_k)], test::expert_at(int(row), 0, 0, 5));
        if (t.has_attention[row]) {
          ASSERT_EQ(t.attn_max[row * 6 + 5], test::attn_at(1, int(row), 2, 1));
        }
        if (spill && load_spilled) {
          ASSERT_EQ(t.has_attention[row], 1) << row;
        }
      }
      for (const auto& r : t.attention_rows) ASSERT_EQ(r.weights.size(), size_t(r.position) + 1);
    };
    while (!done || checked < 3) {
      // After a failure keep counting (the engine thread waits for it) but stop checking.
      if (!HasFailure()) check(store.snapshot(), checked % 4 == 0);
      ++checked;
    }
    engine.join();
    EXPECT_GE(checked.load(), kSteps / 20);
    const Trace t = store.snapshot().materialize(SpilledDetail::Load);
    EXPECT_EQ(t.size(), kSteps - kSteps / 50 + 20 * (kSteps / 50));
    EXPECT_EQ(t.top_k, 4);
    EXPECT_EQ(t.forced_stops.size(), 1u);
  }
}

TEST(TraceRecorder, ForwardsRecordsAndAsksForItsLevel) {
  TraceStore store;
  TraceRecorder recorder(store, HookLevel::Off);
  EXPECT_FALSE(recorder.ask().any());
  recorder.set_level(HookLevel::Routing);
  EXPECT_TRUE(recorder.ask().routing);
  EXPECT_FALSE(recorder.ask().router_probs);
  recorder.set_attention_rows({{1, 0}});
  std::thread gui([&] { recorder.set_level(HookLevel::AttentionMaps); });
  gui.join();
  EXPECT_EQ(recorder.level(), HookLevel::AttentionMaps);
  const HookRequest full = recorder.ask();
  EXPECT_TRUE(full.routing);
  EXPECT_TRUE(full.attention_stats);
  ASSERT_EQ(full.attention_rows.size(), 1u);
  EXPECT_EQ(full.attention_rows[0].layer, 1);

  StepObserver& observer = recorder;
  observer.observe(make_record(0, 3));
  observer.observe(make_record(3, 1));
  EXPECT_EQ(store.size(), 4);
  EXPECT_EQ(&recorder.store(), &store);
}

}  // namespace
}  // namespace moe::inspect
