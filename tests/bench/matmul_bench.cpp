// Microbenchmark for the CPU backend's bandwidth-bound kernels (plain main, not a gtest):
//   - STREAM-style read and triad bandwidth (measure_memory_bandwidth), 1 and 2 threads;
//   - batch-1 GEMV (T = 1) GB/s for BF16 / F16 / F32 on a ~256 MB matrix, 1 and 2 threads, from
//     anonymous memory and (BF16) from a read-only file mmap as the engine uses it; MXFP4 of GPT-OSS's
//     width, every row and every other row (an expert's gate or up), with the values decoded per second;
//     GGUF's block types Q8_0, Q4_K, Q6_K, Q5_K, MXFP4_GGML (ggml's MXFP4, GPT-OSS GGUFs' experts),
//     IQ4_NL, IQ4_XS and the 1- to 3-bit IQ types, fine-grained FP8 (F8_E4M3, 128 × 128 tiles), and
//     packed integers (compressed-tensors' 4-bit in groups of 32 and 128, 8-bit by row; GPTQ-Int4's F16 groups of
//     128, also with activation order), with as many weights as the BF16 matrix (values per second beside BF16's bytes / 2);
//   - a decode-step-like sequence of MoE-shaped matmuls (4 layers: ~450 MB of BF16 in 116 calls);
//   - prefill GFLOP/s at T = 64; expert-shaped products at 1 to 16 tokens (GPTQ-Int4, BF16, Q4_K), as prefill's experts;
//   - ThreadPool::parallel_for dispatch overhead.
// Every figure is the best (and median) of several repeats: the machines this runs on are shared.
//
// Build (no CMake needed):
//   g++ -std=c++20 -O2 -I. engine/backend/cpu/{thread_pool,matmul,memory_bandwidth}.cpp
//       engine/common/{dtype,mxfp4,ggml_quants,fp8,packed_int}.cpp tests/bench/matmul_bench.cpp -pthread -o /tmp/matmul_bench
// Options: --quick (smaller sizes, fewer repeats), --threads N (largest pool; default 2), --packed (only the packed
// integer GEMVs, beside BF16's, and their prefill: a shorter run for comparing their kernels), --tokens (only the expert
// products, at 1 to 16 tokens, for BF16, GPTQ-Int4, MXFP4, FP8 and every GGUF block type).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend/cpu/matmul.h"
#include "engine/backend/cpu/memory_bandwidth.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/dtype.h"
#include "engine/common/ggml_quants.h"
#include "engine/common/packed_int.h"
#include "engine/common/mxfp4.h"

using namespace moe;
using namespace moe::cpu;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Stats {
  double best = 0, median = 0;  // seconds
};

// Runs fn `reps` times (after one warm-up) and returns best and median times.
Stats time_it(int reps, const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = Clock::now();
    fn();
    t.push_back(secs(a, Clock::now()));
  }
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2]};
}

// 2 MiB-aligned anonymous memory with transparent huge pages requested.
struct Buffer {
  void* p = nullptr;
  size_t size = 0;
  explicit Buffer(size_t bytes) {
    const size_t align = size_t(2) << 20;
    size = (bytes + align - 1) / align * align;
    p = std::aligned_alloc(align, size);
    if (!p) {
      std::fprintf(stderr, "out of memory\n");
      std::exit(1);
    }
    madvise(p, size, MADV_HUGEPAGE);
  }
  ~Buffer() { std::free(p); }
};

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}
// Values in [-1, 1), deterministic.
float value_at(uint64_t i) { return float(int64_t(mix(i) >> 40) - (int64_t(1) << 23)) / float(1 << 23); }

void fill_weights(ThreadPool& pool, void* data, DType dt, int64_t n, uint64_t seed) {
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float v = value_at(uint64_t(i) + seed) * 0.05f;
      if (dt == DType::F32) static_cast<float*>(data)[i] = v;
      else if (dt == DType::BF16) static_cast<uint16_t*>(data)[i] = f32_to_bf16(v);
      else static_cast<uint16_t*>(data)[i] = f32_to_f16(v);
    }
  });
}

std::vector<float> make_x(int64_t n, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = value_at(uint64_t(i) * 7 + seed);
  return x;
}

// Other processes on the machine skew every figure; say how busy it was.
void print_load(const char* when) {
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[128] = {0};
    if (std::fgets(buf, sizeof buf, f)) std::printf("load average %s: %s", when, buf);
    std::fclose(f);
  }
}

struct Options {
  bool quick = false;
  bool packed_only = false;
  bool tokens_only = false;  // --tokens: only the few-token expert products, every weight format
  int max_threads = 2;
};

// ---------------------------------------------------------------------------------------------

// One bandwidth result, printed with its share of the STREAM read figure at the end of a section.
struct GbpsResult {
  std::string label;
  double best = 0, median = 0;
};

GbpsResult bench_gemv(const Options& o, ThreadPool& pool, int threads, DType dt, const void* data, int64_t rows,
                      int64_t cols, const char* where) {
  const MatrixRef W{data, dt, rows, cols};
  const auto x = make_x(cols, 1);
  std::vector<float> y(static_cast<size_t>(rows));
  const double bytes = double(rows) * double(cols) * double(dtype_size(dt));
  const Stats s = time_it(o.quick ? 5 : 15, [&] { matmul(pool, W, x.data(), 1, y.data()); });
  char label[160];
  std::snprintf(label, sizeof label, "GEMV %-4s %-6s %dT %4.0f MB rows=%-6lld cols=%-6lld (%.2f Gweights/s)",
                std::string(dtype_name(dt)).c_str(), where, threads, bytes / 1e6, (long long)rows, (long long)cols,
                double(rows) * double(cols) / s.best / 1e9);
  return {label, bytes / s.best / 1e9, bytes / s.median / 1e9};
}

// A matrix of a GGML block type: random quants, every f16 scale field (d, dmin) set to a moderate value
// so that no block decodes to inf or NaN (MXFP4_GGML: its E8M0 byte, 2^-9 to 2^-7; IQ1_M: the top nibbles
// of its four scale u16s; IQ4_XS's 6-bit sub-block scales and the other IQ types' scales stay random).
struct BlockWeights {
  DType dtype;
  int64_t rows, cols;
  Buffer data;
  BlockWeights(ThreadPool& pool, DType t, int64_t rows_, int64_t cols_)
      : dtype(t), rows(rows_), cols(cols_), data(matrix_bytes(t, rows_, cols_)) {
    const BlockFormat f = block_format(t);
    const int64_t blocks = rows * (cols / f.values);
    std::vector<size_t> f16_fields;  // byte offsets of the f16 fields in a block
    if (t == DType::Q6_K) f16_fields = {208};
    else if (t == DType::Q4_K || t == DType::Q5_K || t == DType::Q4_1 || t == DType::Q5_1) f16_fields = {0, 2};
    else if (t == DType::Q2_K) f16_fields = {80, 82};
    else if (t == DType::Q3_K) f16_fields = {108};
    else if (t != DType::MXFP4_GGML && t != DType::IQ1_M) f16_fields = {0};
    auto* b = static_cast<uint8_t*>(data.p);
    pool.parallel_for(blocks, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        uint8_t* blk = b + size_t(i) * f.bytes;
        for (size_t j = 0; j < f.bytes; ++j) blk[j] = uint8_t(mix(uint64_t(i) * f.bytes + j));
        for (size_t o : f16_fields) {
          const uint16_t h = f32_to_f16(0.001f + 0.01f * float(mix(uint64_t(i) + o) % 100) / 100.0f);
          std::memcpy(blk + o, &h, 2);
        }
        if (t == DType::MXFP4_GGML) blk[0] = uint8_t(118 + mix(uint64_t(i)) % 3);
        if (t == DType::IQ1_M) {  // d's four nibbles atop the u16s at 48, 50, 52, 54
          const uint16_t h = f32_to_f16(0.001f + 0.01f * float(mix(uint64_t(i)) % 100) / 100.0f);
          for (int k = 0; k < 4; ++k) blk[49 + 2 * k] = uint8_t((blk[49 + 2 * k] & 15) | (((h >> (4 * k)) & 15) << 4));
        }
      }
    });
  }
  MatrixRef ref() const { return MatrixRef{data.p, dtype, rows, cols}; }
};

// GB/s of `bytes` read, and weights per second (what compares with the BF16 GEMV's bytes / 2).
GbpsResult bench_gemv_matrix(const Options& o, ThreadPool& pool, int threads, const MatrixRef& W, double bytes,
                             const std::string& name) {
  const auto x = make_x(W.cols, 1);
  std::vector<float> y(static_cast<size_t>(W.rows));
  const Stats s = time_it(o.quick ? 5 : 15, [&] { matmul(pool, W, x.data(), 1, y.data()); });
  char label[160];
  std::snprintf(label, sizeof label, "GEMV %-4s %dT %4.0f MB rows=%-6lld cols=%-6lld (%.2f Gweights/s)", name.c_str(),
                threads, bytes / 1e6, (long long)W.rows, (long long)W.cols, double(W.rows) * double(W.cols) / s.best / 1e9);
  return {label, bytes / s.best / 1e9, bytes / s.median / 1e9};
}

GbpsResult bench_gemv_blocks(const Options& o, ThreadPool& pool, int threads, const BlockWeights& w) {
  const MatrixRef W = w.ref();
  return bench_gemv_matrix(o, pool, threads, W, double(matrix_bytes(W.dtype, W.rows, W.cols)), std::string(dtype_name(W.dtype)));
}

// Prefill GFLOP/s at T tokens on (up to 4096 rows of) W.
void bench_prefill_matrix(const Options& o, ThreadPool& pool, int threads, MatrixRef W, const std::string& name, int64_t T) {
  W.rows = std::min<int64_t>(W.rows, o.quick ? 2048 : 4096);
  const auto x = make_x(T * W.cols, 2);
  std::vector<float> y(size_t(T * W.rows));
  const Stats s = time_it(o.quick ? 3 : 7, [&] { matmul(pool, W, x.data(), T, y.data()); });
  const double flop = 2.0 * double(W.rows) * double(W.cols) * double(T);
  std::printf("  prefill %-4s %dT T=%-3lld %lldx%lld: best %6.1f GFLOP/s  median %6.1f GFLOP/s  (%.2f ms)\n", name.c_str(),
              threads, (long long)T, (long long)W.rows, (long long)W.cols, flop / s.best / 1e9, flop / s.median / 1e9,
              s.best * 1e3);
}

void bench_prefill_blocks(const Options& o, ThreadPool& pool, int threads, const BlockWeights& w, int64_t T) {
  bench_prefill_matrix(o, pool, threads, w.ref(), std::string(dtype_name(w.dtype)), T);
}

// An MXFP4 matrix of GPT-OSS's expert width (2880 columns, 90 blocks per row): random codes, scales
// 2^-7. Its rows are read row_step stored rows apart, as an expert's gate and up are.
struct Mxfp4Weights {
  int64_t rows, cols = 2880;
  Buffer blocks, scales;
  Mxfp4Weights(ThreadPool& pool, size_t bytes) : Mxfp4Weights(pool, int64_t(bytes / mxfp4_bytes(1, 2880)), 2880) {}
  Mxfp4Weights(ThreadPool& pool, int64_t rows_, int64_t cols_)
      : rows(rows_), cols(cols_), blocks(size_t(rows * cols / 2)), scales(size_t(rows * cols / 32)) {
    auto* b = static_cast<uint8_t*>(blocks.p);
    pool.parallel_for(rows * cols / 2, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) b[i] = uint8_t(mix(uint64_t(i)));
    });
    std::memset(scales.p, 120, size_t(rows * cols / 32));
  }
  MatrixRef ref(int64_t row_step) const {
    return MatrixRef{blocks.p, DType::MXFP4, rows / row_step, cols, static_cast<const uint8_t*>(scales.p), row_step};
  }
};

// GB/s of the bytes read, and values per second (what compares with the BF16 GEMV's bytes / 2).
GbpsResult bench_gemv_mxfp4(const Options& o, ThreadPool& pool, int threads, const Mxfp4Weights& w, int64_t row_step) {
  const MatrixRef W = w.ref(row_step);
  const auto x = make_x(W.cols, 1);
  std::vector<float> y(static_cast<size_t>(W.rows));
  const double bytes = double(mxfp4_bytes(W.rows, W.cols));
  const Stats s = time_it(o.quick ? 5 : 15, [&] { matmul(pool, W, x.data(), 1, y.data()); });
  char label[160];
  std::snprintf(label, sizeof label, "GEMV MXFP4 step %lld %dT %4.0f MB rows=%-6lld cols=%lld (%.2f Gvalues/s)",
                (long long)row_step, threads, bytes / 1e6, (long long)W.rows, (long long)W.cols,
                double(W.rows) * double(W.cols) / s.best / 1e9);
  return {label, bytes / s.best / 1e9, bytes / s.median / 1e9};
}

// A fine-grained FP8 matrix (engine/common/fp8.h) with as many weights as the BF16 one: random E4M3 bytes
// (no NaN codes) and an F32 scale of 1e-4 per 128 × 128 tile, as the FP8 releases are stored.
struct Fp8Weights {
  int64_t rows, cols;
  Buffer bytes;
  std::vector<float> scales;
  Fp8Weights(ThreadPool& pool, int64_t rows_, int64_t cols_)
      : rows(rows_), cols(cols_), bytes(size_t(rows_ * cols_)),
        scales(size_t(tile_count(rows_, 128) * tile_count(cols_, 128)), 1e-4f) {
    auto* b = static_cast<uint8_t*>(bytes.p);
    pool.parallel_for(rows * cols, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) b[i] = uint8_t(mix(uint64_t(i)) % 0x7f) | uint8_t(i & 0x80);
    });
  }
  MatrixRef ref() const {
    return MatrixRef{bytes.p, DType::F8_E4M3, rows, cols, nullptr, 1, TileScales{scales.data(), 128, 128, tile_count(cols, 128), 0}};
  }
};

GbpsResult bench_gemv_fp8(const Options& o, ThreadPool& pool, int threads, const Fp8Weights& w) {
  return bench_gemv_matrix(o, pool, threads, w.ref(), double(w.rows) * double(w.cols), "F8_E4M3 (128x128 tiles)");
}

// A compressed-tensors packed integer matrix (engine/common/packed_int.h) with as many weights as the BF16 one:
// random 4- or 8-bit values and a BF16- (or F16-) rounded scale per group (group 0: one per row), as W4A16 and W8A16
// checkpoints are stored (Kimi-K2-Thinking's experts: 4 bits in groups of 32), and GPTQ's once the loader has
// rearranged them (Qwen's GPTQ-Int4: F16 scales, groups of 128; with act_order, GPTQ's activation order, held by
// group with a scattered input order, so each product first gathers x).
struct PackedWeights {
  DType dtype;
  int64_t rows, cols, group;
  DType scales_dtype;
  Buffer bytes;
  std::vector<float> scales;
  std::vector<int32_t> order;  // act_order: stored column j is input order[j]
  PackedWeights(ThreadPool& pool, DType dtype_, int64_t rows_, int64_t cols_, int64_t group_, DType scales_dtype_ = DType::BF16,
                bool act_order = false)
      : dtype(dtype_), rows(rows_), cols(cols_), group(group_ ? group_ : cols_), scales_dtype(scales_dtype_),
        bytes(matrix_bytes(dtype_, rows_, cols_)), scales(size_t(rows_ * (cols_ / group)), 0.0f) {
    auto* b = static_cast<uint8_t*>(bytes.p);
    pool.parallel_for(int64_t(bytes.size), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) b[i] = uint8_t(mix(uint64_t(i)));
    });
    for (size_t i = 0; i < scales.size(); ++i) scales[i] = round_to_dtype(1e-3f * float(1 + i % 7), scales_dtype);
    if (act_order) {
      order.resize(size_t(cols));
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), std::mt19937(7));
    }
  }
  MatrixRef ref() const {
    TileScales tiles{scales.data(), 1, group, cols / group, 0, scales_dtype};
    tiles.input_order = order.empty() ? nullptr : order.data();
    return MatrixRef{bytes.p, dtype, rows, cols, nullptr, 1, tiles};
  }
  std::string label() const {
    const std::string s(dtype_name(scales_dtype));
    return std::string(dtype_name(dtype)) + (group == cols ? " (a " + s + " scale per row)" : " (" + s + " scales, groups of " + std::to_string(group) + ")") +
           (order.empty() ? "" : ", act order");
  }
};

GbpsResult bench_gemv_packed(const Options& o, ThreadPool& pool, int threads, const PackedWeights& w) {
  return bench_gemv_matrix(o, pool, threads, w.ref(), double(w.rows) * double(w.cols), w.label());
}

// Qwen3-30B-A3B's expert gate projections in GPTQ-Int4's layout (768 × 2048, F16 scales in groups of 128): one
// product per matrix over 64 of them (50 MB, beyond the caches), with and without activation order. A small matrix
// is where activation order's gather of x (2048 floats a product) weighs most against the weights it reads (768 KB).
GbpsResult bench_experts_packed(const Options& o, ThreadPool& pool, int threads, bool act_order) {
  const int64_t rows = 768, cols = 2048, n = 64;
  std::vector<std::unique_ptr<PackedWeights>> experts;
  for (int64_t e = 0; e < n; ++e)
    experts.push_back(std::make_unique<PackedWeights>(pool, DType::PACKED_I4, rows, cols, 128, DType::F16, act_order));
  const auto x = make_x(cols, 1);
  std::vector<float> y(static_cast<size_t>(rows));
  const Stats s = time_it(o.quick ? 5 : 15, [&] {
    for (const auto& w : experts) matmul(pool, w->ref(), x.data(), 1, y.data());
  });
  const double weights = double(n * rows * cols);
  char label[160];
  std::snprintf(label, sizeof label, "GEMV %s, 64 experts 768x2048 %dT (%.2f Gweights/s)", experts[0]->label().c_str(),
                threads, weights / s.best / 1e9);
  return {label, weights / s.best / 1e9, weights / s.median / 1e9};  // as bench_gemv_packed: weights, not bytes
}

// Prefill's expert products: a prompt's tokens spread over the experts, so each expert multiplies a few tokens at a
// time (a 512-token prompt on Qwen3-30B-A3B: 8 of 128 experts a token, 32 tokens an expert on average, far fewer
// for most). The 64 matrices of bench_experts_packed (GPTQ-Int4's layout), and BF16 ones of the same shape for scale,
// each multiplied by T tokens; the figure is multiply-adds per second (weights × T), which T = 1 gives as weights/s.
void bench_experts_tokens(const Options& o, ThreadPool& pool, int threads, DType dtype, int64_t T) {
  const int64_t rows = 768, cols = 2048, n = 64;
  std::vector<std::unique_ptr<PackedWeights>> packed;
  std::vector<std::unique_ptr<BlockWeights>> blocks;
  std::vector<std::unique_ptr<Buffer>> dense;
  std::vector<std::unique_ptr<Mxfp4Weights>> mxfp4;
  std::vector<std::unique_ptr<Fp8Weights>> fp8;
  std::vector<MatrixRef> refs;
  for (int64_t e = 0; e < n; ++e) {
    if (dtype == DType::F8_E4M3) {
      fp8.push_back(std::make_unique<Fp8Weights>(pool, rows, cols));
      refs.push_back(fp8.back()->ref());
    } else if (dtype == DType::MXFP4) {
      mxfp4.push_back(std::make_unique<Mxfp4Weights>(pool, rows, cols));
      refs.push_back(mxfp4.back()->ref(1));
    } else if (dtype == DType::PACKED_I4) {
      packed.push_back(std::make_unique<PackedWeights>(pool, DType::PACKED_I4, rows, cols, 128, DType::F16));
      refs.push_back(packed.back()->ref());
    } else if (is_block_quantized(dtype)) {
      blocks.push_back(std::make_unique<BlockWeights>(pool, dtype, rows, cols));
      refs.push_back(blocks.back()->ref());
    } else {
      dense.push_back(std::make_unique<Buffer>(size_t(rows * cols) * dtype_size(dtype)));
      fill_weights(pool, dense.back()->p, dtype, rows * cols, uint64_t(e));
      refs.push_back(MatrixRef{dense.back()->p, dtype, rows, cols});
    }
  }
  const auto x = make_x(T * cols, 3);
  std::vector<float> y(size_t(T * rows));
  const Stats s = time_it(o.quick ? 3 : 9, [&] {
    for (const MatrixRef& w : refs) matmul(pool, w, x.data(), T, y.data());
  });
  const double macs = double(n * rows * cols * T);
  const std::string name = dtype == DType::PACKED_I4 ? "PACKED_I4 (F16 groups of 128)" : std::string(dtype_name(dtype));
  std::printf("  experts %-28s %dT T=%lld, 64 x 768x2048: best %6.2f G multiply-adds/s  median %6.2f\n", name.c_str(),
              threads, (long long)T, macs / s.best / 1e9, macs / s.median / 1e9);
}

// A decode step of a MoE model, as far as weight traffic goes: per layer q, k, v, o projections,
// the router, and 8 active experts (gate, up, down), BF16. Every matrix is distinct memory.
struct DecodeLayerShape {
  int64_t rows, cols;
};

GbpsResult bench_decode_sequence(const Options& o, ThreadPool& pool, int threads) {
  const int64_t hidden = 2048, q_out = 4096, kv_out = 512, experts = 128, expert_ffn = 768, active = 8;
  std::vector<DecodeLayerShape> layer = {{q_out, hidden}, {kv_out, hidden}, {kv_out, hidden}, {hidden, q_out},
                                         {experts, hidden}};
  for (int e = 0; e < active; ++e) {
    layer.push_back({expert_ffn, hidden});
    layer.push_back({expert_ffn, hidden});
    layer.push_back({hidden, expert_ffn});
  }
  const int layers = o.quick ? 2 : 4;
  std::vector<MatrixRef> mats;
  int64_t total_elems = 0;
  for (int l = 0; l < layers; ++l)
    for (auto s : layer) total_elems += s.rows * s.cols;
  static std::unique_ptr<Buffer> buf;
  if (!buf) {
    buf = std::make_unique<Buffer>(size_t(total_elems) * 2);
    fill_weights(pool, buf->p, DType::BF16, total_elems, 99);
  }
  int64_t off = 0;
  for (int l = 0; l < layers; ++l)
    for (auto s : layer) {
      mats.push_back({static_cast<uint16_t*>(buf->p) + off, DType::BF16, s.rows, s.cols});
      off += s.rows * s.cols;
    }
  const auto x = make_x(std::max(hidden, q_out), 3);
  std::vector<float> y(size_t(std::max(hidden, q_out)));
  const Stats s = time_it(o.quick ? 10 : 30, [&] {
    for (const auto& m : mats) matmul(pool, m, x.data(), 1, y.data());
  });
  const double bytes = double(total_elems) * 2;
  char label[160];
  std::snprintf(label, sizeof label, "decode-like step %dT: %zu matmuls, %.0f MB BF16 (best %.2f ms)", threads,
                mats.size(), bytes / 1e6, s.best * 1e3);
  return {label, bytes / s.best / 1e9, bytes / s.median / 1e9};
}

void bench_prefill(const Options& o, ThreadPool& pool, int threads, DType dt, int64_t T) {
  const int64_t rows = o.quick ? 2048 : 4096, cols = o.quick ? 2048 : 4096;
  Buffer w(size_t(rows * cols) * dtype_size(dt));
  fill_weights(pool, w.p, dt, rows * cols, 5);
  const MatrixRef W{w.p, dt, rows, cols};
  const auto x = make_x(T * cols, 2);
  std::vector<float> y(size_t(T * rows));
  const Stats s = time_it(o.quick ? 3 : 7, [&] { matmul(pool, W, x.data(), T, y.data()); });
  const double flop = 2.0 * double(rows) * double(cols) * double(T);
  std::printf("  prefill %-4s %dT T=%-3lld %lldx%lld: best %6.1f GFLOP/s  median %6.1f GFLOP/s  (%.2f ms)\n",
              std::string(dtype_name(dt)).c_str(), threads, (long long)T, (long long)rows, (long long)cols,
              flop / s.best / 1e9, flop / s.median / 1e9, s.best * 1e3);
}

void bench_prefill_mxfp4(const Options& o, ThreadPool& pool, int threads, const Mxfp4Weights& w, int64_t T) {
  MatrixRef W = w.ref(1);
  W.rows = std::min<int64_t>(W.rows, o.quick ? 2048 : 4096);
  const auto x = make_x(T * W.cols, 2);
  std::vector<float> y(size_t(T * W.rows));
  const Stats s = time_it(o.quick ? 3 : 7, [&] { matmul(pool, W, x.data(), T, y.data()); });
  const double flop = 2.0 * double(W.rows) * double(W.cols) * double(T);
  std::printf("  prefill MXFP4 %dT T=%-3lld %lldx%lld: best %6.1f GFLOP/s  median %6.1f GFLOP/s  (%.2f ms)\n", threads,
              (long long)T, (long long)W.rows, (long long)W.cols, flop / s.best / 1e9, flop / s.median / 1e9, s.best * 1e3);
}

// Busy work of about `ns` nanoseconds (no sleeping: the point is to compare with compute time).
void spin_for_ns(double ns) {
  const auto end = Clock::now() + std::chrono::nanoseconds(int64_t(ns));
  while (Clock::now() < end) {
  }
}

void bench_dispatch(int threads) {
  ThreadPool pool(threads);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int64_t> by_workers{0};
  const int calls = 20000;

  // (a) An empty job: the pure cost of a call (the caller may well run every chunk itself).
  std::vector<double> empty;
  auto nop = [](int64_t, int64_t) {};
  for (int rep = 0; rep < 7; ++rep) {
    const auto a = Clock::now();
    for (int i = 0; i < calls; ++i) pool.parallel_for(threads, nop);
    empty.push_back(secs(a, Clock::now()) / calls * 1e6);
  }
  std::sort(empty.begin(), empty.end());

  // (b) Every chunk takes ~work_us; overhead = time per call − work_us (ideal parallel time), and
  // the fraction of chunks that ran on a worker shows the job really was shared.
  for (double work_us : {2.0, 10.0}) {
    std::vector<double> over;
    int64_t total_chunks = 0;
    by_workers = 0;
    auto fn = [&](int64_t, int64_t) {
      if (std::this_thread::get_id() != caller) by_workers.fetch_add(1, std::memory_order_relaxed);
      spin_for_ns(work_us * 1e3);
    };
    const int n = 2000;
    for (int rep = 0; rep < 7; ++rep) {
      const auto a = Clock::now();
      for (int i = 0; i < n; ++i) pool.parallel_for(threads, fn);
      over.push_back(secs(a, Clock::now()) / n * 1e6 - work_us);
      total_chunks += int64_t(n) * threads;
    }
    std::sort(over.begin(), over.end());
    std::printf("  ThreadPool(%d) chunks of %4.1f us: overhead best %.2f us  median %.2f us per call; "
                "%.0f%% of chunks ran on workers (ideal %.0f%%)\n",
                threads, work_us, over.front(), over[over.size() / 2],
                100.0 * double(by_workers.load()) / double(total_chunks), 100.0 * (threads - 1) / threads);
  }
  std::printf("  ThreadPool(%d) empty job: best %.3f us  median %.3f us per call\n", threads, empty.front(),
              empty[empty.size() / 2]);

  // (c) The worker asleep: a call after an idle pause (wake-up through the condition variable).
  std::vector<double> cold;
  for (int rep = 0; rep < 20; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    const auto a = Clock::now();
    pool.parallel_for(threads, [](int64_t, int64_t) { spin_for_ns(20e3); });
    cold.push_back(secs(a, Clock::now()) * 1e6 - 20);
  }
  std::sort(cold.begin(), cold.end());
  std::printf("  ThreadPool(%d) after 3 ms idle, chunks of 20 us: overhead median %.1f us\n", threads,
              cold[cold.size() / 2]);
}

// A read-only private file mapping of `bytes` filled with BF16 weights, as the engine maps checkpoints.
struct MappedWeights {
  void* p = MAP_FAILED;
  size_t size = 0;
  std::string path;
  MappedWeights(ThreadPool& pool, size_t bytes) : size(bytes) {
    char tmpl[] = "/tmp/moe_matmul_bench_XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) return;
    path = tmpl;
    {
      Buffer b(bytes);
      fill_weights(pool, b.p, DType::BF16, int64_t(bytes / 2), 17);
      size_t done = 0;
      while (done < bytes) {
        const ssize_t w = write(fd, static_cast<char*>(b.p) + done, bytes - done);
        if (w <= 0) break;
        done += size_t(w);
      }
      if (done != bytes) {
        close(fd);
        return;
      }
    }
    p = mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
  }
  ~MappedWeights() {
    if (p != MAP_FAILED) munmap(p, size);
    if (!path.empty()) unlink(path.c_str());
  }
  bool ok() const { return p != MAP_FAILED; }
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) o.quick = true;
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) o.max_threads = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--packed")) o.packed_only = true;
    else if (!std::strcmp(argv[i], "--tokens")) o.tokens_only = true;
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--threads N] [--packed | --tokens]\n", argv[0]);
      return 2;
    }
  }
  std::printf("matmul_bench: SIMD path %s, hardware threads %u%s\n", simd_path(), std::thread::hardware_concurrency(),
              o.quick ? " (quick)" : "");
  std::printf("All figures: best and median of repeated runs (shared machine: expect noise).\n");
  print_load("at start");

  const size_t stream_bytes = o.quick ? (size_t(64) << 20) : (size_t(256) << 20);
  const int64_t big_elems = int64_t((o.quick ? (size_t(64) << 20) : (size_t(256) << 20)) / 2);  // BF16 elements

  std::vector<int> thread_counts;
  for (int t = 1; t <= o.max_threads; t *= 2) thread_counts.push_back(t);
  if (thread_counts.back() != o.max_threads) thread_counts.push_back(o.max_threads);

  if (o.tokens_only) {  // prefill's expert products at 1 to 16 tokens, per weight format (past a path's limit: panels)
    for (int threads : thread_counts) {
      ThreadPool pool(threads);
      std::printf("\n== %d thread%s: expert products, 1 to 16 tokens ==\n", threads, threads == 1 ? "" : "s");
      for (DType t : {DType::BF16, DType::PACKED_I4, DType::MXFP4, DType::F8_E4M3, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                      DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4_GGML, DType::IQ4_NL,
                      DType::IQ4_XS, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S,
                      DType::IQ1_S, DType::IQ1_M})
        for (int64_t T : {1, 2, 3, 4, 6, 8, 9, 10, 12, 16}) bench_experts_tokens(o, pool, threads, t, T);
    }
    return 0;
  }

  // Weights: ~256 MB per dtype.
  ThreadPool init_pool(o.max_threads);
  const int64_t cols16 = 8192, rows16 = big_elems / cols16;       // BF16 / F16: 256 MB
  const int64_t cols32 = 8192, rows32 = big_elems / 2 / cols32;   // F32: 256 MB
  Buffer wb(size_t(rows16 * cols16) * 2), wh(size_t(rows16 * cols16) * 2), wf(size_t(rows32 * cols32) * 4);
  fill_weights(init_pool, wb.p, DType::BF16, rows16 * cols16, 1);
  fill_weights(init_pool, wh.p, DType::F16, rows16 * cols16, 2);
  fill_weights(init_pool, wf.p, DType::F32, rows32 * cols32, 3);
  MappedWeights mapped(init_pool, size_t(rows16 * cols16) * 2);
  const Mxfp4Weights wq(init_pool, size_t(rows16 * cols16) * 2);
  std::vector<std::unique_ptr<BlockWeights>> wg;  // as many weights as the BF16 matrix
  for (DType t : {DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::Q5_K, DType::MXFP4_GGML, DType::IQ4_NL, DType::IQ4_XS,
                  DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M})
    wg.push_back(std::make_unique<BlockWeights>(init_pool, t, rows16, cols16));
  const Fp8Weights w8(init_pool, rows16, cols16);
  const PackedWeights wi4(init_pool, DType::PACKED_I4, rows16, cols16, 32), wi4_128(init_pool, DType::PACKED_I4, rows16, cols16, 128),
      wi8(init_pool, DType::PACKED_I8, rows16, cols16, 0), wi4_f16(init_pool, DType::PACKED_I4, rows16, cols16, 128, DType::F16),
      wi4_act(init_pool, DType::PACKED_I4, rows16, cols16, 128, DType::F16, true);

  for (int threads : thread_counts) {
    ThreadPool pool(threads);
    std::printf("\n== %d thread%s ==\n", threads, threads == 1 ? "" : "s");
    // STREAM before and after the GEMV runs: the machine may be shared, so the roofline is the best
    // of both (and a large difference between them says the figures below are noisy).
    auto stream = [&] {
      BandwidthResult bw{};
      for (int rep = 0; rep < 3; ++rep) {  // best of 3 measurements, each itself best of 5
        const BandwidthResult r = measure_memory_bandwidth(pool, stream_bytes, 5);
        bw.read_gbps = std::max(bw.read_gbps, r.read_gbps);
        bw.triad_gbps = std::max(bw.triad_gbps, r.triad_gbps);
        bw.buffer_bytes = r.buffer_bytes;
        bw.threads = r.threads;
      }
      std::printf("  STREAM %dT (%zu MB buffers): read %.2f GB/s, triad %.2f GB/s\n", bw.threads,
                  bw.buffer_bytes >> 20, bw.read_gbps, bw.triad_gbps);
      return bw;
    };
    const BandwidthResult bw0 = stream();
    std::vector<GbpsResult> res;
    res.push_back(bench_gemv(o, pool, threads, DType::BF16, wb.p, rows16, cols16, "anon"));
    if (!o.packed_only) {
      res.push_back(bench_gemv(o, pool, threads, DType::F16, wh.p, rows16, cols16, "anon"));
      res.push_back(bench_gemv(o, pool, threads, DType::F32, wf.p, rows32, cols32, "anon"));
      if (mapped.ok()) res.push_back(bench_gemv(o, pool, threads, DType::BF16, mapped.p, rows16, cols16, "mmap"));
      res.push_back(bench_gemv_mxfp4(o, pool, threads, wq, 1));
      res.push_back(bench_gemv_mxfp4(o, pool, threads, wq, 2));
      for (const auto& w : wg) res.push_back(bench_gemv_blocks(o, pool, threads, *w));
      res.push_back(bench_gemv_fp8(o, pool, threads, w8));
    }
    res.push_back(bench_gemv_packed(o, pool, threads, wi4));
    res.push_back(bench_gemv_packed(o, pool, threads, wi4_128));
    res.push_back(bench_gemv_packed(o, pool, threads, wi4_f16));
    res.push_back(bench_gemv_packed(o, pool, threads, wi4_act));
    res.push_back(bench_experts_packed(o, pool, threads, false));
    res.push_back(bench_experts_packed(o, pool, threads, true));
    res.push_back(bench_gemv_packed(o, pool, threads, wi8));
    if (!o.packed_only) res.push_back(bench_decode_sequence(o, pool, threads));
    if (simd_supported() && !o.packed_only) {
      set_force_scalar(true);
      res.push_back(bench_gemv(o, pool, threads, DType::BF16, wb.p, rows16, cols16, "scalar"));
      res.push_back(bench_gemv_mxfp4(o, pool, threads, wq, 1));
      res.push_back(bench_gemv_blocks(o, pool, threads, *wg[1]));  // Q4_K
      res.push_back(bench_gemv_fp8(o, pool, threads, w8));
      res.push_back(bench_gemv_packed(o, pool, threads, wi4));
      set_force_scalar(false);
    }
    const BandwidthResult bw1 = stream();
    const double roof = std::max(bw0.read_gbps, bw1.read_gbps);
    for (const auto& r : res)
      std::printf("  %-80s best %6.2f GB/s (%5.1f%% of STREAM read)  median %6.2f GB/s\n", r.label.c_str(), r.best,
                  100.0 * r.best / roof, r.median);
    if (!o.packed_only) {
      for (DType dt : {DType::BF16, DType::F16, DType::F32}) bench_prefill(o, pool, threads, dt, 64);
      bench_prefill_mxfp4(o, pool, threads, wq, 64);
      bench_prefill_blocks(o, pool, threads, *wg[1], 64);  // Q4_K
      bench_prefill_blocks(o, pool, threads, *wg[4], 64);  // MXFP4_GGML
      bench_prefill_blocks(o, pool, threads, *wg[5], 64);  // IQ4_NL
      bench_prefill_blocks(o, pool, threads, *wg[6], 64);  // IQ4_XS
      bench_prefill_blocks(o, pool, threads, *wg[7], 64);  // IQ2_XXS
      bench_prefill_blocks(o, pool, threads, *wg[12], 64);  // IQ1_S
      bench_prefill_matrix(o, pool, threads, w8.ref(), "F8_E4M3", 64);
    }
    bench_prefill_matrix(o, pool, threads, wi4.ref(), "PACKED_I4", 64);
    for (int64_t T : {1, 2, 3, 4, 8, 16}) bench_experts_tokens(o, pool, threads, DType::PACKED_I4, T);
    for (int64_t T : {1, 2, 4, 8}) bench_experts_tokens(o, pool, threads, DType::BF16, T);
    if (!o.packed_only)
      for (int64_t T : {1, 2, 4, 8}) bench_experts_tokens(o, pool, threads, DType::Q4_K, T);
    if (simd_supported() && !o.packed_only) {
      set_force_scalar(true);
      std::printf("  (scalar path:)");
      bench_prefill(o, pool, threads, DType::BF16, 64);
      set_force_scalar(false);
    }
  }

  std::printf("\n== ThreadPool dispatch ==\n");
  for (int threads : thread_counts)
    if (threads > 1) bench_dispatch(threads);
  print_load("at end");
  return 0;
}
