#pragma once
// The values of llama.cpp's block-quantized types (ggml_quants.h has the layouts), decoded a run at a
// time by code that both compilers take: the CPU's dequantize_row and the CUDA kernels that read the
// blocks where they lie in device memory (backend/cuda/kernels/block_dot.cuh) share it, so the GPU
// decodes exactly what the CPU tests check against gguf-py. Byte offsets, not structs: a block is at
// best 2-byte aligned, and every field is read a byte at a time (f16 fields little-endian).
//
// Each type is a struct with kValues (values per block), kBytes (bytes per block) and
//   run<N>(block, v0, out): out[i] = value v0 + i of the block, for i < N,
// where N divides 32 and the run lies in one 32-value group (v0 % N == 0). Each value is the reference's
// f32 arithmetic, operation for operation (scales formed first, then times the quant).
#include <cstdint>
#include <cstring>

#include "engine/common/dtype.h"
#include "engine/common/iq_grids.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define MOE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MOE_HOST_DEVICE inline
#endif

namespace moe {

// IQ4_NL's and IQ4_XS's 16 values, code 0 to 15 (ggml's kvalues_iq4nl): a format constant, int8 so the
// CPU kernels can look codes up with one byte shuffle.
inline constexpr int8_t kIq4NlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Q3_K's 12 scale bytes → sub-block i's signed 6-bit scale (i < 16): the low nibble of byte i (i < 8) or
// the high nibble of byte i − 8, with bits 2·(i / 4), +1 of byte 8 + i % 4 above it; minus 32.
MOE_HOST_DEVICE int q3_k_scale(const uint8_t s[12], int i) {
  const int low = i < 8 ? s[i] & 15 : s[i - 8] >> 4;
  const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// Nibble i of packed bytes p, the low nibble of each byte first.
MOE_HOST_DEVICE int packed_nibble(const uint8_t* p, int i) { return (p[i / 2] >> (4 * (i % 2))) & 15; }

// IQ4_XS's 6-bit scale of sub-block j (< 8), before the −32: scales_l's nibble j, scales_h's bits 2j, 2j + 1
// above it.
MOE_HOST_DEVICE int iq4_xs_scale(const uint8_t scales_h[2], const uint8_t scales_l[4], int j) {
  const int low = packed_nibble(scales_l, j);
  const int high = ((scales_h[0] | (scales_h[1] << 8)) >> (2 * j)) & 3;
  return low | (high << 4);
}

namespace ggml {

MOE_HOST_DEVICE float f32_of_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
MOE_HOST_DEVICE uint32_t f32_bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

// IEEE half bits → f32, subnormals (man · 2^−24, exact) included.
MOE_HOST_DEVICE float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {
    const float f = float(man) * 5.9604644775390625e-8f;  // 2^−24
    return sign ? -f : f;
  }
  if (exp == 31) return f32_of_bits(sign | 0x7f800000u | (man << 13));
  return f32_of_bits(sign | ((exp + 112) << 23) | (man << 13));
}

// The f16 field at p.
MOE_HOST_DEVICE float f16_at(const uint8_t* p) { return f16_bits_to_f32(uint16_t(p[0] | (p[1] << 8))); }

// 2^(e − 128) for an E8M0 byte e (MXFP4's scale halved), from its bits: exponent field e − 1 for e ≥ 2,
// subnormals below (also mxfp4.h's mxfp4_half_scale, for safetensors' MXFP4).
MOE_HOST_DEVICE float e8m0_half(uint8_t e) { return f32_of_bits(e >= 2 ? uint32_t(e - 1) << 23 : uint32_t(0x00200000u) << e); }

// An FP4 E2M1 code's value times 2 (kFp4TwiceValues): 0, 1, 2, 3, 4, 6, 8, 12, negated for bit 3.
MOE_HOST_DEVICE int fp4_twice(int code) {
  const int e = (code >> 1) & 3, m = code & 1;
  const int v = e == 0 ? m : (2 + m) << (e - 1);
  return code & 8 ? -v : v;
}

// kIq4NlValues packed eight to a word, so a code is looked up with shifts (no table in device memory).
constexpr uint64_t pack_iq4nl(int first) {
  uint64_t w = 0;
  for (int i = 0; i < 8; ++i) w |= uint64_t(uint8_t(kIq4NlValues[first + i])) << (8 * i);
  return w;
}
inline constexpr uint64_t kIq4NlLow = pack_iq4nl(0), kIq4NlHigh = pack_iq4nl(8);
MOE_HOST_DEVICE int iq4nl_value(int code) {
  return int8_t(uint8_t(((code < 8 ? kIq4NlLow : kIq4NlHigh) >> (8 * (code & 7))) & 0xffu));
}

// Value v (< 32) of a 32-value block's 16 nibble bytes: byte v holds value v (low nibble) and v + 16
// (high).
MOE_HOST_DEVICE int nibble(const uint8_t* qs, int v) { return v < 16 ? qs[v] & 15 : qs[v - 16] >> 4; }

// Q5_0/Q5_1's 5-bit quant of value v (< 32): its nibble, and bit v of qh as the fifth bit.
MOE_HOST_DEVICE int quant5(const uint8_t* qs, const uint8_t* qh, int v) {
  return nibble(qs, v) | (((qh[v / 8] >> (v % 8)) & 1) << 4);
}

// Q4_K's and Q5_K's 12 scale bytes → sub-block j's 6-bit scale and min. Sub-blocks 0–3: the low 6 bits of
// bytes j (scale) and j + 4 (min); 4–7: the nibbles of byte j + 4 (scale low, min high) with the top 2
// bits of bytes j − 4 (scale) and j (min) above them.
MOE_HOST_DEVICE void k_scale_min(const uint8_t* q, int j, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K's and Q5_K's sub-block j: dl = d·scale and ml = dmin·min (d, dmin and the 12 scale bytes lead
// the block).
MOE_HOST_DEVICE void k_sub_block_scales(const uint8_t* b, int j, float& dl, float& ml) {
  int sc, m;
  k_scale_min(b + 4, j, sc, m);
  dl = f16_at(b) * float(sc);
  ml = f16_at(b + 2) * float(m);
}

// x = d·(q − 8), q a nibble. Layout: d, qs[16].
struct Q4_0 {
  static constexpr int kValues = 32, kBytes = 18;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b);
    for (int i = 0; i < N; ++i) out[i] = d * float(nibble(b + 2, v0 + i) - 8);
  }
};

// x = d·q + m. Layout: d, m, qs[16].
struct Q4_1 {
  static constexpr int kValues = 32, kBytes = 20;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b), m = f16_at(b + 2);
    for (int i = 0; i < N; ++i) out[i] = d * float(nibble(b + 4, v0 + i)) + m;
  }
};

// x = d·(q − 16), q 5 bits. Layout: d, qh[4], qs[16].
struct Q5_0 {
  static constexpr int kValues = 32, kBytes = 22;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b);
    for (int i = 0; i < N; ++i) out[i] = d * float(quant5(b + 6, b + 2, v0 + i) - 16);
  }
};

// x = d·q + m, q 5 bits. Layout: d, m, qh[4], qs[16].
struct Q5_1 {
  static constexpr int kValues = 32, kBytes = 24;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b), m = f16_at(b + 2);
    for (int i = 0; i < N; ++i) out[i] = d * float(quant5(b + 8, b + 4, v0 + i)) + m;
  }
};

// x = q·d, q int8. Layout: d, qs[32].
struct Q8_0 {
  static constexpr int kValues = 32, kBytes = 34;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b);
    for (int i = 0; i < N; ++i) out[i] = float(int8_t(b[2 + v0 + i])) * d;
  }
};

// Value v = h·128 + s·32 + l (h < 2, s < 4, l < 32) is bits 2s, 2s+1 of qs[h·32 + l]; each 16 values have a
// 4-bit scale (low nibble) and min (high nibble), times d and dmin. Layout: scales[16], qs[64], d, dmin.
struct Q2_K {
  static constexpr int kValues = 256, kBytes = 84;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b + 80), dmin = f16_at(b + 82);
    for (int i = 0; i < N; ++i) {
      const int v = v0 + i, h = v / 128, s = (v / 32) % 4, l = v % 32;
      const int q = (b[16 + h * 32 + l] >> (2 * s)) & 3;
      const uint8_t sc = b[v / 16];
      const float dl = d * float(sc & 15), ml = dmin * float(sc >> 4);
      out[i] = dl * float(q) - ml;
    }
  }
};

// Value v has 2 low bits as Q2_K's and a high bit, bit v/32 of hmask[l]; the quant is low − 4 when that bit
// is clear. Each 16 values have a scale (q3_k_scale). Layout: hmask[32], qs[64], scales[12], d.
struct Q3_K {
  static constexpr int kValues = 256, kBytes = 110;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b + 108);
    for (int i = 0; i < N; ++i) {
      const int v = v0 + i, h = v / 128, s = (v / 32) % 4, l = v % 32;
      const int low = (b[32 + h * 32 + l] >> (2 * s)) & 3;
      const int high = (b[l] >> (v / 32)) & 1;
      const float dl = d * float(q3_k_scale(b + 96, v / 16));
      out[i] = dl * float(low - (high ? 0 : 4));
    }
  }
};

// Sub-block j (32 values) = 2c + n: nibble n (0 low, 1 high) of qs[32c .. 32c + 32), times d·scale, minus
// dmin·min. Layout: d, dmin, scales[12], qs[128].
struct Q4_K {
  static constexpr int kValues = 256, kBytes = 144;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const int j = v0 / 32;
    float dl, ml;
    k_sub_block_scales(b, j, dl, ml);
    const uint8_t* q = b + 16 + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int i = 0; i < N; ++i) out[i] = dl * float((q[v0 % 32 + i] >> shift) & 15) - ml;
  }
};

// Q4_K's nibbles with bit j of qh[l] as the fifth bit of value 32j + l. Layout: d, dmin, scales[12],
// qh[32], qs[128].
struct Q5_K {
  static constexpr int kValues = 256, kBytes = 176;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const int j = v0 / 32;
    float dl, ml;
    k_sub_block_scales(b, j, dl, ml);
    const uint8_t* q = b + 48 + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int i = 0; i < N; ++i) {
      const int l = v0 % 32 + i;
      const int q5 = ((q[l] >> shift) & 15) | (((b[16 + l] >> j) & 1) << 4);
      out[i] = dl * float(q5) - ml;
    }
  }
};

// Per half h (128 values), value h·128 + s·32 + l takes nibble s / 2 of ql[h·64 + 32·(s % 2) + l] and bits
// 2s, 2s+1 of qh[h·32 + l] above it, minus 32; each 16 values have a signed 8-bit scale. Layout: ql[128],
// qh[64], scales[16], d.
struct Q6_K {
  static constexpr int kValues = 256, kBytes = 210;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b + 208);
    for (int i = 0; i < N; ++i) {
      const int v = v0 + i, h = v / 128, s = (v / 32) % 4, l = v % 32;
      const int low = (b[h * 64 + 32 * (s % 2) + l] >> (4 * (s / 2))) & 15;
      const int high = (b[128 + h * 32 + l] >> (2 * s)) & 3;
      const float dl = d * float(int8_t(b[192 + v / 16]));
      out[i] = dl * float((low | (high << 4)) - 32);
    }
  }
};

// ggml's MXFP4 block: x = fp4_twice(q)·2^(e − 128), q as Q4_0's nibbles. Layout: e, qs[16].
struct MXFP4_GGML {
  static constexpr int kValues = 32, kBytes = 17;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = e8m0_half(b[0]);
    for (int i = 0; i < N; ++i) out[i] = d * float(fp4_twice(nibble(b + 1, v0 + i)));
  }
};

// x = d·kIq4NlValues[q], q as Q4_0's nibbles. Layout: d, qs[16].
struct IQ4_NL {
  static constexpr int kValues = 32, kBytes = 18;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float d = f16_at(b);
    for (int i = 0; i < N; ++i) out[i] = d * float(iq4nl_value(nibble(b + 2, v0 + i)));
  }
};

// Sub-block j is an IQ4_NL block's nibbles at qs + 16j, with dl = d·(ls − 32) formed first. Layout: d,
// scales_h[2], scales_l[4], qs[128].
struct IQ4_XS {
  static constexpr int kValues = 256, kBytes = 136;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const int j = v0 / 32;
    const float dl = f16_at(b) * float(iq4_xs_scale(b + 2, b + 4, j) - 32);
    for (int i = 0; i < N; ++i) out[i] = dl * float(iq4nl_value(nibble(b + 8 + 16 * j, v0 % 32 + i)));
  }
};

// The IQ1, IQ2 and IQ3 types (GGUF types 16–19, 21, 22 and 29) store an index into a fixed codebook
// (iq_grids.h) per 8 or 4 values, and signs apart. Their values are all x = scale · q with q an integer:
//   IQ2 (IQ2_XXS, IQ2_XS, IQ2_S): q = ±8, ±25 or ±43;  IQ3_XXS: ±4 … ±62;  IQ3_S: ±1 … ±15,
//   each scale being the reference's own f32 product (d·(0.5 + ls)·0.25 and so on); gguf-py multiplies
//   that scale by the codebook value and then by ±1, which rounds the same as scale · (±value).
//   IQ1 (IQ1_S, IQ1_M): the reference's x = dl·(g + δ), g ∈ {−1, 0, 1}, δ = ±1/8, is (dl/8)·(8g ± 1):
//   q = 8g ± 1 and scale = dl/8 (dl is an f16 times an odd integer < 16, so dl/8 is exact, and both
//   products are the same real number, rounded once).
// So each decoder gives quants8 (the 8 integers of values 8g … 8g + 7) and scale (the f32 of sub-block
// s, kSub values each), and the CPU can keep q as int8 (backend/cpu/matmul.cpp).

// The codebooks: arrays on the host and, in CUDA code, __device__ copies that device code reads.
#if defined(__CUDACC__)
#define MOE_IQ_CODEBOOK(name, rows, ...)                         \
  inline constexpr uint16_t name[rows] = {__VA_ARGS__};          \
  static __device__ const uint16_t name##_on_device[rows] = {__VA_ARGS__};
#else
#define MOE_IQ_CODEBOOK(name, rows, ...) inline constexpr uint16_t name[rows] = {__VA_ARGS__};
#endif
#if defined(__CUDA_ARCH__)
#define MOE_IQ_ROW(name, i) name##_on_device[i]
#else
#define MOE_IQ_ROW(name, i) name[i]
#endif
MOE_IQ_CODEBOOK(kIq2XxsGrid, MOE_IQ2_XXS_ROWS, MOE_IQ2_XXS_GRID)
MOE_IQ_CODEBOOK(kIq2XsGrid, MOE_IQ2_XS_ROWS, MOE_IQ2_XS_GRID)
MOE_IQ_CODEBOOK(kIq2SGrid, MOE_IQ2_S_ROWS, MOE_IQ2_S_GRID)
MOE_IQ_CODEBOOK(kIq3XxsGrid, MOE_IQ3_XXS_ROWS, MOE_IQ3_XXS_GRID)
MOE_IQ_CODEBOOK(kIq3SGrid, MOE_IQ3_S_ROWS, MOE_IQ3_S_GRID)
MOE_IQ_CODEBOOK(kIq1SGrid, MOE_IQ1_S_ROWS, MOE_IQ1_S_GRID)

namespace iq {

// A value list packed a byte per value (value i in byte i), so an index is looked up with a shift.
template <size_t N>
constexpr uint64_t pack_values(const int (&v)[N]) {
  uint64_t w = 0;
  for (size_t i = 0; i < N; ++i) w |= uint64_t(uint8_t(v[i])) << (8 * i);
  return w;
}
inline constexpr int kIq2List[] = {MOE_IQ2_XXS_VALUES}, kIq3XxsList[] = {MOE_IQ3_XXS_VALUES},
                     kIq3SList[] = {MOE_IQ3_S_VALUES};
inline constexpr int kIq1List[] = {MOE_IQ1_S_VALUES};
static_assert(sizeof(kIq1List) == 3 * sizeof(int) && kIq1List[0] == -1 && kIq1List[1] == 0 && kIq1List[2] == 1,
              "iq1_quants reads IQ1's entries as index − 1");
inline constexpr uint64_t kIq2Values = pack_values(kIq2List), kIq3XxsValues = pack_values(kIq3XxsList),
                          kIq3SValues = pack_values(kIq3SList);

MOE_HOST_DEVICE uint32_t u16_at(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8); }
MOE_HOST_DEVICE uint32_t u32_at(const uint8_t* p) { return u16_at(p) | (u16_at(p + 2) << 16); }

// Entry j of a codebook row (k bits each) through a packed value list.
MOE_HOST_DEVICE constexpr int value(uint16_t row, int j, int k, uint64_t values) {
  return int((values >> (8 * ((row >> (k * j)) & ((1 << k) - 1)))) & 0xffu);
}

// The 8 signs of IQ2_XXS, IQ2_XS and IQ3_XXS from 7 stored bits: bit 7 makes the number of minus signs
// even (ggml's ksigns_iq2xs, checked against gguf-py's table by tests/make_iq_grids.py).
MOE_HOST_DEVICE constexpr int signs7(uint32_t s) {
  s &= 127;
  uint32_t p = s ^ (s >> 4);
  p ^= p >> 2;
  p ^= p >> 1;
  return int(s | ((p & 1) << 7));
}

// The IQ2 and IQ3_XXS scales d·(0.5 + ls)·step (step 1/4, or 1/2 for IQ3_XXS), and the IQ1 ones
// d·(2k + 1)/8 (dl/8: see above), in the reference's order.
MOE_HOST_DEVICE float half_step_scale(float d, uint32_t ls, float step) { return d * (0.5f + float(ls)) * step; }
MOE_HOST_DEVICE float iq1_scale(float d, uint32_t k) { return d * float(2 * k + 1) * 0.125f; }

// q[j] = entry j of an 8-entry IQ2 row, negated where bit j of signs is set.
MOE_HOST_DEVICE void iq2_quants(uint16_t row, int signs, int8_t* q) {
  for (int j = 0; j < 8; ++j) {
    const int v = value(row, j, 2, kIq2Values);
    q[j] = int8_t((signs >> j) & 1 ? -v : v);
  }
}

// q[0..4) and q[4..8) from two 4-entry IQ3 rows, negated where bit j of signs is set.
MOE_HOST_DEVICE void iq3_quants(uint16_t row0, uint16_t row1, int signs, uint64_t values, int8_t* q) {
  for (int j = 0; j < 8; ++j) {
    const int v = value(j < 4 ? row0 : row1, j % 4, 3, values);
    q[j] = int8_t((signs >> j) & 1 ? -v : v);
  }
}

// q[j] = 8·g_j + δ, g_j ∈ {−1, 0, 1} the entry of an IQ1 row and δ = ±1.
MOE_HOST_DEVICE void iq1_quants(uint16_t row, bool minus, int8_t* q) {
  for (int j = 0; j < 8; ++j) q[j] = int8_t(8 * (((row >> (2 * j)) & 3) - 1) + (minus ? -1 : 1));
}

// The IQ types' run<N>: N values (N a multiple of 8) as scale · q, 8 at a time. A decoder D has d_bits
// (its f16 d's bits), scale(d, b, s) (sub-block s's scale, given d as f32) and quants8.
template <class D>
struct Runs {
  // The f16 d leads the block (IQ1_M, which spreads it, has its own).
  MOE_HOST_DEVICE static uint16_t d_bits(const uint8_t* b) { return uint16_t(u16_at(b)); }
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    static_assert(N % 8 == 0, "the IQ types decode 8 values at a time");
    const float d = f16_bits_to_f32(D::d_bits(b));
    for (int g = v0 / 8; g < (v0 + N) / 8; ++g) {
      const float s = D::scale(d, b, 8 * g / D::kSub);
      int8_t q[8];
      D::quants8(b, g, q);
      for (int j = 0; j < 8; ++j) out[8 * g - v0 + j] = s * float(q[j]);
    }
  }
};

}  // namespace iq

// 8 sub-blocks of 32, each two u32: four grid indices (a byte each, a row of 8 per 8 values), then four
// 7-bit sign fields (bits 7l …) and a 4-bit ls at bit 28: scale d·(0.5 + ls)·0.25. Layout: d, qs[64].
struct IQ2_XXS : iq::Runs<IQ2_XXS> {
  static constexpr int kValues = 256, kBytes = 66, kSub = 32;
  MOE_HOST_DEVICE static float scale(float d, const uint8_t* b, int s) {
    return iq::half_step_scale(d, iq::u32_at(b + 2 + 8 * s + 4) >> 28, 0.25f);
  }
  MOE_HOST_DEVICE static void quants8(const uint8_t* b, int g, int8_t* q) {
    const uint8_t* p = b + 2 + 8 * (g / 4);
    const int l = g % 4;
    iq::iq2_quants(MOE_IQ_ROW(kIq2XxsGrid, p[l]), iq::signs7(iq::u32_at(p + 4) >> (7 * l)), q);
  }
};

// Per 8 values a u16: a 9-bit grid index and 7 sign bits above it; per 16 values a 4-bit ls (nibbles of
// scales[8]): scale d·(0.5 + ls)·0.25. Layout: d, qs[32] (u16), scales[8].
struct IQ2_XS : iq::Runs<IQ2_XS> {
  static constexpr int kValues = 256, kBytes = 74, kSub = 16;
  MOE_HOST_DEVICE static float scale(float d, const uint8_t* b, int s) {
    return iq::half_step_scale(d, packed_nibble(b + 66, s), 0.25f);
  }
  MOE_HOST_DEVICE static void quants8(const uint8_t* b, int g, int8_t* q) {
    const uint32_t w = iq::u16_at(b + 2 + 2 * g);
    iq::iq2_quants(MOE_IQ_ROW(kIq2XsGrid, w & 511), iq::signs7(w >> 9), q);
  }
};

// Per 8 values a 10-bit grid index (a byte of qs, 2 bits of qh above it) and a byte of 8 sign bits; per
// 16 values a 4-bit ls as IQ2_XS's. Layout: d, qs[32], signs[32], qh[8], scales[8].
struct IQ2_S : iq::Runs<IQ2_S> {
  static constexpr int kValues = 256, kBytes = 82, kSub = 16;
  MOE_HOST_DEVICE static float scale(float d, const uint8_t* b, int s) {
    return iq::half_step_scale(d, packed_nibble(b + 74, s), 0.25f);
  }
  MOE_HOST_DEVICE static void quants8(const uint8_t* b, int g, int8_t* q) {
    const int index = b[2 + g] | (((b[66 + g / 4] >> (2 * (g % 4))) & 3) << 8);
    iq::iq2_quants(MOE_IQ_ROW(kIq2SGrid, index), b[34 + g], q);
  }
};

// A grid index (a byte, a row of 4) per 4 values; per 32 values a u32 of four 7-bit sign fields and a
// 4-bit ls at bit 28: scale d·(0.5 + ls)·0.5. Layout: d, qs[64], scales_and_signs[32].
struct IQ3_XXS : iq::Runs<IQ3_XXS> {
  static constexpr int kValues = 256, kBytes = 98, kSub = 32;
  MOE_HOST_DEVICE static float scale(float d, const uint8_t* b, int s) {
    return iq::half_step_scale(d, iq::u32_at(b + 66 + 4 * s) >> 28, 0.5f);
  }
  MOE_HOST_DEVICE static void quants8(const uint8_t* b, int g, int8_t* q) {
    const int signs = iq::signs7(iq::u32_at(b + 66 + 4 * (g / 4)) >> (7 * (g % 4)));
    iq::iq3_quants(MOE_IQ_ROW(kIq3XxsGrid, b[2 + 2 * g]), MOE_IQ_ROW(kIq3XxsGrid, b[3 + 2 * g]), signs,
                   iq::kIq3XxsValues, q);
  }
};

// A 9-bit grid index (a byte of qs, bit r % 8 of qh[r / 8] above it) per 4 values r; a byte of 8 sign
// bits per 8 values; per 32 values a 4-bit ls (nibbles of scales[4]): scale d·(1 + 2·ls). Layout: d,
// qs[64], qh[8], signs[32], scales[4].
struct IQ3_S : iq::Runs<IQ3_S> {
  static constexpr int kValues = 256, kBytes = 110, kSub = 32;
  MOE_HOST_DEVICE static float scale(float d, const uint8_t* b, int s) {
    return d * float(1 + 2 * packed_nibble(b + 106, s));
  }
  MOE_HOST_DEVICE static int index(const uint8_t* b, int r) { return b[2 + r] | (((b[66 + r / 8] >> (r % 8)) & 1) << 8); }
  MOE_HOST_DEVICE static void quants8(const uint8_t* b, int g, int8_t* q) {
    iq::iq3_quants(MOE_IQ_ROW(kIq3SGrid, index(b, 2 * g)), MOE_IQ_ROW(kIq3SGrid, index(b, 2 * g + 1)), b[74 + g],
                   iq::kIq3SValues, q);
  }
};

// Per 8 values an 11-bit grid index (a byte of qs, 3 bits of the sub-block's u16 qh above it); per 32
// values that qh's bits 12–14 (k: dl = d·(2k + 1)) and bit 15 (δ = −1/8 when set, else +1/8). Layout: d,
// qs[32], qh[8] (u16).
struct IQ1_S : iq::Runs<IQ1_S> {
  static constexpr int kValues = 256, kBytes = 50, kSub = 32;
  MOE_HOST_DEVICE static float scale(float d, const uint8_t* b, int s) {
    return iq::iq1_scale(d, (iq::u16_at(b + 34 + 2 * s) >> 12) & 7);
  }
  MOE_HOST_DEVICE static void quants8(const uint8_t* b, int g, int8_t* q) {
    const uint32_t qh = iq::u16_at(b + 34 + 2 * (g / 4));
    iq::iq1_quants(MOE_IQ_ROW(kIq1SGrid, b[2 + g] | ((qh >> (3 * (g % 4))) & 7) << 8), qh & 0x8000u, q);
  }
};

// IQ1_S's codebook; per 8 values a nibble of qh (3 index bits, then δ's sign); per 16 values a 3-bit k of
// the four u16 of scales (bits 3k … of u16 k / 4). The block's f16 d is the top nibbles of those four
// u16, lowest first. Layout: qs[32], qh[16], scales[8].
struct IQ1_M : iq::Runs<IQ1_M> {
  static constexpr int kValues = 256, kBytes = 56, kSub = 16;
  MOE_HOST_DEVICE static uint16_t d_bits(const uint8_t* b) {
    const uint8_t* sc = b + 48;
    return uint16_t((iq::u16_at(sc) >> 12) | ((iq::u16_at(sc + 2) >> 8) & 0xf0u) | ((iq::u16_at(sc + 4) >> 4) & 0xf00u) |
                    (iq::u16_at(sc + 6) & 0xf000u));
  }
  MOE_HOST_DEVICE static float scale(float d, const uint8_t* b, int s) {
    return iq::iq1_scale(d, (iq::u16_at(b + 48 + 2 * (s / 4)) >> (3 * (s % 4))) & 7);
  }
  MOE_HOST_DEVICE static void quants8(const uint8_t* b, int g, int8_t* q) {
    const int nibble = packed_nibble(b + 32, g);
    iq::iq1_quants(MOE_IQ_ROW(kIq1SGrid, b[g] | ((nibble & 7) << 8)), nibble & 8, q);
  }
};

// An FP8 E4M3 byte's value (PyTorch's float8_e4m3fn, the OCP format): sign, 4-bit exponent with bias 7, 3-bit
// mantissa; subnormals m·2^−9; no infinities; 0x7f and 0xff are NaN. Exact in f32.
MOE_HOST_DEVICE float e4m3_value(uint8_t b) {
  const uint32_t e = (b >> 3) & 15u, m = b & 7u, sign = uint32_t(b & 0x80u) << 24;
  if ((b & 0x7fu) == 0x7fu) return f32_of_bits(sign | 0x7fc00000u);
  if (e == 0) return f32_of_bits(sign | f32_bits_of(float(m) * 0.001953125f));  // m · 2^−9
  return f32_of_bits(sign | ((e + 120u) << 23) | (m << 20));
}

// F8_E4M3 weights with their scale, 128 to a block: x = e4m3_value(q)·s, the one f32 product fine-grained FP8's
// reference dequantisation takes. Not a GGUF type: the CUDA backend holds an FP8 checkpoint's matrices this way
// (one F32 scale per tile of 128 × 128 weights in the file, engine/common/fp8.h: each block of a row lies in one
// tile and carries its scale). Layout: s (f32, little-endian), q[128].
struct F8_E4M3_B128 {
  static constexpr int kValues = 128, kBytes = 132;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float s = f32_of_bits(iq::u32_at(b));
    for (int i = 0; i < N; ++i) out[i] = e4m3_value(b[4 + v0 + i]) * s;
  }
};

// f rounded to the nearest BF16 value, ties to even (f finite), as f32.
MOE_HOST_DEVICE float bf16_rounded(float f) {
  const uint32_t u = f32_bits_of(f);
  return f32_of_bits((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}

// f rounded to the nearest F16 value, ties to even, subnormals included, as f32 (±inf beyond F16's range).
MOE_HOST_DEVICE float f16_rounded(float f) {
#if defined(__CUDA_ARCH__)
  return __half2float(__float2half_rn(f));
#else
  return f16_to_f32(f32_to_f16(f));
#endif
}

// Packed integers with their group's scale, 32 to a block: x = q·s rounded to the scale's dtype, BF16 or F16, as
// compressed-tensors, GPTQ and AWQ dequantise a symmetric weight, or x = (q − z)·s so rounded with the group's zero
// point z (AWQ's, compressed-tensors' asymmetric schemes; q − z is exact). Not GGUF types: the CUDA backend holds such
// a checkpoint's matrices this way (engine/common/packed_int.h: the groups of a row, 32 or more values each, are cut
// into blocks that each carry their group's scale and zero point). Layout: s (bf16 or f16 bits, little-endian); with
// a zero point, z + 2^(bits − 1) in a byte and a zero byte; then the values as stored, each q + 2^(bits − 1): 4 bits
// 16 bytes (value 2i in byte i's low nibble, 2i + 1 in its high nibble), 8 bits 32 bytes (value i in byte i).
template <int kBits, bool kF16, bool kZero>
struct PackedIntBlock {
  static_assert((kBits == 4 || kBits == 8) && !(kZero && kBits == 8), "4-bit blocks, with or without zero points, or 8-bit");
  static constexpr int kValues = 32, kHead = kZero ? 4 : 2, kBytes = kHead + kValues * kBits / 8;
  template <int N>
  MOE_HOST_DEVICE static void run(const uint8_t* b, int v0, float* out) {
    const float s = kF16 ? f16_at(b) : f32_of_bits(iq::u16_at(b) << 16);
    const int z = kZero ? int(b[2]) : 1 << (kBits - 1);
    for (int i = 0; i < N; ++i) {
      const int v = v0 + i;
      const int u = kBits == 8 ? int(b[kHead + v]) : int((b[kHead + v / 2] >> (4 * (v & 1))) & 15);
      const float x = float(u - z) * s;
      out[i] = kF16 ? f16_rounded(x) : bf16_rounded(x);
    }
  }
};
using PACKED_I4_B32 = PackedIntBlock<4, false, false>;
using PACKED_I4_F16_B32 = PackedIntBlock<4, true, false>;
using PACKED_I4_ZP_B32 = PackedIntBlock<4, false, true>;
using PACKED_I4_ZP_F16_B32 = PackedIntBlock<4, true, true>;
using PACKED_I8_B32 = PackedIntBlock<8, false, false>;
using PACKED_I8_F16_B32 = PackedIntBlock<8, true, false>;

// True for the blocks whose values are F16 values (the F16-scaled packed integers'): the GPU multiplies them in F16,
// which holds them exactly, the other block types in BF16 (gpu_compute_dtype).
MOE_HOST_DEVICE bool f16_valued_block(DType t) {
  return t == DType::PACKED_I4_F16_B32 || t == DType::PACKED_I4_ZP_F16_B32 || t == DType::PACKED_I8_F16_B32;
}

// Calls f(Decoder{}) with the decoder of block type t and returns true; false (f not called) for any
// other dtype.
template <typename F>
MOE_HOST_DEVICE bool visit_block_type(DType t, F&& f) {
  switch (t) {
    case DType::Q4_0: f(Q4_0{}); return true;
    case DType::Q4_1: f(Q4_1{}); return true;
    case DType::Q5_0: f(Q5_0{}); return true;
    case DType::Q5_1: f(Q5_1{}); return true;
    case DType::Q8_0: f(Q8_0{}); return true;
    case DType::Q2_K: f(Q2_K{}); return true;
    case DType::Q3_K: f(Q3_K{}); return true;
    case DType::Q4_K: f(Q4_K{}); return true;
    case DType::Q5_K: f(Q5_K{}); return true;
    case DType::Q6_K: f(Q6_K{}); return true;
    case DType::MXFP4_GGML: f(MXFP4_GGML{}); return true;
    case DType::IQ4_NL: f(IQ4_NL{}); return true;
    case DType::IQ4_XS: f(IQ4_XS{}); return true;
    case DType::IQ2_XXS: f(IQ2_XXS{}); return true;
    case DType::IQ2_XS: f(IQ2_XS{}); return true;
    case DType::IQ2_S: f(IQ2_S{}); return true;
    case DType::IQ3_XXS: f(IQ3_XXS{}); return true;
    case DType::IQ3_S: f(IQ3_S{}); return true;
    case DType::IQ1_S: f(IQ1_S{}); return true;
    case DType::IQ1_M: f(IQ1_M{}); return true;
    case DType::F8_E4M3_B128: f(F8_E4M3_B128{}); return true;
    case DType::PACKED_I4_B32: f(PACKED_I4_B32{}); return true;
    case DType::PACKED_I4_F16_B32: f(PACKED_I4_F16_B32{}); return true;
    case DType::PACKED_I4_ZP_B32: f(PACKED_I4_ZP_B32{}); return true;
    case DType::PACKED_I4_ZP_F16_B32: f(PACKED_I4_ZP_F16_B32{}); return true;
    case DType::PACKED_I8_B32: f(PACKED_I8_B32{}); return true;
    case DType::PACKED_I8_F16_B32: f(PACKED_I8_F16_B32{}); return true;
    default: return false;
  }
}

}  // namespace ggml
}  // namespace moe
