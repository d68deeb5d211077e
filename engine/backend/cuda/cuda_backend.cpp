// The CUDA forward pass: cpu_backend.cpp's, step for step, on the GPU.
//   x = embed[tokens];  a = RMSNorm_attn0(x)
//   per layer:  qkv = W_qkv·a;  bias, q/k norm, clip, RoPE, append k, v to the cache (qkv_prepare)
//               attention (decode: split-K; prefill: tiled, causal), with the hook statistics
//               x += W_o·attn (+ bias);  a = RMSNorm_ffn(x)                       (fused)
//               y = MoE(a) (router → experts on the GPU's own selection; shared expert) or MLP(a)
//               x += y;  a = RMSNorm of the next layer (or the final norm)        (fused)
//   logits = W_head·a
// Multi-head latent attention (DeepSeek) replaces the layer's first two lines (attention_latent.cuh):
//   [c_q | kv] = W_[q_a|q ; kv_a]·a;  cache row = [RMSNorm(c) ; RoPE(k_pe)];  q = W_q_b·RMSNorm(c_q)
//   q_abs = [W_UKᵀ·q_nope ; RoPE(q_pe)] per head;  attention over the latent rows;  W_UV per head
// and caches one row per token and layer (no V). GPT-OSS's pieces live in the kernels: each layer's
// sliding window and sinks go to the attention kernels with its shape, the router's own bias to the
// router, the experts' biases and clamped gate to the expert kernels (their ExpertTable).
// In a decode step the steps that take one block run in the last block of the kernel before them
// (last_block.cuh): each "(fused)" add + norm in the o projection and in the layer's last projection
// (the experts' down, or a dense MLP's; with a shared expert it stays a kernel of its own), the routing
// in the router's projection, and each head's q/k/v preparation in the QKV projection (not with a
// whole-projection q/k norm). 11 kernels per MoE layer become 7; MOE_CUDA_FUSE=0 keeps them apart.
// A decode step (one token) is captured once as a CUDA graph — input copy, every kernel and GEMM, the
// logits and hook-record copies to pinned host memory — and replayed; the position is read on the GPU
// from the copied input, so the same graph serves every position. The graph is captured again only when
// what the step records changes (hook request, interventions).
#include "engine/backend/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/backend/cuda/blas.h"
#include "engine/backend/cuda_coverage.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_allocator.h"
#include "engine/backend/cuda/device_weights.h"
#include "engine/backend/cuda/kernels/attention.cuh"
#include "engine/backend/cuda/kernels/attention_latent.cuh"
#include "engine/backend/cuda/kernels/dependent_launch.cuh"
#include "engine/backend/cuda/kernels/experts.cuh"
#include "engine/backend/cuda/kernels/linear.cuh"
#include "engine/backend/cuda/kernels/norm.cuh"
#include "engine/backend/cuda/kernels/rope.cuh"
#include "engine/backend/cuda/kernels/router.cuh"
#include "engine/backend/gpu_memory_plan.h"
#include "engine/backend/step_record_setup.h"
#include "engine/common/error.h"
#include "engine/common/ggml_quants.h"
#include "engine/model/model.h"
#include "engine/model/rope_frequencies.h"

namespace moe::cuda {
namespace {

// The counters of the kernels that finish in their last block (last_block.cuh). One kernel runs at a
// time and leaves them at 0, so every such kernel of a step uses the same ones.
constexpr size_t kArrivalCounters = 256;

// Pinned host memory (the target of the per-step copies), freed with the object.
template <typename T>
class Pinned {
 public:
  Pinned() = default;
  ~Pinned() { cudaFreeHost(p_); }
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  void reset(size_t n) {
    cudaFreeHost(p_);
    p_ = nullptr;
    MOE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
    n_ = n;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

struct StreamHolder {
  cudaStream_t s = nullptr;
  ~StreamHolder() {
    if (s) cudaStreamDestroy(s);
  }
};

// Whether the environment variable `name` is "0": the switches that turn one optimisation off, to compare
// or to get around it.
bool env_off(const char* name) {
  const char* v = std::getenv(name);
  return v && std::string(v) == "0";
}

struct GraphHolder {
  cudaGraphExec_t exec = nullptr;
  std::string key;  // what the captured step records
  void reset() {
    if (exec) cudaGraphExecDestroy(exec);
    exec = nullptr;
    key.clear();
  }
  ~GraphHolder() { reset(); }
};

struct EventsHolder {
  std::vector<cudaEvent_t> events;
  ~EventsHolder() {
    for (auto e : events) cudaEventDestroy(e);
  }
};

// Offsets (in 4-byte values) of a step's record arrays in one device buffer and its pinned mirror, for the
// step's T tokens (CudaBackend::record_layout).
struct RecordLayout {
  size_t ids = 0, weights = 0, entropy = 0, margin = 0, shared_gate = 0, probs = 0;
  size_t attn_entropy = 0, attn_max = 0, attn_topk = 0, attn_first = 0, hidden = 0, total = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const Model& model, const BackendOptions& opt) : s_(model.spec()), device_(opt.cuda_device) {
    if (!model.has_weights() && !model.is_synthetic())
      throw EngineError("", "weights", "this model has no weights to run");
    if (const std::string refusal = cuda_refusal(s_); !refusal.empty()) throw EngineError("", "model", refusal);
    MOE_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    MOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    device_name_ = prop.name;
    sm_ = prop.major * 10 + prop.minor;
    use_graphs_ = !env_off("MOE_CUDA_GRAPHS");
    fuse_tails_ = !env_off("MOE_CUDA_FUSE");

    for (int l = 0; l < s_.n_layers; ++l)
      if (s_.layer_is_moe[size_t(l)]) moe_layers_.push_back(l);
    slots_ = std::max(1, s_.moe.top_k);
    chunk_ = std::max(1, opt.prefill_chunk);
    if (opt.kv_dtype != DType::F32 && opt.kv_dtype != DType::BF16)
      throw EngineError("", "kv_dtype", "the KV cache is F32 or BF16, not " + std::string(dtype_name(opt.kv_dtype)));
    GpuPlanOptions plan_options{model.weights().embed.dtype, opt.max_context, chunk_, slots_, opt.kv_dtype};
    plan_options.part_dtypes = gpu_weight_dtypes(s_, model.weights());  // what upload_weights will hold
    plan_options.weights = &model.weights();
    plan_ = plan_gpu_memory(s_, plan_options);
    capacity_ = plan_.capacity;
    kv_dtype_ = opt.kv_dtype;

    // Before anything is allocated: does it fit at all? (Names what does not.)
    size_t free_b = 0, total_b = 0;
    MOE_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (const std::string why = plan_.check_fits(free_b); !why.empty())
      throw EngineError("", "out of memory", "the model does not fit on " + device_name_ + ": " + why);

    MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_.s, cudaStreamNonBlocking));
    alloc_ = std::make_unique<DeviceAllocator>(device_);
    w_ = upload_weights(model, *alloc_, stream_.s, opt.upload_progress);

    const size_t kvd = size_t(s_.kv_dim());
    const size_t L = size_t(s_.n_layers), cap = size_t(capacity_);
    const size_t kv_bytes = L * cap * kvd * plan_.kv_dtype_size;
    // Latent attention caches one row per token, [c ; k_pe], and no V.
    k_cache_ = DeviceBuffer<std::byte>(*alloc_, kv_bytes, MemoryPart::KvCache, -1,
                                       s_.attn.is_mla() ? "the latent cache" : "the K cache");
    if (!s_.attn.is_mla()) v_cache_ = DeviceBuffer<std::byte>(*alloc_, kv_bytes, MemoryPart::KvCache, -1, "the V cache");
    const GpuActivations& A = plan_.activations;
    auto act = [&](size_t n, const char* what) { return DeviceBuffer<float>(*alloc_, n, MemoryPart::Activations, -1, what); };
    x_ = act(A.x, "the residual stream");
    a_ = act(A.a, "the normed activations");
    y_ = act(A.y, "the block outputs");
    qkv_ = act(A.qkv, "q, k and v");
    attn_ = act(A.attn, "the attention outputs");
    q_lora_ = act(A.q_lora, "the normed q_a outputs");
    q_heads_ = act(A.q_heads, "the q_b outputs");
    q_abs_ = act(A.q_absorbed, "the absorbed queries");
    latent_out_ = act(A.latent_out, "the weighted latents");
    gate_up_ = act(A.gate_up, "the MLP gate/up outputs");
    ffn_ = act(A.ffn, "the MLP hidden activations");
    router_logits_ = act(A.router_logits, "the router logits");
    shared_z_ = act(A.shared_gate, "the shared-expert gate");
    logits_ = act(A.logits, "the logits");
    gemm_in_ = DeviceBuffer<std::byte>(*alloc_, A.gemm_in * plan_.weight_dtype_size, MemoryPart::Activations, -1,
                                       "the GEMM inputs");
    step_ = DeviceBuffer<int32_t>(*alloc_, A.tokens, MemoryPart::Activations, -1, "the step's tokens");
    h_step_.reset(A.tokens);
    h_logits_.reset(A.logits);
    if (plan_.dequant_bytes)
      dequant_ = DeviceBuffer<std::byte>(*alloc_, plan_.dequant_bytes, MemoryPart::Workspace, -1,
                                         "the scratch block-typed weights are expanded into for prefill");
    blas_ = std::make_unique<Blas>(*alloc_, stream_.s, gemm_in_.get(), A.gemm_in, dequant_.get(), plan_.dequant_bytes);

    // RoPE inverse frequencies: the CPU backend's table (plain or YaRN).
    std::vector<float> inv = rope_inv_freq(s_.attn);
    if (inv.empty()) inv.push_back(0.0f);
    inv_freq_ = DeviceBuffer<float>(*alloc_, inv.size(), MemoryPart::Workspace, -1, "the RoPE frequencies");
    MOE_CUDA_CHECK(cudaMemcpy(inv_freq_.get(), inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));

    shape_ = AttentionShape{s_.attn.n_heads, s_.attn.n_kv_heads, s_.attn.head_dim, capacity_, kv_dtype_,
                            s_.attn.scale()};
    if (s_.attn.is_mla()) {
      const auto& m = s_.attn.mla;
      latent_ = LatentShape{s_.attn.n_heads, m.kv_lora_rank, s_.attn.rotary_dim, m.qk_nope_dim, m.v_head_dim,
                            capacity_, kv_dtype_, s_.attn.scale()};
      latent_rope_ = LatentRope{inv_freq_.get(), s_.attn.rope_attention_factor, s_.attn.rope_style == RopeStyle::Interleaved};
      shape_ = AttentionShape{s_.attn.n_heads, 1, latent_.row(), capacity_, kv_dtype_, s_.attn.scale()};  // its rows
    }
    // 16-bit models: prefill attention on the tensor cores (TF32), as their GEMMs already round to 16
    // bits; F32 models keep F32 products (the FP32 parity bound).
    shape_.tensor_cores = w_.dtype != DType::F32;
    shape_.prefill_mma = !env_off("MOE_CUDA_MMA_ATTENTION");
    attn_ws_ = DeviceBuffer<float>(*alloc_,
                                   s_.attn.is_mla() ? latent_attention_workspace_floats(latent_, kDecodeAttentionSplits)
                                                    : attention_decode_workspace_floats(shape_, kDecodeAttentionSplits),
                                   MemoryPart::Workspace, -1, "the attention split-K partials");
    arrivals_ = DeviceBuffer<unsigned>(*alloc_, kArrivalCounters, MemoryPart::Workspace, -1, "the last-block counters");
    MOE_CUDA_CHECK(cudaMemset(arrivals_.get(), 0, kArrivalCounters * sizeof(unsigned)));
    events_.events.resize(L + 1);
    for (auto& e : events_.events) MOE_CUDA_CHECK(cudaEventCreate(&e));
    for (int l : moe_layers_) has_shared_gate_ |= bool(w_.layers[size_t(l)].shared_gate);
    resize_slot_buffers(slots_);
    rebuild_router_params();
  }

  ~CudaBackend() override {
    if (stream_.s) cudaStreamSynchronize(stream_.s);
  }

  std::string describe() const override {
    std::string blocks;  // GGUF block types kept as blocks, e.g. " (Q4_K, Q6_K blocks)"
    for (DType t : block_types(w_)) blocks += (blocks.empty() ? " (" : ", ") + std::string(dtype_name(t));
    if (!blocks.empty()) blocks += " blocks)";
    return "CUDA, " + device_name_ + " (sm_" + std::to_string(sm_) + "), " + std::string(dtype_name(w_.dtype)) +
           " weights" + blocks + ", " + std::string(dtype_name(kv_dtype_)) + " KV cache" + (use_graphs_ ? "" : ", graphs off") +
           (dependent_launches() ? "" : ", dependent launches off") + (fuse_tails_ ? "" : ", fused tails off") +
           (shape_.tensor_cores && !shape_.prefill_mma ? ", mma prefill attention off" : "");
  }
  bool is_gpu() const override { return true; }
  int cached() const override { return n_cached_; }
  void truncate(int n) override { n_cached_ = std::clamp(n, 0, n_cached_); }
  int capacity() const override { return capacity_; }
  size_t kv_cache_bytes_allocated() const override { return alloc_->bytes(MemoryPart::KvCache); }
  size_t kv_cache_bytes_per_token() const override { return plan_.kv_bytes_per_token; }
  size_t workspace_bytes() const override {
    return alloc_->bytes(MemoryPart::Activations) + alloc_->bytes(MemoryPart::Workspace);
  }
  DeviceMemory device_memory() const override {
    DeviceMemory m;
    m.device = device_name_;
    const auto info = alloc_->device_info();
    m.total_bytes = info.total;
    m.free_bytes = info.free;
    const size_t used = info.total - info.free;
    m.other_bytes = used > alloc_->bytes_held() ? used - alloc_->bytes_held() : 0;
    m.kv_used_bytes = size_t(n_cached_) * plan_.kv_bytes_per_token;
    m.uses = alloc_->uses();
    return m;
  }

  void set_interventions(const Interventions& iv) override {
    iv.validate(s_);
    iv_ = iv;
    const int k = std::max(1, iv_.max_top_k(s_));
    if (k != slots_) resize_slot_buffers(k);
    rebuild_router_params();
    graph_.reset();
  }

  void forward(std::span<const int32_t> tokens, bool all_logits, float* logits, StepObserver* obs, StepTags tags) override {
    check_forward_input(tokens, n_cached_, capacity_, s_.vocab_size);
    const size_t V = size_t(s_.vocab_size);
    for (size_t begin = 0; begin < tokens.size(); begin += size_t(chunk_)) {
      const int T = int(std::min(tokens.size() - begin, size_t(chunk_)));
      const bool last_chunk = begin + size_t(T) == tokens.size();
      float* out = nullptr;
      if (logits && all_logits) out = logits + begin * V;
      else if (logits && last_chunk) out = logits;
      const int first = all_logits ? 0 : T - 1;  // rows of this chunk whose logits are wanted
      const int n_out = out ? T - first : 0;

      req_ = obs ? obs->ask() : HookRequest{};
      const bool record = obs && req_.any();
      req_.attention_topk = std::clamp(req_.attention_topk, 1, kMaxStatsTopK);
      const auto t0 = std::chrono::steady_clock::now();
      const auto step_tokens = tokens.subspan(begin, size_t(T));
      layout_ = record_layout(size_t(T));
      if (record)
        prepare_step_record(rec_, req_, RecordShape{&s_, &moe_layers_, slots_, has_shared_gate_, n_cached_}, step_tokens,
                            tags, begin);
      if (record && !rec_.attention_rows.empty()) ensure_rows(rec_.attention_rows.size());

      h_step_.get()[0] = n_cached_;
      std::copy(step_tokens.begin(), step_tokens.end(), h_step_.get() + 1);
      if (T == 1 && use_graphs_) run_graph(n_out, record);
      else enqueue_step(T, first, n_out, record);
      if (record)
        for (size_t i = 0; i < rec_.attention_rows.size(); ++i)  // their length grows with the position
          MOE_CUDA_CHECK(cudaMemcpyAsync(h_rows_.get() + i * size_t(capacity_), rows_.get() + i * size_t(capacity_),
                                         size_t(rec_.attention_rows[i].position + 1) * 4, cudaMemcpyDeviceToHost, stream_.s));
      MOE_CUDA_CHECK(cudaStreamSynchronize(stream_.s));

      if (out) std::memcpy(out, h_logits_.get(), size_t(n_out) * V * 4);
      n_cached_ += T;
      if (record) {
        collect_record(T);
        rec_.step_time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        obs->observe(rec_);
      }
    }
  }

 private:
  // Buffers whose size follows the routing slots per token (interventions can raise k up to E).
  void resize_slot_buffers(int slots) {
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream_.s));
    slots_ = slots;
    const size_t T = size_t(chunk_), K = size_t(slots), E = size_t(std::max(0, s_.moe.n_experts)), H = size_t(s_.hidden);
    selected_ = DeviceBuffer<int32_t>(*alloc_, T * K, MemoryPart::Activations, -1, "the selected experts");
    route_w_ = DeviceBuffer<float>(*alloc_, T * K, MemoryPart::Activations, -1, "the routing weights");
    expert_h_ = DeviceBuffer<float>(*alloc_, E ? T * K * size_t(s_.moe.expert_ffn) : 0, MemoryPart::Activations, -1,
                                    "the expert hidden activations");
    // Also the shared expert's output (needs [T, H]).
    expert_out_ = DeviceBuffer<float>(*alloc_, std::max(E ? T * K * H : 0, T * H), MemoryPart::Activations, -1,
                                      "the expert outputs");
    grouping_ = DeviceBuffer<int32_t>(*alloc_, E ? expert_grouping_ints(int(T), int(K), int(E)) : 0, MemoryPart::Workspace,
                                      -1, "the expert grouping");
    const size_t total = record_layout(T).total;
    record_ = DeviceBuffer<float>(*alloc_, total, MemoryPart::Workspace, -1, "the step record");
    h_record_.reset(total);
    graph_.reset();
  }

  // The record arrays of a step of T tokens, one after another from offset 0 in the order their hooks
  // come (routing, probabilities, attention statistics, hidden norms), so that a step copies what was
  // asked for in one or two transfers (copy_record_to_host). The buffers are sized for a whole chunk.
  RecordLayout record_layout(size_t T) const {
    const size_t M = moe_layers_.size(), L = size_t(s_.n_layers), nh = size_t(s_.attn.n_heads);
    const size_t K = size_t(slots_), E = size_t(std::max(0, s_.moe.n_experts));
    RecordLayout r;
    size_t at = 0;
    auto take = [&](size_t n) { const size_t o = at; at += n; return o; };
    r.ids = take(T * M * K);
    r.weights = take(T * M * K);
    r.entropy = take(T * M);
    r.margin = take(T * M);
    r.shared_gate = take(T * M);
    r.probs = take(T * M * E);
    r.attn_entropy = take(T * L * nh);
    r.attn_max = take(T * L * nh);
    r.attn_topk = take(T * L * nh);
    r.attn_first = take(T * L * nh);
    r.hidden = take(T * L);
    r.total = at;
    return r;
  }

  void ensure_rows(size_t n) {
    if (rows_.size() >= n * size_t(capacity_)) return;
    rows_ = DeviceBuffer<float>(*alloc_, n * size_t(capacity_), MemoryPart::Workspace, -1, "the attention rows");
    h_rows_.reset(n * size_t(capacity_));
    graph_.reset();
  }

  // Router parameters of every MoE layer, with the interventions' arrays uploaded in one block.
  void rebuild_router_params() {
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream_.s));
    const int E = s_.moe.n_experts;
    std::vector<int32_t> host;  // per layer: bias bits (E, when any), masked, forced
    struct Offsets {
      long bias = -1, masked = 0, forced = 0;
    };
    std::vector<Offsets> at(moe_layers_.size());
    for (size_t m = 0; m < moe_layers_.size(); ++m) {
      const LayerIntervention* iv = iv_.at(moe_layers_[m]);
      if (!iv) continue;
      if (!iv->router_bias.empty()) {
        at[m].bias = long(host.size());
        for (float b : iv->router_bias) {
          int32_t bits;
          std::memcpy(&bits, &b, 4);
          host.push_back(bits);
        }
      }
      at[m].masked = long(host.size());
      host.insert(host.end(), iv->masked.begin(), iv->masked.end());
      at[m].forced = long(host.size());
      host.insert(host.end(), iv->forced.begin(), iv->forced.end());
    }
    iv_buf_ = DeviceBuffer<int32_t>(*alloc_, host.size(), MemoryPart::Workspace, -1, "the router interventions");
    if (!host.empty())
      MOE_CUDA_CHECK(cudaMemcpy(iv_buf_.get(), host.data(), host.size() * 4, cudaMemcpyHostToDevice));
    router_params_.assign(moe_layers_.size(), RouterParams{});
    for (size_t m = 0; m < moe_layers_.size(); ++m) {
      const int l = moe_layers_[m];
      const LayerIntervention* iv = iv_.at(l);
      RouterParams& p = router_params_[m];
      p.n_experts = E;
      p.top_k = iv && iv->top_k > 0 ? iv->top_k : s_.moe.top_k;
      p.slots = slots_;
      p.softmax = s_.moe.score == RouterScore::Softmax;
      p.renormalize = s_.moe.renormalize;
      p.routed_scale = s_.moe.routed_scale;
      p.n_group = s_.moe.n_group;
      p.topk_group = s_.moe.topk_group;
      p.group_top2 = s_.moe.group_score == GroupScore::TopTwoSum;
      p.selection_bias = w_.layers[size_t(l)].router_bias;
      p.logit_bias = w_.layers[size_t(l)].router_logit_bias;
      if (iv) {
        if (at[m].bias >= 0) p.user_bias = reinterpret_cast<const float*>(iv_buf_.get() + at[m].bias);
        p.masked = iv_buf_.get() + at[m].masked;
        p.n_masked = int(iv->masked.size());
        p.forced = iv_buf_.get() + at[m].forced;
        p.n_forced = int(iv->forced.size());
      }
    }
  }

  // What a captured decode step depends on besides the position and the token.
  std::string graph_key(int n_out, bool record) const {
    std::string k = std::to_string(n_out) + (record ? "r" : "-");
    if (record) {
      k += req_.routing ? "R" : "-";
      k += req_.router_probs ? "P" : "-";
      k += req_.attention_stats ? "A" + std::to_string(req_.attention_topk) : "-";
      k += req_.hidden_norms ? "H" : "-";
      k += req_.layer_times ? "T" : "-";
      for (const auto& r : rec_.attention_rows) k += "|" + std::to_string(r.layer) + "." + std::to_string(r.head);
    }
    return k;
  }

  void run_graph(int n_out, bool record) {
    const std::string key = graph_key(n_out, record);
    if (!graph_.exec || graph_.key != key) {
      graph_.reset();
      cudaGraph_t g = nullptr;
      MOE_CUDA_CHECK(cudaStreamBeginCapture(stream_.s, cudaStreamCaptureModeThreadLocal));
      try {
        enqueue_step(1, 0, n_out, record);
      } catch (...) {
        cudaStreamEndCapture(stream_.s, &g);
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();
        throw;
      }
      MOE_CUDA_CHECK(cudaStreamEndCapture(stream_.s, &g));
      const cudaError_t e = cudaGraphInstantiate(&graph_.exec, g, 0);
      cudaGraphDestroy(g);
      MOE_CUDA_CHECK(e);
      graph_.key = key;
    }
    MOE_CUDA_CHECK(cudaGraphLaunch(graph_.exec, stream_.s));
  }

  // Enqueues one whole step on the stream (also what a graph captures): input copy, layers, logits of
  // rows [first, first + n_out), and the copies of the asked-for record arrays to pinned memory.
  void enqueue_step(int T, int first, int n_out, bool record) {
    cudaStream_t st = stream_.s;
    const int H = s_.hidden, L = s_.n_layers;
    MOE_CUDA_CHECK(cudaMemcpyAsync(step_.get(), h_step_.get(), size_t(T + 1) * 4, cudaMemcpyHostToDevice, st));
    const int32_t* pos0 = step_.get();
    const int32_t* ids = step_.get() + 1;
    embed_rows(w_.embed, ids, T, x_.get(), st);
    rmsnorm_rows(x_.get(), w_.layers[0].attn_norm, a_.get(), T, H, s_.rms_eps, st);
    const bool times = record && req_.layer_times;
    for (int l = 0; l < L; ++l) {
      if (times) MOE_CUDA_CHECK(cudaEventRecord(events_.events[size_t(l)], st));
      attention_block(l, T, pos0, record);
      // x += y; a = the next layer's norm (or the final norm) of x; and the hidden.norm hook.
      ResidualNorm close;
      close.x = x_.get();
      close.w = l + 1 < L ? w_.layers[size_t(l + 1)].attn_norm : w_.final_norm;
      close.out = a_.get();
      close.norm_out = record && req_.hidden_norms ? rec(layout_.hidden) + l : nullptr;
      close.eps = s_.rms_eps;
      close.counter = arrivals_.get();
      const ResidualNorm* tail = T == 1 && fuse_tails_ ? &close : nullptr;
      const bool closed = s_.layer_is_moe[size_t(l)] ? moe_block(l, T, record, tail) : mlp_block(l, T, tail);
      if (!closed) add_rmsnorm_rows(x_.get(), y_.get(), nullptr, close.w, a_.get(), T, H, s_.rms_eps, st, close.norm_out, L);
    }
    if (times) MOE_CUDA_CHECK(cudaEventRecord(events_.events[size_t(L)], st));
    if (n_out > 0) {
      const size_t V = size_t(s_.vocab_size);
      blas_->linear(w_.head, a_.get() + size_t(first) * size_t(H), n_out, logits_.get());
      MOE_CUDA_CHECK(cudaMemcpyAsync(h_logits_.get(), logits_.get(), size_t(n_out) * V * 4, cudaMemcpyDeviceToHost, st));
    }
    if (record) copy_record_to_host(T);
  }

  float* rec(size_t offset) const { return record_.get() + offset; }

  // Where a layer's attention statistics go, when asked for.
  AttentionStats attention_stats(int l) const {
    AttentionStats stats;
    const size_t at = size_t(l) * size_t(s_.attn.n_heads);
    stats.entropy = rec(layout_.attn_entropy + at);
    stats.max_weight = rec(layout_.attn_max + at);
    stats.topk_mass = rec(layout_.attn_topk + at);
    stats.first_mass = rec(layout_.attn_first + at);
    stats.topk = req_.attention_topk;
    stats.token_stride = int64_t(s_.n_layers) * s_.attn.n_heads;
    return stats;
  }

  // The attn.rows of layer l: rows of the last token's query (q_last, already rotated) over the cache.
  void attention_rows(int l, const float* q_last, const void* k_cache, const int32_t* pos0, int T,
                      const AttentionShape& shape) {
    for (size_t i = 0; i < rec_.attention_rows.size(); ++i)
      if (rec_.attention_rows[i].layer == l)
        attention_row(q_last, k_cache, pos0, T - 1, rec_.attention_rows[i].head, shape, rows_.get() + i * size_t(capacity_),
                      stream_.s);
  }

  // x += W_o·attn_ (+ bias); a = RMSNorm_ffn(x). Decode with fused tails: in the projection's last block.
  void attention_output(const DeviceLayer& D, int T) {
    if (T == 1 && fuse_tails_) {
      ResidualNorm then;
      then.x = x_.get();
      then.bias = D.o_bias;
      then.w = D.ffn_norm;
      then.out = a_.get();
      then.eps = s_.rms_eps;
      then.counter = arrivals_.get();
      linear_decode(D.o, attn_.get(), y_.get(), false, stream_.s, &then);
    } else {
      blas_->linear(D.o, attn_.get(), T, y_.get());
      add_rmsnorm_rows(x_.get(), y_.get(), D.o_bias, D.ffn_norm, a_.get(), T, s_.hidden, s_.rms_eps, stream_.s);
    }
  }

  // Multi-head latent attention (attention_latent.cuh): [q_a or q ; kv_a] in one GEMM, the cache row and
  // q_a's norm, q_b, the absorbed queries, attention over the latents, each head's values, o_proj.
  void latent_attention_block(int l, int T, const int32_t* pos0, bool record) {
    cudaStream_t st = stream_.s;
    const DeviceLayer& D = w_.layers[size_t(l)];
    const int64_t ql = s_.attn.mla.q_lora_rank, kvd = s_.kv_dim(), qa = ql ? ql : s_.q_dim(), stride = qa + kvd;
    float* proj = qkv_.get();
    blas_->linear(D.qkv, a_.get(), T, proj);
    void* cache = k_cache_.get() + size_t(l) * size_t(capacity_) * size_t(kvd) * plan_.kv_dtype_size;
    LatentPrepareParams lp;
    lp.kv_bias = D.kv_a_bias;
    lp.kv_norm = D.kv_a_norm;
    lp.eps = s_.rms_eps;
    lp.cache = cache;
    if (ql) {
      lp.q_lora = int(ql);
      lp.q_in = proj;
      lp.q_in_stride = stride;
      lp.q_bias = D.q_a_bias;
      lp.q_norm = D.q_a_norm;
      lp.q_out = q_lora_.get();
    }
    latent_prepare(proj + qa, stride, T, pos0, latent_, latent_rope_, lp, st);
    const float* q = proj;
    int64_t q_stride = stride;
    if (ql) {
      blas_->linear(D.q_b, q_lora_.get(), T, q_heads_.get());
      q = q_heads_.get();
      q_stride = s_.q_dim();
    }
    latent_absorb_queries(q, q_stride, T, pos0, D.kv_b, latent_, latent_rope_, q_abs_.get(), st);
    const bool want_stats = record && req_.attention_stats;
    const AttentionStats stats = want_stats ? attention_stats(l) : AttentionStats{};
    latent_attention(q_abs_.get(), T, cache, pos0, latent_, kDecodeAttentionSplits, attn_ws_.get(), latent_out_.get(),
                     want_stats ? &stats : nullptr, st);
    if (record)
      attention_rows(l, q_abs_.get() + size_t(T - 1) * size_t(s_.attn.n_heads) * size_t(kvd), cache, pos0, T, shape_);
    latent_expand_values(latent_out_.get(), T, D.kv_b, latent_, attn_.get(), st);
    attention_output(D, T);
  }

  void attention_block(int l, int T, const int32_t* pos0, bool record) {
    if (s_.attn.is_mla()) return latent_attention_block(l, T, pos0, record);
    cudaStream_t st = stream_.s;
    const DeviceLayer& D = w_.layers[size_t(l)];
    const auto& A = s_.attn;
    const int64_t qd = s_.q_dim(), kvd = s_.kv_dim(), stride = qd + 2 * kvd;
    float* q = qkv_.get();
    const size_t layer_kv = size_t(l) * size_t(capacity_) * size_t(kvd) * plan_.kv_dtype_size;
    void* kc = k_cache_.get() + layer_kv;
    void* vc = v_cache_.get() + layer_kv;
    QkvPrepareParams p;
    p.n_heads = A.n_heads;
    p.n_kv_heads = A.n_kv_heads;
    p.head_dim = A.head_dim;
    p.rotary_dim = A.rotary_dim;
    p.interleaved = A.rope_style == RopeStyle::Interleaved;
    p.inv_freq = inv_freq_.get();
    p.rope_factor = A.rope_attention_factor;
    p.q_bias = D.q_bias;
    p.k_bias = D.k_bias;
    p.v_bias = D.v_bias;
    p.qk_norm = A.qk_norm == QkNorm::PerHead ? QkNormMode::PerHead
                : A.qk_norm == QkNorm::WholeProjection ? QkNormMode::WholeProjection : QkNormMode::None;
    p.q_norm = D.q_norm;
    p.k_norm = D.k_norm;
    p.eps = s_.rms_eps;
    p.clip = A.clip_qkv;
    p.kv_dtype = kv_dtype_;
    p.k_cache = kc;
    p.v_cache = vc;
    const int counters = qkv_decode_counters(p);
    // (The fused kernel reads plain rows: block-typed q/k/v go through linear_decode.)
    if (T == 1 && fuse_tails_ && counters > 0 && size_t(counters) <= kArrivalCounters && !is_block_quantized(D.qkv.dtype)) {
      qkv_decode(D.qkv, a_.get(), q, pos0, p, arrivals_.get(), st);  // each head prepared in its last block
    } else {
      blas_->linear(D.qkv, a_.get(), T, q);
      qkv_prepare(q, q + qd, q + qd + kvd, stride, T, pos0, p, st);
    }

    const bool want_stats = record && req_.attention_stats;
    const AttentionStats stats = want_stats ? attention_stats(l) : AttentionStats{};
    AttentionShape shape = shape_;  // this layer's window and sinks (GPT-OSS)
    shape.window = s_.window(l);
    shape.sinks = D.sinks;
    if (T == 1)
      attention_decode(q, kc, vc, pos0, shape, kDecodeAttentionSplits, attn_ws_.get(), attn_.get(),
                       want_stats ? &stats : nullptr, st);
    else
      attention_prefill(q, stride, T, kc, vc, pos0, shape, attn_.get(), want_stats ? &stats : nullptr, st);
    if (record) attention_rows(l, q + size_t(T - 1) * size_t(stride), kc, pos0, T, shape);
    attention_output(D, T);
  }

  // The blocks below write the layer's output to y_. Given `then` (decode, fused tails), the kernel that
  // finishes y_ also runs that residual add + norm where it can, and the block returns true.
  bool mlp_block(int l, int T, const ResidualNorm* then) {
    const DeviceLayer& D = w_.layers[size_t(l)];
    blas_->linear(D.mlp_gate_up, a_.get(), T, gate_up_.get());
    silu_mul_rows(gate_up_.get(), T, int(D.mlp_down.cols), ffn_.get(), stream_.s);
    if (then && T == 1) {
      linear_decode(D.mlp_down, ffn_.get(), y_.get(), false, stream_.s, then);
      return true;
    }
    blas_->linear(D.mlp_down, ffn_.get(), T, y_.get());
    return false;
  }

  bool moe_block(int l, int T, bool record, const ResidualNorm* then) {
    cudaStream_t st = stream_.s;
    const DeviceLayer& D = w_.layers[size_t(l)];
    const int m = int(std::find(moe_layers_.begin(), moe_layers_.end(), l) - moe_layers_.begin());
    const int M = int(moe_layers_.size()), E = s_.moe.n_experts, H = s_.hidden;
    const bool fuse = T == 1 && fuse_tails_;
    RoutingOutput ro;
    ro.selected = selected_.get();
    ro.weights = route_w_.get();
    ro.n_moe_layers = M;
    ro.moe_ordinal = m;
    if (record && req_.routing) {
      ro.rec_ids = reinterpret_cast<int32_t*>(rec(layout_.ids));
      ro.rec_weights = rec(layout_.weights);
      ro.rec_entropy = rec(layout_.entropy);
      ro.rec_margin = rec(layout_.margin);
    }
    if (record && req_.router_probs) ro.rec_probs = rec(layout_.probs);
    if (fuse) {  // the projection and the routing in one kernel
      route_decode(D.router, a_.get(), router_logits_.get(), router_params_[size_t(m)], ro, arrivals_.get(), st);
    } else {
      blas_->linear(D.router, a_.get(), T, router_logits_.get());
      route(router_logits_.get(), T, router_params_[size_t(m)], ro, st);
    }
    // Without a shared expert the routed experts' down projection finishes y_ (and may close the layer).
    const ResidualNorm* close = D.shared_gate_up ? nullptr : then;
    if (T == 1) {
      experts_gate_up_decode(D.experts, selected_.get(), slots_, a_.get(), expert_h_.get(), st);
      experts_down_decode(D.experts, selected_.get(), route_w_.get(), slots_, expert_h_.get(), y_.get(), st, close);
    } else {
      group_by_expert(selected_.get(), T, slots_, E, grouping_.get(), st);
      // gemm_in_ (the GEMM inputs in the weight dtype, T × ≥ hidden) holds x rounded for the tensor cores;
      // nothing else uses it until the next projection.
      experts_gate_up_grouped(D.experts, grouping_.get(), T, slots_, a_.get(), gemm_in_.get(), expert_h_.get(), st);
      experts_down_grouped(D.experts, grouping_.get(), T, slots_, expert_h_.get(), expert_out_.get(), st);
      experts_combine(grouping_.get(), route_w_.get(), T, slots_, H, expert_out_.get(), y_.get(), st);
    }
    if (D.shared_gate_up) {
      blas_->linear(D.shared_gate_up, a_.get(), T, gate_up_.get());
      silu_mul_rows(gate_up_.get(), T, int(D.shared_down.cols), ffn_.get(), st);
      blas_->linear(D.shared_down, ffn_.get(), T, expert_out_.get());
      const float* z = nullptr;
      if (D.shared_gate) {
        blas_->linear(D.shared_gate, a_.get(), T, shared_z_.get());
        z = shared_z_.get();
      }
      float* gate_rec = record && req_.routing && has_shared_gate_ && z ? rec(layout_.shared_gate) + m : nullptr;
      add_gated_rows(y_.get(), expert_out_.get(), z, T, H, gate_rec, M, st);
    }
    return T == 1 && close != nullptr;
  }

  // Device → pinned copies of the arrays asked for. The step's layout puts them one after another, so
  // arrays closer than kRecordCopyGap values go as one transfer, the gap with them: in a decode step's
  // graph every copy node costs a few microseconds, more than such a gap's bytes.
  static constexpr size_t kRecordCopyGap = 16384;
  void copy_record_to_host(int T) {
    const size_t t = size_t(T), M = moe_layers_.size(), K = size_t(slots_), E = size_t(std::max(0, s_.moe.n_experts));
    const size_t LH = size_t(s_.n_layers) * size_t(s_.attn.n_heads);
    std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) in values, in layout order
    auto add = [&](size_t offset, size_t n) {
      if (!n) return;
      if (!spans.empty() && offset <= spans.back().second + kRecordCopyGap) spans.back().second = offset + n;
      else spans.emplace_back(offset, offset + n);
    };
    if (req_.routing) {
      add(layout_.ids, t * M * K);
      add(layout_.weights, t * M * K);
      add(layout_.entropy, t * M);
      add(layout_.margin, t * M);
      if (has_shared_gate_) add(layout_.shared_gate, t * M);
    }
    if (req_.router_probs) add(layout_.probs, t * M * E);
    if (req_.attention_stats)
      for (size_t o : {layout_.attn_entropy, layout_.attn_max, layout_.attn_topk, layout_.attn_first}) add(o, t * LH);
    if (req_.hidden_norms) add(layout_.hidden, t * size_t(s_.n_layers));
    for (const auto& [begin, end] : spans)
      MOE_CUDA_CHECK(cudaMemcpyAsync(h_record_.get() + begin, record_.get() + begin, (end - begin) * 4,
                                     cudaMemcpyDeviceToHost, stream_.s));
  }

  // Pinned record arrays → the StepRecord (sized by prepare_step_record for this step).
  void collect_record(int T) {
    const float* h = h_record_.get();
    auto take = [&](auto& v, size_t offset) {
      if (!v.empty()) std::memcpy(v.data(), h + offset, v.size() * 4);
    };
    take(rec_.expert_ids, layout_.ids);
    take(rec_.expert_weights, layout_.weights);
    take(rec_.router_entropy, layout_.entropy);
    take(rec_.top1_margin, layout_.margin);
    take(rec_.shared_gate, layout_.shared_gate);
    take(rec_.router_probs, layout_.probs);
    take(rec_.attn_entropy, layout_.attn_entropy);
    take(rec_.attn_max, layout_.attn_max);
    take(rec_.attn_topk_mass, layout_.attn_topk);
    take(rec_.attn_first_mass, layout_.attn_first);
    take(rec_.hidden_norm, layout_.hidden);
    for (size_t i = 0; i < rec_.attention_rows.size(); ++i) {
      auto& row = rec_.attention_rows[i];
      const float* src = h_rows_.get() + i * size_t(capacity_);
      row.weights.assign(src, src + row.position + 1);
    }
    if (!rec_.layer_time_s.empty())
      for (int l = 0; l < s_.n_layers; ++l) {
        float ms = 0;
        MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, events_.events[size_t(l)], events_.events[size_t(l + 1)]));
        rec_.layer_time_s[size_t(l)] = double(ms) * 1e-3;
      }
    (void)T;
  }

  const ModelSpec& s_;
  int device_ = 0;
  std::string device_name_;
  int sm_ = 0;
  bool use_graphs_ = true;
  // Decode kernels finish with the one-block step after them (last_block.cuh): the residual add + norm
  // after the o projection and after the layer's output, the routing after the router's projection, the
  // q/k/v preparation after the QKV projection. MOE_CUDA_FUSE=0 runs those as kernels of their own.
  bool fuse_tails_ = true;
  std::vector<int> moe_layers_;
  int slots_ = 0, chunk_ = 0, capacity_ = 0, n_cached_ = 0;
  DType kv_dtype_ = DType::BF16;
  GpuMemoryPlan plan_;
  bool has_shared_gate_ = false;  // then every MoE layer has one (a family's spec decides): each step writes all

  StreamHolder stream_;
  std::unique_ptr<DeviceAllocator> alloc_;  // before every buffer: destroyed after them
  DeviceWeights w_;
  DeviceBuffer<std::byte> k_cache_, v_cache_, gemm_in_, dequant_;
  DeviceBuffer<float> q_lora_, q_heads_, q_abs_, latent_out_;  // latent attention only
  LatentShape latent_;
  LatentRope latent_rope_;
  DeviceBuffer<float> x_, a_, y_, qkv_, attn_, gate_up_, ffn_, router_logits_, shared_z_, logits_, inv_freq_, attn_ws_;
  DeviceBuffer<unsigned> arrivals_;  // last_block.cuh's counters, 0 between kernels
  DeviceBuffer<float> route_w_, expert_h_, expert_out_, record_, rows_;
  DeviceBuffer<int32_t> step_, selected_, grouping_, iv_buf_;
  std::unique_ptr<Blas> blas_;
  Pinned<int32_t> h_step_;
  Pinned<float> h_logits_, h_record_, h_rows_;
  EventsHolder events_;
  GraphHolder graph_;
  AttentionShape shape_;
  RecordLayout layout_;
  std::vector<RouterParams> router_params_;
  Interventions iv_;
  HookRequest req_;
  StepRecord rec_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(model, options);
}

}  // namespace moe::cuda
