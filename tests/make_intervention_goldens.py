#!/usr/bin/env python3
"""Reference logits for router interventions, from transformers (dev-time only; outputs committed).

For each case below, loads the committed tiny checkpoint tests/data/models/<case>/ in transformers
and runs its reference prompt twice more:

  * mask:  the experts listed in MASK[layer] get -inf added to their router logits before the
           softmax (what engine/hooks/interventions.h defines: a masked expert gets probability 0
           and is never selected; softmax renormalises over the others). transformers' own router
           code runs unchanged after the logits (top-k, optional renormalisation).
  * dense: every router's top_k set to num_experts (the same as config num_experts_per_tok =
           num_experts): every expert runs for every token.

Writes tests/data/models/<case>/interventions.safetensors:
  prompt_ids [T] i64, mask_logits [T, V] f32, mask_topk [L_moe, T, k] i64 (the experts transformers
  selected with the mask), dense_logits [T, V] f32; metadata "mask": JSON {layer: [experts]}.

    python3 tests/make_intervention_goldens.py
"""

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent / "data" / "models"
CASES = ["qwen3_moe", "olmoe"]  # renormalised and not renormalised top-k
# Layer → masked experts. Different sets per layer, and a layer without a mask, so per-layer
# application is tested too. Layers past a case's depth are ignored.
MASK = {0: [1, 4], 1: [0, 2, 5]}


def routers(model):
    for idx, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is not None and type(gate).__name__.endswith("TopKRouter"):
            yield idx, gate


def mask_router(gate, experts):
    """Adds -inf to the masked columns of the router logits, then runs transformers' router code."""
    original = type(gate).forward
    add = torch.zeros(gate.num_experts)
    add[experts] = float("-inf")

    def forward(hidden_states):
        # Same as Qwen3MoeTopKRouter / OlmoeTopKRouter.forward, with the mask added to the logits.
        hidden_states = hidden_states.reshape(-1, gate.hidden_dim)
        router_logits = F.linear(hidden_states, gate.weight) + add
        router_probs = torch.nn.functional.softmax(router_logits, dtype=torch.float, dim=-1)
        top_value, indices = torch.topk(router_probs, gate.top_k, dim=-1)
        if gate.norm_topk_prob:
            top_value /= top_value.sum(dim=-1, keepdim=True)
        return router_logits, top_value.to(router_logits.dtype), indices

    assert original.__qualname__.endswith("TopKRouter.forward")
    gate.forward = forward


def load(case):
    model = AutoModelForCausalLM.from_pretrained(
        ROOT / case, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    )
    model.eval()
    return model


def main():
    for case in CASES:
        ref = load_file(str(ROOT / case / "reference.safetensors"))
        prompt = torch.from_numpy(ref["prompt_ids"]).unsqueeze(0)

        model = load(case)
        mask = {l: e for l, e in MASK.items() if l < model.config.num_hidden_layers}
        captured = {}
        for idx, gate in routers(model):
            if idx in mask:
                mask_router(gate, mask[idx])
            gate.register_forward_hook(lambda m, a, out, idx=idx: captured.__setitem__(idx, out[2].clone()))
        with torch.no_grad():
            mask_logits = model(prompt).logits[0].float().numpy()
        mask_topk = np.stack([captured[i].numpy().astype(np.int64) for i in sorted(captured)])
        for idx, experts in mask.items():
            assert not np.isin(mask_topk[sorted(captured).index(idx)], experts).any()

        model = load(case)
        for _, gate in routers(model):
            gate.top_k = gate.num_experts
        with torch.no_grad():
            dense_logits = model(prompt).logits[0].float().numpy()

        out = ROOT / case / "interventions.safetensors"
        save_file(
            {
                "prompt_ids": ref["prompt_ids"],
                "mask_logits": np.ascontiguousarray(mask_logits),
                "mask_topk": np.ascontiguousarray(mask_topk),
                "dense_logits": np.ascontiguousarray(dense_logits),
            },
            str(out),
            metadata={"mask": json.dumps({str(k): v for k, v in mask.items()}), "generator": "tests/make_intervention_goldens.py"},
        )
        base = ref["logits"]
        print(f"{case}: wrote {out.name}; max |mask - base| {np.abs(mask_logits - base).max():.3f}, "
              f"max |dense - base| {np.abs(dense_logits - base).max():.3f}")


if __name__ == "__main__":
    main()
