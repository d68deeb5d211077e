#!/usr/bin/env python3
"""GGUF test files, and transformers reference outputs for them.

Dev-time only: CI never runs this. Its outputs under tests/data/models/ are committed.

    python3 tests/make_gguf_goldens.py [CASE ...]   (all cases when none is named)

The cases:

* `<case>/model.gguf` for the F32 golden checkpoints of make_goldens.py (qwen3_moe, qwen3_dense,
  qwen2_moe, olmoe, mixtral, llama, deepseek_v2, minimax_m2, glm4_moe, ernie4_5_moe): the same weights, written under llama.cpp's names
  and layout (SPECS.md §11.2): dims innermost first, experts stacked per layer, Llama/Mixtral q and k
  rows permuted for adjacent-pair RoPE, Qwen2-MoE's shared-expert gate as a vector, deepseek_v2 in
  deepseek2's layout before April 2025 (attn_kv_b whole, per-head widths in key_length). Their
  reference is the case's reference.safetensors (transformers on the safetensors checkpoint). Where transformers reads
  that architecture from GGUF, the script also loads the GGUF with transformers and checks that it
  gives the same logits, so the layout is checked by an implementation other than ours.
  qwen3_moe's file also carries its tokenizer (tokenizer.ggml.*, pre "qwen2") and chat template.

* `qwen3_moe_q4_k_m/`: a new Qwen3-MoE of widths that are multiples of 256, stored the way a Q4_K_M
  file is (Q4_K mostly, Q6_K for output, attn_v and ffn_down_exps, with Q5_K and Q8_0 in places, F32
  norms and routers). Its reference.safetensors comes from transformers loading that GGUF file (which
  dequantizes with gguf-py, the reference implementation of the formats).

* `gpt_oss_gguf/`: a GPT-OSS with its experts in ggml's MXFP4 (type 39), as gpt-oss GGUF files hold
  them; its reference is transformers on the same model with the experts at their MXFP4 values.

* `deepseek_v3_gguf/`: the deepseek_v3 golden's weights in today's deepseek2 layout (attn_k_b and
  attn_v_b, the *_mla keys, expert groups, a nextn block), with its own reference (make_deepseek_v3_gguf
  says why).

* `qwen3_moe/split/` (case `split`): qwen3_moe/model.gguf split into three parts by gguf-py's writer
  (split_max_tensors), named and keyed as llama.cpp's gguf-split does: model-00001-of-00003.gguf holds
  the metadata (tokenizer and chat template included), every part split.no/split.count/
  split.tensors.count. Its reference is qwen3_moe's.

The K-quant encoders below are ours (gguf-py only decodes K-quants); what they produce is decoded by
gguf-py, and that decoding is the reference.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file

import gguf
from gguf import GGMLQuantizationType as Q

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens as mg  # noqa: E402

MODELS = mg.OUT_ROOT


# ----------------------------------------------------------------------------------------------
# quantizers (block layouts: SPECS.md §11.2, gguf-py quants.py)


def f16_bytes(x):
    return np.asarray(x, dtype=np.float16).reshape(-1, 1).view(np.uint8)


def pack_k_scales(sc, m):
    """8 six-bit scales and mins per block → the 12 packed bytes of Q4_K / Q5_K."""
    n = sc.shape[0]
    q = np.zeros((n, 12), dtype=np.uint8)
    for j in range(4):
        q[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        q[:, j + 4] = (m[:, j] & 63) | ((m[:, j + 4] >> 4) << 6)
        q[:, j + 8] = (sc[:, j + 4] & 0xF) | ((m[:, j + 4] & 0xF) << 4)
    return q


def k_scales_mins(x, levels):
    """x: [n, 8, 32] → d, dmin (f16-rounded), scales and mins (6-bit) and codes in [0, levels]."""
    lo = np.minimum(x.min(-1), 0)
    step = (x.max(-1) - lo) / levels
    d = np.float16(step.max(-1) / 63).astype(np.float32)
    dmin = np.float16((-lo).max(-1) / 63).astype(np.float32)
    d = np.where(d == 0, 1e-8, d)
    dmin = np.where(dmin == 0, 1e-8, dmin)
    sc = np.clip(np.round(step / d[:, None]), 1, 63).astype(np.uint8)
    m = np.clip(np.round(-lo / dmin[:, None]), 0, 63).astype(np.uint8)
    scale = (d[:, None] * sc)[..., None]
    offset = (dmin[:, None] * m)[..., None]
    q = np.clip(np.round((x + offset) / scale), 0, levels).astype(np.uint8)
    return d, dmin, sc, m, q


def quantize_q4_k(x):
    x = x.reshape(-1, 8, 32).astype(np.float32)
    d, dmin, sc, m, q = k_scales_mins(x, 15)
    q = q.reshape(-1, 4, 2, 32)  # chunk c: sub-blocks 2c (low nibbles) and 2c + 1 (high nibbles)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([f16_bytes(d), f16_bytes(dmin), pack_k_scales(sc, m), qs], axis=1)


def quantize_q5_k(x):
    x = x.reshape(-1, 8, 32).astype(np.float32)
    d, dmin, sc, m, q = k_scales_mins(x, 31)
    qh = np.zeros((q.shape[0], 32), dtype=np.uint8)
    for j in range(8):
        qh |= ((q[:, j] >> 4) & 1) << j
    low = (q & 0xF).reshape(-1, 4, 2, 32)
    qs = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([f16_bytes(d), f16_bytes(dmin), pack_k_scales(sc, m), qh, qs], axis=1)


def quantize_q6_k(x):
    x = x.reshape(-1, 16, 16).astype(np.float32)
    amax = np.abs(x).max(-1)
    step = amax / 31
    d = np.float16(step.max(-1) / 127).astype(np.float32)
    d = np.where(d == 0, 1e-8, d)
    sc = np.clip(np.round(step / d[:, None]), 1, 127).astype(np.int8)
    q = np.clip(np.round(x / (d[:, None] * sc)[..., None]), -32, 31).astype(np.int16) + 32
    q = q.reshape(-1, 256).astype(np.uint8)
    ql = np.zeros((q.shape[0], 128), dtype=np.uint8)
    qh = np.zeros((q.shape[0], 64), dtype=np.uint8)
    for h in range(2):
        v = q[:, 128 * h: 128 * (h + 1)]
        for part in range(4):
            vals = v[:, 32 * part: 32 * (part + 1)]
            lo_half = ql[:, 64 * h + 32 * (part & 1): 64 * h + 32 * (part & 1) + 32]
            lo_half |= (vals & 0xF) << (4 * (part >> 1))
            qh[:, 32 * h: 32 * h + 32] |= (vals >> 4) << (2 * part)
    return np.concatenate([ql, qh, sc.view(np.uint8), f16_bytes(d)], axis=1)


ENCODERS = {Q.Q4_K: quantize_q4_k, Q.Q5_K: quantize_q5_k, Q.Q6_K: quantize_q6_k}


def quantize(w, qtype):
    """A [rows, cols] (or stacked [E, rows, cols]) f32 array → uint8 blocks of that shape's rows."""
    if qtype == Q.F32:
        return w.astype(np.float32)
    if qtype == Q.Q8_0:
        return gguf.quants.quantize(w.astype(np.float32), qtype)
    rows = w.reshape(-1, w.shape[-1])
    if qtype == Q.MXFP4:  # the values must already be MXFP4's (make_gpt_oss_gguf): the round trip is exact
        out = ggml_mxfp4_bytes(rows)
        assert np.array_equal(gguf.quants.dequantize(out, qtype).reshape(rows.shape), rows), "not MXFP4 values"
        return out.reshape(*w.shape[:-1], -1)
    blocks = ENCODERS[qtype](rows.reshape(-1, 256))
    out = blocks.reshape(rows.shape[0], -1)
    back = gguf.quants.dequantize(out, qtype).reshape(rows.shape)
    rel = np.sqrt(((back - rows) ** 2).mean() / (rows ** 2).mean())
    assert rel < {Q.Q4_K: 0.15, Q.Q5_K: 0.08, Q.Q6_K: 0.04}[qtype], f"{qtype.name} round trip error {rel}"
    return out.reshape(*w.shape[:-1], -1)


# ----------------------------------------------------------------------------------------------
# Hugging Face checkpoint → llama.cpp names and layout


def permute_for_pairs(w, n_head):
    """llama.cpp's converter reorders each head's rows of q_proj / k_proj from rotate-half pairs
    (j, j + d/2) to adjacent pairs (2i, 2i + 1)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def mla_tensors(out, sd, cfg, p, b, split_kv_b):
    """DeepSeek's attention under deepseek2's names. kv_b_proj is written whole (attn_kv_b, files before
    April 2025) or as llama.cpp's converter writes it since: per head, k_b transposed [H, kv_lora, nope]
    and v_b [H, v, kv_lora]."""
    a = p + "self_attn."
    for hf, gg in (("q_proj", "attn_q"), ("q_a_proj", "attn_q_a"), ("q_b_proj", "attn_q_b"),
                   ("kv_a_proj_with_mqa", "attn_kv_a_mqa")):
        for kind in ("weight", "bias"):
            if a + f"{hf}.{kind}" in sd:
                out[b + f"{gg}.{kind}"] = sd[a + f"{hf}.{kind}"]
    for hf, gg in (("q_a_layernorm", "attn_q_a_norm"), ("kv_a_layernorm", "attn_kv_a_norm")):
        if a + f"{hf}.weight" in sd:
            out[b + f"{gg}.weight"] = sd[a + f"{hf}.weight"]
    kv_b = sd[a + "kv_b_proj.weight"]
    if not split_kv_b:
        out[b + "attn_kv_b.weight"] = kv_b
        return
    n_head, nope, v = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["v_head_dim"]
    per_head = kv_b.reshape(n_head, nope + v, kv_b.shape[-1])
    out[b + "attn_k_b.weight"] = np.ascontiguousarray(per_head[:, :nope].transpose(0, 2, 1))
    out[b + "attn_v_b.weight"] = np.ascontiguousarray(per_head[:, nope:])


def gguf_tensors(sd, cfg, arch, split_kv_b=False):
    """sd: HF name → f32 array. Returns llama.cpp name → f32 array (PyTorch order)."""
    out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"]}
    if "lm_head.weight" in sd:
        out["output.weight"] = sd["lm_head.weight"]
    n_layers = cfg["num_hidden_layers"]
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    for L in range(n_layers):
        p = f"model.layers.{L}."
        b = f"blk.{L}."
        out[b + "attn_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[b + "ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("o_proj", "attn_output")):
            for kind in ("weight", "bias"):
                if p + f"self_attn.{hf}.{kind}" in sd:
                    w = sd[p + f"self_attn.{hf}.{kind}"]
                    if arch == "llama" and hf in ("q_proj", "k_proj"):
                        w = permute_for_pairs(w, n_head if hf == "q_proj" else n_kv)
                    out[b + f"{gg}.{kind}"] = w
        if p + "self_attn.kv_b_proj.weight" in sd:
            mla_tensors(out, sd, cfg, p, b, split_kv_b)
        for hf, gg in (("q_norm", "attn_q_norm"), ("k_norm", "attn_k_norm")):
            if p + f"self_attn.{hf}.weight" in sd:
                out[b + f"{gg}.weight"] = sd[p + f"self_attn.{hf}.weight"]
        moe = p + "mlp.gate.weight" in sd or p + "block_sparse_moe.gate.weight" in sd
        if moe:
            pm = p + ("block_sparse_moe." if p + "block_sparse_moe.gate.weight" in sd else "mlp.")
            out[b + "ffn_gate_inp.weight"] = sd[pm + "gate.weight"]
            # DeepSeek's, MiniMax's, ERNIE-4.5's (stored [1, E], kept so as the converter does)
            for bias in ("gate.e_score_correction_bias", "e_score_correction_bias", "moe_statics.e_score_correction_bias"):
                if pm + bias in sd:
                    out[b + "exp_probs_b.bias"] = sd[pm + bias]
            names = ("w1", "w3", "w2") if "block_sparse_moe" in pm else ("gate_proj", "up_proj", "down_proj")
            n_exp = sum(1 for k in sd if k.startswith(pm + "experts.") and k.endswith(names[0] + ".weight"))
            for hf, gg in zip(names, ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")):
                out[b + gg + ".weight"] = np.stack([sd[pm + f"experts.{e}.{hf}.weight"] for e in range(n_exp)])
            if pm + "shared_experts.gate_proj.weight" in sd:  # DeepSeek's ungated shared experts
                for hf, gg in (("gate_proj", "ffn_gate_shexp"), ("up_proj", "ffn_up_shexp"), ("down_proj", "ffn_down_shexp")):
                    out[b + gg + ".weight"] = sd[pm + f"shared_experts.{hf}.weight"]
            if pm + "shared_expert.gate_proj.weight" in sd:
                for hf, gg in (("gate_proj", "ffn_gate_shexp"), ("up_proj", "ffn_up_shexp"), ("down_proj", "ffn_down_shexp")):
                    out[b + gg + ".weight"] = sd[pm + f"shared_expert.{hf}.weight"]
                out[b + "ffn_gate_inp_shexp.weight"] = sd[pm + "shared_expert_gate.weight"].reshape(-1)
        else:
            for hf, gg in (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down")):
                out[b + gg + ".weight"] = sd[p + f"mlp.{hf}.weight"]
    return out


GGUF_ARCH = {"qwen3_moe": "qwen3moe", "qwen3": "qwen3", "qwen2_moe": "qwen2moe", "olmoe": "olmoe",
             "mixtral": "llama", "llama": "llama", "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2",
             "minimax_m2": "minimax-m2", "glm4_moe": "glm4moe", "ernie4_5_moe": "ernie4_5-moe"}


def write_deepseek2_metadata(w, cfg, vocab, layers, mqa_form):
    """deepseek2's keys as llama.cpp's converter writes them: since April 2025 (mqa_form) MLA runs as MQA
    over the latent, so key_length and value_length describe the latent and the per-head widths are the
    *_mla keys; before, key_length and value_length were the per-head widths."""
    a = "deepseek2"
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    w.add_uint32(f"{a}.block_count", layers)
    w.add_uint32(f"{a}.context_length", cfg["max_position_embeddings"])
    w.add_uint32(f"{a}.embedding_length", cfg["hidden_size"])
    w.add_uint32(f"{a}.feed_forward_length", cfg["intermediate_size"])
    w.add_uint32(f"{a}.attention.head_count", cfg["num_attention_heads"])
    w.add_uint32(f"{a}.attention.head_count_kv", 1 if mqa_form else cfg["num_attention_heads"])
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"])
    w.add_float32(f"{a}.rope.freq_base", float(cfg.get("rope_theta") or rope.get("rope_theta")))
    w.add_uint32(f"{a}.vocab_size", vocab)
    if cfg.get("q_lora_rank"):
        w.add_uint32(f"{a}.attention.q_lora_rank", cfg["q_lora_rank"])
    w.add_uint32(f"{a}.attention.kv_lora_rank", cfg["kv_lora_rank"])
    if mqa_form:
        w.add_uint32(f"{a}.attention.key_length", cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"])
        w.add_uint32(f"{a}.attention.value_length", cfg["kv_lora_rank"])
        w.add_uint32(f"{a}.attention.key_length_mla", cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"])
        w.add_uint32(f"{a}.attention.value_length_mla", cfg["v_head_dim"])
    else:
        w.add_uint32(f"{a}.attention.key_length", cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"])
        w.add_uint32(f"{a}.attention.value_length", cfg["v_head_dim"])
    w.add_uint32(f"{a}.rope.dimension_count", cfg["qk_rope_head_dim"])
    w.add_uint32(f"{a}.leading_dense_block_count", cfg["first_k_dense_replace"])
    w.add_uint32(f"{a}.expert_count", cfg["n_routed_experts"])
    w.add_uint32(f"{a}.expert_used_count", cfg["num_experts_per_tok"])
    w.add_uint32(f"{a}.expert_feed_forward_length", cfg["moe_intermediate_size"])
    w.add_uint32(f"{a}.expert_shared_count", cfg["n_shared_experts"])
    w.add_float32(f"{a}.expert_weights_scale", cfg["routed_scaling_factor"])
    w.add_bool(f"{a}.expert_weights_norm", bool(cfg["norm_topk_prob"]))
    sigmoid = cfg["model_type"] == "deepseek_v3"
    w.add_uint32(f"{a}.expert_gating_func", 2 if sigmoid else 1)
    if sigmoid or cfg.get("topk_method") == "group_limited_greedy":
        w.add_uint32(f"{a}.expert_group_count", cfg["n_group"])
        w.add_uint32(f"{a}.expert_group_used_count", cfg["topk_group"])
    if rope.get("rope_type", rope.get("type")) == "yarn":
        w.add_string(f"{a}.rope.scaling.type", "yarn")
        w.add_float32(f"{a}.rope.scaling.factor", rope["factor"])
        w.add_uint32(f"{a}.rope.scaling.original_context_length", rope["original_max_position_embeddings"])
        w.add_float32(f"{a}.rope.scaling.yarn_log_multiplier", 0.1 * rope["mscale_all_dim"])
    if layers > cfg["num_hidden_layers"]:
        w.add_uint32(f"{a}.nextn_predict_layers", layers - cfg["num_hidden_layers"])


def write_metadata(w, cfg, arch, vocab, layers=None, mqa_form=False):
    if arch == "deepseek2":
        write_deepseek2_metadata(w, cfg, vocab, layers or cfg["num_hidden_layers"], mqa_form)
        return
    if arch == "gpt-oss":
        write_gpt_oss_metadata(w, cfg, vocab)
        return
    a = arch
    w.add_uint32(f"{a}.block_count", layers or cfg["num_hidden_layers"])
    if layers and layers > cfg["num_hidden_layers"]:
        w.add_uint32(f"{a}.nextn_predict_layers", layers - cfg["num_hidden_layers"])
    w.add_uint32(f"{a}.context_length", cfg.get("max_position_embeddings", 256))
    w.add_uint32(f"{a}.embedding_length", cfg["hidden_size"])
    n_head = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    w.add_uint32(f"{a}.attention.head_count", n_head)
    w.add_uint32(f"{a}.attention.head_count_kv", cfg.get("num_key_value_heads") or n_head)
    w.add_uint32(f"{a}.attention.key_length", head_dim)
    w.add_uint32(f"{a}.attention.value_length", head_dim)
    # MiniMax-M2 and GLM-4.5 rotate part of each head.
    partial = (cfg.get("rope_parameters") or {}).get("partial_rotary_factor") or cfg.get("partial_rotary_factor") or 1.0
    w.add_uint32(f"{a}.rope.dimension_count", cfg.get("rotary_dim") or int(head_dim * partial))
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"])
    theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta")
    w.add_float32(f"{a}.rope.freq_base", float(theta))
    w.add_uint32(f"{a}.vocab_size", vocab)
    if cfg.get("intermediate_size"):
        w.add_uint32(f"{a}.feed_forward_length", cfg["intermediate_size"])
    if cfg["model_type"] == "minimax_m2":
        w.add_uint32(f"{a}.expert_feed_forward_length", cfg["intermediate_size"])
        w.add_uint32(f"{a}.expert_gating_func", 2)
        w.add_bool(f"{a}.expert_weights_norm", True)
    if cfg["model_type"] == "glm4_moe":  # DeepSeek's MoE keys
        w.add_uint32(f"{a}.expert_shared_count", cfg["n_shared_experts"])
        w.add_uint32(f"{a}.leading_dense_block_count", cfg["first_k_dense_replace"])
        w.add_float32(f"{a}.expert_weights_scale", cfg["routed_scaling_factor"])
        w.add_bool(f"{a}.expert_weights_norm", bool(cfg["norm_topk_prob"]))
        w.add_uint32(f"{a}.expert_gating_func", 2)
        w.add_uint32(f"{a}.expert_group_count", cfg["n_group"])
        w.add_uint32(f"{a}.expert_group_used_count", cfg["topk_group"])
    if cfg["model_type"] == "ernie4_5_moe":
        # The converter's keys. It writes the shared width as intermediate_size // num_key_value_heads, which
        # is 2 × moe_intermediate_size for the released models but not for this one; llama.cpp sizes the shared
        # tensors by it, so a loadable file states the true width.
        w.add_uint32(f"{a}.expert_count", cfg["moe_num_experts"])
        w.add_uint32(f"{a}.expert_used_count", cfg["moe_k"])
        w.add_uint32(f"{a}.interleave_moe_layer_step", cfg["moe_layer_interval"])
        w.add_uint32(f"{a}.leading_dense_block_count", cfg["moe_layer_start_index"])
        w.add_uint32(f"{a}.expert_feed_forward_length", cfg["moe_intermediate_size"])
        w.add_uint32(f"{a}.expert_shared_count", cfg["moe_num_shared_experts"])
        w.add_uint32(f"{a}.expert_shared_feed_forward_length", cfg["moe_num_shared_experts"] * cfg["moe_intermediate_size"])
    experts = cfg.get("num_experts") or cfg.get("num_local_experts") or cfg.get("n_routed_experts")
    if experts:
        w.add_uint32(f"{a}.expert_count", experts)
        w.add_uint32(f"{a}.expert_used_count", cfg["num_experts_per_tok"])
        if cfg.get("moe_intermediate_size"):
            w.add_uint32(f"{a}.expert_feed_forward_length", cfg["moe_intermediate_size"])
        if cfg.get("shared_expert_intermediate_size"):
            w.add_uint32(f"{a}.expert_shared_feed_forward_length", cfg["shared_expert_intermediate_size"])


def write_tokenizer(w, folder, vocab_rows):
    """tokenizer.json + tokenizer_config.json → tokenizer.ggml.* as llama.cpp's converter writes them:
    every id up to the embedding's rows, padding ids as [PADn] of type UNUSED."""
    tj = json.loads((folder / "tokenizer.json").read_text())
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    tokens = [f"[PAD{i}]" for i in range(vocab_rows)]
    types = [gguf.TokenType.UNUSED] * vocab_rows
    for text, i in tj["model"]["vocab"].items():
        tokens[i], types[i] = text, gguf.TokenType.NORMAL
    for t in tj["added_tokens"]:
        tokens[t["id"]] = t["content"]
        types[t["id"]] = gguf.TokenType.CONTROL if t["special"] else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    ids = {t["content"]: t["id"] for t in tj["added_tokens"]}
    w.add_eos_token_id(ids[tc["eos_token"]])
    w.add_bos_token_id(ids["<|endoftext|>"])  # what llama.cpp's converter sets for Qwen
    w.add_add_bos_token(False)
    w.add_chat_template(tc["chat_template"])


def write_gguf(path, arch, cfg, tensors, types=None, tokenizer_folder=None, layers=None):
    types = types or {}
    w = gguf.GGUFWriter(str(path), arch)
    vocab = tensors["token_embd.weight"].shape[0]
    write_metadata(w, cfg, arch, vocab, layers, mqa_form="blk.0.attn_k_b.weight" in tensors)
    if tokenizer_folder is not None:
        write_tokenizer(w, tokenizer_folder, vocab)
    for name in sorted(tensors):
        qtype = types.get(name, Q.F32)
        data = quantize(np.ascontiguousarray(tensors[name]), qtype)
        w.add_tensor(name, data, raw_dtype=qtype if qtype != Q.F32 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def transformers_gguf_logits(folder, filename, overrides, prompt):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=torch.float32, attn_implementation="eager", **overrides)
    model.eval()
    with torch.no_grad():
        return model, model(input_ids=torch.tensor(prompt)[None, :], use_cache=False).logits[0].float().numpy()


# transformers' GGUF reader maps only some metadata keys to its config (no head_dim for qwen3, no expert
# width for qwen3_moe, ...) and leaves the rest at its class defaults. Those settings are passed as the
# checkpoint has them; llama.cpp reads the same keys from the file (and renormalises qwen3moe's top-k).
UNMAPPED_KEYS = ("head_dim", "moe_intermediate_size", "norm_topk_prob", "shared_expert_intermediate_size",
                 "decoder_sparse_step", "mlp_only_layers", "tie_word_embeddings", "qkv_bias")


def overrides_for(cfg):
    return {k: cfg[k] for k in UNMAPPED_KEYS if cfg.get(k) is not None}


TRANSFORMERS_READS = {"qwen3_moe", "qwen3", "qwen2_moe", "llama", "minimax_m2"}  # not mixtral, olmoe, deepseek


def convert_golden(case):
    folder = MODELS / case
    cfg = json.loads((folder / "config.json").read_text())
    sd = {k: v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}
    arch = GGUF_ARCH[cfg["model_type"]]
    tensors = gguf_tensors(sd, cfg, arch)
    layers = None
    if arch == "glm4moe":  # llama.cpp stores GLM-4.5's pre-MLP norm as post_attention_norm, and its nextn block
        for name in [n for n in tensors if n.endswith("ffn_norm.weight")]:
            tensors[name.replace("ffn_norm", "post_attention_norm")] = tensors.pop(name)
        layers = add_nextn_block(tensors, cfg)
    path = folder / "model.gguf"
    write_gguf(path, arch, cfg, tensors, tokenizer_folder=folder if (folder / "tokenizer.json").exists() else None,
               layers=layers)
    ref = load_file(str(folder / "reference.safetensors"))
    note = "not read by transformers"
    if cfg["model_type"] in TRANSFORMERS_READS:
        _, logits = transformers_gguf_logits(folder, "model.gguf", overrides_for(cfg), ref["prompt_ids"].tolist())
        diff = float(np.abs(logits - ref["logits"]).max())
        assert diff < 1e-4 * float(np.abs(ref["logits"]).max()), f"{case}: transformers on the GGUF differs by {diff}"
        note = f"transformers on the GGUF matches the reference (max diff {diff:.1e})"
    print(f"{case}/model.gguf: {path.stat().st_size} bytes; {note}")


# A Qwen3-MoE whose widths are multiples of 256, so every matrix can take K-quants.
Q4KM_CASE = dict(
    name="qwen3_moe_q4_k_m",
    family="qwen3_moe",
    init_std=0.15,
    config_style="transformers",
    config=dict(
        vocab_size=mg.VOCAB, hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=64, intermediate_size=256, moe_intermediate_size=256, num_experts=8, num_experts_per_tok=3,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-6,
        rope_parameters=mg.rope(1e6), max_position_embeddings=256, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=510, pad_token_id=511,
    ),
)


def q4_k_m_types(names):
    """Q4_K_M's choices, with Q5_K and Q8_0 in layer 1 so that every decoder runs."""
    t = {}
    for n in names:
        if n.endswith("norm.weight") or n.endswith("ffn_gate_inp.weight"):
            t[n] = Q.F32
        elif n == "output.weight" or n.endswith(("attn_v.weight", "ffn_down_exps.weight")):
            t[n] = Q.Q6_K
        else:
            t[n] = Q.Q4_K
    t["blk.1.attn_v.weight"] = Q.Q5_K
    t["blk.1.attn_k.weight"] = Q.Q8_0
    t["blk.1.ffn_down_exps.weight"] = Q.Q5_K
    return t


def publish_case(work, final, ref, meta):
    """Saves the reference next to the case's files in `work` and moves them to `final` (tests/data/models/...),
    keeping the committed reference's bytes when its content is unchanged."""
    save_file(ref, str(work / "reference.safetensors"), metadata=meta)
    if final.exists():
        mg.keep_identical_reference(work / "reference.safetensors", final / "reference.safetensors")
        shutil.rmtree(final)
    for f in work.iterdir():
        f.chmod(0o644)
    shutil.copytree(work, final)


def make_q4_k_m():
    case = Q4KM_CASE
    final = MODELS / case["name"]
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(mg.MAX_SEED_TRIES):
            seed = 4100 + attempt
            model = mg.build_model(case, seed)
            sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
            cfg = dict(model.config.to_dict(), model_type="qwen3_moe")
            # transformers 5 keeps the experts fused in memory; the published layout is one tensor each.
            for key in [k for k in sd if k.endswith("mlp.experts.gate_up_proj")]:
                p = key[: -len("gate_up_proj")]
                gu, dn = sd.pop(key), sd.pop(p + "down_proj")
                inter = gu.shape[1] // 2
                for e in range(gu.shape[0]):
                    sd[f"{p}{e}.gate_proj.weight"] = gu[e, :inter]
                    sd[f"{p}{e}.up_proj.weight"] = gu[e, inter:]
                    sd[f"{p}{e}.down_proj.weight"] = dn[e]
            tensors = gguf_tensors(sd, cfg, "qwen3moe")
            work = Path(tmp) / case["name"]
            work.mkdir(parents=True, exist_ok=True)
            write_gguf(work / "model.gguf", "qwen3moe", cfg, tensors, q4_k_m_types(tensors))
            loaded = transformers.AutoModelForCausalLM.from_pretrained(
                work, gguf_file="model.gguf", dtype=torch.float32, attn_implementation="eager",
                experts_implementation="eager", **overrides_for(cfg))
            loaded.eval()
            ref, diag, failures = mg.compute_reference(loaded, mg.make_prompt(seed), cfg["eos_token_id"])
            if failures:
                print(f"  {case['name']}: seed {seed} rejected: {'; '.join(failures)}")
                continue
            meta = {"model_type": "qwen3_moe", "case": case["name"], "transformers": transformers.__version__,
                    "torch": torch.__version__, "weights_dtype": "q4_k_m", "seed": str(seed),
                    "init_std": str(case["init_std"]), "config_style": "gguf", "gguf": gguf.__name__}
            publish_case(work, final, ref, meta)
            print(f"{case['name']}: seed {seed}, {(final / 'model.gguf').stat().st_size} bytes, {diag}")
            return
    raise RuntimeError("no robust seed")


def ggml_mxfp4_bytes(w):
    """w [rows, K] (K % 32 == 0) → ggml's MXFP4 blocks [rows, K/32 · 17]: per block the E8M0 scale byte,
    then 16 bytes whose low nibbles are values 0..15 and high nibbles values 16..31 (gguf-py's MXFP4).
    The codes and scales are make_goldens' (transformers' layout pairs values 2i, 2i + 1 instead)."""
    blocks, scales = mg.mxfp4_quantize(torch.from_numpy(np.ascontiguousarray(w)))
    lo, hi = blocks & 15, blocks >> 4
    codes = torch.stack([lo, hi], -1).reshape(*blocks.shape[:-1], 32)  # value order
    qs = (codes[..., :16] | (codes[..., 16:] << 4)).to(torch.uint8)
    out = torch.cat([scales[..., None], qs], -1)  # [rows, K/32, 17]
    return out.reshape(w.shape[0], -1).numpy()


def gpt_oss_tensors(sd, cfg):
    """GPT-OSS under llama.cpp's gpt-oss names: experts transposed to [E, out, in] with gate and up
    de-interleaved (gate = columns 0::2, up = 1::2), their biases likewise; the pre-MLP norm as
    post_attention_norm; the sinks as attn_sinks."""
    out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"],
           "output.weight": sd["lm_head.weight"]}
    for L in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{L}.", f"blk.{L}."
        out[b + "attn_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[b + "post_attention_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("o_proj", "attn_output")):
            for kind in ("weight", "bias"):
                out[b + f"{gg}.{kind}"] = sd[p + f"self_attn.{hf}.{kind}"]
        out[b + "attn_sinks.weight"] = sd[p + "self_attn.sinks"]
        out[b + "ffn_gate_inp.weight"] = sd[p + "mlp.router.weight"]
        out[b + "ffn_gate_inp.bias"] = sd[p + "mlp.router.bias"]
        gu = sd[p + "mlp.experts.gate_up_proj"].transpose(0, 2, 1)  # [E, 2I, H]
        out[b + "ffn_gate_exps.weight"] = np.ascontiguousarray(gu[:, 0::2])
        out[b + "ffn_up_exps.weight"] = np.ascontiguousarray(gu[:, 1::2])
        out[b + "ffn_down_exps.weight"] = np.ascontiguousarray(sd[p + "mlp.experts.down_proj"].transpose(0, 2, 1))
        gub = sd[p + "mlp.experts.gate_up_proj_bias"]
        out[b + "ffn_gate_exps.bias"] = np.ascontiguousarray(gub[:, 0::2])
        out[b + "ffn_up_exps.bias"] = np.ascontiguousarray(gub[:, 1::2])
        out[b + "ffn_down_exps.bias"] = sd[p + "mlp.experts.down_proj_bias"]
    return out


def write_gpt_oss_metadata(w, cfg, vocab):
    """gpt-oss's keys as llama.cpp's converter writes them. The sliding-window pattern (even layers) and the
    SwiGLU clamp (7) are not in the file: llama.cpp fixes them."""
    a = "gpt-oss"
    rope = cfg["rope_parameters"]
    w.add_uint32(f"{a}.block_count", cfg["num_hidden_layers"])
    w.add_uint32(f"{a}.context_length", cfg["max_position_embeddings"])
    w.add_uint32(f"{a}.embedding_length", cfg["hidden_size"])
    w.add_uint32(f"{a}.feed_forward_length", cfg["intermediate_size"])
    w.add_uint32(f"{a}.expert_feed_forward_length", cfg["intermediate_size"])
    w.add_uint32(f"{a}.attention.head_count", cfg["num_attention_heads"])
    w.add_uint32(f"{a}.attention.head_count_kv", cfg["num_key_value_heads"])
    w.add_uint32(f"{a}.attention.key_length", cfg["head_dim"])
    w.add_uint32(f"{a}.attention.value_length", cfg["head_dim"])
    w.add_uint32(f"{a}.rope.dimension_count", cfg["head_dim"])
    w.add_float32(f"{a}.rope.freq_base", rope["rope_theta"])
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"])
    w.add_uint32(f"{a}.attention.sliding_window", cfg["sliding_window"])
    w.add_uint32(f"{a}.expert_count", cfg["num_local_experts"])
    w.add_uint32(f"{a}.expert_used_count", cfg["num_experts_per_tok"])
    w.add_uint32(f"{a}.vocab_size", vocab)
    w.add_string(f"{a}.rope.scaling.type", "yarn")
    w.add_float32(f"{a}.rope.scaling.factor", rope["factor"])
    w.add_uint32(f"{a}.rope.scaling.original_context_length", rope["original_max_position_embeddings"])


# GPT-OSS as a GGUF states it: the gpt_oss_mxfp4 golden's shapes, with what llama.cpp fixes for the
# architecture (sliding window on even layers, clamp 7) and YaRN's correction range rounded (a GGUF has
# no truncate key; llama.cpp and transformers' GGUF reader both round).
GPT_OSS_GGUF_CASE = dict(
    name="gpt_oss_gguf",
    family="gpt_oss",
    init_std=0.15,
    config=dict(
        vocab_size=mg.VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=24, intermediate_size=32, num_local_experts=8, num_experts_per_tok=3, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        swiglu_limit=7.0, attention_bias=True, rms_norm_eps=1e-5,
        rope_parameters=dict(rope_type="yarn", rope_theta=1.5e5, factor=4.0, beta_fast=32.0, beta_slow=1.0,
                             original_max_position_embeddings=64),
        max_position_embeddings=256, tie_word_embeddings=False, bos_token_id=None, eos_token_id=510,
        pad_token_id=511,
    ),
)


def make_gpt_oss_gguf():
    """gpt_oss_gguf/: a GPT-OSS with its experts in ggml's MXFP4 (type 39), the rest F32. The reference is
    transformers on the same model with the experts replaced by their MXFP4 values."""
    case = GPT_OSS_GGUF_CASE
    final = MODELS / case["name"]
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(mg.MAX_SEED_TRIES):
            seed = 9600 + attempt
            model = mg.build_model(case, seed)
            with torch.no_grad():  # the experts as MXFP4 holds them (quantized along each output row)
                for name, prm in model.named_parameters():
                    if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
                        blocks, scales = mg.mxfp4_quantize(prm.transpose(1, 2).contiguous())
                        prm.copy_(mg.mxfp4_dequantize(blocks, scales).transpose(1, 2))
            ref, diag, failures = mg.compute_reference(model, mg.make_prompt(seed), case["config"]["eos_token_id"])
            if failures:
                print(f"  {case['name']}: seed {seed} rejected: {'; '.join(failures)}")
                continue
            sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
            cfg = case["config"]
            tensors = gpt_oss_tensors(sd, cfg)
            work = Path(tmp) / case["name"]
            work.mkdir(parents=True, exist_ok=True)
            write_gguf(work / "model.gguf", "gpt-oss", cfg, tensors,
                       {n: Q.MXFP4 for n in tensors if n.endswith("_exps.weight")})
            # The file decodes, with gguf-py, to the weights the reference ran with.
            reader = gguf.GGUFReader(str(work / "model.gguf"))
            for t in reader.tensors:
                if t.name.endswith("_exps.weight"):
                    got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(tensors[t.name].shape)
                    assert np.array_equal(got, tensors[t.name]), t.name
            meta = {"model_type": "gpt_oss", "case": case["name"], "transformers": transformers.__version__,
                    "torch": torch.__version__, "weights_dtype": "mxfp4 experts (ggml), f32", "seed": str(seed),
                    "init_std": str(case["init_std"]), "config_style": "gguf"}
            publish_case(work, final, ref, meta)
            print(f"{case['name']}: seed {seed}, {(final / 'model.gguf').stat().st_size} bytes, {diag}")
            return
    raise RuntimeError("no robust seed")


def add_nextn_block(tensors, cfg):
    """A multi-token-prediction block after the last layer, as llama.cpp stores GLM-4.5's and counts it in
    block_count (nextn_predict_layers): a copy of the last layer plus the nextn.* projections. The model
    must leave it unread."""
    last, mtp = cfg["num_hidden_layers"] - 1, cfg["num_hidden_layers"]
    for name in [n for n in tensors if n.startswith(f"blk.{last}.")]:
        tensors[name.replace(f"blk.{last}.", f"blk.{mtp}.", 1)] = tensors[name].copy()
    h = cfg["hidden_size"]
    rng = np.random.default_rng(7)
    tensors[f"blk.{mtp}.nextn.eh_proj.weight"] = rng.standard_normal((h, 2 * h)).astype(np.float32)
    for norm in ("enorm", "hnorm", "shared_head_norm"):
        tensors[f"blk.{mtp}.nextn.{norm}.weight"] = np.ones(h, dtype=np.float32)
    return cfg["num_hidden_layers"] + 1


def make_deepseek_v3_gguf():
    """deepseek_v3_gguf/: the deepseek_v3 golden's weights in today's deepseek2 layout (attn_k_b and
    attn_v_b, the *_mla keys, expert groups, a nextn block). A GGUF states YaRN's mscale once
    (yarn_log_multiplier = 0.1 · mscale_all_dim, with cos and sin unscaled), so the golden's
    mscale 1.0 / mscale_all_dim 0.8 cannot be written; this case sets both to 0.8 and takes its reference
    from transformers on that configuration."""
    src = MODELS / "deepseek_v3"
    final = MODELS / "deepseek_v3_gguf"
    cfg = json.loads((src / "config.json").read_text())
    cfg["rope_parameters"] = dict(cfg["rope_parameters"], mscale=cfg["rope_parameters"]["mscale_all_dim"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "hf"
        work.mkdir()
        (work / "config.json").write_text(json.dumps(cfg, indent=2))
        shutil.copy(src / "model.safetensors", work / "model.safetensors")
        model = transformers.AutoModelForCausalLM.from_pretrained(
            work, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
        model.eval()
        # The golden's prompt first; where the new scale leaves a near-tie, the next seeded prompts.
        prompts = [torch.tensor(load_file(str(src / "reference.safetensors"))["prompt_ids"])]
        prompts += [mg.make_prompt(9150 + i) for i in range(mg.MAX_SEED_TRIES)]
        for prompt in prompts:
            ref, diag, failures = mg.compute_reference(model, prompt, cfg["eos_token_id"])
            if not failures:
                break
            print(f"  deepseek_v3_gguf: prompt rejected: {'; '.join(failures)}")
        if failures:
            raise RuntimeError("deepseek_v3_gguf: no robust prompt")
        out = Path(tmp) / "deepseek_v3_gguf"
        out.mkdir()
        sd = {k: v.astype(np.float32) for k, v in load_file(str(src / "model.safetensors")).items()}
        tensors = gguf_tensors(sd, cfg, "deepseek2", split_kv_b=True)
        layers = add_nextn_block(tensors, cfg)
        write_gguf(out / "model.gguf", "deepseek2", cfg, tensors, layers=layers)
        meta = {"model_type": "deepseek_v3", "case": "deepseek_v3_gguf", "transformers": transformers.__version__,
                "torch": torch.__version__, "weights_dtype": "float32", "config_style": "gguf",
                "source": "deepseek_v3 with mscale = mscale_all_dim"}
        publish_case(out, final, ref, meta)
    print(f"deepseek_v3_gguf/model.gguf: {(final / 'model.gguf').stat().st_size} bytes, {diag}")


def make_split():
    """qwen3_moe/split/: the metadata and tensors of qwen3_moe/model.gguf, copied as they are into three
    parts by gguf-py's writer; the parts are read back and checked against the whole file."""
    src = MODELS / "qwen3_moe" / "model.gguf"
    final = MODELS / "qwen3_moe" / "split"
    whole = gguf.GGUFReader(str(src))
    per_part = (len(whole.tensors) + 2) // 3
    with tempfile.TemporaryDirectory() as tmp:
        w = gguf.GGUFWriter(str(Path(tmp) / "model.gguf"), whole.fields["general.architecture"].contents(),
                            split_max_tensors=per_part)
        for name, field in whole.fields.items():
            if name.startswith("GGUF.") or name == "general.architecture":
                continue  # the header's own fields, and the one the writer adds itself
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(name, field.contents(), field.types[0], sub_type=sub_type)
        for t in whole.tensors:
            assert t.tensor_type == Q.F32, t.name
            w.add_tensor(t.name, np.array(t.data, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)]))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        parts = sorted(Path(tmp).glob("model-*-of-*.gguf"))
        assert [p.name for p in parts] == [f"model-{i:05d}-of-00003.gguf" for i in (1, 2, 3)], parts
        seen = {}
        for i, p in enumerate(parts):
            r = gguf.GGUFReader(str(p))
            assert r.fields["split.no"].contents() == i and r.fields["split.count"].contents() == 3
            for t in r.tensors:
                seen[t.name] = np.array(t.data)
        assert len(seen) == len(whole.tensors)
        for t in whole.tensors:
            assert np.array_equal(seen[t.name], np.array(t.data)), t.name
        first = gguf.GGUFReader(str(parts[0]))
        for name, field in whole.fields.items():
            if not name.startswith("GGUF."):
                assert first.fields[name].contents() == field.contents(), name
        if final.exists():
            shutil.rmtree(final)
        final.mkdir()
        for p in parts:
            shutil.copy(p, final / p.name)
            (final / p.name).chmod(0o644)
    print(f"qwen3_moe/split/: {', '.join(f'{p.name} {p.stat().st_size} bytes' for p in sorted(final.iterdir()))}")


def main():
    torch.set_num_threads(1)
    only = set(sys.argv[1:])
    for case in ("qwen3_moe", "qwen3_dense", "qwen2_moe", "olmoe", "mixtral", "llama", "deepseek_v2", "minimax_m2",
                 "glm4_moe", "ernie4_5_moe"):
        if not only or case in only:
            convert_golden(case)
    if not only or "qwen3_moe_q4_k_m" in only:
        make_q4_k_m()
    if not only or "deepseek_v3_gguf" in only:
        make_deepseek_v3_gguf()
    if not only or "gpt_oss_gguf" in only:
        make_gpt_oss_gguf()
    if not only or "split" in only:
        make_split()


if __name__ == "__main__":
    main()
