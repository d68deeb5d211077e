#pragma once
// The model's weights on the GPU, laid out for the kernels: q, k and v concatenated into one [q + 2kv,
// hidden] matrix (one GEMM per layer; with latent attention q_a or q_proj, then kv_a), gate and up of the dense MLP and shared expert likewise
// ([2·ffn, hidden], one GEMM), each layer's routed experts in one block with device tables of their
// pointers (the expert kernels look experts up by the router's ids on the GPU). Matrices keep the
// checkpoint's dtype where their part has one of F32, F16 or BF16 throughout, and GGUF's block types
// where every matrix a kernel takes together shares one (q/k/v of a layer, its experts' gate and up);
// GPT-OSS's MXFP4 experts go as ggml's MXFP4 blocks; the rest (mixed dtypes) is expanded to BF16 on the way
// (gpu_weight_dtypes, gpu_group_dtype: gpu_memory_plan.h).
// Vectors (norms, biases) are F32. Each block is allocated through the allocator under its part and
// layer, so the memory view shows where the GiB go.
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/backend/cuda/device_allocator.h"
#include "engine/backend/cuda/device_matrix.h"
#include "engine/backend/cuda/kernels/experts.cuh"

namespace moe {
class Model;
struct WeightMatrix;
}

namespace moe::cuda {

struct DeviceLayer {
  DeviceMatrix qkv, o;
  const float* q_bias = nullptr;  // the three biases are consecutive: q, then k, then v
  const float* k_bias = nullptr;
  const float* v_bias = nullptr;
  const float* o_bias = nullptr;
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  const float* sinks = nullptr;  // [n_heads] each head's sink logit (GPT-OSS), or null
  // Multi-head latent attention: qkv is [q_a (or q_proj) ; kv_a] (one GEMM), q_b follows q_a's norm,
  // kv_b holds each head's W_UK and W_UV (attention_latent.cuh).
  DeviceMatrix q_b, kv_b;
  const float* q_a_bias = nullptr;
  const float* kv_a_bias = nullptr;
  const float* q_a_norm = nullptr;
  const float* kv_a_norm = nullptr;
  // MoE layers
  DeviceMatrix router;
  const float* router_bias = nullptr;  // selection bias, or null
  const float* router_logit_bias = nullptr;  // the router's own bias on the logits (GPT-OSS), or null
  ExpertTable experts;  // with the experts' biases and the clamped gate when the model has them
  DeviceMatrix shared_gate_up, shared_down, shared_gate;  // empty when absent
  // Dense layers
  DeviceMatrix mlp_gate_up, mlp_down;
};

struct DeviceWeights {
  DType dtype = DType::BF16;
  DeviceMatrix embed, head;  // head is the embedding when tied
  const float* final_norm = nullptr;
  std::vector<DeviceLayer> layers;
};

// The GGML block types the device holds as blocks (gpu_group_dtype), in DType order; empty when every
// matrix is F32, F16 or BF16.
std::vector<DType> block_types(const DeviceWeights& w);

// Copies the host matrix m to device memory dst (matrix_bytes(to, rows, cols) of it) as `to`: its own
// dtype (a plain copy), BF16 for any dtype (rows expanded on the host: dequantize_row, MXFP4's
// decoder), or for MXFP4 ggml's MXFP4 blocks (rearranged, mxfp4_to_ggml_blocks). Pieces of at most 64 MiB;
// progress(stored bytes) after each.
void put_matrix(void* dst, const WeightMatrix& m, DType to, const std::function<void(size_t)>& progress = {});

// Uploads (or, for a synthetic model, fills with random values on the GPU) every weight. progress(done,
// total) is called between pieces of at most 64 MiB; returning false stops with EngineError (field
// "cancelled"). Throws EngineError naming the tensor group on out of memory, and when q/k/v or gate/up of
// one layer do not share a width.
DeviceWeights upload_weights(const Model& model, DeviceAllocator& allocator, cudaStream_t stream,
                             const std::function<bool(size_t, size_t)>& progress);

}  // namespace moe::cuda
