#pragma once
// Routed experts on the GPU (SwiGLU: down(silu(gate·x) ⊙ up·x)), reading the router's selection from
// device memory, so a decode step never waits for the host.
//   decode (T = 1): matrix-vector products over the k selected experts, gate and up fused with SiLU
//   prefill: the T·slots (token, expert) pairs are grouped by expert on the GPU (counting sort), each
//     expert runs one GEMM over its tokens, and each token's outputs are summed in slot order
//     (deterministic: no atomics on the outputs).
// Weights are BF16, F16 or F32, or a GGML block type decoded where it lies (block_dot.cuh: decode reads
// the blocks in registers, prefill stages them as BF16, or F16 for F16-valued blocks, for the tensor cores); activations and
// accumulation F32.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "engine/backend/cuda/kernels/norm.cuh"
#include "engine/common/dtype.h"

namespace moe::cuda {

// Device arrays of E device pointers (one matrix per expert): gate [ffn, hidden], up [ffn, hidden],
// down [hidden, ffn], row-major.
struct ExpertTable {
  const void* const* gate = nullptr;
  const void* const* up = nullptr;
  const void* const* down = nullptr;
  DType dtype = DType::BF16;       // gate and up
  DType down_dtype = DType::BF16;  // down: a GGUF file may store it in another block type (Q4_K_M: Q6_K)
  int n_experts = 0, hidden = 0, ffn = 0;
  // GPT-OSS: the projections' biases, F32, [E][ffn] for gate and up and [E][hidden] for down (all three
  // or none: null), and the clamped gate where glu_limit > 0:
  //   h = (clamp(u, ±glu_limit) + 1) · g · σ(glu_alpha · g),  g = min(gate, glu_limit)
  // in place of silu(gate) · up (the CPU backend's swiglu).
  const float* gate_bias = nullptr;
  const float* up_bias = nullptr;
  const float* down_bias = nullptr;
  float glu_limit = 0.0f, glu_alpha = 1.0f;
};

// Below, silu(gate_e·x) ⊙ (up_e·x) stands for the table's gated product, biases and clamp included, and
// down_e·h for the down projection plus its bias.
// Decode. For each slot k < slots with e = selected[k] ≥ 0: h[k][:] = silu(gate_e·x) ⊙ (up_e·x);
// h[k] = 0 for −1. x: [hidden], h: [slots][ffn].
void experts_gate_up_decode(const ExpertTable& t, const int32_t* selected, int slots, const float* x, float* h,
                            cudaStream_t stream);
// y[:] = Σ_k weights[k] · (down_e·h[k]) over slots with e ≥ 0, summed in slot order; y is overwritten.
// With `then` (its counter set), the kernel's last block goes on with that residual add + RMSNorm of y
// (hidden long), as add_rmsnorm_rows would after it.
void experts_down_decode(const ExpertTable& t, const int32_t* selected, const float* weights, int slots,
                         const float* h, float* y, cudaStream_t stream, const ResidualNorm* then = nullptr);

// Prefill. `grouping` is a device workspace of expert_grouping_ints(T, slots, E) ints that
// group_by_expert fills (its layout is private to experts.cu).
size_t expert_grouping_ints(int T, int slots, int n_experts);
void group_by_expert(const int32_t* selected, int T, int slots, int n_experts, int32_t* grouping,
                     cudaStream_t stream);
// h[pair][:] = silu(gate_e·x[token]) ⊙ (up_e·x[token]) for every (token, expert e) pair. x: [T][hidden]
// F32; h: [T·slots][ffn] in the weights' compute dtype (BF16 for block types but F16-valued ones; pairs beyond the number
// selected are left untouched). 16-bit and block-typed weights multiply x rounded to that dtype on the
// tensor cores: x16 is a device workspace of T·hidden values of it (unused, may be null, for F32
// weights). Gate/up and down must share a compute dtype.
void experts_gate_up_grouped(const ExpertTable& t, const int32_t* grouping, int T, int slots, const float* x,
                             void* x16, void* h, cudaStream_t stream);
// yp[pair][:] = down_e·h[pair], h as gate/up wrote it. yp: [T·slots][hidden] F32.
void experts_down_grouped(const ExpertTable& t, const int32_t* grouping, int T, int slots, const void* h,
                          float* yp, cudaStream_t stream);
// y[t] = Σ_k weights[t][k] · yp[pair of (t, k)] in slot order (slots with −1 skipped); y: [T][hidden],
// overwritten.
void experts_combine(const int32_t* grouping, const float* weights, int T, int slots, int hidden, const float* yp,
                     float* y, cudaStream_t stream);

}  // namespace moe::cuda
