// ThreadPool: every index covered exactly once, chunking, exceptions, nesting, many small calls.
#include "engine/backend/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace moe::cpu {
namespace {

TEST(ThreadPool, SizeDefaultsToHardware) {
  ThreadPool p0(0);
  EXPECT_EQ(p0.size(), int(std::max(1u, std::thread::hardware_concurrency())));
  ThreadPool p1(-3);
  EXPECT_GE(p1.size(), 1);
  ThreadPool p3(3);
  EXPECT_EQ(p3.size(), 3);
}

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 4, 7}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 31, 64, 100, 1000, 4097, 100003}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (auto& h : hits) h.store(0);
      std::mutex m;
      std::vector<std::pair<int64_t, int64_t>> chunks;
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        {
          std::lock_guard<std::mutex> lk(m);
          chunks.emplace_back(b, e);
        }
        for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "threads=" << threads << " n=" << n << " i=" << i;
      // Chunks: at most size(), non-empty, contiguous, sizes differ by at most one.
      const int64_t want_chunks = n == 0 ? 0 : std::min<int64_t>(n, threads);
      ASSERT_EQ(int64_t(chunks.size()), want_chunks) << "threads=" << threads << " n=" << n;
      std::sort(chunks.begin(), chunks.end());
      int64_t expect_begin = 0, lo = n, hi = 0;
      for (auto [b, e] : chunks) {
        EXPECT_EQ(b, expect_begin);
        EXPECT_LT(b, e);
        lo = std::min(lo, e - b);
        hi = std::max(hi, e - b);
        expect_begin = e;
      }
      if (n > 0) {
        EXPECT_EQ(expect_begin, n);
        EXPECT_LE(hi - lo, 1) << "threads=" << threads << " n=" << n;
      }
    }
  }
}

TEST(ThreadPool, ChunksVariantCoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t chunks : {int64_t(-5), int64_t(0), int64_t(1), int64_t(2), int64_t(5), int64_t(16), int64_t(1000),
                           int64_t(1) << 40}) {
      for (int64_t n : {1, 2, 7, 64, 1001, 100003}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        for (auto& h : hits) h.store(0);
        std::mutex m;
        std::vector<std::pair<int64_t, int64_t>> got;
        pool.parallel_for_chunks(n, chunks, [&](int64_t b, int64_t e) {
          {
            std::lock_guard<std::mutex> lk(m);
            got.emplace_back(b, e);
          }
          for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n=" << n << " chunks=" << chunks;
        const int64_t want = std::min<int64_t>(n, std::clamp<int64_t>(chunks, 1, 65535));
        ASSERT_EQ(int64_t(got.size()), want) << "threads=" << threads << " n=" << n << " chunks=" << chunks;
        std::sort(got.begin(), got.end());
        int64_t lo = n, hi = 0, at = 0;
        for (auto [b, e] : got) {
          EXPECT_EQ(b, at);
          at = e;
          lo = std::min(lo, e - b);
          hi = std::max(hi, e - b);
        }
        EXPECT_EQ(at, n);
        EXPECT_LE(hi - lo, 1);
      }
    }
  }
}

TEST(ThreadPool, SlowChunkIsBalancedByOthers) {
  // Chunk 0 sleeps 50 ms; with many chunks claimed dynamically, the other participant takes the rest.
  ThreadPool pool(2);
  std::mutex m;
  std::vector<std::pair<int64_t, std::thread::id>> ran;
  pool.parallel_for_chunks(40, 40, [&](int64_t b, int64_t) {
    if (b == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::lock_guard<std::mutex> lk(m);
    ran.emplace_back(b, std::this_thread::get_id());
  });
  ASSERT_EQ(ran.size(), 40u);
  std::thread::id slow;
  for (auto& [b, id] : ran)
    if (b == 0) slow = id;
  int by_slow = 0;
  for (auto& [b, id] : ran) by_slow += id == slow;
  // The thread that slept cannot have run most of the 40 chunks of 0.2 ms (unless its partner never
  // got a CPU at all, which a shared machine may do: so only a loose bound).
  EXPECT_LT(by_slow, 40);
}

TEST(ThreadPool, UsesSeveralThreads) {
  ThreadPool pool(3);
  std::mutex m;
  std::set<std::thread::id> ids;
  for (int rep = 0; rep < 20 && ids.size() < 3; ++rep) {
    pool.parallel_for(3, [&](int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      std::lock_guard<std::mutex> lk(m);
      ids.insert(std::this_thread::get_id());
    });
  }
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_TRUE(ids.count(std::this_thread::get_id())) << "the caller takes part";
}

TEST(ThreadPool, PoolOfOneRunsOnCaller) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.size(), 1);
  int calls = 0;
  std::thread::id who;
  pool.parallel_for(10, [&](int64_t b, int64_t e) {
    ++calls;
    who = std::this_thread::get_id();
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(who, std::this_thread::get_id());
}

TEST(ThreadPool, ExceptionsPropagateToCaller) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    // Thrown in a worker's chunk (the last one) and in the caller's chunk (the first one).
    EXPECT_THROW(pool.parallel_for(100, [](int64_t, int64_t e) {
      if (e == 100) throw std::runtime_error("last chunk");
    }), std::runtime_error);
    EXPECT_THROW(pool.parallel_for(100, [](int64_t b, int64_t) {
      if (b == 0) throw std::logic_error("first chunk");
    }), std::logic_error);
    // Every chunk throws: exactly one exception reaches the caller.
    int caught = 0;
    try {
      pool.parallel_for(100, [](int64_t b, int64_t) { throw std::out_of_range(std::to_string(b)); });
    } catch (const std::out_of_range&) {
      ++caught;
    }
    EXPECT_EQ(caught, 1);
    // The pool still works afterwards.
    std::atomic<int64_t> sum{0};
    pool.parallel_for(1000, [&](int64_t b, int64_t e) {
      int64_t s = 0;
      for (int64_t i = b; i < e; ++i) s += i;
      sum += s;
    });
    EXPECT_EQ(sum.load(), 999 * 1000 / 2);
  }
}

TEST(ThreadPool, NestedCallRunsInline) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.parallel_for(4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      pool.parallel_for(10, [&](int64_t b2, int64_t e2) { total += e2 - b2; });
  });
  EXPECT_EQ(total.load(), 40);
}

TEST(ThreadPool, ManySmallCalls) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    std::vector<int64_t> data(64, 0);
    for (int rep = 0; rep < 20000; ++rep) {
      const int64_t n = 1 + rep % 64;
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ++data[size_t(i)];
      });
    }
    // Index i is covered by every call with n > i.
    for (int64_t i = 0; i < 64; ++i) {
      int64_t want = 0;
      for (int rep = 0; rep < 20000; ++rep) want += (1 + rep % 64) > i;
      ASSERT_EQ(data[size_t(i)], want) << "threads=" << threads << " i=" << i;
    }
  }
}

TEST(ThreadPool, CallsAfterIdleSleep) {
  // Workers go to sleep after a short spin; jobs after a pause must still run.
  ThreadPool pool(3);
  for (int rep = 0; rep < 5; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::atomic<int> chunks{0};
    pool.parallel_for(3, [&](int64_t, int64_t) { ++chunks; });
    EXPECT_EQ(chunks.load(), 3);
  }
}

TEST(ThreadPool, SeveralOutsideCallersAreSerialised) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  auto work = [&] {
    for (int rep = 0; rep < 2000; ++rep)
      pool.parallel_for(10, [&](int64_t b, int64_t e) { total += e - b; });
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 2 * 2000 * 10);
}

TEST(ThreadPool, DispatchOverheadIsSmall) {
  ThreadPool pool(2);
  auto spin_us = [](double us) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::nanoseconds(int64_t(us * 1000));
    while (std::chrono::steady_clock::now() < end) {
    }
  };
  // Per call: an empty job, and a job whose two chunks each take ~5 us (overhead = time − 5 us).
  auto measure = [&](double chunk_us, int calls) {
    auto fn = [&](int64_t, int64_t) { spin_us(chunk_us); };
    for (int i = 0; i < calls / 10; ++i) pool.parallel_for(2, fn);  // warm up
    double best = 1e9;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < calls; ++i) pool.parallel_for(2, fn);
      const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / calls;
      best = std::min(best, us - chunk_us);
    }
    return best;
  };
  const double empty_us = measure(0.0, 20000);
  const double busy_us = measure(5.0, 2000);
  std::printf("ThreadPool(2) dispatch overhead: empty job %.2f us, 2 chunks of 5 us: %.2f us per call (best of 5)\n",
              empty_us, busy_us);
  // Generous bounds: the 2-core test machines are shared with other jobs (typical: < 0.1 us and ~1 us).
  EXPECT_LT(empty_us, 20.0);
  EXPECT_LT(busy_us, 50.0);
}

}  // namespace
}  // namespace moe::cpu
