#pragma once
// Cooperative fibers for the CUDA emulator: every CUDA thread of a block runs as a fiber on one OS
// thread, and switches away only where CUDA threads synchronise (__syncthreads, warp intrinsics). A
// switch is a handful of instructions on x86-64 (the emulator switches millions of times per test);
// other architectures fall back to ucontext.
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

namespace moe_emu {

class Fiber {
 public:
  // A fiber that runs `body` on its own stack the first time it is resumed.
  Fiber(size_t stack_bytes);
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Prepares the fiber to run `body` from the start (the stack is reused between blocks).
  void reset(const std::function<void()>* body);
  // From the scheduler: runs the fiber until it yields or its body returns.
  void resume();
  // From inside the fiber: back to the scheduler.
  void yield();
  bool finished() const { return finished_; }

 private:
  static void entry();  // first frame of every fiber
  struct Impl;
  std::unique_ptr<Impl> impl_;
  const std::function<void()>* body_ = nullptr;
  bool finished_ = true;
};

}  // namespace moe_emu
