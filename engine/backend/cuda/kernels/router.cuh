#pragma once
// The fused router (SPECS.md §5, interventions.h): from the router logits of T tokens to the selected
// experts and their weights, and the routing record when one is asked for, with no host round trip.
// Exactly the CPU backend's semantics (moe_block / record_routing in cpu_backend.cpp):
//   logits += logit_bias (the model's) + user_bias; logits[masked] = −inf; p = softmax or sigmoid (F32, over all experts)
//   selection: forced experts first (given order, duplicates once), then the largest p + selection_bias
//     among the rest (masked excluded), ties to the lower id, until top_k are chosen; group-limited
//     (n_group > 1, topk_group < n_group): only among the experts of the topk_group groups whose
//     candidates score best (their best biased score, or the sum of their best two; ties to the lower
//     group), and from the other groups only when masks leave too few there
//   weights: p of the selection, divided by their sum when renormalize (and the sum > 0), × routed_scale
//   record: ids and weights in descending weight order (stable: equal weights keep slot order), −1 / 0
//     pad slots ≥ top_k; entropy of p / Σp normalised by log E (0 when E = 1); margin p1 − p2 of p / Σp;
//     probs: p itself (after bias and masks)
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/device_matrix.h"

namespace moe::cuda {

struct RouterParams {
  int n_experts = 0;       // E ≤ 1024
  int top_k = 0;           // k in force for this layer (1 … E)
  int slots = 0;           // row width of selected / weights / record (≥ top_k; the largest k in force)
  bool softmax = true;     // else sigmoid
  bool renormalize = false;
  float routed_scale = 1.0f;
  int n_group = 1;         // experts in n_group equal groups (1: no group limit)
  int topk_group = 1;      // groups kept (≤ n_group)
  bool group_top2 = true;  // a group's score: the sum of its two best biased scores, else its best
  const float* logit_bias = nullptr;      // [E] the router layer's own bias, added to the logits (GPT-OSS), or null
  const float* selection_bias = nullptr;  // [E] model's bias for selection only (DeepSeek-V3), or null
  const float* user_bias = nullptr;       // [E] intervention bias on the logits, or null
  const int32_t* masked = nullptr;        // [n_masked] device
  int n_masked = 0;
  const int32_t* forced = nullptr;        // [n_forced] device, in order
  int n_forced = 0;
};

struct RoutingOutput {
  int32_t* selected = nullptr;  // [T][slots] slot order (forced first); −1 pads
  float* weights = nullptr;     // [T][slots]; 0 pads
  // The record (each may be null), StepRecord layout [T][M][…] at MoE-layer ordinal m.
  int n_moe_layers = 0;
  int moe_ordinal = 0;
  int32_t* rec_ids = nullptr;      // [T][M][slots]
  float* rec_weights = nullptr;    // [T][M][slots]
  float* rec_entropy = nullptr;    // [T][M]
  float* rec_margin = nullptr;     // [T][M]
  float* rec_probs = nullptr;      // [T][M][E]
};

// logits: [T][E] F32 (the router GEMM's output). One warp per token.
void route(const float* logits, int T, const RouterParams& p, const RoutingOutput& out, cudaStream_t stream);

// Decode (T = 1): logits = W·x (W: [E][hidden], computed as linear_decode computes them) and route() on
// them, in one kernel: the last block to finish its rows routes (last_block.cuh). counter: a device word
// that is 0 between launches.
void route_decode(const DeviceMatrix& w, const float* x, float* logits, const RouterParams& p, const RoutingOutput& out,
                  unsigned* counter, cudaStream_t stream);

}  // namespace moe::cuda
