#!/usr/bin/env python3
"""RoPE frequencies from transformers' own RoPE initialisers, for rope_frequencies_test.

Dev-time only: CI never runs this. Writes tests/data/rope/yarn_reference.json: for each case a
config.json as a user's checkpoint would carry it, the inverse frequencies transformers computes for
it (modeling_rope_utils.ROPE_INIT_FUNCTIONS) and its cos/sin factor (attention_scaling).

    python3 tests/make_rope_reference.py
"""

import json
from pathlib import Path

import transformers
from transformers import DeepseekV3Config, Qwen3MoeConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

OUT = Path(__file__).resolve().parent / "data" / "rope" / "yarn_reference.json"

QWEN3 = dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
             num_hidden_layers=2, vocab_size=1000, max_position_embeddings=131072)
DEEPSEEK = dict(hidden_size=1024, num_attention_heads=16, num_key_value_heads=16, num_hidden_layers=2,
                vocab_size=1000, q_lora_rank=None, kv_lora_rank=512, qk_nope_head_dim=128,
                qk_rope_head_dim=64, v_head_dim=128, max_position_embeddings=163840)

CASES = [
    # Qwen3's opt-in YaRN (its model card): factor 4 over 32768; cos/sin x get_mscale(4).
    ("qwen3_yarn_x4", Qwen3MoeConfig, "qwen3_moe", QWEN3,
     {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 32768}),
    # DeepSeek-V2-Lite's settings (mscale = mscale_all_dim: cos/sin unscaled).
    ("deepseek_v2_lite", DeepseekV3Config, "deepseek_v3", DEEPSEEK,
     {"rope_type": "yarn", "rope_theta": 1e4, "factor": 40.0, "original_max_position_embeddings": 4096,
      "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}),
    # Unequal mscales, other betas, no truncation of the correction range.
    ("yarn_untruncated", DeepseekV3Config, "deepseek_v3", DEEPSEEK,
     {"rope_type": "yarn", "rope_theta": 5e4, "factor": 8.0, "original_max_position_embeddings": 2048,
      "beta_fast": 16, "beta_slow": 2, "mscale": 1.0, "mscale_all_dim": 0.5, "truncate": False}),
    # An explicit attention_factor wins over the mscales.
    ("yarn_attention_factor", Qwen3MoeConfig, "qwen3_moe", QWEN3,
     {"rope_type": "yarn", "rope_theta": 1e6, "factor": 2.0, "original_max_position_embeddings": 65536,
      "attention_factor": 1.25}),
]


def main():
    out = {"transformers": transformers.__version__, "cases": []}
    for name, cls, model_type, shape, rope in CASES:
        cfg = cls(**shape, rope_parameters=dict(rope))
        inv_freq, factor = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
        config_json = dict(model_type=model_type, **shape, rope_parameters=dict(rope))
        if model_type == "qwen3_moe":
            config_json.update(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, intermediate_size=128)
        else:
            config_json.update(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                               intermediate_size=128, n_group=1, topk_group=1)
        out["cases"].append(dict(name=name, config=config_json, inv_freq=[float(v) for v in inv_freq],
                                 attention_factor=float(factor)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
