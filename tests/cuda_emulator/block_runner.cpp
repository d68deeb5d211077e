#include "tests/cuda_emulator/block_runner.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iterator>
#include <memory>
#include <new>
#include <vector>

#include "tests/cuda_emulator/fiber.h"

namespace moe_emu {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStackBytes = 1 << 20;  // AddressSanitizer's redzones make frames several times larger
#else
constexpr size_t kStackBytes = 256 << 10;
#endif

enum class Wait { None, Block, Warp, Dependency };

// A copy issued by copy_async: it lands only when its thread waits for its group (wait_async), the
// latest moment a GPU allows, so a kernel that reads a stage before waiting for it reads stale bytes.
struct AsyncCopy {
  void* dst;
  const void* src;
  size_t bytes;
};

struct Thread {
  ThreadPosition pos{};
  int lane = 0, warp = 0;
  Wait wait = Wait::None;
  uint64_t wait_gen = 0;
  bool done = false;
  bool waited = false;  // has called dependency_wait (checked in dependent grids)
  Fiber* fiber = nullptr;
  std::vector<AsyncCopy> open_copies;              // issued since the last commit_async
  std::deque<std::vector<AsyncCopy>> copy_groups;  // committed and not yet waited for, oldest first
};

struct Warp {
  uint32_t present = 0;  // lanes that exist (a partial last warp has fewer)
  uint32_t exited = 0;
  uint32_t arrived = 0;  // lanes waiting at the current rendezvous
  uint32_t mask = 0;     // the mask they named
  uint64_t gen = 0;      // completed rendezvous
  uint64_t slot[32] = {};
  std::vector<float> scratch;  // warp_scratch(): grows, never shrinks, for the warp's life in this grid
};

// Dynamic shared memory, allocated at its exact size (so a sanitizer sees overruns) and 128-byte
// aligned (as kernels may declare it).
class SharedBytes {
 public:
  explicit SharedBytes(size_t n)
      : n_(n), p_(n ? static_cast<unsigned char*>(::operator new[](n, std::align_val_t(128))) : nullptr) {}
  ~SharedBytes() {
    if (p_) ::operator delete[](p_, std::align_val_t(128));
  }
  SharedBytes(const SharedBytes&) = delete;
  SharedBytes& operator=(const SharedBytes&) = delete;
  unsigned char* get() const { return p_; }
  // A block starts with NaN bytes, as stale as the GPU's.
  void poison() {
    if (p_) std::memset(p_, 0xff, n_);
  }

 private:
  size_t n_;
  unsigned char* p_;
};

struct Block {
  const GridShape* shape = nullptr;
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  std::vector<std::unique_ptr<Fiber>> fibers;  // from the pool, returned by release_block
  int live = 0;
  int block_arrived = 0;
  uint64_t block_gen = 0;
  unsigned char* dynamic_shared = nullptr;
  bool reverse = false;  // runs its threads (and warps) in descending order
  bool warp_by_warp = false;  // runs each warp as far as it can before the next (else all threads in turn)
  bool early = false;    // a dependent grid's first block, running before the previous work
};

thread_local Block* t_block = nullptr;
thread_local Thread* t_thread = nullptr;

// Fibers and their stacks are kept for the next block and grid (mapping a stack is a system call).
// A parked block holds its fibers while other grids run, so blocks take fibers and give them back.
std::vector<std::unique_ptr<Fiber>>& fiber_pool() {
  thread_local std::vector<std::unique_ptr<Fiber>> pool;
  return pool;
}

std::string dim_text(const uint3& d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

// Which threads wait where, for a deadlock report.
std::string waiting_summary(const Block& b) {
  int at_block = 0, at_warp = 0;
  std::string first;
  for (const Thread& t : b.threads) {
    if (t.done) continue;
    (t.wait == Wait::Block ? at_block : at_warp) += 1;
    if (first.empty())
      first = "thread " + dim_text(t.pos.thread_idx) + (t.wait == Wait::Block ? " at __syncthreads" : " at a warp rendezvous");
  }
  return std::to_string(at_block) + " thread(s) wait at __syncthreads, " + std::to_string(at_warp) +
         " at a warp rendezvous (e.g. " + first + "); " + std::to_string(b.threads.size() - size_t(b.live)) + " returned";
}

void thread_exited(Block& b, Thread& t) {
  t.done = true;
  --b.live;
  if (b.shape->dependent && !t.waited)
    kernel_fault("a thread of a dependent launch returned without waiting for its inputs (wait_for_inputs)");
  bool copies_pending = !t.open_copies.empty();
  for (const auto& g : t.copy_groups) copies_pending |= !g.empty();
  if (copies_pending)  // they would land in shared memory the block may already be reusing
    kernel_fault("a thread returned with asynchronous copies it never waited for (copy_async without wait_async)");
  Warp& w = b.warps[size_t(t.warp)];
  const uint32_t bit = 1u << t.lane;
  w.exited |= bit;
  if (w.arrived && (w.mask & bit))
    kernel_fault("lane " + std::to_string(t.lane) + " returned while lanes of its warp wait for it in a *_sync intrinsic");
  // A thread that returns no longer counts at __syncthreads (as on the GPU).
  if (b.block_arrived > 0 && b.block_arrived == b.live) {
    b.block_arrived = 0;
    ++b.block_gen;
  }
}

bool runnable(const Block& b, const Thread& t) {
  if (t.done) return false;
  switch (t.wait) {
    case Wait::None: return true;
    case Wait::Block: return b.block_gen != t.wait_gen;
    case Wait::Warp: return b.warps[size_t(t.warp)].gen != t.wait_gen;
    case Wait::Dependency: return !b.early;
  }
  return false;
}

// Threads, warps and fibers for a block of the shape.
void setup_block(Block& b, const GridShape& shape) {
  const dim3 bd = shape.block, gd = shape.grid;
  const int n = int(bd.x * bd.y * bd.z);
  auto& pool = fiber_pool();
  while (int(pool.size()) < n) pool.push_back(std::make_unique<Fiber>(kStackBytes));
  b.fibers.assign(std::make_move_iterator(pool.end() - n), std::make_move_iterator(pool.end()));
  pool.resize(pool.size() - size_t(n));
  b.shape = &shape;
  b.threads.resize(size_t(n));
  b.warps.resize(size_t((n + 31) / 32));
  for (int i = 0; i < n; ++i) {
    Thread& t = b.threads[size_t(i)];
    t.pos.thread_idx = uint3{unsigned(i) % bd.x, unsigned(i) / bd.x % bd.y, unsigned(i) / (bd.x * bd.y)};
    t.pos.block_dim = bd;
    t.pos.grid_dim = gd;
    t.lane = i % 32;
    t.warp = i / 32;
    t.fiber = b.fibers[size_t(i)].get();
    b.warps[size_t(t.warp)].present |= 1u << t.lane;
  }
}

void release_block(Block& b) {
  auto& pool = fiber_pool();
  for (auto& f : b.fibers) pool.push_back(std::move(f));
  b.fibers.clear();
}

// Threads run in ascending order in even blocks and descending order in odd ones (swapped by
// MOE_CUDA_EMULATOR_ORDER=reverse): a missing barrier between threads of a block shows up in one order
// or the other, within one run.
bool reverse_order(uint64_t linear_block) {
  static const bool flip = [] {
    const char* o = std::getenv("MOE_CUDA_EMULATOR_ORDER");
    return o && std::strcmp(o, "reverse") == 0;
  }();
  return bool(linear_block & 1) != flip;
}

void start_block(Block& b, uint3 block_idx, uint64_t linear, bool warp_by_warp, const std::function<void()>& body) {
  for (Thread& t : b.threads) {
    t.pos.block_idx = block_idx;
    t.wait = Wait::None;
    t.done = false;
    t.waited = false;
    t.open_copies.clear();
    t.copy_groups.clear();
    t.fiber->reset(&body);
  }
  for (Warp& w : b.warps) {
    w.exited = w.arrived = w.mask = 0;
    w.gen = 0;
  }
  b.live = int(b.threads.size());
  b.block_arrived = 0;
  b.block_gen = 0;
  b.reverse = reverse_order(linear);
  b.warp_by_warp = warp_by_warp;
}

// Resumes thread t once; whether it could run.
bool step_thread(Block& b, Thread& t) {
  if (!runnable(b, t)) return false;
  t.wait = Wait::None;
  t_thread = &t;
  t.fiber->resume();
  if (t.fiber->finished()) thread_exited(b, t);
  return true;
}

// Runs the block's threads until every one has returned or, in an early block, until none can run
// because they wait for their inputs.
void run_threads(Block& b) {
  Block* outer = t_block;
  t_block = &b;
  const int n = int(b.threads.size());
  const int n_warps = int(b.warps.size());
  while (b.live > 0) {
    bool ran = false;
    if (b.warp_by_warp) {
      // One warp at a time, its lanes in turn, until all of them wait at __syncthreads (or have
      // returned): it runs ahead of the others as far as the barriers let it, so a barrier missing
      // before shared memory is reused (or read) shows.
      for (int wk = 0; wk < n_warps; ++wk) {
        const int w = b.reverse ? n_warps - 1 - wk : wk;
        const int lo = 32 * w, hi = std::min(n, lo + 32);
        for (bool warp_ran = true; warp_ran;) {
          warp_ran = false;
          for (int k = lo; k < hi; ++k) warp_ran |= step_thread(b, b.threads[size_t(b.reverse ? hi - 1 - (k - lo) : k)]);
          ran |= warp_ran;
        }
      }
    } else {
      for (int k = 0; k < n; ++k) ran |= step_thread(b, b.threads[size_t(b.reverse ? n - 1 - k : k)]);
    }
    t_thread = nullptr;
    if (!ran) {
      if (b.early) break;
      kernel_fault("deadlock: " + waiting_summary(b));
    }
  }
  t_block = outer;
}

// Grids alternate between running their blocks in ascending and in descending order, so a kernel that
// assumes which block runs first or finishes last (rather than counting, as last_block.cuh does) fails
// in one of the two; a GPU promises no order at all. Blocks also alternate between running their
// threads all in turn and warp by warp (Block::warp_by_warp), two grids of one and two of the other for
// a grid of one block.
struct GridOrder {
  bool descending;
  uint64_t schedule;  // block `linear` runs warp by warp when ((linear >> 1) ^ schedule) is odd
};
GridOrder next_grid_order() {
  thread_local uint64_t grids = 0;
  const uint64_t g = grids++;
  return GridOrder{(g & 1) != 0, g >> 1};
}

// Every block of the grid in turn; block 0 is `first` when it has already started (parked early).
void run_blocks(const GridShape& shape, const std::function<void()>& body, Block* first) {
  Block b;
  setup_block(b, shape);
  SharedBytes smem(shape.dynamic_shared_bytes);
  b.dynamic_shared = smem.get();
  const dim3 gd = shape.grid;
  const uint64_t n = uint64_t(gd.x) * gd.y * gd.z;
  const GridOrder order = next_grid_order();
  const bool descending = order.descending;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t linear = descending ? n - 1 - i : i;
    if (linear == 0 && first) {
      first->early = false;
      run_threads(*first);
      continue;
    }
    const uint3 idx{unsigned(linear % gd.x), unsigned(linear / gd.x % gd.y), unsigned(linear / (uint64_t(gd.x) * gd.y))};
    start_block(b, idx, linear, (((linear >> 1) ^ order.schedule) & 1) != 0, body);
    smem.poison();
    run_threads(b);
  }
  release_block(b);
}

}  // namespace

void kernel_fault(const std::string& what) {
  std::string where;
  if (t_block) {
    where = std::string(" in ") + t_block->shape->kernel;
    if (!t_block->threads.empty()) where += ", block " + dim_text(t_block->threads[0].pos.block_idx);
    if (t_thread) where += ", thread " + dim_text(t_thread->pos.thread_idx);
  }
  std::fprintf(stderr, "CUDA emulator: %s%s\n", what.c_str(), where.c_str());
  std::fflush(stderr);
  std::abort();
}

void run_grid(const GridShape& shape, const std::function<void()>& body) { run_blocks(shape, body, nullptr); }

struct DependentGrid::Parked {
  explicit Parked(size_t shared_bytes) : smem(shared_bytes) {}
  Block block;
  SharedBytes smem;
};

DependentGrid::DependentGrid(const GridShape& shape, std::function<void()> body)
    : shape_(shape), body_(std::move(body)) {}

DependentGrid::~DependentGrid() {
  if (parked_) release_block(parked_->block);
}

void DependentGrid::start_early() {
  if (parked_) return;
  parked_ = std::make_unique<Parked>(shape_.dynamic_shared_bytes);
  Block& b = parked_->block;
  setup_block(b, shape_);
  b.dynamic_shared = parked_->smem.get();
  parked_->smem.poison();
  start_block(b, uint3{0, 0, 0}, 0, false, body_);
  b.early = true;
  run_threads(b);
}

void DependentGrid::run() {
  run_blocks(shape_, body_, parked_ ? &parked_->block : nullptr);
  if (parked_) {
    release_block(parked_->block);
    parked_.reset();
  }
}

const ThreadPosition& position() { return t_thread->pos; }
unsigned char* dynamic_shared() { return t_block->dynamic_shared; }
int lane_id() { return t_thread->lane; }

void sync_block() {
  Block& b = *t_block;
  Thread& t = *t_thread;
  if (++b.block_arrived == b.live) {
    b.block_arrived = 0;
    ++b.block_gen;
    return;
  }
  t.wait = Wait::Block;
  t.wait_gen = b.block_gen;
  t.fiber->yield();
}

void dependency_wait() {
  Block& b = *t_block;
  Thread& t = *t_thread;
  if (b.early) {  // the previous work has not run yet: park until it has
    t.wait = Wait::Dependency;
    t.fiber->yield();
  }
  t.waited = true;
}

void copy_async(void* dst, const void* src, size_t bytes) {
  if (bytes != 4 && bytes != 8 && bytes != 16) kernel_fault("copy_async of " + std::to_string(bytes) + " bytes (4, 8 or 16)");
  if (reinterpret_cast<uintptr_t>(dst) % bytes || reinterpret_cast<uintptr_t>(src) % bytes)
    kernel_fault("copy_async with a source or destination not aligned to its size");
  t_thread->open_copies.push_back(AsyncCopy{dst, src, bytes});
}

void commit_async() {
  Thread& t = *t_thread;
  t.copy_groups.push_back(std::move(t.open_copies));
  t.open_copies.clear();
}

void wait_async(int newest_pending) {
  Thread& t = *t_thread;
  while (t.copy_groups.size() > size_t(std::max(0, newest_pending))) {
    for (const AsyncCopy& c : t.copy_groups.front()) std::memcpy(c.dst, c.src, c.bytes);
    t.copy_groups.pop_front();
  }
}

void sync_warp(unsigned mask) {
  Block& b = *t_block;
  Thread& t = *t_thread;
  Warp& w = b.warps[size_t(t.warp)];
  const uint32_t bit = 1u << t.lane;
  if (!(mask & bit)) kernel_fault("a lane calls a *_sync intrinsic with a mask that does not name it");
  if (mask & ~w.present) kernel_fault("a *_sync mask names lanes past the end of the block (a partial warp)");
  if (mask & w.exited) kernel_fault("a *_sync mask names lanes that have returned");
  if (w.arrived && w.mask != mask) kernel_fault("lanes of one warp meet in *_sync intrinsics with different masks");
  w.mask = mask;
  w.arrived |= bit;
  if (w.arrived == mask) {
    w.arrived = 0;
    ++w.gen;
    return;
  }
  t.wait = Wait::Warp;
  t.wait_gen = w.gen;
  t.fiber->yield();
}

uint64_t exchange(unsigned mask, uint64_t bits, int src) {
  Warp& w = t_block->warps[size_t(t_thread->warp)];
  if (src < 0 || src > 31 || !(mask & (1u << src)))
    kernel_fault("a shuffle reads lane " + std::to_string(src) + ", which is not in its mask");
  w.slot[t_thread->lane] = bits;
  sync_warp(mask);  // every lane has written
  const uint64_t r = w.slot[src];
  sync_warp(mask);  // every lane has read (before a next exchange overwrites)
  return r;
}

float* warp_scratch(size_t floats) {
  std::vector<float>& s = t_block->warps[size_t(t_thread->warp)].scratch;
  if (s.size() < floats) s.resize(floats);
  return s.data();
}

unsigned ballot(unsigned mask, bool predicate) {
  Warp& w = t_block->warps[size_t(t_thread->warp)];
  w.slot[t_thread->lane] = predicate ? 1 : 0;
  sync_warp(mask);
  unsigned r = 0;
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && w.slot[l]) r |= 1u << l;
  sync_warp(mask);
  return r;
}

}  // namespace moe_emu
