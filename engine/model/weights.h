#pragma once
// Where every weight of a model lives: pointers into the mmap'd checkpoint (or into synthetic memory),
// with their stored dtype and PyTorch shape. Small vectors (norms, biases) are copied to F32 at load.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/common/dtype.h"
#include "engine/common/tile_scales.h"

namespace moe {

// A 2-D weight [rows = out, cols = in], row-major, read in place.
struct WeightMatrix {
  const void* data = nullptr;  // MXFP4: the blocks of row 0
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  // MXFP4 only: the scales of row 0, and how many stored rows apart this matrix's rows lie in the
  // blocks and scales tensors (GPT-OSS interleaves its gate and up rows: 2).
  const uint8_t* scales = nullptr;
  int64_t row_step = 1;
  // F8_E4M3 and the packed integers only: its tile scales (engine/common/tile_scales.h), F32 copies made at load.
  TileScales tiles = {};
  // The stored values' bytes (scales kept apart not counted: an FP8 matrix's, 4 bytes per 16,384 weights in the
  // releases; a packed integer matrix's, 2 bytes per group of 32 to 128 weights).
  size_t bytes() const { return matrix_bytes(dtype, rows, cols); }
  // The copies of its tile scales (F32), zero points (int8) and input order (int32) the loader keeps (FP8 and packed
  // integers; 0 for other matrices).
  size_t scale_bytes() const {
    const size_t n = tiles ? size_t(tile_count(rows, tiles.tile_rows) * tiles.grid_cols) : 0;
    return n * sizeof(float) + (tiles.zero_points ? n : 0) + (tiles.input_order ? size_t(cols) * sizeof(int32_t) : 0);
  }
  // What the matrix takes in memory: its values and its scales' copies.
  size_t held_bytes() const { return bytes() + scale_bytes(); }
  explicit operator bool() const { return data != nullptr; }
};

struct SwiGluWeights {
  WeightMatrix gate;  // [ffn, hidden]
  WeightMatrix up;    // [ffn, hidden]
  WeightMatrix down;  // [hidden, ffn]
  std::vector<float> gate_bias, up_bias, down_bias;  // [ffn], [ffn], [hidden]; empty when absent (GPT-OSS has them)
};

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden]
  std::vector<float> ffn_norm;   // [hidden]
  WeightMatrix q, k, v;          // [nh·hd, hidden], [nkv·hd, hidden] ×2
  WeightMatrix o;                // [hidden, nh·hd]
  std::vector<float> q_bias, k_bias, v_bias, o_bias;  // empty when absent
  std::vector<float> q_norm, k_norm;  // [hd] (per head) or [nh·hd]/[nkv·hd] (whole projection); empty = none
  std::vector<float> sinks;          // [nh]: each head's sink logit (GPT-OSS); empty = none
  // MLA (k and v stay empty; q is q_proj, or q_b_proj [nh·hd, q_lora] after q_a → q_a_norm; o reads nh·v):
  WeightMatrix q_a;                    // [q_lora, hidden]; empty without q-LoRA
  std::vector<float> q_a_norm, q_a_bias;  // [q_lora]
  WeightMatrix kv_a;                   // [kv_lora + rope, hidden]: the latent c, then k_pe
  std::vector<float> kv_a_norm, kv_a_bias;  // [kv_lora], [kv_lora + rope]
  WeightMatrix kv_b;                   // [nh·(nope + v), kv_lora]: per head, W_UK rows then W_UV rows

  // MoE layers
  WeightMatrix router;                 // [n_experts, hidden]
  std::vector<float> router_bias;      // selection bias (DeepSeek-V3 style); empty = none
  std::vector<float> router_logit_bias;  // the router layer's own bias, added to the logits (GPT-OSS); empty = none
  std::vector<SwiGluWeights> experts;  // n_experts
  SwiGluWeights shared;                // shared expert (rows == 0 when absent)
  WeightMatrix shared_gate;            // [1, hidden] (Qwen2-MoE), empty when absent

  // Dense layers
  SwiGluWeights mlp;
};

struct ModelWeights {
  WeightMatrix embed;              // [vocab, hidden]
  std::vector<float> final_norm;   // [hidden]
  WeightMatrix lm_head;            // [vocab, hidden]; the embedding when tied
  std::vector<LayerWeights> layers;
};

// What a matrix is part of (the GPU upload gives each part one dtype).
enum class MatrixPart { Embeddings, Head, Attention, Router, RoutedExperts, SharedExperts, DenseMlp };

// Calls f(part, matrix) for every matrix the model holds: empty ones (absent parts) are skipped, and the
// head only counts when it is not the tied embedding.
template <typename F>
void for_each_matrix(const ModelWeights& w, bool tied_embeddings, F&& f) {
  auto visit = [&f](MatrixPart part, const WeightMatrix& m) {
    if (m.rows > 0) f(part, m);
  };
  auto mlp = [&visit](MatrixPart part, const SwiGluWeights& s) {
    for (const WeightMatrix* m : {&s.gate, &s.up, &s.down}) visit(part, *m);
  };
  visit(MatrixPart::Embeddings, w.embed);
  if (!tied_embeddings) visit(MatrixPart::Head, w.lm_head);
  for (const LayerWeights& L : w.layers) {
    for (const WeightMatrix* m : {&L.q_a, &L.q, &L.k, &L.v, &L.kv_a, &L.kv_b, &L.o}) visit(MatrixPart::Attention, *m);
    visit(MatrixPart::Router, L.router);
    for (const SwiGluWeights& e : L.experts) mlp(MatrixPart::RoutedExperts, e);
    mlp(MatrixPart::SharedExperts, L.shared);
    visit(MatrixPart::SharedExperts, L.shared_gate);
    mlp(MatrixPart::DenseMlp, L.mlp);
  }
}

}  // namespace moe
