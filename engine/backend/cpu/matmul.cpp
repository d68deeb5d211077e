#include "engine/backend/cpu/matmul.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/common/fp8.h"
#include "engine/common/ggml_quants.h"
#include "engine/common/mxfp4.h"
#include "engine/common/packed_int.h"

#if defined(__x86_64__) || defined(__i386__)
#define MOE_HAVE_X86_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define MOE_HAVE_X86_KERNELS 0
#endif

// Layout of the work
// ------------------
// T = 1 (decode): a streaming GEMV. Four weight rows are read side by side, converted to f32 in
//   registers and multiplied against the same x vector, with two accumulators per row (eight
//   independent FMA chains). The four rows come from the four quarters of the row range, so each
//   of the four read streams runs sequentially through a quarter of the matrix across row
//   boundaries (long streams for the hardware prefetchers, plus a short software prefetch). Four
//   adjacent rows instead would restart all four streams at every row end; with short rows (MoE
//   experts: 1.5 KiB) that cost ~30% of the bandwidth. Each weight byte is read exactly once.
// T = 2 to 4 (kDirectMaxT): each converted weight vector feeds T tokens (4 adjacent rows × T accumulators; 2 rows at
//   4 tokens), and the next rows' lines are prefetched as these rows are read (micro_kernel's kStream). 5 to 32
//   tokens (kDirectRunsMaxT): the same over 2 rows at a time, once per run of up to 4 tokens (rows_by_token_runs).
// T ≥ 33 (prefill): tokens are taken in tiles of kTokenTile, columns in blocks of kColBlock, rows in
//   panels of kRowPanel. Each (token tile, column block, row panel) of weights is converted to f32
//   once into a 16 KiB stack buffer (L1), and a 4-row × 3-token register-blocked micro-kernel runs
//   over it for every 3 tokens of the tile (12 accumulators; 7 loads per 12 FMAs). So each weight
//   element is read and converted once per token tile, the x block of the tile stays in L2 and the
//   3-token slice in L1.
// MXFP4 (GPT-OSS's experts): T = 1 runs the same four streams, decoding each 32-value block in
//   registers (a table lookup per nibble) and scaling its partial sums once; 2 to 8 tokens decode and
//   scale each block once for all of them (gemm_mxfp4_row), 9 to 16 once per half of them; more expand
//   the panels to f32 and run the prefill path. A block's 17 bytes against BF16's 64 make decode of such
//   weights bound by the decoding arithmetic rather than by memory.
// Fine-grained FP8 (F8_E4M3 with a scale per tile, engine/common/fp8.h): T = 1 runs the same four streams,
//   16 bytes at a time made into f16 bit patterns (each the byte's value over 2^8, exactly) that F16C
//   converts; per tile the sum against x is formed first and scaled once (by the scale times 2^8). 2 to 8
//   tokens scale each weight once for all of them (gemm_fp8_row), 9 to 16 once per half of them; more
//   expand the panels to f32, the values bit for bit as fp8_dequantize_cols gives them (and as
//   gemm_fp8_row scales them), and run the prefill path.
// compressed-tensors' packed integers (engine/common/packed_int.h): T = 1 runs the same four streams, 32 values at a
//   time. Each weight is its value less its group's zero point (asymmetric schemes), times its group's scale,
//   rounded as the reference dequantises (to BF16 or F16, the scales' dtype) before its product with x. 8-bit values
//   (32 bytes) are widened to f32 and so treated; 4-bit ones (16 bytes) look their weight up, by byte shuffles, among
//   the group's 16 possible weights, made so once per group and row. 4-bit rows at 2 to 8 tokens look each row up
//   once for all the tokens (gemm_packed_i4_row), at 9 to 16 once per half of them (rows_by_token_runs). Otherwise
//   T > 1 expands the panels to f32 the same way and runs the prefill path. Rows or groups not in runs of 32 columns
//   go through the scalar path.
// GGML block types (GGUF's Q8_0, Q4_K, Q6_K, ..., MXFP4_GGML, IQ4_NL, IQ4_XS): a row is read in groups of
//   up to 256 values (one K-type super-block, or up to 8 blocks of 32), each decoded with byte-wise masks
//   and shifts into int8 quants (MXFP4_GGML's and the IQ4 types' nibbles then through a 16-byte table,
//   pshufb, to twice their FP4 values or to kIq4NlValues), and f32 scales (and offsets, for the types
//   with a min) per sub-block of 16 or 32 values (Q8_0's quants are read in place). T = 1 runs the four
//   streams over the decoded groups, x staying f32: Σ q·x per sub-block, times its scale, plus its
//   offset times the sub-block's Σ x (those sums taken once per call). 2 to 9 tokens (4, 6 or 8 for some types:
//   block_direct_max_tokens) decode each row's groups once for all the tokens (gemm_block_row), the tokens' x copied
//   to start on a cache line (line_aligned_floats); for seven types 10 to 12 tokens do so in two runs, each row
//   decoded once per run (rows_by_token_runs, block_runs_max_tokens). More tokens expand the panels to f32 (the values
//   bit for bit as dequantize_row gives them) and run the prefill path. MXFP4_GGML's T = 1
//   decodes each block in registers instead, as MXFP4's GEMV does (a few per cent faster than through
//   the group, measured); the IQ4 types decoded that way measured no faster (IQ4_NL) or 6 % slower
//   (IQ4_XS), so they go through the group. The IQ1–IQ3 types decode into the same group: each codebook
//   row is one load from a table of its entries as int8 bytes (made at compile time from the shared
//   decoder's), four or eight rows make 32 quants, and their signs are applied with a byte mask (IQ1's
//   ±1 offset δ added instead); the scales are the shared decoder's.

namespace moe::cpu {

namespace {

constexpr int64_t kRowGroup = 4;      // rows per micro-kernel
constexpr int64_t kTokGroup = 3;      // tokens per micro-kernel (T > 1)
constexpr int64_t kTokenTile = 96;    // tokens per tile in the prefill path (multiple of kTokGroup)
constexpr int64_t kColBlock = 512;    // columns per block in the prefill path (multiple of 8)
constexpr int64_t kRowPanel = 8;      // rows per converted panel in the prefill path (multiple of 4)
constexpr int64_t kDirectMaxT = 4;    // T up to this reads the weights directly, without a buffer
constexpr int64_t kDirectRunsMaxT = 32;  // ... and up to this in runs of at most kDirectMaxT tokens
constexpr int64_t kFp8DirectMaxT = 8;     // the same for fine-grained FP8 (gemm_fp8_row)
constexpr int64_t kFp8RunsMaxT = 16;      // ... in runs of at most kFp8DirectMaxT tokens (rows_by_token_runs)
constexpr int64_t kMxfp4DirectMaxT = 8;   // the same for MXFP4 (gemm_mxfp4_row)
constexpr int64_t kMxfp4RunsMaxT = 16;    // ... in runs of at most kMxfp4DirectMaxT tokens (rows_by_token_runs)
constexpr int64_t kPackedDirectMaxT = 8;  // the same for 4-bit packed rows (gemm_packed_i4_row)
constexpr int64_t kPackedRunsMaxT = 16;   // ... in runs of at most kPackedDirectMaxT tokens (rows_by_token_runs)
constexpr int64_t kBlockDirectMaxT = 9;   // the same for GGML block types (gemm_block_row), most of them
constexpr int64_t kBlockRunsMaxT = 12;    // ... in runs of at most that many, for some of them (block_runs_max_tokens)
constexpr int64_t kRowAlign = 8;      // chunk boundaries in matmul() are multiples of this
constexpr int64_t kSerialWork = 32768;  // rows·cols·T below this: no threads
constexpr int64_t kChunksPerThread = 4;  // matmul() splits rows into up to this many chunks per thread
constexpr int64_t kMinChunkWork = 131072;  // ... each of at least this many multiply-adds

// ---------------------------------------------------------------------------------------------
// Path selection

bool cpu_has_avx2_fma_f16c() {
#if MOE_HAVE_X86_KERNELS
  __builtin_cpu_init();
  // __builtin_cpu_supports checks that the OS saves the YMM state; F16C is read from CPUID directly
  // (leaf 1, ECX bit 29) because not every compiler knows "f16c" as a feature string.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
  return false;
#endif
}

bool env_force_scalar() {
  const char* v = std::getenv("MOE_FORCE_SCALAR");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

// A function-local static, so that calls from other translation units' static initialisers work.
bool hw_simd() {
  static const bool has = cpu_has_avx2_fma_f16c();
  return has;
}
// -1: not decided yet (read MOE_FORCE_SCALAR on first use); 0: SIMD if the CPU has it; 1: scalar.
std::atomic<int> g_force_scalar{-1};

bool use_simd() {
  int f = g_force_scalar.load(std::memory_order_relaxed);
  if (f < 0) {
    f = env_force_scalar() ? 1 : 0;
    g_force_scalar.store(f, std::memory_order_relaxed);
  }
  return f == 0 && hw_simd();
}

// ---------------------------------------------------------------------------------------------
// Portable scalar path

// IEEE half → f32 without a call (same results as moe::f16_to_f32, subnormals and inf/NaN included,
// and independent of the FTZ/DAZ flags).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  uint32_t u;
  if (em >= 0x7c00u) {  // inf / NaN
    u = sign | 0x7f800000u | ((em & 0x3ffu) << 13);
  } else if (em >= 0x0400u) {  // normal: rebias the exponent by 127 - 15 = 112
    u = sign | ((em << 13) + (112u << 23));
  } else {  // zero or subnormal: mantissa · 2^-24, exact in f32
    const float f = float(em) * 5.9604644775390625e-08f;
    std::memcpy(&u, &f, 4);
    u |= sign;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <DType D>
inline float load_w(const void* base, int64_t i) {
  if constexpr (D == DType::F32) {
    return static_cast<const float*>(base)[i];
  } else if constexpr (D == DType::BF16) {
    return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
  } else {
    return half_to_float(static_cast<const uint16_t*>(base)[i]);
  }
}

float dot_scalar(const float* a, const float* b, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

double dot_f64_scalar(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// Top-k sum helpers, shared by both paths. s[0..k) holds the k largest values seen so far in
// ascending order, so s[0] is the threshold a new value must beat.
void topk_start(const float* v, int k, float* s) {
  std::copy(v, v + k, s);
  std::sort(s, s + k);
}
inline void topk_offer(float* s, int k, float v) {
  if (v <= s[0]) return;
  int p = 1;  // v replaces the smallest and sinks to its place (k is small: 8 by default)
  while (p < k && s[p] < v) {
    s[p - 1] = s[p];
    ++p;
  }
  s[p - 1] = v;
}
float topk_total(const float* s, int k) {
  float m = 0;
  for (int j = 0; j < k; ++j) m += s[j];
  return m;
}

float topk_sum_scalar(const float* v, int64_t n, int k, float* s) {
  topk_start(v, k, s);
  for (int64_t j = k; j < n; ++j) topk_offer(s, k, v[j]);
  return topk_total(s, k);
}

template <DType D>
void matmul_rows_scalar(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  const int64_t cols = W.cols, rows = W.rows;
  const size_t esz = dtype_size(D);
  const char* base = static_cast<const char*>(W.data);
  if (T == 1) {
    for (int64_t r = rb; r < re; ++r) {
      const void* w = base + size_t(r) * size_t(cols) * esz;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t c = 0;
      for (; c + 4 <= cols; c += 4) {
        s0 += load_w<D>(w, c) * x[c];
        s1 += load_w<D>(w, c + 1) * x[c + 1];
        s2 += load_w<D>(w, c + 2) * x[c + 2];
        s3 += load_w<D>(w, c + 3) * x[c + 3];
      }
      for (; c < cols; ++c) s0 += load_w<D>(w, c) * x[c];
      y[r] = (s0 + s1) + (s2 + s3);
    }
    return;
  }
  // T > 1: each row is converted once and reused for every token.
  thread_local std::vector<float> row;
  if (D != DType::F32) row.resize(size_t(cols));
  for (int64_t r = rb; r < re; ++r) {
    const void* w = base + size_t(r) * size_t(cols) * esz;
    const float* wf;
    if constexpr (D == DType::F32) {
      wf = static_cast<const float*>(w);
    } else {
      for (int64_t c = 0; c < cols; ++c) row[size_t(c)] = load_w<D>(w, c);
      wf = row.data();
    }
    for (int64_t t = 0; t < T; ++t) y[t * rows + r] = dot_scalar(wf, x + t * cols, cols);
  }
}

inline Mxfp4Row mxfp4_row(const MatrixRef& W, int64_t r) { return moe::mxfp4_row(W.data, W.scales, W.cols, W.row_step, r); }

// MXFP4 and the GGML block types: each row is expanded to f32 once (expand(r, dst)), then dotted with
// every token.
template <class Expand>
void matmul_rows_expanded_scalar(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re,
                                 const Expand& expand) {
  thread_local std::vector<float> row;
  row.resize(size_t(W.cols));
  for (int64_t r = rb; r < re; ++r) {
    expand(r, row.data());
    for (int64_t t = 0; t < T; ++t) y[t * W.rows + r] = dot_scalar(row.data(), x + t * W.cols, W.cols);
  }
}

void matmul_rows_mxfp4_scalar(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  matmul_rows_expanded_scalar(W, x, T, y, rb, re, [&W](int64_t r, float* dst) {
    const Mxfp4Row q = mxfp4_row(W, r);
    mxfp4_dequantize(q.blocks, q.scales, W.cols, dst);
  });
}

void matmul_rows_fp8_scalar(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  matmul_rows_expanded_scalar(W, x, T, y, rb, re,
                              [&W](int64_t r, float* dst) { fp8_dequantize_row(W.data, W.cols, W.tiles, r, dst); });
}

void matmul_rows_packed_scalar(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  matmul_rows_expanded_scalar(W, x, T, y, rb, re, [&W](int64_t r, float* dst) {
    packed_int_dequantize_row(W.dtype, W.data, W.cols, W.tiles, r, dst);
  });
}

void matmul_rows_ggml_scalar(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  const size_t stride = row_bytes(W.dtype, W.cols);
  matmul_rows_expanded_scalar(W, x, T, y, rb, re, [&W, stride](int64_t r, float* dst) {
    dequantize_row(static_cast<const uint8_t*>(W.data) + size_t(r) * stride, W.dtype, W.cols, dst);
  });
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C path

#if MOE_HAVE_X86_KERNELS
#define MOE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MOE_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

struct F32W {
  using T = float;
};
struct BF16W {
  using T = uint16_t;
};
struct F16W {
  using T = uint16_t;
};

MOE_AVX2_INLINE __m256 load8(F32W, const float* p) { return _mm256_loadu_ps(p); }
MOE_AVX2_INLINE __m256 load8(BF16W, const uint16_t* p) {
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
MOE_AVX2_INLINE __m256 load8(F16W, const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Horizontal sum in the order ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)) — the same order as hsum4, so a
// row's result does not depend on whether it was computed in a group of 4 or alone (and therefore
// not on how the rows were split between threads).
MOE_AVX2_INLINE float hsum(__m256 v) {
  __m256 s = _mm256_hadd_ps(v, v);
  s = _mm256_hadd_ps(s, s);
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
}

// Horizontal sums of four vectors, as one [s0, s1, s2, s3].
MOE_AVX2_INLINE __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b);  // a01 a23 b01 b23 | a45 a67 b45 b67
  const __m256 cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);  // a0123 b0123 c0123 d0123 | a4567 ...
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// Copies the last n (< 8) elements into zero-padded 8-element buffers so the tail can use full vectors.
template <class WT>
MOE_AVX2_INLINE void pad8(const typename WT::T* src, int64_t n, typename WT::T* dst) {
  for (int i = 0; i < 8; ++i) dst[i] = typename WT::T(0);
  std::memcpy(dst, src, size_t(n) * sizeof(typename WT::T));
}

// *y[r] = the sum of a0[r] + a1[r] for R rows; four rows are summed together, in the same order as
// one alone, so a row's result does not depend on its group.
template <int R>
MOE_AVX2_INLINE void store_row_sums(const __m256* a0, const __m256* a1, float* const* y) {
  if constexpr (R == 4) {
    alignas(16) float s[4];
    _mm_store_ps(s, hsum4(_mm256_add_ps(a0[0], a1[0]), _mm256_add_ps(a0[1], a1[1]), _mm256_add_ps(a0[2], a1[2]),
                          _mm256_add_ps(a0[3], a1[3])));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) *y[r] = s[r];
  } else {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) *y[r] = hsum(_mm256_add_ps(a0[r], a1[r]));
  }
}

// f(std::integral_constant<int, TT>{}) for TT = T, kMin ≤ T ≤ kMax: the few-token kernels are made per token count,
// and only those a path can take are instantiated.
template <int kMax, int kMin = 2, class F>
inline void with_token_count(int64_t T, const F& f) {
  if constexpr (kMax > kMin)
    if (T < kMax) return with_token_count<kMax - 1, kMin>(T, f);
  f(std::integral_constant<int, kMax>{});
}

// For each r in [rb, re) (a row, or a group of rows), f(r, t0, std::integral_constant<int, TT>{}) for each of the
// fewest runs of at most kMax of the T ≥ 2 tokens (sizes differing by at most one, the larger first; t0 the run's first
// token): past its limit a few-token kernel still beats the panels for a while when run over each row once per run,
// the row still in L1.
template <int kMax, class F>
inline void rows_by_token_runs(int64_t T, int64_t rb, int64_t re, const F& f) {
  if (T <= kMax) {
    with_token_count<kMax>(T, [&](auto tt) {
      for (int64_t r = rb; r < re; ++r) f(r, int64_t{0}, tt);
    });
    return;
  }
  const int64_t runs = (T + kMax - 1) / kMax, size = T / runs, larger = T % runs;  // size ≥ (kMax + 1) / 2
  for (int64_t r = rb; r < re; ++r)
    for (int64_t i = 0, t0 = 0; i < runs; t0 += size + (i < larger), ++i)
      with_token_count<kMax, (kMax + 1) / 2>(size + (i < larger), [&](auto tt) { f(r, t0, tt); });
}

// Rows [rb, re) as 4 contiguous quarters, one row from each per step: 4 long sequential streams;
// then the 0–3 rows left over. gemv(rows, n) computes the n rows whose indices it is given.
template <class Gemv>
MOE_AVX2_INLINE void four_streams(int64_t rb, int64_t re, const Gemv& gemv) {
  const int64_t q = (re - rb) / 4;
  int64_t rows[4];
  for (int64_t i = 0; i < q; ++i) {
    for (int j = 0; j < 4; ++j) rows[j] = rb + j * q + i;
    gemv(rows, 4);
  }
  const int64_t r0 = rb + 4 * q;
  for (int j = 0; j < int(re - r0); ++j) rows[j] = r0 + j;
  if (re > r0) gemv(rows, int(re - r0));
}

// y_i = W[row_i, :n] · x for R arbitrary rows (T = 1), two accumulators per row. The caller picks
// rows that lie in R separate, contiguous runs of rows (see matmul_rows_avx2), so each of the R
// pointers walks memory sequentially across row boundaries: R long streams that the hardware
// prefetchers follow, plus a software prefetch kPrefetchDistance bytes ahead in each stream.
// (Prefetches never fault; addresses are computed as integers, so running past the end of the
// matrix is harmless.)
constexpr int64_t kPrefetchDistance = 256;

template <class WT, int R>
MOE_AVX2 void gemv_rows(const typename WT::T* const* w, const float* x, int64_t n, float* const* y) {
  using ST = typename WT::T;
  const ST* p[R];
  __m256 a0[R], a1[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    p[r] = w[r];
    a0[r] = a1[r] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
      _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p[r] + k) + kPrefetchDistance),
                   _MM_HINT_T0);
    const __m256 x0 = _mm256_loadu_ps(x + k);
    const __m256 x1 = _mm256_loadu_ps(x + k + 8);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      a0[r] = _mm256_fmadd_ps(load8(WT{}, p[r] + k), x0, a0[r]);
      a1[r] = _mm256_fmadd_ps(load8(WT{}, p[r] + k + 8), x1, a1[r]);
    }
  }
  if (k + 8 <= n) {
    const __m256 x0 = _mm256_loadu_ps(x + k);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a0[r] = _mm256_fmadd_ps(load8(WT{}, p[r] + k), x0, a0[r]);
    k += 8;
  }
  if (k < n) {
    alignas(32) float xt[8];
    pad8<F32W>(x + k, n - k, xt);
    const __m256 x0 = _mm256_load_ps(xt);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      alignas(16) ST wt[8];
      pad8<WT>(p[r] + k, n - k, wt);
      a1[r] = _mm256_fmadd_ps(load8(WT{}, wt), x0, a1[r]);
    }
  }
  store_row_sums<R>(a0, a1, y);
}

// y[t·ldy + r] (+)= W[r, :n] · x[t·ldx, :n] for R rows × TT tokens: every converted weight vector is
// used TT times, every x vector R times; R·TT independent accumulators. kStream (the few-token path, which reads the
// weights from memory, R rows at a time down the matrix): each cache line of the next R rows is prefetched as the
// same columns of these are read. Without it the R rows are R short streams (an expert's row of 2048 BF16 values is
// one 4 KiB page), which the hardware prefetchers follow too late: 2 to 4 tokens of BF16 ran at half the bandwidth
// of one token's GEMV (BENCHMARKS.md).
template <class WT, int R, int TT, bool kStream = false>
MOE_AVX2 void micro_kernel(const typename WT::T* w, int64_t ldw, const float* x, int64_t ldx, int64_t n,
                           float* y, int64_t ldy, bool accumulate) {
  __m256 acc[R][TT];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 xv[TT];
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) xv[t] = _mm256_loadu_ps(x + t * ldx + k);
    if constexpr (kStream)
      if (size_t(k) * sizeof(typename WT::T) % 64 == 0)  // (addresses as integers: past the matrix is harmless)
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(w + r * ldw + k) +
                                                     size_t(R * ldw) * sizeof(typename WT::T)),
                       _MM_HINT_T0);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 wv = load8(WT{}, w + r * ldw + k);
#pragma GCC unroll 4
      for (int t = 0; t < TT; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  if (k < n) {
    const int64_t m = n - k;
    __m256 xv[TT];
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) {
      alignas(32) float xt[8];
      pad8<F32W>(x + t * ldx + k, m, xt);
      xv[t] = _mm256_load_ps(xt);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      alignas(16) typename WT::T wt[8];
      pad8<WT>(w + r * ldw + k, m, wt);
      const __m256 wv = load8(WT{}, wt);
#pragma GCC unroll 4
      for (int t = 0; t < TT; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < TT; ++t) {
    float* yt = y + t * ldy;
    if constexpr (R == 4) {
      __m128 s = hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
      if (accumulate) s = _mm_add_ps(s, _mm_loadu_ps(yt));
      _mm_storeu_ps(yt, s);
    } else {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) yt[r] = (accumulate ? yt[r] : 0.0f) + hsum(acc[r][t]);
    }
  }
}

template <class WT, int R, bool kStream = false>
MOE_AVX2_INLINE void micro_kernel_tt(int64_t tt, const typename WT::T* w, int64_t ldw, const float* x,
                                     int64_t ldx, int64_t n, float* y, int64_t ldy, bool accumulate) {
  switch (tt) {
    case 1: micro_kernel<WT, R, 1, kStream>(w, ldw, x, ldx, n, y, ldy, accumulate); break;
    case 2: micro_kernel<WT, R, 2, kStream>(w, ldw, x, ldx, n, y, ldy, accumulate); break;
    case 3: micro_kernel<WT, R, 3, kStream>(w, ldw, x, ldx, n, y, ldy, accumulate); break;
    default:  // 4 tokens, 2 rows at most: R · 4 sums and 4 x vectors in the 16 registers
      if constexpr (R <= 2) micro_kernel<WT, R, 4, kStream>(w, ldw, x, ldx, n, y, ldy, accumulate);
      else throw std::logic_error("micro_kernel: 4 tokens take at most 2 rows");
      break;
  }
}

template <class WT, bool kStream = false>
MOE_AVX2 void micro_kernel_any(int64_t rr, int64_t tt, const typename WT::T* w, int64_t ldw, const float* x,
                               int64_t ldx, int64_t n, float* y, int64_t ldy, bool accumulate) {
  switch (rr) {
    case 1: micro_kernel_tt<WT, 1, kStream>(tt, w, ldw, x, ldx, n, y, ldy, accumulate); break;
    case 2: micro_kernel_tt<WT, 2, kStream>(tt, w, ldw, x, ldx, n, y, ldy, accumulate); break;
    case 3: micro_kernel_tt<WT, 3, kStream>(tt, w, ldw, x, ldx, n, y, ldy, accumulate); break;
    default: micro_kernel_tt<WT, 4, kStream>(tt, w, ldw, x, ldx, n, y, ldy, accumulate); break;
  }
}

// dst[i] = f32(src[i]) for i < n.
template <class WT>
MOE_AVX2 void convert_row(const typename WT::T* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8(WT{}, src + i));
  if (i < n) {
    alignas(16) typename WT::T t[8];
    pad8<WT>(src + i, n - i, t);
    alignas(32) float f[8];
    _mm256_store_ps(f, load8(WT{}, t));
    std::memcpy(dst + i, f, size_t(n - i) * sizeof(float));
  }
}

// Prefill: token tiles × column blocks × row panels. A panel (kRowPanel rows × kColBlock columns) is
// converted to f32 once per token tile into a stack buffer that stays in L1 (convert(row, k0, kc, dst)
// writes columns [k0, k0 + kc) of a row); then, for every 3-token group of the tile (its x block also
// in L1), the 4×3 micro-kernel runs over the panel's 4-row groups.
template <class Convert>
MOE_AVX2 void prefill_panels(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re,
                             const Convert& convert) {
  const int64_t cols = W.cols, rows = W.rows;
  alignas(32) float buf[kRowPanel * kColBlock];
  for (int64_t t0 = 0; t0 < T; t0 += kTokenTile) {
    const int64_t tb = std::min(kTokenTile, T - t0);
    for (int64_t k0 = 0; k0 < cols; k0 += kColBlock) {
      const int64_t kc = std::min(kColBlock, cols - k0);
      const bool acc = k0 > 0;
      for (int64_t p = rb; p < re; p += kRowPanel) {
        const int64_t pr = std::min(kRowPanel, re - p);
        // (F32 weights are copied too: the compact panel is measurably faster than strided rows.)
        for (int64_t i = 0; i < pr; ++i) convert(p + i, k0, kc, buf + i * kColBlock);
        const float* wf = buf;
        const int64_t ldw = kColBlock;
        for (int64_t t = 0; t < tb; t += kTokGroup) {
          const int64_t tt = std::min(kTokGroup, tb - t);
          const float* xt = x + (t0 + t) * cols + k0;
          float* yt = y + (t0 + t) * rows + p;
          for (int64_t g = 0; g < pr; g += kRowGroup)
            micro_kernel_any<F32W>(std::min(kRowGroup, pr - g), tt, wf + g * ldw, ldw, xt, cols, kc, yt + g, rows, acc);
        }
      }
    }
  }
}

template <class WT>
MOE_AVX2 void matmul_rows_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  using ST = typename WT::T;
  const ST* w = static_cast<const ST*>(W.data);
  const int64_t cols = W.cols, rows = W.rows;

  if (T == 1) {
    four_streams(rb, re, [&](const int64_t* rows, int n) {
      const ST* wp[4];
      float* yp[4];
      for (int j = 0; j < n; ++j) wp[j] = w + rows[j] * cols, yp[j] = y + rows[j];
      switch (n) {
        case 4: gemv_rows<WT, 4>(wp, x, cols, yp); break;
        case 3: gemv_rows<WT, 3>(wp, x, cols, yp); break;
        case 2: gemv_rows<WT, 2>(wp, x, cols, yp); break;
        default: gemv_rows<WT, 1>(wp, x, cols, yp); break;
      }
    });
    return;
  }

  if (T <= kDirectRunsMaxT) {
    // Few tokens: stream the weights once, converting in registers, T accumulators per row; 4 rows at a time, but 2
    // from 4 tokens (4 × 4 sums and the 4 tokens' x would not fit the 16 registers). 4 tokens went through the panels
    // before, at 0.5 to 0.7 times this speed (BENCHMARKS.md). More than kDirectMaxT tokens: in runs of at most that
    // many, each pair of rows read once per run (from L1 after the first).
    const int64_t step = T >= 4 ? 2 : kRowGroup;
    rows_by_token_runs<kDirectMaxT>(T, 0, (re - rb + step - 1) / step, [&](int64_t g, int64_t t0, auto tt) {
      const int64_t r = rb + g * step;
      micro_kernel_any<WT, true>(std::min(step, re - r), tt, w + r * cols, cols, x + t0 * cols, cols, cols,
                                 y + t0 * rows + r, rows, false);
    });
    return;
  }

  prefill_panels(W, x, T, y, rb, re, [w, cols](int64_t r, int64_t k0, int64_t kc, float* dst) {
    convert_row<WT>(w + r * cols + k0, kc, dst);
  });
}

// The 32 codes of one MXFP4 block as int8 values times 2 (kFp4TwiceValues), through a 16-byte table
// (pshufb): `even` from the low nibbles (elements 0, 2, …, 30), `odd` from the high ones.
MOE_AVX2_INLINE void mxfp4_block_int8(const uint8_t* block, __m128i& even, __m128i& odd) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kFp4TwiceValues));
  const __m128i nibble = _mm_set1_epi8(0x0f);
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block));
  even = _mm_shuffle_epi8(table, _mm_and_si128(q, nibble));
  odd = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), nibble));
}

// 16 int8 values as two vectors of f32.
MOE_AVX2_INLINE void int8_to_f32(__m128i v, __m256* out) {
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
}

// The values of one block times 2 as 4 vectors of f32, in element order (unpacking interleaves
// the even and odd elements back).
MOE_AVX2_INLINE void mxfp4_block_twice(const uint8_t* block, __m256 out[4]) {
  __m128i even, odd;
  mxfp4_block_int8(block, even, odd);
  int8_to_f32(_mm_unpacklo_epi8(even, odd), out);      // values 0–15
  int8_to_f32(_mm_unpackhi_epi8(even, odd), out + 2);  // values 16–31
}

// dst[0..n) = n values (n and the start multiples of 32) of one MXFP4 row, as f32.
MOE_AVX2 void convert_mxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t n, float* dst) {
  for (int64_t b = 0; b < n / kMxfp4BlockValues; ++b) {
    __m256 v[4];
    mxfp4_block_twice(blocks + b * kMxfp4BlockBytes, v);
    const __m256 s = _mm256_set1_ps(mxfp4_half_scale(scales[b]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) _mm256_storeu_ps(dst + b * kMxfp4BlockValues + 8 * i, _mm256_mul_ps(v[i], s));
  }
}

// The values of one block times 2, in split order: out[0], out[1] the even elements, out[2], out[3]
// the odd ones. Decoding in this order needs no unpacking; the GEMV splits x to match.
MOE_AVX2_INLINE void mxfp4_block_split(const uint8_t* block, __m256 out[4]) {
  __m128i even, odd;
  mxfp4_block_int8(block, even, odd);
  int8_to_f32(even, out);
  int8_to_f32(odd, out + 2);
}

// dst[i] = mxfp4_half_scale(s[i]) for i < n, 8 at a time: exponent field s − 1, or for s < 2 the
// subnormal 2^-128 shifted left by s.
MOE_AVX2 void half_scales(const uint8_t* s, int64_t n, float* dst) {
  const __m256i one = _mm256_set1_epi32(1), tiny = _mm256_set1_epi32(0x00200000);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + i)));
    const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(v, one), 23);
    const __m256i subnormal = _mm256_sllv_epi32(tiny, v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_blendv_epi8(subnormal, normal, _mm256_cmpgt_epi32(v, one)));
  }
  for (; i < n; ++i) dst[i] = mxfp4_half_scale(s[i]);
}

// y_i = row_i · x for R MXFP4 rows (T = 1), the rows taken as in gemv_rows; xs is x in split order
// (per block its 16 even elements, then its 16 odd ones). Per block the codes' sum against x is formed
// first and scaled once, and the scales of kScaleRun blocks are decoded ahead, 8 at a time.
constexpr int64_t kScaleRun = 64;

template <int R>
MOE_AVX2 void gemv_mxfp4_rows(const Mxfp4Row* rows, const float* xs, int64_t n, float* const* y) {
  __m256 a0[R], a1[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  alignas(32) float scale[R][kScaleRun];
  const int64_t blocks = n / kMxfp4BlockValues;
  for (int64_t b0 = 0; b0 < blocks; b0 += kScaleRun) {
    const int64_t nb = std::min(kScaleRun, blocks - b0);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) half_scales(rows[r].scales + b0, nb, scale[r]);
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const float* xb = xs + b * kMxfp4BlockValues;
      const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
      const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const uint8_t* block = rows[r].blocks + b * kMxfp4BlockBytes;
        _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(block) + kPrefetchDistance), _MM_HINT_T0);
        __m256 q[4];
        mxfp4_block_split(block, q);
        const __m256 s = _mm256_broadcast_ss(&scale[r][b - b0]);
        const __m256 p0 = _mm256_fmadd_ps(q[1], x1, _mm256_mul_ps(q[0], x0));
        const __m256 p1 = _mm256_fmadd_ps(q[3], x3, _mm256_mul_ps(q[2], x2));
        a0[r] = _mm256_fmadd_ps(p0, s, a0[r]);
        a1[r] = _mm256_fmadd_ps(p1, s, a1[r]);
      }
    }
  }
  store_row_sums<R>(a0, a1, y);
}

// n floats in a buffer of the calling thread, starting on a cache line (the next call reuses it). The few-token
// kernels (gemm_packed_i4_row, gemm_block_row, gemm_mxfp4_row, gemm_fp8_row) read every token's x 8 floats at a
// time. malloc aligns to 16 bytes only, and from a buffer 16 bytes past a 32-byte boundary every other such load
// splits across two cache lines. With their x where malloc had put it the kernels ran about 0.7 times as fast, on one
// thread or two, and by how much varied with the run (Q4_K and others at 6 and 8 tokens, BENCHMARKS.md).
float* line_aligned_floats(int64_t n) {
  thread_local std::vector<float> buf;
  buf.resize(size_t(n + 16));
  return buf.data() + (16 - (reinterpret_cast<uintptr_t>(buf.data()) / sizeof(float)) % 16) % 16;
}

// A copy of x's first n floats in line_aligned_floats.
const float* line_aligned_copy(const float* x, int64_t n) {
  float* dst = line_aligned_floats(n);
  std::memcpy(dst, x, size_t(n) * sizeof(float));
  return dst;
}

// The few-token kernels' sums: kTokenChains<TT> per token (of every kTokenChains-th vector of 8 values), so that at 2
// to 4 tokens 8 FMA chains are in flight (gemm_block_row at 2 tokens, Q4_K: 15.4 G multiply-adds/s with one sum per
// token, 23.3 with four; BENCHMARKS.md).
template <int TT>
constexpr int kTokenChains = TT == 2 ? 4 : TT <= 4 ? 2 : 1;

template <int TT, int C>
MOE_AVX2_INLINE void zero_token_sums(__m256 (&a)[TT][C]) {
#pragma GCC unroll 12
  for (int t = 0; t < TT; ++t)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) a[t][c] = _mm256_setzero_ps();
}

// a[t][chain] += w · x[t · ldx, 8 values] for the TT tokens.
template <int TT, int C>
MOE_AVX2_INLINE void fma_tokens(__m256 (&a)[TT][C], __m256 w, const float* x, int64_t ldx, int chain) {
#pragma GCC unroll 12
  for (int t = 0; t < TT; ++t) a[t][chain] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + t * ldx), a[t][chain]);
}

// y[t · ldy] = the sum of token t's chains.
template <int TT, int C>
MOE_AVX2_INLINE void store_token_sums(__m256 (&a)[TT][C], float* y, int64_t ldy) {
#pragma GCC unroll 12
  for (int t = 0; t < TT; ++t) {
#pragma GCC unroll 4
    for (int c = 1; c < C; ++c) a[t][0] = _mm256_add_ps(a[t][0], a[t][c]);
    y[t * ldy] = hsum(a[t][0]);
  }
}

// y[t · ldy] = row · x_t for one MXFP4 row and TT tokens, x_t = xs + t · n in split order: each block is decoded once
// for all TT tokens and each of its weights scaled once (q · s, exactly as convert_mxfp4 makes it), then multiplied
// with every token's x. The few-token product of prefill's experts (GPT-OSS: 4 of 32 or 128 experts a token), where
// the panels cost more than the products. Each token keeps kTokenChains sums.
template <int TT>
MOE_AVX2 void gemm_mxfp4_row(const Mxfp4Row& row, const float* xs, int64_t n, float* y, int64_t ldy) {
  constexpr int kChains = kTokenChains<TT>;
  __m256 a[TT][kChains];
  zero_token_sums(a);
  for (int64_t b = 0; b < n / kMxfp4BlockValues; ++b) {
    const uint8_t* block = row.blocks + b * kMxfp4BlockBytes;
    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(block) + kPrefetchDistance), _MM_HINT_T0);
    __m256 w[4];
    mxfp4_block_split(block, w);
    const __m256 s = _mm256_set1_ps(mxfp4_half_scale(row.scales[b]));
    const float* xb = xs + b * kMxfp4BlockValues;
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) fma_tokens(a, _mm256_mul_ps(w[i], s), xb + 8 * i, n, i % kChains);
  }
  store_token_sums(a, y, ldy);
}

// T tokens of x (n values each, n a multiple of 32) in split order: per block its 16 even elements, then its 16 odd
// ones, the order mxfp4_block_split decodes the weights in. Into a buffer that starts on a cache line.
MOE_AVX2 const float* mxfp4_split_x(const float* x, int64_t T, int64_t n) {
  float* xs = line_aligned_floats(T * n);
  const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int64_t b = 0; b < T * n; b += kMxfp4BlockValues)
    for (int i = 0; i < 2; ++i) {  // values b + 16i … b + 16i + 15: 8 even ones to xs + b + 8i, 8 odd to + 16
      const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + b + 16 * i), order);
      const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + b + 16 * i + 8), order);
      _mm256_storeu_ps(xs + b + 8 * i, _mm256_permute2f128_ps(lo, hi, 0x20));
      _mm256_storeu_ps(xs + b + 16 + 8 * i, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
  return xs;
}

MOE_AVX2 void matmul_rows_mxfp4_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  if (T > 1 && T <= kMxfp4RunsMaxT) {
    const float* xs = mxfp4_split_x(x, T, W.cols);
    rows_by_token_runs<kMxfp4DirectMaxT>(T, rb, re, [&](int64_t r, int64_t t0, auto tt) {
      gemm_mxfp4_row<tt>(mxfp4_row(W, r), xs + t0 * W.cols, W.cols, y + t0 * W.rows + r, W.rows);
    });
    return;
  }
  if (T == 1) {
    const float* xs = mxfp4_split_x(x, 1, W.cols);
    four_streams(rb, re, [&](const int64_t* rows, int n) {  // as matmul_rows_avx2
      Mxfp4Row q[4];
      float* yp[4];
      for (int j = 0; j < n; ++j) q[j] = mxfp4_row(W, rows[j]), yp[j] = y + rows[j];
      switch (n) {
        case 4: gemv_mxfp4_rows<4>(q, xs, W.cols, yp); break;
        case 3: gemv_mxfp4_rows<3>(q, xs, W.cols, yp); break;
        case 2: gemv_mxfp4_rows<2>(q, xs, W.cols, yp); break;
        default: gemv_mxfp4_rows<1>(q, xs, W.cols, yp); break;
      }
    });
    return;
  }
  // More tokens: expanded panels, as prefill (column blocks are multiples of 32, so blocks stay whole).
  prefill_panels(W, x, T, y, rb, re, [&W](int64_t r, int64_t k0, int64_t kc, float* dst) {
    const Mxfp4Row q = mxfp4_row(W, r);
    convert_mxfp4(q.blocks + k0 / 2, q.scales + k0 / kMxfp4BlockValues, kc, dst);
  });
}

// ---------------------------------------------------------------------------------------------
// Fine-grained FP8 (F8_E4M3 with tile scales, engine/common/fp8.h), AVX2

// 16 E4M3 bytes as 16 f32 values (two vectors, in order), each the byte's value times 2^−8: each byte,
// sign-extended to 16 bits and shifted left by 7, has its sign in bit 15 and its exponent and mantissa in bits
// 7–13 (f16's exponent bias is 15 against E4M3's 7, so that f16 is the value over 2^8 exactly, subnormals
// included); the sign extension's copy in bit 14 is masked off; the NaN codes get f16's all-ones exponent; then
// F16C converts.
constexpr float kE4m3Unit = 256.0f;  // e4m3_16's values times this are the bytes' values

MOE_AVX2_INLINE void e4m3_16(const uint8_t* p, __m256& lo, __m256& hi) {
  const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i magnitude = _mm256_set1_epi16(0x3f80);
  __m256i h = _mm256_and_si256(_mm256_slli_epi16(w, 7), _mm256_set1_epi16(int16_t(0xbf80)));
  const __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(h, magnitude), magnitude);
  h = _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi16(0x7c00)));
  lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

// y_i = row_i · x for R FP8 rows (T = 1), the rows taken as in gemv_rows (w: each row's bytes, scales: its tiles'
// scales). Per tile, Σ e4m3_16 · x over its columns is formed first, then times the tile's scale · 2^8 into the
// row's accumulators. A tile's last columns short of 16 go through zero-padded copies.
template <int R>
MOE_AVX2 void gemv_fp8_rows(const uint8_t* const* w, const float* const* scales, int64_t tile_cols, const float* x,
                            int64_t n, float* const* y) {
  __m256 a0[R], a1[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  for (int64_t c0 = 0, tile = 0; c0 < n; c0 += tile_cols, ++tile) {
    const int64_t c1 = std::min(n, c0 + tile_cols);
    __m256 t0[R], t1[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) t0[r] = t1[r] = _mm256_setzero_ps();
    int64_t k = c0;
    for (; k + 16 <= c1; k += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(w[r] + k) + kPrefetchDistance), _MM_HINT_T0);
        __m256 lo, hi;
        e4m3_16(w[r] + k, lo, hi);
        t0[r] = _mm256_fmadd_ps(lo, x0, t0[r]);
        t1[r] = _mm256_fmadd_ps(hi, x1, t1[r]);
      }
    }
    if (k < c1) {
      alignas(32) float xt[16] = {};
      std::memcpy(xt, x + k, size_t(c1 - k) * sizeof(float));
      const __m256 x0 = _mm256_load_ps(xt), x1 = _mm256_load_ps(xt + 8);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        alignas(16) uint8_t qt[16] = {};
        std::memcpy(qt, w[r] + k, size_t(c1 - k));
        __m256 lo, hi;
        e4m3_16(qt, lo, hi);
        t0[r] = _mm256_fmadd_ps(lo, x0, t0[r]);
        t1[r] = _mm256_fmadd_ps(hi, x1, t1[r]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 s = _mm256_set1_ps(scales[r][tile] * kE4m3Unit);
      a0[r] = _mm256_fmadd_ps(t0[r], s, a0[r]);
      a1[r] = _mm256_fmadd_ps(t1[r], s, a1[r]);
    }
  }
  store_row_sums<R>(a0, a1, y);
}

// dst[0..n) = columns [c0, c0 + n) of an FP8 row, as fp8_dequantize_cols gives them: e4m3_16's value times
// 2^8 · scale is the same real number as the byte's value times the scale (2^8 · scale is exact), rounded once.
MOE_AVX2 void convert_fp8(const uint8_t* q, const float* scales, int64_t tile_cols, int64_t c0, int64_t n, float* dst) {
  for (int64_t c = c0, end = c0 + n; c < end;) {
    const int64_t tile = c / tile_cols, stop = std::min(end, (tile + 1) * tile_cols);
    const __m256 s = _mm256_set1_ps(scales[tile] * kE4m3Unit);
    for (; c + 16 <= stop; c += 16) {
      __m256 lo, hi;
      e4m3_16(q + c, lo, hi);
      _mm256_storeu_ps(dst + (c - c0), _mm256_mul_ps(lo, s));
      _mm256_storeu_ps(dst + (c - c0) + 8, _mm256_mul_ps(hi, s));
    }
    if (c < stop) fp8_dequantize_cols(q, scales, tile_cols, c, stop - c, dst + (c - c0));
    c = stop;
  }
}

// y[t · ldy] = row · x_t for one FP8 row (q, its tiles' scales) and TT tokens, x_t = x + t · n: each weight is decoded
// and scaled once (e4m3_16 · 2^8 · scale, the value convert_fp8 gives the panels) and multiplied with every token's
// x, 32 columns at a time (kTokenChains sums per token). A tile's columns short of 16 take their values
// from fp8_dequantize_cols and each token's x from a zero-padded copy.
template <int TT>
MOE_AVX2 void gemm_fp8_row(const uint8_t* q, const float* scales, int64_t tile_cols, const float* x, int64_t n, float* y,
                           int64_t ldy) {
  constexpr int kChains = kTokenChains<TT>;
  __m256 a[TT][kChains];
  zero_token_sums(a);
  for (int64_t c0 = 0, tile = 0; c0 < n; c0 += tile_cols, ++tile) {
    const int64_t c1 = std::min(n, c0 + tile_cols);
    const __m256 s = _mm256_set1_ps(scales[tile] * kE4m3Unit);
    int64_t k = c0;
    for (; k + 32 <= c1; k += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(q + k) + kPrefetchDistance), _MM_HINT_T0);
      __m256 w[4];
      e4m3_16(q + k, w[0], w[1]);
      e4m3_16(q + k + 16, w[2], w[3]);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) fma_tokens(a, _mm256_mul_ps(w[j], s), x + k + 8 * j, n, j % kChains);
    }
    if (k + 16 <= c1) {
      __m256 lo, hi;
      e4m3_16(q + k, lo, hi);
      fma_tokens(a, _mm256_mul_ps(lo, s), x + k, n, 0);
      fma_tokens(a, _mm256_mul_ps(hi, s), x + k + 8, n, 1 % kChains);
      k += 16;
    }
    if (k < c1) {
      alignas(32) float wt[16] = {}, xt[TT][16] = {};
      fp8_dequantize_cols(q, scales, tile_cols, k, c1 - k, wt);
      for (int t = 0; t < TT; ++t) std::memcpy(xt[t], x + t * n + k, size_t(c1 - k) * sizeof(float));
      fma_tokens(a, _mm256_load_ps(wt), xt[0], 16, 0);
      fma_tokens(a, _mm256_load_ps(wt + 8), xt[0] + 8, 16, 0);
    }
  }
  store_token_sums(a, y, ldy);
}

MOE_AVX2 void matmul_rows_fp8_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  const auto* q = static_cast<const uint8_t*>(W.data);
  if (T > 1 && T <= kFp8RunsMaxT) {
    const int64_t n = W.cols;
    const float* xa = line_aligned_copy(x, T * n);
    rows_by_token_runs<kFp8DirectMaxT>(T, rb, re, [&](int64_t r, int64_t t0, auto tt) {
      gemm_fp8_row<tt>(q + r * n, W.tiles.row_scales(r), W.tiles.tile_cols, xa + t0 * n, n, y + t0 * W.rows + r, W.rows);
    });
    return;
  }
  if (T == 1) {
    four_streams(rb, re, [&](const int64_t* rows, int n) {  // as matmul_rows_avx2
      const uint8_t* wp[4];
      const float* sp[4];
      float* yp[4];
      for (int j = 0; j < n; ++j) wp[j] = q + rows[j] * W.cols, sp[j] = W.tiles.row_scales(rows[j]), yp[j] = y + rows[j];
      switch (n) {
        case 4: gemv_fp8_rows<4>(wp, sp, W.tiles.tile_cols, x, W.cols, yp); break;
        case 3: gemv_fp8_rows<3>(wp, sp, W.tiles.tile_cols, x, W.cols, yp); break;
        case 2: gemv_fp8_rows<2>(wp, sp, W.tiles.tile_cols, x, W.cols, yp); break;
        default: gemv_fp8_rows<1>(wp, sp, W.tiles.tile_cols, x, W.cols, yp); break;
      }
    });
    return;
  }
  // T > 1: expanded panels, as prefill.
  prefill_panels(W, x, T, y, rb, re, [&W, q](int64_t r, int64_t k0, int64_t kc, float* dst) {
    convert_fp8(q + r * W.cols, W.tiles.row_scales(r), W.tiles.tile_cols, k0, kc, dst);
  });
}

// ---------------------------------------------------------------------------------------------
// compressed-tensors' packed integers (engine/common/packed_int.h), AVX2

// 32 values q of an 8-bit packed row from column k (a multiple of 32) as f32, in order: 32 bytes, xor 0x80 making each
// stored q + 128 the signed q. (4-bit rows are looked up: lookup_32.)
MOE_AVX2_INLINE void packed_i8_32(const uint8_t* row, int64_t k, __m256* v) {
  const __m128i sign = _mm_set1_epi8(int8_t(0x80));
  const __m128i b0 = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k)), sign);
  const __m128i b1 = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k + 16)), sign);
  v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b0));
  v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b0, 8)));
  v[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b1));
  v[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b1, 8)));
}

// q · s rounded to RT (round_to_dtype): BF16 by adding 0x7fff plus the kept bits' lowest and truncating (the
// products are finite), F16 through F16C's round to nearest even.
template <DType RT>
MOE_AVX2_INLINE __m256 scaled(__m256 q, __m256 s) {
  const __m256 v = _mm256_mul_ps(q, s);
  if constexpr (RT == DType::BF16) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32(int32_t(0xffff0000u))));
  } else if constexpr (RT == DType::F16) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  } else {
    return v;
  }
}

// The values of a packed row as the products take them: the rows' bytes, their tiles' scales and (kZero, an
// asymmetric scheme) zero points, per row of up to four.
struct PackedRows {
  const uint8_t* w[4];
  const float* scales[4];
  const int8_t* zeros[4];
};

// (q − z) · s rounded as dequantised, for one tile's 8 values q (as f32) of row r: z its zero point when kZero.
template <DType RT, bool kZero>
MOE_AVX2_INLINE __m256 dequantized(__m256 q, const PackedRows& p, int r, int64_t tile) {
  if constexpr (kZero) q = _mm256_sub_ps(q, _mm256_set1_ps(float(p.zeros[r][tile])));
  return scaled<RT>(q, _mm256_set1_ps(p.scales[r][tile]));
}

// y_i = row_i · x for R 8-bit packed rows (T = 1), the rows taken as in gemv_rows (tile_cols a multiple of 32). Each
// weight is rounded as dequantised before its product with x, so the sums are those of the reference's weights.
// 4-bit rows go through gemv_packed_i4_rows.
template <DType RT, bool kZero, int R>
MOE_AVX2 void gemv_packed_i8_rows(const PackedRows& p, int64_t tile_cols, const float* x, int64_t n, float* const* y) {
  __m256 a0[R], a1[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < n; k += 32) {
    const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8), x2 = _mm256_loadu_ps(x + k + 16),
                 x3 = _mm256_loadu_ps(x + k + 24);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p.w[r] + k) + kPrefetchDistance), _MM_HINT_T0);
      __m256 q[4];
      packed_i8_32(p.w[r], k, q);
      const int64_t tile = k / tile_cols;
      a0[r] = _mm256_fmadd_ps(dequantized<RT, kZero>(q[0], p, r, tile), x0, a0[r]);
      a1[r] = _mm256_fmadd_ps(dequantized<RT, kZero>(q[1], p, r, tile), x1, a1[r]);
      a0[r] = _mm256_fmadd_ps(dequantized<RT, kZero>(q[2], p, r, tile), x2, a0[r]);
      a1[r] = _mm256_fmadd_ps(dequantized<RT, kZero>(q[3], p, r, tile), x3, a1[r]);
    }
  }
  store_row_sums<R>(a0, a1, y);
}

// The 16 weights of a group, lo those of nibbles 0–7 and hi of 8–15, as byte planes: planes[b] holds byte b of each
// weight's f32 at the index of its nibble, in both lanes, so that vpshufb looks up 32 nibbles' bytes at once.
// Planes below kFirst are zero and not made: the weights are rounded to BF16 (bytes 0 and 1 zero) or F16 (byte 0).
template <int kFirst>
MOE_AVX2_INLINE void byte_planes(__m256 lo, __m256 hi, __m256i* planes) {
  // In each lane, byte b of its 4 weights to bytes 4b … 4b + 3: dword b of a lane is plane b's part.
  const __m256i by_byte = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,  //
                                           0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i l = _mm256_shuffle_epi8(_mm256_castps_si256(lo), by_byte);  // weights 0–3 | 4–7
  const __m256i h = _mm256_shuffle_epi8(_mm256_castps_si256(hi), by_byte);  // weights 8–11 | 12–15
  // Plane p is dwords [l_p, l_(4+p), h_p, h_(4+p)]. After unpacking l and h, planes 0 and 1 (or 2 and 3) lie at
  // dwords 0, 4, 1, 5 and 2, 6, 3, 7.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i p23 = _mm256_permutevar8x32_epi32(_mm256_unpackhi_epi32(l, h), order);
  planes[2] = _mm256_permute2x128_si256(p23, p23, 0x00);
  planes[3] = _mm256_permute2x128_si256(p23, p23, 0x11);
  if constexpr (kFirst < 2) {
    const __m256i p01 = _mm256_permutevar8x32_epi32(_mm256_unpacklo_epi32(l, h), order);
    if constexpr (kFirst == 0) planes[0] = _mm256_permute2x128_si256(p01, p01, 0x00);
    planes[1] = _mm256_permute2x128_si256(p01, p01, 0x11);
  }
}

// The first plane a weight rounded to RT can have nonzero: f32 keeps F16's 10 and BF16's 7 mantissa bits at its top.
template <DType RT>
constexpr int kFirstPlane = RT == DType::BF16 ? 2 : RT == DType::F16 ? 1 : 0;

// The 32 weights of columns k … k + 31 whose packed bytes are `bytes`, looked up in their group's byte planes.
// They come out in nibble order (nibble_order): w[j] holds columns 8j + {0, 2, 4, 6, 1, 3, 5, 7}.
template <int kFirst>
MOE_AVX2_INLINE void lookup_32(const uint8_t* bytes, const __m256i* planes, __m256* w) {
  // Lane 0: the low nibbles (the even columns 0, 2, …, 30), lane 1: the high ones (the odd columns).
  const __m256i packed = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes)));
  const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(packed, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                                       _mm256_set1_epi8(0x0f));
  const __m256i zero = _mm256_setzero_si256();
  const __m256i b2 = _mm256_shuffle_epi8(planes[2], idx), b3 = _mm256_shuffle_epi8(planes[3], idx);
  // Bytes to 16-bit halves (columns 0–14 and 16–30 even | the odd ones), then to f32s.
  const __m256i h23_lo = _mm256_unpacklo_epi8(b2, b3), h23_hi = _mm256_unpackhi_epi8(b2, b3);
  __m256i h01_lo = zero, h01_hi = zero;
  if constexpr (kFirst < 2) {
    const __m256i b1 = _mm256_shuffle_epi8(planes[1], idx);
    const __m256i b0 = kFirst == 0 ? _mm256_shuffle_epi8(planes[0], idx) : zero;
    h01_lo = _mm256_unpacklo_epi8(b0, b1);
    h01_hi = _mm256_unpackhi_epi8(b0, b1);
  }
  w[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(h01_lo, h23_lo));
  w[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(h01_lo, h23_lo));
  w[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(h01_hi, h23_hi));
  w[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(h01_hi, h23_hi));
}

// The byte planes of group g of row r: its 16 possible weights round((q − z)·s), q = −8 … 7.
template <DType RT, bool kZero>
MOE_AVX2_INLINE void group_planes(const PackedRows& p, int r, int64_t g, __m256i* planes) {
  const __m256 q_lo = _mm256_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1), q_hi = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  byte_planes<kFirstPlane<RT>>(dequantized<RT, kZero>(q_lo, p, r, g), dequantized<RT, kZero>(q_hi, p, r, g), planes);
}

// x in the order lookup_32 gives the weights: in each run of 8 columns, the even ones, then the odd ones (n a multiple
// of 8).
MOE_AVX2 void nibble_order(const float* x, int64_t n, float* dst) {
  const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int64_t k = 0; k < n; k += 8) _mm256_storeu_ps(dst + k, _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + k), order));
}

// y_i = row_i · x for R 4-bit packed rows, as gemv_packed_i8_rows, x given in nibble order: a group's 16 possible
// weights, round((q − z)·s) for q = −8 … 7, are made once per group and row, as byte planes, and lookup_32 finds each
// nibble's weight by byte shuffles: 2 to 3 one-cycle shuffles per 8 weights (BF16 to F32 weights) and no
// conversions. Measured on one thread of a Zen 3 (BENCHMARKS.md): 1.9 to 2.4 times as fast as the lookup it replaced
// (two vpermps and a vblendvps per 8 weights) for groups of 128, and 1.2 times as fast as widening each value for
// groups of 32, where the planes weigh more.
template <DType RT, bool kZero, int R>
MOE_AVX2 void gemv_packed_i4_rows(const PackedRows& p, int64_t tile_cols, const float* x, int64_t n, float* const* y) {
  constexpr int kFirst = kFirstPlane<RT>;
  __m256 a0[R], a1[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  for (int64_t g0 = 0, g = 0; g0 < n; g0 += tile_cols, ++g) {
    __m256i planes[R][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
      group_planes<RT, kZero>(p, r, g, planes[r]);
    for (int64_t k = g0, end = std::min(n, g0 + tile_cols); k < end; k += 32) {
      const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8), x2 = _mm256_loadu_ps(x + k + 16),
                   x3 = _mm256_loadu_ps(x + k + 24);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p.w[r] + k / 2) + kPrefetchDistance), _MM_HINT_T0);
        __m256 w[4];
        lookup_32<kFirst>(p.w[r] + k / 2, planes[r], w);
        a0[r] = _mm256_fmadd_ps(w[0], x0, a0[r]);
        a1[r] = _mm256_fmadd_ps(w[1], x1, a1[r]);
        a0[r] = _mm256_fmadd_ps(w[2], x2, a0[r]);
        a1[r] = _mm256_fmadd_ps(w[3], x3, a1[r]);
      }
    }
  }
  store_row_sums<R>(a0, a1, y);
}

// y[t · ldy] = row · x_t for one 4-bit packed row (p's row 0) and TT tokens x_t = x + t · ldx, x in nibble order:
// the row's weights are looked up once (as in gemv_packed_i4_rows) for all TT tokens. This is the few-token product
// of prefill's experts, where converting rows to f32 panels first (prefill_panels) costs more than the products.
template <DType RT, bool kZero, int TT>
MOE_AVX2 void gemm_packed_i4_row(const PackedRows& p, int64_t tile_cols, const float* x, int64_t ldx, int64_t n, float* y,
                                 int64_t ldy) {
  constexpr int kFirst = kFirstPlane<RT>;
  __m256 a[TT];  // one sum per token (two, as gemv_packed_i4_rows keeps, measured slower: they leave fewer registers)
#pragma GCC unroll 8
  for (int t = 0; t < TT; ++t) a[t] = _mm256_setzero_ps();
  for (int64_t g0 = 0, g = 0; g0 < n; g0 += tile_cols, ++g) {
    __m256i planes[4];
    group_planes<RT, kZero>(p, 0, g, planes);
    for (int64_t k = g0, end = std::min(n, g0 + tile_cols); k < end; k += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p.w[0] + k / 2) + kPrefetchDistance), _MM_HINT_T0);
      __m256 w[4];
      lookup_32<kFirst>(p.w[0] + k / 2, planes, w);
#pragma GCC unroll 8
      for (int t = 0; t < TT; ++t) {
        const float* xt = x + t * ldx + k;
        a[t] = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xt), a[t]);
        a[t] = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xt + 8), a[t]);
        a[t] = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xt + 16), a[t]);
        a[t] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xt + 24), a[t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < TT; ++t) y[t * ldy] = hsum(a[t]);
}

// dst[0..n) = columns [c0, c0 + n) of a 4-bit packed row (p's row 0; c0 and n multiples of 32) in nibble order, as
// gemv_packed_i4_rows looks them up: the panels of prefill_panels, for inputs in nibble order too.
template <DType RT, bool kZero>
MOE_AVX2 void convert_packed_i4(const PackedRows& p, int64_t tile_cols, int64_t c0, int64_t n, float* dst) {
  constexpr int kFirst = kFirstPlane<RT>;
  for (int64_t c = c0; c < c0 + n;) {
    const int64_t g = c / tile_cols, end = std::min(c0 + n, (g + 1) * tile_cols);
    __m256i planes[4];
    group_planes<RT, kZero>(p, 0, g, planes);
    for (; c < end; c += 32) {
      __m256 w[4];
      lookup_32<kFirst>(p.w[0] + c / 2, planes, w);
      for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + (c - c0) + 8 * j, w[j]);
    }
  }
}

// dst[0..n) = columns [c0, c0 + n) of an 8-bit packed row (c0 and n multiples of 32; p's row 0), as
// packed_int_dequantize_cols gives them. (4-bit rows: convert_packed_i4.)
template <DType RT, bool kZero>
MOE_AVX2 void convert_packed_i8(const PackedRows& p, int64_t tile_cols, int64_t c0, int64_t n, float* dst) {
  for (int64_t c = c0; c < c0 + n; c += 32) {
    __m256 q[4];
    packed_i8_32(p.w[0], c, q);
    for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + (c - c0) + 8 * j, dequantized<RT, kZero>(q[j], p, 0, c / tile_cols));
  }
}

// The given rows (up to four) of a packed matrix: their bytes, scales and (kZero) zero points.
template <DType PT, bool kZero>
PackedRows packed_rows(const MatrixRef& W, const int64_t* rows, int n) {
  const auto* q = static_cast<const uint8_t*>(W.data);
  const size_t stride = packed_int_row_bytes(PT, W.cols);
  PackedRows p{};
  for (int j = 0; j < n; ++j) {
    p.w[j] = q + rows[j] * stride;
    p.scales[j] = W.tiles.row_scales(rows[j]);
    if constexpr (kZero) p.zeros[j] = W.tiles.row_zero_points(rows[j]);
  }
  return p;
}

// One-token products over rows [rb, re), four rows at a time as matmul_rows_avx2 takes them: gemv(p, y pointers, n).
template <DType PT, bool kZero, class Gemv>
MOE_AVX2_INLINE void packed_four_streams(const MatrixRef& W, float* y, int64_t rb, int64_t re, const Gemv& gemv) {
  four_streams(rb, re, [&](const int64_t* rows, int nr) {
    float* yp[4];
    for (int j = 0; j < nr; ++j) yp[j] = y + rows[j];
    gemv(packed_rows<PT, kZero>(W, rows, nr), yp, nr);
  });
}

// 4-bit rows: every product looks its weights up (lookup_32), so x is taken in nibble order. One token: four rows at
// a time (as matmul_rows_avx2); up to kPackedDirectMaxT: each row for all tokens at once; up to kPackedRunsMaxT: each
// row once per half of the tokens (at 9 to 16 tokens 1.2 to 1.6 times the panels' speed; at 24, three runs of 8,
// 0.77: matmul_bench --tokens, BENCHMARKS.md); more: f32 panels, as prefill.
template <DType RT, bool kZero>
MOE_AVX2 void matmul_rows_packed_i4(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  constexpr DType PT = DType::PACKED_I4;
  const int64_t n = W.cols, tile_cols = W.tiles.tile_cols;
  float* xo = line_aligned_floats(T * n);
  nibble_order(x, T * n, xo);  // all tokens at once: no run of 8 columns crosses a token's end
  if (T == 1) {
    packed_four_streams<PT, kZero>(W, y, rb, re, [&](const PackedRows& p, float* const* yp, int nr) {
      switch (nr) {
        case 4: gemv_packed_i4_rows<RT, kZero, 4>(p, tile_cols, xo, n, yp); break;
        case 3: gemv_packed_i4_rows<RT, kZero, 3>(p, tile_cols, xo, n, yp); break;
        case 2: gemv_packed_i4_rows<RT, kZero, 2>(p, tile_cols, xo, n, yp); break;
        default: gemv_packed_i4_rows<RT, kZero, 1>(p, tile_cols, xo, n, yp); break;
      }
    });
  } else if (T <= kPackedRunsMaxT) {
    rows_by_token_runs<kPackedDirectMaxT>(T, rb, re, [&](int64_t r, int64_t t0, auto tt) {
      gemm_packed_i4_row<RT, kZero, tt>(packed_rows<PT, kZero>(W, &r, 1), tile_cols, xo + t0 * n, n, n,
                                         y + t0 * W.rows + r, W.rows);
    });
  } else {
    prefill_panels(W, xo, T, y, rb, re, [&](int64_t r, int64_t k0, int64_t kc, float* dst) {
      convert_packed_i4<RT, kZero>(packed_rows<PT, kZero>(W, &r, 1), tile_cols, k0, kc, dst);
    });
  }
}

// 8-bit rows: one token, four rows at a time, each weight widened and rounded; more, f32 panels.
template <DType RT, bool kZero>
MOE_AVX2 void matmul_rows_packed_i8(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  constexpr DType PT = DType::PACKED_I8;
  const int64_t tile_cols = W.tiles.tile_cols;
  if (T == 1) {
    packed_four_streams<PT, kZero>(W, y, rb, re, [&](const PackedRows& p, float* const* yp, int nr) {
      switch (nr) {
        case 4: gemv_packed_i8_rows<RT, kZero, 4>(p, tile_cols, x, W.cols, yp); break;
        case 3: gemv_packed_i8_rows<RT, kZero, 3>(p, tile_cols, x, W.cols, yp); break;
        case 2: gemv_packed_i8_rows<RT, kZero, 2>(p, tile_cols, x, W.cols, yp); break;
        default: gemv_packed_i8_rows<RT, kZero, 1>(p, tile_cols, x, W.cols, yp); break;
      }
    });
    return;
  }
  prefill_panels(W, x, T, y, rb, re, [&](int64_t r, int64_t k0, int64_t kc, float* dst) {
    convert_packed_i8<RT, kZero>(packed_rows<PT, kZero>(W, &r, 1), tile_cols, k0, kc, dst);
  });
}

template <DType PT, DType RT, bool kZero>
void matmul_rows_packed_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  if constexpr (PT == DType::PACKED_I4)
    matmul_rows_packed_i4<RT, kZero>(W, x, T, y, rb, re);
  else
    matmul_rows_packed_i8<RT, kZero>(W, x, T, y, rb, re);
}

// Whether the AVX2 path takes a packed matrix: whole runs of 32 columns, tiles too (every group size in use: 32 to
// 128, or whole rows). Others go through the scalar path.
bool packed_fits_avx2(const MatrixRef& W) { return W.cols % 32 == 0 && W.tiles.tile_cols % 32 == 0; }

template <DType PT, bool kZero>
void matmul_rows_packed_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  switch (W.tiles.round_to) {
    case DType::BF16: matmul_rows_packed_avx2<PT, DType::BF16, kZero>(W, x, T, y, rb, re); return;
    case DType::F16: matmul_rows_packed_avx2<PT, DType::F16, kZero>(W, x, T, y, rb, re); return;
    default: matmul_rows_packed_avx2<PT, DType::F32, kZero>(W, x, T, y, rb, re); return;
  }
}

template <DType PT>
void matmul_rows_packed_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  if (W.tiles.zero_points)
    matmul_rows_packed_avx2<PT, true>(W, x, T, y, rb, re);
  else
    matmul_rows_packed_avx2<PT, false>(W, x, T, y, rb, re);
}

// ---------------------------------------------------------------------------------------------
// GGML block types (engine/common/ggml_quants.h), AVX2

// A row is taken in groups of up to kGroupValues values: one K-type super-block, or up to 8 blocks of a
// 32-value type. A column block of the prefill path starts at a multiple of kColBlock, a multiple of 256,
// so on a group boundary, and ends on one or at the row's end (a short last group of 32-value blocks).
constexpr int64_t kGroupValues = 256;
static_assert(kColBlock % kGroupValues == 0, "a prefill column block must start on a group boundary");

// One group decoded: value i = scale[i / S] · q[i] (+ offset[i / S] for the types with a min), S the
// type's sub-block (16 or 32 values). scale and offset are the reference's own f32 products, so
// scale · q + offset, each rounded, is dequantize_row's value bit for bit.
struct DecodedGroup {
  alignas(32) int8_t q[kGroupValues];
  alignas(32) float scale[16];
  alignas(32) float offset[16];
};

// The layout of each type: values and bytes per block, values per sub-block, whether values carry an
// offset, and where a block's int8 quants lie when they can be read in place (Q8_0: after its scale)
// rather than decoded (kQuantsAt < 0).
template <class Block, int64_t Values, int64_t Sub, bool Offset, int QuantsAt = -1>
struct BlockType {
  static constexpr int64_t kValues = Values, kSub = Sub;
  static constexpr size_t kBytes = sizeof(Block);
  static constexpr bool kOffset = Offset;
  static constexpr int kQuantsAt = QuantsAt;
};
struct Q4_0Type : BlockType<BlockQ4_0, 32, 32, false> {};
struct Q4_1Type : BlockType<BlockQ4_1, 32, 32, true> {};
struct Q5_0Type : BlockType<BlockQ5_0, 32, 32, false> {};
struct Q5_1Type : BlockType<BlockQ5_1, 32, 32, true> {};
struct Q8_0Type : BlockType<BlockQ8_0, 32, 32, false, offsetof(BlockQ8_0, qs)> {};
struct Q2_KType : BlockType<BlockQ2_K, 256, 16, true> {};
struct Q3_KType : BlockType<BlockQ3_K, 256, 16, false> {};
struct Q4_KType : BlockType<BlockQ4_K, 256, 32, true> {};
struct Q5_KType : BlockType<BlockQ5_K, 256, 32, true> {};
struct Q6_KType : BlockType<BlockQ6_K, 256, 16, false> {};
struct MXFP4_GGMLType : BlockType<BlockMXFP4_GGML, 32, 32, false> {};
struct IQ4_NLType : BlockType<BlockIQ4_NL, 32, 32, false> {};
struct IQ4_XSType : BlockType<BlockIQ4_XS, 256, 32, false> {};
// The IQ1–IQ3 types, from their decoders (ggml_decode.h): 256 values, x = scale · q, no offset.
template <class D>
struct IqType {
  static constexpr int64_t kValues = D::kValues, kSub = D::kSub;
  static constexpr size_t kBytes = D::kBytes;
  static constexpr bool kOffset = false;
  static constexpr int kQuantsAt = -1;
};
using IQ2_XXSType = IqType<ggml::IQ2_XXS>;
using IQ2_XSType = IqType<ggml::IQ2_XS>;
using IQ2_SType = IqType<ggml::IQ2_S>;
using IQ3_XXSType = IqType<ggml::IQ3_XXS>;
using IQ3_SType = IqType<ggml::IQ3_S>;
using IQ1_SType = IqType<ggml::IQ1_S>;
using IQ1_MType = IqType<ggml::IQ1_M>;

MOE_AVX2_INLINE float f16_field(const uint8_t h[2]) {
  uint16_t v;
  std::memcpy(&v, h, 2);
  return _cvtsh_ss(v);
}
MOE_AVX2_INLINE __m256i bytes32(int v) { return _mm256_set1_epi8(char(v)); }
MOE_AVX2_INLINE __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
MOE_AVX2_INLINE void store32(int8_t* p, __m256i v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
// 16-bit lane shifts (the masks that follow keep each byte's own bits).
MOE_AVX2_INLINE __m256i srl16(__m256i v, int n) { return _mm256_srl_epi16(v, _mm_cvtsi32_si128(n)); }
MOE_AVX2_INLINE __m256i sll16(__m256i v, int n) { return _mm256_sll_epi16(v, _mm_cvtsi32_si128(n)); }
// 8 bytes as 8 f32, unsigned or signed.
MOE_AVX2_INLINE __m256 u8x8_to_f32(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
MOE_AVX2_INLINE __m256 i8x8_to_f32(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// 0xFF in byte j where bit j of `bits` is set (32 bits → 32 bytes).
MOE_AVX2_INLINE __m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)),
                                             _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2,
                                                              2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}
// A 32-value block's 16 bytes of nibbles as its 32 quants in value order: low nibbles, then high ones.
MOE_AVX2_INLINE __m256i nibbles32(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)), m = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

// decode(type, blocks, n, g): the n blocks at `blocks` (n ≤ 8 for the 32-value types, 1 for the K
// types) into g. Offsets past the n sub-blocks of a short group are zero (the GEMV reads 8 at a time).
MOE_AVX2_INLINE void decode(Q4_0Type, const uint8_t* p, int64_t n, DecodedGroup& g) {
  for (int64_t b = 0; b < n; ++b) {
    const auto& blk = reinterpret_cast<const BlockQ4_0*>(p)[b];
    g.scale[b] = f16_field(blk.d);
    store32(g.q + 32 * b, _mm256_sub_epi8(nibbles32(blk.qs), bytes32(8)));
  }
}
MOE_AVX2_INLINE void decode(Q4_1Type, const uint8_t* p, int64_t n, DecodedGroup& g) {
  for (int64_t b = 0; b < n; ++b) {
    const auto& blk = reinterpret_cast<const BlockQ4_1*>(p)[b];
    g.scale[b] = f16_field(blk.d);
    g.offset[b] = f16_field(blk.m);
    store32(g.q + 32 * b, nibbles32(blk.qs));
  }
  for (int64_t b = n; b < 8; ++b) g.offset[b] = 0.0f;
}
// Q5_0/Q5_1: the nibbles with bit i of qh as value i's fifth bit.
MOE_AVX2_INLINE __m256i q5_quants(const uint8_t* qs, const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return _mm256_or_si256(nibbles32(qs), _mm256_and_si256(bits_to_bytes(bits), bytes32(16)));
}
MOE_AVX2_INLINE void decode(Q5_0Type, const uint8_t* p, int64_t n, DecodedGroup& g) {
  for (int64_t b = 0; b < n; ++b) {
    const auto& blk = reinterpret_cast<const BlockQ5_0*>(p)[b];
    g.scale[b] = f16_field(blk.d);
    store32(g.q + 32 * b, _mm256_sub_epi8(q5_quants(blk.qs, blk.qh), bytes32(16)));
  }
}
MOE_AVX2_INLINE void decode(Q5_1Type, const uint8_t* p, int64_t n, DecodedGroup& g) {
  for (int64_t b = 0; b < n; ++b) {
    const auto& blk = reinterpret_cast<const BlockQ5_1*>(p)[b];
    g.scale[b] = f16_field(blk.d);
    g.offset[b] = f16_field(blk.m);
    store32(g.q + 32 * b, q5_quants(blk.qs, blk.qh));
  }
  for (int64_t b = n; b < 8; ++b) g.offset[b] = 0.0f;
}
MOE_AVX2_INLINE void decode(Q8_0Type, const uint8_t* p, int64_t n, DecodedGroup& g) {
  for (int64_t b = 0; b < n; ++b) {
    const auto& blk = reinterpret_cast<const BlockQ8_0*>(p)[b];
    g.scale[b] = f16_field(blk.d);
    store32(g.q + 32 * b, load32(blk.qs));
  }
}
// Only the scales, for the GEMV that reads the quants in place.
MOE_AVX2_INLINE void decode_scales(Q8_0Type, const uint8_t* p, int64_t n, DecodedGroup& g) {
  for (int64_t b = 0; b < n; ++b) g.scale[b] = f16_field(reinterpret_cast<const BlockQ8_0*>(p)[b].d);
}
// Q2_K: value h·128 + s·32 + l is bits 2s, 2s+1 of qs[h·32 + l]; per 16 values a 4-bit scale and min.
MOE_AVX2_INLINE void decode(Q2_KType, const uint8_t* p, int64_t, DecodedGroup& g) {
  const auto& blk = *reinterpret_cast<const BlockQ2_K*>(p);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i q = load32(blk.qs + 32 * h);
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) store32(g.q + 128 * h + 32 * s, _mm256_and_si256(srl16(q, 2 * s), bytes32(3)));
  }
  const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)), m = _mm_set1_epi8(15);
  alignas(16) uint8_t sc[16], mins[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(sc), _mm_and_si128(sm, m));
  _mm_store_si128(reinterpret_cast<__m128i*>(mins), _mm_and_si128(_mm_srli_epi16(sm, 4), m));
  const __m256 d = _mm256_set1_ps(f16_field(blk.d)), neg_dmin = _mm256_set1_ps(-f16_field(blk.dmin));
#pragma GCC unroll 2
  for (int i = 0; i < 16; i += 8) {
    _mm256_store_ps(g.scale + i, _mm256_mul_ps(d, u8x8_to_f32(sc + i)));
    _mm256_store_ps(g.offset + i, _mm256_mul_ps(neg_dmin, u8x8_to_f32(mins + i)));
  }
}
// Q3_K: Q2_K's low bits; minus 4 where bit v/32 of hmask[l] is clear; 16 signed 6-bit scales.
MOE_AVX2_INLINE void decode(Q3_KType, const uint8_t* p, int64_t, DecodedGroup& g) {
  const auto& blk = *reinterpret_cast<const BlockQ3_K*>(p);
  const __m256i hmask = load32(blk.hmask), zero = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i q = load32(blk.qs + 32 * h);
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
      const __m256i low = _mm256_and_si256(srl16(q, 2 * s), bytes32(3));
      const __m256i clear = _mm256_cmpeq_epi8(_mm256_and_si256(hmask, bytes32(1 << (4 * h + s))), zero);
      store32(g.q + 128 * h + 32 * s, _mm256_sub_epi8(low, _mm256_and_si256(clear, bytes32(4))));
    }
  }
  const float d = f16_field(blk.d);
  for (int i = 0; i < 16; ++i) g.scale[i] = d * float(q3_k_scale(blk.scales, i));
}
// Q4_K/Q5_K's 8 scales and mins times d and −dmin. k_scales_mins, four bytes at a time in the words
// w0 (bytes 0–3), w1 (4–7), w2 (8–11): scales 0–3 are w0's low 6 bits, mins 0–3 w1's; scales 4–7 are
// w2's low nibbles with w0's top 2 bits above them, mins 4–7 w2's high nibbles with w1's top 2 bits.
// (In registers: eight byte stores read back as one 8-byte load would stall store forwarding.)
MOE_AVX2_INLINE __m256 u8x8_to_f32(uint64_t v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi64x(0, int64_t(v))));
}
MOE_AVX2_INLINE void k_scales(const uint8_t packed[12], const uint8_t d16[2], const uint8_t dmin16[2], DecodedGroup& g) {
  uint32_t w[3];
  std::memcpy(w, packed, 12);
  const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x30303030u;
  const uint64_t sc = (w[0] & low6) | uint64_t((w[2] & low4) | ((w[0] >> 2) & top2)) << 32;
  const uint64_t m = (w[1] & low6) | uint64_t(((w[2] >> 4) & low4) | ((w[1] >> 2) & top2)) << 32;
  _mm256_store_ps(g.scale, _mm256_mul_ps(_mm256_set1_ps(f16_field(d16)), u8x8_to_f32(sc)));
  _mm256_store_ps(g.offset, _mm256_mul_ps(_mm256_set1_ps(-f16_field(dmin16)), u8x8_to_f32(m)));
}
// Q4_K: sub-blocks 2c and 2c + 1 are the low and high nibbles of qs[32c .. 32c + 32).
MOE_AVX2_INLINE void decode(Q4_KType, const uint8_t* p, int64_t, DecodedGroup& g) {
  const auto& blk = *reinterpret_cast<const BlockQ4_K*>(p);
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m256i q = load32(blk.qs + 32 * c);
    store32(g.q + 64 * c, _mm256_and_si256(q, bytes32(15)));
    store32(g.q + 64 * c + 32, _mm256_and_si256(srl16(q, 4), bytes32(15)));
  }
  k_scales(blk.scales, blk.d, blk.dmin, g);
}
// 16 in each byte of qh whose bit j is set.
MOE_AVX2_INLINE __m256i bit_as_16(__m256i qh, int j) {
  const __m256i bit = bytes32(1 << j);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), bytes32(16));
}
// Q5_K: Q4_K's nibbles, with bit j of qh[l] as the fifth bit of value 32j + l.
MOE_AVX2_INLINE void decode(Q5_KType, const uint8_t* p, int64_t, DecodedGroup& g) {
  const auto& blk = *reinterpret_cast<const BlockQ5_K*>(p);
  const __m256i qh = load32(blk.qh);
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m256i q = load32(blk.qs + 32 * c);
    store32(g.q + 64 * c, _mm256_or_si256(_mm256_and_si256(q, bytes32(15)), bit_as_16(qh, 2 * c)));
    store32(g.q + 64 * c + 32, _mm256_or_si256(_mm256_and_si256(srl16(q, 4), bytes32(15)), bit_as_16(qh, 2 * c + 1)));
  }
  k_scales(blk.scales, blk.d, blk.dmin, g);
}
// Q6_K: per half h, values 32s + l (s < 4) from the nibbles of ql[64h + l] (s = 0, 2) and
// ql[64h + 32 + l] (s = 1, 3), with bits 2s, 2s+1 of qh[32h + l] above them; minus 32.
MOE_AVX2_INLINE void decode(Q6_KType, const uint8_t* p, int64_t, DecodedGroup& g) {
  const auto& blk = *reinterpret_cast<const BlockQ6_K*>(p);
  const __m256i m4 = bytes32(15), top = bytes32(0x30), k32 = bytes32(32);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i a = load32(blk.ql + 64 * h), b = load32(blk.ql + 64 * h + 32), hi = load32(blk.qh + 32 * h);
    int8_t* out = g.q + 128 * h;
    store32(out, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(sll16(hi, 4), top)), k32));
    store32(out + 32, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(b, m4), _mm256_and_si256(sll16(hi, 2), top)), k32));
    store32(out + 64, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(srl16(a, 4), m4), _mm256_and_si256(hi, top)), k32));
    store32(out + 96, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(srl16(b, 4), m4), _mm256_and_si256(srl16(hi, 2), top)), k32));
  }
  const __m256 d = _mm256_set1_ps(f16_field(blk.d));
  _mm256_store_ps(g.scale, _mm256_mul_ps(d, i8x8_to_f32(blk.scales)));
  _mm256_store_ps(g.scale + 8, _mm256_mul_ps(d, i8x8_to_f32(blk.scales + 8)));
}

// MXFP4_GGML: the nibbles in value order (as Q4_0's), each looked up as twice its FP4 value (the 16-byte
// kFp4TwiceValues in both lanes of a pshufb); the E8M0 byte as the f32 2^(e − 128), never through f16.
MOE_AVX2_INLINE void decode(MXFP4_GGMLType, const uint8_t* p, int64_t n, DecodedGroup& g) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kFp4TwiceValues)));
  for (int64_t b = 0; b < n; ++b) {
    const auto& blk = reinterpret_cast<const BlockMXFP4_GGML*>(p)[b];
    g.scale[b] = mxfp4_half_scale(blk.e);
    store32(g.q + 32 * b, _mm256_shuffle_epi8(table, nibbles32(blk.qs)));
  }
}

// IQ4_NL and IQ4_XS: the 16 table values (kIq4NlValues) in both lanes, for a pshufb per 32 nibbles.
MOE_AVX2_INLINE __m256i iq4_table() {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4NlValues)));
}
// IQ4_NL: the nibbles in value order (as Q4_0's), each through the table; d its f16 scale.
MOE_AVX2_INLINE void decode(IQ4_NLType, const uint8_t* p, int64_t n, DecodedGroup& g) {
  const __m256i table = iq4_table();
  for (int64_t b = 0; b < n; ++b) {
    const auto& blk = reinterpret_cast<const BlockIQ4_NL*>(p)[b];
    g.scale[b] = f16_field(blk.d);
    store32(g.q + 32 * b, _mm256_shuffle_epi8(table, nibbles32(blk.qs)));
  }
}
// IQ4_XS's 8 sub-block scales d·(ls − 32), as iq4_xs_scale assembles ls: lane j takes nibble j of
// scales_l (a u32) and bits 2j, 2j + 1 of scales_h (a u16) above it.
MOE_AVX2_INLINE __m256 iq4_xs_scales(const BlockIQ4_XS& blk) {
  uint32_t low;
  uint16_t high;
  std::memcpy(&low, blk.scales_l, 4);
  std::memcpy(&high, blk.scales_h, 2);
  const __m256i nibble_j = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i pair_j = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(low)), nibble_j), _mm256_set1_epi32(15));
  const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(high), pair_j), _mm256_set1_epi32(3));
  const __m256i ls = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 4));
  const __m256 signed_ls = _mm256_cvtepi32_ps(_mm256_sub_epi32(ls, _mm256_set1_epi32(32)));
  return _mm256_mul_ps(_mm256_set1_ps(f16_field(blk.d)), signed_ls);
}
// IQ4_XS: sub-block j is an IQ4_NL block's nibbles at qs + 16j.
MOE_AVX2_INLINE void decode(IQ4_XSType, const uint8_t* p, int64_t, DecodedGroup& g) {
  const auto& blk = *reinterpret_cast<const BlockIQ4_XS*>(p);
  const __m256i table = iq4_table();
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) store32(g.q + 32 * j, _mm256_shuffle_epi8(table, nibbles32(blk.qs + 16 * j)));
  _mm256_store_ps(g.scale, iq4_xs_scales(blk));
}

// The IQ types' codebooks with each row's entries as bytes (row i of an 8-entry book in u64 i, entry j in
// byte j; a 4-entry IQ3 book in the low 4 bytes), so a row is one load: IQ2's and IQ3's magnitudes, and
// IQ1's 8g (−8, 0 or 8, as int8), to which δ (±1) is added. Made at compile time from ggml_decode.h's.
template <size_t N>
constexpr std::array<uint64_t, N> codebook_bytes(const uint16_t (&rows)[N], int entries, int k, uint64_t values) {
  std::array<uint64_t, N> out{};
  for (size_t i = 0; i < N; ++i)
    for (int j = 0; j < entries; ++j) out[i] |= uint64_t(ggml::iq::value(rows[i], j, k, values)) << (8 * j);
  return out;
}
constexpr int kIq1EightG[] = {8 * ggml::iq::kIq1List[0], 8 * ggml::iq::kIq1List[1], 8 * ggml::iq::kIq1List[2]};
constexpr auto kIq2XxsBytes = codebook_bytes(ggml::kIq2XxsGrid, 8, 2, ggml::iq::kIq2Values);
constexpr auto kIq2XsBytes = codebook_bytes(ggml::kIq2XsGrid, 8, 2, ggml::iq::kIq2Values);
constexpr auto kIq2SBytes = codebook_bytes(ggml::kIq2SGrid, 8, 2, ggml::iq::kIq2Values);
constexpr auto kIq3XxsBytes = codebook_bytes(ggml::kIq3XxsGrid, 4, 3, ggml::iq::kIq3XxsValues);
constexpr auto kIq3SBytes = codebook_bytes(ggml::kIq3SGrid, 4, 3, ggml::iq::kIq3SValues);
constexpr auto kIq1Bytes = codebook_bytes(ggml::kIq1SGrid, 8, 2, ggml::iq::pack_values(kIq1EightG));

// Bytes negated where the mask byte is 0xFF (two's complement: (v ^ m) − m).
MOE_AVX2_INLINE __m256i negated_where(__m256i v, __m256i m) { return _mm256_sub_epi8(_mm256_xor_si256(v, m), m); }
// 32 quants from four 8-entry rows (u64 each) or eight 4-entry rows (u32 each), negated where the
// corresponding bit of `signs` is set.
MOE_AVX2_INLINE __m256i signed_rows(__m256i magnitudes, uint32_t signs) {
  return negated_where(magnitudes, bits_to_bytes(signs));
}
MOE_AVX2_INLINE __m256i rows8(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  return _mm256_setr_epi64x(int64_t(a), int64_t(b), int64_t(c), int64_t(d));
}
// Every sub-block's scale, as the shared decoder forms it from d (converted by F16C: exact, as the
// decoder's own conversion).
template <class D>
MOE_AVX2_INLINE void iq_scales(const uint8_t* p, DecodedGroup& g) {
  const float d = _cvtsh_ss(D::d_bits(p));
  for (int s = 0; s < D::kValues / D::kSub; ++s) g.scale[s] = D::scale(d, p, s);
}
// The 8 signs that 7 stored bits stand for (ggml::iq::signs7) as a byte mask, 0xFF where negative.
constexpr std::array<uint64_t, 128> sign_masks() {
  std::array<uint64_t, 128> out{};
  for (uint32_t i = 0; i < 128; ++i)
    for (int j = 0; j < 8; ++j)
      if ((ggml::iq::signs7(i) >> j) & 1) out[i] |= uint64_t(0xff) << (8 * j);
  return out;
}
constexpr auto kSignMasks = sign_masks();
// Four 8-entry rows (u64 each) negated by four 7-bit sign fields (bits 7k … of w).
MOE_AVX2_INLINE __m256i signed_rows7(__m256i magnitudes, uint32_t w) {
  return negated_where(magnitudes, rows8(kSignMasks[w & 127], kSignMasks[(w >> 7) & 127], kSignMasks[(w >> 14) & 127],
                                         kSignMasks[(w >> 21) & 127]));
}

MOE_AVX2_INLINE void decode(IQ2_XXSType, const uint8_t* p, int64_t, DecodedGroup& g) {
  for (int c = 0; c < 8; ++c) {
    const uint8_t* s = p + 2 + 8 * c;
    const __m256i v = rows8(kIq2XxsBytes[s[0]], kIq2XxsBytes[s[1]], kIq2XxsBytes[s[2]], kIq2XxsBytes[s[3]]);
    store32(g.q + 32 * c, signed_rows7(v, ggml::iq::u32_at(s + 4)));
  }
  iq_scales<ggml::IQ2_XXS>(p, g);
}
MOE_AVX2_INLINE void decode(IQ2_XSType, const uint8_t* p, int64_t, DecodedGroup& g) {
  uint16_t w[32];
  std::memcpy(w, p + 2, 64);
  for (int c = 0; c < 8; ++c) {
    const uint16_t* s = w + 4 * c;
    const __m256i v = rows8(kIq2XsBytes[s[0] & 511], kIq2XsBytes[s[1] & 511], kIq2XsBytes[s[2] & 511], kIq2XsBytes[s[3] & 511]);
    const uint32_t signs = uint32_t(s[0] >> 9) | uint32_t(s[1] >> 9) << 7 | uint32_t(s[2] >> 9) << 14 | uint32_t(s[3] >> 9) << 21;
    store32(g.q + 32 * c, signed_rows7(v, signs));
  }
  iq_scales<ggml::IQ2_XS>(p, g);
}
MOE_AVX2_INLINE void decode(IQ2_SType, const uint8_t* p, int64_t, DecodedGroup& g) {
  for (int c = 0; c < 8; ++c) {
    const uint8_t *qs = p + 2 + 4 * c, h = p[66 + c];
    const __m256i v = rows8(kIq2SBytes[qs[0] | (h & 3) << 8], kIq2SBytes[qs[1] | (h >> 2 & 3) << 8],
                            kIq2SBytes[qs[2] | (h >> 4 & 3) << 8], kIq2SBytes[qs[3] | (h >> 6) << 8]);
    store32(g.q + 32 * c, signed_rows(v, ggml::iq::u32_at(p + 34 + 4 * c)));
  }
  iq_scales<ggml::IQ2_S>(p, g);
}
MOE_AVX2_INLINE void decode(IQ3_XXSType, const uint8_t* p, int64_t, DecodedGroup& g) {
  for (int c = 0; c < 8; ++c) {
    const uint8_t* qs = p + 2 + 8 * c;
    const auto row = [&](int i) { return int(kIq3XxsBytes[qs[i]]); };
    const __m256i v = _mm256_setr_epi32(row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7));
    store32(g.q + 32 * c, signed_rows7(v, ggml::iq::u32_at(p + 66 + 4 * c)));
  }
  iq_scales<ggml::IQ3_XXS>(p, g);
}
MOE_AVX2_INLINE void decode(IQ3_SType, const uint8_t* p, int64_t, DecodedGroup& g) {
  for (int c = 0; c < 8; ++c) {
    const uint8_t *qs = p + 2 + 8 * c, h = p[66 + c];
    const auto row = [&](int i) { return int(kIq3SBytes[qs[i] | (h >> i & 1) << 8]); };
    const __m256i v = _mm256_setr_epi32(row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7));
    store32(g.q + 32 * c, signed_rows(v, ggml::iq::u32_at(p + 74 + 4 * c)));
  }
  iq_scales<ggml::IQ3_S>(p, g);
}
// IQ1: 8g from the table, plus δ (a byte of +1 or −1 in every lane of its group).
MOE_AVX2_INLINE uint64_t delta_bytes(bool minus) { return minus ? ~uint64_t(0) : 0x0101010101010101ull; }
MOE_AVX2_INLINE void decode(IQ1_SType, const uint8_t* p, int64_t, DecodedGroup& g) {
  for (int c = 0; c < 8; ++c) {
    const uint8_t* qs = p + 2 + 4 * c;
    const uint32_t h = ggml::iq::u16_at(p + 34 + 2 * c);
    const __m256i v = rows8(kIq1Bytes[qs[0] | (h & 7) << 8], kIq1Bytes[qs[1] | (h >> 3 & 7) << 8],
                            kIq1Bytes[qs[2] | (h >> 6 & 7) << 8], kIq1Bytes[qs[3] | (h >> 9 & 7) << 8]);
    store32(g.q + 32 * c, _mm256_add_epi8(v, _mm256_set1_epi8(h & 0x8000u ? -1 : 1)));
  }
  iq_scales<ggml::IQ1_S>(p, g);
}
MOE_AVX2_INLINE void decode(IQ1_MType, const uint8_t* p, int64_t, DecodedGroup& g) {
  for (int c = 0; c < 8; ++c) {
    const uint8_t *qs = p + 4 * c, h0 = p[32 + 2 * c], h1 = p[33 + 2 * c];
    const __m256i v = rows8(kIq1Bytes[qs[0] | (h0 & 7) << 8], kIq1Bytes[qs[1] | (h0 >> 4 & 7) << 8],
                            kIq1Bytes[qs[2] | (h1 & 7) << 8], kIq1Bytes[qs[3] | (h1 >> 4 & 7) << 8]);
    const __m256i delta = rows8(delta_bytes(h0 & 8), delta_bytes(h0 & 0x80), delta_bytes(h1 & 8), delta_bytes(h1 & 0x80));
    store32(g.q + 32 * c, _mm256_add_epi8(v, delta));
  }
  iq_scales<ggml::IQ1_M>(p, g);
}

// dst[0..n) = the n values of a row's blocks at p (n a multiple of the block), as dequantize_row gives
// them: scale · q, then + offset, each rounded (no fused multiply-add).
template <class B>
MOE_AVX2 void expand_blocks(const uint8_t* p, int64_t n, float* dst) {
  constexpr int64_t S = B::kSub;
  DecodedGroup g;
  for (int64_t v0 = 0; v0 < n; v0 += kGroupValues) {
    const int64_t nv = std::min(kGroupValues, n - v0);
    decode(B{}, p + size_t(v0 / B::kValues) * B::kBytes, nv / B::kValues, g);
    for (int64_t s = 0; s < nv / S; ++s) {
      const __m256 scale = _mm256_broadcast_ss(&g.scale[s]);
#pragma GCC unroll 4
      for (int64_t i = 0; i < S; i += 8) {
        __m256 v = _mm256_mul_ps(i8x8_to_f32(g.q + s * S + i), scale);
        if constexpr (B::kOffset) v = _mm256_add_ps(v, _mm256_broadcast_ss(&g.offset[s]));
        _mm256_storeu_ps(dst + v0 + s * S + i, v);
      }
    }
  }
}

// y_i = row_i · x for R rows of a block type (T = 1), the rows taken as in gemv_rows. Per sub-block the
// quants' products with x are summed, then scaled once; the offsets' part is Σ offset · xsum, xsum[s]
// being Σ x over sub-block s (read 8 at a time: xsum is padded with 8 zeros).
template <class B, int R>
MOE_AVX2 void gemv_block_rows(const uint8_t* const* rows, const float* x, const float* xsum, int64_t n, float* const* y) {
  constexpr int64_t S = B::kSub;
  __m256 acc[R], off[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = off[r] = _mm256_setzero_ps();
  DecodedGroup g[R];
  for (int64_t v0 = 0; v0 < n; v0 += kGroupValues) {
    const int64_t nv = std::min(kGroupValues, n - v0);
    const size_t at = size_t(v0 / B::kValues) * B::kBytes, bytes = size_t(nv / B::kValues) * B::kBytes;
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      for (size_t o = 0; o < bytes; o += 64)
        _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(rows[r] + at + o) + 4 * kPrefetchDistance),
                     _MM_HINT_T0);
      if constexpr (B::kQuantsAt >= 0) decode_scales(B{}, rows[r] + at, nv / B::kValues, g[r]);
      else decode(B{}, rows[r] + at, nv / B::kValues, g[r]);
    }
    for (int64_t s = 0; s < nv / S; ++s) {
      __m256 xv[S / 8];
#pragma GCC unroll 4
      for (int64_t i = 0; i < S / 8; ++i) xv[i] = _mm256_loadu_ps(x + v0 + s * S + 8 * i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const int8_t* q;
        if constexpr (B::kQuantsAt >= 0)  // one sub-block per block
          q = reinterpret_cast<const int8_t*>(rows[r] + at + size_t(s) * B::kBytes + B::kQuantsAt);
        else
          q = g[r].q + s * S;
        __m256 p = _mm256_mul_ps(i8x8_to_f32(q), xv[0]);
#pragma GCC unroll 4
        for (int64_t i = 1; i < S / 8; ++i) p = _mm256_fmadd_ps(i8x8_to_f32(q + 8 * i), xv[i], p);
        acc[r] = _mm256_fmadd_ps(p, _mm256_broadcast_ss(&g[r].scale[s]), acc[r]);
      }
    }
    if constexpr (B::kOffset) {
      for (int64_t s = 0; s < nv / S; s += 8) {
        const __m256 xs = _mm256_loadu_ps(xsum + v0 / S + s);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) off[r] = _mm256_fmadd_ps(_mm256_load_ps(g[r].offset + s), xs, off[r]);
      }
    }
  }
  store_row_sums<R>(acc, off, y);
}

// MXFP4_GGML at T = 1: each block decoded in registers, as the MXFP4 GEMV does (its codes through the
// table, to f32), its Σ code · x formed and scaled once. x needs no split: a block's low nibbles are its
// values 0–15 and its high nibbles 16–31, in order.
template <int R>
MOE_AVX2 void gemv_mxfp4_ggml_rows(const uint8_t* const* rows, const float* x, int64_t n, float* const* y) {
  constexpr int64_t kBytes = sizeof(BlockMXFP4_GGML);
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kFp4TwiceValues)), low4 = _mm_set1_epi8(15);
  __m256 a0[R], a1[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + 32 * b;
    const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
    const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* block = rows[r] + b * kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(block) + kPrefetchDistance), _MM_HINT_T0);
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + offsetof(BlockMXFP4_GGML, qs)));
      __m256 w[4];
      int8_to_f32(_mm_shuffle_epi8(table, _mm_and_si128(q, low4)), w);                       // values 0–15
      int8_to_f32(_mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), low4)), w + 2);  // values 16–31
      const __m256 s = _mm256_set1_ps(mxfp4_half_scale(block[offsetof(BlockMXFP4_GGML, e)]));
      a0[r] = _mm256_fmadd_ps(_mm256_fmadd_ps(w[1], x1, _mm256_mul_ps(w[0], x0)), s, a0[r]);
      a1[r] = _mm256_fmadd_ps(_mm256_fmadd_ps(w[3], x3, _mm256_mul_ps(w[2], x2)), s, a1[r]);
    }
  }
  store_row_sums<R>(a0, a1, y);
}

// The T = 1 kernel of a type: gemv_block_rows, or MXFP4_GGML's own.
template <class B, int R>
MOE_AVX2 void gemv_rows_of(const uint8_t* const* rows, const float* x, const float* xsum, int64_t n, float* const* y) {
  if constexpr (std::is_same_v<B, MXFP4_GGMLType>) gemv_mxfp4_ggml_rows<R>(rows, x, n, y);
  else gemv_block_rows<B, R>(rows, x, xsum, n, y);
}

// Σ x over each sub-block of S values, for each of T tokens: token t's sums at [t · ld, t · ld + cols / S), ld =
// cols / S + 8, each run followed by 8 zeros (the kernels read them 8 at a time). Taken once per call.
template <int64_t S>
MOE_AVX2 const float* sub_block_sums(const float* x, int64_t T, int64_t cols, int64_t& ld) {
  thread_local std::vector<float> sums;
  const int64_t subs = cols / S;
  ld = subs + 8;
  sums.assign(size_t(T * ld), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t s = 0; s < subs; ++s) {
      const float* xs = x + t * cols + s * S;
      __m256 v = _mm256_loadu_ps(xs);
      for (int64_t i = 8; i < S; i += 8) v = _mm256_add_ps(v, _mm256_loadu_ps(xs + i));
      sums[size_t(t * ld + s)] = hsum(v);
    }
  return sums.data();
}

// y[t · ldy] = row · x_t for one row of a block type and TT tokens, x_t = x + t · n (xsum_t = xsum + t · ldxs, as
// sub_block_sums gives them): each group is decoded once for all TT tokens, each weight scaled once (scale · q,
// rounded as expand_blocks rounds it) and multiplied with every token's x; the offsets' part is Σ offset · xsum, as
// in gemv_block_rows. This is the few-token product of prefill's experts, where widening the rows to f32 panels
// first (prefill_panels) costs more than the products. Each token keeps kTokenChains sums.
template <class B, int TT>
MOE_AVX2 void gemm_block_row(const uint8_t* row, const float* x, const float* xsum, int64_t ldxs, int64_t n, float* y,
                             int64_t ldy) {
  constexpr int64_t S = B::kSub;
  constexpr int kChains = kTokenChains<TT>;
  __m256 a[TT][kChains];
  zero_token_sums(a);
  DecodedGroup g;
  for (int64_t v0 = 0; v0 < n; v0 += kGroupValues) {
    const int64_t nv = std::min(kGroupValues, n - v0);
    const size_t at = size_t(v0 / B::kValues) * B::kBytes, bytes = size_t(nv / B::kValues) * B::kBytes;
    for (size_t o = 0; o < bytes; o += 64)
      _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(row + at + o) + 4 * kPrefetchDistance),
                   _MM_HINT_T0);
    if constexpr (B::kQuantsAt >= 0) decode_scales(B{}, row + at, nv / B::kValues, g);
    else decode(B{}, row + at, nv / B::kValues, g);
    for (int64_t k0 = 0; k0 < nv; k0 += 32) {  // every type's blocks and sub-blocks divide 32 values or are made of them
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const int64_t k = k0 + 8 * j;
        const int8_t* q;
        if constexpr (B::kQuantsAt >= 0)  // read in place: one sub-block per block
          q = reinterpret_cast<const int8_t*>(row + at + size_t(k / B::kValues) * B::kBytes + B::kQuantsAt) + k % B::kValues;
        else
          q = g.q + k;
        fma_tokens(a, _mm256_mul_ps(i8x8_to_f32(q), _mm256_broadcast_ss(&g.scale[k / S])), x + v0 + k, n, j % kChains);
      }
    }
    if constexpr (B::kOffset) {
      for (int64_t s = 0; s < nv / S; s += 8) fma_tokens(a, _mm256_load_ps(g.offset + s), xsum + v0 / S + s, ldxs, 0);
    }
  }
  store_token_sums(a, y, ldy);
}

// Up to how many tokens gemm_block_row beats the panels, per type (matmul_bench --tokens, BENCHMARKS.md). At 10
// tokens the sums spill to the stack (half the speed of 9, in every type tried). At 9, Q2_K, Q6_K, IQ2_XXS and IQ2_S
// measured 0.90 to 0.98 times the panels' speed; at 6 and 8 Q3_K, IQ1_S and IQ2_XS 0.80 to 0.99 (Q3_K's decoding
// holds more registers, so its sums spill sooner), IQ1_M at 8 tokens 0.96 and 0.99 (1 and 2 threads).
template <class B>
constexpr int64_t block_direct_max_tokens() {
  if constexpr (std::is_same_v<B, Q3_KType> || std::is_same_v<B, IQ1_SType> || std::is_same_v<B, IQ2_XSType>) return 4;
  else if constexpr (std::is_same_v<B, IQ1_MType>) return 6;
  else if constexpr (std::is_same_v<B, Q2_KType> || std::is_same_v<B, Q6_KType> || std::is_same_v<B, IQ2_XXSType> ||
                     std::is_same_v<B, IQ2_SType>)
    return 8;
  else return kBlockDirectMaxT;
}

// Up to how many tokens gemm_block_row, run over each row once per half of the tokens (10 = 5 + 5, 11 = 6 + 5), beats
// the panels: each row is then decoded twice, which for these seven types costs less than widening it to f32 panels.
// At 10 and 12 tokens they measured 1.0 to 1.4 times the panels' speed, about 1 at 16 (two runs of 8), less from 24.
// The other types measured 0.8 to 1.05 from 10 tokens (matmul_bench --tokens, BENCHMARKS.md).
template <class B>
constexpr int64_t block_runs_max_tokens() {
  if constexpr (std::is_same_v<B, Q4_0Type> || std::is_same_v<B, Q5_0Type> || std::is_same_v<B, Q8_0Type> ||
                std::is_same_v<B, Q4_KType> || std::is_same_v<B, Q5_KType> || std::is_same_v<B, IQ4_NLType> ||
                std::is_same_v<B, IQ4_XSType>)
    return kBlockRunsMaxT;
  else return block_direct_max_tokens<B>();
}

template <class B>
MOE_AVX2 void matmul_rows_blocks_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  const auto* base = static_cast<const uint8_t*>(W.data);
  const size_t stride = size_t(W.cols / B::kValues) * B::kBytes;
  const float* xsum = nullptr;
  int64_t ldxs = 0;
  constexpr int64_t kMaxT = block_direct_max_tokens<B>(), kRunsMaxT = block_runs_max_tokens<B>();
  if constexpr (B::kOffset)
    if (T <= kRunsMaxT) xsum = sub_block_sums<B::kSub>(x, T, W.cols, ldxs);
  if (T == 1) {
    four_streams(rb, re, [&](const int64_t* rows, int n) {  // as matmul_rows_avx2
      const uint8_t* rp[4];
      float* yp[4];
      for (int j = 0; j < n; ++j) rp[j] = base + size_t(rows[j]) * stride, yp[j] = y + rows[j];
      switch (n) {
        case 4: gemv_rows_of<B, 4>(rp, x, xsum, W.cols, yp); break;
        case 3: gemv_rows_of<B, 3>(rp, x, xsum, W.cols, yp); break;
        case 2: gemv_rows_of<B, 2>(rp, x, xsum, W.cols, yp); break;
        default: gemv_rows_of<B, 1>(rp, x, xsum, W.cols, yp); break;
      }
    });
    return;
  }
  if (T <= kRunsMaxT) {
    const int64_t n = W.cols, ldy = W.rows;  // n: a multiple of 32 values, so every token's copy starts on a line
    const float* xa = line_aligned_copy(x, T * n);
    rows_by_token_runs<kMaxT>(T, rb, re, [&](int64_t r, int64_t t0, auto tt) {
      gemm_block_row<B, tt>(base + size_t(r) * stride, xa + t0 * n, xsum + t0 * ldxs, ldxs, n, y + t0 * ldy + r, ldy);
    });
    return;
  }
  // More tokens: expanded panels, as prefill (column blocks start on a group boundary: kGroupValues).
  prefill_panels(W, x, T, y, rb, re, [base, stride](int64_t r, int64_t k0, int64_t kc, float* dst) {
    expand_blocks<B>(base + size_t(r) * stride + size_t(k0 / B::kValues) * B::kBytes, kc, dst);
  });
}

MOE_AVX2 void matmul_rows_ggml_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  switch (W.dtype) {
    case DType::Q4_0: matmul_rows_blocks_avx2<Q4_0Type>(W, x, T, y, rb, re); break;
    case DType::Q4_1: matmul_rows_blocks_avx2<Q4_1Type>(W, x, T, y, rb, re); break;
    case DType::Q5_0: matmul_rows_blocks_avx2<Q5_0Type>(W, x, T, y, rb, re); break;
    case DType::Q5_1: matmul_rows_blocks_avx2<Q5_1Type>(W, x, T, y, rb, re); break;
    case DType::Q8_0: matmul_rows_blocks_avx2<Q8_0Type>(W, x, T, y, rb, re); break;
    case DType::Q2_K: matmul_rows_blocks_avx2<Q2_KType>(W, x, T, y, rb, re); break;
    case DType::Q3_K: matmul_rows_blocks_avx2<Q3_KType>(W, x, T, y, rb, re); break;
    case DType::Q4_K: matmul_rows_blocks_avx2<Q4_KType>(W, x, T, y, rb, re); break;
    case DType::Q5_K: matmul_rows_blocks_avx2<Q5_KType>(W, x, T, y, rb, re); break;
    case DType::Q6_K: matmul_rows_blocks_avx2<Q6_KType>(W, x, T, y, rb, re); break;
    case DType::MXFP4_GGML: matmul_rows_blocks_avx2<MXFP4_GGMLType>(W, x, T, y, rb, re); break;
    case DType::IQ4_NL: matmul_rows_blocks_avx2<IQ4_NLType>(W, x, T, y, rb, re); break;
    case DType::IQ4_XS: matmul_rows_blocks_avx2<IQ4_XSType>(W, x, T, y, rb, re); break;
    case DType::IQ2_XXS: matmul_rows_blocks_avx2<IQ2_XXSType>(W, x, T, y, rb, re); break;
    case DType::IQ2_XS: matmul_rows_blocks_avx2<IQ2_XSType>(W, x, T, y, rb, re); break;
    case DType::IQ2_S: matmul_rows_blocks_avx2<IQ2_SType>(W, x, T, y, rb, re); break;
    case DType::IQ3_XXS: matmul_rows_blocks_avx2<IQ3_XXSType>(W, x, T, y, rb, re); break;
    case DType::IQ3_S: matmul_rows_blocks_avx2<IQ3_SType>(W, x, T, y, rb, re); break;
    case DType::IQ1_S: matmul_rows_blocks_avx2<IQ1_SType>(W, x, T, y, rb, re); break;
    case DType::IQ1_M: matmul_rows_blocks_avx2<IQ1_MType>(W, x, T, y, rb, re); break;
    default: matmul_rows_ggml_scalar(W, x, T, y, rb, re); break;  // (every block type has a case above)
  }
}

MOE_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

MOE_AVX2 void axpy_avx2(float s, const float* x, float* y, int64_t n) {
  const __m256 sv = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(sv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(sv, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(sv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += s * x[i];
}

// Four double accumulators of 4 lanes, 16 floats per iteration: the products of two floats are exact
// in double, so only the order of the additions differs from dot_f64_scalar.
MOE_AVX2 double dot_f64_avx2(const float* a, const float* b, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), s2 = _mm256_setzero_pd(), s3 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a0 = _mm256_loadu_ps(a + i), b0 = _mm256_loadu_ps(b + i);
    const __m256 a1 = _mm256_loadu_ps(a + i + 8), b1 = _mm256_loadu_ps(b + i + 8);
    s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a0)), _mm256_cvtps_pd(_mm256_castps256_ps128(b0)), s0);
    s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a0, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(b0, 1)), s1);
    s2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a1)), _mm256_cvtps_pd(_mm256_castps256_ps128(b1)), s2);
    s3 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a1, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(b1, 1)), s3);
  }
  for (; i + 4 <= n; i += 4) s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i)), _mm256_cvtps_pd(_mm_loadu_ps(b + i)), s0);
  const __m256d s = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  double r = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  for (; i < n; ++i) r += double(a[i]) * double(b[i]);
  return r;
}

// Sorting 8 floats in one register (a bitonic network): each stage pairs every lane with the lane
// `partner` puts beside it, and keeps the smaller of the two or, where `take_max` has its bit, the
// larger. Values are only moved, never changed.
template <int take_max>
MOE_AVX2_INLINE __m256 exchange(__m256 v, __m256 partner) {
  return _mm256_blend_ps(_mm256_min_ps(v, partner), _mm256_max_ps(v, partner), take_max);
}
MOE_AVX2_INLINE __m256 swap1(__m256 v) { return _mm256_permute_ps(v, 0xB1); }              // lane i ↔ i^1
MOE_AVX2_INLINE __m256 swap2(__m256 v) { return _mm256_permute_ps(v, 0x4E); }              // lane i ↔ i^2
MOE_AVX2_INLINE __m256 swap4(__m256 v) { return _mm256_permute2f128_ps(v, v, 0x01); }      // lane i ↔ i^4

// A bitonic sequence (ascending then descending, or the reverse) → ascending.
MOE_AVX2_INLINE __m256 bitonic_merge8(__m256 v) {
  v = exchange<0xF0>(v, swap4(v));
  v = exchange<0xCC>(v, swap2(v));
  return exchange<0xAA>(v, swap1(v));
}

// Any 8 values → ascending.
MOE_AVX2_INLINE __m256 sort8(__m256 v) {
  v = exchange<0x66>(v, swap1(v));  // pairs: ascending, descending, ascending, descending
  v = exchange<0x3C>(v, swap2(v));  // runs of 4: ascending, descending ...
  v = exchange<0x5A>(v, swap1(v));
  return bitonic_merge8(v);         // ... which together are bitonic
}

// The 8 largest of `top` (ascending) and `block` (any order), ascending: against `block` sorted
// descending, the lane-wise max holds the 8 largest of the 16 as a bitonic sequence.
MOE_AVX2_INLINE __m256 merge_top8(__m256 top, __m256 block) {
  const __m256 descending = _mm256_permutevar8x32_ps(sort8(block), _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0));
  return bitonic_merge8(_mm256_max_ps(top, descending));
}

// k ≤ 8 (the default k is 8), n ≥ 8. The 8 largest values so far live sorted in one register, and a
// block of 8 values is merged in with a fixed sequence of min/max/shuffle steps: no branch per value,
// where the scalar scan mispredicts at nearly every one of its ~k·ln(n/k) insertions (measured on the
// demo model: ~28 per row of ~200 keys, most of the cost of the top-k mass). A block with nothing
// above the current k-th largest (lane 8−k) is skipped, which on long rows is most of them. Skipping on
// lane 8−k rather than lane 0 may leave the lanes below 8−k short of values the scan passed over; they
// are never summed, and the k lanes above them stay exactly the k largest.
MOE_AVX2 float topk_sum8_avx2(const float* v, int64_t n, int k) {
  const __m256i at_threshold = _mm256_set1_epi32(8 - k);
  __m256 top = sort8(_mm256_loadu_ps(v));
  int64_t j = 8;
  for (; j + 8 <= n; j += 8) {
    const __m256 block = _mm256_loadu_ps(v + j);
    const __m256 threshold = _mm256_permutevar8x32_ps(top, at_threshold);  // lane 8−k in every lane
    if (_mm256_movemask_ps(_mm256_cmp_ps(block, threshold, _CMP_GT_OQ)) != 0) top = merge_top8(top, block);
  }
  alignas(32) float lanes[8];
  if (j < n) {  // the last n mod 8 values, padded with −inf (which never displaces a value)
    std::fill(lanes, lanes + 8, -INFINITY);
    std::copy(v + j, v + n, lanes);
    top = merge_top8(top, _mm256_load_ps(lanes));
  }
  _mm256_store_ps(lanes, top);
  return topk_total(lanes + 8 - k, k);
}

// Any k: the k largest so far in scratch, as in the scalar path, but one compare covers 8 values and
// the candidates of a block are offered one by one (each against the threshold as it rises).
MOE_AVX2 float topk_sum_avx2(const float* v, int64_t n, int k, float* s) {
  if (k <= 8 && n >= 8) return topk_sum8_avx2(v, n, k);
  topk_start(v, k, s);
  int64_t j = k;
  for (; j + 8 <= n; j += 8) {
    const __m256 above = _mm256_cmp_ps(_mm256_loadu_ps(v + j), _mm256_set1_ps(s[0]), _CMP_GT_OQ);
    for (unsigned mask = unsigned(_mm256_movemask_ps(above)); mask != 0; mask &= mask - 1)
      topk_offer(s, k, v[j + __builtin_ctz(mask)]);
  }
  for (; j < n; ++j) topk_offer(s, k, v[j]);
  return topk_total(s, k);
}
#endif  // MOE_HAVE_X86_KERNELS

void check_matrix(const MatrixRef& W, const float* x, int64_t T, const float* y) {
  if (!is_weight_dtype(W.dtype) && W.dtype != DType::MXFP4 && W.dtype != DType::F8_E4M3 && !is_packed_int(W.dtype) &&
      !is_block_quantized(W.dtype))
    throw std::invalid_argument("matmul: weight dtype " + std::string(dtype_name(W.dtype)) +
                                " is not F32, F16, BF16, F8_E4M3, a packed integer, MXFP4 or a GGML block type");
  if ((W.dtype == DType::F8_E4M3 || is_packed_int(W.dtype)) &&
      (W.tiles.tile_rows < 1 || W.tiles.tile_cols < 1 || W.tiles.first_row < 0 ||
       W.tiles.grid_cols < tile_count(W.cols, W.tiles.tile_cols) || (W.rows > 0 && !W.tiles)))
    throw std::invalid_argument("matmul: a matrix of " + std::string(dtype_name(W.dtype)) + " needs its tile scales "
                                "(tiles of at least 1 × 1, a scale for each tile of a row)");
  if (is_packed_int(W.dtype) && (W.cols * packed_int_bits(W.dtype)) % 32)
    throw std::invalid_argument("matmul: a matrix of " + std::string(dtype_name(W.dtype)) + " needs rows of whole 32-bit words (" +
                                std::to_string(W.cols) + " columns)");
  if (W.dtype == DType::MXFP4 && (W.cols % kMxfp4BlockValues || W.row_step < 1 || (W.rows > 0 && !W.scales)))
    throw std::invalid_argument("matmul: an MXFP4 matrix needs whole blocks of 32 columns (has " +
                                std::to_string(W.cols) + "), scales and a row step of at least 1");
  if (is_block_quantized(W.dtype) && (W.cols % block_format(W.dtype).values || W.row_step != 1 || W.scales))
    throw std::invalid_argument("matmul: a " + std::string(dtype_name(W.dtype)) + " matrix needs whole blocks of " +
                                std::to_string(block_format(W.dtype).values) + " columns (has " + std::to_string(W.cols) +
                                "), contiguous rows (row step 1) and no separate scales");
  if (W.rows < 0 || W.cols < 0 || T < 0) throw std::invalid_argument("matmul: negative size");
  if (W.rows > 0 && W.cols > 0 && W.data == nullptr) throw std::invalid_argument("matmul: null weights");
  if (T > 0 && W.cols > 0 && x == nullptr) throw std::invalid_argument("matmul: null x");
  if (T > 0 && W.rows > 0 && y == nullptr) throw std::invalid_argument("matmul: null y");
}

void matmul_rows_unchecked(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  if (T <= 0 || rb >= re) return;
  if (W.cols == 0) {
    for (int64_t t = 0; t < T; ++t) std::fill(y + t * W.rows + rb, y + t * W.rows + re, 0.0f);
    return;
  }
#if MOE_HAVE_X86_KERNELS
  if (use_simd()) {
    switch (W.dtype) {
      case DType::F32: matmul_rows_avx2<F32W>(W, x, T, y, rb, re); return;
      case DType::BF16: matmul_rows_avx2<BF16W>(W, x, T, y, rb, re); return;
      case DType::F16: matmul_rows_avx2<F16W>(W, x, T, y, rb, re); return;
      case DType::MXFP4: matmul_rows_mxfp4_avx2(W, x, T, y, rb, re); return;
      case DType::F8_E4M3: matmul_rows_fp8_avx2(W, x, T, y, rb, re); return;
      case DType::PACKED_I4:
        if (!packed_fits_avx2(W)) break;
        matmul_rows_packed_avx2<DType::PACKED_I4>(W, x, T, y, rb, re);
        return;
      case DType::PACKED_I8:
        if (!packed_fits_avx2(W)) break;
        matmul_rows_packed_avx2<DType::PACKED_I8>(W, x, T, y, rb, re);
        return;
      default:
        if (is_block_quantized(W.dtype)) {
          matmul_rows_ggml_avx2(W, x, T, y, rb, re);
          return;
        }
        break;
    }
  }
#endif
  switch (W.dtype) {
    case DType::F32: matmul_rows_scalar<DType::F32>(W, x, T, y, rb, re); return;
    case DType::BF16: matmul_rows_scalar<DType::BF16>(W, x, T, y, rb, re); return;
    case DType::F16: matmul_rows_scalar<DType::F16>(W, x, T, y, rb, re); return;
    case DType::MXFP4: matmul_rows_mxfp4_scalar(W, x, T, y, rb, re); return;
    case DType::F8_E4M3: matmul_rows_fp8_scalar(W, x, T, y, rb, re); return;
    case DType::PACKED_I4:
    case DType::PACKED_I8: matmul_rows_packed_scalar(W, x, T, y, rb, re); return;
    default:
      if (is_block_quantized(W.dtype)) matmul_rows_ggml_scalar(W, x, T, y, rb, re);
      return;
  }
}

// x [T, cols] with its columns in W's stored order, in buf, when activation order stored W's inputs by group
// (W.tiles.input_order: stored column j is input order[j]); else x itself. The kernels then read both in one order.
const float* inputs_in_stored_order(const MatrixRef& W, const float* x, int64_t T, std::vector<float>& buf) {
  const int32_t* order = W.tiles.input_order;
  if (!order || T <= 0) return x;
  buf.resize(size_t(T * W.cols));
  for (int64_t t = 0; t < T; ++t) {
    const float* in = x + t * W.cols;
    float* out = buf.data() + t * W.cols;
    for (int64_t j = 0; j < W.cols; ++j) out[j] = in[order[j]];
  }
  return buf.data();
}

}  // namespace

void matmul_rows(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t row_begin, int64_t row_end) {
  check_matrix(W, x, T, y);
  if (row_begin < 0 || row_end > W.rows || row_begin > row_end)
    throw std::invalid_argument("matmul_rows: row range [" + std::to_string(row_begin) + ", " +
                                std::to_string(row_end) + ") outside [0, " + std::to_string(W.rows) + ")");
  thread_local std::vector<float> gathered;
  matmul_rows_unchecked(W, inputs_in_stored_order(W, x, T, gathered), T, y, row_begin, row_end);
}

void matmul(ThreadPool& pool, const MatrixRef& W, const float* x, int64_t T, float* y) {
  check_matrix(W, x, T, y);
  if (T <= 0 || W.rows == 0) return;
  thread_local std::vector<float> gathered;  // the workers read it while this thread waits in parallel_for_chunks
  x = inputs_in_stored_order(W, x, T, gathered);
  const int64_t rows = W.rows;
  const int64_t blocks = (rows + kRowAlign - 1) / kRowAlign;
  if (pool.size() == 1 || blocks < 2 || rows * std::max<int64_t>(W.cols, 1) * T < kSerialWork) {
    matmul_rows_unchecked(W, x, T, y, 0, rows);
    return;
  }
  struct Args {
    const MatrixRef* W;
    const float* x;
    int64_t T;
    float* y;
  } args{&W, x, T, y};
  const Args* a = &args;  // one pointer: the lambda fits std::function's small buffer (no allocation)
  // A few chunks per thread, claimed dynamically, so a thread slowed down by another process on its
  // core does not hold everyone up; but no chunk smaller than kMinChunkWork.
  const int64_t work = rows * std::max<int64_t>(W.cols, 1) * T;
  const int64_t chunks = std::min<int64_t>({blocks, int64_t(pool.size()) * kChunksPerThread,
                                            std::max<int64_t>(pool.size(), work / kMinChunkWork)});
  pool.parallel_for_chunks(blocks, chunks, [a](int64_t b, int64_t e) {
    matmul_rows_unchecked(*a->W, a->x, a->T, a->y, b * kRowAlign, std::min(e * kRowAlign, a->W->rows));
  });
}

float dot_f32(const float* a, const float* b, int64_t n) {
  if (n <= 0) return 0.0f;
#if MOE_HAVE_X86_KERNELS
  if (use_simd()) return dot_avx2(a, b, n);
#endif
  return dot_scalar(a, b, n);
}

void axpy_f32(float s, const float* x, float* y, int64_t n) {
  if (n <= 0) return;
#if MOE_HAVE_X86_KERNELS
  if (use_simd()) {
    axpy_avx2(s, x, y, n);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) y[i] += s * x[i];
}

double dot_f32_f64(const float* a, const float* b, int64_t n) {
  if (n <= 0) return 0.0;
#if MOE_HAVE_X86_KERNELS
  if (use_simd()) return dot_f64_avx2(a, b, n);
#endif
  return dot_f64_scalar(a, b, n);
}

float topk_sum_f32(const float* v, int64_t n, int k, float* scratch) {
  if (k < 1 || k > n) throw std::invalid_argument("topk_sum_f32: k = " + std::to_string(k) + " outside [1, n = " + std::to_string(n) + "]");
#if MOE_HAVE_X86_KERNELS
  if (use_simd()) return topk_sum_avx2(v, n, k, scratch);
#endif
  return topk_sum_scalar(v, n, k, scratch);
}

const char* simd_path() { return use_simd() ? "avx2+fma+f16c" : "scalar"; }

bool simd_supported() { return hw_simd(); }

void set_force_scalar(bool force) { g_force_scalar.store(force ? 1 : 0, std::memory_order_relaxed); }

bool force_scalar() {
  use_simd();  // resolve the environment variable
  return g_force_scalar.load(std::memory_order_relaxed) == 1;
}

}  // namespace moe::cpu
