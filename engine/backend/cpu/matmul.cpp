#include "engine/backend/cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/common/mxfp4.h"

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
// T = 2, 3: the same, but each converted weight vector feeds T tokens (4 rows × T accumulators).
// T ≥ 4 (prefill): tokens are taken in tiles of kTokenTile, columns in blocks of kColBlock, rows in
//   panels of kRowPanel. Each (token tile, column block, row panel) of weights is converted to f32
//   once into a 16 KiB stack buffer (L1), and a 4-row × 3-token register-blocked micro-kernel runs
//   over it for every 3 tokens of the tile (12 accumulators; 7 loads per 12 FMAs). So each weight
//   element is read and converted once per token tile, the x block of the tile stays in L2 and the
//   3-token slice in L1.
// MXFP4 (GPT-OSS's experts): T = 1 runs the same four streams, decoding each 32-value block in
//   registers (a table lookup per nibble) and scaling its partial sums once; T > 1 expands the
//   panels to f32 and runs the prefill path. A block's 17 bytes against BF16's 64 make decode of such
//   weights bound by the decoding arithmetic rather than by memory.

namespace moe::cpu {

namespace {

constexpr int64_t kRowGroup = 4;      // rows per micro-kernel
constexpr int64_t kTokGroup = 3;      // tokens per micro-kernel (T > 1)
constexpr int64_t kTokenTile = 96;    // tokens per tile in the prefill path (multiple of kTokGroup)
constexpr int64_t kColBlock = 512;    // columns per block in the prefill path (multiple of 8)
constexpr int64_t kRowPanel = 8;      // rows per converted panel in the prefill path (multiple of 4)
constexpr int64_t kDirectMaxT = 3;    // T up to this reads the weights directly, without a buffer
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

// Each row is expanded to f32 once, then dotted with every token.
void matmul_rows_mxfp4_scalar(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  thread_local std::vector<float> row;
  row.resize(size_t(W.cols));
  for (int64_t r = rb; r < re; ++r) {
    const Mxfp4Row q = mxfp4_row(W, r);
    mxfp4_dequantize(q.blocks, q.scales, W.cols, row.data());
    for (int64_t t = 0; t < T; ++t) y[t * W.rows + r] = dot_scalar(row.data(), x + t * W.cols, W.cols);
  }
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
// used TT times, every x vector R times; R·TT independent accumulators.
template <class WT, int R, int TT>
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

template <class WT, int R>
MOE_AVX2_INLINE void micro_kernel_tt(int64_t tt, const typename WT::T* w, int64_t ldw, const float* x,
                                     int64_t ldx, int64_t n, float* y, int64_t ldy, bool accumulate) {
  switch (tt) {
    case 1: micro_kernel<WT, R, 1>(w, ldw, x, ldx, n, y, ldy, accumulate); break;
    case 2: micro_kernel<WT, R, 2>(w, ldw, x, ldx, n, y, ldy, accumulate); break;
    default: micro_kernel<WT, R, 3>(w, ldw, x, ldx, n, y, ldy, accumulate); break;
  }
}

template <class WT>
MOE_AVX2 void micro_kernel_any(int64_t rr, int64_t tt, const typename WT::T* w, int64_t ldw, const float* x,
                               int64_t ldx, int64_t n, float* y, int64_t ldy, bool accumulate) {
  switch (rr) {
    case 1: micro_kernel_tt<WT, 1>(tt, w, ldw, x, ldx, n, y, ldy, accumulate); break;
    case 2: micro_kernel_tt<WT, 2>(tt, w, ldw, x, ldx, n, y, ldy, accumulate); break;
    case 3: micro_kernel_tt<WT, 3>(tt, w, ldw, x, ldx, n, y, ldy, accumulate); break;
    default: micro_kernel_tt<WT, 4>(tt, w, ldw, x, ldx, n, y, ldy, accumulate); break;
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

  if (T <= kDirectMaxT) {
    // Few tokens: stream the weights once, converting in registers, T accumulators per row.
    for (int64_t r = rb; r < re; r += kRowGroup) {
      const int64_t rr = std::min(kRowGroup, re - r);
      micro_kernel_any<WT>(rr, T, w + r * cols, cols, x, cols, cols, y + r, rows, false);
    }
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

MOE_AVX2 void matmul_rows_mxfp4_avx2(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t rb, int64_t re) {
  if (T == 1) {
    thread_local std::vector<float> split;
    split.resize(size_t(W.cols));
    for (int64_t c = 0; c < W.cols; c += 2) {
      const int64_t block = c / kMxfp4BlockValues * kMxfp4BlockValues, j = (c - block) / 2;
      split[size_t(block + j)] = x[c];
      split[size_t(block + 16 + j)] = x[c + 1];
    }
    const float* xs = split.data();
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
  // T > 1: expanded panels, as prefill (column blocks are multiples of 32, so blocks stay whole).
  prefill_panels(W, x, T, y, rb, re, [&W](int64_t r, int64_t k0, int64_t kc, float* dst) {
    const Mxfp4Row q = mxfp4_row(W, r);
    convert_mxfp4(q.blocks + k0 / 2, q.scales + k0 / kMxfp4BlockValues, kc, dst);
  });
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
  if (!is_weight_dtype(W.dtype) && W.dtype != DType::MXFP4)
    throw std::invalid_argument("matmul: weight dtype " + std::string(dtype_name(W.dtype)) +
                                " is not F32, F16, BF16 or MXFP4");
  if (W.dtype == DType::MXFP4 && (W.cols % kMxfp4BlockValues || W.row_step < 1 || (W.rows > 0 && !W.scales)))
    throw std::invalid_argument("matmul: an MXFP4 matrix needs whole blocks of 32 columns (has " +
                                std::to_string(W.cols) + "), scales and a row step of at least 1");
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
      default: break;
    }
  }
#endif
  switch (W.dtype) {
    case DType::F32: matmul_rows_scalar<DType::F32>(W, x, T, y, rb, re); return;
    case DType::BF16: matmul_rows_scalar<DType::BF16>(W, x, T, y, rb, re); return;
    case DType::F16: matmul_rows_scalar<DType::F16>(W, x, T, y, rb, re); return;
    case DType::MXFP4: matmul_rows_mxfp4_scalar(W, x, T, y, rb, re); return;
    default: break;
  }
}

}  // namespace

void matmul_rows(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t row_begin, int64_t row_end) {
  check_matrix(W, x, T, y);
  if (row_begin < 0 || row_end > W.rows || row_begin > row_end)
    throw std::invalid_argument("matmul_rows: row range [" + std::to_string(row_begin) + ", " +
                                std::to_string(row_end) + ") outside [0, " + std::to_string(W.rows) + ")");
  matmul_rows_unchecked(W, x, T, y, row_begin, row_end);
}

void matmul(ThreadPool& pool, const MatrixRef& W, const float* x, int64_t T, float* y) {
  check_matrix(W, x, T, y);
  if (T <= 0 || W.rows == 0) return;
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
