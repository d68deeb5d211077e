#pragma once
// Row-wise kernels on F32 activations: embedding gather, RMSNorm (alone and fused with the residual
// add), row L2 norms for hidden.norm, dtype conversion for cuBLAS inputs, and the SwiGLU product.
// Every function enqueues on `stream` and returns at once; pointers are device pointers. A row is
// `n` contiguous floats; row t starts at t·n unless a stride is given.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/device_matrix.h"

namespace moe::cuda {

// x[t, :] = f32(embed[tokens[t], :]) for t < T. tokens is a device array (ids already checked).
void embed_rows(const DeviceMatrix& embed, const int32_t* tokens, int T, float* x, cudaStream_t stream);

// out[t] = x[t] · w / sqrt(mean(x[t]²) + eps). out may be x. The mean is accumulated in F32 by a tree
// reduction (the CPU accumulates in double; both are far inside the parity tolerance).
void rmsnorm_rows(const float* x, const float* w, float* out, int T, int n, float eps, cudaStream_t stream);

// The residual add fused with the next norm: x[t] += y[t] (+ bias, [n], may be null); then, when w is
// not null, out[t] = RMSNorm(x[t]) · w. out must not alias x or y. When norm_out is not null, also
// norm_out[t · norm_stride] = ‖x[t]‖₂ of the updated x (the hidden.norm hook), from the same sum of
// squares the norm uses: no kernel of its own per layer.
void add_rmsnorm_rows(float* x, const float* y, const float* bias, const float* w, float* out, int T, int n,
                      float eps, cudaStream_t stream, float* norm_out = nullptr, int64_t norm_stride = 1);

// The same residual add + RMSNorm for one row (T = 1), run by the last block of the decode kernel that
// writes y (linear_decode, experts_down_decode) instead of by a kernel of its own (last_block.cuh).
// The caller fills the first part; bind_residual_norm fills n and vec for the kernel's output y.
struct ResidualNorm {
  float* x = nullptr;           // [n] the residual stream, updated in place
  const float* bias = nullptr;  // [n], or null
  const float* w = nullptr;     // [n] the next norm's weight, or null (the add only)
  float* out = nullptr;         // [n] RMSNorm(x) · w; must not alias x or y
  float* norm_out = nullptr;    // ‖x‖₂ of the updated x (hidden.norm), or null
  float eps = 0.0f;
  unsigned* counter = nullptr;  // a device word that is 0 between launches (last_block.cuh)
  int n = 0;                    // y's length
  bool vec = false;             // 16-byte loads (n % 4 == 0, x, y, bias, w and out aligned)
};
ResidualNorm bind_residual_norm(const ResidualNorm& t, const float* y, int n);

// out[i] = dtype(x[i]) for i < count, with round-to-nearest-even (dtype: BF16, F16 or F32 = copy).
void convert_f32(const float* x, void* out, DType dtype, int64_t count, cudaStream_t stream);

// SwiGLU on rows laid out [gate (ffn) | up (ffn)] (one GEMM against the concatenated gate/up weight):
// out[t, i] = silu(gu[t, i]) · gu[t, ffn + i], out is [T, ffn] and must not alias gu.
void silu_mul_rows(const float* gu, int T, int ffn, float* out, cudaStream_t stream);

// y[t] += g_t · ye[t] for t < T, rows of n, with g_t = sigmoid(z[t]) when z is not null (the shared
// expert's gate, Qwen2-MoE) and 1 otherwise. When gate_out is not null, g_t is also written to
// gate_out[t · gate_stride] (router.shared_gate).
void add_gated_rows(float* y, const float* ye, const float* z, int T, int n, float* gate_out, int64_t gate_stride,
                    cudaStream_t stream);

}  // namespace moe::cuda
