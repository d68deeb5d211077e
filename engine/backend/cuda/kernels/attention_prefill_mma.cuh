#pragma once
// Prefill attention with TF32 tensor-core products kept in registers (mma.sync), FlashAttention-2's
// scheme: the fast path of attention_prefill (attention.cuh) for BF16/F16 models. Internal to the
// attention kernels; attention.cu decides when it runs.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/kernels/attention.cuh"

namespace moe::cuda {

// Whether prefill_mma takes this shape and these buffers: head_dim 16, 32, 64 or 128; q rows 16-byte
// aligned (q and q_stride); K and V caches 16-byte aligned; out 8-byte aligned.
bool prefill_mma_fits(const AttentionShape& s, const float* q, int64_t q_stride, const void* k_cache,
                      const void* v_cache, const float* out);

// attention_prefill's outputs (no statistics), with q, K, V and the softmax weights rounded to TF32 for
// the products, F32 accumulation and an F32 softmax, as the WMMA kernel. Requires prefill_mma_fits.
void prefill_mma(const float* q, int64_t q_stride, int T, const void* k_cache, const void* v_cache,
                 const int32_t* pos0, const AttentionShape& s, float* out, cudaStream_t stream);

}  // namespace moe::cuda
