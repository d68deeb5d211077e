#!/usr/bin/env python3
"""Create tiny random Hugging Face checkpoints and transformers reference outputs.

Dev-time only: CI never runs this. Its outputs under tests/data/models/ are committed.

    python3 tests/make_goldens.py            # regenerate every case
    python3 tests/make_goldens.py mixtral    # regenerate only the named case(s)

Besides transformers and torch, the quantized cases need the libraries that define their formats:
compressed-tensors (the *_w4a16 cases) and GPTQModel (qwen3_moe_gptq, qwen3_awq: pip install gptqmodel optimum;
7.7 made the committed ones).

Every case is seeded. A case is accepted only when its reference is robust:
  * every greedy step has a top-1 / top-2 logit gap > LOGIT_GAP,
  * every router decision (prompt and generated positions) has a gap between the
    k-th and (k+1)-th softmax probability > ROUTER_GAP,
  * the eos id of the checkpoint never appears among the greedy tokens,
  * the greedy continuation has at least MIN_DISTINCT_GREEDY distinct tokens,
  * the cached `generate` and a plain full forward agree on every greedy token.
Otherwise the seed is bumped and the case rebuilt; the accepted seed is recorded in
reference.safetensors metadata and in the printed summary.

See tests/data/models/README.md for the layout of reference.safetensors.
"""

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import save_file
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    OlmoeConfig,
    OlmoeForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
    Glm4MoeConfig,
    Glm4MoeForCausalLM,
    DeepseekV2Config,
    DeepseekV2ForCausalLM,
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    MiniMaxM2Config,
    MiniMaxM2ForCausalLM,
    Ernie4_5_MoeConfig,
    Ernie4_5_MoeForCausalLM,
    GptOssConfig,
    GptOssForCausalLM,
    CompressedTensorsConfig,
    FineGrainedFP8Config,
    Mxfp4Config,
)

OUT_ROOT = Path(__file__).resolve().parent / "data" / "models"

PROMPT_LEN = 12
PROMPT_ID_LOW = 3  # keep clear of the small special ids (bos 1 / eos 2 in the Llama-style cases)
PROMPT_ID_HIGH = 300  # exclusive
NEW_TOKENS = 32
VOCAB = 512
LOGIT_GAP = 1e-3
ROUTER_GAP = 1e-4
MIN_DISTINCT_GREEDY = 8  # reject degenerate short loops: they make a weak greedy test
MAX_SEED_TRIES = 64
SIZE_BUDGET = 32 * 1024 * 1024  # the whole folder, the GGUF files and splits other scripts write included
# Files in a case folder that this script does not write: make_intervention_goldens.py's references and
# the tokenizer committed with qwen3_moe. A rerun keeps them.
ADDED_BY_OTHERS = ("interventions.safetensors", "tokenizer.json", "tokenizer_config.json")

FAMILIES = {
    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "qwen2_moe": (Qwen2MoeConfig, Qwen2MoeForCausalLM),
    "mixtral": (MixtralConfig, MixtralForCausalLM),
    "olmoe": (OlmoeConfig, OlmoeForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "glm4_moe": (Glm4MoeConfig, Glm4MoeForCausalLM),
    "deepseek_v2": (DeepseekV2Config, DeepseekV2ForCausalLM),
    "deepseek_v3": (DeepseekV3Config, DeepseekV3ForCausalLM),
    "minimax_m2": (MiniMaxM2Config, MiniMaxM2ForCausalLM),
    "ernie4_5_moe": (Ernie4_5_MoeConfig, Ernie4_5_MoeForCausalLM),
    "gpt_oss": (GptOssConfig, GptOssForCausalLM),
}

STORAGE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def rope(theta):
    return {"rope_type": "default", "rope_theta": float(theta)}


# Architecture of case 1; the bf16 / f16 cases reuse it verbatim.
QWEN3_MOE_ARCH = dict(
    vocab_size=VOCAB,
    hidden_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,  # 4 * 16 = 64 != hidden 48: q_proj is [64, 48], o_proj is [48, 64]
    intermediate_size=48,  # unused (no dense layers)
    moe_intermediate_size=32,
    num_experts=8,
    num_experts_per_tok=3,
    norm_topk_prob=True,
    decoder_sparse_step=1,
    mlp_only_layers=[],
    rms_norm_eps=1e-6,
    rope_parameters=rope(1e6),
    max_position_embeddings=256,
    tie_word_embeddings=False,
    bos_token_id=None,
    eos_token_id=510,
    pad_token_id=511,
)

MIXTRAL_ARCH = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=32,  # per-expert width in Mixtral
    num_local_experts=8,
    num_experts_per_tok=2,
    rms_norm_eps=1e-5,
    rope_parameters=rope(1e6),
    max_position_embeddings=256,
    sliding_window=None,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
)

# The shape both DeepSeek cases share: MLA with a 32-wide latent, q/k heads of 16 + 8 RoPE dims and
# values of 12 (unlike the nope width, so a mix-up of the two cannot pass); layer 0 dense, then 8
# experts in 4 groups of which 2 are kept, top-3.
DEEPSEEK_ARCH = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=4,
    kv_lora_rank=32,
    qk_nope_head_dim=16,
    qk_rope_head_dim=8,
    v_head_dim=12,
    intermediate_size=48,  # layer 0 (first_k_dense_replace=1)
    moe_intermediate_size=16,
    n_routed_experts=8,
    num_experts_per_tok=3,
    first_k_dense_replace=1,
    n_group=4,
    topk_group=2,
    rms_norm_eps=1e-6,
    max_position_embeddings=256,
    tie_word_embeddings=False,
    bos_token_id=None,
    eos_token_id=510,
    pad_token_id=511,
)
DEEPSEEK_YARN = dict(rope_type="yarn", rope_theta=1e4, factor=4.0, original_max_position_embeddings=64,
                     beta_fast=32, beta_slow=1)

# config_style:
#   "v5"  - config.json exactly as transformers 5.x save_pretrained writes it
#           (rope_parameters{...}, "dtype", Qwen3-MoE "num_local_experts", Mixtral "head_dim": null).
#   "hub" - config.json rewritten into the layout of the real checkpoints on the Hub
#           (top-level rope_theta + rope_scaling null, "torch_dtype", Qwen "num_experts",
#           no null head_dim). The reference is always computed by reloading from disk, so it
#           is exactly what transformers reads from this file.
CASES = [
    dict(
        name="qwen3_moe",
        family="qwen3_moe",
        seed=1000,
        init_std=0.15,
        config=QWEN3_MOE_ARCH,
        config_style="v5",
        exercises="Qwen3-MoE: per-head q/k RMSNorm, head_dim from config with nh*hd != hidden, "
        "GQA 4/2, all layers MoE, top-3 of 8 with norm_topk_prob=true, theta 1e6.",
    ),
    dict(
        name="qwen3_moe_sparse_step",
        family="qwen3_moe",
        seed=2000,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,  # 64 != 32
            intermediate_size=40,  # dense layers 0, 2, 3
            moe_intermediate_size=16,
            num_experts=6,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            decoder_sparse_step=2,  # (l+1) % 2 == 0 -> layers 1 and 3 ...
            mlp_only_layers=[3],  # ... but layer 3 is forced dense -> only layer 1 is MoE
            rms_norm_eps=1e-6,
            rope_parameters=rope(1e6),
            max_position_embeddings=256,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=510,
            pad_token_id=511,
        ),
        config_style="v5",
        exercises="Qwen3-MoE layer selection: decoder_sparse_step=2 and mlp_only_layers=[3] "
        "(MoE only at layer 1; layers 0, 2, 3 dense with intermediate_size), "
        "norm_topk_prob=false, 6 experts top-2.",
    ),
    dict(
        name="qwen3_dense",
        family="qwen3",
        seed=3000,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,  # 64 != 48
            intermediate_size=40,
            rms_norm_eps=1e-6,
            rope_parameters=rope(1e6),
            max_position_embeddings=256,
            tie_word_embeddings=True,  # lm_head.weight is absent from the file
            bos_token_id=None,
            eos_token_id=510,
            pad_token_id=511,
        ),
        config_style="v5",
        exercises="Dense Qwen3: per-head q/k norm, nh*hd != hidden, tied embeddings "
        "(no lm_head.weight in the file).",
    ),
    dict(
        name="qwen2_moe",
        family="qwen2_moe",
        seed=4000,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,  # MHA like the real Qwen1.5-MoE-A2.7B
            intermediate_size=48,  # unused (no dense layers)
            moe_intermediate_size=16,
            shared_expert_intermediate_size=48,
            num_experts=8,
            num_experts_per_tok=4,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            qkv_bias=True,
            rms_norm_eps=1e-6,
            rope_parameters=rope(1e6),
            max_position_embeddings=256,
            use_sliding_window=False,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=510,
            pad_token_id=511,
        ),
        config_style="hub",
        exercises="Qwen2-MoE: q/k/v biases (random, non-zero), no q/k norm, MHA 4/4, "
        "shared expert scaled by sigmoid(shared_expert_gate), top-4 of 8, norm_topk_prob=false.",
    ),
    dict(
        name="mixtral",
        family="mixtral",
        seed=5000,
        init_std=0.15,
        config=MIXTRAL_ARCH,
        config_style="v5",
        exercises="Mixtral: block_sparse_moe.* names with w1/w2/w3, GQA 4/2, top-2 of 8 "
        "(always renormalised), eps 1e-5, theta 1e6.",
    ),
    dict(
        name="olmoe",
        family="olmoe",
        seed=6000,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,  # GQA: k_norm is [(64/4)*2] = [32], q_norm is [64]
            intermediate_size=32,  # per-expert width in OLMoE
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            clip_qkv=None,
            rms_norm_eps=1e-5,
            rope_parameters=rope(1e4),
            max_position_embeddings=256,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=510,
            pad_token_id=1,
        ),
        config_style="hub",
        exercises="OLMoE: q_norm/k_norm over the whole flat projection before the head "
        "reshape (q_norm [64], k_norm [32] with GQA 4/2), top-2 of 8, norm_topk_prob=false, "
        "clip_qkv null, eps 1e-5, theta 1e4.",
    ),
    dict(
        name="llama",
        family="llama",
        seed=7000,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=48,
            rms_norm_eps=1e-5,
            rope_parameters=rope(1e4),
            max_position_embeddings=256,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=None,
        ),
        config_style="hub",
        exercises="Dense Llama: GQA 4/2, untied lm_head, no q/k norm, eps 1e-5, theta 1e4.",
    ),
    dict(
        name="glm4_moe",
        family="glm4_moe",
        seed=8000,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            partial_rotary_factor=0.5,  # RoPE on dims 0..7 of each head, rotate-half pairs (i, i+4)
            intermediate_size=48,  # layer 0 (first_k_dense_replace=1)
            moe_intermediate_size=16,
            n_routed_experts=8,
            num_experts_per_tok=3,
            n_shared_experts=2,  # one ungated shared MLP of width 2*16
            n_group=4,
            topk_group=2,
            first_k_dense_replace=1,
            norm_topk_prob=True,
            routed_scaling_factor=2.5,
            use_qk_norm=True,
            attention_bias=True,
            rms_norm_eps=1e-5,
            rope_parameters=rope(1e4),
            max_position_embeddings=256,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=510,
            pad_token_id=511,
        ),
        config_style="v5",
        exercises="GLM-4.5 (glm4_moe): q/k/v biases without an o bias, per-head q/k norm, partial "
        "rotary (half of head_dim), layer 0 dense, sigmoid router with a random "
        "e_score_correction_bias used for selection only, 2 of 4 groups kept by the sum of their "
        "two best biased scores, top-3 renormalised x2.5, ungated shared experts.",
    ),
    dict(
        name="deepseek_v2",
        family="deepseek_v2",
        seed=9000,
        init_std=0.15,
        config=dict(
            DEEPSEEK_ARCH,
            q_lora_rank=None,  # a plain q_proj, as DeepSeek-V2-Lite
            n_shared_experts=2,
            topk_method="group_limited_greedy",
            norm_topk_prob=False,
            routed_scaling_factor=1.5,
            # YaRN as in V2-Lite (mscale = mscale_all_dim: cos/sin unscaled, the softmax scale x mscale^2),
            # with a short original context so that the frequency ramp falls inside the 4 frequencies.
            rope_parameters=dict(DEEPSEEK_YARN, mscale=0.707, mscale_all_dim=0.707),
        ),
        config_style="hub",
        exercises="DeepSeek-V2 (deepseek_v2): multi-head latent attention without q-LoRA (q_proj), "
        "latent 32 + shared RoPE key 8, nope 16, v 12, interleaved RoPE with YaRN x4 and the softmax "
        "scale x mscale_all_dim^2; layer 0 dense; softmax router, group_limited_greedy (2 of 4 groups "
        "by their best score), top-3 not renormalised x1.5; 2 shared experts. config.json in the Hub "
        "layout (rope_scaling with type yarn, as DeepSeek-V2-Lite's).",
    ),
    dict(
        name="deepseek_v3",
        family="deepseek_v3",
        seed=9100,
        init_std=0.15,
        config=dict(
            DEEPSEEK_ARCH,
            q_lora_rank=24,
            n_shared_experts=1,
            norm_topk_prob=True,
            routed_scaling_factor=2.5,
            rope_interleave=True,
            attention_bias=True,  # q_a_proj, kv_a_proj_with_mqa and o_proj biases
            # mscale != mscale_all_dim: cos and sin are scaled (by 1.0247) as well as the softmax.
            rope_parameters=dict(DEEPSEEK_YARN, mscale=1.0, mscale_all_dim=0.8),
        ),
        config_style="v5",
        exercises="DeepSeek-V3 (deepseek_v3): multi-head latent attention with q-LoRA 24 (q_a_proj, "
        "its norm, q_b_proj), attention biases on the a-projections and o_proj, YaRN x4 with "
        "mscale 1.0 / mscale_all_dim 0.8 (cos/sin and softmax scaled); noaux_tc router: sigmoid, a "
        "random selection-only bias, 2 of 4 groups by their two best, top-3 renormalised x2.5; one "
        "shared expert; layer 0 dense.",
    ),
    dict(
        name="minimax_m2",
        family="minimax_m2",
        seed=9200,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,  # 4 * 32 = 128 != hidden 64
            rotary_dim=16,  # RoPE on dims 0..15 of each head (partial 0.5), as MiniMax-M2's 64 of 128
            intermediate_size=24,  # per-expert width, as in Mixtral
            num_local_experts=8,
            num_experts_per_tok=3,
            rms_norm_eps=1e-6,
            rope_parameters=rope(5e6),
            max_position_embeddings=256,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=510,
            pad_token_id=511,
        ),
        config_style="hub",
        exercises="MiniMax-M2 (minimax_m2): q/k RMSNorm over the whole projections (before the head "
        "reshape), partial rotary from rotary_dim (16 of head_dim 32, rotate-half), theta 5e6; every "
        "layer MoE with a sigmoid router, a random e_score_correction_bias on the MoE block used for "
        "selection only, top-3 renormalised; Mixtral-style expert names (block_sparse_moe, w1/w2/w3).",
    ),
    dict(
        name="ernie4_5_moe",
        family="ernie4_5_moe",
        seed=9300,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=48,  # the dense layers' MLP
            moe_intermediate_size=16,
            moe_num_experts=8,
            moe_k=3,
            moe_num_shared_experts=2,  # one ungated shared MLP of width 2*16
            moe_layer_start_index=1,
            moe_layer_end_index=3,
            moe_layer_interval=2,  # MoE where (l+1) % 2 == 0 within [1, 3]: layers 1 and 3
            use_bias=False,
            rms_norm_eps=1e-5,
            rope_parameters=rope(5e5),
            max_position_embeddings=256,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        ),
        config_style="hub",
        exercises="ERNIE-4.5-MoE (ernie4_5_moe): interleaved RoPE (pairs 2i, 2i+1) on plain GQA attention, "
        "MoE layers chosen by moe_layer_start_index/end_index/interval (1 and 3 of 4), a softmax router "
        "whose random e_score_correction_bias ([1, E], under moe_statics) is added to the probabilities for "
        "selection only, top-3 renormalised, an ungated shared MLP of two experts' width, tied embeddings.",
    ),
    dict(
        name="gpt_oss",
        family="gpt_oss",
        seed=9400,
        init_std=0.15,
        config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=24,  # 4 * 24 = 96 != hidden 64
            intermediate_size=24,  # per-expert width; 2 * 24 != hidden, so a transposed gate_up cannot pass the shape check
            num_local_experts=8,
            num_experts_per_tok=3,
            sliding_window=4,  # short enough to cut the 12-token prompt and every generated step
            layer_types=["sliding_attention", "full_attention", "full_attention", "sliding_attention"],
            swiglu_limit=1.0,  # the release's 7 would never bite at these sizes; 1 clamps often
            attention_bias=True,
            rms_norm_eps=1e-5,
            rope_parameters=dict(
                rope_type="yarn",
                rope_theta=1.5e5,
                factor=4.0,
                beta_fast=32.0,
                beta_slow=1.0,
                truncate=False,  # as the release: the correction range is not rounded
                original_max_position_embeddings=64,
            ),
            max_position_embeddings=256,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=510,
            pad_token_id=511,
        ),
        config_style="hub",
        exercises="GPT-OSS (gpt_oss): biases on q/k/v/o, a random sink logit per head in every softmax, "
        "sliding-window attention (4 tokens) on layers 0 and 3 and full attention on 1 and 2, YaRN x4 with "
        "truncate false; a router with a bias, softmax over its top-3 logits; experts stacked input-major "
        "(gate_up [E, H, 2I] with gate/up columns interleaved, down [E, I, H]) with biases, and the clamped "
        "gate (swiglu_limit 1.0, alpha 1.702).",
    ),
    dict(
        name="gpt_oss_bf16",
        family="gpt_oss",
        base="gpt_oss",
        init_std=0.15,
        config=None,  # set below: gpt_oss's
        weights_dtype="bfloat16",
        config_style="hub",
        exercises="Case gpt_oss stored as BF16 (its transposed experts copied in 2-byte elements). Reference "
        "computed in fp32 from the bf16-rounded weights.",
    ),
    dict(
        name="gpt_oss_mxfp4",
        family="gpt_oss",
        seed=9500,
        init_std=0.15,
        config=None,  # set below: gpt_oss's, with experts 32 wide (MXFP4 packs blocks of 32 values)
        quantize="mxfp4",
        config_style="hub",
        exercises="GPT-OSS as released: routed experts in MXFP4 (gate_up_proj_blocks/_scales, down_proj_blocks/"
        "_scales, quantization_config mxfp4), quantized by this script from random weights. Reference: "
        "transformers with Mxfp4Config(dequantize=True), fp32.",
    ),
    dict(
        name="qwen3_moe_fp8",
        family="qwen3_moe",
        seed=9700,
        init_std=0.15,
        config=dict(QWEN3_MOE_ARCH, hidden_size=64),  # every dim a multiple of the 32 x 16 tile
        weights_dtype="bfloat16",
        quantize="fp8",
        fp8_tile=(32, 16),
        fp8_scale_dtype=torch.bfloat16,
        config_style="hub",
        exercises="Qwen3-MoE as its -FP8 releases: every linear weight but the router's in F8_E4M3 with a "
        "weight_scale_inv per 32 x 16 tile (BF16 scales; non-square tiles, so rows and columns cannot be "
        "confused), quantization_config fp8; the rest BF16. Quantized by this script from random weights. "
        "Reference: transformers with FineGrainedFP8Config(dequantize=True), fp32.",
    ),
    dict(
        name="deepseek_v3_fp8",
        family="deepseek_v3",
        base="deepseek_v3",
        init_std=0.15,
        config=None,  # set below: deepseek_v3's
        weights_dtype="bfloat16",
        quantize="fp8",
        fp8_tile=(8, 8),
        fp8_scale_dtype=torch.float32,
        config_style="hub",
        exercises="DeepSeek-V3 as released: its linear weights (q_a, q_b, kv_a, kv_b, o, experts, shared expert, "
        "dense MLP) in F8_E4M3 with F32 weight_scale_inv per 8 x 8 tile, router, embeddings and head BF16. Each "
        "head's W_UV rows of kv_b start inside a tile (rows 16, 44, 72, 100). Reference: transformers with "
        "FineGrainedFP8Config(dequantize=True), fp32.",
    ),
    dict(
        name="qwen3_moe_w4a16",
        family="qwen3_moe",
        seed=9900,
        init_std=0.15,
        config=dict(QWEN3_MOE_ARCH, hidden_size=64),  # every width a multiple of the groups of 32
        weights_dtype="bfloat16",
        quantize="packed_int",
        packed_schemes=[  # (targets, bits, group size or None for one scale per row, symmetric)
            (["re:.*mlp.experts.*"], 4, 32, True),
            (["re:.*self_attn.*"], 8, None, True),
        ],
        config_style="hub",
        exercises="Qwen3-MoE as compressed-tensors' pack-quantized W4A16 checkpoints (RedHatAI's, and Kimi-K2-"
        "Thinking's experts): experts in 4-bit integers with a BF16 scale per group of 32, attention in 8-bit with "
        "one per row (two config groups, as Kimi mixes schemes), router and head BF16. Packed by compressed_tensors' "
        "pack_to_int32. Reference: transformers with CompressedTensorsConfig(dequantize=True), fp32.",
    ),
    dict(
        name="mixtral_w4a16",
        family="mixtral",
        seed=9950,
        init_std=0.15,
        config=MIXTRAL_ARCH,
        weights_dtype="float16",
        quantize="packed_int",
        # transformers reads zero points for whole modules only, not for the stacked experts: attention is asymmetric
        packed_schemes=[(["re:.*experts.*"], 4, 16, True), (["re:.*self_attn.*"], 4, 16, False)],
        config_style="hub",
        exercises="Mixtral with every linear weight but the router's and the head's in 4-bit integers with an F16 "
        "scale per group of 16 (so F16-rounded weights, and groups narrower than the CPU's SIMD runs of 32), the "
        "attention's asymmetric (a zero point per group, weight_zero_point packed down the rows). "
        "Reference: transformers with CompressedTensorsConfig(dequantize=True), fp32.",
    ),
    dict(
        name="qwen3_moe_gptq",
        family="qwen3_moe",
        seed=10100,
        init_std=0.15,
        config=dict(QWEN3_MOE_ARCH, hidden_size=64),  # every width a multiple of the groups of 32
        weights_dtype="float16",
        quantize="quant_linear",
        quant_linear=dict(method="gptq", bits=4, group=32, sym=True, format="gptq"),
        config_style="hub",
        exercises="Qwen3-MoE as Qwen's -GPTQ-Int4 releases: every linear weight but the router's and the head's "
        "in GPTQ's layout (qweight packed down the inputs, qzeros, F16 scales per group of 32, g_idx), 4-bit, "
        "symmetric, checkpoint format v1 (zero points stored less 1); the rest F16. Packed by this script; "
        "reference: the weights dequantized by GPTQModel's torch kernel (its v1-to-v2 conversion included), then "
        "transformers in fp32 (transformers 5.24 cannot load per-expert GPTQ weights into its stacked experts).",
    ),
    dict(
        name="mixtral_gptq_act_order",
        family="mixtral",
        seed=10150,
        init_std=0.15,
        config=MIXTRAL_ARCH,
        weights_dtype="float16",
        quantize="quant_linear",
        quant_linear=dict(method="gptq", bits=4, group=32, sym=True, format="gptq", desc_act=True),
        config_style="hub",
        exercises="Mixtral as TheBloke's -GPTQ releases with activation order (desc_act): every linear weight but "
        "the router's and the head's in GPTQ's layout, 4-bit, symmetric, v1, F16 scales per group of 32, each weight's "
        "inputs quantized and grouped in the order of its column norms, largest first (as GPTQ orders them by the "
        "Hessian's diagonal), so g_idx scatters both groups of a 64-input weight across its inputs (the experts' "
        "down_proj, 32 inputs, has one group: its g_idx is plain). Packed by this script; reference: the weights "
        "dequantized by GPTQModel's torch kernel (desc_act=True), then transformers in fp32.",
    ),
    dict(
        name="qwen3_awq",
        family="qwen3",
        seed=10200,
        init_std=0.15,
        config=None,  # set below: qwen3_dense's, 64 wide with an MLP of 96 (whole groups of 32, outputs in 8s)
        weights_dtype="float16",
        quantize="quant_linear",
        quant_linear=dict(method="awq", bits=4, group=32, sym=False, format="gemm"),
        config_style="hub",
        exercises="Dense Qwen3 as Qwen's -AWQ releases: every linear weight in AutoAWQ's GEMM layout (qweight 8 "
        "outputs to a word in AWQ's nibble order, qzeros likewise, F16 scales per group of 32), 4-bit with zero "
        "points; embeddings tied, F16. Packed by this script; reference: the weights dequantized by GPTQModel's "
        "dequantize_gemm (what transformers' AWQ loader runs), then transformers in fp32.",
    ),
    dict(
        name="qwen3_moe_bf16",
        family="qwen3_moe",
        base="qwen3_moe",  # same architecture; seed search starts at the base's accepted seed
        init_std=0.15,
        config=QWEN3_MOE_ARCH,
        weights_dtype="bfloat16",
        config_style="hub",
        exercises="Case qwen3_moe stored as BF16. Reference computed in fp32 from the "
        "bf16-rounded weights.",
    ),
    dict(
        name="qwen3_moe_f16",
        family="qwen3_moe",
        base="qwen3_moe",
        init_std=0.15,
        config=QWEN3_MOE_ARCH,
        weights_dtype="float16",
        config_style="hub",
        exercises="Case qwen3_moe stored as F16. Reference computed in fp32 from the "
        "f16-rounded weights.",
    ),
    dict(
        name="mixtral_sharded",
        family="mixtral",
        base="mixtral",
        same_weights_as_base=True,  # identical model and reference; only the file layout differs
        init_std=0.15,
        config=MIXTRAL_ARCH,
        config_style="v5",
        max_shard_size="300KB",
        exercises="Case mixtral saved in several shards with model.safetensors.index.json "
        "(tensors of one layer may be split across shards). Same reference as mixtral.",
    ),
]


for _case in CASES:
    if _case["name"] == "gpt_oss_bf16":
        _case["config"] = next(c["config"] for c in CASES if c["name"] == "gpt_oss")
    if _case["name"] == "gpt_oss_mxfp4":
        _case["config"] = dict(next(c["config"] for c in CASES if c["name"] == "gpt_oss"), intermediate_size=32)
    if _case["name"] == "qwen3_awq":
        _case["config"] = dict(next(c["config"] for c in CASES if c["name"] == "qwen3_dense"), hidden_size=64,
                               intermediate_size=96)
    if _case["name"] == "deepseek_v3_fp8":
        _case["config"] = next(c["config"] for c in CASES if c["name"] == "deepseek_v3")


# Fine-grained FP8 (transformers' integrations/finegrained_fp8.py, DeepSeek-V3's release): each tile of a
# linear weight scaled by its largest magnitude over 448 (E4M3's largest value), stored as that inverse scale
# (weight_scale_inv) beside the F8_E4M3 values; a weight is q * scale_inv.
def quantized_linear(name, ndim):
    """Whether the FP8, GPTQ and AWQ releases quantize this weight: every matrix but the embeddings, the head and
    the router."""
    return ndim >= 2 and not name.endswith(("embed_tokens.weight", "lm_head.weight", "mlp.gate.weight",
                                            "block_sparse_moe.gate.weight"))


def fp8_quantize(w, tile, scale_dtype):
    """w [..., R, C] with R, C multiples of the tile -> (q float8_e4m3fn, scale_inv [..., R/tr, C/tc] scale_dtype)."""
    tr, tc = tile
    *pre, r, c = w.shape
    g = w.float().reshape(*pre, r // tr, tr, c // tc, tc)
    amax = g.abs().amax(dim=(-3, -1))
    scale_inv = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax)).to(scale_dtype)
    s = scale_inv.float()[..., :, None, :, None]
    q = (g / s).clamp(-448, 448).reshape(w.shape).to(torch.float8_e4m3fn)
    return q, scale_inv


def fp8_dequantize(q, scale_inv, tile):
    tr, tc = tile
    s = scale_inv.float().repeat_interleave(tr, -2).repeat_interleave(tc, -1)
    return q.float() * s


def fp8_rewrite(out_dir, case):
    """Replace the linear weights of a saved checkpoint by their FP8 values and scales, and say so in
    config.json, as the FP8 releases are laid out."""
    from safetensors.torch import load_file, save_file as save_torch

    path = out_dir / "model.safetensors"
    out = {}
    for name, t in load_file(str(path)).items():
        if quantized_linear(name, t.ndim):
            out[name], out[name + "_scale_inv"] = fp8_quantize(t, case["fp8_tile"], case["fp8_scale_dtype"])
        else:
            out[name] = t
    save_torch(out, str(path), metadata={"format": "pt"})
    cfg = json.loads((out_dir / "config.json").read_text())
    cfg["quantization_config"] = {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": list(case["fp8_tile"]),
    }
    (out_dir / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")

# compressed-tensors' pack-quantized integers (its compressors/pack_quantized): per scheme, each targeted linear
# weight's rows in groups of group_size columns (or whole rows), each group scaled by its largest magnitude over
# 2^(bits-1) - 1 (the scale rounded to the storage dtype first), values rounded and clamped to the signed range, then
# packed by compressed_tensors' own pack_to_int32. A weight is (q * scale) computed in the scale's dtype. An
# asymmetric scheme scales the group's range [min(x, 0), max(x, 0)] over 2^bits - 1 and shifts it by a zero point z
# (as compressed-tensors' calculate_qparams), and a weight is (q - z) * scale.
def packed_scheme(case, name, ndim):
    """The (bits, group, symmetric) of the scheme whose targets match a linear weight, or None."""
    if ndim != 2 or not name.endswith(".weight") or name.endswith(("embed_tokens.weight", "lm_head.weight")):
        return None
    module = name[: -len(".weight")]
    if module.endswith(("mlp.gate", "block_sparse_moe.gate")):
        return None
    for targets, bits, group, symmetric in case["packed_schemes"]:
        for t in targets:
            if t == "Linear" or (t.startswith("re:") and re.match(t[3:], module)):
                return bits, group, symmetric
    return None


def packed_quantize(w, bits, group, symmetric):
    """w [R, C] -> (q int8 [R, C], scale [R, C/group] in w's dtype, zero int8 [R, C/group] or None)."""
    r, c = w.shape
    g = group or c
    x = w.float().reshape(r, c // g, g)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if symmetric:
        amax = x.abs().amax(dim=-1)
        scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax)).to(w.dtype)
        zero = None
        shift = torch.zeros_like(amax)
    else:
        lo, hi = x.amin(dim=-1).clamp(max=0), x.amax(dim=-1).clamp(min=0)
        span = (hi - lo) / (qmax - qmin)
        scale = torch.where(span > 0, span, torch.ones_like(span)).to(w.dtype)
        zero = torch.round(qmin - lo / scale.float()).clamp(qmin, qmax).to(torch.int8)
        shift = zero.float()
    q = torch.round(x / scale.float()[..., None] + shift[..., None]).clamp(qmin, qmax).to(torch.int8).reshape(r, c)
    return q, scale, zero


def packed_dequantize(q, scale, zero, group):
    r, c = q.shape
    g = group or c
    v = q.to(scale.dtype).reshape(r, c // g, g)
    if zero is not None:
        v = v - zero.to(scale.dtype)[..., None]
    return (v * scale[..., None]).reshape(r, c)


def packed_rewrite(out_dir, case):
    """Replace the targeted linear weights of a saved checkpoint by weight_packed, weight_scale and weight_shape, and
    describe the schemes in config.json, as llm-compressor writes them."""
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
    from safetensors.torch import load_file, save_file as save_torch

    path = out_dir / "model.safetensors"
    out = {}
    for name, t in load_file(str(path)).items():
        scheme = packed_scheme(case, name, t.ndim)
        if scheme is None:
            out[name] = t
            continue
        bits, group, symmetric = scheme
        q, scale, zero = packed_quantize(t, bits, group, symmetric)
        base = name[: -len(".weight")]
        out[base + ".weight_packed"] = pack_to_int32(q, bits)
        out[base + ".weight_scale"] = scale.contiguous()
        out[base + ".weight_shape"] = torch.tensor(list(t.shape), dtype=torch.int32)
        if zero is not None:
            out[base + ".weight_zero_point"] = pack_to_int32(zero, bits, packed_dim=0).contiguous()
    save_torch(out, str(path), metadata={"format": "pt"})
    cfg = json.loads((out_dir / "config.json").read_text())
    groups = {}
    for i, (targets, bits, group, symmetric) in enumerate(case["packed_schemes"]):
        groups[f"group_{i}"] = {
            "format": "pack-quantized",
            "input_activations": None,
            "output_activations": None,
            "targets": targets,
            "weights": {
                "actorder": None,
                "block_structure": None,
                "dynamic": False,
                "group_size": group,
                "num_bits": bits,
                "observer": "minmax",
                "observer_kwargs": {},
                "strategy": "group" if group else "channel",
                "symmetric": symmetric,
                "type": "int",
            },
        }
    cfg["quantization_config"] = {
        "config_groups": groups,
        "format": "pack-quantized",
        "ignore": ["lm_head", "re:.*mlp.gate$"],
        "kv_cache_scheme": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
    }
    (out_dir / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")


# GPTQ's and AWQ's QuantLinear layouts (engine/common/quant_linear.h). Each linear weight [R outputs, C inputs] but
# the router's, the embeddings' and the head's is quantized per group of `group` inputs to unsigned values q with a
# zero point z: symmetric, z = 2^(bits-1) and s = max|x| / (2^(bits-1) - 1); else s = (max(x, 0) - min(x, 0)) /
# (2^bits - 1) and z = round(-min(x, 0) / s). A weight is (q - z) * s in the scales' dtype (F16). This script packs
# them (GPTQ: values down the inputs, zero points across the outputs, v1 storing z - 1; AWQ: 8 outputs to a word in
# its nibble order); GPTQModel, which transformers loads both with, unpacks them for the reference. GPTQ's activation
# order (desc_act) quantizes the inputs in another order (the Hessian's diagonal, largest first; here the weight's
# column norms, largest first, for want of activations) and groups them in that order: input c's group is
# g_idx[c] = rank(c) // group; the values stay in input order.
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def quant_linear_quantize(w, bits, group, sym, desc_act=False):
    """w [R, C] -> (q int64 [R, C], z int64 [R, C/group], s [R, C/group] in w's dtype, g_idx int32 [C])."""
    r, c = w.shape
    if desc_act:
        perm = torch.argsort(w.float().square().sum(0), descending=True, stable=True)  # the order they are quantized in
        q, z, s, _ = quant_linear_quantize(w[:, perm], bits, group, sym)
        rank = torch.argsort(perm)  # input c is quantized rank[c]-th
        return q[:, rank], z, s, (rank // group).to(torch.int32)
    x = w.float().reshape(r, c // group, group)
    maxq = 2**bits - 1
    if sym:
        amax = x.abs().amax(dim=-1)
        s = torch.where(amax > 0, amax / (2 ** (bits - 1) - 1), torch.ones_like(amax)).to(w.dtype)
        z = torch.full(s.shape, 2 ** (bits - 1), dtype=torch.int64)
    else:
        lo, hi = x.amin(dim=-1).clamp(max=0), x.amax(dim=-1).clamp(min=0)
        s = torch.where(hi > lo, (hi - lo) / maxq, torch.ones_like(lo)).to(w.dtype)
        z = torch.round(-lo / s.float()).clamp(0, maxq).to(torch.int64)
    q = torch.round(x / s.float()[..., None] + z[..., None]).clamp(0, maxq).to(torch.int64).reshape(r, c)
    return q, z, s, (torch.arange(c) // group).to(torch.int32)


def quant_linear_dequantize(q, z, s, g_idx):
    g = g_idx.long()
    return (q - z[:, g]).to(s.dtype) * s[:, g]


def pack_words(v, bits, order=None):
    """v int64 [..., N] -> int32 [..., N * bits / 32]: 32 / bits values to a word from bit 0 up (value order[k] of
    each run in field k)."""
    per = 32 // bits
    runs = v.reshape(*v.shape[:-1], v.shape[-1] // per, per)
    if order is not None:
        runs = runs[..., order]
    words = torch.zeros(runs.shape[:-1], dtype=torch.int64)
    for k in range(per):
        words |= (runs[..., k] & (2**bits - 1)) << (bits * k)
    return (words - ((words >> 31) << 32)).to(torch.int32)  # the same 32 bits, signed


def quant_linear_pack(q, z, s, g_idx, bits, method, fmt):
    """The QuantLinear tensors of one weight: {suffix: tensor}."""
    if method == "gptq":
        stored_z = z - 1 if fmt == "gptq" else z  # v1 stores z - 1
        return {
            "qweight": pack_words(q, bits).T.contiguous(),
            "qzeros": pack_words(stored_z.T.contiguous(), bits),
            "scales": s.T.contiguous(),
            "g_idx": g_idx,
        }
    return {
        "qweight": pack_words(q.T.contiguous(), bits, AWQ_ORDER),
        "qzeros": pack_words(z.T.contiguous(), bits, AWQ_ORDER),
        "scales": s.T.contiguous(),
    }


def quant_linear_reference_weight(t, bits, group, method, fmt, sym=True, desc_act=False):
    """GPTQModel's dequantization of one weight's tensors: [R, C] in the scales' dtype."""
    if method == "awq":
        from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm

        return dequantize_gemm(t["qweight"], t["qzeros"], t["scales"], bits, group).T.contiguous()
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear
    from gptqmodel.utils.model import convert_gptq_v1_to_v2_format_module

    rows, cols = t["scales"].shape[1], t["g_idx"].shape[0]
    m = TorchLinear(bits=bits, group_size=group, sym=sym, desc_act=desc_act, in_features=cols, out_features=rows,
                    bias=False, pack_dtype=torch.int32, register_buffers=True)
    for k in ("qweight", "qzeros", "scales", "g_idx"):  # the scales keep their dtype (the module's buffer is F16)
        setattr(m, k, t[k].clone())
    if fmt == "gptq":
        convert_gptq_v1_to_v2_format_module(m, bits, torch.int32)
    m.post_init()
    return m.dequantize_weight().T.contiguous()


def quant_linear_rewrite(out_dir, case):
    """Replace the linear weights of a saved checkpoint by GPTQ's or AWQ's tensors and describe them in config.json,
    as GPTQModel and AutoAWQ write them; write the reference's weights, dequantized by GPTQModel, to a sibling
    folder <out_dir>_dequantized."""
    from safetensors.torch import load_file, save_file as save_torch

    ql = case["quant_linear"]
    bits, group, method, fmt = ql["bits"], ql["group"], ql["method"], ql["format"]
    desc_act = ql.get("desc_act", False)
    path = out_dir / "model.safetensors"
    out, dense = {}, {}
    for name, t in load_file(str(path)).items():
        if not quantized_linear(name, t.ndim):
            out[name] = dense[name] = t
            continue
        q, z, s, g_idx = quant_linear_quantize(t, bits, group, ql["sym"], desc_act)
        packed = quant_linear_pack(q, z, s, g_idx, bits, method, fmt)
        module = name[: -len(".weight")]
        for k, v in packed.items():
            out[module + "." + k] = v
        dense[name] = quant_linear_reference_weight(packed, bits, group, method, fmt, ql["sym"], desc_act)
        if not torch.equal(dense[name], quant_linear_dequantize(q, z, s, g_idx)):
            raise RuntimeError(f"{name}: GPTQModel unpacks other weights than were packed")
    ref_dir = out_dir.parent / (out_dir.name + "_dequantized")
    if ref_dir.exists():
        shutil.rmtree(ref_dir)
    shutil.copytree(out_dir, ref_dir)
    save_torch(dense, str(ref_dir / "model.safetensors"), metadata={"format": "pt"})
    save_torch(out, str(path), metadata={"format": "pt"})
    cfg = json.loads((out_dir / "config.json").read_text())
    if method == "gptq":
        cfg["quantization_config"] = {
            "bits": bits, "checkpoint_format": fmt, "damp_percent": 0.01, "desc_act": desc_act, "group_size": group,
            "quant_method": "gptq", "static_groups": False, "sym": ql["sym"], "true_sequential": True,
        }
    else:
        cfg["quantization_config"] = {
            "bits": bits, "group_size": group, "modules_to_not_convert": None, "quant_method": "awq",
            "version": fmt, "zero_point": True,
        }
    (out_dir / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")


# MXFP4 (transformers' integrations/mxfp4.py): blocks of 32 values along a row of the output-major weight,
# each an E2M1 code (low nibble first) times a shared 2^(scale - 127).
FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_quantize(w):
    """w [..., K], K % 32 == 0 -> (blocks [..., K/32, 16] uint8, scales [..., K/32] uint8). The scale is the
    smallest power of two that brings the block's largest magnitude within 6; values round to the nearest code."""
    *pre, k = w.shape
    g = w.reshape(*pre, k // 32, 32)
    amax = g.abs().amax(-1).clamp(min=1e-30)
    e = torch.ceil(torch.log2(amax / 6.0)).clamp(-127, 127)
    codes = (g / torch.exp2(e)[..., None])[..., None].sub(FP4_VALUES).abs().argmin(-1)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    return blocks, (e + 127).to(torch.uint8)


def mxfp4_dequantize(blocks, scales):
    lo, hi = FP4_VALUES[(blocks & 15).long()], FP4_VALUES[(blocks >> 4).long()]
    vals = torch.stack([lo, hi], -1).reshape(*blocks.shape[:-1], 32) * torch.exp2(scales.float() - 127)[..., None]
    return vals.reshape(*blocks.shape[:-2], -1)


def mxfp4_rewrite(out_dir):
    """Replace the stacked experts of a saved GPT-OSS checkpoint by their MXFP4 blocks and scales, and say so in
    config.json, as the released checkpoints are laid out."""
    from safetensors.torch import load_file, save_file as save_torch

    path = out_dir / "model.safetensors"
    tensors = load_file(str(path))
    out = {}
    for name, t in tensors.items():
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            blocks, scales = mxfp4_quantize(t.transpose(1, 2).contiguous())  # stored input-major; MXFP4 is per output row
            out[name + "_blocks"], out[name + "_scales"] = blocks, scales
        else:
            out[name] = t
    save_torch(out, str(path), metadata={"format": "pt"})
    cfg = json.loads((out_dir / "config.json").read_text())
    cfg["quantization_config"] = {
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
        "quant_method": "mxfp4",
    }
    (out_dir / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")

# ----------------------------------------------------------------------------------------------
# model construction


def build_model(case, seed):
    cfg_cls, model_cls = FAMILIES[case["family"]]
    cfg = cfg_cls(**copy.deepcopy(case["config"]), initializer_range=case["init_std"])
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(cfg)
    model.eval()
    # Overwrite every parameter from our own seeded generator so the weights do not depend on
    # transformers' init rules (which leave norms at 1 and biases at 0: such values would hide
    # an engine that forgets a norm weight or a bias).
    gen = torch.Generator().manual_seed(seed)
    std = case["init_std"]
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                v = torch.rand(p.shape, generator=gen, dtype=torch.float32) + 0.5  # U(0.5, 1.5)
            elif name.endswith(".bias"):
                v = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            else:
                v = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            p.copy_(v)
        # The selection-only router bias is a buffer, zero at init: a zero bias would hide an engine
        # that ignores it. Its spread is that of the sigmoid scores, so it changes selections.
        for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn(b.shape, generator=gen, dtype=torch.float32) * 0.1)
    gc = case["config"]
    model.generation_config = GenerationConfig(
        bos_token_id=gc.get("bos_token_id"),
        eos_token_id=gc.get("eos_token_id"),
        pad_token_id=gc.get("pad_token_id"),
        do_sample=False,
    )
    return model


def rewrite_config_hub_style(path):
    """Turn a transformers-5 config.json into the layout of the published checkpoints."""
    cfg = json.loads(path.read_text())
    out = {}
    for key, value in cfg.items():
        if key == "rope_parameters":
            out["rope_theta"] = value["rope_theta"]
            if value.get("rope_type", "default") == "default":
                out["rope_scaling"] = None
            else:  # the older layout: {"type": ..., the type's settings}
                scaling = {k: v for k, v in value.items() if k not in ("rope_type", "rope_theta")}
                out["rope_scaling"] = dict(type=value["rope_type"], **scaling)
        elif key == "dtype":
            out["torch_dtype"] = value
        elif key == "num_local_experts" and cfg["model_type"] in ("qwen3_moe", "qwen2_moe"):
            out["num_experts"] = value
        elif key == "head_dim" and value is None:
            continue
        else:
            out[key] = value
    path.write_text(json.dumps(dict(sorted(out.items())), indent=2) + "\n")


def save_checkpoint(model, case, out_dir):
    if out_dir.exists():
        shutil.rmtree(out_dir)
    dtype = STORAGE_DTYPES[case.get("weights_dtype", "float32")]
    to_save = copy.deepcopy(model).to(dtype) if dtype != torch.float32 else model
    kwargs = {}
    if case.get("max_shard_size"):
        kwargs["max_shard_size"] = case["max_shard_size"]
    to_save.save_pretrained(out_dir, **kwargs)
    if case["config_style"] == "hub":
        rewrite_config_hub_style(out_dir / "config.json")
    if case.get("quantize") == "mxfp4":
        mxfp4_rewrite(out_dir)
    if case.get("quantize") == "fp8":
        fp8_rewrite(out_dir, case)
    if case.get("quantize") == "packed_int":
        packed_rewrite(out_dir, case)
    if case.get("quantize") == "quant_linear":
        quant_linear_rewrite(out_dir, case)


def load_reference_model(case, out_dir):
    _, model_cls = FAMILIES[case["family"]]
    extra = {}
    if case.get("quantize") == "mxfp4":
        extra = {"quantization_config": Mxfp4Config(dequantize=True)}
    if case.get("quantize") == "fp8":
        extra = {"quantization_config": FineGrainedFP8Config(dequantize=True, weight_block_size=case["fp8_tile"])}
    if case.get("quantize") == "packed_int":
        extra = {"quantization_config": CompressedTensorsConfig(dequantize=True)}
    if case.get("quantize") == "quant_linear":  # GPTQModel's dequantized weights (quant_linear_rewrite)
        out_dir = out_dir.parent / (out_dir.name + "_dequantized")
    model = model_cls.from_pretrained(
        out_dir,
        dtype=torch.float32,
        attn_implementation="eager",
        experts_implementation="eager",
        **extra,
    )
    if case.get("quantize") == "packed_int":
        model = model.float()  # transformers leaves the stacked experts in the scales' dtype; widening is exact
    model.eval()
    return model


# ----------------------------------------------------------------------------------------------
# reference computation


class RouterCapture:
    """Forward hooks on every router module (`layers[i].mlp.gate`, a *TopKRouter in transformers 5;
    Mixtral's block_sparse_moe is renamed to mlp at load time). The router returns
    (router_logits, routing_weights, selected_indices); we keep the logits and the indices the
    model itself used."""

    def __init__(self, model):
        self.layers = []
        self.gates = {}
        self.biases = {}
        self.records = {}
        self.handles = []
        for idx, layer in enumerate(model.model.layers):
            gate = getattr(layer.mlp, "gate", None) or getattr(layer.mlp, "router", None)  # GPT-OSS: router
            if gate is None or not type(gate).__name__.lower().endswith("topkrouter"):  # Glm4MoeTopkRouter
                continue
            self.gates[idx] = gate
            # The selection bias lives on the router (GLM-4.5, DeepSeek-V3), on the MoE block (MiniMax-M2) or
            # in the router's moe_statics (ERNIE-4.5).
            holders = [gate, layer.mlp, getattr(gate, "moe_statics", None)]
            biases = [getattr(h, "e_score_correction_bias", None) for h in holders if h is not None]
            self.biases[idx] = next((b for b in biases if b is not None), None)
            self.layers.append(idx)
            self.handles.append(gate.register_forward_hook(self._hook(idx)))
        self.top_k = model.config.num_experts_per_tok if self.layers else 0

    def _hook(self, idx):
        def fn(module, args, output):
            logits, _weights, indices = output
            self.records.setdefault(idx, []).append((logits.detach().float().clone(), indices.detach().clone()))

        return fn

    def clear(self):
        self.records = {}

    def single(self, idx):
        recs = self.records[idx]
        assert len(recs) == 1, f"layer {idx}: expected one router call, got {len(recs)}"
        return recs[0]


def router_choice(gate, bias, logits, k):
    """The experts the router rule picks from its logits, and the smallest margin of any decision on
    the way (a reference is robust only when every margin is clear of rounding).

    Softmax routers: top-k of softmax(logits); the margin is p_k - p_(k+1).
    Sigmoid routers with a selection bias and groups (GLM-4.5, DeepSeek-V3 noaux_tc): scores
    s = sigmoid(logits) + bias; groups scored by the sum of their two best s, the topk_group best
    kept; top-k of s within them. Margins: between the kept and the first dropped group, and
    between the k-th and (k+1)-th candidate of the kept groups."""
    logits = logits.float()
    if bias is None and getattr(gate, "topk_method", None) == "group_limited_greedy":
        # DeepSeek-V2: softmax; groups scored by their best probability, the topk_group best kept.
        probs = torch.softmax(logits, dim=-1)
        n_tok, n_exp = probs.shape
        group_scores = probs.view(n_tok, gate.num_group, n_exp // gate.num_group).max(dim=-1).values
        g = torch.sort(group_scores, dim=-1, descending=True).values
        gap = float((g[:, gate.topk_group - 1] - g[:, gate.topk_group]).min())
        kept = torch.topk(group_scores, gate.topk_group, dim=-1).indices
        mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, kept, True)
        masked = probs.masked_fill(~mask.repeat_interleave(n_exp // gate.num_group, dim=1), 0.0)
        top = torch.topk(masked, k + 1, dim=-1)
        return top.indices[:, :k], min(gap, float((top.values[:, k - 1] - top.values[:, k]).min()))
    if bias is None:
        probs = torch.softmax(logits, dim=-1)
        if k >= probs.shape[-1]:
            return torch.topk(probs, k, dim=-1).indices, float("inf")
        top = torch.topk(probs, k + 1, dim=-1)
        return top.indices[:, :k], float((top.values[:, k - 1] - top.values[:, k]).min())
    # ERNIE-4.5 adds its bias to softmax probabilities, the others to sigmoid scores.
    softmax = type(gate).__name__.startswith("Ernie")
    s = (torch.softmax(logits, dim=-1) if softmax else torch.sigmoid(logits)) + bias.float().reshape(-1)
    n_tok, n_exp = s.shape
    n_group, topk_group = getattr(gate, "num_group", 1), getattr(gate, "topk_group", 1)  # MiniMax-M2: no groups
    groups = s.view(n_tok, n_group, n_exp // n_group)
    group_scores = groups.topk(2, dim=-1).values.sum(-1)
    gap = float("inf")
    if topk_group < n_group:
        g = torch.sort(group_scores, dim=-1, descending=True).values
        gap = float((g[:, topk_group - 1] - g[:, topk_group]).min())
    kept = torch.topk(group_scores, topk_group, dim=-1).indices
    mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, kept, True)
    masked = s.masked_fill(~mask.repeat_interleave(n_exp // n_group, dim=1), float("-inf"))
    top = torch.topk(masked, min(k + 1, n_exp), dim=-1)
    if k < n_exp:
        margin = top.values[:, k - 1] - top.values[:, k]
        gap = min(gap, float(margin[torch.isfinite(margin)].min()) if torch.isfinite(margin).any() else gap)
    return top.indices[:, :k], gap


def top2_gap(logits):
    top = torch.topk(logits.float(), 2, dim=-1).values
    return (top[..., 0] - top[..., 1]).min().item()


def compute_reference(model, prompt, eos_id):
    """Returns (reference dict, diagnostics dict, list of failure strings)."""
    failures = []
    cap = RouterCapture(model)
    k = cap.top_k
    with torch.no_grad():
        # 1. prompt forward
        cap.clear()
        out = model(input_ids=prompt[None, :], use_cache=False)
        logits = out.logits[0].float().clone()
        router_topk = []
        prompt_router_gap = float("inf")
        for idx in cap.layers:
            rlogits, rindices = cap.single(idx)
            expect, gap = router_choice(cap.gates[idx], cap.biases[idx], rlogits, k)
            if not torch.equal(torch.sort(expect, -1).values, torch.sort(rindices, -1).values):
                failures.append(f"layer {idx}: model-selected experts differ from the router rule")
            router_topk.append(rindices.to(torch.int64))
            prompt_router_gap = min(prompt_router_gap, gap)

        # 2. greedy generation (cached, as a user would run it)
        cap.clear()
        gen_cfg = GenerationConfig(
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=0,
            eos_token_id=None,
            pad_token_id=0,
            bos_token_id=None,
            return_dict_in_generate=True,
            output_logits=True,
        )
        gen = model.generate(
            prompt[None, :],
            attention_mask=torch.ones(1, prompt.shape[0], dtype=torch.long),
            generation_config=gen_cfg,
        )
        greedy = gen.sequences[0, prompt.shape[0]:].clone()
        if greedy.shape[0] != NEW_TOKENS:  # it stopped at an eos id: nothing below can be compared
            for h in cap.handles:
                h.remove()
            return None, None, failures + [f"generate returned {greedy.shape[0]} tokens"]
        step_logits = torch.stack([s[0].float() for s in gen.logits])
        gen_gap = top2_gap(step_logits)

        # 3. full forward over prompt + greedy tokens (no cache): must agree with generate
        cap.clear()
        full_ids = torch.cat([prompt, greedy])
        full = model(input_ids=full_ids[None, :], use_cache=False).logits[0].float()
        full_steps = full[prompt.shape[0] - 1 : prompt.shape[0] - 1 + NEW_TOKENS]
        argmax = full_steps.argmax(-1)
        if not torch.equal(argmax, greedy):
            failures.append("full-forward argmax disagrees with generate()")
        full_gap = top2_gap(full_steps)
        cache_vs_full = (full_steps - step_logits).abs().max().item()
        prompt_vs_full = (full[: prompt.shape[0]] - logits).abs().max().item()
        all_router_gap = float("inf")
        for idx in cap.layers:
            rlogits, _ = cap.single(idx)
            all_router_gap = min(all_router_gap, router_choice(cap.gates[idx], cap.biases[idx], rlogits, k)[1])

    for h in cap.handles:
        h.remove()

    if min(gen_gap, full_gap) <= LOGIT_GAP:
        failures.append(f"greedy top1-top2 logit gap {min(gen_gap, full_gap):.2e} <= {LOGIT_GAP}")
    if cap.layers and min(prompt_router_gap, all_router_gap) <= ROUTER_GAP:
        failures.append(f"router k/k+1 probability gap {min(prompt_router_gap, all_router_gap):.2e} <= {ROUTER_GAP}")
    if len(set(greedy.tolist())) < MIN_DISTINCT_GREEDY:
        failures.append(f"only {len(set(greedy.tolist()))} distinct greedy tokens (< {MIN_DISTINCT_GREEDY})")
    eos_ids = eos_id if isinstance(eos_id, list) else [eos_id]
    if any(t in eos_ids for t in greedy.tolist()):
        failures.append("eos id appears among the greedy tokens")

    ref = {
        "prompt_ids": prompt.numpy().astype(np.int64),
        "logits": logits.numpy().astype(np.float32),
        "router_topk": (
            torch.stack(router_topk).numpy().astype(np.int64)
            if router_topk
            else np.zeros((0, prompt.shape[0], 0), dtype=np.int64)
        ),
        "router_layers": np.asarray(cap.layers, dtype=np.int64),
        "greedy_ids": greedy.numpy().astype(np.int64),
    }
    diag = dict(
        logits_std=float(logits.std()),
        greedy_gap=min(gen_gap, full_gap),
        router_gap=min(prompt_router_gap, all_router_gap) if cap.layers else None,
        cache_vs_full=cache_vs_full,
        prompt_vs_full=prompt_vs_full,
        distinct_greedy=len(set(greedy.tolist())),
    )
    return ref, diag, failures


def make_prompt(seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(PROMPT_ID_LOW, PROMPT_ID_HIGH, (PROMPT_LEN,), generator=gen, dtype=torch.int64)


def check_loaded_weights(model, loaded, dtype, case):
    """The reloaded fp32 model must hold exactly the storage-dtype-rounded weights (MXFP4 experts, FP8 linear
    weights: exactly their quantized values)."""
    quantize = case.get("quantize")
    src = dict(model.named_parameters())
    for name, p in loaded.named_parameters():
        expect = src[name].detach().to(dtype).float()
        if quantize == "mxfp4" and name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            expect = mxfp4_dequantize(*mxfp4_quantize(expect.transpose(1, 2).contiguous())).transpose(1, 2)
        if quantize == "fp8" and quantized_linear(name, expect.ndim):
            tile = case["fp8_tile"]
            expect = fp8_dequantize(*fp8_quantize(expect, tile, case["fp8_scale_dtype"]), tile)
        if quantize == "packed_int":
            # transformers stacks the experts ([E, 2I, H] gate and up, [E, H, I] down); groups run along rows, so a
            # stacked expert quantizes as its separate weights do.
            scheme = packed_scheme(case, name if name.endswith(".weight") else name + ".weight", min(expect.ndim, 2))
            if scheme is not None:
                bits, group, symmetric = scheme
                rounded = expect.to(dtype)
                mats = rounded if rounded.ndim == 3 else rounded[None]
                expect = torch.stack(
                    [packed_dequantize(*packed_quantize(m, bits, group, symmetric), group) for m in mats]
                ).float()
                expect = expect.reshape(rounded.shape)
        if quantize == "quant_linear" and quantized_linear(name, expect.ndim):
            ql = case["quant_linear"]
            desc_act = ql.get("desc_act", False)
            mats = expect.to(dtype) if expect.ndim == 3 else expect.to(dtype)[None]

            def requantized(m):
                return quant_linear_dequantize(*quant_linear_quantize(m, ql["bits"], ql["group"], ql["sym"], desc_act))

            # transformers stacks each expert's gate and up; activation order ordered their inputs one by one
            split = 2 if desc_act and name.endswith("gate_up_proj") else 1
            expect = torch.stack(
                [torch.cat([requantized(h) for h in m.chunk(split, dim=0)]) for m in mats]
            ).float().reshape(expect.shape)
        if not torch.equal(p.detach(), expect):
            raise RuntimeError(f"reloaded weight {name} differs from the {dtype}-rounded original")


# ----------------------------------------------------------------------------------------------
# driver


def dir_size(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def keep_identical_reference(new_path, old_path):
    """save_file writes the metadata map in hash order, so the bytes change run to run. When the
    committed file holds the same tensors and metadata, keep its bytes so a rerun leaves git clean."""
    if not old_path.exists():
        return
    with safe_open(str(new_path), "np") as a, safe_open(str(old_path), "np") as b:
        if a.metadata() != b.metadata() or set(a.keys()) != set(b.keys()):
            return
        for key in a.keys():
            ta, tb = a.get_tensor(key), b.get_tensor(key)
            if ta.dtype != tb.dtype or ta.shape != tb.shape or ta.tobytes() != tb.tobytes():
                return
    shutil.copyfile(old_path, new_path)


def generate_case(case, start_seed, tmp_root):
    final_dir = OUT_ROOT / case["name"]
    storage = case.get("weights_dtype", "float32")
    tries = 1 if case.get("same_weights_as_base") else MAX_SEED_TRIES
    for attempt in range(tries):
        seed = start_seed + attempt
        model = build_model(case, seed)
        work = tmp_root / case["name"]
        save_checkpoint(model, case, work)
        loaded = load_reference_model(case, work)
        check_loaded_weights(model, loaded, STORAGE_DTYPES[storage], case)
        ref, diag, failures = compute_reference(loaded, make_prompt(seed), case["config"].get("eos_token_id"))
        if failures:
            print(f"  {case['name']}: seed {seed} rejected: {'; '.join(failures)}")
            continue
        meta = {
            "model_type": loaded.config.model_type,
            "case": case["name"],
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "weights_dtype": storage,
            "seed": str(seed),
            "init_std": str(case["init_std"]),
            "config_style": case["config_style"],
        }
        save_file(ref, str(work / "reference.safetensors"), metadata=meta)
        keep_identical_reference(work / "reference.safetensors", final_dir / "reference.safetensors")
        for f in work.iterdir():
            f.chmod(0o644)  # save_pretrained writes its safetensors files as 0600
        if final_dir.exists():
            for name in ADDED_BY_OTHERS:  # keep what other scripts and commits put next to the checkpoint
                if (final_dir / name).exists():
                    shutil.copy2(final_dir / name, work / name)
            shutil.rmtree(final_dir)
        shutil.move(str(work), str(final_dir))
        return seed, ref, diag, loaded.config
    raise RuntimeError(f"{case['name']}: no robust seed in {tries} tries from {start_seed}")


def describe(config):
    c = config
    moe = ""
    n_exp = getattr(c, "num_experts", None) or getattr(c, "num_local_experts", None) or getattr(c, "n_routed_experts", None)
    if n_exp:
        moe = f" E={n_exp} k={c.num_experts_per_tok}"
        if hasattr(c, "norm_topk_prob"):
            moe += f" norm_topk={c.norm_topk_prob}"
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return (
        f"H={c.hidden_size} L={c.num_hidden_layers} nh={c.num_attention_heads} "
        f"nkv={c.num_key_value_heads} hd={hd}{moe} tied={c.tie_word_embeddings}"
    )


def main(argv):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    wanted = set(argv[1:]) or {c["name"] for c in CASES}
    unknown = wanted - {c["name"] for c in CASES}
    if unknown:
        raise SystemExit(f"unknown case(s): {sorted(unknown)}")
    # A derived case starts its seed search at its base's accepted seed: run the base too.
    wanted |= {c["base"] for c in CASES if c["name"] in wanted and c.get("base")}
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    tmp_root = OUT_ROOT / ".tmp_make_goldens"
    if tmp_root.exists():
        shutil.rmtree(tmp_root)
    tmp_root.mkdir()

    accepted = {}  # name -> (seed, ref)
    summary = []
    try:
        for case in CASES:
            if case["name"] not in wanted:
                continue
            base = case.get("base")
            start = accepted[base][0] if base else case["seed"]
            print(f"[{case['name']}]")
            seed, ref, diag, config = generate_case(case, start, tmp_root)
            if case.get("same_weights_as_base"):
                base_ref = accepted[base][1]
                for key in base_ref:
                    if not np.array_equal(base_ref[key], ref[key]):
                        raise RuntimeError(f"{case['name']}: {key} differs from {base}")
            accepted[case["name"]] = (seed, ref)
            size = dir_size(OUT_ROOT / case["name"])
            summary.append((case, seed, diag, config, size))
            print(
                f"  seed {seed}  {describe(config)}  logits std {diag['logits_std']:.2f}  "
                f"greedy gap {diag['greedy_gap']:.2e}  router gap "
                f"{'n/a' if diag['router_gap'] is None else format(diag['router_gap'], '.2e')}  "
                f"distinct greedy {diag['distinct_greedy']}  size {size / 1024:.0f} KiB"
            )
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    print("\nSummary")
    print(f"{'case':24} {'seed':>5} {'dtype':>9} {'KiB':>6}  moe layers  config")
    for case, seed, diag, config, size in summary:
        layers = accepted[case["name"]][1]["router_layers"].tolist()
        print(
            f"{case['name']:24} {seed:5d} {case.get('weights_dtype', 'float32'):>9} {size / 1024:6.0f}  "
            f"{str(layers):10}  {describe(config)}"
        )
        print(
            f"{'':24} logits std {diag['logits_std']:.2f}, min greedy gap {diag['greedy_gap']:.2e}, "
            f"min router gap {'n/a' if diag['router_gap'] is None else format(diag['router_gap'], '.2e')}, "
            f"cache-vs-full {diag['cache_vs_full']:.1e}, distinct greedy tokens {diag['distinct_greedy']}"
        )
    total = dir_size(OUT_ROOT)
    print(f"total size of {OUT_ROOT}: {total / 1024 / 1024:.2f} MiB (budget {SIZE_BUDGET / 1024 / 1024:.0f} MiB)")
    if total > SIZE_BUDGET:
        raise SystemExit("size budget exceeded")


if __name__ == "__main__":
    main(sys.argv)
