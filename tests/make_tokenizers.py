#!/usr/bin/env python3
"""Builds the tokenizer test data in tests/data/tokenizers/ (dev-time only; the C++ tests never run Python).

    python3 tests/make_tokenizers.py

What it writes, all from a seeded generated corpus (re-running gives the same files):
  bpe/                 byte-level BPE trained with HF `tokenizers` the way Qwen2/Qwen3 are set up (NFC normalizer,
                       Split(Qwen regex, Isolated) + ByteLevel(use_regex=false), ByteLevel decoder), ~400 ids, added
                       tokens <|endoftext|> <|im_start|> <|im_end|> (special) and <think> </think> (not special), and a
                       tokenizer_config.json carrying our own Qwen3-style ChatML+thinking Jinja chat_template.
  bpe_merges_strings/  the same tokenizer with its merges written as "a b" strings (bpe/ holds ["a","b"] arrays).
  spm/                 a SentencePiece BPE model with byte fallback (Llama-like ids: <unk> 0, <s> 1, </s> 2), plus a
                       tokenizer_config.json with add_bos_token and our own Mistral-style [INST] chat_template.
  expected.json        for each corpus string: ids and decoded text (with and without skip_special_tokens).
  chat_expected.json   chat renders by transformers' apply_chat_template(..., tokenize=False).

Where the reference numbers come from:
  bpe: tokenizers.Tokenizer.from_file(bpe/tokenizer.json): encode(text).ids, decode(ids, skip_special_tokens=...).
  spm: the `sentencepiece` Python library on spm/tokenizer.model. Like HF's slow LlamaTokenizer (legacy=True) the text
       is first split at the special tokens (<unk>, <s>, </s>), which become their ids; every other segment is
       sp.encode(segment) (so each segment gets SentencePiece's dummy-prefix "▁"), and BOS (1) is prepended.
       Decoding follows the HF decoder chain of Llama tokenizers (Replace "▁"→" ", ByteFallback, Fuse, Strip one leading
       space); with skip_special_tokens it equals sp.decode(ids) and this script checks that.
       When transformers can load spm/ (it needs the `protobuf` package, absent from the base environment), the script
       also compares with its LlamaTokenizer: the decoded texts agree on the whole corpus, and the ids agree except
       for text that starts with a space (" Hello world", "   leading spaces", " ", "   \n  \n"): transformers 5
       rebuilds the tokenizer with a Metaspace pre-tokenizer that skips the dummy "▁" when the text already starts
       with one, while SentencePiece (what Llama/Mistral were trained with, and what the engine wraps) always adds it.
  chat: transformers' apply_chat_template(..., tokenize=False) on bpe/ and on spm/ (if transformers cannot build the
       spm/ tokenizer, the spm/ template, bos and eos are rendered through the bpe/ tokenizer object, which gives the
       same text: the templates only use bos_token/eos_token). Templates not stored in a folder (ChatML, Llama-2,
       Qwen3 thinking-prefill) are passed with chat_template= and saved in chat_expected.json["templates"].
"""
import io
import json
import os
import random
import shutil
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
import sentencepiece as spm

SEED = 20240607
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "tokenizers")

# SPECS.md §9.1: the Split regex of Qwen2/Qwen3 tokenizer.json.
QWEN_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
              r"""|\s+(?!\S)|\s+""")

# ---------------------------------------------------------------------------------------------------------------------
# Chat templates. Written for this project; they reproduce the behaviour described in SPECS.md §10.1 (Qwen3) and the
# usual [INST] formats. The C++ side recognises them by fingerprints and renders them natively.

# ChatML + Qwen3 thinking: system first; assistant thinking dropped before the last real user query, re-emitted after
# it as <think>\n…\n</think>\n\n; enable_thinking=false prefills an empty think block after the generation prompt.
QWEN3_TEMPLATE = r"""{#- ChatML with Qwen3-style thinking control (MoE Workbench test template) -#}
{%- set n = messages | length -%}
{%- if n > 0 and messages[0].role == 'system' -%}
  {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' -}}
{%- endif -%}
{#- the last real user query: a user turn that is not a wrapped tool result -#}
{%- set state = namespace(last_query=n - 1, found=false) -%}
{%- for i in range(n - 1, -1, -1) -%}
  {%- set m = messages[i] -%}
  {%- if not state.found and m.role == 'user' and m.content is string
        and not (m.content.startswith('<tool_response>') and m.content.endswith('</tool_response>')) -%}
    {%- set state.found = true -%}
    {%- set state.last_query = i -%}
  {%- endif -%}
{%- endfor -%}
{%- for m in messages -%}
  {%- set text = m.content if m.content is string else '' -%}
  {%- if m.role == 'user' or (m.role == 'system' and not loop.first) -%}
    {{- '<|im_start|>' + m.role + '\n' + text + '<|im_end|>\n' -}}
  {%- elif m.role == 'assistant' -%}
    {%- set thought = '' -%}
    {%- if m.reasoning_content is string -%}
      {%- set thought = m.reasoning_content -%}
    {%- elif '</think>' in text -%}
      {%- set thought = text.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') -%}
      {%- set text = text.split('</think>')[-1].lstrip('\n') -%}
    {%- endif -%}
    {%- if loop.index0 > state.last_query and (loop.last or thought) -%}
      {{- '<|im_start|>' + m.role + '\n<think>\n' + thought.strip('\n') + '\n</think>\n\n' + text.lstrip('\n') -}}
    {%- else -%}
      {{- '<|im_start|>' + m.role + '\n' + text -}}
    {%- endif -%}
    {{- '<|im_end|>\n' -}}
  {%- elif m.role == 'tool' -%}
    {%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}
      {{- '<|im_start|>user' -}}
    {%- endif -%}
    {{- '\n<tool_response>\n' + text + '\n</tool_response>' -}}
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
{%- endif -%}
"""

# Thinking-only variant (like the Qwen3-2507 "Thinking" models): no enable_thinking switch, the generation prompt
# always opens a think block.
QWEN3_THINKING_PREFILL_TEMPLATE = QWEN3_TEMPLATE[: QWEN3_TEMPLATE.index("{%- if add_generation_prompt -%}")] + r"""
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n<think>\n' -}}
{%- endif -%}
"""

# Plain ChatML with a default system prompt (Qwen1.5/Qwen2 style).
CHATML_TEMPLATE = r"""{%- for m in messages -%}
  {%- if loop.first and m.role != 'system' -%}
    {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' -}}
  {%- endif -%}
  {{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""

# Plain ChatML without a default system prompt.
CHATML_NO_SYSTEM_TEMPLATE = r"""{%- for m in messages -%}
  {{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""

# Mistral / Mixtral-Instruct style: one BOS, a system message folded into the first user turn.
MISTRAL_TEMPLATE = r"""{%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content -%}
  {%- set turns = messages[1:] -%}
{%- else -%}
  {%- set system = '' -%}
  {%- set turns = messages -%}
{%- endif -%}
{{- bos_token -}}
{%- for m in turns -%}
  {%- if (m.role == 'user') != (loop.index0 % 2 == 0) -%}
    {{- raise_exception('after an optional system message, roles must alternate user/assistant') -}}
  {%- endif -%}
  {%- if m.role == 'user' -%}
    {%- if loop.first and system -%}
      {{- '[INST] ' + system + '\n\n' + m.content + ' [/INST]' -}}
    {%- else -%}
      {{- '[INST] ' + m.content + ' [/INST]' -}}
    {%- endif -%}
  {%- elif m.role == 'assistant' -%}
    {{- ' ' + m.content + eos_token -}}
  {%- endif -%}
{%- endfor -%}
"""

# DeepSeek-V2-Chat and V2-Lite-Chat's template as published in their tokenizer_config.json: one BOS, then
# "User: ...\n\n", "Assistant: ...<eos>" and bare system text, in order; the generation prompt is "Assistant:".
DEEPSEEK_V2_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant:' }}{% endif %}"
)

# GLM-4.5's template as published with its checkpoints (zai-org/GLM-4.5, also GLM-4.5-Air and GLM-4.6; the tool-call
# block of assistant turns, which these conversations never reach, is written from memory): "[gMASK]<sop>",
# turns opened by <|system|>, <|user|>, <|assistant|> and <|observation|> (tool results) with no closing tag; every
# assistant turn carries a think block, empty except after the last user message; enable_thinking=false appends
# "/nothink" to user messages and prefills an empty think block.
GLM45_TEMPLATE = r"""[gMASK]<sop>
{%- if tools -%}
<|system|>
# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{% for tool in tools %}
{{ tool | tojson(ensure_ascii=False) }}
{% endfor %}
</tools>

For each function call, output the function name and arguments within the following XML format:
<tool_call>{function-name}
<arg_key>{arg-key-1}</arg_key>
<arg_value>{arg-value-1}</arg_value>
<arg_key>{arg-key-2}</arg_key>
<arg_value>{arg-value-2}</arg_value>
...
</tool_call>{%- endif -%}
{%- macro visible_text(content) -%}
    {%- if content is string -%}
        {{- content }}
    {%- elif content is iterable and content is not mapping -%}
        {%- for item in content -%}
            {%- if item is mapping and item.type == 'text' -%}
                {{- item.text }}
            {%- elif item is string -%}
                {{- item }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{- content }}
    {%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(last_user_index=-1) %}
{%- for m in messages %}
    {%- if m.role == 'user' %}
        {% set ns.last_user_index = loop.index0 -%}
    {%- endif %}
{%- endfor %}
{% for m in messages %}
{%- if m.role == 'user' -%}<|user|>
{{ visible_text(m.content) }}
{{- '/nothink' if (enable_thinking is defined and not enable_thinking and not visible_text(m.content).endswith("/nothink")) else '' -}}
{%- elif m.role == 'assistant' -%}
<|assistant|>
{%- set reasoning_content = '' %}
{%- set content = visible_text(m.content) %}
{%- if m.reasoning_content is string %}
    {%- set reasoning_content = m.reasoning_content %}
{%- else %}
    {%- if '</think>' in content %}
        {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
        {%- set content = content.split('</think>')[-1].lstrip('\n') %}
    {%- endif %}
{%- endif %}
{%- if loop.index0 > ns.last_user_index and reasoning_content -%}
{{ '\n<think>' + reasoning_content.strip() +  '</think>'}}
{%- else -%}
{{ '\n<think></think>' }}
{%- endif -%}
{%- if content.strip() -%}
{{ '\n' + content.strip() }}
{%- endif -%}
{% if m.tool_calls %}
{% for tc in m.tool_calls %}
{%- if tc.function %}
    {%- set tc = tc.function %}
{%- endif %}
{{ '\n<tool_call>' + tc.name }}
{% set _args = tc.arguments %}
{% for k, v in _args.items() %}
<arg_key>{{ k }}</arg_key>
<arg_value>{{ v | tojson(ensure_ascii=False) if v is not string else v }}</arg_value>
{% endfor %}
</tool_call>{% endfor %}
{% endif %}
{%- elif m.role == 'tool' -%}
{%- if m.content is string -%}
{%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
    {{- '<|observation|>' }}
{%- endif %}
{{- '\n<tool_response>\n' }}
{{- m.content }}
{{- '\n</tool_response>' }}
{%- else -%}
<|observation|>{% for tr in m.content %}

<tool_response>
{{ tr.output if tr.output is defined else tr }}
</tool_response>{% endfor -%}
{% endif -%}
{%- elif m.role == 'system' -%}
<|system|>
{{ visible_text(m.content) }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    <|assistant|>{{- '\n<think></think>' if (enable_thinking is defined and not enable_thinking) else '' -}}
{%- endif -%}"""

# The DeepSeek-V3 family's templates as published in their tokenizer_config.json: <｜User｜> and <｜Assistant｜> tags,
# system messages gathered after the BOS, answers closed by <｜end▁of▁sentence｜>, tool results in
# <｜tool▁output▁begin｜>…<｜tool▁output▁end｜>. They differ in the details the C++ side tells apart by fingerprints.
# DeepSeek-V3 (2024-12): the last system message wins; the generation prompt is <｜Assistant｜>.
DEEPSEEK_V3_TEMPLATE = (
    r"""{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}""")

# DeepSeek-V3-0324: system messages joined by blank lines; each user message is followed by <｜Assistant｜>, so the
# generation prompt adds the tag only when the conversation does not end with a user message.
DEEPSEEK_V3_0324_TEMPLATE = (
    r"""{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true, is_last_user=false) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{%- set ns.is_first = false -%}{%- set ns.is_last_user = true -%}{{'<｜User｜>' + message['content'] + '<｜Assistant｜>'}}{%- endif %}{%- if message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] is not none %}{%- set ns.is_last_user = false -%}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{%- endif %}{%- set ns.is_first = false %}{%- set ns.is_tool = false -%}{%- set ns.is_output_first = true %}{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- else %}{{message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- if message['role'] == 'assistant' and (message['tool_calls'] is not defined or message['tool_calls'] is none)%}{%- set ns.is_last_user = false -%}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{{content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_last_user = false -%}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_last_user and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}""")

# DeepSeek-R1 (also its distilled Qwen/Llama models): answers lose everything up to their last </think>; the
# generation prompt opens a think block (<｜Assistant｜><think>\n), so R1 always thinks.
DEEPSEEK_R1_TEMPLATE = (
    r"""{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and 'tool_calls' in message %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- if message['role'] == 'assistant' and 'tool_calls' not in message %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %}""")

# DeepSeek-V3.1 (the Terminus revision; V3.2-Exp has the same): the `thinking` variable (default false) chooses the
# generation prompt's <think> or </think>; the first answer after a user message opens with
# <｜Assistant｜></think>, answers keep what follows their first </think>, and tool results are bare.
DEEPSEEK_V3_1_TEMPLATE = (
    r"""{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% if not thinking is defined %}{% set thinking = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, system_prompt='', is_first_sp=true, is_last_user=false, is_only_sys=false, is_prefix=false) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{% set ns.is_only_sys = true %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{%- set ns.is_first = false -%}{%- set ns.is_last_user = true -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] is not none %}{%- if ns.is_last_user or ns.is_only_sys %}{{'<｜Assistant｜></think>'}}{%- endif %}{%- set ns.is_last_user = false -%}{%- set ns.is_first = false %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'+ tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}{%- else %}{{message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}{%- endif %}{%- set ns.is_first = true -%}{%- else %}{{'<｜tool▁call▁begin｜>'+ tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- if message['role'] == 'assistant' and (message['tool_calls'] is not defined or message['tool_calls'] is none) %}{%- if ns.is_last_user %}{{'<｜Assistant｜>'}}{%- if message['prefix'] is defined and message['prefix'] and thinking %}{{'<think>'}}{%- else %}{{'</think>'}}{%- endif %}{%- endif %}{%- if message['prefix'] is defined and message['prefix'] %}{%- set ns.is_prefix = true -%}{%- endif %}{%- set ns.is_last_user = false -%}{%- if ns.is_tool %}{{message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{%- set content = message['content'] -%}{%- if '</think>' in content %}{%- set content = content.split('</think>', 1)[1] -%}{%- endif %}{{content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_last_user = false -%}{%- set ns.is_tool = true -%}{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- if message['role'] != 'system' %}{% set ns.is_only_sys = false %}{%- endif %}{%- endfor -%}{% if add_generation_prompt and not ns.is_tool%}{% if ns.is_last_user or ns.is_only_sys or not ns.is_prefix %}{{'<｜Assistant｜>'}}{%- if not thinking %}{{'</think>'}}{%- else %}{{'<think>'}}{%- endif %}{% endif %}{% endif %}""")

# MiniMax-M2's template as the public copies of it read (Unsloth's fixed copy and a MiniMax-M2.7 variant agree on all
# of this; the checkpoint's own file was not at hand), without its tool-declaration and tool-call blocks (these
# conversations never reach them): "]~!b[" then turns "]~b]role\n…[e~[\n"; the system turn is the first message or
# the model identity; an answer keeps its thinking only after the last user message; the generation prompt opens
# <think>, so the model always thinks. A tool result without a preceding tool call is an error in the template.
MINIMAX_M2_TEMPLATE = r"""{%- macro visible_text(content) -%}
    {%- if content is string -%}
        {{ content }}
    {%- elif content is iterable and content is not mapping -%}
        {%- for item in content -%}
            {%- if item is mapping and item.type == 'text' -%}
                {{- item.text }}
            {%- elif item is string -%}
                {{- item }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{- content }}
    {%- endif -%}
{%- endmacro -%}
{%- macro build_system_message(system_message) -%}
    {%- if system_message and system_message.content -%}
        {{- visible_text(system_message.content) }}
    {%- else -%}
        {%- if model_identity is not defined -%}
            {%- set model_identity = "You are a helpful assistant." -%}
        {%- endif -%}
        {{- model_identity }}
    {%- endif -%}
{%- endmacro -%}
{%- set system_message = none -%}
{%- set conversation_messages = messages -%}
{%- if messages and messages[0].role == "system" -%}
    {%- set system_message = messages[0] -%}
    {%- set conversation_messages = messages[1:] -%}
{%- endif -%}
{%- set ns = namespace(last_user_index=-1) %}
{% for m in conversation_messages %}
    {%- if m.role == 'user' %}
        {% set ns.last_user_index = loop.index0 -%}
    {%- endif %}
{%- endfor %}
{{- ']~!b[' ~ ']~b]system' ~ '\n' }}
{{- build_system_message(system_message) }}
{{- '[e~[\n' }}
{%- set last_tool_call = namespace(name=none) -%}
{%- for message in conversation_messages -%}
    {%- if message.role == 'assistant' -%}
        {{- ']~b]ai' ~ '\n' }}
        {%- set reasoning_content = '' %}
        {%- set content = visible_text(message.content) %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].strip('\n').split('<think>')[-1].strip('\n') %}
                {%- set content = content.split('</think>')[-1].strip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if reasoning_content and loop.index0 > ns.last_user_index -%}
            {{- '<think>' ~ '\n' ~ reasoning_content ~ '\n' ~ '</think>' ~ '\n\n' }}
        {%- endif -%}
        {%- if content -%}
            {{- content }}
        {%- endif -%}
        {%- set last_tool_call.name = none -%}
        {{- '[e~[' ~ '\n' }}
    {%- elif message.role == 'tool' -%}
    {%- if last_tool_call.name is none -%}
        {{- raise_exception("Message has tool role, but there was no previous assistant message with a tool call!") }}
    {%- endif -%}
    {%- elif message.role == 'user' -%}
        {{- ']~b]user' ~ '\n' }}
        {{- visible_text(message.content) }}
        {{- '[e~[' ~ '\n' }}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- ']~b]ai' ~ '\n' ~ '<think>' ~ '\n' }}
{%- endif -%}"""

# ERNIE-4.5's template (the -PT checkpoints' tokenizer_config.json, and the DEFAULT_CHAT_TEMPLATE of transformers'
# Ernie 4.5 tokenizer before 5.x): the cls token, then "User: …\n", "Assistant: …<sep>" and bare system text in order;
# the generation prompt is "Assistant: ".
ERNIE45_TEMPLATE = (
    '{%- if not add_generation_prompt is defined -%}\n    {%- set add_generation_prompt = true -%}\n{%- endif -%}\n'
    '{%- if not cls_token is defined -%}\n    {%- set cls_token = "<|begin_of_sentence|>" -%}\n{%- endif -%}\n'
    '{%- if not sep_token is defined -%}\n    {%- set sep_token = "<|end_of_sentence|>" -%}\n{%- endif -%}\n'
    '{{- cls_token -}}\n{%- for message in messages -%}\n    {%- if message["role"] == "user" -%}\n'
    '        {{- "User: " + message["content"] + "\\n" -}}\n    {%- elif message["role"] == "assistant" -%}\n'
    '        {{- "Assistant: " + message["content"] + sep_token -}}\n    {%- elif message["role"] == "system" -%}\n'
    '        {{- message["content"] + "\\n" -}}\n    {%- endif -%}\n{%- endfor -%}\n'
    '{%- if add_generation_prompt -%}\n    {{- "Assistant: " -}}\n{%- endif -%}'
)

# Kimi K2's templates, as llama.cpp's models/templates copies them from the checkpoints' chat_template.jinja.
# Kimi-K2 (Instruct, first release): a default system message "You are a helpful assistant" when the first message is
# not a system one; <|im_system|>, <|im_user|>, <|im_assistant|> headers, <|im_middle|>, <|im_end|>; other roles get no
# header. Only the string-content branch is reached by these conversations.
KIMI_K2_TEMPLATE = """{% if tools -%}
    {{ '<|im_system|>tool_declare<|im_middle|>' -}}
    {{- tools | tojson -}}
    {{ '<|im_end|>' -}}
{%- endif -%}

{%- for message in messages -%}
  {%- if loop.first and messages[0]['role'] != 'system' -%}
    {{ '<|im_system|>system<|im_middle|>You are a helpful assistant<|im_end|>' }}
  {%- endif -%}
  {%- if message['role'] == 'system' -%}
    {{ '<|im_system|>system<|im_middle|>' }}
  {%- elif message['role'] == 'user' -%}
    {{ '<|im_user|>user<|im_middle|>' }}
  {%- elif message['role'] == 'assistant' -%}
    {{ '<|im_assistant|>assistant<|im_middle|>' }}
  {%- elif message['role'] == 'tool' -%}
    {{ '<|im_system|>tool<|im_middle|>' }}
  {%- endif -%}

  {%- if message['content'] is string -%}
    {{- message['content'] + '<|im_end|>' -}}
  {%- else -%}
    {%- for content in message['content'] -%}
      {%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}
        {{ '<|media_start|>image<|media_content|><|media_pad|><|media_end|>' }}
      {%- else -%}
        {{ content['text'] }}
      {%- endif -%}
    {%- endfor -%}
    {{ '<|im_end|>' }}
  {%- endif -%}
{%- endfor -%}

{%- if add_generation_prompt -%}
  {{ '<|im_assistant|>assistant<|im_middle|>' }}
{%- endif -%}"""

# Kimi-K2-Thinking: the default system message "You are Kimi, an AI assistant created by Moonshot AI." (also for an
# empty conversation); every role gets a header (unknown ones <|im_system|>); messages up to the last assistant answer
# that is not a tool call are history, where answers open with an empty <think></think>; later assistant tool calls
# keep their reasoning_content; a tool result reads "## Return of <tool_call_id>\n…". The answer's thought goes in
# reasoning_content, as the model's own output parser puts it (render_chats maps the engine's "<think>…</think>answer"
# content to that).
KIMI_K2_THINKING_TEMPLATE = """{%- macro render_content(msg) -%}
    {%- set c = msg.get('content') -%}
    {%- if c is string -%}
      {{ c }}
    {%- elif c is not none -%}
      {% for content in c -%}
        {% if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}
          <|media_start|>image<|media_content|><|media_pad|><|media_end|>
        {% else -%}
          {{ content['text'] }}
        {%- endif -%}
      {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}

{% macro set_roles(message) -%}
  {%- set role_name =  message.get('name') or  message['role'] -%}
  {%- if message['role'] == 'user' -%}
    <|im_user|>{{role_name}}<|im_middle|>
  {%- elif message['role'] == 'assistant' -%}
    <|im_assistant|>{{role_name}}<|im_middle|>
  {%- else -%}
    <|im_system|>{{role_name}}<|im_middle|>
  {%- endif -%}
{%- endmacro -%}


{%- macro render_toolcalls(message) -%}
  <|tool_calls_section_begin|>
  {%- for tool_call in message['tool_calls'] -%}
    {%- set formatted_id = tool_call['id'] -%}
    <|tool_call_begin|>{{ formatted_id }}<|tool_call_argument_begin|>{% if tool_call['function']['arguments'] is string %}{{ tool_call['function']['arguments'] }}{% else %}{{ tool_call['function']['arguments'] | tojson }}{% endif %}<|tool_call_end|>
  {%- endfor -%}
  <|tool_calls_section_end|>
{%- endmacro -%}


{# Find last non-tool-call assisitant message #}
{%- set ns = namespace(last_non_tool_call_assistant_msg=-1) -%}
{%- for idx in range(messages|length-1, -1, -1) -%}
    {%- if messages[idx]['role'] == 'assistant' and not messages[idx].get('tool_calls') -%}
        {%- set ns.last_non_tool_call_assistant_msg = idx -%}
        {%- break -%}
    {%- endif -%}
{%- endfor -%}

{# split all messages into history & suffix, reasoning_content in suffix should be reserved.#}
{%- set hist_msgs = messages[:ns.last_non_tool_call_assistant_msg+1] -%}
{%- set suffix_msgs = messages[ns.last_non_tool_call_assistant_msg+1:] -%}

{%- if tools -%}
  <|im_system|>tool_declare<|im_middle|>{{ tools | tojson() }}<|im_end|>
{%- endif -%}

{%- if messages|length == 0 or messages[0]['role'] != 'system' -%}
  <|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>
{%- endif -%}
  
{%- for message in hist_msgs -%}
  {{set_roles(message)}}
  {%- if message['role'] == 'assistant' -%}
    <think></think>{{render_content(message)}}
    {%- if message.get('tool_calls') -%}
      {{render_toolcalls(message)}}
    {%- endif -%}
  {%- elif message['role'] == 'tool' -%}
    {%- set tool_call_id = message.tool_call_id -%}
    ## Return of {{ tool_call_id }}
{{render_content(message)}}
  {%- elif message['content'] is not none -%}
    {{render_content(message)}}
  {%- endif -%}
  <|im_end|>
{%- endfor -%}

{%- for message in suffix_msgs -%}
  {{set_roles(message)}}
  {%- if message['role'] == 'assistant' -%}
    {%- set rc = message.get('reasoning_content', '') -%}
    <think>{{rc}}</think>{{render_content(message)}}
    {%- if message.get('tool_calls') -%}
     {{render_toolcalls(message)}}
    {%- endif -%}
  {%- elif message['role'] == 'tool' -%}
    {%- set tool_call_id = message.tool_call_id -%}
    ## Return of {{ tool_call_id }}
{{render_content(message)}}
  {%- elif message['content'] is not none -%}
    {{render_content(message)}}
  {%- endif -%}
  <|im_end|>
{%- endfor -%}


{%- if add_generation_prompt -%}
  <|im_assistant|>assistant<|im_middle|>
{%- endif -%}
"""


def kimi_messages(messages: list[dict]) -> list[dict]:
    """The engine keeps an answer as "<think>thought</think>answer"; Kimi's template takes the thought as
    reasoning_content and the answer (what follows the last </think>) as content."""
    out = []
    for m in messages:
        if m["role"] == "assistant" and "</think>" in m["content"]:
            thought, _, answer = m["content"].rpartition("</think>")
            out.append({"role": "assistant", "content": answer, "reasoning_content": thought.split("<think>")[-1]})
        else:
            out.append(m)
    return out


# OpenAI's Harmony format as gpt-oss's chat_template.jinja writes it for conversations without tools (written for these
# tests; the real template adds tool namespaces, tool calls and the `thinking` field of assistant messages): a system
# message naming the date and the reasoning effort, the first system (or developer) message as the developer's
# instructions, later system messages dropped, answers in the final channel (their thinking never re-rendered), and
# the generation prompt "<|start|>assistant", after which the model picks its channel itself. HARMONY_DATE stands in
# for strftime_now, whose value is the day the render runs.
HARMONY_TEMPLATE = r"""{#- Harmony (gpt-oss), without tools (MoE Workbench test template) -#}
{%- if reasoning_effort is not defined -%}
  {%- set reasoning_effort = "medium" -%}
{%- endif -%}
{{- "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n" -}}
{{- "Knowledge cutoff: 2024-06\nCurrent date: " + strftime_now("%Y-%m-%d") + "\n\n" -}}
{{- "Reasoning: " + reasoning_effort + "\n\n" -}}
{{- "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>" -}}
{%- if messages and (messages[0].role == "developer" or messages[0].role == "system") -%}
  {%- set developer_message = messages[0].content -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set developer_message = "" -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{%- if developer_message -%}
  {{- "<|start|>developer<|message|># Instructions\n\n" + developer_message + "\n\n<|end|>" -}}
{%- endif -%}
{%- for message in loop_messages -%}
  {%- if message.role == "assistant" -%}
    {%- if loop.last and not add_generation_prompt -%}
      {{- "<|start|>assistant<|channel|>final<|message|>" + message.content + "<|return|>" -}}
    {%- else -%}
      {{- "<|start|>assistant<|channel|>final<|message|>" + message.content + "<|end|>" -}}
    {%- endif -%}
  {%- elif message.role == "user" -%}
    {{- "<|start|>user<|message|>" + message.content + "<|end|>" -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- "<|start|>assistant" -}}
{%- endif -%}
"""
HARMONY_DATE = (2025, 8, 5)


# Llama-2-chat style: BOS before every user turn, <<SYS>> block inside the first one, contents stripped.
LLAMA2_TEMPLATE = r"""{%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content -%}
  {%- set turns = messages[1:] -%}
{%- else -%}
  {%- set system = none -%}
  {%- set turns = messages -%}
{%- endif -%}
{%- for m in turns -%}
  {%- if (m.role == 'user') != (loop.index0 % 2 == 0) -%}
    {{- raise_exception('after an optional system message, roles must alternate user/assistant') -}}
  {%- endif -%}
  {%- if loop.first and system is not none -%}
    {%- set text = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + m.content -%}
  {%- else -%}
    {%- set text = m.content -%}
  {%- endif -%}
  {%- if m.role == 'user' -%}
    {{- bos_token + '[INST] ' + text.strip() + ' [/INST]' -}}
  {%- elif m.role == 'assistant' -%}
    {{- ' ' + text.strip() + ' ' + eos_token -}}
  {%- endif -%}
{%- endfor -%}
"""

# ---------------------------------------------------------------------------------------------------------------------
# Training corpus (generated, seeded).

EN_WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by "
            "word but not what all were we when your can said there use an each which she do how their if will up "
            "other about out many then them these so some her would make like him into time has look two more write "
            "go see number no way could people my than first water been call who oil its now find long down day did "
            "get come made may part model expert router token layer thinking answer question engine memory").split()
CONTRACTIONS = ["don't", "I'm", "it's", "we'll", "they've", "she'd", "can't", "you're", "I'M", "DON'T", "It'S"]
ZH_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所"
JA_TEXT = ["日本語のテキストです", "カタカナとひらがな", "こんにちは世界", "東京は大きい都市です", "ありがとうございます",
           "モデルの専門家", "トークン化のテスト"]
EMOJI = ["😀", "😃", "😄", "😁", "🚀", "🤖", "🧠", "💡", "👍", "👍🏽", "❤️", "🎉", "🔥", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "✨"]
CODE = [
    "def forward(self, x):\n    h = self.norm(x)\n    return self.mlp(h) + x\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "struct Expert {\n  float* w1;  // (H, I)\n  float* w2;  // (I, H)\n};\n",
    "x = [1, 2, 3]\nprint(len(x))  # 3\n",
    "#include <vector>\nint main() { return 0; }\n",
    "\tconst auto it = map.find(key);\n\tif (it == map.end()) return -1;\n",
]


def make_training_corpus(rng: random.Random) -> list[str]:
    lines = []
    for _ in range(1500):
        n = rng.randint(4, 14)
        words = [rng.choice(EN_WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words[rng.randrange(n)] = rng.choice(CONTRACTIONS)
        s = " ".join(words)
        if rng.random() < 0.5:
            s = s.capitalize()
        lines.append(s + rng.choice([".", "!", "?", ",", ""]))
    for _ in range(150):
        lines.append("".join(rng.choice(ZH_CHARS) for _ in range(rng.randint(5, 20))) + rng.choice(["。", "，", "！", ""]))
    for _ in range(150):
        lines.append(rng.choice(JA_TEXT) + rng.choice(["。", "、", ""]))
    for _ in range(300):
        lines.append(rng.choice(CODE))
    for _ in range(200):
        lines.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 9))) for _ in range(rng.randint(1, 5))))
    for _ in range(150):
        lines.append(" ".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4))) + " " + rng.choice(EN_WORDS))
    rng.shuffle(lines)
    return lines


# ---------------------------------------------------------------------------------------------------------------------
# The fixed test corpus.

CORPUS = [
    "Hello world",
    " Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'M sure you don't KNOW what they've done; we'll SEE, it'S fine.",
    "I'll've y'all's 'quoted' '' ''s",
    "你好，世界！今天天气很好。",
    "日本語のテキストです。カタカナとひらがな、漢字。",
    "Mixed 中文 and English 混合 text 123.",
    "def main():\n\tfor i in range(10):\n\t\tprint(i)\n    return 0\n",
    "if (x == 1) {\n    y += 2;\n}\n\n\n",
    "😀😃😄 emoji 🚀",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🇯🇵 jp",
    "multiple    spaces   here",
    "trailing spaces   ",
    "   leading spaces",
    "line1\n\nline2\n\n\n\nline3",
    "\r\n windows\r\nline endings\r\n",
    "12345678901234567890",
    "pi = 3.14159265358979, e=2.718, n=1,000,000",
    "<|im_start|>user\nhi<|im_end|>",
    "<think>x</think>",
    "<|im_start|>assistant\n<think>\nreasoning here\n</think>\n\nThe answer.<|im_end|>\n<|endoftext|>",
    "<|im_start|><|im_start|><|im_end|>",
    "text<|im_end",
    "e\u0301cole",
    "caf\u00e9 vs cafe\u0301, A\u030a vs \u00c5, \u1e9b\u0323",
    "",
    " ",
    "\n",
    "\t\tindented\ttabs\t",
    "naïve Ünïcödé ß Straße",
    "Ελληνικά και Русский текст",
    "مرحبا بالعالم",
    "한국어 텍스트",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "unicode spaces:\u00a0nbsp\u2009thin\u3000ideographic\u0085nel\u2028ls end",
    "email@example.com https://example.org/path?q=1&r=2#frag",
    "   \n  \n",
    "tab\tseparated\tvalues\n1\t2\t3",
    "<s>[INST] Hello [/INST] Hi</s>",
    "control \u0001\u007f chars and \u200b zero width",
    "🤖🧠💡 The model's experts ran 42 times.",
]

SPM_SPECIALS = ["<unk>", "<s>", "</s>"]


def split_on_specials(text: str, specials: list[str]) -> list[tuple[bool, str]]:
    """Leftmost-longest split of text at the special token strings: [(is_special, piece)]."""
    out, start, i = [], 0, 0
    while i < len(text):
        best = None
        for s in specials:
            if text.startswith(s, i) and (best is None or len(s) > len(best)):
                best = s
        if best is None:
            i += 1
            continue
        if i > start:
            out.append((False, text[start:i]))
        out.append((True, best))
        i += len(best)
        start = i
    if start < len(text):
        out.append((False, text[start:]))
    return out


def spm_encode(sp, text: str, add_bos: bool = True) -> list[int]:
    ids = [sp.bos_id()] if add_bos else []
    for special, piece in split_on_specials(text, SPM_SPECIALS):
        ids += [sp.piece_to_id(piece)] if special else sp.encode(piece)
    return ids


def spm_decode(sp, ids: list[int], skip_special: bool) -> str:
    """HF Llama decoder chain: Replace("▁"→" "), ByteFallback, Fuse, Strip(" ", 1 left)."""
    parts, pending = [], b""
    for i in ids:
        special = sp.is_control(i) or sp.is_unknown(i)
        if special and skip_special:
            continue
        if sp.is_byte(i):
            pending += bytes([int(sp.id_to_piece(i)[3:5], 16)])
            continue
        if pending:
            parts.append(pending.decode("utf-8", errors="replace"))
            pending = b""
        parts.append(sp.id_to_piece(i).replace("\u2581", " "))
    if pending:
        parts.append(pending.decode("utf-8", errors="replace"))
    s = "".join(parts)
    return s[1:] if s.startswith(" ") else s


# ---------------------------------------------------------------------------------------------------------------------

def write_json(path: str, obj, indent=None) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def build_bpe(lines: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(byte_fallback=False, unk_token=None, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    # Added after training so that, as in Qwen, they take the ids past the base vocabulary.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in
                            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ["<think>", "</think>"]])
    return tok


def bpe_config(tok: Tokenizer) -> dict:
    decoder = {}
    for content in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]:
        decoder[str(tok.token_to_id(content))] = {
            "content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": content.startswith("<|")}
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "bos_token": None,
        "chat_template": QWEN3_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def build_spm(lines: list[str], folder: str) -> None:
    # Trained from an iterator into memory, so that no temporary path ends up in the model's trainer_spec.
    sentences = [part for line in lines for part in line.split("\n") if part.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, model_type="bpe", vocab_size=400,
        character_coverage=0.98, byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, add_dummy_prefix=True, normalization_rule_name="identity", unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, num_threads=1, shuffle_input_sentence=False, minloglevel=2)
    with open(os.path.join(folder, "tokenizer.model"), "wb") as f:
        f.write(model.getvalue())


def spm_config() -> dict:
    decoder = {str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                        "special": True} for i, c in enumerate(SPM_SPECIALS)}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "bos_token": "<s>",
        "chat_template": MISTRAL_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": 32768,
        "pad_token": None,
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
    }


CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "What is 2+2?"}],
    "system_user": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"}],
    "multi_turn_thinking": [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "First question?"},
        {"role": "assistant", "content": "<think>\nLet me think about it.\n</think>\n\nFirst answer."},
        {"role": "user", "content": "Second question? /no_think"},
        {"role": "assistant", "content": "<think>\n\n</think>\n\nSecond answer."},
        {"role": "user", "content": "Third question?"},
    ],
    "thinking_after_last_query": [
        {"role": "user", "content": "Solve it."},
        {"role": "assistant", "content": "<think>\nstep one\nstep two\n</think>\n\nDone."},
    ],
    "assistant_last_without_thinking": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ],
    "tool_results": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "<think>need a tool</think>I'll check."},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "{\"sky\": \"clear\"}"},
        {"role": "assistant", "content": "<think>\nIt is sunny.\n</think>\n\nSunny, 21 C."},
    ],
    "late_system_and_unicode": [
        {"role": "user", "content": "  spaced   \n"},
        {"role": "system", "content": "New rules: answer in 中文 😀."},
        {"role": "user", "content": "好的？"},
    ],
}

# Conversations for the orders of roles the GLM and DeepSeek templates treat specially: several system messages (some
# late), runs of tool results, a user message after tool results, answers that follow answers, </think> in odd places.
EDGE_CONVERSATIONS = {
    "systems_and_tools": [
        {"role": "system", "content": "Rule one."},
        {"role": "user", "content": "Look it up."},
        {"role": "assistant", "content": "<think>plan</think>Calling."},
        {"role": "tool", "content": "r1"},
        {"role": "tool", "content": "r2"},
        {"role": "assistant", "content": "Found: <think>odd</think>it."},
        {"role": "system", "content": "Rule two."},
        {"role": "user", "content": "And then?"},
        {"role": "tool", "content": "r3"},
    ],
    "user_after_tool": [
        {"role": "user", "content": "q"},
        {"role": "tool", "content": "t"},
        {"role": "user", "content": "q2 /nothink"},
    ],
    "consecutive_answers": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\na\n</think>\n\nOne."},
        {"role": "assistant", "content": "Two </think> three </think> four"},
        {"role": "user", "content": "  Go on  "},
    ],
}

def random_conversations(n: int, seed: int) -> dict:
    """Seeded conversations of random roles and contents built from the pieces the templates treat specially
    (<think>, </think>, newlines at either end, /nothink, /no_think, spaces, non-ASCII), to look for a rule the
    hand-written conversations above miss."""
    rng = random.Random(seed)
    pieces = ["<think>", "</think>", "\n", "\n\n", " ", "a", "bc", "中文", "😀", "/nothink", "/no_think", "x y"]
    out = {}
    for i in range(n):
        messages = []
        for _ in range(rng.randint(1, 6)):
            role = rng.choice(["user", "user", "assistant", "assistant", "system", "tool"])
            content = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
            messages.append({"role": role, "content": content})
        out[f"random_{i}"] = messages
    return out


RANDOM_CONVERSATIONS = random_conversations(24, SEED + 1)

MISTRAL_CONVERSATIONS = {
    "single_user": CONVERSATIONS["single_user"],
    "system_user": CONVERSATIONS["system_user"],
    "multi_turn": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  Hello  "},
        {"role": "assistant", "content": " Hi! "},
        {"role": "user", "content": "Tell me a joke.\n"},
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": "Please?"},
    ],
}


def load_hf_spm():
    """transformers' tokenizer on spm/, or None when this environment cannot build it (no protobuf package)."""
    from transformers import AutoTokenizer
    import transformers.utils.logging as hf_logging
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(os.path.join(OUT, "spm"))
    except Exception:  # noqa: BLE001 - any failure just means "not available here"
        return None
    finally:
        hf_logging.set_verbosity(verbosity)


def render_chats() -> list[dict]:
    from transformers import AutoTokenizer
    bpe = AutoTokenizer.from_pretrained(os.path.join(OUT, "bpe"))
    sp = load_hf_spm()
    if sp is None:
        # transformers could not build a tokenizer from tokenizer.model (it needs the protobuf package for that).
        # apply_chat_template only needs the template and the special tokens, so render with the spm folder's
        # template, bos and eos through the BPE tokenizer object (explicit kwargs override its own special tokens).
        with open(os.path.join(OUT, "spm", "tokenizer_config.json"), encoding="utf-8") as f:
            spm_cfg = json.load(f)
        sp = bpe
        sp_overrides = {"chat_template": spm_cfg["chat_template"], "bos_token": spm_cfg["bos_token"],
                        "eos_token": spm_cfg["eos_token"]}
    else:
        sp_overrides = {}
    cases = []

    def add(name, tok, folder, template_name, template, messages, gen, thinking, thinking_kwarg="enable_thinking",
            template_messages=None):
        kwargs = dict(sp_overrides) if folder == "spm" else {}
        if thinking is not None:
            kwargs[thinking_kwarg] = thinking  # recorded as "enable_thinking", the engine's name for the switch
        if template is not None:
            kwargs["chat_template"] = template
        text = tok.apply_chat_template(template_messages or messages, tokenize=False, add_generation_prompt=gen,
                                       **kwargs)
        case = {"name": name, "folder": folder, "template": template_name, "messages": messages,
                "add_generation_prompt": gen, "expected": text}
        if thinking is not None:
            case["enable_thinking"] = thinking
        cases.append(case)

    for conv_name, messages in CONVERSATIONS.items():
        for gen in (True, False):
            for thinking in (None, True, False):
                tag = {None: "absent", True: "on", False: "off"}[thinking]
                add(f"qwen3/{conv_name}/gen={int(gen)}/thinking={tag}", bpe, "bpe", None, None, messages, gen,
                    thinking)
        add(f"qwen3_prefill/{conv_name}", bpe, "bpe", "qwen3_thinking_prefill", QWEN3_THINKING_PREFILL_TEMPLATE,
            messages, True, None)
        if all(m["role"] in ("system", "user", "assistant") for m in messages):
            for gen in (True, False):
                add(f"chatml/{conv_name}/gen={int(gen)}", bpe, "bpe", "chatml", CHATML_TEMPLATE, messages, gen, None)
            add(f"chatml_no_system/{conv_name}", bpe, "bpe", "chatml_no_system", CHATML_NO_SYSTEM_TEMPLATE, messages,
                True, None)
    for conv_name, messages in MISTRAL_CONVERSATIONS.items():
        for gen in (True, False):
            add(f"mistral/{conv_name}/gen={int(gen)}", sp, "spm", None, None, messages, gen, None)
        add(f"llama2/{conv_name}", sp, "spm", "llama2", LLAMA2_TEMPLATE, messages, True, None)
    # DeepSeek-V2: any order of roles (a late system message, a tool turn it leaves out), BOS and EOS.
    for conv_name in ("single_user", "system_user", "late_system_and_unicode", "tool_results"):
        for gen in (True, False):
            add(f"deepseek_v2/{conv_name}/gen={int(gen)}", sp, "spm", "deepseek_v2", DEEPSEEK_V2_TEMPLATE,
                CONVERSATIONS[conv_name], gen, None)
    add("deepseek_v2/multi_turn", sp, "spm", "deepseek_v2", DEEPSEEK_V2_TEMPLATE, MISTRAL_CONVERSATIONS["multi_turn"],
        True, None)
    # GLM-4.5 and the DeepSeek-V3 family, on every conversation. DeepSeek-V3.1 names its switch `thinking`.
    deepseek = {"deepseek_v3": DEEPSEEK_V3_TEMPLATE, "deepseek_v3_0324": DEEPSEEK_V3_0324_TEMPLATE,
                "deepseek_r1": DEEPSEEK_R1_TEMPLATE}
    for conv_name, messages in {**CONVERSATIONS, **EDGE_CONVERSATIONS, **RANDOM_CONVERSATIONS}.items():
        for gen in (True, False):
            tags = {None: "absent", True: "on", False: "off"}
            for thinking in (None, True, False):
                add(f"glm45/{conv_name}/gen={int(gen)}/thinking={tags[thinking]}", bpe, "bpe", "glm45", GLM45_TEMPLATE,
                    messages, gen, thinking)
                add(f"deepseek_v3_1/{conv_name}/gen={int(gen)}/thinking={tags[thinking]}", sp, "spm", "deepseek_v3_1",
                    DEEPSEEK_V3_1_TEMPLATE, messages, gen, thinking, thinking_kwarg="thinking")
            for name, template in deepseek.items():
                add(f"{name}/{conv_name}/gen={int(gen)}", sp, "spm", name, template, messages, gen, None)
            add(f"ernie45/{conv_name}/gen={int(gen)}", sp, "spm", "ernie45", ERNIE45_TEMPLATE, messages, gen, None)
            add(f"kimi_k2/{conv_name}/gen={int(gen)}", bpe, "bpe", "kimi_k2", KIMI_K2_TEMPLATE, messages, gen, None)
            add(f"kimi_k2_thinking/{conv_name}/gen={int(gen)}", bpe, "bpe", "kimi_k2_thinking",
                KIMI_K2_THINKING_TEMPLATE, messages, gen, None, template_messages=kimi_messages(messages))
            if all(m["role"] != "tool" for m in messages):  # the template raises on a tool result without a call
                add(f"minimax_m2/{conv_name}/gen={int(gen)}", bpe, "bpe", "minimax_m2", MINIMAX_M2_TEMPLATE,
                    messages, gen, None)
                with fixed_date(*HARMONY_DATE):  # the real template raises there too
                    add(f"harmony/{conv_name}/gen={int(gen)}", bpe, "bpe", "harmony", HARMONY_TEMPLATE, messages, gen,
                        None)
                cases[-1]["current_date"] = "%04d-%02d-%02d" % HARMONY_DATE
    return cases


class fixed_date:
    """Within it, transformers' strftime_now (datetime.now().strftime in its chat-template module) sees that day."""

    def __init__(self, year: int, month: int, day: int):
        import datetime as dt
        day_ = dt.datetime(year, month, day, 12, 0, 0)

        class Fixed(dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return day_

        self.fixed = Fixed

    def __enter__(self):
        import transformers.utils.chat_template_utils as ctu
        self.saved = ctu.datetime
        ctu.datetime = self.fixed

    def __exit__(self, *exc):
        import transformers.utils.chat_template_utils as ctu
        ctu.datetime = self.saved


def main() -> int:
    rng = random.Random(SEED)
    lines = make_training_corpus(rng)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for sub in ("bpe", "bpe_merges_strings", "spm"):
        os.makedirs(os.path.join(OUT, sub))

    # --- byte-level BPE ---
    tok = build_bpe(lines)
    bpe_json = os.path.join(OUT, "bpe", "tokenizer.json")
    tok.save(bpe_json, pretty=False)
    with open(bpe_json, encoding="utf-8") as f:
        data = json.load(f)
    merges = data["model"]["merges"]
    assert merges and isinstance(merges[0], list), "tokenizers is expected to write merges as arrays"
    write_json(bpe_json, data)
    data["model"]["merges"] = [" ".join(pair) for pair in merges]
    write_json(os.path.join(OUT, "bpe_merges_strings", "tokenizer.json"), data)
    config = bpe_config(tok)
    for sub in ("bpe", "bpe_merges_strings"):
        write_json(os.path.join(OUT, sub, "tokenizer_config.json"), config, indent=2)
    strings_tok = Tokenizer.from_file(os.path.join(OUT, "bpe_merges_strings", "tokenizer.json"))

    # --- SentencePiece ---
    build_spm(lines, os.path.join(OUT, "spm"))
    write_json(os.path.join(OUT, "spm", "tokenizer_config.json"), spm_config(), indent=2)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, "spm", "tokenizer.model"))
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2)

    hf_sp = load_hf_spm()
    if hf_sp is None:
        print("note: transformers cannot load spm/ here (protobuf missing); spm ids not cross-checked", file=sys.stderr)

    bpe_tok = Tokenizer.from_file(bpe_json)
    entries = []
    for text in CORPUS:
        ids = bpe_tok.encode(text).ids
        assert strings_tok.encode(text).ids == ids
        sp_ids = spm_encode(sp, text)
        sp_plain = [i for i in sp_ids if not (sp.is_control(i) or sp.is_unknown(i))]
        assert spm_decode(sp, sp_ids, True) == sp.decode(sp_plain), text
        if hf_sp is not None and not any(s in text for s in SPM_SPECIALS):
            hf_ids = hf_sp.encode(text)
            if hf_ids != sp_ids:
                print(f"note: transformers LlamaTokenizer ids differ from sentencepiece on {text!r}", file=sys.stderr)
            for skip in (False, True):
                assert hf_sp.decode(sp_ids, skip_special_tokens=skip) == spm_decode(sp, sp_ids, skip), text
        entries.append({
            "text": text,
            "nfc": unicodedata.normalize("NFC", text) != text,
            "bpe": {"ids": ids, "decoded": bpe_tok.decode(ids, skip_special_tokens=False),
                    "decoded_skip_special": bpe_tok.decode(ids, skip_special_tokens=True)},
            "spm": {"ids": sp_ids, "ids_no_bos": spm_encode(sp, text, add_bos=False),
                    "decoded": spm_decode(sp, sp_ids, False),
                    "decoded_skip_special": spm_decode(sp, sp_ids, True)},
        })
    expected = {
        "bpe_size": bpe_tok.get_vocab_size(with_added_tokens=True),
        "spm_size": sp.get_piece_size(),
        "bpe_special_ids": {t: bpe_tok.token_to_id(t) for t in
                            ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]},
        "cases": entries,
    }
    write_json(os.path.join(OUT, "expected.json"), expected, indent=1)

    # --- chat templates ---
    templates = {"qwen3_thinking_prefill": QWEN3_THINKING_PREFILL_TEMPLATE, "chatml": CHATML_TEMPLATE,
                 "chatml_no_system": CHATML_NO_SYSTEM_TEMPLATE, "llama2": LLAMA2_TEMPLATE,
                 "deepseek_v2": DEEPSEEK_V2_TEMPLATE, "glm45": GLM45_TEMPLATE, "deepseek_v3": DEEPSEEK_V3_TEMPLATE,
                 "deepseek_v3_0324": DEEPSEEK_V3_0324_TEMPLATE, "deepseek_r1": DEEPSEEK_R1_TEMPLATE,
                 "deepseek_v3_1": DEEPSEEK_V3_1_TEMPLATE, "minimax_m2": MINIMAX_M2_TEMPLATE,
                 "ernie45": ERNIE45_TEMPLATE, "kimi_k2": KIMI_K2_TEMPLATE,
                 "kimi_k2_thinking": KIMI_K2_THINKING_TEMPLATE, "harmony": HARMONY_TEMPLATE}
    write_json(os.path.join(OUT, "chat_expected.json"),
               {"templates": templates, "bos_token": "<s>", "eos_token": "</s>", "cases": render_chats()}, indent=1)

    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total} bytes); bpe size {expected['bpe_size']}, spm size {expected['spm_size']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
