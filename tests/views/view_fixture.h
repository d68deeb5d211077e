#pragma once
// The recorded session every view test reads: the bundled demo model asked "What is 4821 + 739?" in
// think mode with a thinking budget of 12, greedy, hook level full (made by
//   moe-inspect trace resources/demo/moe --chat "What is 4821 + 739?" --budget 12 --greedy
//     --hook-level full --out tests/data/views/demo_think_budget.trace.safetensors).
// The budget cut the thinking once, so the forced stop, both phases and every detail column are in it.
// The token text comes from the demo model's own tokenizer, and the chat turn is rebuilt from the
// trace's generated rows, as the app builds it while streaming.
#include <memory>
#include <string>
#include <vector>

#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "inspect/trace_file.h"
#include "views/workbench_data.h"

namespace moe::views::fixture {

inline std::string tracePath() { return std::string(MOE_TEST_DATA_DIR) + "/views/demo_think_budget.trace.safetensors"; }
inline std::string demoModelDir() { return std::string(MOE_SOURCE_DIR) + "/resources/demo/moe"; }

inline WorkbenchData demoSession() {
  auto trace = std::make_shared<inspect::Trace>(inspect::load_trace(tracePath()));
  auto tok = Tokenizer::load(demoModelDir());
  auto text = std::make_shared<std::vector<std::string>>();
  for (int64_t r = 0; r < trace->size(); ++r)
    text->push_back(tok->token_bytes(trace->tokens[size_t(r)], r > 0 ? trace->tokens[size_t(r - 1)] : -1));

  ChatTurn turn;
  turn.user_text = "What is 4821 + 739?";
  turn.mode = "think";
  turn.thinking = true;
  turn.segment = 0;
  turn.first_row = 0;
  turn.thinking_budget = 12;
  turn.forced_stops = trace->forced_stops;
  for (int64_t r = 0; r < trace->size(); ++r) {
    if (!trace->generated[size_t(r)]) continue;
    ChatToken t;
    t.id = trace->tokens[size_t(r)];
    t.piece = (*text)[size_t(r)];
    t.phase = Phase(trace->phases[size_t(r)]);
    t.forced = trace->forced[size_t(r)] != 0;
    t.row = r;
    if (t.phase == Phase::Thinking) ++turn.thinking_tokens;
    turn.tokens.push_back(t);
  }
  turn.finished = true;
  turn.stop_reason = "eos";
  turn.prompt_tokens = 21;

  auto model = std::make_shared<ModelFacts>();
  model->name = "moe";
  model->path = demoModelDir();
  model->family = "Qwen3-MoE";
  model->model_type = "qwen3_moe";
  model->layers = trace->n_layers;
  model->moe_layers = trace->n_moe();
  model->experts = trace->n_experts;
  model->top_k = trace->top_k;
  model->heads = trace->n_heads;
  model->backend = "CPU, 2 threads";
  model->supports_thinking = true;

  WorkbenchData data = WorkbenchData::empty();
  data.model = model;
  data.trace = trace;
  data.token_text = text;
  data.chat = std::make_shared<std::vector<ChatTurn>>(std::vector<ChatTurn>{turn});
  data.version = 1;
  return data;
}

}  // namespace moe::views::fixture
