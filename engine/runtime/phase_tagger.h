#pragma once
// Phases of prompt tokens (system, user, thinking, answer), read from the chat markup the template
// wrote: ChatML turn headers (<|im_start|>role\n), Llama-2/Mistral [INST] … [/INST] and <<SYS>>, GLM-4.5's
// <|user|> and kin, DeepSeek-V3's <｜User｜> and kin, MiniMax-M2's ]~b]user and kin, Kimi K2's <|im_user|>
// and kin, Harmony's <|start|>role<|message|> headers (an assistant's analysis channel is thinking), and
// <think> … </think> inside assistant turns. Works on the tokens' bytes, so it does not depend
// on how a tokenizer splits the markers. Tokens outside any turn are Other.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/hooks/step_observer.h"

namespace moe {

class Tokenizer;

std::vector<Phase> tag_prompt_phases(std::span<const int32_t> ids, const Tokenizer& tokenizer);

}  // namespace moe
