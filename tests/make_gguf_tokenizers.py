#!/usr/bin/env python3
"""Tokenizers in GGUF files, and the reference ids for them (dev-time only; CI never runs Python): a
SentencePiece one, and byte-level BPEs with the split rules of GPT-OSS, DeepSeek-V3, GLM-4.5 and DeepSeek-V2
(make_split_rule_case says how).

    python3 tests/make_gguf_tokenizers.py        (after tests/make_tokenizers.py, whose spm/ it reads)

What it writes (besides o200k/, deepseek_v3/, glm4/, deepseek_llm/ and their *_expected.json, see make_split_rule_case,
and kimi_k2/tokenizer.gguf, see make_kimi_k2_gguf):
  tokenizers/spm/tokenizer.gguf      a GGUF with no tensors (general.architecture "llama", the Llama-2 / Mistral /
                                     Mixtral case) whose tokenizer keys are those llama.cpp's convert_hf_to_gguf.py
                                     writes for a SentencePiece checkpoint (TextModel._set_vocab_sentencepiece,
                                     restated below): tokenizer.ggml.model "llama", pre "default", tokens, scores,
                                     token_type, the special ids and add_bos/add_eos/chat template (gguf-py's
                                     SpecialVocab), and add_space_prefix (the model's normalizer_spec.add_dummy_prefix,
                                     as the converter writes it for the vocabularies whose normalizer it reads).
  tokenizers/gguf_spm_expected.json  for every text of expected.json and a few more (EXTRA_TEXTS): the reference ids
                                     with and without BOS, their decoded text (transformers' decoder), and where
                                     transformers' own GGUF tokenizer gives other ids, those ids and the reason.

The checkpoint converted is spm/tokenizer.model and spm/tokenizer_config.json plus four added tokens, laid out in a
temporary folder as a Hugging Face repo holds them (tokenizer.model; tokenizer_config.json; tokenizer.json, saved by
transformers from those two; config.json with bos 1, eos 2 and vocab_size 405):
  400 <|im_start|>, 401 <|im_end|>   special          → CONTROL (and <|im_end|> ends a turn, as in llama.cpp)
  402 <think>, 403 </think>          not special      → USER_DEFINED
  404                                (vocab_size pads) → "[PAD404]", UNUSED
The converter retypes every token that added_tokens_decoder flags special, so <unk> (id 0), UNKNOWN in
tokenizer.model, is CONTROL in the GGUF (with tokenizer.ggml.unknown_token_id 0), as in the Mixtral GGUF files made by
convert_hf_to_gguf.py; files made by the older convert.py keep it UNKNOWN (the C++ tests rewrite the type for that
case). gguf-py warns "Unknown separator token '<s>' in TemplateProcessing<pair>" and writes add_sep_token false: the
pair template of Llama-2's tokenizer.json ("<s> A <s> B") does that to real conversions too.

Where the reference ids come from, and where transformers disagrees:
  The reference is llama.cpp's SPM tokenization (llama-vocab.cpp: tokenizer_st_partition, then llm_tokenizer_spm per
  stretch of text), which is also what the original tokenizer.model gives with Hugging Face's legacy Llama handling
  (LlamaTokenizer legacy=True, and the Prepend("▁") normalizer of the tokenizer.json published with Llama-2,
  Mistral-7B and Mixtral): the control, user-defined and unknown tokens are cut out of the raw text, each stretch
  between them is encoded by SentencePiece on its own, so each gets the dummy "▁" prefix, and BOS is prepended. This
  script computes those ids with the `sentencepiece` library on tokenizer.model, as tests/make_tokenizers.py does for
  expected.json, and checks that they equal expected.json's on every text without the added tokens.
  transformers 5.24 (integrations/gguf/gguf_tokenizer_mapping.py) builds a LlamaTokenizer from the GGUF: a
  `tokenizers` BPE with byte fallback, merges derived from the scores, a Metaspace pre-tokenizer with prepend_scheme
  "first" (it ignores tokenizer.ggml.add_space_prefix), the CONTROL tokens as special added tokens and the
  USER_DEFINED ones as plain added tokens. Its ids equal the reference on every text except
    * text that starts with a space (" Hello world", "   leading spaces", " ", "   \n  \n"): Metaspace adds no "▁"
      to text that already starts with one; SentencePiece and llama.cpp always add it. transformers' ids do not
      even round-trip there: " " encodes to BOS alone and " Hello world" decodes to "Hello world";
    * text right after an added token ("<s>[INST] Hello", "<think>x</think>", ChatML turns): prepend_scheme "first"
      gives "▁" only to the start of the whole text; llama.cpp and the legacy tokenizer give it to every stretch
      after an added token (so "[INST]" after "<s>" is spelled from "▁[INST]", and decoding shows a space after
      such a token: "<think> x</think>").
  The models were trained on the legacy segmentation and llama.cpp, the runtime GGUF files are made for, segments
  that way, so the legacy ids are right and are the reference; each text where transformers differs carries its
  ids ("hf_gguf_ids") and the reason ("differs"). The merges transformers derives from the scores give the same
  pieces as SentencePiece's score-driven BPE everywhere else, byte fallback included.
"""
import json
import os
import shutil
import sys
import tempfile

import gguf
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as spm_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "tokenizers")
SPM = os.path.join(DATA, "spm")
GGUF_PATH = os.path.join(SPM, "tokenizer.gguf")
EXPECTED_PATH = os.path.join(DATA, "gguf_spm_expected.json")

ADDED = [(400, "<|im_start|>", True), (401, "<|im_end|>", True), (402, "<think>", False), (403, "</think>", False)]
VOCAB_SIZE = 405  # config.json's vocab_size: one id past the added tokens, padded as [PAD404]


# ---------------------------------------------------------------------------------------------------------------------
# The converter: llama.cpp's convert_hf_to_gguf.py, TextModel._create_vocab_sentencepiece and _set_vocab_sentencepiece,
# restated (the script is not installed with gguf-py). Token types are gguf.TokenType: NORMAL 1, UNKNOWN 2, CONTROL 3,
# USER_DEFINED 4, UNUSED 5, BYTE 6.

def does_token_look_special(token: str) -> bool:
    """convert_hf_to_gguf.py ModelBase.does_token_look_special."""
    seems_special = token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
    seems_special = seems_special or (token.startswith("<|") and token.endswith("|>"))
    seems_special = seems_special or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
    seems_special = seems_special or (token.startswith("<unused") and token.endswith(">"))
    return seems_special


def create_vocab_sentencepiece(folder: str):
    sp = spm.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model"))
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        vocab_size = json.load(f).get("vocab_size") or sp.vocab_size()
    tokens = [f"[PAD{i}]".encode("utf-8") for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    toktypes = [gguf.TokenType.UNUSED] * vocab_size
    for token_id in range(min(sp.vocab_size(), vocab_size)):
        toktype = gguf.TokenType.NORMAL
        if sp.is_unknown(token_id):
            toktype = gguf.TokenType.UNKNOWN
        elif sp.is_control(token_id):
            toktype = gguf.TokenType.CONTROL
        elif sp.is_unused(token_id):
            toktype = gguf.TokenType.UNUSED
        elif sp.is_byte(token_id):
            toktype = gguf.TokenType.BYTE
        tokens[token_id] = sp.id_to_piece(token_id).encode("utf-8")
        scores[token_id] = sp.get_score(token_id)
        toktypes[token_id] = toktype
    added_tokens_file = os.path.join(folder, "added_tokens.json")
    if os.path.isfile(added_tokens_file):
        with open(added_tokens_file, encoding="utf-8") as f:
            for key, token_id in json.load(f).items():
                if token_id < vocab_size:
                    tokens[token_id], scores[token_id] = key.encode("utf-8"), -1000.0
                    toktypes[token_id] = gguf.TokenType.USER_DEFINED
    with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
        decoder = json.load(f).get("added_tokens_decoder", {})
    for token_id, data in decoder.items():
        token_id, token = int(token_id), data["content"]
        if token_id >= vocab_size:
            continue
        if data.get("special") or does_token_look_special(token):
            toktypes[token_id] = gguf.TokenType.CONTROL
        else:
            token = token.replace("\u2581", " ")  # "pre-normalize user-defined spaces"
            toktypes[token_id] = gguf.TokenType.USER_DEFINED
        scores[token_id] = -1000.0
        tokens[token_id] = token.encode("utf-8")
    return tokens, scores, toktypes, sp


def write_gguf(folder: str, path: str) -> None:
    tokens, scores, toktypes, sp = create_vocab_sentencepiece(folder)
    proto = spm_pb2.ModelProto()
    with open(os.path.join(folder, "tokenizer.model"), "rb") as f:
        proto.ParseFromString(f.read())
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("spm tokenizer (MoE Workbench test data)")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(toktypes)
    # As convert_hf_to_gguf.py does for the vocabularies whose normalizer it reads (T5, Gemma-3n ...).
    w.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    gguf.SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(w, quiet=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_checkpoint_folder(folder: str) -> None:
    """spm/ as a Hugging Face repo with the added tokens: tokenizer.model, tokenizer_config.json, tokenizer.json
    (saved by transformers from the first two) and config.json."""
    shutil.copy(os.path.join(SPM, "tokenizer.model"), folder)
    with open(os.path.join(SPM, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    for token_id, content, special in ADDED:
        config["added_tokens_decoder"][str(token_id)] = {
            "content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": special}
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "bos_token_id": 1,
                   "eos_token_id": 2, "vocab_size": VOCAB_SIZE}, f, indent=2)
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(folder).backend_tokenizer.save(os.path.join(folder, "tokenizer.json"))


# ---------------------------------------------------------------------------------------------------------------------
# The reference: llama.cpp's SPM tokenization (llm_tokenizer_spm, llama-vocab.cpp) = legacy HF.

def split_on(text: str, tokens: dict[str, int]) -> list[tuple[int, str]]:
    """Leftmost-longest split of text at the added tokens: [(id or -1, piece)]."""
    out, start, i = [], 0, 0
    while i < len(text):
        best = max((t for t in tokens if text.startswith(t, i)), key=len, default=None)
        if best is None:
            i += 1
            continue
        if i > start:
            out.append((-1, text[start:i]))
        out.append((tokens[best], best))
        i += len(best)
        start = i
    if start < len(text):
        out.append((-1, text[start:]))
    return out


def legacy_ids(sp, matched: dict[str, int], text: str, bos: int | None) -> list[int]:
    ids = [bos] if bos is not None else []
    for token_id, piece in split_on(text, matched):
        ids += [token_id] if token_id >= 0 else sp.encode(piece)
    return ids


# Texts beyond expected.json's corpus, for what only the GGUF vocabulary has: its padding token typed as text (never
# produced), user-defined tokens inside words, and special and byte-piece names typed as text.
EXTRA_TEXTS = [
    "[PAD404] is padding",
    "x<think>y</think>z",
    "<unk> and <s> typed, and </s>",
    "<0x41> is a byte piece's name",
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n4821 + 739 = ?<|im_end|>\n<|im_start|>assistant\n",
]


def why_they_differ(text: str, matched: dict[str, int]) -> str:
    parts = split_on(text, matched)
    reasons = []
    if parts and parts[0][0] < 0 and parts[0][1].startswith(" "):
        reasons.append("starts with a space: transformers' Metaspace adds no dummy prefix there")
    if any(token_id >= 0 for token_id, _ in parts[:-1]):
        reasons.append("text after an added token: transformers' prepend_scheme 'first' gives it no dummy prefix")
    return "; ".join(reasons)


def main() -> int:
    from transformers import AutoTokenizer
    import transformers.utils.logging as hf_logging
    hf_logging.set_verbosity_error()

    with open(os.path.join(DATA, "expected.json"), encoding="utf-8") as f:
        folder_cases = {c["text"]: c["spm"] for c in json.load(f)["cases"]}
    corpus = list(folder_cases) + EXTRA_TEXTS

    work = tempfile.mkdtemp()
    try:
        checkpoint = os.path.join(work, "checkpoint")
        os.makedirs(checkpoint)
        make_checkpoint_folder(checkpoint)
        write_gguf(checkpoint, GGUF_PATH)
        # transformers reads the GGUF alone, so that no tokenizer file next to it takes part.
        alone = os.path.join(work, "gguf")
        os.makedirs(alone)
        shutil.copy(GGUF_PATH, alone)
        hf = AutoTokenizer.from_pretrained(alone, gguf_file="tokenizer.gguf")
    finally:
        shutil.rmtree(work)

    reader = gguf.GGUFReader(GGUF_PATH)
    field = reader.get_field("tokenizer.ggml.tokens")
    tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    field = reader.get_field("tokenizer.ggml.token_type")
    types = [int(field.parts[i][0]) for i in field.data]
    bos = int(reader.get_field("tokenizer.ggml.bos_token_id").parts[-1][0])
    eos = int(reader.get_field("tokenizer.ggml.eos_token_id").parts[-1][0])
    # llama.cpp cuts the control, user-defined and unknown tokens out of the text (tokenizer_st_partition).
    matched = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (2, 3, 4)}
    sp = spm.SentencePieceProcessor(model_file=os.path.join(SPM, "tokenizer.model"))

    cases, differ = [], 0
    for text in corpus:
        ids = legacy_ids(sp, matched, text, bos)
        ids_no_bos = legacy_ids(sp, matched, text, None)
        case = {"text": text, "ids": ids, "ids_no_bos": ids_no_bos,
                "decoded": hf.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": hf.decode(ids, skip_special_tokens=True)}
        # Where the text holds none of the added tokens, the folder tokenizer's reference (expected.json) is the same.
        if text in folder_cases and not any(content in text for _, content, _ in ADDED):
            ref = folder_cases[text]
            assert (ref["ids"], ref["ids_no_bos"]) == (ids, ids_no_bos), text
            assert ref["decoded"] == case["decoded"], text
            assert ref["decoded_skip_special"] == case["decoded_skip_special"], text
        hf_ids = hf.encode(text)
        assert hf.encode(text, add_special_tokens=False) == hf_ids[1:], text
        if hf_ids != ids:
            differ += 1
            case["hf_gguf_ids"] = hf_ids
            case["hf_gguf_decoded_skip_special"] = hf.decode(hf_ids, skip_special_tokens=True)
            case["differs"] = why_they_differ(text, matched)
            assert case["differs"], f"an unexplained difference on {text!r}"
        cases.append(case)

    out = {"size": len(tokens), "bos_id": bos, "eos_id": eos, "cases": cases}
    with open(EXPECTED_PATH, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {GGUF_PATH} and {EXPECTED_PATH}: {len(cases)} texts; transformers' GGUF ids differ on {differ}, "
          "each for a reason in the docstring")
    return 0


# GPT-OSS's split rules (tiktoken's o200k_base, tokenizer.ggml.pre "gpt-4o"), as its tokenizer.json states them.
O200K_REGEX = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
# DeepSeek-V3's (also R1, V3.1; tokenizer.ggml.pre "deepseek-v3"): its tokenizer.json splits three times in turn,
# digits in threes, runs of CJK ideographs and kana, then the rest.
DEEPSEEK_V3_REGEXES = [
    r"""\p{N}{1,3}""",
    r"""[一-龥぀-ゟ゠-ヿ]+""",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
]
# DeepSeek-V2's and V2-Lite's (also DeepSeek-Coder-V2 and DeepSeek LLM; tokenizer.ggml.pre "deepseek-llm"): six splits
# in turn: each line end alone, a space and a run of cased letters (the ranges are Unicode's cased letters), a space
# and a run of ASCII or full-width punctuation, trailing whitespace, runs of CJK and Hangul, runs of digits. Six of the
# characters are written as escapes: they are the Greek extended, Ohm and Kelvin letters whose canonical (NFC) forms
# are other characters, so an editor that normalises would silently change the ranges.
DEEPSEEK_LLM_REGEXES = [
    "[\r\n]",
    r"""\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-"""
    "\u1f7d" r"""ᾀ-ᾴᾶ-ᾼ""" "\u1fbe" r"""ῂ-ῄῆ-ῌῐ-""" "\u1fd3" r"""ῖ-""" "\u1fdb"
    r"""ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ""" "\u2126" r"""ℨ""" "\u212a" r"""-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ"""
    r"""𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+""",
    r"""\s?[!-/:-~！-／：-～‘-‟　-。]+""",
    r"""\s+$""",
    r"""[一-龥ࠀ-一가-퟿]+""",
    r"""\p{N}+""",
]
# GLM-4.5's (pre "glm4", older files "chatglm-bpe"): Llama 3's rules.
GLM4_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
              r"""\s+(?!\S)|\s+""")


# The split-rule cases: folder under tokenizers/, tokenizer.ggml.pre, general.architecture, the Split regexes in
# order, and the special tokens (the last is EOS, the first BOS).
SPLIT_RULE_CASES = [
    ("o200k", "gpt-4o", "gpt-oss", [O200K_REGEX], ["<|endoftext|>", "<|start|>", "<|message|>", "<|end|>", "<|return|>"]),
    ("deepseek_v3", "deepseek-v3", "deepseek2", DEEPSEEK_V3_REGEXES,
     ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "<｜end▁of▁sentence｜>"]),
    ("glm4", "glm4", "glm4moe", [GLM4_REGEX], ["[gMASK]", "<sop>", "<|user|>", "<|assistant|>", "<|endoftext|>"]),
    ("deepseek_llm", "deepseek-llm", "deepseek2", DEEPSEEK_LLM_REGEXES,
     ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"]),
]
# Words a case also trains on (each its own line, so each is learnt whole) that a wrong reading of its rules would
# leave whole: for DeepSeek-V2's, a carriage return before letters, trailing whitespace after symbols, Cyrillic and
# full-width letters after a space.
EXTRA_TRAINING = {
    "deepseek_llm": ["\ry", "😀  ", "∑  ", " Москва", " ＡＢＣ"],
}
TEXTS = ["<|start|>assistant<|message|>It's 2026/11/24: 12345 apples, DON'T PANIC!<|return|>",
         "1234567890 and 314159265 digits",
         "camelCaseWords and HTTPServer's ABCs", "ünïcödé Ωmega — 東京 😀\n\n\tend",
         "日本語のテキスト、カタカナとひらがな。中文句子，还有数字123。", "中文abc 東京 Hello中文 2026年11月24日", "a.b,c;d!e?f (g) [h] {i} <j> x+y=z",
         ".NET's .gitignore; @user #tag $100 ~/path", "  leading   spaces\r\nand CRLF\r\n\r\n",
         # Polytonic Greek, the Ohm and Kelvin signs, Cyrillic, full-width letters and punctuation, Hangul, long digit
         # runs and trailing whitespace: what DeepSeek-V2's rules treat apart.
         "Ἀθῆναι \u1fd3\u1fdb \u2126hm 5\u212a Москва ＡＢＣ！？ 한국어 텍스트 1234567890 end   ",
         "tabs\t\tand  \nspaces  \r\n  x  ", "x 😀  → ∑  ½  \n😀  ", " \u2126hm \u212aelvin \u1fd3\u1fdbx x\ry ∑  "]


def make_split_rule_case(folder, pre, arch, regexes, specials) -> None:
    """tokenizers/<folder>/: a small byte-level BPE trained (HF tokenizers) on make_tokenizers' corpus with a
    family's split rules and no normalizer, its tokenizer.json, and tokenizer.gguf written as llama.cpp's converter
    writes a "gpt2" vocabulary with that pre. <folder>_expected.json: HF tokenizers' ids for the test texts."""
    import random
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    sys.path.insert(0, HERE)
    import make_tokenizers as mt

    # The corpus, numbers enough for digit merges (the rule that cuts digits in threes then shows in the ids), and
    # CJK and punctuation runs for the rules that treat them apart.
    lines = mt.make_training_corpus(random.Random(mt.SEED)) + ["12345 67890 2026 1999 314159 1000000"] * 400
    lines += ["日本語のテキスト、カタカナとひらがな。中文句子 東京abc。", "(a) [b] {c} x+y=z .NET's @user #tag"] * 200
    lines += EXTRA_TRAINING.get(folder, []) * 1000
    # Trained on whole lines, so that merges cross the places the rules cut (digits, a space before CJK, CJK
    # beside Latin letters): a rule applied wrongly then changes the ids, which merges learned within the rules'
    # own pieces could not show. The family's rules are set for encoding afterwards.
    tok = Tokenizer(models.BPE(byte_fallback=False, unk_token=None, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in regexes] +
        [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    out = os.path.join(DATA, folder)
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=False)

    tj = json.loads(tok.to_str())
    n = tok.get_vocab_size(with_added_tokens=True)
    tokens, types = [""] * n, [gguf.TokenType.NORMAL] * n
    for text, i in tj["model"]["vocab"].items():
        tokens[i] = text
    for t in tj["added_tokens"]:
        tokens[t["id"]], types[t["id"]] = t["content"], gguf.TokenType.CONTROL
    w = gguf.GGUFWriter(os.path.join(out, "tokenizer.gguf"), arch)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]])
    w.add_eos_token_id(tok.token_to_id(specials[-1]))
    w.add_bos_token_id(tok.token_to_id(specials[0]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    with open(os.path.join(DATA, "expected.json"), encoding="utf-8") as f:
        texts = [c["text"] for c in json.load(f)["cases"]]
    texts += TEXTS
    cases = [{"text": t, "ids": tok.encode(t).ids} for t in texts]
    with open(os.path.join(DATA, f"{folder}_expected.json"), "w", encoding="utf-8") as f:
        json.dump({"size": n, "pre": pre, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out}/tokenizer.json, tokenizer.gguf and {folder}_expected.json: {len(cases)} texts")


# ---------------------------------------------------------------------------------------------------------------------
# Kimi K2 (tokenizer.ggml.pre "kimi-k2"): llama.cpp's converter (DeepseekV2Model.set_vocab, the kimi-k2 branch, with
# QwenModel.bpe and token_bytes_to_string), restated, on the tiktoken test folder of tests/make_tiktoken.py. The
# reference ids are that folder's: tests/data/tiktoken/expected.json, made with the `tiktoken` library.

def token_bytes_to_string(b: bytes) -> str:
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    byte_encoder = bytes_to_unicode()
    return "".join(byte_encoder[ord(char)] for char in b.decode("latin-1"))


def qwen_bpe(mergeable_ranks: dict[bytes, int], token: bytes, max_rank: int | None = None) -> list[bytes]:
    parts = [bytes([b]) for b in token]
    while True:
        min_idx, min_rank = None, None
        for i, pair in enumerate(zip(parts[:-1], parts[1:])):
            rank = mergeable_ranks.get(pair[0] + pair[1])
            if rank is not None and (min_rank is None or rank < min_rank):
                min_idx, min_rank = i, rank
        if min_rank is None or (max_rank is not None and min_rank >= max_rank):
            break
        assert min_idx is not None
        parts = parts[:min_idx] + [parts[min_idx] + parts[min_idx + 1]] + parts[min_idx + 2:]
    return parts


def make_kimi_k2_gguf() -> None:
    """tokenizers/kimi_k2/tokenizer.gguf: the tiktoken folder converted as llama.cpp converts Kimi K2 (ranks spelled as
    byte-level tokens at id = rank, then every special token, named or reserved, CONTROL; merges derived from the
    ranks), with the ids config.json gives BOS and EOS and the folder's chat template, as gguf-py's SpecialVocab
    writes them."""
    import base64
    import importlib.util
    folder = os.path.join(HERE, "data", "tiktoken", "model")
    ranks = {}
    with open(os.path.join(folder, "tiktoken.model"), encoding="ascii") as f:
        for line in f:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    spec = importlib.util.spec_from_file_location("tokenization_workbench",
                                                  os.path.join(folder, "tokenization_workbench.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    base, reserved = len(ranks), module.TikTokenTokenizer.num_reserved_special_tokens
    named = {int(i): t["content"] for i, t in config["added_tokens_decoder"].items()}
    # The checkpoint class's special_tokens: every id past the ranks, named or reserved.
    special_tokens = {named.get(i, f"<|reserved_token_{i}|>"): i for i in range(base, base + reserved)}
    vocab_size = base + reserved

    merges, vocab = [], {}
    for token, rank in ranks.items():
        vocab[token_bytes_to_string(token)] = rank
        if len(token) == 1:
            continue
        merged = qwen_bpe(ranks, token, max_rank=rank)
        if len(merged) == 2:
            merges.append(" ".join(map(token_bytes_to_string, merged)))
    reverse_vocab = {id_: encoded_tok for encoded_tok, id_ in {**vocab, **special_tokens}.items()}
    tokens, toktypes = [], []
    for i in range(vocab_size):
        if i not in reverse_vocab:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(reverse_vocab[i])
            toktypes.append(gguf.TokenType.CONTROL if i in special_tokens.values() else gguf.TokenType.NORMAL)

    out = os.path.join(DATA, "kimi_k2")
    os.makedirs(out, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(out, "tokenizer.gguf"), "deepseek2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("kimi-k2")
    w.add_token_list(tokens)
    w.add_token_types(toktypes)
    w.add_token_merges(merges)
    w.add_bos_token_id(special_tokens[config["bos_token"]])
    w.add_eos_token_id(special_tokens[config["eos_token"]])
    w.add_chat_template(config["chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out}/tokenizer.gguf: {base} ranks, {reserved} special tokens, {len(merges)} merges")


if __name__ == "__main__":
    for case in SPLIT_RULE_CASES:
        make_split_rule_case(*case)
    make_kimi_k2_gguf()
    sys.exit(main())
