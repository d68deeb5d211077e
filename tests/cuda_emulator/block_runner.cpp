#include "tests/cuda_emulator/block_runner.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
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

enum class Wait { None, Block, Warp };

struct Thread {
  ThreadPosition pos{};
  int lane = 0, warp = 0;
  Wait wait = Wait::None;
  uint64_t wait_gen = 0;
  bool done = false;
  Fiber* fiber = nullptr;
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

struct Block {
  const GridShape* shape = nullptr;
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  int live = 0;
  int block_arrived = 0;
  uint64_t block_gen = 0;
  unsigned char* dynamic_shared = nullptr;
};

thread_local Block* t_block = nullptr;
thread_local Thread* t_thread = nullptr;

// Fibers and their stacks are kept for the next block and grid (mapping a stack is a system call).
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
  }
  return false;
}

// Threads run in ascending order in even blocks and descending order in odd ones (swapped by
// MOE_CUDA_EMULATOR_ORDER=reverse): a missing barrier between threads of a block shows up in one order
// or the other, within one run.
void run_block(Block& b, const std::function<void()>& body, bool reverse) {
  for (Thread& t : b.threads) {
    t.wait = Wait::None;
    t.done = false;
    t.fiber->reset(&body);
  }
  for (Warp& w : b.warps) {
    w.exited = w.arrived = w.mask = 0;
    w.gen = 0;
  }
  b.live = int(b.threads.size());
  b.block_arrived = 0;
  b.block_gen = 0;
  const int n = int(b.threads.size());
  while (b.live > 0) {
    bool ran = false;
    for (int k = 0; k < n; ++k) {
      Thread& t = b.threads[size_t(reverse ? n - 1 - k : k)];
      if (!runnable(b, t)) continue;
      t.wait = Wait::None;
      t_thread = &t;
      t.fiber->resume();
      ran = true;
      if (t.fiber->finished()) thread_exited(b, t);
    }
    t_thread = nullptr;
    if (!ran) kernel_fault("deadlock: " + waiting_summary(b));
  }
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

void run_grid(const GridShape& shape, const std::function<void()>& body) {
  const dim3 bd = shape.block, gd = shape.grid;
  const int n = int(bd.x * bd.y * bd.z);
  auto& pool = fiber_pool();
  while (int(pool.size()) < n) pool.push_back(std::make_unique<Fiber>(kStackBytes));

  Block b;
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
    t.fiber = pool[size_t(i)].get();
    b.warps[size_t(t.warp)].present |= 1u << t.lane;
  }
  // Dynamic shared memory is allocated at its exact size (so a sanitizer sees overruns), 128-byte
  // aligned (as kernels may declare it), and starts as NaN bytes, as stale as the GPU's.
  std::unique_ptr<unsigned char[]> smem;
  if (shape.dynamic_shared_bytes) smem.reset(new (std::align_val_t(128)) unsigned char[shape.dynamic_shared_bytes]);
  b.dynamic_shared = smem.get();

  const bool flip = [] {
    const char* o = std::getenv("MOE_CUDA_EMULATOR_ORDER");
    return o && std::strcmp(o, "reverse") == 0;
  }();
  Block* outer = t_block;
  t_block = &b;
  uint64_t linear = 0;
  for (unsigned z = 0; z < gd.z; ++z)
    for (unsigned y = 0; y < gd.y; ++y)
      for (unsigned x = 0; x < gd.x; ++x, ++linear) {
        for (Thread& t : b.threads) t.pos.block_idx = uint3{x, y, z};
        if (smem) std::memset(smem.get(), 0xff, shape.dynamic_shared_bytes);
        run_block(b, body, bool(linear & 1) != flip);
      }
  t_block = outer;
  // aligned new[] needs the matching aligned delete[]
  if (smem) ::operator delete[](smem.release(), std::align_val_t(128));
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
  if (src < 0 || src > 31 || !(mask & (1u << src))) kernel_fault("a shuffle reads lane " + std::to_string(src) + ", which is not in its mask");
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
