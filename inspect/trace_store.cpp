#include "inspect/trace_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <type_traits>

#include "engine/common/error.h"

namespace moe::inspect {
namespace trace_store_internal {

// What a chunk has room for. A record fits a chunk when the chunk's layout covers what it needs.
struct Layout {
  int width = 0;  // routing slots per token and MoE layer (0: no routing columns)
  bool routing = false;
  bool shared_gate = false;
  bool router_probs = false;
  bool attention = false;
  bool hidden_norm = false;
  bool layer_time = false;

  bool covers(const Layout& need) const {
    return width >= need.width && (routing || !need.routing) && (shared_gate || !need.shared_gate) &&
           (router_probs || !need.router_probs) && (attention || !need.attention) &&
           (hidden_norm || !need.hidden_norm) && (layer_time || !need.layer_time);
  }
};

struct Dims {
  int n_layers = 0, n_heads = 0, n_experts = 0, n_moe = 0;
  bool operator==(const Dims&) const = default;
};

// The large per-token columns of a chunk, and the attention rows of its steps: what moves out of
// memory once the chunk falls behind the detail window. Sized to the chunk's capacity.
struct Detail {
  std::vector<uint8_t> has_router_probs;
  std::vector<float> router_probs;  // [token][m][n_experts]
  std::vector<uint8_t> has_attention;
  std::vector<float> attn_entropy, attn_max, attn_topk_mass, attn_first_mass;  // [token][layer][head]
  std::vector<uint8_t> has_hidden_norm;
  std::vector<float> hidden_norm;                        // [token][layer]
  std::vector<std::vector<Trace::AttentionRow>> step_rows;  // [step of the chunk]
};

// The compact columns of a run of whole steps. Allocated to capacity when the chunk opens; rows past
// the published count are written by the store's writer only, rows before it are never written again.
struct Chunk {
  Layout layout;
  Dims dims;
  int token_capacity = 0, step_capacity = 0;

  std::vector<int32_t> tokens, positions, step, segment;
  std::vector<uint8_t> phases, forced, generated, has_routing;
  std::vector<int32_t> expert_ids;  // [token][m][layout.width]
  std::vector<float> expert_weights;
  std::vector<float> router_entropy, top1_margin, shared_gate;  // [token][m]

  std::vector<int32_t> step_tokens;  // [step of the chunk]
  std::vector<double> step_time_s, step_end_s;
  std::vector<uint8_t> has_layer_time;
  std::vector<double> layer_time_s;  // [step][n_layers]
};

// The spill file: detail blobs appended one after another, read back with pread. Unlinked as soon
// as it is created, so it lives exactly as long as the last store or snapshot that holds it.
class SpillFile {
 public:
  explicit SpillFile(const std::filesystem::path& path) : path_(path.string()) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) throw EngineError(path_, "", std::string("cannot create the spill file: ") + std::strerror(errno));
    ::unlink(path_.c_str());
  }
  ~SpillFile() { ::close(fd_); }
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;

  // Appends `bytes` (writer thread only); returns its offset, or sets `error` and returns false.
  bool append(const std::string& bytes, uint64_t& offset, std::string& error) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t w = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, off_t(end_ + done));
      if (w < 0) {
        if (errno == EINTR) continue;
        error = path_ + ": cannot write the spill file: " + std::strerror(errno);
        return false;
      }
      done += size_t(w);
    }
    offset = end_;
    end_ += bytes.size();
    return true;
  }

  // Reads a blob written by append (any thread).
  std::string read(uint64_t offset, uint64_t n) const {
    std::string out(n, '\0');
    size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd_, out.data() + done, n - done, off_t(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        throw EngineError(path_, "", r < 0 ? std::string("cannot read the spill file: ") + std::strerror(errno)
                                           : std::string("the spill file is shorter than what was written to it"));
      done += size_t(r);
    }
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t end_ = 0;  // written by the writer only
};

// One chunk as a snapshot sees it.
struct ChunkRef {
  std::shared_ptr<const Chunk> chunk;
  std::shared_ptr<const Detail> detail;     // null once spilled or dropped
  std::shared_ptr<const SpillFile> spill;   // set when the detail went to the spill file
  uint64_t spill_offset = 0, spill_bytes = 0;
  int n_tokens = 0, n_steps = 0;            // published rows
};

// The sealed chunks, in blocks of kRefsPerBlock: sealing a chunk or moving its detail out copies one
// block and the list of block pointers, never the whole list, so neither grows with the session
// faster than chunks / kRefsPerBlock.
constexpr size_t kRefsPerBlock = 64;
using RefBlock = std::vector<ChunkRef>;
using SealedList = std::vector<std::shared_ptr<const RefBlock>>;

// Everything but the rows: shape, segments, forced stops, metadata. Replaced as a whole on change.
struct Header {
  bool shape_known = false;
  Dims dims;
  std::vector<int> moe_layers;
  int top_k = 0;
  int attention_topk = 0;
  std::vector<std::string> segments;
  std::vector<ForcedStopRecord> forced_stops;
  std::string metadata_json = "{}";
};

struct SnapshotState {
  std::shared_ptr<const Header> header = std::make_shared<const Header>();
  std::shared_ptr<const SealedList> sealed = std::make_shared<const SealedList>();
  ChunkRef open;  // chunk null when none is open
  uint64_t version = 0;
  int64_t tokens = 0;
  int64_t steps = 0;
};

struct StoreState {
  TraceStoreOptions options;
  int chunk_capacity = 256;

  // Serialises mutations; everything in this block is the writer's (read and written under it).
  std::mutex write_mutex;
  Header header;
  std::shared_ptr<Chunk> open_chunk;
  std::shared_ptr<Detail> open_detail;
  int open_tokens = 0, open_steps = 0;
  int64_t total_tokens = 0;
  int total_steps = 0;
  bool clock_started = false;
  double clock_origin = 0;
  int current_segment = -1;
  std::shared_ptr<SpillFile> spill;
  size_t sealed_count = 0;        // chunks in `sealed`
  size_t first_detail_chunk = 0;  // sealed chunks before it hold no detail in memory
  int64_t first_detail_token = 0; // where that chunk begins

  // What snapshots see. Written with both mutexes held, read with publish_mutex held.
  mutable std::mutex publish_mutex;
  std::shared_ptr<const Header> published_header = std::make_shared<const Header>();
  std::shared_ptr<const SealedList> sealed = std::make_shared<const SealedList>();
  ChunkRef published_open;
  int64_t published_steps = 0;
  std::string spill_error;

  std::atomic<uint64_t> version{0};
  std::atomic<int64_t> size{0};
  std::atomic<int64_t> detail_tokens{0};
};

namespace {

// ---------------------------------------------------------------------------------------------------
// Records

[[noreturn]] void reject(const std::string& what) {
  throw std::invalid_argument("TraceStore::append: " + what);
}

void check_size(const char* name, size_t actual, size_t expected, bool may_be_empty = true) {
  if (actual == expected || (may_be_empty && actual == 0)) return;
  reject(std::string(name) + " has " + std::to_string(actual) + " values, expected " + std::to_string(expected) +
         (may_be_empty ? " (or none)" : ""));
}

// Checks a record against its own shape and returns the layout it needs.
Layout check_record(const StepRecord& r) {
  if (r.n_tokens < 0) reject("n_tokens is negative");
  const size_t t = size_t(r.n_tokens);
  const size_t m = r.moe_layers.size();
  const size_t k = size_t(std::max(r.top_k, 0));
  const size_t e = size_t(std::max(r.n_experts, 0));
  const size_t l = size_t(std::max(r.n_layers, 0));
  const size_t h = size_t(std::max(r.n_heads, 0));
  check_size("tokens", r.tokens.size(), t, false);
  check_size("phases", r.phases.size(), t);
  check_size("forced", r.forced.size(), t);
  check_size("generated", r.generated.size(), t);
  for (uint8_t p : r.phases)
    if (p >= kPhaseCount) reject("phase " + std::to_string(p) + " is not a moe::Phase");

  Layout need;
  need.routing = !r.expert_ids.empty();
  need.width = need.routing ? int(k) : 0;
  need.shared_gate = !r.shared_gate.empty();
  need.router_probs = !r.router_probs.empty();
  need.attention = !r.attn_entropy.empty() || !r.attn_max.empty() || !r.attn_topk_mass.empty() ||
                   !r.attn_first_mass.empty();
  need.hidden_norm = !r.hidden_norm.empty();
  need.layer_time = !r.layer_time_s.empty();
  const bool any_shaped = need.routing || need.shared_gate || need.router_probs || need.attention ||
                          need.hidden_norm || need.layer_time || !r.attention_rows.empty() ||
                          !r.router_entropy.empty() || !r.top1_margin.empty();
  if (any_shaped && r.n_layers <= 0) reject("a record with routing or detail arrays must carry n_layers");
  if (r.n_heads < 0 || r.n_experts < 0 || r.top_k < 0) reject("negative shape field");
  for (int layer : r.moe_layers)
    if (layer < 0 || layer >= r.n_layers) reject("moe_layers holds " + std::to_string(layer) + ", outside the layers");

  if (need.routing) {
    if (k == 0 || r.top_k > r.n_experts)
      reject("routing arrays with top_k " + std::to_string(r.top_k) + " (expected 1 to n_experts = " +
             std::to_string(r.n_experts) + ")");
    check_size("expert_ids", r.expert_ids.size(), t * m * k, false);
    check_size("expert_weights", r.expert_weights.size(), t * m * k, false);
    for (int32_t id : r.expert_ids)
      if (id < -1 || id >= r.n_experts) reject("expert id " + std::to_string(id) + " is outside [-1, n_experts)");
  } else if (!r.expert_weights.empty()) {
    reject("expert_weights without expert_ids");
  }
  // Per-(token, MoE layer) scalars belong to the routing record.
  if (!need.routing && (!r.router_entropy.empty() || !r.top1_margin.empty() || need.shared_gate))
    reject("router_entropy, top1_margin or shared_gate without expert_ids");
  check_size("router_entropy", r.router_entropy.size(), t * m);
  check_size("top1_margin", r.top1_margin.size(), t * m);
  check_size("shared_gate", r.shared_gate.size(), t * m);
  check_size("router_probs", r.router_probs.size(), t * m * e);
  if (need.attention) {
    check_size("attn_entropy", r.attn_entropy.size(), t * l * h, false);
    check_size("attn_max", r.attn_max.size(), t * l * h, false);
    check_size("attn_topk_mass", r.attn_topk_mass.size(), t * l * h, false);
    check_size("attn_first_mass", r.attn_first_mass.size(), t * l * h, false);
  }
  check_size("hidden_norm", r.hidden_norm.size(), t * l);
  check_size("layer_time_s", r.layer_time_s.size(), l);
  for (const auto& row : r.attention_rows) {
    if (row.layer < 0 || row.layer >= r.n_layers || row.head < 0 || row.head >= r.n_heads)
      reject("attention row of layer " + std::to_string(row.layer) + ", head " + std::to_string(row.head) +
             " is outside the model");
    if (row.position < 0 || row.weights.size() != size_t(row.position) + 1)
      reject("attention row at position " + std::to_string(row.position) + " has " +
             std::to_string(row.weights.size()) + " weights (expected position + 1)");
  }
  return need;
}

template <class T>
void copy_into(std::vector<T>& dst, size_t at, const std::vector<T>& src) {
  std::copy(src.begin(), src.end(), dst.begin() + ptrdiff_t(at));
}

// ---------------------------------------------------------------------------------------------------
// Spill blobs: the detail of a sealed chunk, columns one after another (the chunk's layout says which),
// then its attention rows. Only the store reads them, so the format is private and unversioned.

class BlobWriter {
 public:
  template <class T>
  void put(const T* p, size_t n) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes.append(reinterpret_cast<const char*>(p), n * sizeof(T));
  }
  template <class T>
  void put(const T& v) {
    put(&v, 1);
  }
  std::string bytes;
};

class BlobReader {
 public:
  explicit BlobReader(const std::string& bytes) : bytes_(bytes) {}
  template <class T>
  void get(T* p, size_t n) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (n > (bytes_.size() - pos_) / sizeof(T)) throw EngineError("", "spill file", "detail blob is truncated");
    std::memcpy(p, bytes_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
  }
  template <class T>
  T get() {
    T v;
    get(&v, 1);
    return v;
  }

 private:
  const std::string& bytes_;
  size_t pos_ = 0;
};

struct DetailSizes {
  size_t probs, attn, norm;  // values per token
};
DetailSizes detail_sizes(const Chunk& c) {
  return {size_t(c.dims.n_moe) * size_t(c.dims.n_experts), size_t(c.dims.n_layers) * size_t(c.dims.n_heads),
          size_t(c.dims.n_layers)};
}

std::string encode_detail(const Chunk& c, const Detail& d, int n_tokens, int n_steps) {
  const DetailSizes z = detail_sizes(c);
  const size_t n = size_t(n_tokens);
  BlobWriter w;
  if (c.layout.router_probs) {
    w.put(d.has_router_probs.data(), n);
    w.put(d.router_probs.data(), n * z.probs);
  }
  if (c.layout.attention) {
    w.put(d.has_attention.data(), n);
    for (const auto* col : {&d.attn_entropy, &d.attn_max, &d.attn_topk_mass, &d.attn_first_mass})
      w.put(col->data(), n * z.attn);
  }
  if (c.layout.hidden_norm) {
    w.put(d.has_hidden_norm.data(), n);
    w.put(d.hidden_norm.data(), n * z.norm);
  }
  for (int s = 0; s < n_steps; ++s) {
    const auto& rows = d.step_rows[size_t(s)];
    w.put(uint64_t(rows.size()));
    for (const auto& row : rows) {
      const int32_t fields[4] = {row.step, row.layer, row.head, row.position};
      w.put(fields, 4);
      w.put(uint64_t(row.weights.size()));
      w.put(row.weights.data(), row.weights.size());
    }
  }
  return std::move(w.bytes);
}

std::shared_ptr<const Detail> decode_detail(const Chunk& c, const std::string& bytes, int n_tokens, int n_steps) {
  const DetailSizes z = detail_sizes(c);
  const size_t n = size_t(n_tokens);
  auto d = std::make_shared<Detail>();
  BlobReader r(bytes);
  auto read_column = [&](std::vector<float>& col, size_t per_token) {
    col.resize(n * per_token);
    r.get(col.data(), col.size());
  };
  auto read_flags = [&](std::vector<uint8_t>& flags) {
    flags.resize(n);
    r.get(flags.data(), n);
  };
  if (c.layout.router_probs) {
    read_flags(d->has_router_probs);
    read_column(d->router_probs, z.probs);
  }
  if (c.layout.attention) {
    read_flags(d->has_attention);
    for (auto* col : {&d->attn_entropy, &d->attn_max, &d->attn_topk_mass, &d->attn_first_mass})
      read_column(*col, z.attn);
  }
  if (c.layout.hidden_norm) {
    read_flags(d->has_hidden_norm);
    read_column(d->hidden_norm, z.norm);
  }
  d->step_rows.resize(size_t(n_steps));
  for (int s = 0; s < n_steps; ++s) {
    const uint64_t count = r.get<uint64_t>();
    if (count > bytes.size()) throw EngineError("", "spill file", "detail blob is corrupted");
    auto& rows = d->step_rows[size_t(s)];
    rows.resize(size_t(count));
    for (auto& row : rows) {
      int32_t fields[4];
      r.get(fields, 4);
      row.step = fields[0];
      row.layer = fields[1];
      row.head = fields[2];
      row.position = fields[3];
      const uint64_t nw = r.get<uint64_t>();
      if (nw > bytes.size()) throw EngineError("", "spill file", "detail blob is corrupted");
      row.weights.resize(size_t(nw));
      r.get(row.weights.data(), row.weights.size());
    }
  }
  return d;
}

// ---------------------------------------------------------------------------------------------------
// The writer's side (StoreState::write_mutex held)

double default_clock() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::shared_ptr<Chunk> new_chunk(const Layout& layout, const Dims& dims, int token_capacity, int step_capacity) {
  auto c = std::make_shared<Chunk>();
  c->layout = layout;
  c->dims = dims;
  c->token_capacity = token_capacity;
  c->step_capacity = step_capacity;
  const size_t n = size_t(token_capacity), s = size_t(step_capacity);
  const size_t m = size_t(dims.n_moe);
  c->tokens.resize(n);
  c->positions.resize(n);
  c->step.resize(n);
  c->segment.resize(n);
  c->phases.resize(n);
  c->forced.resize(n);
  c->generated.resize(n);
  c->has_routing.resize(n);
  if (layout.routing) {
    c->expert_ids.resize(n * m * size_t(layout.width));
    c->expert_weights.resize(n * m * size_t(layout.width));
    c->router_entropy.resize(n * m);
    c->top1_margin.resize(n * m);
  }
  if (layout.shared_gate) c->shared_gate.resize(n * m);
  c->step_tokens.resize(s);
  c->step_time_s.resize(s);
  c->step_end_s.resize(s);
  c->has_layer_time.resize(s);
  if (layout.layer_time) c->layer_time_s.resize(s * size_t(dims.n_layers));
  return c;
}

std::shared_ptr<Detail> new_detail(const Chunk& c) {
  auto d = std::make_shared<Detail>();
  const DetailSizes z = detail_sizes(c);
  const size_t n = size_t(c.token_capacity);
  if (c.layout.router_probs) {
    d->has_router_probs.resize(n);
    d->router_probs.resize(n * z.probs);
  }
  if (c.layout.attention) {
    d->has_attention.resize(n);
    for (auto* col : {&d->attn_entropy, &d->attn_max, &d->attn_topk_mass, &d->attn_first_mass})
      col->resize(n * z.attn);
  }
  if (c.layout.hidden_norm) {
    d->has_hidden_norm.resize(n);
    d->hidden_norm.resize(n * z.norm);
  }
  d->step_rows.resize(size_t(c.step_capacity));
  return d;
}

// Writes the record's rows after the open chunk's published ones (nobody reads them yet).
void write_rows(StoreState& st, const StepRecord& r, double end_s) {
  Chunk& c = *st.open_chunk;
  Detail& d = *st.open_detail;
  const size_t t0 = size_t(st.open_tokens);
  const size_t n = size_t(r.n_tokens);
  const size_t s = size_t(st.open_steps);
  const int step_index = st.total_steps;
  const size_t m = size_t(c.dims.n_moe);
  for (size_t i = 0; i < n; ++i) {
    c.tokens[t0 + i] = r.tokens[i];
    c.positions[t0 + i] = r.first_position + int32_t(i);
    c.phases[t0 + i] = r.phases.empty() ? uint8_t(Phase::Other) : r.phases[i];
    c.forced[t0 + i] = r.forced.empty() ? 0 : (r.forced[i] ? 1 : 0);
    c.generated[t0 + i] = r.generated.empty() ? 0 : (r.generated[i] ? 1 : 0);
    c.step[t0 + i] = step_index;
    c.segment[t0 + i] = st.current_segment;
    c.has_routing[t0 + i] = r.has_routing() ? 1 : 0;
  }
  if (r.has_routing()) {
    // Rows narrower than the chunk are padded with id -1, weight 0.
    const size_t k = size_t(r.top_k), w = size_t(c.layout.width);
    for (size_t i = 0; i < n * m; ++i) {
      const size_t dst = (t0 * m + i) * w;
      std::copy_n(r.expert_ids.begin() + ptrdiff_t(i * k), k, c.expert_ids.begin() + ptrdiff_t(dst));
      std::copy_n(r.expert_weights.begin() + ptrdiff_t(i * k), k, c.expert_weights.begin() + ptrdiff_t(dst));
      std::fill_n(c.expert_ids.begin() + ptrdiff_t(dst + k), w - k, -1);
      std::fill_n(c.expert_weights.begin() + ptrdiff_t(dst + k), w - k, 0.0f);
    }
    if (!r.router_entropy.empty()) copy_into(c.router_entropy, t0 * m, r.router_entropy);
    if (!r.top1_margin.empty()) copy_into(c.top1_margin, t0 * m, r.top1_margin);
    if (!r.shared_gate.empty()) copy_into(c.shared_gate, t0 * m, r.shared_gate);
  } else if (c.layout.routing) {
    // Rows without routing in a chunk that has it: empty slots, like every padding.
    std::fill_n(c.expert_ids.begin() + ptrdiff_t(t0 * m * size_t(c.layout.width)), n * m * size_t(c.layout.width), -1);
  }

  const DetailSizes z = detail_sizes(c);
  if (!r.router_probs.empty()) {
    std::fill_n(d.has_router_probs.begin() + ptrdiff_t(t0), n, 1);
    copy_into(d.router_probs, t0 * z.probs, r.router_probs);
  }
  if (!r.attn_entropy.empty()) {
    std::fill_n(d.has_attention.begin() + ptrdiff_t(t0), n, 1);
    copy_into(d.attn_entropy, t0 * z.attn, r.attn_entropy);
    copy_into(d.attn_max, t0 * z.attn, r.attn_max);
    copy_into(d.attn_topk_mass, t0 * z.attn, r.attn_topk_mass);
    copy_into(d.attn_first_mass, t0 * z.attn, r.attn_first_mass);
  }
  if (!r.hidden_norm.empty()) {
    std::fill_n(d.has_hidden_norm.begin() + ptrdiff_t(t0), n, 1);
    copy_into(d.hidden_norm, t0 * z.norm, r.hidden_norm);
  }

  c.step_tokens[s] = r.n_tokens;
  c.step_time_s[s] = r.step_time_s;
  c.step_end_s[s] = end_s;
  c.has_layer_time[s] = r.layer_time_s.empty() ? 0 : 1;
  if (!r.layer_time_s.empty()) copy_into(c.layer_time_s, s * size_t(c.dims.n_layers), r.layer_time_s);
  auto& rows = d.step_rows[s];
  rows.reserve(r.attention_rows.size());
  for (const auto& in : r.attention_rows) rows.push_back({step_index, in.layer, in.head, in.position, in.weights});
}

void publish_header(StoreState& st) {
  auto h = std::make_shared<const Header>(st.header);
  std::lock_guard lock(st.publish_mutex);
  st.published_header = std::move(h);
  st.version.fetch_add(1, std::memory_order_relaxed);
}

// Moves the open chunk to the sealed list.
void seal(StoreState& st) {
  if (!st.open_chunk) return;
  // Only the writer replaces st.sealed, so reading it here needs no lock.
  auto sealed = std::make_shared<SealedList>(*st.sealed);
  ChunkRef ref;
  ref.chunk = st.open_chunk;
  ref.detail = st.open_detail;
  ref.n_tokens = st.open_tokens;
  ref.n_steps = st.open_steps;
  if (sealed->empty() || sealed->back()->size() == kRefsPerBlock) {
    auto block = std::make_shared<RefBlock>();
    block->reserve(kRefsPerBlock);
    block->push_back(std::move(ref));
    sealed->push_back(std::move(block));
  } else {
    auto block = std::make_shared<RefBlock>(*sealed->back());
    block->push_back(std::move(ref));
    sealed->back() = std::move(block);
  }
  ++st.sealed_count;
  {
    std::lock_guard lock(st.publish_mutex);
    st.sealed = std::move(sealed);
    st.published_open = ChunkRef{};
    st.version.fetch_add(1, std::memory_order_relaxed);
  }
  st.open_chunk.reset();
  st.open_detail.reset();
  st.open_tokens = st.open_steps = 0;
}

// True when a chunk's detail holds anything worth keeping.
bool has_detail(const Chunk& c, const Detail& d, int n_steps) {
  if (c.layout.router_probs || c.layout.attention || c.layout.hidden_norm) return true;
  for (int s = 0; s < n_steps; ++s)
    if (!d.step_rows[size_t(s)].empty()) return true;
  return false;
}

// Spills (or drops) the detail of the sealed chunks that are entirely older than the detail window.
void move_old_detail(StoreState& st) {
  const SealedList& sealed = *st.sealed;
  auto ref_at = [&](size_t i) -> const ChunkRef& { return (*sealed[i / kRefsPerBlock])[i % kRefsPerBlock]; };
  const int64_t keep_from = st.total_tokens - st.options.detail_window;
  size_t last = st.first_detail_chunk;
  int64_t begin = st.first_detail_token;
  while (last < st.sealed_count && begin + ref_at(last).n_tokens <= keep_from) begin += ref_at(last++).n_tokens;
  if (last == st.first_detail_chunk) return;

  auto next = std::make_shared<SealedList>(sealed);
  int64_t moved_tokens = 0;
  std::string error;
  for (size_t b = st.first_detail_chunk / kRefsPerBlock; b <= (last - 1) / kRefsPerBlock; ++b) {
    auto block = std::make_shared<RefBlock>(*sealed[b]);
    const size_t from = std::max(st.first_detail_chunk, b * kRefsPerBlock);
    const size_t to = std::min(last, (b + 1) * kRefsPerBlock);
    for (size_t i = from; i < to; ++i) {
      ChunkRef& ref = (*block)[i % kRefsPerBlock];
      if (ref.detail && st.spill && has_detail(*ref.chunk, *ref.detail, ref.n_steps)) {
        const std::string blob = encode_detail(*ref.chunk, *ref.detail, ref.n_tokens, ref.n_steps);
        uint64_t offset = 0;
        if (st.spill->append(blob, offset, error)) {
          ref.spill = st.spill;
          ref.spill_offset = offset;
          ref.spill_bytes = blob.size();
        }
      }
      if (ref.detail) moved_tokens += ref.n_tokens;
      ref.detail.reset();
    }
    (*next)[b] = std::move(block);
  }
  {
    std::lock_guard lock(st.publish_mutex);
    st.sealed = std::move(next);
    if (!error.empty()) st.spill_error = error;
    st.version.fetch_add(1, std::memory_order_relaxed);
  }
  st.first_detail_chunk = last;
  st.first_detail_token = begin;
  st.detail_tokens.fetch_sub(moved_tokens, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------------
// Materialising

// The detail of a chunk as materialize() may use it: in memory, read back, or none.
std::shared_ptr<const Detail> available_detail(const ChunkRef& ref, SpilledDetail spilled) {
  if (ref.detail) return ref.detail;
  if (ref.spill && spilled == SpilledDetail::Load)
    return decode_detail(*ref.chunk, ref.spill->read(ref.spill_offset, ref.spill_bytes), ref.n_tokens, ref.n_steps);
  return nullptr;
}

bool detail_can_be_available(const ChunkRef& ref, SpilledDetail spilled) {
  return ref.detail || (ref.spill && spilled == SpilledDetail::Load);
}

Trace header_trace(const Header& h) {
  Trace t;
  t.n_layers = h.dims.n_layers;
  t.n_heads = h.dims.n_heads;
  t.n_experts = h.dims.n_experts;
  t.top_k = h.top_k;
  t.attention_topk = h.attention_topk;
  t.moe_layers = h.moe_layers;
  t.segments = h.segments;
  t.forced_stops = h.forced_stops;
  t.metadata_json = h.metadata_json;
  return t;
}

template <class T>
void append_prefix(std::vector<T>& dst, const std::vector<T>& src, size_t n) {
  dst.insert(dst.end(), src.begin(), src.begin() + ptrdiff_t(n));
}

}  // namespace
}  // namespace trace_store_internal

using namespace trace_store_internal;

// -----------------------------------------------------------------------------------------------------
// TraceSnapshot

TraceSnapshot::TraceSnapshot() : state_(std::make_shared<const SnapshotState>()) {}
TraceSnapshot::TraceSnapshot(std::shared_ptr<const SnapshotState> state) : state_(std::move(state)) {}

int64_t TraceSnapshot::size() const { return state_->tokens; }
int64_t TraceSnapshot::steps() const { return state_->steps; }
uint64_t TraceSnapshot::version() const { return state_->version; }
Trace TraceSnapshot::header() const { return header_trace(*state_->header); }

Trace TraceSnapshot::materialize(SpilledDetail spilled) const {
  const SnapshotState& s = *state_;
  Trace t = header_trace(*s.header);
  std::vector<const ChunkRef*> refs;
  refs.reserve(s.sealed->size() * kRefsPerBlock + 1);
  for (const auto& block : *s.sealed)
    for (const ChunkRef& r : *block) refs.push_back(&r);
  if (s.open.chunk && (s.open.n_tokens > 0 || s.open.n_steps > 0)) refs.push_back(&s.open);

  const size_t n = size_t(s.tokens), steps = size_t(s.steps);
  const size_t m = size_t(t.n_moe()), k = size_t(t.top_k), e = size_t(t.n_experts);
  const size_t l = size_t(t.n_layers), h = size_t(t.n_heads);
  bool routing = false, shared_gate = false, probs = false, attention = false, norms = false, layer_time = false;
  for (const ChunkRef* r : refs) {
    const Layout& lay = r->chunk->layout;
    routing |= lay.routing && r->n_tokens > 0;
    shared_gate |= lay.shared_gate && r->n_tokens > 0;
    layer_time |= lay.layer_time && r->n_steps > 0;
    if (detail_can_be_available(*r, spilled) && r->n_tokens > 0) {
      probs |= lay.router_probs;
      attention |= lay.attention;
      norms |= lay.hidden_norm;
    }
  }

  t.tokens.reserve(n);
  t.positions.reserve(n);
  t.phases.reserve(n);
  t.forced.reserve(n);
  t.generated.reserve(n);
  t.step.reserve(n);
  t.segment.reserve(n);
  t.has_routing.reserve(n);
  if (routing) {
    t.expert_ids.assign(n * m * k, -1);
    t.expert_weights.assign(n * m * k, 0.0f);
    t.router_entropy.assign(n * m, 0.0f);
    t.top1_margin.assign(n * m, 0.0f);
  }
  if (shared_gate) t.shared_gate.assign(n * m, 0.0f);
  t.has_router_probs.assign(n, 0);
  if (probs) t.router_probs.assign(n * m * e, 0.0f);
  t.has_attention.assign(n, 0);
  if (attention)
    for (auto* col : {&t.attn_entropy, &t.attn_max, &t.attn_topk_mass, &t.attn_first_mass}) col->assign(n * l * h, 0.0f);
  t.has_hidden_norm.assign(n, 0);
  if (norms) t.hidden_norm.assign(n * l, 0.0f);
  t.step_first_token.reserve(steps);
  t.step_tokens.reserve(steps);
  t.step_time_s.reserve(steps);
  t.step_end_s.reserve(steps);
  t.has_layer_time.reserve(steps);
  if (layer_time) t.layer_time_s.assign(steps * l, 0.0);

  size_t row = 0, step = 0;
  for (const ChunkRef* ref : refs) {
    const Chunk& c = *ref->chunk;
    const size_t cn = size_t(ref->n_tokens), cs = size_t(ref->n_steps);
    append_prefix(t.tokens, c.tokens, cn);
    append_prefix(t.positions, c.positions, cn);
    append_prefix(t.phases, c.phases, cn);
    append_prefix(t.forced, c.forced, cn);
    append_prefix(t.generated, c.generated, cn);
    append_prefix(t.step, c.step, cn);
    append_prefix(t.segment, c.segment, cn);
    append_prefix(t.has_routing, c.has_routing, cn);
    if (c.layout.routing) {
      const size_t w = size_t(c.layout.width);
      for (size_t i = 0; i < cn * m; ++i) {
        std::copy_n(c.expert_ids.begin() + ptrdiff_t(i * w), w, t.expert_ids.begin() + ptrdiff_t((row * m + i) * k));
        std::copy_n(c.expert_weights.begin() + ptrdiff_t(i * w), w,
                    t.expert_weights.begin() + ptrdiff_t((row * m + i) * k));
      }
      std::copy_n(c.router_entropy.begin(), cn * m, t.router_entropy.begin() + ptrdiff_t(row * m));
      std::copy_n(c.top1_margin.begin(), cn * m, t.top1_margin.begin() + ptrdiff_t(row * m));
    }
    if (c.layout.shared_gate) std::copy_n(c.shared_gate.begin(), cn * m, t.shared_gate.begin() + ptrdiff_t(row * m));

    size_t first = row;
    for (size_t i = 0; i < cs; ++i) {
      t.step_first_token.push_back(int32_t(first));
      t.step_tokens.push_back(c.step_tokens[i]);
      first += size_t(c.step_tokens[i]);
    }
    append_prefix(t.step_time_s, c.step_time_s, cs);
    append_prefix(t.step_end_s, c.step_end_s, cs);
    append_prefix(t.has_layer_time, c.has_layer_time, cs);
    if (c.layout.layer_time) std::copy_n(c.layer_time_s.begin(), cs * l, t.layer_time_s.begin() + ptrdiff_t(step * l));

    if (const auto d = available_detail(*ref, spilled)) {
      if (c.layout.router_probs) {
        std::copy_n(d->has_router_probs.begin(), cn, t.has_router_probs.begin() + ptrdiff_t(row));
        std::copy_n(d->router_probs.begin(), cn * m * e, t.router_probs.begin() + ptrdiff_t(row * m * e));
      }
      if (c.layout.attention) {
        std::copy_n(d->has_attention.begin(), cn, t.has_attention.begin() + ptrdiff_t(row));
        std::copy_n(d->attn_entropy.begin(), cn * l * h, t.attn_entropy.begin() + ptrdiff_t(row * l * h));
        std::copy_n(d->attn_max.begin(), cn * l * h, t.attn_max.begin() + ptrdiff_t(row * l * h));
        std::copy_n(d->attn_topk_mass.begin(), cn * l * h, t.attn_topk_mass.begin() + ptrdiff_t(row * l * h));
        std::copy_n(d->attn_first_mass.begin(), cn * l * h, t.attn_first_mass.begin() + ptrdiff_t(row * l * h));
      }
      if (c.layout.hidden_norm) {
        std::copy_n(d->has_hidden_norm.begin(), cn, t.has_hidden_norm.begin() + ptrdiff_t(row));
        std::copy_n(d->hidden_norm.begin(), cn * l, t.hidden_norm.begin() + ptrdiff_t(row * l));
      }
      for (size_t i = 0; i < cs; ++i)
        t.attention_rows.insert(t.attention_rows.end(), d->step_rows[i].begin(), d->step_rows[i].end());
    }
    row += cn;
    step += cs;
  }
  return t;
}

// -----------------------------------------------------------------------------------------------------
// TraceStore

TraceStore::TraceStore(TraceStoreOptions options) : state_(std::make_unique<StoreState>()) {
  StoreState& st = *state_;
  st.options = std::move(options);
  if (!st.options.clock) st.options.clock = default_clock;
  st.options.detail_window = std::max<int64_t>(st.options.detail_window, 0);
  const int64_t window_cap = std::max<int64_t>(st.options.detail_window, 1);
  st.chunk_capacity = int(std::clamp<int64_t>(st.options.chunk_tokens, 1, std::min<int64_t>(window_cap, 1 << 24)));
  if (!st.options.spill_path.empty()) st.spill = std::make_shared<SpillFile>(st.options.spill_path);
}

TraceStore::~TraceStore() = default;

void TraceStore::append(const StepRecord& record) {
  const Layout need = check_record(record);
  StoreState& st = *state_;
  std::lock_guard write_lock(st.write_mutex);

  // Shape: adopted from the first record that has one, then fixed.
  bool header_changed = false;
  if (record.n_layers > 0) {
    const Dims dims{record.n_layers, record.n_heads, record.n_experts, int(record.moe_layers.size())};
    if (!st.header.shape_known) {
      st.header.shape_known = true;
      st.header.dims = dims;
      st.header.moe_layers = record.moe_layers;
      st.header.top_k = std::max(st.header.top_k, record.top_k);
      header_changed = true;
    } else if (!(dims == st.header.dims) || record.moe_layers != st.header.moe_layers) {
      reject("the record's shape (" + std::to_string(dims.n_layers) + " layers, " + std::to_string(dims.n_heads) +
             " heads, " + std::to_string(dims.n_experts) + " experts, " + std::to_string(dims.n_moe) +
             " MoE layers) differs from the trace's (" + std::to_string(st.header.dims.n_layers) + ", " +
             std::to_string(st.header.dims.n_heads) + ", " + std::to_string(st.header.dims.n_experts) + ", " +
             std::to_string(st.header.dims.n_moe) + "); clear() the store before recording another model");
    }
  }
  if (need.routing && record.top_k > st.header.top_k) {
    st.header.top_k = record.top_k;
    header_changed = true;
  }
  if (st.header.attention_topk == 0 && need.attention && record.attention_topk > 0) {
    st.header.attention_topk = record.attention_topk;
    header_changed = true;
  }

  const double now = st.options.clock();
  if (!st.clock_started) {
    st.clock_started = true;
    st.clock_origin = now - record.step_time_s;
  }

  // A chunk that cannot take the record is sealed; the record opens a new one shaped for it.
  if (st.open_chunk && (!st.open_chunk->layout.covers(need) || !(st.open_chunk->dims == st.header.dims) ||
                        st.open_tokens + record.n_tokens > st.open_chunk->token_capacity ||
                        st.open_steps + 1 > st.open_chunk->step_capacity))
    seal(st);
  if (!st.open_chunk) {
    st.open_chunk = new_chunk(need, st.header.dims, std::max(st.chunk_capacity, record.n_tokens), st.chunk_capacity);
    st.open_detail = new_detail(*st.open_chunk);
    st.open_tokens = st.open_steps = 0;
  }
  write_rows(st, record, now - st.clock_origin);
  st.open_tokens += record.n_tokens;
  st.open_steps += 1;
  st.total_tokens += record.n_tokens;
  st.total_steps += 1;
  st.detail_tokens.fetch_add(record.n_tokens, std::memory_order_relaxed);

  {
    ChunkRef open;
    open.chunk = st.open_chunk;
    open.detail = st.open_detail;
    open.n_tokens = st.open_tokens;
    open.n_steps = st.open_steps;
    auto header = header_changed ? std::make_shared<const Header>(st.header) : nullptr;
    std::lock_guard lock(st.publish_mutex);
    st.published_open = std::move(open);
    if (header) st.published_header = std::move(header);
    st.published_steps = st.total_steps;
    st.size.store(st.total_tokens, std::memory_order_relaxed);
    st.version.fetch_add(1, std::memory_order_relaxed);
  }
  if (st.open_tokens >= st.open_chunk->token_capacity || st.open_steps >= st.open_chunk->step_capacity) seal(st);
  move_old_detail(st);
}

TraceSnapshot TraceStore::snapshot() const {
  const StoreState& st = *state_;
  auto s = std::make_shared<SnapshotState>();
  {
    std::lock_guard lock(st.publish_mutex);
    s->header = st.published_header;
    s->sealed = st.sealed;
    s->open = st.published_open;
    s->version = st.version.load(std::memory_order_relaxed);
    s->tokens = st.size.load(std::memory_order_relaxed);
    s->steps = st.published_steps;
  }
  return TraceSnapshot(std::move(s));
}

void TraceStore::set_metadata_json(std::string json) {
  StoreState& st = *state_;
  std::lock_guard write_lock(st.write_mutex);
  st.header.metadata_json = std::move(json);
  publish_header(st);
}

int TraceStore::begin_segment(std::string settings_json) {
  StoreState& st = *state_;
  std::lock_guard write_lock(st.write_mutex);
  st.header.segments.push_back(std::move(settings_json));
  st.current_segment = int(st.header.segments.size()) - 1;
  publish_header(st);
  return st.current_segment;
}

void TraceStore::add_forced_stop(const ForcedStopRecord& stop) {
  StoreState& st = *state_;
  std::lock_guard write_lock(st.write_mutex);
  st.header.forced_stops.push_back(stop);
  publish_header(st);
}

void TraceStore::clear() {
  StoreState& st = *state_;
  std::lock_guard write_lock(st.write_mutex);
  // A fresh spill file: snapshots taken before keep the old one (already unlinked) open.
  std::shared_ptr<SpillFile> spill;
  std::string spill_error;
  if (!st.options.spill_path.empty()) {
    try {
      spill = std::make_shared<SpillFile>(st.options.spill_path);
    } catch (const EngineError& e) {
      spill_error = e.what();
    }
  }
  st.header = Header{};
  st.open_chunk.reset();
  st.open_detail.reset();
  st.open_tokens = st.open_steps = 0;
  st.total_tokens = 0;
  st.total_steps = 0;
  st.clock_started = false;
  st.current_segment = -1;
  st.spill = std::move(spill);
  st.sealed_count = 0;
  st.first_detail_chunk = 0;
  st.first_detail_token = 0;
  st.detail_tokens.store(0, std::memory_order_relaxed);
  std::lock_guard lock(st.publish_mutex);
  st.published_header = std::make_shared<const Header>();
  st.sealed = std::make_shared<const SealedList>();
  st.published_open = ChunkRef{};
  st.published_steps = 0;
  st.spill_error = spill_error;
  st.size.store(0, std::memory_order_relaxed);
  st.version.fetch_add(1, std::memory_order_relaxed);
}

int64_t TraceStore::size() const { return state_->size.load(std::memory_order_relaxed); }
uint64_t TraceStore::version() const { return state_->version.load(std::memory_order_relaxed); }

std::string TraceStore::spill_error() const {
  std::lock_guard lock(state_->publish_mutex);
  return state_->spill_error;
}

int64_t TraceStore::detail_tokens_in_memory() const { return state_->detail_tokens.load(std::memory_order_relaxed); }

}  // namespace moe::inspect
