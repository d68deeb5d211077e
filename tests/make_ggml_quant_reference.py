#!/usr/bin/env python3
"""GGML block-quantized rows and their values from gguf-py, for ggml_quants_test.

Dev-time only: CI never runs this. For each block type, a few rows of random but valid blocks (random
bytes for the quants and packed scales; every f16 scale field a finite value of magnitude 0.001-0.05,
either sign, a few of them subnormal or zero), dequantized by gguf-py's own gguf.quants.dequantize.
MXFP4 (ggml type 39; the engine's MXFP4_GGML, as Hugging Face's MXFP4 is another layout) has an E8M0
scale byte instead of an f16: its rows take exponents around 2^-7 (as trained weights), and 0, 1 and
127 in some blocks; its edge rows hold one block for each of the 256 exponents, every code in each,
where gguf-py's f32 product underflows to subnormals (e < 2) and overflows to +-inf (e >= 253).
IQ4_NL and IQ4_XS (ggml types 20 and 23) gguf-py can dequantize but not quantize, so their rows are
random valid blocks too, f16 d as above; IQ4_XS's packed 6-bit sub-block scales are set so that every
scale 0-63 occurs twice in its rows (the -32 offset and both ends of the bit assembly are exercised).
The IQ1, IQ2 and IQ3 types (ggml types 16-19, 21, 22, 29), which index fixed codebooks, likewise: random
blocks (IQ1_M's f16 d is spread over the top nibbles of its four scale u16s, and is set there), then
rows whose blocks index every codebook row in turn (the other bits random), so that each of the
engine's tables (engine/common/iq_grids.h) is checked entry by entry against gguf-py's.
Writes tests/data/ggml_quants/reference.safetensors:
    <TYPE>.blocks  U8  [rows, row bytes]   the stored rows
    <TYPE>.values  F32 [rows, n]           what gguf-py makes of them
    MXFP4_GGML.edges.blocks, MXFP4_GGML.edges.values   the same for the edge rows

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


def random_f16_scales(rng: np.random.Generator, n_blocks: int) -> np.ndarray:
    """One f16 scale per block: magnitude 0.001-0.05, either sign; block 5's subnormal, block 6's zero."""
    magnitude = rng.uniform(0.001, 0.05, size=n_blocks)
    sign = rng.choice([-1.0, 1.0], size=n_blocks)
    field = (sign * magnitude).astype(np.float16)
    field[5] = np.float16(3.0e-6)   # a subnormal f16 scale
    field[6] = np.float16(-0.0)     # and a zero one
    return field


def make_rows(rng: np.random.Generator, qtype: Q, f16_fields: list[int]) -> np.ndarray:
    block_values, block_bytes = GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * BLOCKS_PER_ROW[block_values]
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for offset in f16_fields:
        blocks[:, offset:offset + 2] = random_f16_scales(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(ROWS, -1)


# MXFP4 block: the E8M0 byte e, then 16 bytes of FP4 codes (value j low nibble, value j + 16 high).
MXFP4_NAME = "MXFP4_GGML"


def make_mxfp4_rows(rng: np.random.Generator) -> np.ndarray:
    n_blocks = ROWS * BLOCKS_PER_ROW[32]
    blocks = rng.integers(0, 256, size=(n_blocks, 17), dtype=np.uint8)
    blocks[:, 0] = rng.integers(113, 126, size=n_blocks)  # 2^(e-127) from 2^-14 to 2^-2
    blocks[5, 0], blocks[6, 0], blocks[21, 0] = 0, 1, 127  # subnormal scales, and 1
    return blocks.reshape(ROWS, -1)


def make_mxfp4_edge_rows(rng: np.random.Generator) -> np.ndarray:
    blocks = np.zeros((256, 17), dtype=np.uint8)
    blocks[:, 0] = np.arange(256)
    for b in blocks:
        b[1:] = rng.permutation(16).astype(np.uint8) | (rng.permutation(16).astype(np.uint8) << 4)
    return blocks.reshape(8, -1)  # 32 blocks per row


# IQ4_NL: f16 d, 16 bytes of nibbles. IQ4_XS: f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]; the 6-bit
# scale of sub-block j is nibble j of scales_l (as a little-endian u32) | bits 2j, 2j+1 of scales_h << 4.
IQ4_TYPES = (Q.IQ4_NL, Q.IQ4_XS)


def make_iq4_rows(rng: np.random.Generator, qtype: Q) -> np.ndarray:
    rows = make_rows(rng, qtype, [0])  # d
    if qtype != Q.IQ4_XS:
        return rows
    blocks = rows.reshape(-1, GGML_QUANT_SIZES[qtype][1])
    scales = np.concatenate([rng.permutation(64) for _ in range(len(blocks) * 8 // 64)]).reshape(len(blocks), 8)
    low = np.zeros(len(blocks), dtype=np.uint32)
    high = np.zeros(len(blocks), dtype=np.uint16)
    for j in range(8):
        low |= (scales[:, j].astype(np.uint32) & 15) << (4 * j)
        high |= ((scales[:, j].astype(np.uint16) >> 4) & 3) << (2 * j)
    blocks[:, 2:4] = high.astype("<u2").view(np.uint8).reshape(-1, 2)
    blocks[:, 4:8] = low.astype("<u4").view(np.uint8).reshape(-1, 4)
    return blocks.reshape(rows.shape)


# The IQ1-IQ3 types: (type, where each codebook index lies, codebook rows). An index is written by
# set_index(block, i, value) for i < indices per block; the bits around it stay random.
def _set_bits(block: np.ndarray, byte: int, shift: int, width: int, value: int) -> None:
    mask = ((1 << width) - 1) << shift
    word = int(block[byte]) | (int(block[byte + 1]) << 8) if byte + 1 < len(block) else int(block[byte])
    word = (word & ~mask) | ((value << shift) & mask)
    block[byte] = word & 0xFF
    if byte + 1 < len(block):
        block[byte + 1] = (word >> 8) & 0xFF


def _iq2_xxs(b, i, v): b[2 + 8 * (i // 4) + i % 4] = v                 # a byte per 8 values
def _iq2_xs(b, i, v): _set_bits(b, 2 + 2 * i, 0, 9, v)                   # low 9 bits of a u16
def _iq3_xxs(b, i, v): b[2 + i] = v                                      # a byte per 4 values


def _iq2_s(b, i, v):                                                     # qs byte, 2 bits of qh
    b[2 + i] = v & 0xFF
    _set_bits(b, 66 + i // 4, 2 * (i % 4), 2, v >> 8)


def _iq3_s(b, i, v):                                                     # qs byte, a bit of qh
    b[2 + i] = v & 0xFF
    _set_bits(b, 66 + i // 8, i % 8, 1, v >> 8)


def _iq1_s(b, i, v):                                                     # qs byte, 3 bits of the u16 qh
    b[2 + i] = v & 0xFF
    _set_bits(b, 34 + 2 * (i // 4), 3 * (i % 4), 3, v >> 8)


def _iq1_m(b, i, v):                                                     # qs byte, 3 bits of a qh nibble
    b[i] = v & 0xFF
    _set_bits(b, 32 + i // 2, 4 * (i % 2), 3, v >> 8)


IQ_CODEBOOK_TYPES = [
    (Q.IQ2_XXS, _iq2_xxs, 32, 256), (Q.IQ2_XS, _iq2_xs, 32, 512), (Q.IQ2_S, _iq2_s, 32, 1024),
    (Q.IQ3_XXS, _iq3_xxs, 64, 256), (Q.IQ3_S, _iq3_s, 64, 512),
    (Q.IQ1_S, _iq1_s, 32, 2048), (Q.IQ1_M, _iq1_m, 32, 2048),
]


def set_iq1_m_d(rng: np.random.Generator, blocks: np.ndarray) -> None:
    """IQ1_M's d: f16 bits 0-3 in the top nibble of scale u16 0, bits 4-7 of u16 1, and so on."""
    bits = random_f16_scales(rng, len(blocks)).view(np.uint16)
    for k in range(4):
        word = blocks[:, 48 + 2 * k].astype(np.uint16) | (blocks[:, 49 + 2 * k].astype(np.uint16) << 8)
        word = (word & 0x0FFF) | (((bits >> (4 * k)) & 0xF) << 12)
        blocks[:, 48 + 2 * k] = word & 0xFF
        blocks[:, 49 + 2 * k] = word >> 8


def make_iq_rows(rng: np.random.Generator, qtype: Q, set_index, per_block: int, book_rows: int) -> np.ndarray:
    block_bytes = GGML_QUANT_SIZES[qtype][1]
    per_row = BLOCKS_PER_ROW[256]
    n_book = -(-book_rows // per_block)            # blocks that index every codebook row once
    n_book = -(-n_book // per_row) * per_row       # whole rows
    n_blocks = ROWS * per_row + n_book
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qtype == Q.IQ1_M:
        set_iq1_m_d(rng, blocks)
    else:
        blocks[:, :2] = random_f16_scales(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    for k in range(n_book):
        block = blocks[ROWS * per_row + k]
        for i in range(per_block):
            set_index(block, i, (k * per_block + i) % book_rows)
    return blocks.reshape(-1, per_row * block_bytes)


def main() -> None:
    rng = np.random.default_rng(20240611)
    tensors = {}
    for qtype in F16_FIELDS:
        rows = make_rows(rng, qtype, F16_FIELDS[qtype])
        values = gguf.quants.dequantize(rows, qtype).astype(np.float32)
        assert np.isfinite(values).all(), qtype.name
        tensors[f"{qtype.name}.blocks"] = np.ascontiguousarray(rows)
        tensors[f"{qtype.name}.values"] = np.ascontiguousarray(values)
        print(f"{qtype.name}: blocks {rows.shape}, values {values.shape}")
    mxfp4_rng = np.random.default_rng(20250805)  # its own, so the types above keep their bytes
    rows = make_mxfp4_rows(mxfp4_rng)
    values = gguf.quants.dequantize(rows, Q.MXFP4).astype(np.float32)
    assert np.isfinite(values).all()
    tensors[f"{MXFP4_NAME}.blocks"] = np.ascontiguousarray(rows)
    tensors[f"{MXFP4_NAME}.values"] = np.ascontiguousarray(values)
    edges = make_mxfp4_edge_rows(mxfp4_rng)
    with np.errstate(over="ignore"):  # the largest exponents overflow to inf, as intended
        edge_values = gguf.quants.dequantize(edges, Q.MXFP4).astype(np.float32)
    tiny = np.abs(edge_values[np.isfinite(edge_values)])
    assert np.isinf(edge_values).any() and ((tiny > 0) & (tiny < np.finfo(np.float32).tiny)).any()
    tensors[f"{MXFP4_NAME}.edges.blocks"] = np.ascontiguousarray(edges)
    tensors[f"{MXFP4_NAME}.edges.values"] = np.ascontiguousarray(edge_values)
    print(f"{MXFP4_NAME}: blocks {rows.shape}, values {values.shape}; edges {edges.shape}, "
          f"{int(np.isinf(edge_values).sum())} values +-inf")
    iq4_rng = np.random.default_rng(20261124)  # its own, as MXFP4's
    for qtype in IQ4_TYPES:
        rows = make_iq4_rows(iq4_rng, qtype)
        values = gguf.quants.dequantize(rows, qtype).astype(np.float32)
        assert np.isfinite(values).all(), qtype.name
        tensors[f"{qtype.name}.blocks"] = np.ascontiguousarray(rows)
        tensors[f"{qtype.name}.values"] = np.ascontiguousarray(values)
        print(f"{qtype.name}: blocks {rows.shape}, values {values.shape}")
    iq_rng = np.random.default_rng(20261125)  # its own, as the IQ4 types'
    for qtype, set_index, per_block, book_rows in IQ_CODEBOOK_TYPES:
        rows = make_iq_rows(iq_rng, qtype, set_index, per_block, book_rows)
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
