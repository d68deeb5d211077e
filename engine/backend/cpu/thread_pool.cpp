#include "engine/backend/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

// Design
// ------
// A job is [0, n) cut into `chunks` = min(n, size()) contiguous, near-equal chunks. The caller writes
// the job, then publishes one 64-bit word: generation (32 bits) | chunks (16) | next chunk (16). The
// caller and the workers all claim chunks by compare-and-swap on that word and run them; the caller
// then waits until `done` reaches `chunks`. Because any participant may run any chunk, a worker that
// is not running at the moment (asleep, preempted, or sharing a core with the caller when the
// machine is busy) costs nothing: the caller simply runs its chunk. A worker only reads the job after
// it has claimed a chunk of the current generation, and the caller does not return before every
// claimed chunk is done, so a late worker can never see a half-written next job.
//
// Idle workers watch the word: first spinning with PAUSE (reacts within ~100 ns; decode calls
// parallel_for back to back), then spinning with sched_yield (so a thread that shares the core can
// run), then sleeping on a condition variable until the next job.

namespace moe::cpu {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

constexpr auto kPauseSpinTime = std::chrono::microseconds(3);    // worker: PAUSE spin
constexpr auto kYieldSpinTime = std::chrono::microseconds(300);  // worker: total spin before sleeping
constexpr auto kCallerPauseSpinTime = std::chrono::microseconds(3);  // caller waiting for chunks

constexpr int kMaxThreads = 0xffff;
constexpr int64_t kMaxChunks = 0xffff;  // the chunk fields of the job word are 16 bits

// The job word.
constexpr uint64_t pack(uint32_t gen, uint64_t chunks, uint64_t next) {
  return (uint64_t(gen) << 32) | (chunks << 16) | next;
}
constexpr uint32_t word_gen(uint64_t w) { return uint32_t(w >> 32); }
constexpr int64_t word_chunks(uint64_t w) { return int64_t((w >> 16) & 0xffff); }
constexpr int64_t word_next(uint64_t w) { return int64_t(w & 0xffff); }

// The pool (if any) whose chunk this thread is running; a nested parallel_for on it runs inline.
thread_local const void* tl_running_pool = nullptr;

}  // namespace

struct ThreadPool::Impl {
  int threads = 1;
  std::vector<std::thread> workers;

  // The current job; written by the caller before it publishes `word` (release), read by a
  // participant only after it claimed a chunk of that generation (acquire).
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  uint32_t generation = 0;

  alignas(64) std::atomic<uint64_t> word{0};
  alignas(64) std::atomic<int64_t> done{0};
  alignas(64) std::atomic<int> sleepers{0};
  std::atomic<bool> stop{false};
  std::mutex sleep_mutex;
  std::condition_variable sleep_cv;

  std::mutex call_mutex;  // parallel_for from several outside threads at once is serialised

  std::mutex error_mutex;
  std::exception_ptr error;
  std::atomic<bool> has_error{false};

  void run_chunk(int64_t k, int64_t chunks) {
    const int64_t q = n / chunks, r = n % chunks;
    const int64_t b = k * q + std::min(k, r);
    const int64_t e = b + q + (k < r ? 1 : 0);
    const void* saved = tl_running_pool;
    tl_running_pool = this;
    try {
      (*fn)(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(error_mutex);
      if (!error) error = std::current_exception();
      has_error.store(true, std::memory_order_relaxed);
    }
    tl_running_pool = saved;
  }

  // Claims and runs chunks of generation `gen` until none is left.
  void run_chunks(uint32_t gen) {
    uint64_t w = word.load(std::memory_order_acquire);
    for (;;) {
      if (word_gen(w) != gen || word_next(w) >= word_chunks(w)) return;
      if (word.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        run_chunk(word_next(w), word_chunks(w));
        done.fetch_add(1, std::memory_order_acq_rel);
        w = word.load(std::memory_order_acquire);
      }
    }
  }

  // Waits until the word's generation differs from `seen` (or stop); returns the new generation.
  uint32_t wait_for_job(uint32_t seen) {
    const auto start = std::chrono::steady_clock::now();
    for (unsigned i = 1;; ++i) {
      const uint32_t g = word_gen(word.load(std::memory_order_acquire));
      if (g != seen || stop.load(std::memory_order_relaxed)) return g;
      cpu_relax();
      if ((i & 15) == 0 && std::chrono::steady_clock::now() - start >= kPauseSpinTime) break;
    }
    for (;;) {
      const uint32_t g = word_gen(word.load(std::memory_order_acquire));
      if (g != seen || stop.load(std::memory_order_relaxed)) return g;
      std::this_thread::yield();
      if (std::chrono::steady_clock::now() - start >= kYieldSpinTime) break;
    }
    std::unique_lock<std::mutex> lk(sleep_mutex);
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    uint32_t g;
    while ((g = word_gen(word.load(std::memory_order_seq_cst))) == seen && !stop.load(std::memory_order_seq_cst))
      sleep_cv.wait(lk);
    sleepers.fetch_sub(1, std::memory_order_relaxed);
    return g;
  }

  void worker_main() {
    uint32_t seen = 0;
    for (;;) {
      seen = wait_for_job(seen);
      if (stop.load(std::memory_order_acquire)) return;
      run_chunks(seen);
    }
  }

  // Wakes sleeping workers after `word` or `stop` changed. Dekker-style pairing with wait_for_job:
  // store(word) → load(sleepers) here, fetch_add(sleepers) → load(word) there, all seq_cst, so a
  // worker either sees the new word or is seen as a sleeper and notified under the mutex.
  void wake_sleepers() {
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lk(sleep_mutex); }
      sleep_cv.notify_all();
    }
  }

  void shut_down() {
    stop.store(true, std::memory_order_seq_cst);
    wake_sleepers();
    for (auto& t : workers) t.join();
  }
};

ThreadPool::ThreadPool(int threads) : impl_(new Impl) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  impl_->threads = std::min(threads, kMaxThreads);
  try {
    impl_->workers.reserve(size_t(impl_->threads - 1));
    for (int i = 1; i < impl_->threads; ++i) impl_->workers.emplace_back([this] { impl_->worker_main(); });
  } catch (...) {
    impl_->shut_down();
    delete impl_;
    throw;
  }
}

ThreadPool::~ThreadPool() {
  impl_->shut_down();
  delete impl_;
}

int ThreadPool::size() const { return impl_->threads; }

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  parallel_for_chunks(n, impl_->threads, fn);
}

void ThreadPool::parallel_for_chunks(int64_t n, int64_t max_chunks,
                                     const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  Impl& p = *impl_;
  const int64_t chunks = std::min<int64_t>(n, std::clamp<int64_t>(max_chunks, 1, kMaxChunks));
  // One thread, or a nested call from inside one of this pool's chunks: run here, chunk by chunk
  // (the same boundaries as a parallel run).
  if (p.threads == 1 || chunks == 1 || tl_running_pool == impl_) {
    const int64_t q = n / chunks, r = n % chunks;
    for (int64_t k = 0, b = 0; k < chunks; ++k) {
      const int64_t e = b + q + (k < r ? 1 : 0);
      fn(b, e);
      b = e;
    }
    return;
  }
  std::lock_guard<std::mutex> call_lock(p.call_mutex);
  p.fn = &fn;
  p.n = n;
  p.error = nullptr;
  p.has_error.store(false, std::memory_order_relaxed);
  p.done.store(0, std::memory_order_relaxed);
  const uint32_t gen = ++p.generation;
  p.word.store(pack(gen, uint64_t(chunks), 0), std::memory_order_seq_cst);
  p.wake_sleepers();

  p.run_chunks(gen);

  if (p.done.load(std::memory_order_acquire) != chunks) {
    const auto start = std::chrono::steady_clock::now();
    bool yield = false;
    for (unsigned i = 1; p.done.load(std::memory_order_acquire) != chunks; ++i) {
      if (yield) {
        std::this_thread::yield();  // a worker running a chunk was preempted
      } else {
        cpu_relax();
        if ((i & 15) == 0) yield = std::chrono::steady_clock::now() - start >= kCallerPauseSpinTime;
      }
    }
  }
  if (p.has_error.load(std::memory_order_relaxed)) {
    std::exception_ptr e;
    {
      std::lock_guard<std::mutex> lk(p.error_mutex);
      e = p.error;
      p.error = nullptr;
    }
    std::rethrow_exception(e);
  }
}

}  // namespace moe::cpu
