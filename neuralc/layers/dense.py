"""Dense and Output: ``y = activation(x @ W.T + b)`` over the last axis (Keras/PyTorch Linear)."""

from __future__ import annotations

import numpy as np

from neuralc.ir.activations import apply_activation
from neuralc.ir.dims import Dim
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType
from neuralc.layers.catalog import (
    ActivationName,
    Bool,
    Int,
    LayerSpec,
    Param,
    WeightSpec,
    register,
)
from neuralc.layers.common import bias_bound, kaiming_uniform_bound, require_rank, static_dim


def _shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    shape = require_rank(ins[0], (2, 3, 4, 5, 6), "Dense", "(batch, ..., features)",
                         "use Input with at least one feature axis")
    return [ins[0].with_shape(shape[:-1] + (attrs["units"],))]


def _weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    fan_in = static_dim(ins[0].shape[-1], "Dense", "number of input features")
    w = {"weight": WeightSpec((attrs["units"], fan_in), kaiming_uniform_bound(fan_in))}
    if attrs["use_bias"]:
        w["bias"] = WeightSpec((attrs["units"],), bias_bound(fan_in))
    return w


def _reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    y = xs[0] @ w["weight"].T
    if attrs["use_bias"]:
        y = y + w["bias"]
    return [apply_activation(attrs["activation"], y.astype(xs[0].dtype))]


def _lower(b, attrs: dict, xs: list) -> list:
    y = b.op("tensor.matmul", [xs[0], b.weight("weight")], {"transpose_b": True})
    if attrs["use_bias"]:
        y = b.binary("add", y, b.weight("bias"))
    return [b.activation(attrs["activation"], y)]


def _flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    assert ins[0].shape is not None
    rows = 1
    for d in ins[0].shape[1:-1]:
        rows = rows * d
    return rows * 2 * ins[0].shape[-1] * attrs["units"]


def _params(default_activation: str) -> tuple[Param, ...]:
    return (
        Param("units", Int(min=1), aliases=("out_features",), doc="output features"),
        Param("activation", ActivationName(), default_activation, doc="applied after the bias"),
        Param("use_bias", Bool(), True, aliases=("bias",), doc="add a learned bias"),
    )


DENSE = register(LayerSpec(
    name="Dense", params=_params("linear"), positional=("units", "activation"),
    shape=_shape, reference=_reference, weights=_weights, flops=_flops, lower=_lower,
    aliases=("Linear",),
    doc="Fully connected layer over the last axis: activation(x @ weight.T + bias).",
    example='Dense(128, "relu")',
))

OUTPUT = register(LayerSpec(
    name="Output", params=_params("softmax"), positional=("units", "activation"),
    shape=_shape, reference=_reference, weights=_weights, flops=_flops, lower=_lower,
    doc="A Dense layer whose default activation is softmax; names count as 'output'.",
    example="Output(10)",
))
