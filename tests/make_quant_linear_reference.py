#!/usr/bin/env python3
"""GPTQ's and AWQ's packed weights and their values from GPTQModel itself, for quant_linear_test.

Dev-time only: CI never runs this. It needs GPTQModel (pip install gptqmodel; 7.7 made the committed file), which
transformers loads GPTQ and AWQ checkpoints with. Each weight is packed by make_goldens.py's packer and dequantized
by GPTQModel: GPTQ by its torch kernel's dequantize_weight (after its v1-to-v2 conversion for v1), AWQ by its
dequantize_gemm. Values and zero points are drawn uniformly from their whole range, so v1's zero points include
some 0, stored as 15 (255), whose word add carries into the next zero point, as GPTQModel does.
    gptq_i4_g32_v1_f16     4-bit, v1, F16 scales per group of 32, symmetric (z = 8)   16 x 64
    gptq_i4_g16_v1_f16     4-bit, v1, F16 per group of 16, zero points                 24 x 48
    gptq_i8_row_v2_bf16    8-bit, v2, one BF16 scale per row (group_size -1), zero points  12 x 96
    gptq_i8_g32_v1_f32     8-bit, v1, F32 per group of 32, zero points                 8 x 64
    awq_i4_g32_f16         AWQ 4-bit, F16 per group of 32                               24 x 64
    awq_i4_g16_bf16        AWQ 4-bit, BF16 per group of 16                              16 x 48
    gptq_i4_g16_v1_f16_act_order   as gptq_i4_g16_v1_f16, with activation order (desc_act: g_idx a random
                                   permutation's ranks over the group size)                      24 x 64
    gptq_i8_g32_v2_bf16_act_order  8-bit, v2, BF16 per group of 32, symmetric, activation order   8 x 96
(rows = outputs x cols = inputs). Writes tests/data/quant_linear/reference.safetensors with, per weight <w>, its
tensors as a checkpoint holds them (<w>.qweight, <w>.qzeros, <w>.scales, and for GPTQ <w>.g_idx) and
    <w>.values  F32 [rows, cols]  the dequantized weight, widened to F32 (exactly)

    python3 tests/make_quant_linear_reference.py
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_goldens import quant_linear_pack, quant_linear_reference_weight  # noqa: E402

OUT = Path(__file__).resolve().parent / "data" / "quant_linear" / "reference.safetensors"
CASES = [  # name, method, format, bits, group (-1: per row), scale dtype, rows, cols, symmetric
    ("gptq_i4_g32_v1_f16", "gptq", "gptq", 4, 32, torch.float16, 16, 64, True),
    ("gptq_i4_g16_v1_f16", "gptq", "gptq", 4, 16, torch.float16, 24, 48, False),
    ("gptq_i8_row_v2_bf16", "gptq", "gptq_v2", 8, -1, torch.bfloat16, 12, 96, False),
    ("gptq_i8_g32_v1_f32", "gptq", "gptq", 8, 32, torch.float32, 8, 64, False),
    ("awq_i4_g32_f16", "awq", "gemm", 4, 32, torch.float16, 24, 64, False),
    ("awq_i4_g16_bf16", "awq", "gemm", 4, 16, torch.bfloat16, 16, 48, False),
    ("gptq_i4_g16_v1_f16_act_order", "gptq", "gptq", 4, 16, torch.float16, 24, 64, False),
    ("gptq_i8_g32_v2_bf16_act_order", "gptq", "gptq_v2", 8, 32, torch.bfloat16, 8, 96, True),
]


def main():
    import gptqmodel

    gen = torch.Generator().manual_seed(7)
    out = {}
    for name, method, fmt, bits, group, dtype, rows, cols, sym in CASES:
        g = cols if group == -1 else group
        q = torch.randint(0, 2**bits, (rows, cols), generator=gen)
        if sym:
            z = torch.full((rows, cols // g), 2 ** (bits - 1))
        else:
            z = torch.randint(0, 2**bits, (rows, cols // g), generator=gen)
        s = (torch.rand(rows, cols // g, generator=gen) * 0.02 + 1e-3).to(dtype)
        act_order = name.endswith("_act_order")
        rank = torch.argsort(torch.randperm(cols, generator=gen)) if act_order else torch.arange(cols)
        g_idx = (rank // g).to(torch.int32)  # activation order: input c is quantized rank[c]-th
        t = quant_linear_pack(q, z, s, g_idx, bits, method, fmt)
        values = quant_linear_reference_weight(t, bits, group, method, fmt, sym, act_order)
        assert values.dtype == dtype and values.shape == (rows, cols), (values.dtype, values.shape)
        for k, v in t.items():
            out[f"{name}.{k}"] = v.contiguous()
        out[f"{name}.values"] = values.float().contiguous()
        carried = int(((z == 0).sum())) if fmt == "gptq" and not sym else 0
        print(f"{name}: {rows} x {cols}, zero points of 0 (v1 carries): {carried}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(OUT), metadata={"gptqmodel": gptqmodel.__version__, "torch": torch.__version__})
    OUT.chmod(0o644)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
