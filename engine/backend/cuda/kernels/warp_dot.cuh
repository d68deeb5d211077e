#pragma once
// Warp-level building blocks shared by the kernels: warp-shuffle sums, and what the memory-bound decode
// GEMVs (linear.cu, experts.cu) are made of: weights read as 16-byte chunks (8 BF16/F16 or 4 F32) on the
// streaming read-only path, converted to F32 and dotted with F32 vectors, one warp per output row.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace moe::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Element types: 16-byte chunks and their conversion to F32.

template <typename T>
struct Elem;
template <>
struct Elem<__nv_bfloat16> {
  static constexpr int kPerChunk = 8;
  __device__ __forceinline__ static void cvt(const uint4& v, float* f) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
  __device__ __forceinline__ static float one(const __nv_bfloat16* p) {
    return __uint_as_float(uint32_t(*reinterpret_cast<const unsigned short*>(p)) << 16);
  }
};
template <>
struct Elem<__half> {
  static constexpr int kPerChunk = 8;
  __device__ __forceinline__ static void cvt(const uint4& v, float* f) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h2;
      memcpy(&h2, &w[i], 4);
      const float2 f2 = __half22float2(h2);
      f[2 * i] = f2.x;
      f[2 * i + 1] = f2.y;
    }
  }
  __device__ __forceinline__ static float one(const __half* p) { return __half2float(*p); }
};
template <>
struct Elem<float> {
  static constexpr int kPerChunk = 4;
  __device__ __forceinline__ static void cvt(const uint4& v, float* f) {
    f[0] = __uint_as_float(v.x);
    f[1] = __uint_as_float(v.y);
    f[2] = __uint_as_float(v.z);
    f[3] = __uint_as_float(v.w);
  }
  __device__ __forceinline__ static float one(const float* p) { return *p; }
};

// A 16-byte load of weights that are read once: read-only path, not kept in L1 (so x / h stay there).
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 r;
#ifdef __CUDA_ARCH__
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
#else
  std::memcpy(&r, p, sizeof(r));  // the host compiler (the CUDA emulator build): the same 16 bytes
#endif
  return r;
}

__host__ __device__ inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Lane partial sums of NR dot products over n elements: rows w[r] (weights) against vectors x[r] (F32).
// Vectorised when every row and vector is 16-byte aligned and n is a multiple of the chunk. Each step
// issues U chunks per row (predicated past the end) before any is used, so U·NR 16-byte loads are in
// flight per lane even for short rows (ffn 768 in BF16: 3 chunks per lane). before_x() is called once,
// after the first step's weight loads are issued and before anything of x is read: a dependent kernel
// waits for its inputs there, with its first weights already on the way (dependent_launch.cuh).
template <typename T, int NR, typename BeforeX>
__device__ __forceinline__ void warp_dots(const T* const (&w)[NR], const float* const (&x)[NR], int n, int lane,
                                          float (&acc)[NR], BeforeX&& before_x) {
  constexpr int V = Elem<T>::kPerChunk;
  constexpr int U = NR == 1 ? 8 : 4;
  bool vec = n % V == 0;
#pragma unroll
  for (int r = 0; r < NR; ++r) vec = vec && aligned16(w[r]) && aligned16(x[r]);
  if (vec) {
    const int nc = n / V;
    uint4 raw[U][NR];
    auto load = [&](int c0) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < NR; ++r)
          raw[u][r] = c0 + 32 * u < nc ? ld_stream(w[r] + size_t(c0 + 32 * u) * V) : make_uint4(0u, 0u, 0u, 0u);
    };
    load(lane);
    before_x();
    for (int c0 = lane; c0 < nc;) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + 32 * u;
        if (c >= nc) break;
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          float wf[V];
          Elem<T>::cvt(raw[u][r], wf);
          const float4* xv = reinterpret_cast<const float4*>(x[r] + size_t(c) * V);
#pragma unroll
          for (int q = 0; q < V / 4; ++q) {
            const float4 xx = xv[q];
            acc[r] += wf[4 * q] * xx.x;
            acc[r] += wf[4 * q + 1] * xx.y;
            acc[r] += wf[4 * q + 2] * xx.z;
            acc[r] += wf[4 * q + 3] * xx.w;
          }
        }
      }
      c0 += 32 * U;
      if (c0 < nc) load(c0);
    }
  } else {
    before_x();
    for (int i = lane; i < n; i += 32)
#pragma unroll
      for (int r = 0; r < NR; ++r) acc[r] += Elem<T>::one(w[r] + i) * x[r][i];
  }
}

template <typename T, int NR>
__device__ __forceinline__ void warp_dots(const T* const (&w)[NR], const float* const (&x)[NR], int n, int lane,
                                          float (&acc)[NR]) {
  warp_dots(w, x, n, lane, acc, [] {});
}

// One output row of a decode matrix-vector product, Σ_i w[i]·x[i] over n, in every lane of the warp;
// before_x as for warp_dots.
template <typename T, typename BeforeX>
__device__ __forceinline__ float warp_row_dot(const T* w, const float* x, int n, int lane, BeforeX&& before_x) {
  const T* const row[1] = {w};
  const float* const vec[1] = {x};
  float acc[1] = {0.0f};
  warp_dots<T, 1>(row, vec, n, lane, acc, before_x);
  return warp_sum(acc[0]);
}

}  // namespace moe::cuda
