#!/usr/bin/env python3
"""GGML block-quantized rows and their values from gguf-py, for ggml_quants_test.

Dev-time only: CI never runs this. For each block type, a few rows of random but valid blocks (random
bytes for the quants and packed scales; every f16 scale field a finite value of magnitude 0.001-0.05,
either sign, a few of them subnormal or zero), dequantized by gguf-py's own gguf.quants.dequantize.
Writes tests/data/ggml_quants/reference.safetensors:
    <TYPE>.blocks  U8  [rows, row bytes]   the stored rows
    <TYPE>.values  F32 [rows, n]           what gguf-py makes of them

    python3 tests/make_ggml_quant_reference.py
"""

from pathlib import Path

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as Q
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parent / "data" / "ggml_quants" / "reference.safetensors"

# Byte offsets of each block's f16 fields (d, and dmin or m where the type has one).
F16_FIELDS = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
}
ROWS = 4
BLOCKS_PER_ROW = {32: 16, 256: 4}  # 512 values per row for the 32-value types, 1024 for the K types


def make_rows(rng: np.random.Generator, qtype: Q) -> np.ndarray:
    block_values, block_bytes = GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * BLOCKS_PER_ROW[block_values]
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for offset in F16_FIELDS[qtype]:
        magnitude = rng.uniform(0.001, 0.05, size=n_blocks)
        sign = rng.choice([-1.0, 1.0], size=n_blocks)
        field = (sign * magnitude).astype(np.float16)
        field[5] = np.float16(3.0e-6)   # a subnormal f16 scale
        field[6] = np.float16(-0.0)     # and a zero one
        blocks[:, offset:offset + 2] = field.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(ROWS, -1)


def main() -> None:
    rng = np.random.default_rng(20240611)
    tensors = {}
    for qtype in F16_FIELDS:
        rows = make_rows(rng, qtype)
        values = gguf.quants.dequantize(rows, qtype).astype(np.float32)
        assert np.isfinite(values).all(), qtype.name
        tensors[f"{qtype.name}.blocks"] = np.ascontiguousarray(rows)
        tensors[f"{qtype.name}.values"] = np.ascontiguousarray(values)
        print(f"{qtype.name}: blocks {rows.shape}, values {values.shape}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT), metadata={"generator": "tests/make_ggml_quant_reference.py",
                                           "gguf": getattr(gguf, "__version__", "unknown")})
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
