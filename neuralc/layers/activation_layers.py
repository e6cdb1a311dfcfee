"""The Activation layer: any function of ``activations.py`` as a layer of its own.

``alpha`` (an extension over Keras's Activation) sets the slope of leaky_relu or the alpha of
elu; it is refused for activations that have no such parameter, so a typo cannot hide.
"""

from __future__ import annotations

import numpy as np

from neuralc.ir.dims import Dim
from neuralc.ir.types import TensorType
from neuralc.layers.activations import activation_defs, apply_activation
from neuralc.layers.catalog import (
    ActivationName,
    Float,
    LayerSpec,
    Optional_,
    Param,
    ParamError,
    ShapeContext,
    register,
)
from neuralc.layers.common import per_sample


def _with_alpha() -> list[str]:
    return [d.name for d in activation_defs() if d.default_alpha is not None]


def _check(attrs: dict) -> None:
    if attrs["alpha"] is not None and attrs["activation"] not in _with_alpha():
        raise ParamError(
            f"'alpha' applies only to {' and '.join(_with_alpha())}, "
            f"not to \"{attrs['activation']}\""
        )


def _shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    return [ins[0]]


def _reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [apply_activation(attrs["activation"], xs[0], attrs["alpha"])]


def _flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """One operation per element (none for linear)."""
    assert ins[0].shape is not None
    return 0 if attrs["activation"] == "linear" else per_sample(ins[0].shape)


ACTIVATION = register(LayerSpec(
    name="Activation",
    params=(
        Param("activation", ActivationName(), doc="name of the activation function"),
        Param("alpha", Optional_(Float()), None,
              doc="negative slope of leaky_relu (default 0.2) or alpha of elu (default 1.0)"),
    ),
    positional=("activation", "alpha"),
    shape=_shape, reference=_reference, flops=_flops, check=_check,
    doc="Applies an activation function elementwise (softmax: over the last axis).",
    example='Activation("leaky_relu", 0.1)',
))
