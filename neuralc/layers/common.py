"""Helpers the layer families share: rank checks, static dims, PyTorch's default initialisers."""

from __future__ import annotations

import math

from neuralc.ir.dims import Dim
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import Init, ShapeError


def require_rank(t: TensorType, ranks: int | tuple[int, ...], layer: str, expected: str,
                 hint: str | None = None) -> tuple[Dim, ...]:
    """The shape of ``t`` if its rank is one of ``ranks``; a ShapeError naming ``expected``."""
    assert t.shape is not None
    ok = (ranks,) if isinstance(ranks, int) else ranks
    if len(t.shape) not in ok:
        raise ShapeError(f"{layer} expects input {expected}, got {shape_str(t.shape)}", hint)
    return t.shape


def static_dim(d: Dim, layer: str, what: str) -> int:
    """A dim that a weight shape depends on must be a number, not a symbol."""
    if not isinstance(d, int):
        raise ShapeError(
            f"{layer} needs a fixed {what} to size its weights, got the symbolic dim '{d}'",
            "give that dimension a number in the input shape",
        )
    return d


def kaiming_uniform_bound(fan_in: int) -> Init:
    """PyTorch's default for Linear/Conv weights: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))."""
    return Init("uniform", 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)


def bias_bound(fan_in: int) -> Init:
    """PyTorch's default bias for Linear/Conv: U(+-1/sqrt(fan_in))."""
    return Init("uniform", 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)


ONES = Init("const", 1.0)
ZEROS = Init("const", 0.0)
STD_NORMAL = Init("normal", 1.0)
