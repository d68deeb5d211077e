#include "inspect/trace_file.h"

#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/safetensors.h"

namespace moe::inspect {

namespace {

[[noreturn]] void fail(const std::string& file, const std::string& field, const std::string& message) {
  throw EngineError(file, field, message);
}

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, uint8_t>) return DType::U8;
  else if constexpr (std::is_same_v<T, int32_t>) return DType::I32;
  else if constexpr (std::is_same_v<T, int64_t>) return DType::I64;
  else if constexpr (std::is_same_v<T, float>) return DType::F32;
  else {
    static_assert(std::is_same_v<T, double>);
    return DType::F64;
  }
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Metadata keys for the shape.
constexpr const char* kShapeKeys[] = {"n_layers", "n_heads", "n_experts", "top_k", "attention_topk"};
// Upper bound for every shape field: far above any model, low enough that products of a few stay in
// int64 and ints.
constexpr int64_t kMaxShapeField = int64_t(1) << 20;

// ---------------------------------------------------------------------------------------------------
// Saving

class TensorList {
 public:
  explicit TensorList(std::string file) : file_(std::move(file)) {}

  // Adds `values` as `name` with `shape`; the Trace must hold exactly that many values.
  template <class T>
  void add(const std::string& name, std::vector<int64_t> shape, const std::vector<T>& values) {
    if (int64_t(values.size()) != product(shape))
      fail(file_, name, "the trace holds " + std::to_string(values.size()) + " values but shape " + shape_text(shape) +
                            " needs " + std::to_string(product(shape)) + " (its columns disagree with its shape)");
    tensors_.push_back({name, dtype_of<T>(), std::move(shape), values.data(), values.size() * sizeof(T)});
  }
  // Adds it when the Trace has it (an empty vector means no row has it).
  template <class T>
  void add_optional(const std::string& name, std::vector<int64_t> shape, const std::vector<T>& values) {
    if (!values.empty()) add(name, std::move(shape), values);
  }
  // A mask says some rows are real: the array they refer to must be there.
  void require_if_marked(const std::string& name, bool present, const std::vector<uint8_t>& mask,
                         const char* mask_name) {
    if (present) return;
    for (uint8_t v : mask)
      if (v) fail(file_, name, std::string("is empty but ") + mask_name + " marks rows as recorded");
  }
  const std::vector<TensorToWrite>& tensors() const { return tensors_; }

 private:
  std::string file_;
  std::vector<TensorToWrite> tensors_;
};

std::string segments_json(const std::vector<std::string>& segments) {
  nlohmann::json array = nlohmann::json::array();
  for (const std::string& s : segments) {
    // Settings are JSON objects; text that is not JSON is kept as a JSON string rather than lost.
    nlohmann::json v = nlohmann::json::parse(s, nullptr, false);
    array.push_back(v.is_discarded() ? nlohmann::json(s) : std::move(v));
  }
  return array.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// ---------------------------------------------------------------------------------------------------
// Loading

class ArrayReader {
 public:
  explicit ArrayReader(const SafetensorsFile& f) : f_(f), file_(f.path()) {}

  const TensorView* find(const std::string& name) const {
    const auto it = f_.tensors().find(name);
    return it == f_.tensors().end() ? nullptr : &it->second;
  }

  // The shape of a required array of the given rank and dtype, to learn a count from (N, M, S ...).
  std::vector<int64_t> shape_of(const std::string& name, DType dtype, size_t rank, const char* dims) const {
    const TensorView* t = find(name);
    if (!t) fail(file_, name, "missing (not a MoE Workbench trace, or a damaged one)");
    check_dtype(*t, dtype);
    if (t->shape.size() != rank)
      fail(file_, name, "shape " + shape_text(t->shape) + " should have " + std::to_string(rank) + " dimension" +
                            (rank == 1 ? "" : "s") + " (" + dims + ")");
    return t->shape;
  }

  // Reads `name`, which must have `shape` (dims names its dimensions for the message). Absent and not
  // required: an empty vector.
  template <class T>
  std::vector<T> read(const std::string& name, const std::vector<int64_t>& shape, const char* dims,
                      bool required = true) const {
    const TensorView* t = find(name);
    if (!t) {
      if (required) fail(file_, name, "missing (not a MoE Workbench trace, or a damaged one)");
      return {};
    }
    check_dtype(*t, dtype_of<T>());
    if (t->shape != shape)
      fail(file_, name, "shape " + shape_text(t->shape) + " should be " + shape_text(shape) + " (" + dims + ")");
    std::vector<T> out(size_t(t->numel()));
    if (!out.empty()) std::memcpy(out.data(), t->data, out.size() * sizeof(T));  // the mapping may be unaligned
    return out;
  }

  const std::string& file() const { return file_; }

 private:
  void check_dtype(const TensorView& t, DType expected) const {
    if (t.dtype != expected)
      fail(file_, t.name,
           "dtype " + std::string(dtype_name(t.dtype)) + " should be " + std::string(dtype_name(expected)));
  }
  const SafetensorsFile& f_;
  std::string file_;
};

std::string row_text(size_t i) { return "row " + std::to_string(i) + ": "; }

template <class T>
void check_range(const std::string& file, const char* name, const std::vector<T>& values, int64_t lo, int64_t hi,
                 const char* what) {
  for (size_t i = 0; i < values.size(); ++i)
    if (int64_t(values[i]) < lo || int64_t(values[i]) >= hi)
      fail(file, name, "value " + std::to_string(int64_t(values[i])) + " at index " + std::to_string(i) +
                           " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + ") (" + what + ")");
}

void check_mask(const std::string& file, const char* name, const std::vector<uint8_t>& mask) {
  check_range(file, name, mask, 0, 2, "a mask holds 0 or 1");
}

// A mask marks rows as recorded: the array must be there.
void require_if_marked(const std::string& file, const char* name, bool present, const std::vector<uint8_t>& mask,
                       const char* mask_name) {
  if (present) return;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) fail(file, name, std::string("missing, but ") + mask_name + " marks " + row_text(i) + "as recorded");
}

int parse_shape_field(const SafetensorsFile& f, const char* key) {
  const auto it = f.metadata().find(key);
  if (it == f.metadata().end()) fail(f.path(), key, "missing from the metadata");
  const std::string& s = it->second;
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0 || v > kMaxShapeField)
    fail(f.path(), key, "\"" + s.substr(0, 40) + "\" is not an integer in [0, " + std::to_string(kMaxShapeField) + "]");
  return int(v);
}

}  // namespace

// -----------------------------------------------------------------------------------------------------

void save_trace(const Trace& t, const std::filesystem::path& path) {
  const std::string file = path.string();
  const int64_t n = t.size(), m = t.n_moe(), k = t.top_k, e = t.n_experts, l = t.n_layers, h = t.n_heads;
  const int64_t s = int64_t(t.step_first_token.size());
  if (n > std::numeric_limits<int32_t>::max()) fail(file, "tokens", "more than 2^31 tokens");

  TensorList list(file);
  list.add("tokens", {n}, t.tokens);
  list.add("positions", {n}, t.positions);
  list.add("phases", {n}, t.phases);
  list.add("forced", {n}, t.forced);
  list.add("generated", {n}, t.generated);
  list.add("step", {n}, t.step);
  list.add("segment", {n}, t.segment);
  list.add("has_routing", {n}, t.has_routing);
  list.add("has_router_probs", {n}, t.has_router_probs);
  list.add("has_attention", {n}, t.has_attention);
  list.add("has_hidden_norm", {n}, t.has_hidden_norm);
  std::vector<int32_t> moe_layers(t.moe_layers.begin(), t.moe_layers.end());
  list.add("moe_layers", {m}, moe_layers);

  list.require_if_marked("routing.ids", !t.expert_ids.empty(), t.has_routing, "has_routing");
  list.add_optional("routing.ids", {n, m, k}, t.expert_ids);
  list.add_optional("routing.weights", {n, m, k}, t.expert_weights);
  if (t.expert_ids.empty() != t.expert_weights.empty())
    fail(file, "routing.weights", "the trace has expert ids without weights or weights without ids");
  list.add_optional("routing.entropy", {n, m}, t.router_entropy);
  list.add_optional("routing.top1_margin", {n, m}, t.top1_margin);
  list.add_optional("routing.shared_gate", {n, m}, t.shared_gate);

  list.require_if_marked("router.probs", !t.router_probs.empty(), t.has_router_probs, "has_router_probs");
  list.add_optional("router.probs", {n, m, e}, t.router_probs);

  list.require_if_marked("attn.entropy", !t.attn_entropy.empty(), t.has_attention, "has_attention");
  const bool attention = !t.attn_entropy.empty();
  const char* attn_names[] = {"attn.entropy", "attn.max", "attn.topk_mass", "attn.first_mass"};
  const std::vector<float>* attn_cols[] = {&t.attn_entropy, &t.attn_max, &t.attn_topk_mass, &t.attn_first_mass};
  for (int i = 0; i < 4; ++i) {
    if (attn_cols[i]->empty() == attention)
      fail(file, attn_names[i], "the four attention statistics must be all present or all absent");
    list.add_optional(attn_names[i], {n, l, h}, *attn_cols[i]);
  }

  list.require_if_marked("hidden.norm", !t.hidden_norm.empty(), t.has_hidden_norm, "has_hidden_norm");
  list.add_optional("hidden.norm", {n, l}, t.hidden_norm);

  list.add("step.first_token", {s}, t.step_first_token);
  list.add("step.tokens", {s}, t.step_tokens);
  list.add("step.time_s", {s}, t.step_time_s);
  list.add("step.end_s", {s}, t.step_end_s);
  list.add("has_layer_time", {s}, t.has_layer_time);
  list.require_if_marked("layer.time_s", !t.layer_time_s.empty(), t.has_layer_time, "has_layer_time");
  list.add_optional("layer.time_s", {s, l}, t.layer_time_s);

  std::vector<int32_t> stops;
  stops.reserve(t.forced_stops.size() * 3);
  for (const ForcedStopRecord& f : t.forced_stops) stops.insert(stops.end(), {f.position, f.thinking_tokens, f.budget});
  list.add("forced_stops", {int64_t(t.forced_stops.size()), 3}, stops);

  std::vector<int32_t> row_index;
  std::vector<int64_t> row_offsets;
  std::vector<float> row_weights;
  if (!t.attention_rows.empty()) {
    row_index.reserve(t.attention_rows.size() * 4);
    row_offsets.reserve(t.attention_rows.size() + 1);
    row_offsets.push_back(0);
    for (const Trace::AttentionRow& r : t.attention_rows) {
      if (r.position < 0 || r.weights.size() != size_t(r.position) + 1)
        fail(file, "attn_rows.weights",
             "a row at position " + std::to_string(r.position) + " has " + std::to_string(r.weights.size()) +
                 " weights (expected position + 1)");
      row_index.insert(row_index.end(), {r.step, r.layer, r.head, r.position});
      row_weights.insert(row_weights.end(), r.weights.begin(), r.weights.end());
      row_offsets.push_back(int64_t(row_weights.size()));
    }
    const int64_t r = int64_t(t.attention_rows.size());
    list.add("attn_rows.index", {r, 4}, row_index);
    list.add("attn_rows.offsets", {r + 1}, row_offsets);
    list.add("attn_rows.weights", {int64_t(row_weights.size())}, row_weights);
  }

  std::map<std::string, std::string> meta;
  meta["format"] = kTraceFormat;
  meta["version"] = kTraceVersion;
  meta["trace"] = t.metadata_json;
  meta["segments"] = segments_json(t.segments);
  meta["n_layers"] = std::to_string(t.n_layers);
  meta["n_heads"] = std::to_string(t.n_heads);
  meta["n_experts"] = std::to_string(t.n_experts);
  meta["top_k"] = std::to_string(t.top_k);
  meta["attention_topk"] = std::to_string(t.attention_topk);
  write_safetensors(path, list.tensors(), meta);
}

void save_trace(const TraceSnapshot& snapshot, const std::filesystem::path& path) {
  save_trace(snapshot.materialize(SpilledDetail::Load), path);
}

Trace load_trace(const std::filesystem::path& path) {
  const auto f = SafetensorsFile::open(path);
  const std::string file = f->path();
  const auto& meta = f->metadata();

  const auto format = meta.find("format");
  if (format == meta.end())
    fail(file, "format", "missing from the metadata: not a MoE Workbench trace (expected format \"" +
                             std::string(kTraceFormat) + "\")");
  if (format->second != kTraceFormat)
    fail(file, "format", "is \"" + format->second.substr(0, 40) + "\": not a MoE Workbench trace (expected \"" +
                             kTraceFormat + "\")");
  const auto version = meta.find("version");
  if (version == meta.end()) fail(file, "version", "missing from the metadata");
  if (version->second != kTraceVersion)
    fail(file, "version", "trace file version \"" + version->second.substr(0, 40) +
                              "\" is not one this build reads (it reads version " + kTraceVersion + ")");

  Trace t;
  t.n_layers = parse_shape_field(*f, kShapeKeys[0]);
  t.n_heads = parse_shape_field(*f, kShapeKeys[1]);
  t.n_experts = parse_shape_field(*f, kShapeKeys[2]);
  t.top_k = parse_shape_field(*f, kShapeKeys[3]);
  t.attention_topk = parse_shape_field(*f, kShapeKeys[4]);
  if (t.n_experts > 0 && t.top_k > t.n_experts)
    fail(file, "top_k", std::to_string(t.top_k) + " is more than n_experts (" + std::to_string(t.n_experts) + ")");

  if (const auto it = meta.find("trace"); it != meta.end()) t.metadata_json = it->second;
  else fail(file, "trace", "missing from the metadata");
  {
    const auto it = meta.find("segments");
    if (it == meta.end()) fail(file, "segments", "missing from the metadata");
    const nlohmann::json segments = nlohmann::json::parse(it->second, nullptr, false);
    if (segments.is_discarded() || !segments.is_array())
      fail(file, "segments", "expected a JSON array of the segments' settings");
    for (const auto& s : segments) t.segments.push_back(s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }

  const ArrayReader r(*f);
  const int64_t n = r.shape_of("tokens", DType::I32, 1, "tokens")[0];
  if (n > std::numeric_limits<int32_t>::max()) fail(file, "tokens", "more than 2^31 tokens");
  const int64_t m = r.shape_of("moe_layers", DType::I32, 1, "MoE layers")[0];
  if (m > t.n_layers) fail(file, "moe_layers", "more MoE layers than n_layers (" + std::to_string(t.n_layers) + ")");
  const int64_t s = r.shape_of("step.first_token", DType::I32, 1, "steps")[0];
  const int64_t k = t.top_k, e = t.n_experts, l = t.n_layers, h = t.n_heads;

  t.tokens = r.read<int32_t>("tokens", {n}, "tokens");
  t.positions = r.read<int32_t>("positions", {n}, "tokens");
  check_range(file, "positions", t.positions, 0, int64_t(std::numeric_limits<int32_t>::max()) + 1,
              "positions are not negative");
  t.phases = r.read<uint8_t>("phases", {n}, "tokens");
  check_range(file, "phases", t.phases, 0, kPhaseCount, "a moe::Phase: 0 system, 1 user, 2 thinking, 3 answer, 4 other");
  t.forced = r.read<uint8_t>("forced", {n}, "tokens");
  check_mask(file, "forced", t.forced);
  t.generated = r.read<uint8_t>("generated", {n}, "tokens");
  check_mask(file, "generated", t.generated);
  t.step = r.read<int32_t>("step", {n}, "tokens");
  t.segment = r.read<int32_t>("segment", {n}, "tokens");
  check_range(file, "segment", t.segment, -1, int64_t(t.segments.size()), "an index into the segments, or -1");
  const auto moe_layers = r.read<int32_t>("moe_layers", {m}, "MoE layers");
  check_range(file, "moe_layers", moe_layers, 0, l, "a layer index");
  for (size_t i = 1; i < moe_layers.size(); ++i)
    if (moe_layers[i] <= moe_layers[i - 1]) fail(file, "moe_layers", "layer indices must increase");
  t.moe_layers.assign(moe_layers.begin(), moe_layers.end());

  t.has_routing = r.read<uint8_t>("has_routing", {n}, "tokens");
  t.has_router_probs = r.read<uint8_t>("has_router_probs", {n}, "tokens");
  t.has_attention = r.read<uint8_t>("has_attention", {n}, "tokens");
  t.has_hidden_norm = r.read<uint8_t>("has_hidden_norm", {n}, "tokens");
  for (const auto& [name, mask] : {std::pair{"has_routing", &t.has_routing}, {"has_router_probs", &t.has_router_probs},
                                   {"has_attention", &t.has_attention}, {"has_hidden_norm", &t.has_hidden_norm}})
    check_mask(file, name, *mask);

  const char* nmk = "tokens, MoE layers, top_k";
  t.expert_ids = r.read<int32_t>("routing.ids", {n, m, k}, nmk, false);
  require_if_marked(file, "routing.ids", r.find("routing.ids") != nullptr, t.has_routing, "has_routing");
  check_range(file, "routing.ids", t.expert_ids, -1, e, "an expert id, or -1 for an empty slot");
  t.expert_weights = r.read<float>("routing.weights", {n, m, k}, nmk, r.find("routing.ids") != nullptr);
  if (!r.find("routing.ids") && r.find("routing.weights"))
    fail(file, "routing.weights", "present without routing.ids");
  t.router_entropy = r.read<float>("routing.entropy", {n, m}, "tokens, MoE layers", false);
  t.top1_margin = r.read<float>("routing.top1_margin", {n, m}, "tokens, MoE layers", false);
  t.shared_gate = r.read<float>("routing.shared_gate", {n, m}, "tokens, MoE layers", false);

  t.router_probs = r.read<float>("router.probs", {n, m, e}, "tokens, MoE layers, n_experts", false);
  require_if_marked(file, "router.probs", r.find("router.probs") != nullptr, t.has_router_probs, "has_router_probs");

  const bool attention = r.find("attn.entropy") != nullptr;
  const char* nlh = "tokens, n_layers, n_heads";
  t.attn_entropy = r.read<float>("attn.entropy", {n, l, h}, nlh, false);
  t.attn_max = r.read<float>("attn.max", {n, l, h}, nlh, attention);
  t.attn_topk_mass = r.read<float>("attn.topk_mass", {n, l, h}, nlh, attention);
  t.attn_first_mass = r.read<float>("attn.first_mass", {n, l, h}, nlh, attention);
  if (!attention)
    for (const char* name : {"attn.max", "attn.topk_mass", "attn.first_mass"})
      if (r.find(name)) fail(file, name, "present without attn.entropy");
  require_if_marked(file, "attn.entropy", attention, t.has_attention, "has_attention");

  t.hidden_norm = r.read<float>("hidden.norm", {n, l}, "tokens, n_layers", false);
  require_if_marked(file, "hidden.norm", r.find("hidden.norm") != nullptr, t.has_hidden_norm, "has_hidden_norm");

  // Steps: consecutive runs of rows covering the trace, and every row's step agreeing.
  t.step_first_token = r.read<int32_t>("step.first_token", {s}, "steps");
  t.step_tokens = r.read<int32_t>("step.tokens", {s}, "steps");
  t.step_time_s = r.read<double>("step.time_s", {s}, "steps");
  t.step_end_s = r.read<double>("step.end_s", {s}, "steps");
  t.has_layer_time = r.read<uint8_t>("has_layer_time", {s}, "steps");
  check_mask(file, "has_layer_time", t.has_layer_time);
  t.layer_time_s = r.read<double>("layer.time_s", {s, l}, "steps, n_layers", false);
  require_if_marked(file, "layer.time_s", r.find("layer.time_s") != nullptr, t.has_layer_time, "has_layer_time");
  int64_t next_row = 0;
  for (int64_t i = 0; i < s; ++i) {
    if (t.step_first_token[size_t(i)] != next_row)
      fail(file, "step.first_token", "step " + std::to_string(i) + " starts at row " +
                                         std::to_string(t.step_first_token[size_t(i)]) + ", expected " +
                                         std::to_string(next_row) + " (steps are consecutive runs of rows)");
    const int32_t count = t.step_tokens[size_t(i)];
    if (count < 0 || count > n - next_row)
      fail(file, "step.tokens", "step " + std::to_string(i) + " has " + std::to_string(count) + " tokens, but " +
                                    std::to_string(n - next_row) + " rows remain");
    next_row += count;
  }
  if (next_row != n)
    fail(file, "step.tokens", "the steps cover " + std::to_string(next_row) + " of the " + std::to_string(n) + " rows");
  for (int64_t i = 0; i < s; ++i) {
    const int64_t first = t.step_first_token[size_t(i)];
    for (int64_t row = first; row < first + t.step_tokens[size_t(i)]; ++row)
      if (t.step[size_t(row)] != i)
        fail(file, "step", row_text(size_t(row)) + "step " + std::to_string(t.step[size_t(row)]) +
                               " disagrees with step.first_token / step.tokens (" + std::to_string(i) + ")");
  }

  // Forced stops.
  const int64_t nf = r.shape_of("forced_stops", DType::I32, 2, "forced stops, 3")[0];
  const auto stops = r.read<int32_t>("forced_stops", {nf, 3}, "forced stops, 3");
  for (int64_t i = 0; i < nf; ++i) {
    const int32_t* v = &stops[size_t(i) * 3];
    if (v[0] < 0 || v[1] < 0 || v[2] < -1)
      fail(file, "forced_stops", row_text(size_t(i)) + "position " + std::to_string(v[0]) + ", thinking tokens " +
                                     std::to_string(v[1]) + ", budget " + std::to_string(v[2]) +
                                     " (expected position, tokens >= 0 and budget >= -1)");
    t.forced_stops.push_back({v[0], v[1], v[2]});
  }

  // Attention rows: index, offsets and weights together.
  const bool rows = r.find("attn_rows.index") != nullptr;
  for (const char* name : {"attn_rows.offsets", "attn_rows.weights"})
    if (!rows && r.find(name)) fail(file, name, "present without attn_rows.index");
  if (rows) {
    const int64_t nr = r.shape_of("attn_rows.index", DType::I32, 2, "rows, 4")[0];
    const auto index = r.read<int32_t>("attn_rows.index", {nr, 4}, "rows, 4");
    const auto offsets = r.read<int64_t>("attn_rows.offsets", {nr + 1}, "rows + 1");
    const int64_t nw = r.shape_of("attn_rows.weights", DType::F32, 1, "weights")[0];
    const auto weights = r.read<float>("attn_rows.weights", {nw}, "weights");
    if (offsets[0] != 0) fail(file, "attn_rows.offsets", "must start at 0");
    t.attention_rows.resize(size_t(nr));
    for (int64_t i = 0; i < nr; ++i) {
      const int32_t* v = &index[size_t(i) * 4];
      if (v[0] < 0 || v[0] >= s || v[1] < 0 || v[1] >= l || v[2] < 0 || v[2] >= h || v[3] < 0)
        fail(file, "attn_rows.index", row_text(size_t(i)) + "step " + std::to_string(v[0]) + ", layer " +
                                          std::to_string(v[1]) + ", head " + std::to_string(v[2]) + ", position " +
                                          std::to_string(v[3]) + " is outside the trace (" + std::to_string(s) +
                                          " steps, " + std::to_string(l) + " layers, " + std::to_string(h) + " heads)");
      const int64_t begin = offsets[size_t(i)], end = offsets[size_t(i) + 1];
      if (begin < 0 || end < begin || end > nw || end - begin != int64_t(v[3]) + 1)
        fail(file, "attn_rows.offsets", row_text(size_t(i)) + "[" + std::to_string(begin) + ", " +
                                            std::to_string(end) + ") is not a run of position + 1 = " +
                                            std::to_string(int64_t(v[3]) + 1) + " of the " + std::to_string(nw) +
                                            " weights");
      auto& row = t.attention_rows[size_t(i)];
      row = {v[0], v[1], v[2], v[3], std::vector<float>(weights.begin() + begin, weights.begin() + end)};
    }
    if (offsets[size_t(nr)] != nw)
      fail(file, "attn_rows.offsets", "the rows hold " + std::to_string(offsets[size_t(nr)]) + " of the " +
                                          std::to_string(nw) + " weights");
  }
  return t;
}

// -----------------------------------------------------------------------------------------------------
// CSV

namespace {

void append_number(std::string& out, float v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? end : buf);
}

void append_number(std::string& out, int64_t v) { out += std::to_string(v); }

}  // namespace

void write_trace_tokens_csv(const Trace& t, const std::filesystem::path& path) {
  const std::string file = path.string();
  const size_t n = size_t(t.size()), m = size_t(t.n_moe()), k = size_t(t.top_k);
  const bool routing = !t.expert_ids.empty() && t.expert_ids.size() == n * m * k &&
                       t.expert_weights.size() == t.expert_ids.size();
  if (!t.expert_ids.empty() && !routing)
    fail(file, "routing.ids", "the trace's routing columns disagree with its shape");
  for (const auto* col : {&t.positions, &t.step, &t.segment})
    if (col->size() != n) fail(file, "tokens", "the trace's per-token columns have different lengths");
  if (t.phases.size() != n || t.forced.size() != n || t.has_routing.size() != n)
    fail(file, "tokens", "the trace's per-token columns have different lengths");
  const bool entropy = t.router_entropy.size() == n * m && m > 0;
  const bool margin = t.top1_margin.size() == n * m && m > 0;

  std::string out = "row,token,position,phase,step,segment,forced,layer,entropy,top1_margin";
  for (size_t j = 0; j < k; ++j) out += ",expert_" + std::to_string(j);
  for (size_t j = 0; j < k; ++j) out += ",weight_" + std::to_string(j);
  out += '\n';
  for (size_t i = 0; i < n; ++i) {
    std::string prefix = std::to_string(i) + ',' + std::to_string(t.tokens[i]) + ',' + std::to_string(t.positions[i]) +
                         ',' + (t.phases[i] < kPhaseCount ? phase_name(Phase(t.phases[i])) : "") + ',' +
                         std::to_string(t.step[i]) + ',' + std::to_string(t.segment[i]) + ',' +
                         std::to_string(int(t.forced[i])) + ',';
    for (size_t mi = 0; mi < std::max<size_t>(m, 1); ++mi) {
      out += prefix;
      if (m > 0) out += std::to_string(t.moe_layers[mi]);
      const bool has = routing && m > 0 && t.has_routing[i];
      const size_t cell = i * m + mi;
      out += ',';
      if (has && entropy) append_number(out, t.router_entropy[cell]);
      out += ',';
      if (has && margin) append_number(out, t.top1_margin[cell]);
      for (size_t j = 0; j < k; ++j) {
        out += ',';
        if (has && t.expert_ids[cell * k + j] >= 0) append_number(out, int64_t(t.expert_ids[cell * k + j]));
      }
      for (size_t j = 0; j < k; ++j) {
        out += ',';
        if (has && t.expert_ids[cell * k + j] >= 0) append_number(out, t.expert_weights[cell * k + j]);
      }
      out += '\n';
    }
  }

  write_file_atomically(path, out);
}

}  // namespace moe::inspect
