#include "engine/runtime/phase_tagger.h"

#include <string>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"

namespace moe {
namespace {

struct Marker {
  std::string_view text;
  Phase marker;  // phase of the tokens that spell the marker
  Phase after;   // phase from the next token on
};

// No marker is a suffix of another, so the order does not matter. (One may extend another: Kimi's tool header
// re-tags what <|im_system|> began when its last token arrives.)
constexpr Marker kMarkers[] = {
    {"<|im_start|>system\n", Phase::System, Phase::System},
    {"<|im_start|>user\n", Phase::User, Phase::User},
    {"<|im_start|>tool\n", Phase::User, Phase::User},
    {"<|im_start|>assistant\n", Phase::Answer, Phase::Answer},
    {"<|im_end|>", Phase::Other, Phase::Other},  // resolved below: the turn's own phase
    {"<think>", Phase::Thinking, Phase::Thinking},
    {"</think>", Phase::Thinking, Phase::Answer},
    {"<</SYS>>", Phase::System, Phase::User},
    {"<<SYS>>", Phase::System, Phase::System},
    {"[/INST]", Phase::User, Phase::Answer},
    {"[INST]", Phase::User, Phase::User},
    // GLM-4.5: turns are only opened.
    {"<|system|>", Phase::System, Phase::System},
    {"<|user|>", Phase::User, Phase::User},
    {"<|observation|>", Phase::User, Phase::User},
    {"<|assistant|>", Phase::Answer, Phase::Answer},
    // The DeepSeek-V3 family: the system text follows the BOS; tool results are read like user text.
    {"<｜begin▁of▁sentence｜>", Phase::Other, Phase::System},
    {"<｜User｜>", Phase::User, Phase::User},
    {"<｜Assistant｜>", Phase::Answer, Phase::Answer},
    {"<｜end▁of▁sentence｜>", Phase::Other, Phase::Other},  // resolved below, like <|im_end|>
    {"<｜tool▁outputs▁begin｜>", Phase::User, Phase::User},
    {"<｜tool▁output▁begin｜>", Phase::User, Phase::User},
    {"<｜tool▁output▁end｜>", Phase::User, Phase::Answer},
    {"<｜tool▁outputs▁end｜>", Phase::User, Phase::Answer},
    // MiniMax-M2.
    {"]~b]system", Phase::System, Phase::System},
    {"]~b]user", Phase::User, Phase::User},
    {"]~b]tool", Phase::User, Phase::User},
    {"]~b]ai", Phase::Answer, Phase::Answer},
    {"[e~[", Phase::Other, Phase::Other},  // resolved below, like <|im_end|>
    // Kimi K2: turns end with <|im_end|> (above); a tool result is a system-headed turn read like user text.
    {"<|im_system|>", Phase::System, Phase::System},
    {"<|im_system|>tool<|im_middle|>", Phase::User, Phase::User},
    {"<|im_user|>", Phase::User, Phase::User},
    {"<|im_assistant|>", Phase::Answer, Phase::Answer},
    // Harmony (GPT-OSS): a header per message, the assistant's naming its channel; the developer's instructions
    // are read like a system message.
    {"<|start|>system<|message|>", Phase::System, Phase::System},
    {"<|start|>developer<|message|>", Phase::System, Phase::System},
    {"<|start|>user<|message|>", Phase::User, Phase::User},
    {"<|start|>assistant<|channel|>analysis<|message|>", Phase::Thinking, Phase::Thinking},
    {"<|start|>assistant<|channel|>final<|message|>", Phase::Answer, Phase::Answer},
    {"<|end|>", Phase::Other, Phase::Other},     // resolved below, like <|im_end|>
    {"<|return|>", Phase::Other, Phase::Other},  // likewise
};

bool ends_a_turn(std::string_view marker) {
  return marker == "<|im_end|>" || marker == "<｜end▁of▁sentence｜>" || marker == "[e~[" || marker == "<|end|>" ||
         marker == "<|return|>";
}

}  // namespace

std::vector<Phase> tag_prompt_phases(std::span<const int32_t> ids, const Tokenizer& tok) {
  std::vector<Phase> phases(ids.size(), Phase::Other);
  std::vector<size_t> starts(ids.size());  // byte offset where each token's text starts
  std::string text;
  Phase phase = Phase::Other;
  for (size_t i = 0; i < ids.size(); ++i) {
    starts[i] = text.size();
    text += tok.token_bytes(ids[i], i > 0 ? ids[i - 1] : -1);
    phases[i] = phase;
    // A marker counts when it ends inside this token (a token may carry text past the marker).
    const size_t token_begin = starts[i];
    for (const Marker& m : kMarkers) {
      const size_t from = token_begin >= m.text.size() ? token_begin - m.text.size() + 1 : 0;
      const size_t begin = text.find(m.text, from);
      if (begin == std::string::npos) continue;
      // Re-tag the tokens that spell the marker (every token whose bytes reach into it).
      const Phase marker_phase = ends_a_turn(m.text) ? phase : m.marker;  // a turn's end is the turn's
      for (size_t j = i + 1; j-- > 0;) {
        const size_t end = j == i ? text.size() : starts[j + 1];
        if (end <= begin) break;
        phases[j] = marker_phase;
      }
      phase = m.after;
      break;
    }
  }
  return phases;
}

}  // namespace moe
