// Chat templates recognised by fingerprints in their Jinja source and rendered natively (SPECS.md §10).
// Each render_* function reproduces what transformers' apply_chat_template(..., tokenize=False) produces for
// that family's template; tests/data/tokenizers/chat_expected.json holds the goldens.
#include "engine/tokenizer/chat_template.h"

#include "engine/formats/gguf.h"

#include <cstddef>
#include <ctime>

#include "engine/common/error.h"
#include "engine/formats/json_file.h"
#include "engine/formats/text_file.h"
#include "engine/tokenizer/special_tokens.h"
#include "engine/tokenizer/utf8.h"

namespace moe {

namespace {

bool contains(std::string_view s, std::string_view needle) { return s.find(needle) != std::string_view::npos; }
bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.substr(s.size() - p.size()) == p; }

// Python's str.lstrip('\n') / rstrip('\n') / strip('\n').
std::string_view lstrip_newlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  return s;
}
std::string_view rstrip_newlines(std::string_view s) {
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}
std::string_view strip_newlines(std::string_view s) { return lstrip_newlines(rstrip_newlines(s)); }

// Python's str.strip(): Unicode whitespace on both ends.
std::string_view python_strip(std::string_view s) {
  const size_t begin = utf8::python_space_after(s, 0);
  const size_t end = s.size() - utf8::python_space_before(s, begin, s.size());
  return s.substr(begin, end - begin);
}

// What follows an answer's first or last </think> (the whole content when it has none): DeepSeek-V3.1 and
// DeepSeek-R1 / Kimi-K2-Thinking keep these as the answer.
std::string_view after_think_close(std::string_view content, bool last) {
  constexpr std::string_view kClose = "</think>";
  const size_t close = last ? content.rfind(kClose) : content.find(kClose);
  return close == std::string_view::npos ? content : content.substr(close + kClose.size());
}

// An answer's think block as the thinking templates read it (Qwen3, GLM-4.5 and MiniMax-M2 all write
// content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') and
// content.split('</think>')[-1].lstrip('\n'); MiniMax-M2 strips both ends, i.e. also rstrips these). Without a
// </think>, the whole content is the answer and the thought is empty.
struct ThinkSplit {
  std::string_view thought, answer;
  bool closed = false;  // the content has a </think> (else the templates leave it as it is)
};
ThinkSplit split_think(std::string_view content) {
  constexpr std::string_view kOpen = "<think>", kClose = "</think>";
  const size_t first_close = content.find(kClose);
  if (first_close == std::string_view::npos) return {{}, content, false};
  std::string_view before = rstrip_newlines(content.substr(0, first_close));
  if (const size_t open = before.rfind(kOpen); open != std::string_view::npos) before.remove_prefix(open + kOpen.size());
  return {lstrip_newlines(before), lstrip_newlines(after_think_close(content, /*last=*/true)), true};
}

// The "User: … Assistant:" formats of DeepSeek-V2-Chat and ERNIE-4.5: an opening token, then each message in
// order (user and system text closed by line_end, "Assistant: …" closed by answer_end); other roles render
// nothing, as in the templates. DeepSeek-V2: <bos>, a blank line, <eos>, and the prompt "Assistant:" (the model
// writes the space). ERNIE-4.5: <cls>, one newline, <sep>, and the prompt "Assistant: ".
std::string render_user_assistant(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                  std::string_view open, std::string_view line_end, std::string_view answer_end,
                                  std::string_view prompt) {
  std::string out(open);
  for (const ChatMessage& m : messages) {
    if (m.role == "user") out.append("User: ").append(m.content).append(line_end);
    else if (m.role == "assistant") out.append("Assistant: ").append(m.content).append(answer_end);
    else if (m.role == "system") out.append(m.content).append(line_end);
  }
  if (add_generation_prompt) out.append(prompt);
  return out;
}

// The index of the last user message (-1: none, as the templates' namespace(last_user_index=-1)), after which
// the thinking templates keep an answer's thought.
std::ptrdiff_t last_user_index(const std::vector<ChatMessage>& messages) {
  std::ptrdiff_t last = -1;
  for (size_t i = 0; i < messages.size(); ++i)
    if (messages[i].role == "user") last = std::ptrdiff_t(i);
  return last;
}

// A ChatML template's built-in system prompt, e.g. '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
// inside a string literal: the text between "<|im_start|>system" + newline (written as \n or literally) and
// "<|im_end|>", provided it is plain text (no quotes or Jinja syntax, i.e. not "... + messages[0].content").
std::optional<std::string> chatml_default_system(const std::string& src) {
  constexpr std::string_view kHead = "<|im_start|>system";
  constexpr std::string_view kEnd = "<|im_end|>";
  for (size_t at = src.find(kHead); at != std::string::npos; at = src.find(kHead, at + 1)) {
    size_t p = at + kHead.size();
    if (src.compare(p, 2, "\\n") == 0) p += 2;
    else if (p < src.size() && src[p] == '\n') p += 1;
    else continue;
    const size_t end = src.find(kEnd, p);
    if (end == std::string::npos) continue;
    const std::string_view body(src.data() + p, end - p);
    if (body.empty() || body.find_first_of("'\"{}+") != std::string_view::npos) continue;
    std::string text;  // undo the Jinja string escapes that plain text can hold
    for (size_t i = 0; i < body.size(); ++i) {
      if (body[i] == '\\' && i + 1 < body.size()) {
        const char c = body[++i];
        text.push_back(c == 'n' ? '\n' : c == 't' ? '\t' : c);
      } else {
        text.push_back(body[i]);
      }
    }
    return text;
  }
  return std::nullopt;
}

// Thinking-only Qwen3 variants (2507 "Thinking"): the add_generation_prompt block opens a think block by
// itself instead of offering enable_thinking.
bool generation_prompt_opens_think(const std::string& src) {
  const size_t at = src.rfind("add_generation_prompt");
  if (at == std::string::npos) return false;
  const std::string_view tail(src.data() + at, src.size() - at);
  return contains(tail, "<think>") && !contains(tail, "enable_thinking");
}

// The DeepSeek-V3 family's differences, by the expressions that make them. The checks are on
// the source as tokenizer_config.json stores it, where a newline inside a Jinja string is the two characters \n.
DeepSeekRules deepseek_rules(const std::string& src) {
  DeepSeekRules r;
  r.join_systems = contains(src, "is_first_sp");
  r.tag_after_user = contains(src, "message['content'] + '<｜Assistant｜>'");
  r.strip_to_last_close = contains(src, "split('</think>')[-1]");
  r.opens_think = contains(src, "'<｜Assistant｜><think>\\n'");
  r.think_switch = contains(src, "thinking is defined") && contains(src, "<｜Assistant｜></think>");
  r.prompt_after_answer = r.think_switch && contains(src, "is_prefix");
  r.newline_between_outputs = contains(src, "'\\n<｜tool▁output▁begin｜>'");
  return r;
}

// MiniMax-M2's system text when the chat has none: the template's model_identity string.
std::string minimax_identity(const std::string& src) {
  constexpr std::string_view kSet = "set model_identity = \"";
  if (const size_t at = src.find(kSet); at != std::string::npos) {
    const size_t begin = at + kSet.size(), end = src.find('"', begin);
    if (end != std::string::npos) return src.substr(begin, end - begin);
  }
  return "You are a helpful assistant.";
}

// Kimi K2's system text when the chat has none: the literal after the first "<|im_system|>system<|im_middle|>"
// that is text, not the start of an expression.
std::string kimi_default_system(const std::string& src) {
  constexpr std::string_view kOpen = "<|im_system|>system<|im_middle|>", kClose = "<|im_end|>";
  for (size_t at = src.find(kOpen); at != std::string::npos; at = src.find(kOpen, at + 1)) {
    const size_t begin = at + kOpen.size(), end = src.find(kClose, begin);
    if (end == std::string::npos) break;
    const std::string text = src.substr(begin, end - begin);
    if (!text.empty() && text.find_first_of("'\"{}") == std::string::npos) return text;
  }
  return "You are Kimi, an AI assistant created by Moonshot AI.";
}

KimiRules kimi_rules(const std::string& src) {
  KimiRules r;
  r.thinking = contains(src, "<think></think>");
  r.tool_return_header = contains(src, "## Return of ");
  r.system_when_empty = contains(src, "messages|length == 0");
  return r;
}

}  // namespace

ChatTemplate ChatTemplate::from_source(const std::string& src, std::string bos_token, std::string eos_token) {
  ChatTemplate t;
  t.bos_ = std::move(bos_token);
  t.eos_ = std::move(eos_token);
  if (src.empty()) {
    t.format_ = ChatFormat::None;
  } else if (contains(src, "<|im_start|>")) {
    const bool thinking = contains(src, "enable_thinking") || contains(src, "reasoning_content") ||
                          contains(src, "</think>");
    t.format_ = thinking ? ChatFormat::Qwen3 : ChatFormat::ChatML;
    t.tool_turns_as_user_ = contains(src, "<tool_response>");
    if (thinking) t.prefill_think_ = generation_prompt_opens_think(src);
    else t.default_system_ = chatml_default_system(src);
  } else if (contains(src, "[INST]")) {
    t.format_ = contains(src, "<<SYS>>") ? ChatFormat::Llama2 : ChatFormat::Mistral;
  } else if (contains(src, "'User: ' + message['content'] + '\\n\\n'") &&
             contains(src, "'Assistant: ' + message['content'] + eos_token")) {
    t.format_ = ChatFormat::DeepSeekV2;
  } else if (contains(src, "<｜User｜>") && contains(src, "<｜Assistant｜>")) {
    t.format_ = ChatFormat::DeepSeekV3;
    t.deepseek_ = deepseek_rules(src);
    t.prefill_think_ = t.deepseek_.opens_think;
  } else if (contains(src, "[gMASK]<sop>") && contains(src, "<|assistant|>")) {
    t.format_ = ChatFormat::Glm45;
  } else if (contains(src, "\"User: \" + message[\"content\"]") &&
             contains(src, "\"Assistant: \" + message[\"content\"] + sep_token")) {
    t.format_ = ChatFormat::Ernie45;
  } else if (contains(src, "]~b]user") && contains(src, "]~b]ai")) {
    t.format_ = ChatFormat::MiniMaxM2;
    t.prefill_think_ = true;
    t.default_system_ = minimax_identity(src);
  } else if (contains(src, "<|start|>system<|message|>") && contains(src, "<|channel|>final<|message|>") &&
             contains(src, "Valid channels: analysis, commentary, final")) {
    t.format_ = ChatFormat::Harmony;
  } else if (contains(src, "<|im_user|>") && contains(src, "<|im_assistant|>") && contains(src, "<|im_middle|>")) {
    t.format_ = ChatFormat::Kimi;
    t.kimi_ = kimi_rules(src);
    t.default_system_ = kimi_default_system(src);
  } else {
    t.format_ = ChatFormat::Unknown;
  }
  return t;
}

ChatTemplate ChatTemplate::from_model_dir(const std::filesystem::path& dir) {
  if (is_gguf_file(dir)) return from_gguf(*GgufFile::open(dir));
  const auto config_path = dir / "tokenizer_config.json";
  const auto jinja_path = dir / "chat_template.jinja";  // where newer transformers versions save it
  std::error_code ec;
  std::string source, file, bos, eos, cls, sep;
  if (std::filesystem::exists(config_path, ec)) {
    file = config_path.string();
    const nlohmann::json j = load_json_file(config_path);
    if (!j.is_object()) throw EngineError(file, "", "expected a JSON object");
    if (j.contains("bos_token")) bos = detail::token_content(j["bos_token"], file, "bos_token").value_or("");
    if (j.contains("eos_token")) eos = detail::token_content(j["eos_token"], file, "eos_token").value_or("");
    for (const char* key : {"cls_token", "sep_token"})
      if (j.contains(key))
        if (auto content = detail::token_content(j[key], file, key)) (key[0] == 'c' ? cls : sep) = *content;
    if (j.contains("chat_template") && !j["chat_template"].is_null()) {
      const auto& ct = j["chat_template"];
      if (ct.is_string()) {
        source = ct.get<std::string>();
      } else if (ct.is_array()) {
        // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]: take "default", else the first.
        for (size_t i = 0; i < ct.size(); ++i) {
          const auto& entry = ct[i];
          if (!entry.is_object() || !entry.contains("template") || !entry["template"].is_string())
            throw EngineError(file, "chat_template[" + std::to_string(i) + "]", "expected {\"name\", \"template\"}");
          const bool is_default = entry.contains("name") && entry["name"] == "default";
          if (source.empty() || is_default) source = entry["template"].get<std::string>();
          if (is_default) break;
        }
      } else {
        throw EngineError(file, "chat_template", "expected a string or a list of named templates");
      }
    }
  }
  if (std::filesystem::exists(jinja_path, ec)) {
    source = read_whole_file(jinja_path);
    file = jinja_path.string();
  }
  ChatTemplate t = from_source(source, bos, eos);
  t.file_ = file;
  if (!cls.empty()) t.cls_ = cls;
  if (!sep.empty()) t.sep_ = sep;
  return t;
}

ChatTemplate ChatTemplate::from_gguf(const GgufFile& g) {
  const auto& meta = g.metadata();
  // The BOS and EOS strings a template may print, from their ids.
  auto token = [&](const char* key) -> std::string {
    if (!meta.contains(key) || !meta.contains("tokenizer.ggml.tokens")) return {};
    const auto& tokens = meta["tokenizer.ggml.tokens"];
    const auto& id = meta[key];
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || uint64_t(id.get<int64_t>()) >= tokens.size() ||
        !tokens[size_t(id.get<int64_t>())].is_string())
      throw EngineError(g.path(), key, "not the id of a token in tokenizer.ggml.tokens: " + describe_json(id));
    return tokens[size_t(id.get<int64_t>())].get<std::string>();
  };
  ChatTemplate t = from_source(GgufMetadata(g).string_or("tokenizer.chat_template", ""), token("tokenizer.ggml.bos_token_id"),
                               token("tokenizer.ggml.eos_token_id"));
  t.file_ = g.path();
  return t;
}

std::string ChatTemplate::format_name() const {
  switch (format_) {
    case ChatFormat::None: return "none";
    case ChatFormat::Unknown: return "unknown";
    case ChatFormat::ChatML: return "ChatML";
    case ChatFormat::Qwen3: return "Qwen3";
    case ChatFormat::Mistral: return "Mistral";
    case ChatFormat::Llama2: return "Llama-2";
    case ChatFormat::DeepSeekV2: return "DeepSeek-V2";
    case ChatFormat::DeepSeekV3:
      if (deepseek_.think_switch) return "DeepSeek-V3.1";
      if (deepseek_.opens_think) return "DeepSeek-R1";
      return deepseek_.tag_after_user ? "DeepSeek-V3-0324" : "DeepSeek-V3";
    case ChatFormat::Glm45: return "GLM-4.5";
    case ChatFormat::MiniMaxM2: return "MiniMax-M2";
    case ChatFormat::Ernie45: return "ERNIE-4.5";
    case ChatFormat::Kimi: return kimi_.thinking ? "Kimi-K2-Thinking" : "Kimi-K2";
    case ChatFormat::Harmony: return "Harmony";
  }
  return "unknown";
}

bool ChatTemplate::supports_thinking() const {
  switch (format_) {
    case ChatFormat::Qwen3:
    case ChatFormat::Glm45:
    case ChatFormat::MiniMaxM2:
    case ChatFormat::Harmony: return true;
    case ChatFormat::DeepSeekV3: return deepseek_.think_switch || deepseek_.opens_think;
    case ChatFormat::Kimi: return kimi_.thinking;
    default: return false;
  }
}

bool ChatTemplate::thinks_by_default() const {
  return supports_thinking() && !(format_ == ChatFormat::DeepSeekV3 && deepseek_.think_switch);
}

bool ChatTemplate::always_thinks() const {
  return prefill_think_ || format_ == ChatFormat::Harmony || (format_ == ChatFormat::Kimi && kimi_.thinking);
}

ThinkMarkup ChatTemplate::think_markup() const {
  if (format_ == ChatFormat::Harmony)
    return ThinkMarkup{"<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>"};
  return ThinkMarkup{};
}

std::string ChatTemplate::thinking_opener() const {
  return format_ == ChatFormat::Harmony ? think_markup().open : std::string();
}

std::string ChatTemplate::empty_think_close() const {
  if (format_ == ChatFormat::Harmony) return think_markup().close;
  if (format_ == ChatFormat::Kimi || (format_ == ChatFormat::DeepSeekV3 && deepseek_.think_switch)) return "</think>";
  if (format_ == ChatFormat::Glm45) return "</think>\n";
  return "\n\n</think>\n\n";
}

std::optional<bool> latest_soft_switch(const std::vector<ChatMessage>& messages) {
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    if (it->role != "user" && it->role != "system") continue;
    const size_t think = it->content.rfind("/think");
    const size_t no_think = it->content.rfind("/no_think");
    if (think == std::string::npos && no_think == std::string::npos) continue;
    if (think == std::string::npos) return false;
    if (no_think == std::string::npos) return true;
    return think > no_think;
  }
  return std::nullopt;
}

std::optional<bool> ChatTemplate::soft_switch(const std::vector<ChatMessage>& messages) const {
  if (always_thinks()) return std::nullopt;  // a thinking-only model has no switch
  if (format_ == ChatFormat::Qwen3) return latest_soft_switch(messages);
  if (format_ == ChatFormat::Glm45) {
    for (auto it = messages.rbegin(); it != messages.rend(); ++it)
      if (it->role == "user") return ends_with(it->content, "/nothink") ? std::optional<bool>(false) : std::nullopt;
  }
  return std::nullopt;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 std::optional<bool> enable_thinking) const {
  switch (format_) {
    case ChatFormat::None:
      throw EngineError(file_, "chat_template", "the model has no chat template");
    case ChatFormat::Unknown:
      throw EngineError(file_, "chat_template", "a chat template this engine does not recognise (not executed)");
    case ChatFormat::ChatML:
    case ChatFormat::Qwen3:
      return render_chatml(messages, add_generation_prompt, enable_thinking);
    case ChatFormat::Mistral:
    case ChatFormat::Llama2:
      return render_inst(messages);
    case ChatFormat::DeepSeekV2:
      return render_user_assistant(messages, add_generation_prompt, bos_, "\n\n", eos_, "Assistant:");
    case ChatFormat::DeepSeekV3:
      return render_deepseek_v3(messages, add_generation_prompt, enable_thinking);
    case ChatFormat::Glm45:
      return render_glm45(messages, add_generation_prompt, enable_thinking);
    case ChatFormat::MiniMaxM2:
      return render_minimax_m2(messages, add_generation_prompt);
    case ChatFormat::Ernie45:
      return render_user_assistant(messages, add_generation_prompt, cls_, "\n", sep_, "Assistant: ");
    case ChatFormat::Kimi:
      return render_kimi(messages, add_generation_prompt);
    case ChatFormat::Harmony:
      return render_harmony(messages, add_generation_prompt);
  }
  return {};
}

// ChatML, and Qwen3's additions (SPECS.md §10.1): system first; thinking in assistant history kept only after
// the last real user query; tool results inside user turns; enable_thinking=false prefills an empty think.
std::string ChatTemplate::render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                        std::optional<bool> enable_thinking) const {
  const bool qwen3 = format_ == ChatFormat::Qwen3;
  const size_t n = messages.size();
  std::string out;
  auto turn = [&](std::string_view role, std::string_view content) {
    out.append("<|im_start|>").append(role).append("\n").append(content).append("<|im_end|>\n");
  };
  auto tool_turn = [&](size_t i) {
    if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
    out.append("\n<tool_response>\n").append(messages[i].content).append("\n</tool_response>");
    if (i + 1 == n || messages[i + 1].role != "tool") out += "<|im_end|>\n";
  };

  if (!qwen3) {
    for (size_t i = 0; i < n; ++i) {
      const ChatMessage& m = messages[i];
      if (i == 0 && m.role != "system" && default_system_) turn("system", *default_system_);
      if (m.role == "tool" && tool_turns_as_user_) tool_turn(i);
      else turn(m.role, m.content);
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
  }

  if (n > 0 && messages[0].role == "system") turn("system", messages[0].content);
  // The last real user query: a user turn that is not just a wrapped tool result.
  size_t last_query = n == 0 ? 0 : n - 1;
  for (size_t i = n; i-- > 0;) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" && !(starts_with(m.content, "<tool_response>") && ends_with(m.content, "</tool_response>"))) {
      last_query = i;
      break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      turn(m.role, m.content);
    } else if (m.role == "assistant") {
      const auto [thought, content, closed] = split_think(m.content);
      out.append("<|im_start|>").append(m.role).append("\n");
      if (i > last_query && (i + 1 == n || !thought.empty())) {
        out.append("<think>\n").append(strip_newlines(thought)).append("\n</think>\n\n").append(lstrip_newlines(content));
      } else {
        out.append(content);
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      tool_turn(i);
    }
    // Other roles are not rendered by the Qwen3 template.
  }
  if (add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (prefill_think_) out += "<think>\n";
    else if (enable_thinking.has_value() && !*enable_thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

// [INST] formats. Mistral: one BOS, the system message folded into the first user turn, answers followed by
// EOS. Llama-2: BOS before every user turn, a <<SYS>> block in the first one, contents stripped. Both require
// user/assistant alternation after the optional system message, as their templates raise otherwise;
// add_generation_prompt changes nothing (the prompt already ends with [/INST]).
std::string ChatTemplate::render_inst(const std::vector<ChatMessage>& messages) const {
  const bool llama2 = format_ == ChatFormat::Llama2;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  const std::string system = has_system ? messages[0].content : std::string();
  const size_t first = has_system ? 1 : 0;
  std::string out = llama2 ? std::string() : bos_;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const size_t index = i - first;
    if ((m.role == "user") != (index % 2 == 0))
      throw EngineError(file_, "messages[" + std::to_string(i) + "].role",
                        "after an optional system message, roles must alternate user/assistant (got '" + m.role +
                            "')");
    if (llama2) {
      std::string text = m.content;
      if (index == 0 && has_system) text = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m.content;
      if (m.role == "user") out.append(bos_).append("[INST] ").append(python_strip(text)).append(" [/INST]");
      else if (m.role == "assistant") out.append(" ").append(python_strip(text)).append(" ").append(eos_);
    } else {
      if (m.role == "user") {
        out += "[INST] ";
        if (index == 0 && !system.empty()) out.append(system).append("\n\n");
        out.append(m.content).append(" [/INST]");
      } else if (m.role == "assistant") {
        out.append(" ").append(m.content).append(eos_);
      }
    }
  }
  return out;
}

// The DeepSeek-V3 family: the system messages right after the BOS, then <｜User｜> and
// <｜Assistant｜> turns, each answer closed by <｜end▁of▁sentence｜>; a run of tool results sits between
// answers, wrapped in <｜tool▁outputs▁begin｜> … <｜tool▁outputs▁end｜> except in V3.1. The variants' rules
// are in DeepSeekRules; the quirks below (a user message after tool results leaves the wrapper open, the
// wrapper opens once per conversation) are the templates' own.
std::string ChatTemplate::render_deepseek_v3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                             std::optional<bool> enable_thinking) const {
  static constexpr std::string_view kUser = "<｜User｜>", kAssistant = "<｜Assistant｜>",
                                    kEnd = "<｜end▁of▁sentence｜>", kOutputsBegin = "<｜tool▁outputs▁begin｜>",
                                    kOutputsEnd = "<｜tool▁outputs▁end｜>", kOutputBegin = "<｜tool▁output▁begin｜>",
                                    kOutputEnd = "<｜tool▁output▁end｜>", kClose = "</think>";
  const DeepSeekRules& r = deepseek_;
  std::string system;
  bool first_system = true;
  for (const ChatMessage& m : messages) {
    if (m.role != "system") continue;
    if (!r.join_systems) system = m.content;
    else system.append(first_system ? "" : "\n\n").append(m.content);
    first_system = false;
  }
  std::string out = bos_ + system;
  bool in_tools = false, first_output = true, after_user = false;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      in_tools = false;
      after_user = true;
      out.append(kUser).append(m.content);
      if (r.tag_after_user) out.append(kAssistant);
    } else if (m.role == "assistant") {
      if (r.think_switch && after_user) out.append(kAssistant).append(kClose);
      after_user = false;
      if (in_tools) {
        if (!r.think_switch) out.append(kOutputsEnd);
        out.append(m.content).append(kEnd);
        in_tools = false;
        continue;
      }
      std::string_view content = m.content;
      if (r.think_switch || r.strip_to_last_close) content = after_think_close(content, /*last=*/!r.think_switch);
      if (!r.think_switch && !r.tag_after_user) out.append(kAssistant);
      out.append(content).append(kEnd);
    } else if (m.role == "tool") {
      after_user = false;
      in_tools = true;
      if (!r.think_switch && first_output) out.append(kOutputsBegin);
      else if (!r.think_switch && r.newline_between_outputs) out += "\n";
      first_output = false;
      out.append(kOutputBegin).append(m.content).append(kOutputEnd);
    }
  }
  if (in_tools && !r.think_switch) out.append(kOutputsEnd);
  if (!add_generation_prompt || in_tools) return out;
  if (r.think_switch) {
    if (after_user || r.prompt_after_answer)
      out.append(kAssistant).append(enable_thinking.value_or(false) ? "<think>" : "</think>");
  } else if (r.tag_after_user) {
    if (!after_user) out.append(kAssistant);
  } else {
    out.append(kAssistant).append(r.opens_think ? "<think>\n" : "");
  }
  return out;
}

// GLM-4.5: "[gMASK]<sop>", then turns opened by <|system|>\n, <|user|>\n, <|assistant|> and
// <|observation|> with nothing closing them. Every answer carries a think block: its thinking only after the
// last user message, empty before. enable_thinking=false appends /nothink to every user message (unless it
// ends with it) and prefills an empty think block.
std::string ChatTemplate::render_glm45(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                       std::optional<bool> enable_thinking) const {
  const bool no_think = enable_thinking.has_value() && !*enable_thinking;
  const std::ptrdiff_t last_user = last_user_index(messages);
  std::string out = "[gMASK]<sop>";
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      out.append("<|user|>\n").append(m.content);
      if (no_think && !ends_with(m.content, "/nothink")) out += "/nothink";
    } else if (m.role == "assistant") {
      const auto [reasoning, content, closed] = split_think(m.content);
      out += "<|assistant|>\n<think>";
      if (std::ptrdiff_t(i) > last_user) out.append(python_strip(reasoning));
      out += "</think>";
      if (const std::string_view answer = python_strip(content); !answer.empty()) out.append("\n").append(answer);
    } else if (m.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|observation|>";
      out.append("\n<tool_response>\n").append(m.content).append("\n</tool_response>");
    } else if (m.role == "system") {
      out.append("<|system|>\n").append(m.content);
    }
  }
  if (add_generation_prompt) {
    out += "<|assistant|>";
    if (no_think) out += "\n<think></think>";
  }
  return out;
}

// MiniMax-M2: "]~!b[", a system turn (the first message if it is one, else the model identity), then
// "]~b]user\n…[e~[\n" and "]~b]ai\n…[e~[\n" turns; system messages after the first are not rendered. An answer
// keeps its thinking (as <think>\n…\n</think>\n\n) only after the last user message. The generation prompt
// opens the think block, so the model always thinks. The template raises on a tool result that follows no
// tool call, and these messages carry no tool calls.
std::string ChatTemplate::render_minimax_m2(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  const bool has_system = !messages.empty() && messages[0].role == "system";
  const size_t first = has_system ? 1 : 0;
  std::string out = "]~!b[]~b]system\n";
  out.append(has_system && !messages[0].content.empty() ? messages[0].content : default_system_.value_or(""));
  out += "[e~[\n";
  const std::ptrdiff_t last_user = last_user_index(messages);  // the system message skipped is no user message
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      out.append("]~b]user\n").append(m.content).append("[e~[\n");
    } else if (m.role == "assistant") {
      const ThinkSplit split = split_think(m.content);
      const std::string_view reasoning = rstrip_newlines(split.thought);
      const std::string_view content = split.closed ? rstrip_newlines(split.answer) : split.answer;
      out += "]~b]ai\n";
      if (!reasoning.empty() && std::ptrdiff_t(i) > last_user)
        out.append("<think>\n").append(reasoning).append("\n</think>\n\n");
      out.append(content).append("[e~[\n");
    } else if (m.role == "tool") {
      throw EngineError(file_, "messages[" + std::to_string(i) + "].role",
                        "MiniMax-M2's template takes a tool result only after an assistant tool call");
    }
  }
  if (add_generation_prompt) out += "]~b]ai\n<think>\n";
  return out;
}

// Kimi K2: every message is <|im_…|>role<|im_middle|>content<|im_end|>, after a default system message when the
// first is not one. K2-Thinking opens each answer with an empty think block: an answer's thought is kept only
// for assistant tool calls after the last plain answer, which this message model has none of. Here an answer's
// text is what follows its last </think> (the think block the model wrote is its reasoning_content).
std::string ChatTemplate::render_kimi(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  const bool default_system = messages.empty() ? kimi_.system_when_empty : messages[0].role != "system";
  if (default_system) out.append("<|im_system|>system<|im_middle|>").append(default_system_.value_or("")).append("<|im_end|>");
  for (const ChatMessage& m : messages) {
    std::string_view content = m.content;  // an answer's reasoning_content is never rendered here
    if (m.role == "user") out.append("<|im_user|>user<|im_middle|>");
    else if (m.role == "assistant") out.append("<|im_assistant|>assistant<|im_middle|>");
    else if (m.role == "system" || m.role == "tool" || kimi_.thinking) out.append("<|im_system|>").append(m.role).append("<|im_middle|>");
    if (m.role == "assistant" && kimi_.thinking) {
      content = after_think_close(content, /*last=*/true);
      out += "<think></think>";
    } else if (m.role == "tool" && kimi_.tool_return_header) {
      out += "## Return of \n";  // the template's tool_call_id, which this message model does not carry
    }
    out.append(content).append("<|im_end|>");
  }
  if (add_generation_prompt) out += "<|im_assistant|>assistant<|im_middle|>";
  return out;
}

// Harmony (GPT-OSS's chat_template.jinja, without tools): a system message with the date and the reasoning effort
// (medium, the template's default); the first system or developer message as the developer's instructions (later
// ones are not rendered); user turns; answers in the final channel (<|return|> ends the last one when no prompt
// follows); the generation prompt "<|start|>assistant".
std::string ChatTemplate::render_harmony(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string date = current_date_;
  if (date.empty()) {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char buf[16];
    std::strftime(buf, sizeof buf, "%Y-%m-%d", &utc);
    date = buf;
  }
  std::string out = "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n";
  out += "Knowledge cutoff: 2024-06\nCurrent date: " + date + "\n\nReasoning: medium\n\n";
  out += "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>";
  size_t first = 0;
  if (!messages.empty() && (messages[0].role == "system" || messages[0].role == "developer")) {
    first = 1;
    if (!messages[0].content.empty())
      out += "<|start|>developer<|message|># Instructions\n\n" + messages[0].content + "\n\n<|end|>";
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      out += "<|start|>user<|message|>" + m.content + "<|end|>";
    } else if (m.role == "assistant") {
      const bool last = i + 1 == messages.size() && !add_generation_prompt;
      out += "<|start|>assistant<|channel|>final<|message|>" + m.content + (last ? "<|return|>" : "<|end|>");
    } else if (m.role == "tool") {
      throw EngineError(file_, "messages", "a Harmony chat takes a tool result only after a tool call, which this "
                                           "engine does not make");
    }
  }
  if (add_generation_prompt) out += "<|start|>assistant";
  return out;
}

}  // namespace moe
