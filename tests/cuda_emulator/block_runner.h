#pragma once
// How the emulator runs a grid: block after block, each block's threads as cooperative fibers on one OS
// thread. A thread runs until it must wait for others (__syncthreads, a warp-synchronous intrinsic) or
// returns; odd blocks run their threads in the reverse order, so a missing barrier shows, and every other grid runs
// its blocks in descending order, so an assumption about which block runs last shows. Half the blocks run warp by
// warp, each warp as far as the block's barriers let it before the next, so a barrier missing before shared memory
// is reused shows too. Misuse a GPU would punish
// with a hang or garbage — a barrier some threads never reach, a warp intrinsic whose mask names lanes that have
// exited, a shuffle from a lane outside the mask — is reported with the kernel, block and thread, and the process
// aborts.
//
// A grid launched as a programmatic dependent (launch_dependent, dependent_launch.cuh) may start before
// the work queued ahead of it has finished, so nothing it does before wait_for_inputs() may depend on
// that work. The emulator makes such a dependency show: it runs the grid's first block until every
// thread waits for its inputs (or has returned) *before* the previous work runs, then the previous
// work, then the rest of the grid. A thread of a dependent grid that returns without waiting is a fault.
#include <vector_types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace moe_emu {

struct GridShape {
  const char* kernel = "";  // for messages
  dim3 grid, block;
  size_t dynamic_shared_bytes = 0;
  bool dependent = false;  // launched as a programmatic dependent: every thread must wait for inputs
};

// Runs body once per thread of the grid (synchronously).
void run_grid(const GridShape& shape, const std::function<void()>& body);

// A dependent grid's two parts: its first block up to the wait for inputs (run before the previous
// work), then the whole grid, the first block continuing where it stopped. Reusable: a graph replays
// the same grid, and each run() ends what start_early() began.
class DependentGrid {
 public:
  DependentGrid(const GridShape& shape, std::function<void()> body);
  ~DependentGrid();
  void start_early();
  void run();

 private:
  struct Parked;
  GridShape shape_;
  std::function<void()> body_;
  std::unique_ptr<Parked> parked_;
};

// ---- what the kernel-side prelude reads and calls, from inside a running thread ----
struct ThreadPosition {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
const ThreadPosition& position();
unsigned char* dynamic_shared();
int lane_id();

void sync_block();                  // __syncthreads
void sync_warp(unsigned mask);      // __syncwarp and the rendezvous of every *_sync intrinsic
void dependency_wait();             // griddepcontrol.wait (wait_for_inputs)
// cp.async (async_copy.cuh): copies the calling thread issues into the open group, commit_async closes
// the group, and wait_async(n) completes every committed group but the newest n. A copy lands only then,
// and a thread that returns with copies not waited for is a fault.
void copy_async(void* dst, const void* src, size_t bytes);
void commit_async();
void wait_async(int newest_pending);
// The value of `bits` held by lane src (which must be in mask), exchanged among the lanes of mask.
uint64_t exchange(unsigned mask, uint64_t bits, int src);
unsigned ballot(unsigned mask, bool predicate);
// Memory the lanes of the calling thread's warp share (at least `floats` of it), for warp-wide
// operations that gather every lane's part (the wmma emulation). All lanes of one rendezvous must ask
// for the same size, and a lane must ask again after each rendezvous: a larger request moves it.
float* warp_scratch(size_t floats);

// Reports a kernel bug (with where it happened) and aborts.
[[noreturn]] void kernel_fault(const std::string& what);

}  // namespace moe_emu
