#!/usr/bin/env python3
"""Fine-grained FP8 weights and their values from transformers, for fp8_test.

Dev-time only: CI never runs this. A weight of 40 x 72 F8_E4M3 bytes with its F32 scales per 16 x 32 tile
(so the last tile of each row and of each column is partial: 8 rows, 8 columns, as DeepSeek-V3's
kv_a_proj_with_mqa's 576 rows end in a partial tile of 128), dequantized by transformers' own
_dequantize_fp8_weight (integrations/finegrained_fp8.py), which expands the scales by the block size and
cuts them to the weight's shape. Every one of the 256 byte values occurs (rows 0-3 hold them in order),
NaN codes included; a second weight has no NaN codes, for products. The scales span small, subnormal and
large magnitudes. Also each byte's value as torch reads float8_e4m3fn.
Writes tests/data/fp8/reference.safetensors:
    e4m3          F32 [256]       byte b's value (torch.float8_e4m3fn)
    codes         U8  [40, 72]    the weight's bytes (all 256 values; NaN codes 0x7f, 0xff among them)
    finite_codes  U8  [40, 72]    bytes without the NaN codes
    scales        F32 [3, 3]      weight_scale_inv, one per 16 x 32 tile
    values        F32 [40, 72]    transformers' dequantised codes
    finite_values F32 [40, 72]    transformers' dequantised finite_codes

    python3 tests/make_fp8_reference.py
"""

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers.integrations.finegrained_fp8 import _dequantize_fp8_weight

OUT = Path(__file__).resolve().parent / "data" / "fp8" / "reference.safetensors"
ROWS, COLS, TILE = 40, 72, (16, 32)


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    q = torch.from_numpy(codes.copy()).view(torch.float8_e4m3fn)
    return _dequantize_fp8_weight(q, torch.from_numpy(scales), list(TILE), torch.float32).numpy()


def main():
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 256, size=(ROWS, COLS), dtype=np.uint8)
    codes.reshape(-1)[:256] = np.arange(256, dtype=np.uint8)
    finite = rng.integers(0, 256, size=(ROWS, COLS), dtype=np.uint8)
    finite[(finite & 0x7F) == 0x7F] ^= 1
    grid = (-(-ROWS // TILE[0]), -(-COLS // TILE[1]))
    scales = (rng.uniform(0.5, 1.0, size=grid) * 1e-4).astype(np.float32)  # amax / 448 of weights up to ~0.04
    scales[0, 1] = np.float32(3e-39)  # subnormal: products underflow
    scales[1, 0] = np.float32(2.5e35)  # large: products near f32's top (448 * 2.5e35 ~ 1.1e38)
    scales[2, 2] = np.float32(1.0)
    e4m3 = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    save_file(
        {
            "e4m3": e4m3,
            "codes": codes,
            "finite_codes": finite,
            "scales": scales,
            "values": dequantize(codes, scales),
            "finite_values": dequantize(finite, scales),
        },
        str(OUT),
        metadata={"tile": f"{TILE[0]}x{TILE[1]}", "torch": torch.__version__},
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
