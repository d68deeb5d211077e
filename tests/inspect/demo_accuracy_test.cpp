// The bundled demo model's reason to exist (issue 3): thinking really helps it. Measured with our own
// engine, greedy, on the held-out addition set (resources/demo/data/test_add.jsonl, never trained on):
// accuracy with thinking on must beat thinking off by a clear margin.
#include <gtest/gtest.h>

#include "engine/model/model.h"
#include "engine/runtime/conversation.h"
#include "inspect/task_eval.h"

namespace moe::inspect {
namespace {

const std::string kDemo = std::string(MOE_TEST_DATA_DIR) + "/../../resources/demo/";

TEST(DemoModel, ThinkingBeatsNoThinkingOnHeldOutAddition) {
  auto model = Model::load(kDemo + "moe");
  Conversation conv(*model, BackendOptions{2, 1024, 64});
  ASSERT_TRUE(conv.supports_thinking());
  // The first 100 problems keep the test quick under the sanitizers; the model card has all 200.
  const auto records = load_task_file(kDemo + "data/test_add.jsonl", 100);
  ASSERT_EQ(records.size(), 100u);
  TurnOptions turn;
  turn.max_new_tokens = 300;
  turn.sampling = SamplingParams{};  // greedy
  turn.sampling->greedy = true;
  EvalSetting think{"think", turn}, nothink{"no-think", turn};
  think.turn.mode = ThinkingMode::Think;
  nothink.turn.mode = ThinkingMode::NoThink;
  const auto scores = evaluate_tasks(conv, records, {think, nothink});
  ASSERT_EQ(scores.size(), 2u);
  const double acc_think = scores[0].accuracy(), acc_nothink = scores[1].accuracy();
  std::printf("held-out addition, greedy: think %.2f (%.1f thinking tokens per problem), no-think %.2f\n", acc_think,
              scores[0].thinking_tokens / scores[0].problems, acc_nothink);
  EXPECT_GT(scores[0].thinking_tokens / scores[0].problems, 20.0);  // it really thinks
  // Measured when the model was trained (MODEL_CARD.md): think 0.94, no-think 0.01 on these 100.
  EXPECT_GE(acc_think, 0.8);
  EXPECT_GE(acc_think, acc_nothink + 0.5);
}

TEST(TaskEval, AnswerExtractionFollowsTheCorpusConvention) {
  EXPECT_EQ(extract_answer("<think>\nx\n</think>\n\nThe answer is 42."), "42");
  EXPECT_EQ(extract_answer("The answer is 3, 5, 9."), "3, 5, 9");
  EXPECT_EQ(extract_answer("  17 \n"), "17");
  EXPECT_EQ(extract_answer("The answer is wrong. The answer is 8."), "8");
}

}  // namespace
}  // namespace moe::inspect
