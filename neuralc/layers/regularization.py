"""Dropout: identity at inference (the compiler builds inference graphs; training backends
implement the random mask with Keras's ``1 / (1 - rate)`` scaling from these attributes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import (
    RATE,
    Int,
    LayerSpec,
    Optional_,
    Param,
    ParamType,
    ShapeContext,
    ShapeError,
    register,
)


@dataclass(frozen=True)
class NoiseShape(ParamType):
    """Keras's ``noise_shape``: the mask's shape over the full input, ``None`` = input's size."""

    def convert(self, value: Any, pname: str) -> list[int | None]:
        if isinstance(value, (list, tuple)) and value and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in value
        ):
            return list(value)
        raise self._fail(pname, value, "a tuple of positive integers or None (batch included)")


def _shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    assert ins[0].shape is not None
    shape = ins[0].shape
    noise = attrs["noise_shape"]
    if noise is not None:
        if len(noise) != len(shape):
            raise ShapeError(
                f"Dropout noise_shape {shape_str(tuple(noise))} has rank {len(noise)}, "
                f"but the input {shape_str(shape)} has rank {len(shape)}",
                "noise_shape counts the batch axis too; write None for it, as Keras does",
            )
        for n, d in zip(noise, shape):
            if n is not None and n != 1 and isinstance(d, int) and n != d:
                raise ShapeError(
                    f"Dropout noise_shape {shape_str(tuple(noise))} does not broadcast to the "
                    f"input {shape_str(shape)}",
                    "each entry must be 1 (share the mask along that axis), None, "
                    "or the input size",
                )
    return [ins[0]]


def _reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [xs[0]]


DROPOUT = register(LayerSpec(
    name="Dropout",
    params=(
        Param("rate", RATE, aliases=("p",), doc="fraction of inputs dropped while training"),
        Param("noise_shape", Optional_(NoiseShape()), None,
              doc="shape of the dropout mask (1 = shared along that axis)"),
        Param("seed", Optional_(Int()), None, doc="seed of the dropout mask"),
    ),
    positional=("rate", "noise_shape", "seed"),
    shape=_shape, reference=_reference,
    doc="Randomly zeroes inputs while training (scaled by 1 / (1 - rate)); identity at inference.",
    example="Dropout(0.5)",
))
