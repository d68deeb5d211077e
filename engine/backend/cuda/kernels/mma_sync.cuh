#pragma once
// Warp-wide tensor-core products whose register layout the PTX ISA documents (mma.sync, compute
// capability 8.0+), for kernels that keep tiles in registers from one product to the next: an
// accumulator of one product becomes an operand of the next without passing through shared memory,
// which wmma fragments (layout unspecified) do not allow.
//
// mma_tf32_1688: d += A · B, A 16×8 and B 8×8 in TF32 (F32 registers; the tensor cores read their upper
// 19 bits, so round with to_tf32 first), d 16×8 in F32. With g = lane / 4 and t = lane % 4:
//   a[0] = A[g][t]   a[1] = A[g+8][t]   a[2] = A[g][t+4]   a[3] = A[g+8][t+4]
//   b[0] = B[t][g]   b[1] = B[t+4][g]
//   d[0], d[1] = D[g][2t], D[g][2t+1]      d[2], d[3] = D[g+8][2t], D[g+8][2t+1]
// The whole warp calls it, converged. The CUDA emulator implements the same layout
// (tests/cuda_emulator/mma_sync.h).
#if defined(__CUDACC__) || defined(MOE_CUDA_EMULATED)

#include <mma.h>

#include <cstdint>

namespace moe::cuda {

// v rounded to TF32 (10-bit mantissa; to nearest, ties away from zero), as an operand register.
__device__ __forceinline__ uint32_t to_tf32(float v) { return __float_as_uint(nvcuda::wmma::__float_to_tf32(v)); }

__device__ __forceinline__ void mma_tf32_1688(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(MOE_CUDA_EMULATED)
  ::moe_emu::mma_m16n8k8_tf32(d, a, b);
#elif defined(__CUDA_ARCH__)
  asm(  // no side effects: the compiler may schedule it like arithmetic
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

}  // namespace moe::cuda

#endif  // __CUDACC__ || MOE_CUDA_EMULATED
