#include "engine/backend/cuda/device_weights.h"

#include <algorithm>
#include <set>
#include <string>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/fill.cuh"
#include "engine/backend/gpu_memory_plan.h"
#include "engine/backend/weight_rows.h"
#include "engine/common/error.h"
#include "engine/common/fp8.h"
#include "engine/common/ggml_quants.h"
#include "engine/common/mxfp4.h"
#include "engine/common/packed_int.h"
#include "engine/model/model.h"

namespace moe::cuda {
namespace {

constexpr size_t kPiece = size_t(64) << 20;

// Rows expanded to f32 on the host and stored as `to` (BF16 or F16, rounded, or F32), about kPiece bytes of them per
// copy; progress(stored bytes) after each.
void put_expanded(std::byte* dst, const WeightMatrix& m, DType to, const std::function<void(size_t)>& progress) {
  const size_t es = dtype_size(to);
  const int64_t piece_rows = std::max<int64_t>(1, int64_t(kPiece / es) / std::max<int64_t>(m.cols, 1));
  std::vector<float> rows(size_t(std::min(piece_rows, m.rows) * m.cols));
  std::vector<uint16_t> halves(to == DType::F32 ? 0 : rows.size());
  for (int64_t r0 = 0; r0 < m.rows; r0 += piece_rows) {
    const int64_t n = std::min(piece_rows, m.rows - r0);
    for (int64_t r = 0; r < n; ++r) weight_row_to_f32(m, r0 + r, rows.data() + r * m.cols);
    const void* staged = rows.data();
    if (to != DType::F32) {
      for (size_t i = 0; i < size_t(n * m.cols); ++i) halves[i] = to == DType::BF16 ? f32_to_bf16(rows[i]) : f32_to_f16(rows[i]);
      staged = halves.data();
    }
    MOE_CUDA_CHECK(cudaMemcpy(dst + size_t(r0 * m.cols) * es, staged, size_t(n * m.cols) * es, cudaMemcpyHostToDevice));
    if (progress) progress(matrix_bytes(m.dtype, n, m.cols));
  }
}

// Rows rearranged on the host into the blocks of `to` (rearrange(r, out) writes row r), about kPiece bytes of them
// per copy: GPT-OSS's MXFP4 (blocks and scales apart, rows maybe interleaved) as ggml's MXFP4 blocks, fine-grained
// FP8 (bytes and tile scales apart) as F8_E4M3_B128 blocks, packed integers (likewise, and their zero points) as
// the PACKED_I4_… or PACKED_I8_… blocks packed_int_block_type names.
template <class Rearrange>
void put_rearranged(std::byte* dst, const WeightMatrix& m, DType to, const std::function<void(size_t)>& progress,
                    const Rearrange& rearrange) {
  const size_t row = matrix_bytes(to, 1, m.cols);
  const int64_t piece_rows = std::max<int64_t>(1, int64_t(kPiece / row));
  std::vector<uint8_t> staged(size_t(std::min(piece_rows, m.rows)) * row);
  for (int64_t r0 = 0; r0 < m.rows; r0 += piece_rows) {
    const int64_t n = std::min(piece_rows, m.rows - r0);
    for (int64_t r = 0; r < n; ++r) rearrange(r0 + r, staged.data() + size_t(r) * row);
    MOE_CUDA_CHECK(cudaMemcpy(dst + size_t(r0) * row, staged.data(), size_t(n) * row, cudaMemcpyHostToDevice));
    if (progress) progress(matrix_bytes(m.dtype, n, m.cols));
  }
}

// Synthetic weights: uniform in ±0.04 (std ≈ 0.023), as the CPU's synthetic models.
constexpr float kSyntheticScale = 0.04f;

class Uploader {
 public:
  Uploader(const Model& model, DeviceAllocator& a, cudaStream_t stream, const std::function<bool(size_t, size_t)>& progress)
      : synthetic_(!model.has_weights()), a_(a), stream_(stream), progress_(progress), total_(model.weight_bytes()) {}

  // One allocation holding the given matrices back to back (each 256-byte aligned), matrix i as to[i];
  // returns their device views in the same order.
  std::vector<DeviceMatrix> matrices(MemoryPart part, int layer, const std::string& what,
                                     const std::vector<const WeightMatrix*>& ms, const std::vector<DType>& to) {
    size_t bytes = 0;
    for (size_t i = 0; i < ms.size(); ++i) bytes += aligned(matrix_bytes(to[i], ms[i]->rows, ms[i]->cols));
    auto* base = static_cast<std::byte*>(a_.allocate(bytes, part, layer, what));
    std::vector<DeviceMatrix> out;
    size_t at = 0;
    for (size_t i = 0; i < ms.size(); ++i) {
      const WeightMatrix& m = *ms[i];
      put(base + at, m, to[i]);
      out.push_back(DeviceMatrix{base + at, to[i], m.rows, m.cols});
      at += aligned(matrix_bytes(to[i], m.rows, m.cols));
    }
    return out;
  }
  // One matrix as `to`.
  DeviceMatrix matrix(MemoryPart part, int layer, const std::string& what, const WeightMatrix& m, DType to) {
    return matrices(part, layer, what, {&m}, {to})[0];
  }

  // Matrices stacked along their rows into one [Σ rows, cols] matrix (q;k;v and gate;up) as `to`:
  // contiguous, because a row-major matrix is its rows in order.
  DeviceMatrix stacked(MemoryPart part, int layer, const std::string& what, const std::vector<const WeightMatrix*>& ms,
                       DType to) {
    const WeightMatrix& first = *ms.front();
    size_t bytes = 0;
    int64_t rows = 0;
    for (const auto* m : ms) {
      if (m->cols != first.cols)
        throw EngineError("", what, "the matrices of layer " + std::to_string(layer) + " differ in width");
      bytes += matrix_bytes(to, m->rows, m->cols);
      rows += m->rows;
    }
    auto* base = static_cast<std::byte*>(a_.allocate(bytes, part, layer, what));
    size_t at = 0;
    for (const auto* m : ms) {
      put(base + at, *m, to);
      at += matrix_bytes(to, m->rows, m->cols);
    }
    return DeviceMatrix{base, to, rows, first.cols};
  }

  // F32 vectors back to back (each 256-byte aligned); null pointers for empty ones.
  std::vector<const float*> vectors(MemoryPart part, int layer, const std::string& what,
                                    const std::vector<const std::vector<float>*>& vs) {
    size_t bytes = 0;
    for (const auto* v : vs) bytes += aligned(v->size() * 4);
    std::vector<const float*> out(vs.size(), nullptr);
    if (bytes == 0) return out;
    auto* base = static_cast<std::byte*>(a_.allocate(bytes, part, layer, what));
    size_t at = 0;
    for (size_t i = 0; i < vs.size(); ++i) {
      if (vs[i]->empty()) continue;
      // Synchronous: the host vectors may be temporaries of the caller's.
      MOE_CUDA_CHECK(cudaMemcpy(base + at, vs[i]->data(), vs[i]->size() * 4, cudaMemcpyHostToDevice));
      out[i] = reinterpret_cast<const float*>(base + at);
      at += aligned(vs[i]->size() * 4);
      advance(vs[i]->size() * 4);
    }
    return out;
  }

  // The last progress call: everything is there.
  void finish() {
    if (progress_) progress_(total_, total_);
  }

  template <typename T>
  T* table(MemoryPart part, int layer, const std::string& what, const std::vector<T>& host) {
    auto* p = static_cast<T*>(a_.allocate(host.size() * sizeof(T), part, layer, what));
    MOE_CUDA_CHECK(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
  }

 private:
  static size_t aligned(size_t n) { return (n + 255) & ~size_t(255); }

  // Copies (or fills) one matrix as `to`, in pieces, reporting progress between them.
  void put(std::byte* dst, const WeightMatrix& m, DType to) {
    if (synthetic_ || !m.data) {
      fill_random(dst, to, size_t(m.rows) * size_t(m.cols), 0x5eed0000ull + uint64_t(++tensors_), kSyntheticScale, stream_);
      advance(m.bytes());
      return;
    }
    put_matrix(dst, m, to, [this](size_t n) { advance(n); });
  }

  void advance(size_t n) {
    done_ += n;
    if (progress_ && !progress_(std::min(done_, total_), total_))
      throw EngineError("", "cancelled", "loading the weights onto the GPU was cancelled");
  }

  bool synthetic_;
  DeviceAllocator& a_;
  cudaStream_t stream_;
  const std::function<bool(size_t, size_t)>& progress_;
  size_t total_ = 0, done_ = 0;
  uint64_t tensors_ = 0;
};

}  // namespace

std::vector<DType> block_types(const DeviceWeights& w) {
  std::set<DType> kept;
  auto note = [&kept](DType t) {
    if (is_block_quantized(t)) kept.insert(t);
  };
  note(w.head.dtype);
  for (const DeviceLayer& L : w.layers) {
    for (const DeviceMatrix* m : {&L.qkv, &L.o, &L.q_b, &L.shared_gate_up, &L.shared_down, &L.shared_gate, &L.mlp_gate_up,
                                  &L.mlp_down})
      if (*m) note(m->dtype);
    if (L.experts.n_experts) note(L.experts.dtype), note(L.experts.down_dtype);
  }
  return {kept.begin(), kept.end()};
}

void put_matrix(void* dst, const WeightMatrix& m, DType to, const std::function<void(size_t)>& progress) {
  auto* out = static_cast<std::byte*>(dst);
  if (m.dtype == DType::MXFP4 && to == DType::MXFP4_GGML) {
    put_rearranged(out, m, to, progress, [&m](int64_t r, uint8_t* row) {
      const Mxfp4Row src = mxfp4_row(m.data, m.scales, m.cols, m.row_step, r);
      mxfp4_to_ggml_blocks(src.blocks, src.scales, m.cols / kMxfp4BlockValues, row);
    });
    return;
  }
  if (m.dtype == DType::F8_E4M3 && to == DType::F8_E4M3_B128) {
    put_rearranged(out, m, to, progress, [&m](int64_t r, uint8_t* row) {
      fp8_to_blocks(static_cast<const uint8_t*>(m.data) + r * m.cols, m.tiles.row_scales(r), m.tiles.tile_cols, m.cols, row);
    });
    return;
  }
  if (is_packed_int(m.dtype) && to != m.dtype && to == packed_int_block_type(m.dtype, m.cols, m.tiles)) {
    put_rearranged(out, m, to, progress, [&m, to](int64_t r, uint8_t* row) {
      packed_int_to_blocks(to, static_cast<const uint8_t*>(m.data) + r * packed_int_row_bytes(m.dtype, m.cols),
                           m.tiles.row_scales(r), m.tiles.zero_points ? m.tiles.row_zero_points(r) : nullptr,
                           m.tiles.tile_cols, m.cols, row);
    });
    return;
  }
  if (m.dtype != to) {
    if (to != DType::BF16 && to != DType::F16 && to != DType::F32)
      throw EngineError("", "dtype", "a " + std::string(dtype_name(m.dtype)) +
                                         " matrix goes to the GPU as stored, as BF16, F16 or F32, not as " + std::string(dtype_name(to)));
    put_expanded(out, m, to, progress);
    return;
  }
  const size_t bytes = m.bytes();
  for (size_t at = 0; at < bytes; at += kPiece) {
    const size_t n = std::min(kPiece, bytes - at);
    // Pageable (mmap'd) source: the copy is synchronous with respect to the host, so the progress is real.
    MOE_CUDA_CHECK(cudaMemcpy(out + at, static_cast<const std::byte*>(m.data) + at, n, cudaMemcpyHostToDevice));
    if (progress) progress(n);
  }
}

DeviceWeights upload_weights(const Model& model, DeviceAllocator& a, cudaStream_t stream,
                             const std::function<bool(size_t, size_t)>& progress) {
  const ModelSpec& s = model.spec();
  const ModelWeights& w = model.weights();
  Uploader up(model, a, stream, progress);
  const GpuWeightDtypes dt = gpu_weight_dtypes(s, w);
  DeviceWeights d;
  d.dtype = dt.embeddings;
  d.embed = up.matrix(MemoryPart::Embeddings, -1, "the embeddings", w.embed, dt.embeddings);
  d.head = s.tied_embeddings ? d.embed : up.matrix(MemoryPart::Head, -1, "the LM head", w.lm_head, dt.head);
  d.final_norm = up.vectors(MemoryPart::Norms, -1, "the final norm", {&w.final_norm})[0];
  d.layers.resize(size_t(s.n_layers));
  for (int l = 0; l < s.n_layers; ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    DeviceLayer& D = d.layers[size_t(l)];
    const GpuLayerDtypes ld = gpu_layer_dtypes(s, w, dt, l);  // each group's dtype (gpu_memory_plan.h)
    if (s.attn.is_mla()) {
      const bool q_lora = L.q_a.rows > 0;  // (a synthetic model's matrices have no host data)
      D.qkv = up.stacked(MemoryPart::Attention, l, "attention q_a/kv_a", {q_lora ? &L.q_a : &L.q, &L.kv_a}, ld.qkv);
      std::vector<const WeightMatrix*> ms = {&L.kv_b, &L.o};
      std::vector<DType> to = {ld.kv_b, ld.o};
      if (q_lora) ms.push_back(&L.q), to.push_back(ld.q_b);
      const auto m = up.matrices(MemoryPart::Attention, l, "attention kv_b/o/q_b", ms, to);
      D.kv_b = m[0], D.o = m[1];
      if (q_lora) D.q_b = m[2];
      const auto biases = up.vectors(MemoryPart::Attention, l, "attention biases", {&L.q_a_bias, &L.kv_a_bias, &L.o_bias});
      D.q_a_bias = biases[0], D.kv_a_bias = biases[1], D.o_bias = biases[2];
      const auto norms = up.vectors(MemoryPart::Norms, l, "norms", {&L.attn_norm, &L.ffn_norm, &L.q_a_norm, &L.kv_a_norm});
      D.attn_norm = norms[0], D.ffn_norm = norms[1], D.q_a_norm = norms[2], D.kv_a_norm = norms[3];
    } else {
      D.qkv = up.stacked(MemoryPart::Attention, l, "attention q/k/v", {&L.q, &L.k, &L.v}, ld.qkv);
      D.o = up.matrix(MemoryPart::Attention, l, "attention output", L.o, ld.o);
      const auto biases = up.vectors(MemoryPart::Attention, l, "attention biases", {&L.q_bias, &L.k_bias, &L.v_bias, &L.o_bias});
      D.q_bias = biases[0], D.k_bias = biases[1], D.v_bias = biases[2], D.o_bias = biases[3];
      const auto norms = up.vectors(MemoryPart::Norms, l, "norms", {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.k_norm});
      D.attn_norm = norms[0], D.ffn_norm = norms[1], D.q_norm = norms[2], D.k_norm = norms[3];
      D.sinks = up.vectors(MemoryPart::Attention, l, "attention sinks", {&L.sinks})[0];
    }
    if (s.layer_is_moe[size_t(l)]) {
      D.router = up.matrix(MemoryPart::Router, l, "the router", L.router, ld.router);
      const auto router_biases = up.vectors(MemoryPart::Router, l, "the router biases", {&L.router_bias, &L.router_logit_bias});
      D.router_bias = router_biases[0], D.router_logit_bias = router_biases[1];
      std::vector<const WeightMatrix*> all;
      std::vector<DType> to;
      for (const auto& e : L.experts) {
        all.insert(all.end(), {&e.gate, &e.up, &e.down});
        to.insert(to.end(), {ld.expert_gate_up, ld.expert_gate_up, ld.expert_down});
      }
      const auto ms = up.matrices(MemoryPart::RoutedExperts, l, "routed experts", all, to);
      const size_t E = L.experts.size();
      std::vector<const void*> ptrs(3 * E);
      for (size_t e = 0; e < E; ++e) {
        ptrs[e] = ms[3 * e].data;
        ptrs[E + e] = ms[3 * e + 1].data;
        ptrs[2 * E + e] = ms[3 * e + 2].data;
      }
      const void** table = up.table(MemoryPart::RoutedExperts, l, "the expert table", ptrs);
      D.experts = ExpertTable{table, table + E, table + 2 * E, ld.expert_gate_up, ld.expert_down, int(E), s.hidden,
                              s.moe.expert_ffn};
      if (E && !L.experts[0].gate_bias.empty()) {  // GPT-OSS: every expert has all three, one block each
        std::vector<float> gate_b, up_b, down_b;
        for (const auto& e : L.experts) {
          gate_b.insert(gate_b.end(), e.gate_bias.begin(), e.gate_bias.end());
          up_b.insert(up_b.end(), e.up_bias.begin(), e.up_bias.end());
          down_b.insert(down_b.end(), e.down_bias.begin(), e.down_bias.end());
        }
        const auto b = up.vectors(MemoryPart::RoutedExperts, l, "routed expert biases", {&gate_b, &up_b, &down_b});
        D.experts.gate_bias = b[0], D.experts.up_bias = b[1], D.experts.down_bias = b[2];
      }
      D.experts.glu_limit = s.moe.glu_limit;
      D.experts.glu_alpha = s.moe.glu_alpha;
      if (L.shared.gate.rows > 0) {
        D.shared_gate_up = up.stacked(MemoryPart::SharedExperts, l, "shared expert gate/up", {&L.shared.gate, &L.shared.up},
                                      ld.shared_gate_up);
        D.shared_down = up.matrix(MemoryPart::SharedExperts, l, "shared expert down", L.shared.down, ld.shared_down);
        if (L.shared_gate.rows > 0)
          D.shared_gate = up.matrix(MemoryPart::SharedExperts, l, "shared expert gate", L.shared_gate, ld.shared_gate);
      }
    } else {
      D.mlp_gate_up = up.stacked(MemoryPart::DenseMlp, l, "MLP gate/up", {&L.mlp.gate, &L.mlp.up}, ld.mlp_gate_up);
      D.mlp_down = up.matrix(MemoryPart::DenseMlp, l, "MLP down", L.mlp.down, ld.mlp_down);
    }
  }
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  up.finish();
  return d;
}

}  // namespace moe::cuda
