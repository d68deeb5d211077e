// The trace file: every array survives save → load exactly (spilled detail included), and a truncated,
// corrupted or foreign file gives an EngineError naming the file and the field.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/safetensors.h"
#include "inspect/trace_file.h"
#include "inspect/trace_store.h"
#include "tests/inspect/trace_records.h"
#include "tests/support/test_support.h"

namespace moe::inspect {
namespace {

using test::make_record;
using test::RecordParts;

// A trace with every kind of array: prefill and decode steps at the full level with attention rows,
// a top-k raised mid-trace, a level-off step, two segments, forced stops, metadata.
Trace rich_trace() {
  TraceStoreOptions options;
  options.chunk_tokens = 4;
  double now = 0;
  options.clock = [&now] { return now += 0.5; };
  TraceStore store(options);
  store.set_metadata_json(R"({"model":"tiny","prompt":"12 + 30 = ?","engine":"0.1.0"})");
  store.begin_segment(R"({"mode":"think","budget":8})");
  store.append(make_record(0, 5, test::full_parts({})));
  for (int pos = 5; pos < 9; ++pos) store.append(make_record(pos, 1, test::full_parts()));
  store.add_forced_stop({9, 4, 4});
  store.begin_segment(R"({"mode":"no-think","top_k":5})");
  RecordParts dense = test::full_parts({{1, 1}});
  dense.top_k = 5;
  store.append(make_record(9, 1, dense));
  RecordParts off;
  off.routing = false;
  store.append(make_record(10, 2, off));
  store.append(make_record(12, 1));
  store.add_forced_stop({12, 0, -1});
  return store.snapshot().materialize();
}

void expect_same(const Trace& a, const Trace& b) {
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_experts, b.n_experts);
  EXPECT_EQ(a.top_k, b.top_k);
  EXPECT_EQ(a.attention_topk, b.attention_topk);
  EXPECT_EQ(a.moe_layers, b.moe_layers);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.phases, b.phases);
  EXPECT_EQ(a.forced, b.forced);
  EXPECT_EQ(a.generated, b.generated);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.segment, b.segment);
  EXPECT_EQ(a.has_routing, b.has_routing);
  EXPECT_EQ(a.expert_ids, b.expert_ids);
  EXPECT_EQ(a.expert_weights, b.expert_weights);
  EXPECT_EQ(a.router_entropy, b.router_entropy);
  EXPECT_EQ(a.top1_margin, b.top1_margin);
  EXPECT_EQ(a.shared_gate, b.shared_gate);
  EXPECT_EQ(a.has_router_probs, b.has_router_probs);
  EXPECT_EQ(a.router_probs, b.router_probs);
  EXPECT_EQ(a.has_attention, b.has_attention);
  EXPECT_EQ(a.attn_entropy, b.attn_entropy);
  EXPECT_EQ(a.attn_max, b.attn_max);
  EXPECT_EQ(a.attn_topk_mass, b.attn_topk_mass);
  EXPECT_EQ(a.attn_first_mass, b.attn_first_mass);
  EXPECT_EQ(a.has_hidden_norm, b.has_hidden_norm);
  EXPECT_EQ(a.hidden_norm, b.hidden_norm);
  EXPECT_EQ(a.step_first_token, b.step_first_token);
  EXPECT_EQ(a.step_tokens, b.step_tokens);
  EXPECT_EQ(a.step_time_s, b.step_time_s);
  EXPECT_EQ(a.step_end_s, b.step_end_s);
  EXPECT_EQ(a.has_layer_time, b.has_layer_time);
  EXPECT_EQ(a.layer_time_s, b.layer_time_s);
  ASSERT_EQ(a.attention_rows.size(), b.attention_rows.size());
  for (size_t i = 0; i < a.attention_rows.size(); ++i) {
    EXPECT_EQ(a.attention_rows[i].step, b.attention_rows[i].step);
    EXPECT_EQ(a.attention_rows[i].layer, b.attention_rows[i].layer);
    EXPECT_EQ(a.attention_rows[i].head, b.attention_rows[i].head);
    EXPECT_EQ(a.attention_rows[i].position, b.attention_rows[i].position);
    EXPECT_EQ(a.attention_rows[i].weights, b.attention_rows[i].weights);
  }
  ASSERT_EQ(a.forced_stops.size(), b.forced_stops.size());
  for (size_t i = 0; i < a.forced_stops.size(); ++i) {
    EXPECT_EQ(a.forced_stops[i].position, b.forced_stops[i].position);
    EXPECT_EQ(a.forced_stops[i].thinking_tokens, b.forced_stops[i].thinking_tokens);
    EXPECT_EQ(a.forced_stops[i].budget, b.forced_stops[i].budget);
  }
  ASSERT_EQ(a.segments.size(), b.segments.size());
  for (size_t i = 0; i < a.segments.size(); ++i)
    EXPECT_EQ(nlohmann::json::parse(a.segments[i]), nlohmann::json::parse(b.segments[i]));
  EXPECT_EQ(a.metadata_json, b.metadata_json);
}

TEST(TraceFile, RoundTripKeepsEveryArray) {
  test::ScratchDir dir;
  const Trace t = rich_trace();
  ASSERT_EQ(t.size(), 13);
  ASSERT_EQ(t.top_k, 5);
  ASSERT_FALSE(t.shared_gate.empty());
  ASSERT_FALSE(t.attention_rows.empty());
  const auto path = dir / "run.trace.safetensors";
  save_trace(t, path);
  EXPECT_FALSE(std::filesystem::exists(dir / "run.trace.safetensors.tmp"));
  expect_same(t, load_trace(path));

  // What Python sees: the stable names, dtypes and shapes, and the metadata.
  const auto f = SafetensorsFile::open(path);
  const auto& tensors = f->tensors();
  EXPECT_EQ(tensors.at("routing.ids").shape, (std::vector<int64_t>{13, 2, 5}));
  EXPECT_EQ(tensors.at("routing.ids").dtype, DType::I32);
  EXPECT_EQ(tensors.at("router.probs").shape, (std::vector<int64_t>{13, 2, 5}));
  EXPECT_EQ(tensors.at("attn.entropy").shape, (std::vector<int64_t>{13, 3, 2}));
  EXPECT_EQ(tensors.at("phases").dtype, DType::U8);
  EXPECT_EQ(tensors.at("step.time_s").dtype, DType::F64);
  EXPECT_EQ(tensors.at("layer.time_s").shape, (std::vector<int64_t>{8, 3}));
  EXPECT_EQ(tensors.at("forced_stops").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(tensors.at("attn_rows.index").shape, (std::vector<int64_t>{9, 4}));
  EXPECT_EQ(tensors.at("attn_rows.offsets").dtype, DType::I64);
  EXPECT_EQ(f->metadata().at("format"), "moe-workbench-trace");
  EXPECT_EQ(f->metadata().at("version"), "1");
  EXPECT_EQ(f->metadata().at("top_k"), "5");
  const auto segments = nlohmann::json::parse(f->metadata().at("segments"));
  ASSERT_TRUE(segments.is_array());
  EXPECT_EQ(segments[1]["mode"], "no-think");
}

TEST(TraceFile, EmptyTraceAndRoutingOnlyTraceRoundTrip) {
  test::ScratchDir dir;
  save_trace(Trace{}, dir / "empty.safetensors");
  expect_same(Trace{}, load_trace(dir / "empty.safetensors"));

  TraceStore store;
  store.append(make_record(0, 3));
  const Trace t = store.snapshot().materialize();
  save_trace(t, dir / "routing.safetensors");
  const auto f = SafetensorsFile::open(dir / "routing.safetensors");
  EXPECT_FALSE(f->tensors().count("router.probs"));  // absent detail is left out, not zero-filled
  EXPECT_FALSE(f->tensors().count("attn.entropy"));
  EXPECT_FALSE(f->tensors().count("attn_rows.index"));
  EXPECT_TRUE(f->tensors().count("has_attention"));
  expect_same(t, load_trace(dir / "routing.safetensors"));
}

TEST(TraceFile, SpilledDetailIsSaved) {
  test::ScratchDir dir;
  TraceStoreOptions options;
  options.detail_window = 4;
  options.spill_path = dir / "spill.bin";
  TraceStore store(options);
  for (int pos = 0; pos < 20; ++pos) store.append(make_record(pos, 1, test::full_parts()));
  ASSERT_EQ(store.snapshot().materialize().has_attention[0], 0);  // not in memory any more

  const auto path = dir / "spilled.trace.safetensors";
  save_trace(store.snapshot(), path);
  const Trace t = load_trace(path);
  ASSERT_EQ(t.size(), 20);
  EXPECT_EQ(t.has_attention, std::vector<uint8_t>(20, 1));
  EXPECT_EQ(t.has_router_probs, std::vector<uint8_t>(20, 1));
  EXPECT_EQ(t.has_hidden_norm, std::vector<uint8_t>(20, 1));
  for (int pos = 0; pos < 20; ++pos) {
    for (int l = 0; l < 3; ++l) {
      for (int h = 0; h < 2; ++h) {
        const size_t at = size_t((pos * 3 + l) * 2 + h);
        EXPECT_EQ(t.attn_entropy[at], test::attn_at(0, pos, l, h));
        EXPECT_EQ(t.attn_first_mass[at], test::attn_at(3, pos, l, h));
      }
      EXPECT_EQ(t.hidden_norm[size_t(pos * 3 + l)], test::norm_at(pos, l));
    }
    EXPECT_EQ(t.router_probs[size_t(pos * 10 + 7)], test::prob_at(pos, 1, 2));
  }
  ASSERT_EQ(t.attention_rows.size(), 40u);
  EXPECT_EQ(t.attention_rows[0].position, 0);
  EXPECT_EQ(t.attention_rows[39].weights.size(), 20u);
  expect_same(store.snapshot().materialize(SpilledDetail::Load), t);
}

TEST(TraceFile, TokensCsvHasOneRowPerTokenAndMoeLayer) {
  test::ScratchDir dir;
  const Trace t = rich_trace();
  write_trace_tokens_csv(t, dir / "tokens.csv");
  const std::string csv = test::read_file(dir / "tokens.csv");
  std::vector<std::string> lines;
  for (size_t at = 0, next; at < csv.size(); at = next + 1) {
    next = csv.find('\n', at);
    lines.push_back(csv.substr(at, next - at));
  }
  ASSERT_EQ(lines.size(), 1u + 13 * 2);
  EXPECT_EQ(lines[0],
            "row,token,position,phase,step,segment,forced,layer,entropy,top1_margin,expert_0,expert_1,expert_2,"
            "expert_3,expert_4,weight_0,weight_1,weight_2,weight_3,weight_4");
  // Row 3, MoE layer 2 (ordinal 1): position 3 is an answer token (phase 3) in step 0, segment 0,
  // forced; top-2 in a top-5 trace leaves three empty slots.
  const std::string e0 = std::to_string(test::expert_at(3, 1, 0, 5)), e1 = std::to_string(test::expert_at(3, 1, 1, 5));
  EXPECT_EQ(lines[1 + 3 * 2 + 1].rfind("3,1003,3," + std::string(phase_name(Phase::Answer)) + ",0,0,1,2,", 0), 0u)
      << lines[1 + 3 * 2 + 1];
  EXPECT_NE(lines[1 + 3 * 2 + 1].find("," + e0 + "," + e1 + ",,,,"), std::string::npos) << lines[1 + 3 * 2 + 1];
  // Row 10 (MoE layer 1) ran at level off: no routing cells.
  const std::string& off = lines[1 + 10 * 2];
  EXPECT_EQ(off.substr(off.size() - 13), "1,,,,,,,,,,,,") << off;
}

// ---------------------------------------------------------------------------------------------------
// Damaged and foreign files

// A trace file's tensors and metadata, editable, written back with write_safetensors.
struct EditableFile {
  struct Array {
    DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Array> arrays;
  std::map<std::string, std::string> metadata;

  explicit EditableFile(const std::filesystem::path& path) {
    const auto f = SafetensorsFile::open(path);
    for (const auto& [name, v] : f->tensors())
      arrays[name] = {v.dtype, v.shape, std::string(reinterpret_cast<const char*>(v.data), v.nbytes)};
    metadata = f->metadata();
  }
  void write(const std::filesystem::path& path) const {
    std::vector<TensorToWrite> tensors;
    for (const auto& [name, a] : arrays) tensors.push_back({name, a.dtype, a.shape, a.bytes.data(), a.bytes.size()});
    write_safetensors(path, tensors, metadata);
  }
  template <class T>
  T* values(const std::string& name) {
    return reinterpret_cast<T*>(arrays.at(name).bytes.data());
  }
};

// Rewrites the JSON header of a safetensors file in place (the data stays as it is).
void edit_header(const std::filesystem::path& path, const std::function<void(nlohmann::json&)>& edit) {
  const std::string bytes = test::read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  edit(header);
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint64_t(text.size()) >> (8 * i));
  test::write_file(path, out + text + bytes.substr(8 + n));
}

// load_trace(path) must throw an EngineError that names the file and `field`.
void expect_error(const std::filesystem::path& path, const std::string& field, const std::string& words = "") {
  try {
    load_trace(path);
    ADD_FAILURE() << "loaded " << path << " without an error (expected one about " << field << ")";
  } catch (const EngineError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
    EXPECT_NE(what.find("'" + field + "'"), std::string::npos) << what;
    EXPECT_NE(what.find(words), std::string::npos) << what;
  }
}

class DamagedTraceFile : public ::testing::Test {
 protected:
  void SetUp() override {
    good = dir / "good.trace.safetensors";
    save_trace(rich_trace(), good);
  }
  // A copy of the good file with `edit` applied to its arrays and metadata.
  std::filesystem::path edited(const std::function<void(EditableFile&)>& edit) {
    EditableFile f(good);
    edit(f);
    const auto path = dir / ("edited" + std::to_string(++count) + ".safetensors");
    f.write(path);
    return path;
  }
  test::ScratchDir dir;
  std::filesystem::path good;
  int count = 0;
};

TEST_F(DamagedTraceFile, TruncatedFile) {
  const std::string bytes = test::read_file(good);
  const auto path = dir.write("truncated.safetensors", bytes.substr(0, bytes.size() - 100));
  expect_error(path, "attn_rows.weights", "truncated");  // the last array runs past the end
  expect_error(dir.write("stub.safetensors", bytes.substr(0, 5)), "header length", "truncated");
  expect_error(dir.write("cut_header.safetensors", bytes.substr(0, 200)), "header length");
}

TEST_F(DamagedTraceFile, HeaderThatLiesAboutAShape) {
  // A shape that does not fit the bytes: caught by the safetensors reader.
  const auto path = dir / "lying.safetensors";
  std::filesystem::copy_file(good, path);
  edit_header(path, [](nlohmann::json& h) { h["routing.ids"]["shape"] = {13, 2, 6}; });
  expect_error(path, "routing.ids", "shape");
  // A shape with the right number of bytes but the wrong dimensions: caught by the trace reader.
  const auto reshaped = dir / "reshaped.safetensors";
  std::filesystem::copy_file(good, reshaped);
  edit_header(reshaped, [](nlohmann::json& h) { h["routing.ids"]["shape"] = {26, 5}; });
  expect_error(reshaped, "routing.ids", "should be [13, 2, 5]");
  expect_error(edited([](EditableFile& f) { f.metadata["top_k"] = "4"; }), "routing.ids", "should be [13, 2, 4]");
  expect_error(edited([](EditableFile& f) { f.arrays.at("step.first_token").shape = {4, 2}; }), "step.first_token",
               "dimension");
}

TEST_F(DamagedTraceFile, WrongDtype) {
  expect_error(edited([](EditableFile& f) { f.arrays.at("tokens").dtype = DType::F32; }), "tokens",
               "dtype F32 should be I32");
  expect_error(edited([](EditableFile& f) { f.arrays.at("step.time_s").dtype = DType::I64; }), "step.time_s",
               "should be F64");
}

TEST_F(DamagedTraceFile, ValuesOutOfRange) {
  expect_error(edited([](EditableFile& f) { f.values<uint8_t>("phases")[4] = 9; }), "phases", "value 9 at index 4");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("routing.ids")[7] = 5; }), "routing.ids",
               "value 5 at index 7");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("routing.ids")[0] = -2; }), "routing.ids");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("positions")[2] = -1; }), "positions");
  expect_error(edited([](EditableFile& f) { f.values<uint8_t>("has_attention")[0] = 2; }), "has_attention");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("segment")[0] = 2; }), "segment");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("step")[3] = 1; }), "step", "row 3");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("step.tokens")[0] = 6; }), "step.first_token");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("attn_rows.index")[1] = 7; }), "attn_rows.index");
  expect_error(edited([](EditableFile& f) { f.values<int64_t>("attn_rows.offsets")[1] += 1; }), "attn_rows.offsets");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("moe_layers")[1] = 3; }), "moe_layers");
  expect_error(edited([](EditableFile& f) { f.values<int32_t>("forced_stops")[2] = -5; }), "forced_stops");
}

TEST_F(DamagedTraceFile, MissingOrWrongMetadataAndArrays) {
  expect_error(edited([](EditableFile& f) { f.metadata.erase("format"); }), "format", "not a MoE Workbench trace");
  expect_error(edited([](EditableFile& f) { f.metadata["format"] = "pytorch"; }), "format", "\"pytorch\"");
  expect_error(edited([](EditableFile& f) { f.metadata["version"] = "2"; }), "version", "\"2\"");
  expect_error(edited([](EditableFile& f) { f.metadata["n_experts"] = "many"; }), "n_experts");
  expect_error(edited([](EditableFile& f) { f.metadata["n_layers"] = "99999999999999999999"; }), "n_layers");
  expect_error(edited([](EditableFile& f) { f.metadata["segments"] = "{"; }), "segments");
  expect_error(edited([](EditableFile& f) { f.arrays.erase("phases"); }), "phases", "missing");
  expect_error(edited([](EditableFile& f) { f.arrays.erase("router.probs"); }), "router.probs",
               "has_router_probs marks row 0");
  expect_error(edited([](EditableFile& f) { f.arrays.erase("attn.max"); }), "attn.max", "missing");
}

TEST_F(DamagedTraceFile, ForeignAndGarbageFiles) {
  // A model checkpoint, not a trace.
  const float w[4] = {1, 2, 3, 4};
  write_safetensors(dir / "model.safetensors", {{"model.embed_tokens.weight", DType::F32, {2, 2}, w, sizeof w}});
  expect_error(dir / "model.safetensors", "format", "not a MoE Workbench trace");
  expect_error(dir.write("notes.txt", "these are not the bytes you are looking for"), "header length");
  try {
    load_trace(dir / "absent.safetensors");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.safetensors"), std::string::npos);
  }
}

// Random damage anywhere in the file: an EngineError or a valid Trace, never a crash (ASan/UBSan in CI).
TEST_F(DamagedTraceFile, RandomByteFlipsNeverCrash) {
  const std::string bytes = test::read_file(good);
  std::mt19937 rng(7);
  int errors = 0;
  for (int i = 0; i < 300; ++i) {
    std::string damaged = bytes;
    const int flips = 1 + int(rng() % 4);
    for (int j = 0; j < flips; ++j) damaged[rng() % damaged.size()] = char(rng());
    if (i % 10 == 0) damaged.resize(rng() % damaged.size());
    const auto path = dir.write("flipped.safetensors", damaged);
    try {
      const Trace t = load_trace(path);
      EXPECT_EQ(t.tokens.size(), t.phases.size());
    } catch (const EngineError& e) {
      ++errors;
      EXPECT_NE(std::string(e.what()).find("flipped.safetensors"), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(errors, 0);
}

TEST(TraceFileSave, RefusesATraceWhoseColumnsDisagree) {
  test::ScratchDir dir;
  Trace t = rich_trace();
  t.expert_weights.pop_back();
  try {
    save_trace(t, dir / "bad.safetensors");
    ADD_FAILURE() << "saved an inconsistent trace";
  } catch (const EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("'routing.weights'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.safetensors"));
}

}  // namespace
}  // namespace moe::inspect
