"""Activation layers: ``Activation`` (any function of ``activations.py``) and Keras's dedicated
layers ReLU, LeakyReLU, PReLU, ELU and Softmax.

``alpha`` (an extension over Keras's Activation) sets the slope of leaky_relu or the alpha of
elu; it is refused for activations that have no such parameter, so a typo cannot hide.

The dedicated layers keep Keras's parameters, defaults and semantics (LeakyReLU's slope is
0.3, the layer's default, not the 0.2 of the leaky_relu function; ReLU's threshold test is
strict, as Keras's implementation). PReLU is the one exception: Keras learns one slope per
element of a sample (``shared_axes`` to share), PyTorch one per channel (or one in all); we
follow ``torch.nn.PReLU(num_parameters=C, init=0.25)`` on the channels-last axis, so a PyTorch
checkpoint loads unchanged and the weight count does not grow with the image size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from neuralc.ir.activations import activation_defs, apply_activation
from neuralc.ir.dims import Dim
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import (
    ActivationName,
    Axes,
    Float,
    Init,
    Int,
    LayerSpec,
    Optional_,
    Param,
    ParamError,
    WeightSpec,
    register,
)
from neuralc.layers.common import normalize_axis, per_sample

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value


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


def _lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """One elementwise ``tensor.unary`` (softmax and log_softmax: reductions + elementwise)."""
    return [b.activation(attrs["activation"], xs[0], attrs["alpha"])]


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
    shape=_shape, reference=_reference, flops=_flops, check=_check, lower=_lower,
    doc="Applies an activation function elementwise (softmax: over the last axis).",
    example='Activation("leaky_relu", 0.1)',
))


# -- elementwise layers without weights ----------------------------------------------------------


def _same_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    return [ins[0]]


def _one_per_element(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    assert ins[0].shape is not None
    return per_sample(ins[0].shape)


def _relu_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                    ) -> list[np.ndarray]:
    """Keras's relu: ``x`` above the threshold (capped at max_value), else
    ``negative_slope * (x - threshold)``; the test ``x > threshold`` is strict, as Keras's."""
    x = xs[0]
    x64 = x.astype(np.float64)
    thr = attrs["threshold"]
    pos = np.where(x64 > thr, x64, 0.0)
    if attrs["max_value"] is not None:
        pos = np.minimum(pos, attrs["max_value"])
    y = pos + attrs["negative_slope"] * np.minimum(x64 - thr, 0.0)
    return [y.astype(x.dtype)]


def _relu_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """The positive branch, the cap, and the slope branch, each only when its parameter asks.

    Threshold 0 makes the positive branch ``relu`` (``relu6`` with the common cap 6); a
    positive threshold needs ``select(x > threshold, x, 0)``, the strict test of Keras, which no
    min/max identity reproduces at the jump. The slope branch is
    ``negative_slope * min(x - threshold, 0)``, added.
    """
    x = xs[0]
    dt = x.type.dtype
    thr, slope, cap = attrs["threshold"], attrs["negative_slope"], attrs["max_value"]
    if thr == 0.0 and cap == 6.0:
        y = b.unary("relu6", x)
    else:
        if thr == 0.0:
            y = b.unary("relu", x)
        else:
            above = b.op("tensor.compare", [x, b.scalar(thr, dt)], {"fn": "gt"})
            y = b.op("tensor.select", [above, x, b.scalar(0.0, dt)])
        if cap is not None:
            y = b.binary("min", y, b.scalar(cap, dt))
    if slope != 0.0:
        shifted = b.binary("sub", x, b.scalar(thr, dt)) if thr != 0.0 else x
        below = b.binary("min", shifted, b.scalar(0.0, dt))
        y = b.binary("add", y, b.binary("mul", below, b.scalar(slope, dt)))
    return [y]


NON_NEGATIVE = Float(0.0)

RELU = register(LayerSpec(
    name="ReLU",
    params=(
        Param("max_value", Optional_(NON_NEGATIVE), None,
              doc="upper cap of the output (None: no cap)"),
        Param("negative_slope", NON_NEGATIVE, 0.0,
              doc="slope below the threshold: negative_slope * (x - threshold)"),
        Param("threshold", NON_NEGATIVE, 0.0, doc="inputs at or below it take the slope branch"),
    ),
    positional=("max_value", "negative_slope", "threshold"),
    shape=_same_shape, reference=_relu_reference, flops=_one_per_element, lower=_relu_lower,
    doc="Keras's ReLU layer: x above the threshold capped at max_value, else a leaky slope.",
    example="ReLU(max_value=6.0)",
))


def _leaky_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                     ) -> list[np.ndarray]:
    x = xs[0]
    return [np.where(x >= 0, x, attrs["negative_slope"] * x.astype(np.float64)).astype(x.dtype)]


def _leaky_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """The leaky_relu activation (``x >= 0 ? x : alpha * x``) with the layer's slope."""
    return [b.unary("leaky_relu", xs[0], attrs["negative_slope"])]


LEAKY_RELU = register(LayerSpec(
    name="LeakyReLU",
    params=(
        Param("negative_slope", NON_NEGATIVE, 0.3, aliases=("alpha",),
              doc="slope for x < 0 (Keras's layer default 0.3; the function's is 0.2)"),
    ),
    positional=("negative_slope",),
    shape=_same_shape, reference=_leaky_reference, flops=_one_per_element, lower=_leaky_lower,
    doc="x if x >= 0 else negative_slope * x, with Keras's layer default slope 0.3.",
    example="LeakyReLU(0.1)",
))


def _elu_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                   ) -> list[np.ndarray]:
    return [apply_activation("elu", xs[0], attrs["alpha"])]


def _elu_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """The elu activation with the layer's alpha."""
    return [b.unary("elu", xs[0], attrs["alpha"])]


ELU = register(LayerSpec(
    name="ELU",
    params=(Param("alpha", Float(), 1.0, doc="scale of the negative branch alpha * (exp(x) - 1)"),),
    positional=("alpha",),
    shape=_same_shape, reference=_elu_reference, flops=_one_per_element, lower=_elu_lower,
    doc="x if x > 0 else alpha * (exp(x) - 1).",
    example="ELU(alpha=0.5)",
))


# -- Softmax ----------------------------------------------------------------------------------


def _softmax_axes(attrs: dict, t: TensorType) -> list[int]:
    assert t.shape is not None
    rank = len(t.shape)
    if rank < 2:
        raise ShapeError(f"Softmax expects input (batch, ..., features), got {shape_str(t.shape)}",
                         "softmax needs an axis besides the batch")
    axes = [normalize_axis(a, rank, "Softmax") for a in attrs["axis"]]
    if len(set(axes)) != len(axes):
        raise ShapeError(f"Softmax axis {attrs['axis']} names the same axis twice "
                         f"for an input of rank {rank}")
    return sorted(axes)


def _softmax_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    _softmax_axes(attrs, ins[0])
    return [ins[0]]


def _softmax_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                       ) -> list[np.ndarray]:
    """Softmax over the given axes jointly (Keras 3 accepts a tuple of axes), in float64."""
    x = xs[0]
    axes = tuple(sorted(normalize_axis(a, x.ndim, "Softmax") for a in attrs["axis"]))
    x64 = x.astype(np.float64)
    e = np.exp(x64 - np.max(x64, axis=axes, keepdims=True))
    return [(e / np.sum(e, axis=axes, keepdims=True)).astype(x.dtype)]


def _softmax_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """``exp(x - max) / sum(exp(x - max))`` with both reductions over all the axes jointly:
    two reductions of one shape over the same axes, so the fusion pass makes one kernel."""
    x = xs[0]
    axes = _softmax_axes(attrs, x.type)
    e = b.unary("exp", b.binary("sub", x, b.reduce("max", x, axes, True)))
    return [b.binary("div", e, b.reduce("sum", e, axes, True))]


def _softmax_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Max, subtract-and-exp, sum, divide: four operations per element."""
    assert ins[0].shape is not None
    return 4 * per_sample(ins[0].shape)


SOFTMAX = register(LayerSpec(
    name="Softmax",
    params=(Param("axis", Axes(), [-1], aliases=("dim",),
                  doc="axis or axes normalised together (-1: the last)"),),
    positional=("axis",),
    shape=_softmax_shape, reference=_softmax_reference, flops=_softmax_flops,
    lower=_softmax_lower,
    doc="exp(x) / sum(exp(x)) over the given axes (the last by default).",
    example="Softmax(axis=-1)",
))


# -- PReLU --------------------------------------------------------------------------------------


def _prelu_channels(attrs: dict, t: TensorType) -> int:
    """The number of slopes: 1 if shared, else the (static) channel count of the last axis."""
    assert t.shape is not None
    if len(t.shape) < 2:
        raise ShapeError(f"PReLU expects input (batch, ..., channels), got {shape_str(t.shape)}",
                         "PReLU learns one slope per channel of the last axis")
    n = attrs["num_parameters"]
    c = t.shape[-1]
    if n == 1:
        return 1
    if not isinstance(c, int):
        raise ShapeError(
            f"PReLU needs a fixed number of channels to size its weights, got the symbolic "
            f"dim '{c}'",
            "give the channel axis a number in the input shape, or share one slope with "
            "num_parameters=1",
        )
    if n is not None and n != c:
        raise ShapeError(
            f"PReLU num_parameters={n} does not match the {c} channels of its input "
            f"{shape_str(t.shape)}",
            f"use num_parameters={c} (one slope per channel, the default) or 1 (one shared slope)",
        )
    return c


def _prelu_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    _prelu_channels(attrs, ins[0])
    return [ins[0]]


def _prelu_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    return {"weight": WeightSpec((_prelu_channels(attrs, ins[0]),), Init("const", attrs["init"]))}


def _prelu_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                     ) -> list[np.ndarray]:
    """``x if x >= 0 else weight[c] * x``, the weight broadcast along the last (channel) axis."""
    x = xs[0]
    slope = w["weight"].astype(np.float64)
    return [np.where(x >= 0, x, slope * x.astype(np.float64)).astype(x.dtype)]


def _prelu_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """``select(x >= 0, x, x * weight)``: the slope vector (C,) or (1,) broadcasts along the
    last axis, and the test is the reference's ``x >= 0``."""
    x = xs[0]
    nonneg = b.op("tensor.compare", [x, b.scalar(0.0, x.type.dtype)], {"fn": "ge"})
    return [b.op("tensor.select", [nonneg, x, b.binary("mul", x, b.weight("weight"))])]


PRELU = register(LayerSpec(
    name="PReLU",
    params=(
        Param("num_parameters", Optional_(Int(min=1)), None,
              doc="number of learned slopes: None = one per channel (last axis), 1 = shared"),
        Param("init", Float(), 0.25, doc="initial value of every slope (PyTorch's default 0.25)"),
    ),
    positional=("num_parameters", "init"),
    shape=_prelu_shape, reference=_prelu_reference, weights=_prelu_weights,
    flops=_one_per_element, lower=_prelu_lower,
    doc="x if x >= 0 else weight * x, with a learned slope per channel as torch.nn.PReLU.",
    example="PReLU()",
))
