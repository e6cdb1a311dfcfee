"""Numeric helpers of the element types: numpy dtypes and bf16 rounding.

bf16 has no numpy dtype: its values are held in float32 arrays rounded to bf16 precision, by
the reference interpreter and by every oracle that compares with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def np_dtype(dtype: str) -> Any:
    """The numpy dtype that holds an element type (bf16 in float32)."""
    return {
        "f32": np.float32,
        "f16": np.float16,
        "bf16": np.float32,
        "f64": np.float64,
        "i64": np.int64,
        "i32": np.int32,
        "i8": np.int8,
        "i1": np.bool_,
    }[dtype]


def round_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 precision (round to nearest even), kept in float32."""
    x = np.asarray(x)
    # ascontiguousarray would make a 0-d array 1-d; reshape keeps the shape.
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).reshape(x.shape)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) & np.uint32(0xFFFF0000)).view(np.float32)
    return np.where(np.isnan(x), x, out).astype(np.float32)
