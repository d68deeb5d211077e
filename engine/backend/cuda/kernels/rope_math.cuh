#pragma once
// The device arithmetic of rotary embeddings and of BF16 cache entries, shared by the kernels that
// write the KV cache (rope.cu: q/k/v preparation; attention_latent.cu: the latent cache of multi-head
// latent attention) and by norm.cu's conversions. Operation for operation what the CPU backend does:
// angles float(pos) · inv_freq[i] in F32, cos and sin scaled by YaRN's factor, the rotation's
// products rounded separately (__fmul_rn, no FMA contraction), BF16 by round-to-nearest-even.
#include <cuda_runtime.h>

#include <cstdint>

namespace moe::cuda {

#if defined(__CUDACC__) || defined(MOE_CUDA_EMULATED)

// f32 → bf16 bits with round-to-nearest-even, bit-identical to the host's f32_to_bf16 (NaN stays NaN).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// cos and sin of pos · inv_freq[i] for i < half, times YaRN's factor (1 for plain RoPE), strided over
// `count` threads from `first`.
__device__ __forceinline__ void rope_angles(int pos, const float* __restrict__ inv_freq, float factor, int half,
                                            float* cos_sh, float* sin_sh, int first, int count) {
  for (int i = first; i < half; i += count) {
    const float angle = float(pos) * __ldg(inv_freq + i);
    float s, c;
    sincosf(angle, &s, &c);
    cos_sh[i] = __fmul_rn(c, factor);
    sin_sh[i] = __fmul_rn(s, factor);
  }
}

// The two elements of RoPE pair i (i < half): (i, i + half) rotate-half, (2i, 2i + 1) interleaved.
__device__ __forceinline__ int rope_first(int i, int half, bool interleaved) { return interleaved ? 2 * i : i; }
__device__ __forceinline__ int rope_second(int i, int half, bool interleaved) { return interleaved ? 2 * i + 1 : i + half; }

// (x0, x1) rotated by the angle of (c, s).
__device__ __forceinline__ void rope_rotate(float x0, float x1, float c, float s, float& y0, float& y1) {
  y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
  y1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
}

#endif  // __CUDACC__ || MOE_CUDA_EMULATED

}  // namespace moe::cuda
