#pragma once
// A fixed pool of worker threads for data-parallel loops. The calling thread takes part, so a pool of
// size n runs n threads in all. parallel_for returns when every chunk is done.
#include <cstdint>
#include <functional>

namespace moe::cpu {

class ThreadPool {
 public:
  // threads <= 0: std::thread::hardware_concurrency().
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  // Splits [0, n) into at most size() contiguous chunks and calls fn(begin, end) once per chunk,
  // on the workers and the caller. Not re-entrant: fn must not call parallel_for on the same pool.
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);
  // The same with min(n, chunks) contiguous, near-equal chunks (chunks is clamped to [1, 65535]).
  // Chunks are claimed dynamically by whichever participant is free, so asking for a few chunks
  // per thread balances the load when threads run at different speeds (a core shared with another
  // process, a preempted worker). parallel_for(n, fn) is parallel_for_chunks(n, size(), fn).
  void parallel_for_chunks(int64_t n, int64_t chunks, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace moe::cpu
