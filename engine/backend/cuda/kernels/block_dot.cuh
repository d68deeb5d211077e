#pragma once
// Weights in GGML's block types (Q4_K, Q6_K, Q8_0, IQ4_XS, MXFP4_GGML, ...) read where they lie in device
// memory and decoded in registers by the CPU's own decoders (engine/common/ggml_decode.h), so a
// quantized model takes its file's size on the GPU. The unit is a run of 8 consecutive values (one
// 16-byte chunk of BF16 once decoded): it always lies in one 32-value group of one block.
//   warp_block_dots: the decode GEMVs (linear.cu, experts.cu). Lane l takes runs l, l + 32, …, so a warp
//     reads a row's blocks front to back and x (F32, often in shared memory) in consecutive 32-byte pieces
//     across the lanes (no bank conflicts).
//   decode_run_16: one run as 8 16-bit values of the type's compute dtype (gpu_compute_dtype: BF16, or F16 for
//     F16-valued blocks) — what the prefill expert GEMM stages for the tensor cores and what dequantize_rows
//     writes for cuBLAS.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/kernels/warp_dot.cuh"
#include "engine/common/ggml_decode.h"

namespace moe::cuda {

constexpr int kBlockRun = 8;  // values per decoded run

// Bytes of one row of n values of block type D.
template <class D>
__host__ __device__ inline size_t block_row_bytes(int64_t n) {
  return size_t(n / D::kValues) * D::kBytes;
}

// Values [v, v + 8) of a row of block type D starting at `row` (v a multiple of 8).
template <class D>
__device__ __forceinline__ void decode_run(const uint8_t* row, int64_t v, float (&out)[kBlockRun]) {
  D::template run<kBlockRun>(row + size_t(v / D::kValues) * D::kBytes, int(v % D::kValues), out);
}

template <class D, int NR>
__device__ __forceinline__ void warp_block_dots_of(const void* const* m, int64_t r, const float* const* x, int n, int lane,
                                                   float (&acc)[NR]) {
  const size_t rb = block_row_bytes<D>(n);
  bool vec = true;
#pragma unroll
  for (int i = 0; i < NR; ++i) vec = vec && aligned16(x[i]);
#pragma unroll 2
  for (int c = lane; c < n / kBlockRun; c += 32) {
#pragma unroll
    for (int i = 0; i < NR; ++i) {
      float w[kBlockRun];
      decode_run<D>(static_cast<const uint8_t*>(m[i]) + size_t(r) * rb, int64_t(c) * kBlockRun, w);
      const float* xv = x[i] + size_t(c) * kBlockRun;
      if (vec) {
        const float4 a = reinterpret_cast<const float4*>(xv)[0], b = reinterpret_cast<const float4*>(xv)[1];
        acc[i] += w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y + w[6] * b.z + w[7] * b.w;
      } else {
#pragma unroll
        for (int k = 0; k < kBlockRun; ++k) acc[i] += w[k] * xv[k];
      }
    }
  }
}

// Lane partial sums of NR dot products: row r of each of the NR matrices m[i] (block type t, n values per
// row, n a multiple of the block) against x[i] (F32, n long). Sum across the warp with warp_sum.
template <int NR>
__device__ __forceinline__ void warp_block_dots(DType t, const void* const* m, int64_t r, const float* const* x, int n,
                                                int lane, float (&acc)[NR]) {
  ggml::visit_block_type(t, [&](auto d) { warp_block_dots_of<decltype(d), NR>(m, r, x, n, lane, acc); });
}

// f as the 16 bits of a BF16 or (f16) an F16, rounded to nearest.
__device__ __forceinline__ unsigned short bits16(float f, bool f16) {
  unsigned short b;
  if (f16) {
    const __half h = __float2half_rn(f);
    memcpy(&b, &h, 2);
  } else {
    const __nv_bfloat16 h = __float2bfloat16_rn(f);
    memcpy(&b, &h, 2);
  }
  return b;
}

// Values [v, v + 8) of a row of block type t starting at `row`, as 8 values of gpu_compute_dtype(t) (BF16, or F16
// for the F16-scaled packed integers' blocks; round to nearest) packed in 16 bytes, value v in the low half of .x.
__device__ __forceinline__ uint4 decode_run_16(DType t, const uint8_t* row, int64_t v) {
  float f[kBlockRun] = {};
  ggml::visit_block_type(t, [&](auto d) { decode_run<decltype(d)>(row, v, f); });
  const bool f16 = ggml::f16_valued_block(t);
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) w[i] = uint32_t(bits16(f[2 * i], f16)) | (uint32_t(bits16(f[2 * i + 1], f16)) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}

}  // namespace moe::cuda
