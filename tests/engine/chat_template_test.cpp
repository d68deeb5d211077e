// Chat templates (SPECS.md §10): recognised by fingerprints, rendered natively, compared with what
// transformers' apply_chat_template(..., tokenize=False) produced in tests/data/tokenizers/chat_expected.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

using moe::test::ScratchDir;

namespace {

const fs::path kData = moe::test::tokenizer_data();

const json& goldens() {
  static const json j = moe::test::read_json(kData / "chat_expected.json");
  return j;
}

std::vector<moe::ChatMessage> messages_of(const json& list) {
  std::vector<moe::ChatMessage> out;
  for (const auto& m : list) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  return out;
}

moe::ChatTemplate template_for(const json& c) {
  if (c["template"].is_null()) return moe::ChatTemplate::from_model_dir(kData / c["folder"].get<std::string>());
  const std::string source = goldens()["templates"][c["template"].get<std::string>()];
  return moe::ChatTemplate::from_source(source, goldens()["bos_token"], goldens()["eos_token"]);
}

TEST(ChatTemplate, RendersLikeTransformers) {
  const auto& cases = goldens()["cases"];
  ASSERT_GE(cases.size(), 40u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    moe::ChatTemplate t = template_for(c);
    if (c.contains("current_date")) t.set_current_date(c["current_date"].get<std::string>());  // Harmony's
    std::optional<bool> thinking;
    if (c.contains("enable_thinking")) thinking = c["enable_thinking"].get<bool>();
    EXPECT_EQ(t.render(messages_of(c["messages"]), c["add_generation_prompt"].get<bool>(), thinking),
              c["expected"].get<std::string>());
  }
}

TEST(ChatTemplate, RecognisesTheFormats) {
  const auto qwen3 = moe::ChatTemplate::from_model_dir(kData / "bpe");
  EXPECT_EQ(qwen3.format(), moe::ChatFormat::Qwen3);
  EXPECT_EQ(qwen3.format_name(), "Qwen3");
  EXPECT_TRUE(qwen3.supports_thinking());
  const auto mistral = moe::ChatTemplate::from_model_dir(kData / "spm");
  EXPECT_EQ(mistral.format(), moe::ChatFormat::Mistral);
  EXPECT_FALSE(mistral.supports_thinking());
  const auto& templates = goldens()["templates"];
  EXPECT_EQ(moe::ChatTemplate::from_source(templates["chatml"]).format(), moe::ChatFormat::ChatML);
  EXPECT_EQ(moe::ChatTemplate::from_source(templates["chatml_no_system"]).format(), moe::ChatFormat::ChatML);
  EXPECT_EQ(moe::ChatTemplate::from_source(templates["llama2"]).format(), moe::ChatFormat::Llama2);
  EXPECT_EQ(moe::ChatTemplate::from_source(templates["qwen3_thinking_prefill"]).format(), moe::ChatFormat::Qwen3);
  const auto deepseek = moe::ChatTemplate::from_source(templates["deepseek_v2"]);
  EXPECT_EQ(deepseek.format(), moe::ChatFormat::DeepSeekV2);
  EXPECT_EQ(deepseek.format_name(), "DeepSeek-V2");
  EXPECT_FALSE(deepseek.supports_thinking());
  EXPECT_EQ(moe::ChatTemplate::from_source("").format(), moe::ChatFormat::None);
  const auto glm = moe::ChatTemplate::from_source(templates["glm45"]);
  EXPECT_EQ(glm.format(), moe::ChatFormat::Glm45);
  EXPECT_EQ(glm.format_name(), "GLM-4.5");
  // The DeepSeek-V3 family: one format, told apart by rules that give each its name and thinking.
  struct Expected {
    const char* key;
    const char* name;
    bool thinking, by_default, always;
  };
  for (const Expected& e : {Expected{"deepseek_v3", "DeepSeek-V3", false, false, false},
                            Expected{"deepseek_v3_0324", "DeepSeek-V3-0324", false, false, false},
                            Expected{"deepseek_r1", "DeepSeek-R1", true, true, true},
                            Expected{"deepseek_v3_1", "DeepSeek-V3.1", true, false, false}}) {
    SCOPED_TRACE(e.key);
    const auto t = moe::ChatTemplate::from_source(templates[e.key]);
    EXPECT_EQ(t.format(), moe::ChatFormat::DeepSeekV3);
    EXPECT_EQ(t.format_name(), e.name);
    EXPECT_EQ(t.supports_thinking(), e.thinking);
    EXPECT_EQ(t.thinks_by_default(), e.by_default);
    EXPECT_EQ(t.always_thinks(), e.always);
  }
  const auto minimax = moe::ChatTemplate::from_source(templates["minimax_m2"]);
  EXPECT_EQ(minimax.format(), moe::ChatFormat::MiniMaxM2);
  EXPECT_EQ(minimax.format_name(), "MiniMax-M2");
  EXPECT_TRUE(minimax.supports_thinking());
  EXPECT_TRUE(minimax.thinks_by_default());
  EXPECT_TRUE(minimax.always_thinks());
  // Harmony (GPT-OSS): always reasons, in its analysis channel, which the engine opens after the prompt.
  const auto harmony = moe::ChatTemplate::from_source(templates["harmony"]);
  EXPECT_EQ(harmony.format(), moe::ChatFormat::Harmony);
  EXPECT_EQ(harmony.format_name(), "Harmony");
  EXPECT_TRUE(harmony.supports_thinking());
  EXPECT_TRUE(harmony.thinks_by_default());
  EXPECT_TRUE(harmony.always_thinks());
  EXPECT_EQ(harmony.think_markup().open, "<|channel|>analysis<|message|>");
  EXPECT_EQ(harmony.think_markup().close, "<|end|><|start|>assistant<|channel|>final<|message|>");
  EXPECT_EQ(harmony.thinking_opener(), "<|channel|>analysis<|message|>");
  EXPECT_EQ(harmony.empty_think_close(), harmony.think_markup().close);
  EXPECT_EQ(minimax.thinking_opener(), "");
  EXPECT_EQ(minimax.think_markup().open, "<think>");
  const auto ernie = moe::ChatTemplate::from_source(templates["ernie45"]);
  EXPECT_EQ(ernie.format(), moe::ChatFormat::Ernie45);
  EXPECT_EQ(ernie.format_name(), "ERNIE-4.5");
  EXPECT_FALSE(ernie.supports_thinking());
  EXPECT_TRUE(glm.supports_thinking());
  EXPECT_TRUE(glm.thinks_by_default());
  EXPECT_FALSE(glm.always_thinks());
  EXPECT_TRUE(qwen3.thinks_by_default());
  EXPECT_FALSE(qwen3.always_thinks());
  EXPECT_TRUE(moe::ChatTemplate::from_source(templates["qwen3_thinking_prefill"]).always_thinks());
  EXPECT_FALSE(deepseek.thinks_by_default());
  const auto other = moe::ChatTemplate::from_source("{% for m in messages %}<|user|>{{ m.content }}{% endfor %}");
  EXPECT_EQ(other.format(), moe::ChatFormat::Unknown);
  EXPECT_EQ(other.format_name(), "unknown");
}

// Without a date set, Harmony's system message carries today's (UTC), as strftime_now does; a tool result
// without a tool call is refused, as the template refuses it.
TEST(ChatTemplate, HarmonyDateAndToolResults) {
  const auto t = moe::ChatTemplate::from_source(goldens()["templates"]["harmony"].get<std::string>());
  const std::string text = t.render({{"user", "Hi"}}, true);
  char today[16];
  const std::time_t now = std::time(nullptr);
  std::strftime(today, sizeof today, "%Y-%m-%d", std::gmtime(&now));
  EXPECT_NE(text.find(std::string("Current date: ") + today + "\n"), std::string::npos) << text;
  EXPECT_THROW(t.render({{"user", "Hi"}, {"tool", "{}"}}, true), moe::EngineError);
}

TEST(ChatTemplate, Qwen3ThinkingControl) {
  const auto t = moe::ChatTemplate::from_model_dir(kData / "bpe");
  const std::vector<moe::ChatMessage> chat = {{"user", "Hi"}};
  const std::string base = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(t.render(chat, true), base);
  EXPECT_EQ(t.render(chat, true, true), base);
  EXPECT_EQ(t.render(chat, true, false), base + "<think>\n\n</think>\n\n");
  EXPECT_EQ(t.render(chat, false, false), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, Qwen3DropsThinkingBeforeTheLastQuery) {
  const auto t = moe::ChatTemplate::from_model_dir(kData / "bpe");
  const std::vector<moe::ChatMessage> chat = {
      {"user", "q1"}, {"assistant", "<think>\nold\n</think>\n\na1"}, {"user", "q2"},
      {"assistant", "<think>\nnew\n</think>\n\na2"}};
  EXPECT_EQ(t.render(chat, false),
            "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n"
            "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n<think>\nnew\n</think>\n\na2<|im_end|>\n");
}

TEST(ChatTemplate, SoftSwitchesAreTheFamilys) {
  const auto& templates = goldens()["templates"];
  const auto qwen3 = moe::ChatTemplate::from_model_dir(kData / "bpe");
  const auto glm = moe::ChatTemplate::from_source(templates["glm45"]);
  const auto v31 = moe::ChatTemplate::from_source(templates["deepseek_v3_1"]);
  const auto r1 = moe::ChatTemplate::from_source(templates["deepseek_r1"]);
  const std::vector<moe::ChatMessage> qwen_off = {{"user", "a /no_think"}, {"assistant", "ok"}, {"user", "b"}};
  const std::vector<moe::ChatMessage> glm_off = {{"user", "a"}, {"assistant", "ok"}, {"user", "b /nothink"}};
  // Qwen3: the latest /think or /no_think stays in force; GLM-4.5 has no /no_think.
  EXPECT_EQ(qwen3.soft_switch(qwen_off), false);
  EXPECT_EQ(qwen3.soft_switch(glm_off), std::nullopt);
  EXPECT_EQ(glm.soft_switch(qwen_off), std::nullopt);
  // GLM-4.5: /nothink ending the last user message, and only there.
  EXPECT_EQ(glm.soft_switch(glm_off), false);
  EXPECT_EQ(glm.soft_switch({{"user", "a /nothink"}, {"assistant", "ok"}, {"user", "b"}}), std::nullopt);
  EXPECT_EQ(glm.soft_switch({{"user", "/nothink b"}}), std::nullopt);
  EXPECT_EQ(glm.soft_switch({{"user", "b /nothink"}, {"assistant", "ok"}}), false);
  // DeepSeek has none, and a model that always thinks has none either.
  EXPECT_EQ(v31.soft_switch(qwen_off), std::nullopt);
  EXPECT_EQ(v31.soft_switch(glm_off), std::nullopt);
  EXPECT_EQ(r1.soft_switch(qwen_off), std::nullopt);
  EXPECT_EQ(moe::ChatTemplate::from_source(templates["qwen3_thinking_prefill"]).soft_switch(qwen_off), std::nullopt);
}

TEST(ChatTemplate, ThinkingSwitchesOfGlmAndDeepSeek) {
  const auto& templates = goldens()["templates"];
  const std::vector<moe::ChatMessage> chat = {{"user", "Hi"}};
  const auto glm = moe::ChatTemplate::from_source(templates["glm45"]);
  EXPECT_EQ(glm.render(chat, true), "[gMASK]<sop><|user|>\nHi<|assistant|>");
  EXPECT_EQ(glm.render(chat, true, true), "[gMASK]<sop><|user|>\nHi<|assistant|>");
  EXPECT_EQ(glm.render(chat, true, false), "[gMASK]<sop><|user|>\nHi/nothink<|assistant|>\n<think></think>");
  const auto v31 = moe::ChatTemplate::from_source(templates["deepseek_v3_1"], "<B>");
  EXPECT_EQ(v31.render(chat, true), "<B><｜User｜>Hi<｜Assistant｜></think>");
  EXPECT_EQ(v31.render(chat, true, false), "<B><｜User｜>Hi<｜Assistant｜></think>");
  EXPECT_EQ(v31.render(chat, true, true), "<B><｜User｜>Hi<｜Assistant｜><think>");
  const auto r1 = moe::ChatTemplate::from_source(templates["deepseek_r1"], "<B>");
  EXPECT_EQ(r1.render(chat, true, false), "<B><｜User｜>Hi<｜Assistant｜><think>\n");
  // MiniMax-M2 always thinks; the model identity of the template is the system text when there is none.
  const std::string minimax_source = templates["minimax_m2"];
  const auto minimax = moe::ChatTemplate::from_source(minimax_source);
  EXPECT_EQ(minimax.render(chat, true, false),
            "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nHi[e~[\n]~b]ai\n<think>\n");
  std::string renamed = minimax_source;
  const std::string identity = "You are a helpful assistant.";
  renamed.replace(renamed.find(identity), identity.size(), "You are M2.");
  EXPECT_EQ(moe::ChatTemplate::from_source(renamed).render(chat, false),
            "]~!b[]~b]system\nYou are M2.[e~[\n]~b]user\nHi[e~[\n");
  try {
    minimax.render({{"user", "Hi"}, {"tool", "42"}}, true);
    FAIL() << "expected EngineError";
  } catch (const moe::EngineError& e) {
    EXPECT_EQ(e.field(), "messages[1].role");
  }
}

// Kimi K2: Instruct never thinks; Thinking always does (the model opens the block itself) and has no switch. The
// empty-conversation and unknown-role renders below were checked with transformers' own Jinja environment
// (apply_chat_template refuses an empty conversation, and the goldens have no unknown roles).
TEST(ChatTemplate, KimiVariants) {
  const auto& templates = goldens()["templates"];
  const auto instruct = moe::ChatTemplate::from_source(templates["kimi_k2"]);
  const auto thinking = moe::ChatTemplate::from_source(templates["kimi_k2_thinking"]);
  EXPECT_EQ(instruct.format(), moe::ChatFormat::Kimi);
  EXPECT_EQ(instruct.format_name(), "Kimi-K2");
  EXPECT_FALSE(instruct.supports_thinking());
  EXPECT_FALSE(instruct.always_thinks());
  EXPECT_EQ(thinking.format(), moe::ChatFormat::Kimi);
  EXPECT_EQ(thinking.format_name(), "Kimi-K2-Thinking");
  EXPECT_TRUE(thinking.supports_thinking());
  EXPECT_TRUE(thinking.thinks_by_default());
  EXPECT_TRUE(thinking.always_thinks());
  EXPECT_EQ(thinking.soft_switch({{"user", "Hi /no_think"}}), std::nullopt);
  const std::string prompt = "<|im_assistant|>assistant<|im_middle|>";
  EXPECT_EQ(instruct.render({}, true), prompt);
  EXPECT_EQ(thinking.render({}, true),
            "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>" + prompt);
  const std::vector<moe::ChatMessage> odd = {{"system", "S"}, {"critic", "C"}};
  EXPECT_EQ(instruct.render(odd, false), "<|im_system|>system<|im_middle|>S<|im_end|>C<|im_end|>");
  EXPECT_EQ(thinking.render(odd, false),
            "<|im_system|>system<|im_middle|>S<|im_end|><|im_system|>critic<|im_middle|>C<|im_end|>");
  // A cut before any thinking closes the block as the template writes an empty one.
  EXPECT_EQ(thinking.empty_think_close(), "</think>");
  EXPECT_EQ(moe::ChatTemplate::from_source(templates["glm45"]).empty_think_close(), "</think>\n");
  EXPECT_EQ(moe::ChatTemplate::from_source(templates["deepseek_v3_1"]).empty_think_close(), "</think>");
  EXPECT_EQ(moe::ChatTemplate::from_source(templates["deepseek_r1"]).empty_think_close(), "\n\n</think>\n\n");
  // The default system text is the template's own.
  std::string renamed = templates["kimi_k2"];
  renamed.replace(renamed.find("You are a helpful assistant"), 27, "You are K2");
  EXPECT_EQ(moe::ChatTemplate::from_source(renamed).render({{"user", "Hi"}}, false),
            "<|im_system|>system<|im_middle|>You are K2<|im_end|><|im_user|>user<|im_middle|>Hi<|im_end|>");
}

// The tiktoken fixture folder carries Kimi-K2-Thinking's template: the folder reads as Kimi, and its prompt
// tokenizes with the special tokens whole.
TEST(ChatTemplate, KimiFolderTokenizesItsPrompt) {
  const fs::path dir = fs::path(MOE_TEST_DATA_DIR) / "tiktoken" / "model";
  const auto t = moe::ChatTemplate::from_model_dir(dir);
  ASSERT_EQ(t.format_name(), "Kimi-K2-Thinking");
  const auto tok = moe::Tokenizer::load(dir);
  const std::string text = t.render({{"user", "你好"}}, true);
  const auto ids = tok->encode(text, false);
  for (const char* special : {"<|im_system|>", "<|im_middle|>", "<|im_end|>", "<|im_user|>", "<|im_assistant|>"}) {
    const auto id = tok->token_to_id(special);
    ASSERT_TRUE(id.has_value()) << special;
    EXPECT_NE(std::find(ids.begin(), ids.end(), *id), ids.end()) << special;
  }
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(ChatTemplate, NoneAndUnknownRefuseToRender) {
  const std::vector<moe::ChatMessage> chat = {{"user", "Hi"}};
  EXPECT_THROW(moe::ChatTemplate::from_source("").render(chat, true), moe::EngineError);
  try {
    moe::ChatTemplate::from_source("{{ messages }}").render(chat, true);
    FAIL() << "expected EngineError";
  } catch (const moe::EngineError& e) {
    EXPECT_EQ(e.field(), "chat_template");
  }
}

TEST(ChatTemplate, InstFormatsRequireAlternation) {
  for (const char* name : {"llama2"}) {
    const auto t = moe::ChatTemplate::from_source(goldens()["templates"][name], "<s>", "</s>");
    try {
      t.render({{"user", "a"}, {"user", "b"}}, true);
      FAIL() << "expected EngineError";
    } catch (const moe::EngineError& e) {
      EXPECT_EQ(e.field(), "messages[1].role");
    }
  }
  const auto mistral = moe::ChatTemplate::from_model_dir(kData / "spm");
  EXPECT_THROW(mistral.render({{"system", "s"}, {"assistant", "a"}}, true), moe::EngineError);
  EXPECT_EQ(mistral.render({}, true), "<s>");
}

TEST(ChatTemplate, ChatMLDefaultSystemPrompt) {
  const auto t = moe::ChatTemplate::from_source(goldens()["templates"]["chatml"]);
  EXPECT_EQ(t.render({{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  const auto plain = moe::ChatTemplate::from_source(goldens()["templates"]["chatml_no_system"]);
  EXPECT_EQ(plain.render({{"user", "Hi"}}, false), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, FolderVariants) {
  {
    ScratchDir dir;  // no tokenizer_config.json
    EXPECT_EQ(moe::ChatTemplate::from_model_dir(dir.path).format(), moe::ChatFormat::None);
  }
  {
    ScratchDir dir;  // a config without a template
    dir.write("tokenizer_config.json", R"({"eos_token": "</s>"})");
    EXPECT_EQ(moe::ChatTemplate::from_model_dir(dir.path).format(), moe::ChatFormat::None);
  }
  {
    ScratchDir dir;  // the list form: the "default" entry is used
    json cfg = {{"bos_token", {{"content", "<s>"}}},
                {"eos_token", "</s>"},
                {"chat_template",
                 {{{"name", "tool_use"}, {"template", "{{ '<|im_start|>' }}"}},
                  {{"name", "default"}, {"template", goldens()["templates"]["llama2"]}}}}};
    dir.write("tokenizer_config.json", cfg.dump());
    const auto t = moe::ChatTemplate::from_model_dir(dir.path);
    EXPECT_EQ(t.format(), moe::ChatFormat::Llama2);
    EXPECT_EQ(t.render({{"user", " hi "}}, true), "<s>[INST] hi [/INST]");
  }
  {
    ScratchDir dir;  // ERNIE-4.5 takes its cls and sep tokens from the config when it names them
    const nlohmann::json cfg = {{"chat_template", goldens()["templates"]["ernie45"]},
                                {"cls_token", "<C>"},
                                {"sep_token", {{"content", "<S>"}, {"special", true}}}};
    dir.write("tokenizer_config.json", cfg.dump());
    EXPECT_EQ(moe::ChatTemplate::from_model_dir(dir.path).render({{"user", "Hi"}, {"assistant", "Yo"}}, true),
              "<C>User: Hi\nAssistant: Yo<S>Assistant: ");
  }
  {
    ScratchDir dir;  // chat_template.jinja (newer transformers) wins over the config
    dir.write("tokenizer_config.json", R"({"chat_template": "[INST]"})");
    dir.write("chat_template.jinja", goldens()["templates"]["chatml"].get<std::string>());
    EXPECT_EQ(moe::ChatTemplate::from_model_dir(dir.path).format(), moe::ChatFormat::ChatML);
  }
  {
    ScratchDir dir;  // broken JSON names the file
    dir.write("tokenizer_config.json", R"({"chat_template": "x", )");
    try {
      moe::ChatTemplate::from_model_dir(dir.path);
      FAIL() << "expected EngineError";
    } catch (const moe::EngineError& e) {
      EXPECT_NE(e.file().find("tokenizer_config.json"), std::string::npos);
    }
  }
  {
    ScratchDir dir;  // a template of the wrong kind names the field
    dir.write("tokenizer_config.json", R"({"chat_template": 5})");
    try {
      moe::ChatTemplate::from_model_dir(dir.path);
      FAIL() << "expected EngineError";
    } catch (const moe::EngineError& e) {
      EXPECT_EQ(e.field(), "chat_template");
    }
  }
}

}  // namespace
