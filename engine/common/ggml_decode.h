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

#if defined(__CUDACC__)
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

// IQ4_XS's 6-bit scale of sub-block j (< 8), before the −32: scales_l's nibble j, scales_h's bits 2j, 2j + 1
// above it.
MOE_HOST_DEVICE int iq4_xs_scale(const uint8_t scales_h[2], const uint8_t scales_l[4], int j) {
  const int low = (scales_l[j / 2] >> (4 * (j % 2))) & 15;
  const int high = ((scales_h[0] | (scales_h[1] << 8)) >> (2 * j)) & 3;
  return low | (high << 4);
}

namespace ggml {

MOE_HOST_DEVICE float f32_of_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
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
    default: return false;
  }
}

}  // namespace ggml
}  // namespace moe
