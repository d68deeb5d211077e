#!/usr/bin/env python3
"""Chat renders of the demo model's template by transformers (dev-time only; output committed).

For each thinking mode of issue 5 the engine renders the prompt itself (engine/runtime/conversation.h):
think (enable_thinking=True), no-think (enable_thinking=False) and auto (enable_thinking not passed,
soft switches /think and /no_think in the messages). This script renders the same conversations with
transformers' apply_chat_template on resources/demo/tokenizer and also records the token ids the HF
tokenizer gives for the rendered text, into tests/data/demo/chat_expected.json.

    python3 tests/make_demo_chat_goldens.py
"""

import json
from pathlib import Path

from transformers import AutoTokenizer

HERE = Path(__file__).resolve().parent
TOKENIZER = HERE.parent / "resources" / "demo" / "tokenizer"
OUT = HERE / "data" / "demo" / "chat_expected.json"

HISTORY = [
    {"role": "user", "content": "What is 12 + 30?"},
    {"role": "assistant", "content": "<think>\nones: 2+0=2\ntens: 1+3=4\n</think>\n\nThe answer is 42."},
]
CONVERSATIONS = {
    "single": [{"role": "user", "content": "What is 4821 + 739?"}],
    "system": [{"role": "system", "content": "You are a careful calculator."}, {"role": "user", "content": "Sort 5, 2, 9."}],
    "soft_no_think": [{"role": "user", "content": "What is 7 * 8? /no_think"}],
    "soft_think_first": [{"role": "user", "content": "/think How many r in strawberry?"}],
    "multi_turn": HISTORY + [{"role": "user", "content": "And 42 - 17?"}],
    "multi_turn_latest_wins": [{"role": "user", "content": "What is 3 + 4? /no_think"},
                               {"role": "assistant", "content": "<think>\n\n</think>\n\nThe answer is 7."},
                               {"role": "user", "content": "Now 35 + 48? /think"}],
}
MODES = {"think": True, "no-think": False, "auto": None}


def main():
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    cases = []
    for name, messages in CONVERSATIONS.items():
        for mode, enable in MODES.items():
            kwargs = {} if enable is None else {"enable_thinking": enable}
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            cases.append({"name": f"{name}/{mode}", "mode": mode, "messages": messages, "expected": text, "ids": ids})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "tests/make_demo_chat_goldens.py", "cases": cases}, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
