#!/usr/bin/env python3
"""compressed-tensors' pack-quantized weights and their values from compressed-tensors itself, for packed_int_test.

Dev-time only: CI never runs this. Eleven weights, each packed by compressed_tensors' pack_to_int32 and dequantized by
its PackedQuantizationCompressor.decompress (what transformers calls to load them):
    i4_g32_bf16    4-bit, a BF16 scale per group of 32     12 x 256  (the CPU's SIMD path)
    i4_g16_f16     4-bit, an F16 scale per group of 16      7 x 48   (groups narrower than the SIMD runs)
    i8_g64_f16     8-bit, an F16 scale per group of 64      9 x 128  (F16 rounding on the SIMD path)
    i8_row_f32     8-bit, one F32 scale per row (channel)  10 x 96
    i4_g128_bf16   4-bit, a BF16 scale per group of 128     5 x 384  (the SIMD path's tables per group)
    i4_row_f16     4-bit, one F16 scale per row             6 x 256  (likewise, F16 rounding)
    i4_g32_bf16_asym, i4_g128_f16_asym, i8_g16_f32_asym: asymmetric schemes, with zero points
    i4_g64_f32, i4_g64_f32_asym   4-bit, an F32 scale per group of 64  (the SIMD path's lookup of all four bytes)
Row 0 of each holds every value of its range in order. Some scales are small enough that the products are F16
subnormals. Writes tests/data/packed_int/reference.safetensors with, per weight <w>:
    <w>.packed  I32 [rows, cols * bits / 32]   weight_packed
    <w>.scale   its dtype [rows, groups]       weight_scale
    <w>.values  F32 [rows, cols]               the dequantized weight, widened to F32 (exactly)
    <w>.zero_point  I32 [rows * bits / 32 rounded up, groups]  weight_zero_point (asymmetric ones)

    python3 tests/make_packed_int_reference.py
"""

from pathlib import Path

import compressed_tensors
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent / "data" / "packed_int" / "reference.safetensors"
CASES = [  # name, bits, group (None: per row), scale dtype, rows, cols, symmetric
    ("i4_g32_bf16", 4, 32, torch.bfloat16, 12, 256, True),
    ("i4_g16_f16", 4, 16, torch.float16, 7, 48, True),
    ("i8_g64_f16", 8, 64, torch.float16, 9, 128, True),
    ("i8_row_f32", 8, None, torch.float32, 10, 96, True),
    ("i4_g128_bf16", 4, 128, torch.bfloat16, 5, 384, True),
    ("i4_row_f16", 4, None, torch.float16, 6, 256, True),
    ("i4_g32_bf16_asym", 4, 32, torch.bfloat16, 12, 256, False),
    ("i4_g128_f16_asym", 4, 128, torch.float16, 13, 256, False),  # (compressed-tensors 0.20 cannot unpack 8 rows or fewer)
    ("i8_g16_f32_asym", 8, 16, torch.float32, 7, 48, False),
    ("i4_g64_f32", 4, 64, torch.float32, 11, 192, True),
    ("i4_g64_f32_asym", 4, 64, torch.float32, 10, 128, False),
]


def main():
    gen = torch.Generator().manual_seed(5)
    out = {}
    for name, bits, group, dtype, rows, cols, symmetric in CASES:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1)
        q = torch.randint(lo, hi, (rows, cols), generator=gen, dtype=torch.int8)
        q[0, : hi - lo] = torch.arange(lo, hi, dtype=torch.int8)[: cols]
        groups = cols // group if group else 1
        scale = (torch.rand(rows, groups, generator=gen) * 0.02 + 1e-3).to(dtype)
        scale[rows - 1, 0] = torch.tensor(3e-7).to(dtype)  # F16: products below 6.1e-5 are subnormal
        args = QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, strategy="group" if group else "channel",
                                group_size=group)
        scheme = QuantizationScheme(targets=["Linear"], weights=args)
        packed = pack_to_int32(q, bits)
        state = {"weight_packed": packed, "weight_scale": scale, "weight_shape": torch.tensor([rows, cols])}
        if not symmetric:  # zero points across the whole range, the first row's groups at its ends
            zero = torch.randint(lo, hi, (rows, groups), generator=gen, dtype=torch.int8)
            zero[0, 0], zero[0, -1] = lo, hi - 1
            state["weight_zero_point"] = pack_to_int32(zero, bits, packed_dim=0)
            out[f"{name}.zero_point"] = state["weight_zero_point"].contiguous()
        values = PackedQuantizationCompressor.decompress(state, scheme)["weight"]
        assert values.dtype == dtype, values.dtype
        out[f"{name}.packed"] = packed.contiguous()
        out[f"{name}.scale"] = scale.contiguous()
        out[f"{name}.values"] = values.float().contiguous()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(OUT), metadata={"compressed_tensors": compressed_tensors.__version__, "torch": torch.__version__})
    OUT.chmod(0o644)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
