#pragma once
// Chat templates we know, recognised from tokenizer_config.json's chat_template. We never execute a
// Jinja template: a template we do not recognise is reported (kind Unknown), and prompts then fall
// back to plain text only when the caller asks for it. SPECS.md §10.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace moe {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;  // for assistant turns, may hold <think>…</think> before the answer
};

enum class ChatFormat {
  None,      // tokenizer_config.json has no chat_template
  Unknown,   // a template we do not recognise (reported, not executed)
  ChatML,    // <|im_start|>role\n…<|im_end|>\n (Qwen2, Qwen2-MoE)
  Qwen3,     // ChatML + thinking: enable_thinking, history without old thinking
  Mistral,   // <s>[INST] … [/INST] answer</s>
  Llama2,    // <s>[INST] <<SYS>>\n…\n<</SYS>>\n\n … [/INST]
  DeepSeekV2,  // <bos>User: …\n\nAssistant: …<eos> (DeepSeek-V2-Chat, V2-Lite-Chat)
};

class ChatTemplate {
 public:
  // Reads tokenizer_config.json in the folder (absent file → None). Throws EngineError when the file is
  // broken JSON.
  static ChatTemplate from_model_dir(const std::filesystem::path& dir);
  static ChatTemplate from_source(const std::string& jinja_source, std::string bos_token = "",
                                  std::string eos_token = "");

  ChatFormat format() const { return format_; }
  std::string format_name() const;
  bool supports_thinking() const { return format_ == ChatFormat::Qwen3; }

  // Renders the conversation as the template would (transformers' apply_chat_template, tokenize=False).
  // enable_thinking: nullopt = not passed (Qwen3: thinking on). Throws EngineError for None/Unknown.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     std::optional<bool> enable_thinking = std::nullopt) const;

 private:
  std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                            std::optional<bool> enable_thinking) const;
  std::string render_inst(const std::vector<ChatMessage>& messages) const;
  std::string render_deepseek_v2(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  ChatFormat format_ = ChatFormat::None;
  std::string bos_;
  std::string eos_;
  std::string file_;                          // where the template came from, for errors ("" for from_source)
  std::optional<std::string> default_system_;  // ChatML: system turn added when the chat has none
  bool tool_turns_as_user_ = false;           // ChatML/Qwen3: role "tool" rendered as <tool_response> in a user turn
  bool prefill_think_ = false;                // Qwen3 "Thinking" variants: the generation prompt opens <think>
};

}  // namespace moe
