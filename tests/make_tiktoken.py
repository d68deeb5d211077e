#!/usr/bin/env python3
"""Builds the tiktoken tokenizer test data in tests/data/tiktoken/ (dev-time only; the C++ tests never run Python).

    pip install tiktoken && python3 tests/make_tiktoken.py

What it writes (re-running gives the same files):
  model/tiktoken.model        ranks in tiktoken's format ("base64(bytes) rank" lines). They come from a byte-level BPE
                              trained with HF `tokenizers` on tests/make_tokenizers.py's seeded corpus (900 ids, so
                              Han, kana, digits and code get merges): each vocabulary entry's bytes, ranked by its id,
                              which is the order the merges were learnt in; then the byte prefixes of a few strings
                              that cross the pattern's Han boundaries (SCRIPT_PROBES).
  model/tokenization_workbench.py
                              the Python file a Kimi K2 folder carries (there tokenization_kimi.py), reduced to the
                              two class attributes the engine reads: pat_str, Kimi K2's split pattern, written as K2
                              writes it ("|".join of raw strings, with the Rust-regex class intersections `&&`), and
                              num_reserved_special_tokens = 256. It is our own file; it is never executed by the tests.
  model/tokenizer_config.json Kimi K2's layout: bos [BOS], eos [EOS], auto_map naming the file above, and
                              added_tokens_decoder naming the specials at Kimi K2's offsets past the ranks
                              (<|im_end|> +2, <|im_user|> +3, ..., <think> +22, [PAD] +255); chat_template is the
                              Kimi-K2-Thinking template of tests/make_tokenizers.py.
  expected.json               for each text: ids and decoded text (with and without skipping special tokens).

Where the reference numbers come from: the `tiktoken` library (the engine Kimi's own tokenizer class wraps), given the
ranks, the pattern read back from the written .py file (imported, so the file the engine parses is the one the
reference used) and the 256 special tokens (named ones from the config, the rest <|reserved_token_{id}|>), driven the
way Kimi's TikTokenTokenizer.encode drives it: the text cut into 400,000-character chunks, each cut where a run of
whitespace or non-whitespace passes 25,000 characters, each piece encoded with allowed_special="all". Decoding is
tiktoken's decode (invalid UTF-8 replaced); with skipping, the ids the config flags special are left out first.
"""
import base64
import importlib.util
import json
import os
import random
import shutil
import sys

import tiktoken
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers.convert_slow_tokenizer import bytes_to_unicode

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "tiktoken")
sys.path.insert(0, HERE)
import make_tokenizers  # noqa: E402  (the seeded training corpus, the fixed test corpus and the Kimi templates)

# Kimi K2's pat_str, one alternative per line as its tokenization_kimi.py lists them.
PAT_PARTS = [
    r"""[\p{Han}]+""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
]
RESERVED = 256
# Kimi K2's named special tokens, by offset past the ranks.
NAMED = {0: "[BOS]", 1: "[EOS]", 2: "<|im_end|>", 3: "<|im_user|>", 4: "<|im_assistant|>", 6: "<|start_header_id|>",
         7: "<|end_header_id|>", 9: "[EOT]", 10: "<|im_system|>", 11: "<|tool_calls_section_begin|>",
         12: "<|tool_calls_section_end|>", 13: "<|tool_call_begin|>", 14: "<|tool_call_argument_begin|>",
         15: "<|tool_call_end|>", 17: "<|im_middle|>", 22: "<think>", 23: "</think>", 254: "[UNK]", 255: "[PAD]"}

PYTHON_FILE = '''"""MoE Workbench test fixture: the two attributes of a Kimi-style tiktoken tokenizer class the engine reads
(written by tests/make_tiktoken.py; not executed by the tests)."""


class TikTokenTokenizer:
    num_reserved_special_tokens = {reserved}

    # Kimi K2's split pattern, for the Rust regex engine tiktoken runs it with.
    pat_str = "|".join(
        [
{parts}
        ]
    )
'''

MAX_ENCODE_CHARS = 400_000
MAX_RUN_CHARS = 25_000


def split_long_runs(s: str, limit: int):
    """Kimi's _split_whitespaces_or_nonwhitespaces: cut where a run of (non-)whitespace passes `limit` characters."""
    run, is_space, start = 0, s[0].isspace() if s else False, 0
    for i, ch in enumerate(s):
        now = ch.isspace()
        if is_space ^ now:
            run, is_space = 1, now
        else:
            run += 1
            if run > limit:
                yield s[start:i]
                start, run = i, 1
    yield s[start:]


def kimi_encode(enc: tiktoken.Encoding, text: str) -> list[int]:
    ids = []
    for i in range(0, len(text), MAX_ENCODE_CHARS):
        for piece in split_long_runs(text[i:i + MAX_ENCODE_CHARS], MAX_RUN_CHARS):
            ids += enc.encode(piece, allowed_special="all")
    return ids


def train_ranks(lines: list[str]) -> dict[bytes, int]:
    tok = Tokenizer(models.BPE(byte_fallback=False, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(make_tokenizers.QWEN_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    table = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {bytes(table[c] for c in token): i for token, i in tok.get_vocab().items()}
    assert sorted(ranks.values()) == list(range(len(ranks)))
    # Tokens that span where the pattern's Han rules cut (so that cutting wrongly changes the ids): every prefix of
    # each string's bytes, ranked after the trained ones.
    for text in SCRIPT_PROBES:
        data = text.encode()
        for k in range(2, len(data) + 1):
            ranks.setdefault(data[:k], len(ranks))
    return ranks


# Strings whose pieces differ between Script and Script_Extensions readings of \p{Han}: "、" "ー" "㆐" have Han only in
# their script extensions (Rust's \p{Han} is the Script property: they are not Han), "⺀" and "々" are Han by script.
SCRIPT_PROBES = ["你好、世界", "漢字ーカナ", "㆐你", "⺀你", "々々"]

CASES = make_tokenizers.CORPUS + SCRIPT_PROBES + [
    # Han, as Rust's \p{Han} (the Script property) reads it: "、" "。" "ー" "㆐" are not Han, "々" "〇" "⺀" are.
    "你好、世界。漢字ーカナ",
    "々々 〇 ⺀你 ㆐你 \u31c0你",
    "Mixed中文English混合123四五六",
    # Letter classes minus Han, contractions in any case (the long s ſ and the Kelvin sign K fold to s and k).
    "ǅungla DŽUNGLA Ǆungla ÀÉÎ àéî a\u0301b \u0915\u093f",
    "it'ſ IT'S they'LL we'Ve she'D I'M 'K",
    "HTTPServer getHTTPResponse ALLCAPS camelCase",
    # Numbers in runs of three, punctuation runs with line ends.
    "1234567 12.5 -3e10 ٣٤٥٦ ¹²³",
    "!!!\n\n??? ...\r\n---\n",
    # Special tokens typed in the text, named and reserved.
    "<|im_user|>user<|im_middle|>hi<|im_end|><|im_assistant|>assistant<|im_middle|><think>x</think>ok[EOS]",
    "<|reserved_token_{}|> and <|reserved_token_{}|>",
    "[BOS][BOS]<|im_end|<|im_end|>",
    # Runs past 25,000 characters are cut (a cut inside a run changes the merges at the cut).
    "the" * 8_334,
    " " * 25_002 + "b",
]


def main() -> int:
    rng = random.Random(make_tokenizers.SEED)
    lines = make_tokenizers.make_training_corpus(rng)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    model_dir = os.path.join(OUT, "model")
    os.makedirs(model_dir)

    ranks = train_ranks(lines)
    base = len(ranks)
    with open(os.path.join(model_dir, "tiktoken.model"), "w", encoding="ascii") as f:
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(token).decode()} {rank}\n")

    py_path = os.path.join(model_dir, "tokenization_workbench.py")
    with open(py_path, "w", encoding="utf-8") as f:
        f.write(PYTHON_FILE.format(reserved=RESERVED,
                                   parts="\n".join(f'            r"""{p}""",' for p in PAT_PARTS)))
    spec = importlib.util.spec_from_file_location("tokenization_workbench", py_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = module.TikTokenTokenizer
    assert cls.pat_str == "|".join(PAT_PARTS) and cls.num_reserved_special_tokens == RESERVED

    names = {base + i: NAMED.get(i, f"<|reserved_token_{base + i}|>") for i in range(RESERVED)}
    special_tokens = {name: i for i, name in names.items()}
    enc = tiktoken.Encoding(name="workbench", pat_str=cls.pat_str, mergeable_ranks=ranks,
                            special_tokens=special_tokens)
    config = {
        "added_tokens_decoder": {str(base + i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                                                 "single_word": False, "special": True} for i, c in NAMED.items()},
        "additional_special_tokens": ["<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|start_header_id|>",
                                      "<|end_header_id|>", "[EOT]", "<|im_system|>", "<|im_middle|>"],
        "auto_map": {"AutoTokenizer": ["tokenization_workbench.TikTokenTokenizer", None]},
        "bos_token": "[BOS]",
        "chat_template": make_tokenizers.KIMI_K2_THINKING_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "[EOS]",
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "[PAD]",
        "tokenizer_class": "TikTokenTokenizer",
        "unk_token": "[UNK]",
    }
    make_tokenizers.write_json(os.path.join(model_dir, "tokenizer_config.json"), config, indent=2)

    flagged = {base + i for i in NAMED}
    spelling = bytes_to_unicode()  # how transformers spells a token's bytes (convert_ids_to_tokens)
    cases = []
    for text in CASES:
        if "{}" in text:
            text = text.format(base + 5, base + 200)
        ids = kimi_encode(enc, text)
        cases.append({"text": text, "ids": ids, "decoded": enc.decode(ids),
                      "decoded_skip_special": enc.decode([i for i in ids if i not in flagged])})
    expected = {"base_tokens": base, "size": base + RESERVED,
                "special_ids": {c: base + i for i, c in NAMED.items()},
                "token_strings": {str(i): "".join(spelling[b] for b in enc.decode_single_token_bytes(i))
                                  for i in (0, 32, 200, base - 1)},
                "cases": cases}
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:  # one case per line
        head = json.dumps({k: v for k, v in expected.items() if k != "cases"}, ensure_ascii=False)
        f.write(head[:-1] + ', "cases": [\n' +
                ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]}\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total} bytes); {base} ranks + {RESERVED} special tokens, {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
