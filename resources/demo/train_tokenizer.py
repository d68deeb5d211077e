#!/usr/bin/env python3
"""Train the demo model's byte-level BPE tokenizer (development tool).

Pipeline as in Qwen's tokenizer.json (SPECS.md §9.1): NFC normaliser; pre-tokenizer = Split with the
Qwen regex (Isolated) followed by a mapping-only ByteLevel; BPE without byte fallback; ByteLevel
decoder; no BOS/EOS added. The merges are learned from the synthetic corpus of make_corpus.py
(deterministic), so the vocabulary is small (default 1024 entries including the added tokens).

Added tokens, appended after the learned vocabulary (as Qwen does):
  <|endoftext|> <|im_start|> <|im_end|>   special=True
  <think> </think>                        special=False (they survive decoding)

Writes tokenizer.json and tokenizer_config.json (eos <|im_end|>, pad <|endoftext|>, and a Qwen3-style
chat template written for this project that understands enable_thinking) into --out.

Usage: python3 train_tokenizer.py [--out tokenizer] [--vocab 1024] [--examples 30000]
"""
import argparse
import json
import os
import re
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_corpus  # noqa: E402

SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
NOT_SPECIAL = ["<think>", "</think>"]

# Our Qwen3-style ChatML template. Behaviour (SPECS.md §10.1): an optional system turn first; user and
# system turns verbatim; tool results wrapped in <tool_response> inside user turns; an assistant turn's
# thinking comes from reasoning_content or from the text before </think>, and is re-emitted only for
# turns after the last real user query (the final turn always gets a think block, possibly empty);
# add_generation_prompt opens the assistant turn and, when enable_thinking is false, prefills an
# empty think block.
CHAT_TEMPLATE = r"""{%- set st = namespace(last_query=-1) -%}
{%- for m in messages -%}
  {%- if m.role == 'user' and not (m.content is string and m.content.startswith('<tool_response>') and m.content.endswith('</tool_response>')) -%}
    {%- set st.last_query = loop.index0 -%}
  {%- endif -%}
{%- endfor -%}
{%- for m in messages -%}
  {%- set body = m.content if m.content is string else '' -%}
  {%- if m.role == 'system' or m.role == 'user' -%}
    {{- '<|im_start|>' + m.role + '\n' + body + '<|im_end|>\n' -}}
  {%- elif m.role == 'assistant' -%}
    {%- set thought = '' -%}
    {%- if m.reasoning_content is string -%}
      {%- set thought = m.reasoning_content -%}
    {%- elif '</think>' in body -%}
      {%- set thought = body.split('</think>')[0].split('<think>')[-1] -%}
      {%- set body = body.split('</think>')[-1] -%}
    {%- endif -%}
    {%- set thought = thought.strip('\n') -%}
    {%- set body = body.lstrip('\n') -%}
    {{- '<|im_start|>assistant\n' -}}
    {%- if loop.index0 > st.last_query and (loop.last or thought) -%}
      {{- '<think>\n' + thought + '\n</think>\n\n' -}}
    {%- endif -%}
    {{- body + '<|im_end|>\n' -}}
  {%- elif m.role == 'tool' -%}
    {%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}
      {{- '<|im_start|>user' -}}
    {%- endif -%}
    {{- '\n<tool_response>\n' + body + '\n</tool_response>' -}}
    {%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}
      {{- '<|im_end|>\n' -}}
    {%- endif -%}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
  {%- if enable_thinking is defined and enable_thinking is false -%}
    {{- '<think>\n\n</think>\n\n' -}}
  {%- endif -%}
{%- endif -%}"""


def render(messages, add_generation_prompt=False, enable_thinking=None):
    """Plain-Python rendering equal to CHAT_TEMPLATE for the roles the corpus uses (checked in main)."""
    last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    out = []
    for i, m in enumerate(messages):
        body = m["content"]
        if m["role"] in ("system", "user"):
            out.append(f"<|im_start|>{m['role']}\n{body}<|im_end|>\n")
        elif m["role"] == "assistant":
            thought = ""
            if "</think>" in body:
                thought = body.split("</think>")[0].split("<think>")[-1]
                body = body.split("</think>")[-1]
            thought, body = thought.strip("\n"), body.lstrip("\n")
            out.append("<|im_start|>assistant\n")
            if i > last_query and (i == len(messages) - 1 or thought):
                out.append(f"<think>\n{thought}\n</think>\n\n")
            out.append(body + "<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
        if enable_thinking is False:
            out.append(make_corpus.EMPTY_THINK)
    return "".join(out)


def corpus_texts(n, seed):
    """Rendered conversations, split at the added tokens (those are never merged)."""
    pat = re.compile("|".join(re.escape(t) for t in SPECIAL + NOT_SPECIAL))
    stream = make_corpus.train_stream(seed, exclude_keys=set())
    for _ in range(n):
        rec = next(stream)
        for piece in pat.split(render(rec["messages"])):
            if piece:
                yield piece


def build(vocab_size, n_examples, seed):
    tok = Tokenizer(models.BPE(byte_fallback=False, unk_token=None, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    n_added = len(SPECIAL) + len(NOT_SPECIAL)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - n_added, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus_texts(n_examples, seed), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False,
                                       single_word=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False, lstrip=False, rstrip=False,
                               single_word=False) for t in NOT_SPECIAL])
    return tok


def tokenizer_config(tok):
    added = {}
    for t in SPECIAL + NOT_SPECIAL:
        added[str(tok.token_to_id(t))] = {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": t in SPECIAL}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "model_max_length": 2048,
        "chat_template": CHAT_TEMPLATE,
    }


def save(tok, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(tok), f, indent=2, ensure_ascii=False)
        f.write("\n")


def self_check(out_dir, n=300):
    """The saved files load in transformers, the Jinja template renders like `render`, and the pieces
    of a conversation tokenize the same alone as joined (so loss masks can be cut at text offsets)."""
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(out_dir)
    stream = make_corpus.train_stream(7, exclude_keys=set())
    for _ in range(n):
        rec = next(stream)
        msgs, et = rec["messages"], rec["enable_thinking"]
        kw = {} if et is None else {"enable_thinking": et}
        for gen, m in ((False, msgs), (True, msgs[:-1])):
            a = hf.apply_chat_template(m, tokenize=False, add_generation_prompt=gen, **kw)
            b = render(m, add_generation_prompt=gen, enable_thinking=et)
            assert a == b, (a, b)
        text = render(msgs)
        ids = hf(text, add_special_tokens=False)["input_ids"]
        assert hf.decode(ids) == text
    print(f"self-check ok: transformers loads {out_dir}, template == render() on {n} records, "
          f"vocab {len(hf)}; sample: {hf.tokenize('What is 4821 + 739? <think>')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "tokenizer"))
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--examples", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    tok = build(args.vocab, args.examples, args.seed)
    save(tok, args.out)
    print(f"wrote {args.out}: {tok.get_vocab_size()} tokens")
    self_check(args.out)


if __name__ == "__main__":
    main()
