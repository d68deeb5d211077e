#include "engine/backend/gpu_memory_plan.h"

#include <algorithm>
#include <cstdio>

#include "engine/common/fp8.h"
#include "engine/common/ggml_quants.h"
#include "engine/common/packed_int.h"

namespace moe {
namespace {

std::string gib(size_t bytes) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(size_t(1) << 30));
  return buf;
}

// The stored dtypes of one part's matrices, folded into the part's device dtype: a mix is BF16, or F32 where it
// holds scaled weights whose values BF16 would round (fine-grained FP8; packed integers with F32 or F16 scales).
// Packed integers count as the dtype their values are rounded to (their scales').
class PartDtype {
 public:
  void add(const WeightMatrix& m) {
    const DType t = is_packed_int(m.dtype) ? m.tiles.round_to : m.dtype;
    if (!seen_) first_ = t;
    mixed_ = mixed_ || t != first_;
    scaled_ = scaled_ || m.dtype == DType::F8_E4M3 || (is_packed_int(m.dtype) && t != DType::BF16);
    seen_ = true;
  }
  DType device(DType none) const {
    return !seen_ ? none : !mixed_ ? gpu_weight_dtype(first_) : scaled_ ? DType::F32 : DType::BF16;
  }

 private:
  bool seen_ = false, mixed_ = false, scaled_ = false;
  DType first_ = DType::BF16;
};

}  // namespace

DType gpu_weight_dtype(DType stored) {
  if (stored == DType::F8_E4M3) return DType::F32;
  return stored == DType::F32 || stored == DType::F16 || stored == DType::BF16 ? stored : DType::BF16;
}

// The matrices as upload_weights takes them (engine/backend/cuda/device_weights.cpp).
GpuWeightDtypes gpu_weight_dtypes(const ModelSpec& s, const ModelWeights& w) {
  PartDtype parts[7];  // by MatrixPart
  for_each_matrix(w, s.tied_embeddings, [&parts](MatrixPart part, const WeightMatrix& m) { parts[int(part)].add(m); });
  auto part = [&parts](MatrixPart p) -> const PartDtype& { return parts[int(p)]; };
  GpuWeightDtypes d;
  d.embeddings = part(MatrixPart::Embeddings).device(DType::BF16);
  d.head = s.tied_embeddings ? d.embeddings : gpu_group_dtype({&w.lm_head}, part(MatrixPart::Head).device(d.embeddings));
  const DType rest = d.embeddings;  // for parts this model does not have
  d.attention = part(MatrixPart::Attention).device(rest);
  d.router = part(MatrixPart::Router).device(rest);
  d.routed_experts = part(MatrixPart::RoutedExperts).device(rest);
  d.shared_experts = part(MatrixPart::SharedExperts).device(rest);
  d.dense_mlp = part(MatrixPart::DenseMlp).device(rest);
  return d;
}

DType gpu_group_dtype(const std::vector<const WeightMatrix*>& group, DType part) {
  if (group.empty()) return part;
  if (group.front()->dtype == DType::MXFP4) {  // rows rearranged one by one, so interleaved rows are fine
    for (const WeightMatrix* m : group)
      if (m->dtype != DType::MXFP4) return part;
    return DType::MXFP4_GGML;
  }
  if (group.front()->dtype == DType::F8_E4M3) {  // each row's blocks take their tiles' scales on upload
    for (const WeightMatrix* m : group)
      if (m->dtype != DType::F8_E4M3 || !fp8_fits_blocks(m->cols, m->tiles.tile_cols)) return part;
    return DType::F8_E4M3_B128;
  }
  if (is_packed_int(group.front()->dtype)) {  // each block takes its group's scale (and zero point) on upload
    const DType blocks = packed_int_block_type(group.front()->dtype, group.front()->cols, group.front()->tiles);
    for (const WeightMatrix* m : group)
      if (packed_int_block_type(m->dtype, m->cols, m->tiles) != blocks) return part;
    return is_packed_int(blocks) ? part : blocks;
  }
  if (!is_block_quantized(group.front()->dtype)) return part;
  for (const WeightMatrix* m : group)
    if (m->dtype != group.front()->dtype || m->row_step != 1) return part;
  return group.front()->dtype;
}

bool GpuLayerDtypes::dense_blocks() const {
  for (DType t : {qkv, o, q_b, shared_gate_up, shared_down, shared_gate, mlp_gate_up, mlp_down})
    if (is_block_quantized(t)) return true;
  return false;
}

GpuLayerDtypes gpu_layer_dtypes(const GpuWeightDtypes& p) {
  GpuLayerDtypes d;
  d.qkv = d.o = d.q_b = d.kv_b = p.attention;
  d.router = p.router;
  d.expert_gate_up = d.expert_down = p.routed_experts;
  d.shared_gate_up = d.shared_down = d.shared_gate = p.shared_experts;
  d.mlp_gate_up = d.mlp_down = p.dense_mlp;
  return d;
}

// The groups as upload_weights stacks them (engine/backend/cuda/device_weights.cpp).
GpuLayerDtypes gpu_layer_dtypes(const ModelSpec& s, const ModelWeights& w, const GpuWeightDtypes& p, int l) {
  GpuLayerDtypes d = gpu_layer_dtypes(p);
  const LayerWeights& L = w.layers[size_t(l)];
  if (s.attn.is_mla()) {
    const bool q_lora = L.q_a.rows > 0;
    d.qkv = gpu_group_dtype({q_lora ? &L.q_a : &L.q, &L.kv_a}, p.attention);
    if (q_lora) d.q_b = gpu_group_dtype({&L.q}, p.attention);
  } else {
    d.qkv = gpu_group_dtype({&L.q, &L.k, &L.v}, p.attention);
  }
  d.o = gpu_group_dtype({&L.o}, p.attention);
  if (s.layer_is_moe[size_t(l)]) {
    std::vector<const WeightMatrix*> gate_up, down;
    for (const auto& e : L.experts) gate_up.insert(gate_up.end(), {&e.gate, &e.up}), down.push_back(&e.down);
    d.expert_gate_up = gpu_group_dtype(gate_up, p.routed_experts);
    d.expert_down = gpu_group_dtype(down, p.routed_experts);
    d.shared_gate_up = gpu_group_dtype({&L.shared.gate, &L.shared.up}, p.shared_experts);
    d.shared_down = gpu_group_dtype({&L.shared.down}, p.shared_experts);
    d.shared_gate = gpu_group_dtype({&L.shared_gate}, p.shared_experts);
  } else {
    d.mlp_gate_up = gpu_group_dtype({&L.mlp.gate, &L.mlp.up}, p.dense_mlp);
    d.mlp_down = gpu_group_dtype({&L.mlp.down}, p.dense_mlp);
  }
  return d;
}

size_t GpuActivations::bytes(size_t wsize) const {
  const size_t floats = x + a + y + qkv + q_lora + q_heads + q_absorbed + latent_out + attn + gate_up + ffn +
                        router_logits + route_weights + expert_h + expert_out + shared_gate + logits;
  return floats * 4 + gemm_in * wsize + (selected + tokens) * 4;
}

size_t GpuMemoryPlan::weight_bytes() const {
  size_t n = 0;
  for (const auto& u : weights) n += u.bytes;
  return n;
}

std::string GpuMemoryPlan::check_fits(size_t free_bytes) const {
  if (total_bytes() <= free_bytes) return "";
  std::string s = "needs " + gib(total_bytes()) + " (weights " + gib(weight_bytes()) + ", KV cache " + gib(kv_cache_bytes) +
                  " for " + std::to_string(capacity) + " tokens, activations and workspace " +
                  gib(activation_bytes + workspace_bytes) + ") but the GPU has " + gib(free_bytes) + " free";
  // Name the largest part, the first thing to offload or shrink.
  const auto largest = std::max_element(weights.begin(), weights.end(),
                                        [](const MemoryUse& a, const MemoryUse& b) { return a.bytes < b.bytes; });
  if (largest != weights.end() && largest->bytes > free_bytes / 2)
    s += ": the " + largest->part + " alone are " + gib(largest->bytes);
  else if (kv_cache_bytes > free_bytes / 2)
    s += ": the KV cache alone is " + gib(kv_cache_bytes) + " (a shorter context needs less)";
  return s;
}

GpuMemoryPlan plan_gpu_memory(const ModelSpec& s, const GpuPlanOptions& o) {
  GpuMemoryPlan p;
  p.capacity = std::max(1, std::min(o.context, s.max_positions > 0 ? s.max_positions : o.context));
  p.slots = std::max(1, o.slots > 0 ? o.slots : s.moe.top_k);
  GpuWeightDtypes dt;
  if (o.part_dtypes) {
    dt = *o.part_dtypes;
  } else {
    const DType one = gpu_weight_dtype(o.weight_dtype);
    dt = GpuWeightDtypes{one, one, one, one, one, one, one};
  }
  // The GEMM inputs are converted to any part's compute dtype: sized for the widest.
  p.weight_dtype_size = 0;
  for (DType t : {dt.embeddings, dt.head, dt.attention, dt.router, dt.routed_experts, dt.shared_experts, dt.dense_mlp})
    p.weight_dtype_size = std::max(p.weight_dtype_size, dtype_size(gpu_compute_dtype(t)));
  p.kv_dtype_size = dtype_size(o.kv_dtype);
  const size_t H = size_t(s.hidden), q = size_t(s.q_dim()), kv = size_t(s.kv_dim());
  const size_t V = size_t(s.vocab_size), E = size_t(std::max(0, s.moe.n_experts));
  const size_t L = size_t(s.n_layers), M = size_t(s.n_moe_layers());
  const size_t eff = size_t(s.moe.expert_ffn), sff = size_t(s.moe.shared_ffn), dff = size_t(s.dense_ffn);
  const size_t out_dim = size_t(s.attn_out_dim());
  auto mb = [](DType t, size_t rows, size_t cols) { return rows && cols ? matrix_bytes(t, int64_t(rows), int64_t(cols)) : 0; };

  // Weights: matrices in their groups' device dtypes, vectors (biases, norms) in F32 — as the backend
  // uploads them.
  size_t attention = 0, router = 0, experts = 0, shared = 0, dense = 0, qk_norms = 0;
  bool dense_blocks = false;
  for (int l = 0; l < s.n_layers; ++l) {
    const GpuLayerDtypes ld = o.weights ? gpu_layer_dtypes(s, *o.weights, dt, l) : gpu_layer_dtypes(dt);
    dense_blocks = dense_blocks || ld.dense_blocks();
    if (s.attn.is_mla()) {  // [q_a or q_proj ; kv_a], kv_b, o, q_b; the latent's (and q_a's) norm
      const auto& m = s.attn.mla;
      const size_t ql = size_t(m.q_lora_rank), kl = size_t(m.kv_lora_rank);
      attention += mb(ld.qkv, (ql ? ql : q) + kv, H) +
                   mb(ld.kv_b, size_t(s.attn.n_heads) * size_t(m.qk_nope_dim + m.v_head_dim), kl) + mb(ld.o, H, out_dim) +
                   mb(ld.q_b, q, ql);
      if (s.attn.qkv_bias) attention += (ql + kv) * 4;
      qk_norms += (ql + kl) * 4;
    } else {
      attention += mb(ld.qkv, q + 2 * kv, H) + mb(ld.o, H, q);
      if (s.attn.qkv_bias) attention += (q + 2 * kv) * 4;
      if (s.attn.qk_norm == QkNorm::PerHead) qk_norms += 2 * size_t(s.attn.head_dim) * 4;
      if (s.attn.qk_norm == QkNorm::WholeProjection) qk_norms += (q + kv) * 4;
    }
    if (s.attn.o_bias) attention += H * 4;
    if (s.attn.sinks) attention += size_t(s.attn.n_heads) * 4;
    if (s.layer_is_moe[size_t(l)]) {
      const size_t router_vectors = (s.moe.selection_bias ? 4 : 0) + (s.moe.router_logit_bias ? 4 : 0);
      router += E * (mb(ld.router, 1, H) + router_vectors);
      experts += E * (2 * mb(ld.expert_gate_up, eff, H) + mb(ld.expert_down, H, eff) + (s.moe.expert_bias ? (2 * eff + H) * 4 : 0));
      shared += 2 * mb(ld.shared_gate_up, sff, H) + mb(ld.shared_down, H, sff) +
                (s.moe.shared_gate ? mb(ld.shared_gate, 1, H) : 0);
    } else {
      dense += 2 * mb(ld.mlp_gate_up, dff, H) + mb(ld.mlp_down, H, dff);
    }
  }
  dense_blocks = dense_blocks || (!s.tied_embeddings && is_block_quantized(dt.head));
  p.weights.push_back({"embeddings", -1, mb(dt.embeddings, V, H)});
  p.weights.push_back({"attention", -1, attention});
  p.weights.push_back({"router", -1, router});
  p.weights.push_back({"routed experts", -1, experts});
  p.weights.push_back({"shared experts", -1, shared});
  p.weights.push_back({"dense mlp", -1, dense});
  p.weights.push_back({"norms", -1, (2 * L + 1) * H * 4 + qk_norms});
  p.weights.push_back({"head", -1, s.tied_embeddings ? 0 : mb(dt.head, V, H)});

  p.kv_bytes_per_token = size_t(s.kv_rows_per_token()) * L * kv * p.kv_dtype_size;
  // One buffer per cache (K and V, or the latent rows), each rounded up to the allocator's 256 bytes.
  const size_t per_cache = (L * kv * p.kv_dtype_size * size_t(p.capacity) + 255) & ~size_t(255);
  p.kv_cache_bytes = size_t(s.kv_rows_per_token()) * per_cache;

  const size_t T = size_t(std::max(1, o.prefill_chunk)), K = size_t(p.slots);
  const size_t ffn = std::max({dff, sff, size_t(1)});
  GpuActivations& a = p.activations;
  a.x = a.a = a.y = T * H;
  if (s.attn.is_mla()) {
    const auto& m = s.attn.mla;
    const size_t ql = size_t(m.q_lora_rank), nh = size_t(s.attn.n_heads);
    a.qkv = T * ((ql ? ql : q) + kv);
    a.q_lora = T * ql;
    a.q_heads = ql ? T * q : 0;
    a.q_absorbed = T * nh * kv;
    a.latent_out = T * nh * size_t(m.kv_lora_rank);
    a.attn = T * out_dim;
    a.gemm_in = T * std::max({H, ql, out_dim, ffn, eff});
  } else {
    a.qkv = T * (q + 2 * kv);
    a.attn = T * q;
    a.gemm_in = T * std::max({H, q, ffn, eff});
  }
  a.gate_up = T * 2 * ffn;
  a.ffn = T * ffn;
  a.router_logits = T * std::max<size_t>(E, 1);
  a.selected = a.route_weights = T * K;
  a.expert_h = E ? T * K * eff : 0;
  a.expert_out = E ? T * K * H : 0;
  a.shared_gate = T;
  a.logits = T * V;
  a.tokens = T + 1;
  p.activation_bytes = a.bytes(p.weight_dtype_size);

  // Workspace: cuBLAS, decode attention partials (m, S, B, top-k scores, values per split and head),
  // expert grouping, and the step record at the fullest hook level (device side).
  // (The latent attention's values are its kv_lora latent.)
  const size_t nh = size_t(s.attn.n_heads);
  const size_t hd = size_t(s.attn.is_mla() ? s.attn.mla.kv_lora_rank : s.attn.head_dim);
  const size_t attention_partials = size_t(kDecodeAttentionSplits) * nh * (hd + 4 + 32) * 4;
  const size_t grouping = (2 * (E + 1) + 3 * T * K) * 4;
  const size_t record = T * (M * K * 2 + M * 3 + M * E + 4 * L * nh + L) * 4;
  p.dequant_bytes = dense_blocks ? kDequantScratchBytes : 0;
  p.workspace_bytes = kCublasWorkspaceBytes + attention_partials + grouping + record + p.dequant_bytes;
  return p;
}

}  // namespace moe
