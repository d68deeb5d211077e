#!/usr/bin/env python3
"""transformers reference outputs for the two bundled demo checkpoints (dev-time only; outputs committed).

Loads resources/demo/moe and resources/demo/dense in transformers (F32 compute over the stored BF16
weights, eager attention and experts) and computes, for a chat prompt rendered by the checkpoint's own
chat template (tokenizer.apply_chat_template, thinking on), the same reference as tests/make_goldens.py:
prompt_ids, logits at every position, the router's top-k per MoE layer and token, and 32 greedy tokens.
The robustness checks of make_goldens.py are reported; a failing one stops the script.

Writes tests/data/demo/<name>.reference.safetensors.

    python3 tests/make_demo_goldens.py [moe] [dense]
"""

import sys
from pathlib import Path

import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_goldens  # noqa: E402  (compute_reference and its checks)

DEMO = HERE.parent / "resources" / "demo"
OUT = HERE / "data" / "demo"
# The first prompt whose reference passes make_goldens.py's robustness checks is used (a trained
# router can put two experts within 1e-4 of each other on some token, which a golden must avoid).
PROMPTS = ["What is 4821 + 739?", "Compute 4900 + 425.", "What is 645 + 972?", "Sort 41, 7, 23 in ascending order.",
           "How many times does the letter r appear in strawberry?", "What is 8035 - 2967?"]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or ["moe", "dense"]:
        folder = DEMO / name
        tok = AutoTokenizer.from_pretrained(folder)
        kwargs = {"experts_implementation": "eager"} if name == "moe" else {}
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager", **kwargs)
        model.eval()
        for user in PROMPTS:
            text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True,
                                           enable_thinking=True)
            prompt = torch.tensor(tok(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)
            ref, diag, failures = make_goldens.compute_reference(model, prompt, tok.convert_tokens_to_ids("<|im_end|>"))
            print(f"{name}: {user!r}: {len(prompt)} prompt tokens; greedy: {tok.decode(ref['greedy_ids'])!r}")
            print(f"{name}: {diag}")
            if not failures:
                break
            print(f"{name}: not robust ({failures}); next prompt")
        else:
            sys.exit(f"{name}: no prompt gives a robust reference")
        save_file(ref, str(OUT / f"{name}.reference.safetensors"),
                  metadata={"generator": "tests/make_demo_goldens.py", "prompt": user, "prompt_text": text})


if __name__ == "__main__":
    main()
