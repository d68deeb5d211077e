// Thinking modes (issue 5): the prompt the engine renders for think, no-think and auto equals what
// transformers' apply_chat_template gives for the same messages on the demo model's template
// (tests/make_demo_chat_goldens.py), token ids included; soft switches follow the latest message;
// sampling defaults follow the mode.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/model/model.h"
#include "engine/runtime/conversation.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

const std::string kDemo = std::string(MOE_TEST_DATA_DIR) + "/../../resources/demo/";

std::vector<ChatMessage> messages_of(const nlohmann::json& list) {
  std::vector<ChatMessage> out;
  for (const auto& m : list) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  return out;
}

TEST(ThinkingModes, PromptsEqualTransformersForEveryMode) {
  const auto golden = test::read_json(std::string(MOE_TEST_DATA_DIR) + "/demo/chat_expected.json");
  const ChatTemplate chat = ChatTemplate::from_model_dir(kDemo + "tokenizer");
  ASSERT_TRUE(chat.supports_thinking());
  const auto tok = Tokenizer::load(kDemo + "tokenizer");
  ASSERT_EQ(golden["cases"].size(), 18u);
  for (const auto& c : golden["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto mode = parse_thinking_mode(c["mode"].get<std::string>());
    ASSERT_TRUE(mode);
    const std::string text = render_for_mode(chat, messages_of(c["messages"]), *mode);
    EXPECT_EQ(text, c["expected"].get<std::string>());
    EXPECT_EQ(tok->encode(text, false), c["ids"].get<std::vector<int32_t>>());
  }
}

TEST(ThinkingModes, SoftSwitchesFollowTheLatestMessage) {
  EXPECT_EQ(latest_soft_switch({{"user", "hi"}}), std::nullopt);
  EXPECT_EQ(latest_soft_switch({{"user", "x /no_think"}}), false);
  EXPECT_EQ(latest_soft_switch({{"user", "/think x"}}), true);
  EXPECT_EQ(latest_soft_switch({{"user", "a /no_think"}, {"assistant", "ok /think"}, {"user", "b /think"}}), true);
  EXPECT_EQ(latest_soft_switch({{"user", "a /think"}, {"assistant", "ok"}, {"user", "b /no_think"}}), false);
  // A later message without a switch leaves the earlier one in force; within a message the last wins.
  EXPECT_EQ(latest_soft_switch({{"user", "a /no_think"}, {"assistant", "ok"}, {"user", "b"}}), false);
  EXPECT_EQ(latest_soft_switch({{"system", "/think"}, {"user", "x /think then /no_think"}}), false);
  // Assistant text never switches.
  EXPECT_EQ(latest_soft_switch({{"assistant", "/no_think"}}), std::nullopt);
}

TEST(ThinkingModes, SamplingDefaultsFollowTheMode) {
  const ChatTemplate chat = ChatTemplate::from_model_dir(kDemo + "tokenizer");
  GenerationConfig gen;
  gen.sampling.seed = 99;
  const SamplingParams think = recommended_sampling(chat, gen, true), nothink = recommended_sampling(chat, gen, false);
  EXPECT_FALSE(think.greedy);
  EXPECT_FLOAT_EQ(think.temperature, 0.6f);
  EXPECT_FLOAT_EQ(think.top_p, 0.95f);
  EXPECT_EQ(think.top_k, 20);
  EXPECT_FLOAT_EQ(nothink.temperature, 0.7f);
  EXPECT_FLOAT_EQ(nothink.top_p, 0.8f);
  EXPECT_EQ(nothink.seed, 99u);
  // A template without thinking keeps the checkpoint's generation_config.
  const ChatTemplate plain = ChatTemplate::from_source("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}");
  gen.sampling.temperature = 0.3f;
  EXPECT_FLOAT_EQ(recommended_sampling(plain, gen, true).temperature, 0.3f);
}

// A model whose template always opens the think block (DeepSeek-R1's, here on the demo model's weights and
// tokenizer): no-think cannot switch thinking off in the prompt, so the controller closes the block before
// the first thinking token; auto and think let it think.
// The demo model's folder with another family's chat template from the chat goldens.
void demo_with_template(const test::ScratchDir& dir, const std::string& template_name) {
  for (const char* name : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"})
    std::filesystem::copy_file(kDemo + "moe/" + name, dir / name);
  auto config = test::read_json(kDemo + "moe/tokenizer_config.json");
  config["chat_template"] =
      test::read_json(test::tokenizer_data() / "chat_expected.json")["templates"][template_name];
  dir.write("tokenizer_config.json", config.dump());
}

// A cut before the first thinking token closes the block the way the family's template writes an empty one.
TEST(ThinkingModes, ACutAtOnceClosesTheBlockAsTheTemplateDoes) {
  for (const auto& [name, close] : {std::pair<std::string, std::string>{"glm45", "</think>\n"},
                                    {"kimi_k2_thinking", "</think>"},
                                    {"deepseek_r1", "\n\n</think>\n\n"}}) {
    SCOPED_TRACE(name);
    test::ScratchDir dir;
    demo_with_template(dir, name);
    const auto model = Model::load(dir.path);
    Conversation conv(*model, BackendOptions{1, 64, 16});
    EXPECT_EQ(conv.tokenizer().encode(close, false), conv.thinking_tokens().empty_close);
  }
}

TEST(ThinkingModes, AModelThatAlwaysThinksIsCutAtOnceInNoThink) {
  test::ScratchDir dir;
  demo_with_template(dir, "deepseek_r1");
  const auto model = Model::load(dir.path);
  Conversation conv(*model, BackendOptions{1, 512, 64});
  ASSERT_EQ(conv.chat().format_name(), "DeepSeek-R1");
  ASSERT_TRUE(conv.supports_thinking());
  EXPECT_TRUE(conv.will_think(ThinkingMode::Auto, "2+3="));
  EXPECT_TRUE(conv.will_think(ThinkingMode::Auto, "2+3= /no_think"));  // R1 has no soft switch
  EXPECT_FALSE(conv.will_think(ThinkingMode::NoThink, "2+3="));

  TurnOptions opt;
  opt.mode = ThinkingMode::NoThink;
  opt.max_new_tokens = 12;
  opt.thinking_budget = 50;  // no-think overrides it
  SamplingParams greedy;
  greedy.greedy = true;
  opt.sampling = greedy;
  const TurnResult r = conv.send("2+3=", opt, nullptr);
  EXPECT_TRUE(r.prompt_text.ends_with("<｜User｜>2+3=<｜Assistant｜><think>\n")) << r.prompt_text;
  EXPECT_FALSE(r.effective_thinking);
  ASSERT_EQ(r.generation.forced_stops.size(), 1u);
  EXPECT_EQ(r.generation.forced_stops[0].budget, 0);
  EXPECT_EQ(r.generation.forced_stops[0].thinking_tokens, 0);
  EXPECT_EQ(r.generation.forced_stops[0].position, int(r.prompt_ids.size()));  // before any sampled token
  EXPECT_EQ(r.thinking_text, "");

  opt.mode = ThinkingMode::Think;  // the same budget now lets it think
  const TurnResult thought = conv.send("2+4=", opt, nullptr);
  EXPECT_TRUE(thought.effective_thinking);
  for (const ForcedStop& stop : thought.generation.forced_stops) EXPECT_GT(stop.thinking_tokens, 0);
}

// A GPT-OSS model with the Harmony template: the tiny gpt_oss checkpoint, and the byte-level test tokenizer with
// Harmony's special tokens added (ids 405 … 409, inside the checkpoint's 512).
void harmony_model(const test::ScratchDir& dir) {
  const std::string golden = std::string(MOE_TEST_DATA_DIR) + "/models/gpt_oss/";
  for (const char* name : {"config.json", "generation_config.json", "model.safetensors"})
    std::filesystem::copy_file(golden + name, dir / name);
  auto tokenizer = test::read_json(test::tokenizer_data() / "bpe" / "tokenizer.json");
  auto config = test::read_json(test::tokenizer_data() / "bpe" / "tokenizer_config.json");
  int id = 405;
  for (const char* special : {"<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>"}) {
    tokenizer["added_tokens"].push_back({{"id", id}, {"content", special}, {"single_word", false}, {"lstrip", false},
                                         {"rstrip", false}, {"normalized", false}, {"special", true}});
    config["added_tokens_decoder"][std::to_string(id++)] = {{"content", special}, {"special", true}};
  }
  config["eos_token"] = "<|return|>";
  config["chat_template"] = test::read_json(test::tokenizer_data() / "chat_expected.json")["templates"]["harmony"];
  dir.write("tokenizer.json", tokenizer.dump());
  dir.write("tokenizer_config.json", config.dump());
}

// Harmony thinks in its analysis channel: the engine opens it after the generation prompt, the budget closes it
// with the final channel's header, and neither header is text of the thinking or the answer. The next turn's
// prompt carries the answer in the final channel and no analysis. No-think cuts at once (GPT-OSS always reasons).
TEST(ThinkingModes, HarmonyThinksInItsAnalysisChannel) {
  test::ScratchDir dir;
  harmony_model(dir);
  const auto model = Model::load(dir.path);
  Conversation conv(*model, BackendOptions{1, 512, 64});
  ASSERT_EQ(conv.chat().format(), ChatFormat::Harmony);
  ASSERT_TRUE(conv.supports_thinking());
  const ThinkingTokens& t = conv.thinking_tokens();
  EXPECT_EQ(t.open, conv.tokenizer().encode("<|channel|>analysis<|message|>", false));
  EXPECT_EQ(t.close, conv.tokenizer().encode("<|end|><|start|>assistant<|channel|>final<|message|>", false));
  EXPECT_EQ(t.early_stop, t.close);
  EXPECT_EQ(t.empty_close, t.close);
  EXPECT_EQ(t.close.front(), 406);  // <|end|>
  EXPECT_FALSE(conv.will_think(ThinkingMode::NoThink, "Hi"));
  EXPECT_TRUE(conv.will_think(ThinkingMode::Auto, "Hi"));

  TurnOptions opt;
  opt.mode = ThinkingMode::Think;
  opt.max_new_tokens = 16;
  opt.thinking_budget = 4;
  SamplingParams greedy;
  greedy.greedy = true;
  opt.sampling = greedy;
  std::string shown, markup;  // the pieces of tokens that are not markup, and those of markup
  const TurnResult r = conv.send("Hi", opt, [&](const TokenEvent& ev, const std::string& piece) {
    (ev.marker ? markup : shown) += piece;
    return true;
  });
  EXPECT_EQ(markup, "<|end|><|start|>assistant<|channel|>final<|message|>");  // the cut's, literally
  EXPECT_TRUE(r.prompt_text.ends_with("<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>analysis<|message|>"))
      << r.prompt_text;
  EXPECT_EQ(r.prompt_phases.back(), Phase::Thinking);
  ASSERT_EQ(r.generation.forced_stops.size(), 1u);
  EXPECT_EQ(r.generation.forced_stops[0].thinking_tokens, 4);
  const auto& tokens = r.generation.tokens;
  ASSERT_GE(tokens.size(), 4 + t.close.size());
  EXPECT_TRUE(std::equal(t.close.begin(), t.close.end(), tokens.begin() + 4));
  for (size_t i = 0; i < tokens.size(); ++i)
    EXPECT_EQ(r.generation.phases[i], i < 4 + t.close.size() ? Phase::Thinking : Phase::Answer) << "token " << i;
  EXPECT_EQ(r.thinking_text.find("final"), std::string::npos) << r.thinking_text;
  EXPECT_EQ(r.thinking_text.find("assistant"), std::string::npos) << r.thinking_text;
  StreamDecoder first4(conv.tokenizer(), true);
  std::string thought;
  for (size_t i = 0; i < 4; ++i) thought += first4.push(tokens[i]);
  thought += first4.flush();
  EXPECT_EQ(shown.substr(0, thought.size()), thought);

  // The next turn: the first answer in the final channel, its analysis gone.
  opt.mode = ThinkingMode::NoThink;
  const TurnResult next = conv.send("More", opt, nullptr);
  const std::string answer_turn = "<|start|>assistant<|channel|>final<|message|>" + r.answer_text;
  EXPECT_NE(next.prompt_text.find(answer_turn), std::string::npos) << next.prompt_text;
  EXPECT_EQ(next.prompt_text.find("analysis<|message|>"), next.prompt_text.rfind("analysis<|message|>"));
  EXPECT_FALSE(next.effective_thinking);
  ASSERT_EQ(next.generation.forced_stops.size(), 1u);  // no-think: the analysis closed before any token
  EXPECT_EQ(next.generation.forced_stops[0].thinking_tokens, 0);
  EXPECT_EQ(next.generation.forced_stops[0].position, int(next.prompt_ids.size()));
  EXPECT_EQ(next.thinking_text, "");
}

}  // namespace
}  // namespace moe
