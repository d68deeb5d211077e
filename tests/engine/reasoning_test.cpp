// The reasoning controller and the thinking budget (issue 5), and the phases of prompt tokens.
// Unit tests use made-up ids; the Session tests run the tiny qwen3_moe checkpoint (its tokenizer has
// <think> and </think>) with a prompt that ends inside a think block, so the model thinks from the
// first generated token whatever its random weights prefer.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine/model/model.h"
#include "engine/runtime/phase_tagger.h"
#include "engine/runtime/reasoning.h"
#include "engine/runtime/session.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

const std::string kQwen3 = std::string(MOE_TEST_DATA_DIR) + "/models/qwen3_moe";

ThinkingTokens fake_tokens() {
  ThinkingTokens t;
  t.open = {100};
  t.close = {101};
  t.early_stop = {7, 8, 101, 9};
  t.empty_close = {9, 101, 9};
  return t;
}

TEST(ReasoningController, CutsAtTheBudgetWithTheEarlyStopText) {
  const ThinkingTokens t = fake_tokens();
  ReasoningController c(t, false);
  EXPECT_TRUE(c.cut(0, false).empty());  // not thinking: nothing to cut
  EXPECT_EQ(c.advance(5), Phase::Answer);
  EXPECT_EQ(c.advance(100), Phase::Thinking);
  EXPECT_EQ(c.cut(0, false), t.empty_close);  // budget 0: nothing thought yet, just close the block
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(c.cut(3, false).empty());
    EXPECT_EQ(c.advance(20 + i), Phase::Thinking);
  }
  EXPECT_EQ(c.thinking_tokens(), 3);
  EXPECT_EQ(c.cut(3, false), t.early_stop);
  EXPECT_TRUE(c.cut(-1, false).empty());     // unlimited
  EXPECT_TRUE(c.cut(10, false).empty());     // raised: thinking goes on
  EXPECT_EQ(c.cut(10, true), t.early_stop);  // "stop thinking now"
  for (int32_t id : t.early_stop) c.advance(id);
  EXPECT_FALSE(c.inside());
  EXPECT_EQ(c.advance(30), Phase::Answer);
  EXPECT_TRUE(c.cut(0, true).empty());
}

TEST(ReasoningController, AModelThatClosesItselfGetsNothingInserted) {
  const ThinkingTokens t = fake_tokens();
  ReasoningController c(t, true);  // the prompt opened the block
  EXPECT_TRUE(c.inside());
  EXPECT_EQ(c.advance(20), Phase::Thinking);
  EXPECT_EQ(c.advance(101), Phase::Thinking);  // </think> belongs to the block
  EXPECT_TRUE(c.cut(0, true).empty());
  EXPECT_EQ(c.advance(21), Phase::Answer);
  EXPECT_TRUE(prompt_ends_inside_thinking({1, 100, 5}, t));
  EXPECT_FALSE(prompt_ends_inside_thinking({1, 100, 5, 101, 9}, t));
  EXPECT_FALSE(prompt_ends_inside_thinking({1, 2}, t));
}

// Markup of several tokens, as Harmony's: open <|channel|>analysis<|message|> (here 50 51 52), close
// <|end|><|start|>assistant<|channel|>final<|message|> (60 61 62). Its tokens are markers and belong to the
// block; a sequence that breaks off is not markup from there on.
TEST(ReasoningController, MarkupOfSeveralTokens) {
  ThinkingTokens t;
  t.open = {50, 51, 52};
  t.close = {60, 61, 62};
  t.early_stop = {60, 61, 62};
  t.empty_close = {60, 61, 62};
  ReasoningController c(t, false);
  EXPECT_EQ(c.advance(50), Phase::Answer);
  EXPECT_TRUE(c.marker());
  EXPECT_EQ(c.advance(99), Phase::Answer);  // broke off: not markup, and no block
  EXPECT_FALSE(c.marker());
  EXPECT_FALSE(c.inside());
  for (int32_t id : {50, 51}) {
    EXPECT_EQ(c.advance(id), Phase::Answer);
    EXPECT_TRUE(c.marker());
  }
  EXPECT_EQ(c.advance(52), Phase::Thinking);  // the block opens with the markup's last token
  EXPECT_TRUE(c.marker());
  EXPECT_TRUE(c.inside());
  EXPECT_EQ(c.advance(7), Phase::Thinking);
  EXPECT_FALSE(c.marker());
  EXPECT_EQ(c.thinking_tokens(), 1);
  EXPECT_EQ(c.advance(60), Phase::Thinking);  // the close markup, token by token
  EXPECT_TRUE(c.marker());
  EXPECT_TRUE(c.cut(0, true).empty());  // no cut in the middle of it
  EXPECT_EQ(c.advance(61), Phase::Thinking);
  EXPECT_EQ(c.advance(62), Phase::Thinking);
  EXPECT_TRUE(c.marker());
  EXPECT_FALSE(c.inside());
  EXPECT_EQ(c.advance(8), Phase::Answer);
  EXPECT_EQ(c.thinking_tokens(), 1);

  ReasoningController d(t, true);  // a close that breaks off: the model left the block for something else
  EXPECT_EQ(d.advance(60), Phase::Thinking);
  EXPECT_EQ(d.advance(99), Phase::Answer);
  EXPECT_FALSE(d.marker());
  EXPECT_FALSE(d.inside());

  ReasoningController e(t, true);  // budget 1: one thinking token, then the close markup injected
  EXPECT_TRUE(e.cut(1, false).empty());
  e.advance(7);
  EXPECT_EQ(e.cut(1, false), t.early_stop);
  EXPECT_TRUE(prompt_ends_inside_thinking({1, 50, 51, 52}, t));
  EXPECT_TRUE(prompt_ends_inside_thinking({50, 51, 52, 60, 61, 62, 5, 50, 51, 52, 9}, t));
  EXPECT_FALSE(prompt_ends_inside_thinking({50, 51, 52, 9, 60, 61, 62}, t));
  EXPECT_FALSE(prompt_ends_inside_thinking({50, 51, 9}, t));  // not the whole markup
}

struct Fixture {
  std::unique_ptr<Model> model = Model::load(kQwen3);
  std::unique_ptr<Tokenizer> tok = Tokenizer::load(kQwen3);
  ThinkingTokens thinking = thinking_tokens(*tok);
  std::vector<int32_t> prompt = tok->encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n");
};

TEST(ThinkingBudget, ThinkingNeverExceedsTheBudgetBeforeTheEarlyStopText) {
  Fixture f;
  ASSERT_TRUE(f.thinking.available());
  for (int budget : {0, 1, 5, 12}) {
    Session session(*f.model, BackendOptions{1, 256, 64});
    ThinkingControl control;
    control.budget = budget;
    GenerateOptions g;
    g.max_new_tokens = 40;
    g.sampling.greedy = true;
    g.thinking = &f.thinking;
    g.control = &control;
    const GenerationResult r = session.generate(f.prompt, g);
    // The prompt opened the block, so thinking starts at once; unless the model closed it itself,
    // exactly `budget` sampled tokens precede the injected text.
    const auto close = std::find(r.tokens.begin(), r.tokens.end(), f.thinking.close[0]);
    ASSERT_NE(close, r.tokens.end()) << "budget " << budget;
    size_t sampled_thinking = 0;
    while (sampled_thinking < r.tokens.size() && !r.forced[sampled_thinking]) ++sampled_thinking;
    ASSERT_EQ(r.forced_stops.size(), 1u) << "budget " << budget;
    EXPECT_EQ(sampled_thinking, size_t(budget));
    EXPECT_EQ(r.forced_stops[0].position, int(f.prompt.size()) + budget);
    EXPECT_EQ(r.forced_stops[0].budget, budget);
    EXPECT_EQ(r.forced_stops[0].thinking_tokens, budget);
    const auto& injected = budget == 0 ? f.thinking.empty_close : f.thinking.early_stop;
    ASSERT_GE(r.tokens.size(), size_t(budget) + injected.size());
    EXPECT_TRUE(std::equal(injected.begin(), injected.end(), r.tokens.begin() + budget));
    // Phases: thinking up to and including </think>, answer after.
    const size_t close_at = size_t(close - r.tokens.begin());
    for (size_t i = 0; i < r.tokens.size(); ++i)
      EXPECT_EQ(r.phases[i], i <= close_at ? Phase::Thinking : Phase::Answer) << "token " << i;
    EXPECT_EQ(r.thinking_tokens, int(close_at) + 1);
  }
}

TEST(ThinkingBudget, ALoweredBudgetFromAnotherThreadTakesEffectWithinOneStep) {
  Fixture f;
  Session session(*f.model, BackendOptions{1, 256, 64});
  ThinkingControl control;  // unlimited at first
  GenerateOptions g;
  g.max_new_tokens = 60;
  g.sampling.greedy = true;
  g.thinking = &f.thinking;
  g.control = &control;

  // At the 10th token the engine thread hands over to a controller thread, which lowers the budget
  // below what is already used, and waits until that is done: the very next step must cut.
  std::mutex mu;
  std::condition_variable cv;
  int handed_over_at = -1;
  bool lowered = false;
  std::thread controller([&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return handed_over_at >= 0; });
    control.budget.store(4);
    lowered = true;
    cv.notify_all();
  });
  const GenerationResult r = session.generate(f.prompt, g, [&](const TokenEvent& e) {
    if (e.index == 9) {
      std::unique_lock lock(mu);
      handed_over_at = e.index;
      cv.notify_all();
      cv.wait(lock, [&] { return lowered; });
    }
    return true;
  });
  controller.join();
  ASSERT_EQ(handed_over_at, 9);
  ASSERT_EQ(r.forced_stops.size(), 1u);
  EXPECT_EQ(r.forced_stops[0].position, int(f.prompt.size()) + 10);  // the token right after the hand-over
  EXPECT_EQ(r.forced_stops[0].budget, 4);
  EXPECT_EQ(r.forced_stops[0].thinking_tokens, 10);
  EXPECT_EQ(r.forced[10], 1);
  EXPECT_EQ(r.forced[9], 0);
}

TEST(ThinkingBudget, StopThinkingNowIsRecordedAsAUserCut) {
  Fixture f;
  Session session(*f.model, BackendOptions{1, 256, 64});
  ThinkingControl control;
  GenerateOptions g;
  g.max_new_tokens = 40;
  g.thinking = &f.thinking;
  g.control = &control;
  const GenerationResult r = session.generate(f.prompt, g, [&](const TokenEvent& e) {
    if (e.index == 2) control.stop_now.store(true);
    return true;
  });
  ASSERT_EQ(r.forced_stops.size(), 1u);
  EXPECT_EQ(r.forced_stops[0].budget, -1);
  EXPECT_EQ(r.forced_stops[0].position, int(f.prompt.size()) + 3);
  EXPECT_FALSE(control.stop_now.load());  // used up
}

TEST(PhaseTagger, ChatTurnsAndThinkBlocks) {
  Fixture f;
  const ChatTemplate tmpl = ChatTemplate::from_model_dir(kQwen3);
  const std::string text = tmpl.render({{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "<think>\nhm\n</think>\n\nHello"}, {"user", "Sum?"}}, true, false);
  const auto ids = f.tok->encode(text);
  const auto phases = tag_prompt_phases(ids, *f.tok);
  ASSERT_EQ(phases.size(), ids.size());
  // Read the phases back as text spans: every byte of a phase's tokens, concatenated.
  std::string by_phase[kPhaseCount];
  for (size_t i = 0; i < ids.size(); ++i) by_phase[int(phases[i])] += f.tok->token_bytes(ids[i], i ? ids[i - 1] : -1);
  EXPECT_EQ(by_phase[int(Phase::System)], "<|im_start|>system\nBe brief.<|im_end|>");
  EXPECT_EQ(by_phase[int(Phase::User)], "<|im_start|>user\nHi<|im_end|><|im_start|>user\nSum?<|im_end|>");
  // The last assistant turn before the last user turn keeps no thinking (Qwen3 template), and the
  // generation prompt in no-think mode carries the empty think block.
  EXPECT_EQ(by_phase[int(Phase::Thinking)], "<think>\n\n</think>");
  EXPECT_EQ(by_phase[int(Phase::Answer)], "<|im_start|>assistant\nHello<|im_end|><|im_start|>assistant\n\n\n");
  EXPECT_EQ(by_phase[int(Phase::Other)], "\n\n\n\n");
}

// GLM-4.5's, DeepSeek-V3.1's and MiniMax-M2's markup, rendered by their templates (the goldens' copies) and spelled
// by the same byte-level tokenizer, which has none of their markers as tokens.
TEST(PhaseTagger, GlmDeepSeekAndMiniMaxTurns) {
  Fixture f;
  const auto templates = test::read_json(test::tokenizer_data() / "chat_expected.json")["templates"];
  auto by_phase = [&](const std::string& text) {
    const auto ids = f.tok->encode(text, false);
    const auto phases = tag_prompt_phases(ids, *f.tok);
    std::vector<std::string> spans(kPhaseCount);
    for (size_t i = 0; i < ids.size(); ++i) spans[int(phases[i])] += f.tok->token_bytes(ids[i], i ? ids[i - 1] : -1);
    return spans;
  };
  const std::vector<ChatMessage> chat = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "<think>hm</think>Hello"}, {"tool", "42"}, {"user", "Sum?"}};

  const auto glm = by_phase(ChatTemplate::from_source(templates["glm45"]).render(chat, true, false));
  EXPECT_EQ(glm[int(Phase::Other)], "[gMASK]<sop>");
  EXPECT_EQ(glm[int(Phase::System)], "<|system|>\nBe brief.");
  EXPECT_EQ(glm[int(Phase::User)],
            "<|user|>\nHi/nothink<|observation|>\n<tool_response>\n42\n</tool_response><|user|>\nSum?/nothink");
  EXPECT_EQ(glm[int(Phase::Thinking)], "<think></think><think></think>");
  EXPECT_EQ(glm[int(Phase::Answer)], "<|assistant|>\n\nHello<|assistant|>\n");

  const auto v31 = by_phase(
      ChatTemplate::from_source(templates["deepseek_v3_1"], "<｜begin▁of▁sentence｜>").render(chat, true, true));
  EXPECT_EQ(v31[int(Phase::Other)], "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(v31[int(Phase::System)], "Be brief.");
  EXPECT_EQ(v31[int(Phase::User)], "<｜User｜>Hi<｜tool▁output▁begin｜>42<｜tool▁output▁end｜><｜User｜>Sum?");
  EXPECT_EQ(v31[int(Phase::Thinking)], "</think><think>");
  EXPECT_EQ(v31[int(Phase::Answer)], "<｜Assistant｜>Hello<｜end▁of▁sentence｜><｜Assistant｜>");

  const std::vector<ChatMessage> no_tool = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "<think>hm</think>Hello"}, {"user", "Sum?"}};
  const auto m2 = by_phase(ChatTemplate::from_source(templates["minimax_m2"]).render(no_tool, true));
  EXPECT_EQ(m2[int(Phase::Other)], "]~!b[\n\n\n\n");  // and the newline after each turn's end
  EXPECT_EQ(m2[int(Phase::System)], "]~b]system\nBe brief.[e~[");
  EXPECT_EQ(m2[int(Phase::User)], "]~b]user\nHi[e~[]~b]user\nSum?[e~[");
  EXPECT_EQ(m2[int(Phase::Answer)], "]~b]ai\nHello[e~[]~b]ai\n");
  EXPECT_EQ(m2[int(Phase::Thinking)], "<think>\n");
}

// Harmony's headers (GPT-OSS), spelled by the byte-level test tokenizer: the developer's instructions read like a
// system message, an answer's final channel is the answer, and the analysis header the engine adds after the
// generation prompt opens thinking.
TEST(PhaseTagger, HarmonyChannels) {
  Fixture f;
  const auto harmony = ChatTemplate::from_source(
      test::read_json(test::tokenizer_data() / "chat_expected.json")["templates"]["harmony"]);
  ChatTemplate dated = harmony;
  dated.set_current_date("2025-08-05");
  const std::vector<ChatMessage> chat = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "Sum?"}};
  const std::string text = dated.render(chat, true) + dated.thinking_opener();
  const auto ids = f.tok->encode(text, false);
  const auto phases = tag_prompt_phases(ids, *f.tok);
  std::vector<std::string> spans(kPhaseCount);
  for (size_t i = 0; i < ids.size(); ++i) spans[int(phases[i])] += f.tok->token_bytes(ids[i], i ? ids[i - 1] : -1);
  EXPECT_EQ(spans[int(Phase::Other)], "");
  EXPECT_EQ(spans[int(Phase::System)],
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: "
            "2024-06\nCurrent date: 2025-08-05\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
            "Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nBe brief."
            "\n\n<|end|>");
  EXPECT_EQ(spans[int(Phase::User)], "<|start|>user<|message|>Hi<|end|><|start|>user<|message|>Sum?<|end|>");
  EXPECT_EQ(spans[int(Phase::Answer)], "<|start|>assistant<|channel|>final<|message|>Hello<|end|>");
  EXPECT_EQ(spans[int(Phase::Thinking)], "<|start|>assistant<|channel|>analysis<|message|>");
}

// Kimi-K2-Thinking's turns, through the tiktoken fixture (Kimi's special tokens whole).
TEST(PhaseTagger, KimiTurns) {
  const auto tok = Tokenizer::load(std::filesystem::path(MOE_TEST_DATA_DIR) / "tiktoken" / "model");
  const auto kimi = ChatTemplate::from_source(
      test::read_json(test::tokenizer_data() / "chat_expected.json")["templates"]["kimi_k2_thinking"]);
  const std::vector<ChatMessage> chat = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "<think>hm</think>Hello"}, {"tool", "42"}, {"user", "Sum?"}};
  const auto ids = tok->encode(kimi.render(chat, true), false);
  const auto phases = tag_prompt_phases(ids, *tok);
  std::vector<std::string> spans(kPhaseCount);
  for (size_t i = 0; i < ids.size(); ++i) spans[int(phases[i])] += tok->token_bytes(ids[i], i ? ids[i - 1] : -1);
  EXPECT_EQ(spans[int(Phase::Other)], "");
  EXPECT_EQ(spans[int(Phase::System)], "<|im_system|>system<|im_middle|>Be brief.<|im_end|>");
  EXPECT_EQ(spans[int(Phase::User)],
            "<|im_user|>user<|im_middle|>Hi<|im_end|><|im_system|>tool<|im_middle|>## Return of \n42<|im_end|>"
            "<|im_user|>user<|im_middle|>Sum?<|im_end|>");
  EXPECT_EQ(spans[int(Phase::Thinking)], "<think></think>");
  EXPECT_EQ(spans[int(Phase::Answer)], "<|im_assistant|>assistant<|im_middle|>Hello<|im_end|><|im_assistant|>assistant<|im_middle|>");
}

}  // namespace
}  // namespace moe
