#pragma once
// Chat templates we know, recognised from tokenizer_config.json's chat_template. We never execute a
// Jinja template: a template we do not recognise is reported (kind Unknown), and prompts then fall
// back to plain text only when the caller asks for it. SPECS.md §10.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace moe {

class GgufFile;

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
  DeepSeekV3,  // <bos>system<｜User｜>…<｜Assistant｜>…<｜end▁of▁sentence｜> (V3, V3-0324, R1, V3.1; DeepSeekRules)
  Glm45,       // [gMASK]<sop><|user|>\n…<|assistant|>\n<think>…</think>\n… (GLM-4.5, 4.5-Air, 4.6)
  MiniMaxM2,   // ]~!b[]~b]system\n…[e~[\n]~b]user\n…[e~[\n]~b]ai\n<think>\n (always thinks)
  Ernie45,     // <cls>User: …\nAssistant: …<sep> (ERNIE-4.5)
  Kimi,        // <|im_system|>system<|im_middle|>…<|im_end|><|im_user|>user<|im_middle|>… (Kimi K2; KimiRules)
  Harmony,     // <|start|>role<|message|>…<|end|>, answers in <|channel|>final (GPT-OSS; thinks in its analysis channel)
};

// The markup around a think block, as text.
struct ThinkMarkup {
  std::string open = "<think>";
  std::string close = "</think>";
};

// What tells Kimi K2's templates apart (read from the template's source).
struct KimiRules {
  bool thinking = false;          // K2-Thinking: answers open with <think></think> (their thought dropped), and the
                                  // model always thinks; roles other than the four get an <|im_system|> header
  bool tool_return_header = false;  // "## Return of <tool_call_id>\n" before a tool result (K2-Thinking)
  bool system_when_empty = false;   // the default system message even for an empty conversation (K2-Thinking)
};

// What tells the DeepSeek-V3 family's templates apart (read from the template's source).
struct DeepSeekRules {
  bool join_systems = false;         // every system message, joined by blank lines (V3 keeps only the last)
  bool tag_after_user = false;       // V3-0324: <｜Assistant｜> follows each user message, not each answer
  bool strip_to_last_close = false;  // R1: an answer keeps only what follows its last </think>
  bool opens_think = false;          // R1: the generation prompt opens <think>\n (R1 always thinks)
  bool think_switch = false;         // V3.1: `thinking` (default off) ends the prompt with <think> or </think>
  bool prompt_after_answer = false;  // V3.1-Terminus: a generation prompt even after an answer
  bool newline_between_outputs = false;  // "\n" between consecutive tool outputs (V3, V3-0324)
};

// Qwen3's soft switches: the latest /think or /no_think in a user or system message (SPECS.md §10.2).
std::optional<bool> latest_soft_switch(const std::vector<ChatMessage>& messages);

class ChatTemplate {
 public:
  // Reads tokenizer_config.json in the folder (absent file → None), or a GGUF file's template. Throws
  // EngineError when the file is broken JSON.
  static ChatTemplate from_model_dir(const std::filesystem::path& dir);
  // A GGUF file's tokenizer.chat_template (none: format None), with its BOS and EOS token strings.
  static ChatTemplate from_gguf(const GgufFile& file);
  static ChatTemplate from_source(const std::string& jinja_source, std::string bos_token = "",
                                  std::string eos_token = "");

  ChatFormat format() const { return format_; }
  std::string format_name() const;
  // Whether the template has a think block the engine can switch and cap (Qwen3, GLM-4.5, DeepSeek-R1 and
  // V3.1, MiniMax-M2, Kimi-K2-Thinking).
  bool supports_thinking() const;
  // Whether the model thinks when the switch is not passed and no soft switch says otherwise (all but V3.1).
  bool thinks_by_default() const;
  // Whether the model thinks whatever the switch says (Qwen3-2507-Thinking, R1 and MiniMax-M2, whose generation
  // prompts open the think block; Kimi-K2-Thinking, which opens it itself): such a model cannot be told not to
  // think, only cut at once.
  // GPT-OSS (Harmony) always reasons in its analysis channel.
  bool always_thinks() const;
  // The switch the latest messages set in text: Qwen3's /think and /no_think (the latest one in a user or
  // system message wins), GLM-4.5's /nothink at the end of the last user message. nullopt: none.
  std::optional<bool> soft_switch(const std::vector<ChatMessage>& messages) const;
  // What follows <think> in the template's own empty think block, for a cut before the first thinking token:
  // "</think>" (Kimi-K2-Thinking, DeepSeek-V3.1), "</think>\n" (GLM-4.5), Harmony's close markup, else Qwen3's
  // "\n\n</think>\n\n".
  std::string empty_think_close() const;
  // The markup of a think block: <think> … </think>, or Harmony's analysis channel, opened by
  // "<|channel|>analysis<|message|>" and closed by "<|end|><|start|>assistant<|channel|>final<|message|>".
  ThinkMarkup think_markup() const;
  // What the engine writes after the generation prompt so that the model starts in its think block: Harmony's
  // analysis header (the template ends with "<|start|>assistant" and the model names its channel itself, which a
  // GPT-OSS model always opens with analysis); "" for the other formats, whose prompts open the block themselves
  // or whose models open it as a token of its own.
  std::string thinking_opener() const;
  // Harmony's "Current date: …" line: strftime_now("%Y-%m-%d") in the template, today's UTC date unless set
  // here (tests, reproducible prompts).
  void set_current_date(std::string yyyy_mm_dd) { current_date_ = std::move(yyyy_mm_dd); }

  // Renders the conversation as the template would (transformers' apply_chat_template, tokenize=False).
  // enable_thinking: nullopt = not passed (the template's default). DeepSeek-V3.1's template calls it
  // `thinking`. Throws EngineError for None/Unknown.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     std::optional<bool> enable_thinking = std::nullopt) const;

 private:
  std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                            std::optional<bool> enable_thinking) const;
  std::string render_inst(const std::vector<ChatMessage>& messages) const;
  std::string render_deepseek_v3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 std::optional<bool> enable_thinking) const;
  std::string render_glm45(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                           std::optional<bool> enable_thinking) const;
  std::string render_minimax_m2(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_kimi(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_harmony(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  ChatFormat format_ = ChatFormat::None;
  std::string bos_;
  std::string eos_;
  std::string cls_ = "<|begin_of_sentence|>", sep_ = "<|end_of_sentence|>";  // ERNIE-4.5's, unless the config names others
  std::string file_;                          // where the template came from, for errors ("" for from_source)
  std::optional<std::string> default_system_;  // ChatML, MiniMax-M2, Kimi: the system text when the chat has none
  bool tool_turns_as_user_ = false;           // ChatML/Qwen3: role "tool" rendered as <tool_response> in a user turn
  bool prefill_think_ = false;  // Qwen3 "Thinking" variants, R1, MiniMax-M2: the generation prompt opens <think>
  DeepSeekRules deepseek_;                    // DeepSeekV3 only
  KimiRules kimi_;                            // Kimi only
  std::string current_date_;                  // Harmony: "" = today (UTC)
};

}  // namespace moe
