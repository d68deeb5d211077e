#include "app/gui/model_facts.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "engine/model/model.h"
#include "engine/runtime/conversation.h"

namespace moe::app {

uint64_t device_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemTotal:") return kib * 1024;
  return 0;
}

uint64_t process_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * uint64_t(sysconf(_SC_PAGESIZE));
}

views::ModelFacts model_facts(const Model& model, Conversation& conversation) {
  const ModelSpec& s = model.spec();
  const ModelSize z = compute_model_size(s);
  views::ModelFacts f;
  f.path = model.dir().string();
  f.name = model.dir().filename().string();
  if (f.name.empty()) f.name = model.dir().parent_path().filename().string();
  f.family = s.family;
  f.model_type = s.model_type;
  f.layers = s.n_layers;
  f.moe_layers = s.n_moe_layers();
  for (int l = 0; l < s.n_layers; ++l)
    if (size_t(l) < s.layer_is_moe.size() && s.layer_is_moe[size_t(l)]) f.moe_layer_indices.push_back(l);
  f.experts = s.is_moe() ? s.moe.n_experts : 0;
  f.top_k = s.is_moe() ? s.moe.top_k : 0;
  f.shared_experts_ffn = s.moe.shared_ffn;
  f.heads = s.attn.n_heads;
  f.kv_heads = s.attn.n_kv_heads;
  f.head_dim = s.attn.head_dim;
  if (s.attn.is_mla()) {
    f.latent_kv = s.attn.mla.kv_lora_rank;
    f.latent_rope = s.attn.rotary_dim;
    f.v_head_dim = s.attn.mla.v_head_dim;
  }
  f.attention_sinks = s.attn.sinks;
  for (int l = 0; l < s.n_layers; ++l)
    if (s.window(l) > 0) f.sliding_window = std::max(f.sliding_window, s.window(l)), ++f.windowed_layers;
  f.hidden = s.hidden;
  f.vocab = s.vocab_size;
  f.total_params = z.total_params;
  f.active_params = z.active_params;
  if (f.experts > 0 && f.moe_layers > 0) {
    f.params_per_expert = z.routed_expert_params / (int64_t(f.experts) * f.moe_layers);
    f.always_active_params = z.active_params - f.params_per_expert * f.top_k * f.moe_layers;
  } else {
    f.always_active_params = z.active_params;
  }
  const WeightBytes& wb = model.weight_bytes_by_part();
  f.attention_bytes = wb.attention;
  f.routed_expert_bytes = wb.routed_experts;
  f.shared_expert_bytes = wb.shared_experts;
  f.embedding_bytes = wb.embeddings;
  f.other_bytes = wb.other;
  Backend& backend = conversation.session().backend();
  f.kv_bytes_per_token = backend.kv_cache_bytes_per_token();
  f.context = backend.capacity();
  f.memory_needed_bytes = model.weight_bytes() + backend.kv_cache_bytes_allocated();
  // On a GPU the device's memory is what the model must fit in; on the CPU, the machine's.
  f.memory_available_bytes = backend.is_gpu() ? backend.device_memory().total_bytes : device_memory_bytes();
  f.backend = conversation.session().device_note();
  f.chat_format = conversation.chat().format_name();
  f.supports_thinking = conversation.supports_thinking();
  f.always_thinks = conversation.chat().always_thinks();
  return f;
}

}  // namespace moe::app
