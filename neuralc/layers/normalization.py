"""Normalisation layers: Keras's parameters, PyTorch's weight names.

BatchNormalization runs with its running statistics (inference semantics); its weights are
``torch.nn.BatchNorm*d``'s state_dict entries, ``num_batches_tracked`` included, so a PyTorch
checkpoint loads unchanged. Keras's ``momentum`` (weight of the old running value) is kept as
Keras means it; a training backend converts it (PyTorch's momentum is ``1 - momentum``).

LayerNormalization, GroupNormalization, InstanceNormalization and RMSNormalization use the
statistics of each sample (the same at training and inference), with ``weight``/``bias`` laid
out as ``torch.nn.LayerNorm``/``GroupNorm``/``InstanceNorm*d(affine=True)``/``RMSNorm``.
InstanceNormalization is not built into Keras; it follows PyTorch's semantics (per sample and
channel, no running statistics) with the Keras family's epsilon 1e-3, which makes it exactly
``GroupNormalization(groups=-1)`` as in tensorflow_addons; pass ``epsilon=1e-5`` to reproduce a
PyTorch model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from neuralc.ir.dims import Dim
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import (
    Axes,
    Axis,
    Bool,
    Float,
    Init,
    Int,
    LayerSpec,
    Param,
    ParamError,
    WeightSpec,
    register,
)
from neuralc.layers.common import ONES, ZEROS, normalize_axis, per_sample, static_dim

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value


def _ranked(t: TensorType, layer: str) -> tuple[Dim, ...]:
    assert t.shape is not None
    if len(t.shape) < 2:
        raise ShapeError(
            f"{layer} expects input (batch, ..., features), got {shape_str(t.shape)}",
            "normalisation needs at least one axis besides the batch",
        )
    return t.shape


# -- BatchNormalization ------------------------------------------------------------------------


def _bn_axis(attrs: dict, t: TensorType) -> int:
    shape = _ranked(t, "BatchNormalization")
    return normalize_axis(attrs["axis"], len(shape), "BatchNormalization")


def _bn_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    _bn_axis(attrs, ins[0])
    return [ins[0]]


def _bn_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    axis = _bn_axis(attrs, ins[0])
    c = static_dim(ins[0].shape[axis], "BatchNormalization", f"number of features (axis {axis})")
    w: dict[str, WeightSpec] = {}
    if attrs["scale"]:
        w["weight"] = WeightSpec((c,), ONES)
    if attrs["center"]:
        w["bias"] = WeightSpec((c,), ZEROS)
    w["running_mean"] = WeightSpec((c,), ZEROS)
    w["running_var"] = WeightSpec((c,), ONES)
    w["num_batches_tracked"] = WeightSpec((), Init("const", 0.0), dtype="i64", optional=True)
    return w


def _broadcast(v: np.ndarray, ndim: int, axes: list[int]) -> np.ndarray:
    """Reshape a per-feature vector (or block over ``axes``, ascending) to broadcast over x."""
    shape = [1] * ndim
    for a, n in zip(axes, v.shape):
        shape[a] = n
    return v.astype(np.float64).reshape(shape)


def along(b: TensorBuilder, v: Value, rank: int, axes: list[int]) -> Value:
    """Reshape a per-feature value laid out over ``axes`` (ascending) to broadcast over an input
    of rank ``rank`` (right-aligned: trailing axes not in ``axes`` become 1); the tensor-IR
    counterpart of :func:`_broadcast`. A vector on the last axis stays as it is."""
    assert v.type.shape is not None
    sizes = dict(zip(axes, v.type.shape))
    shape = tuple(sizes.get(i, 1) for i in range(axes[0], rank))
    return v if shape == v.type.shape else b.reshape(v, shape)


def normalize(b: TensorBuilder, x: Value, axes: list[int], epsilon: float) -> Value:
    """``(x - mean) * rsqrt(var + eps)`` over ``axes`` with the variance as the mean of squared
    deviations (as the references): two reductions of one shape over the same axes plus
    elementwise ops, which the fusion pass makes one kernel."""
    mean = b.reduce("mean", x, axes, True)
    centred = b.binary("sub", x, mean)
    var = b.reduce("mean", b.unary("square", centred), axes, True)
    inv = b.unary("rsqrt", b.binary("add", var, b.scalar(epsilon, x.type.dtype)))
    return b.binary("mul", centred, inv)


def affine(b: TensorBuilder, y: Value, attrs: dict, axes: list[int]) -> Value:
    """``y * weight + bias`` with the weights laid out over ``axes``, each when its flag is set."""
    rank = len(y.type.shape)
    if attrs.get("scale"):
        y = b.binary("mul", y, along(b, b.weight("weight"), rank, axes))
    if attrs.get("center"):
        y = b.binary("add", y, along(b, b.weight("bias"), rank, axes))
    return y


def _bn_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axis = normalize_axis(attrs["axis"], x.ndim, "BatchNormalization")
    ax = [axis]
    mean, var = _broadcast(w["running_mean"], x.ndim, ax), _broadcast(w["running_var"], x.ndim, ax)
    y = (x.astype(np.float64) - mean) / np.sqrt(var + attrs["epsilon"])
    if attrs["scale"]:
        y = y * _broadcast(w["weight"], x.ndim, ax)
    if attrs["center"]:
        y = y + _broadcast(w["bias"], x.ndim, ax)
    return [y.astype(x.dtype)]


def _bn_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """``x * scale + shift`` with ``scale = weight * rsqrt(running_var + eps)`` and
    ``shift = bias - running_mean * scale`` computed from the weights by tensor ops, so
    ``fold-batchnorm`` can fold them into a preceding conv or matmul (without ``scale`` the
    weight factor is left out, without ``center`` the shift is ``-running_mean * scale``)."""
    x = xs[0]
    rank = len(x.type.shape)
    axis = _bn_axis(attrs, x.type)
    var_eps = b.binary("add", b.weight("running_var"), b.scalar(attrs["epsilon"]))
    scale = b.unary("rsqrt", var_eps)
    if attrs["scale"]:
        scale = b.binary("mul", b.weight("weight"), scale)
    mean_scaled = b.binary("mul", b.weight("running_mean"), scale)
    if attrs["center"]:
        shift = b.binary("sub", b.weight("bias"), mean_scaled)
    else:
        shift = b.unary("neg", mean_scaled)
    y = b.binary("mul", x, along(b, scale, rank, [axis]))
    return [b.binary("add", y, along(b, shift, rank, [axis]))]


def _affine_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Inference BatchNorm folds to one multiply-add per element."""
    assert ins[0].shape is not None
    return 2 * per_sample(ins[0].shape)


BATCH_NORMALIZATION = register(LayerSpec(
    name="BatchNormalization",
    params=(
        Param("axis", Axis(), -1, doc="the feature axis (-1: channels-last)"),
        Param("momentum", Float(0.0, 1.0), 0.99,
              doc="Keras momentum of the running statistics (PyTorch's is 1 - momentum)"),
        Param("epsilon", Float(0.0, min_open=True), 1e-3, aliases=("eps",),
              doc="added to the variance"),
        Param("center", Bool(), True, doc="learn an offset (bias)"),
        Param("scale", Bool(), True, doc="learn a scale (weight)"),
    ),
    positional=("axis", "momentum", "epsilon", "center", "scale"),
    shape=_bn_shape, reference=_bn_reference, weights=_bn_weights, flops=_affine_flops,
    lower=_bn_lower,
    aliases=("BatchNorm",),
    doc="Normalises each feature with its running mean and variance, then scales and shifts.",
    example="BatchNormalization(momentum=0.9)",
))


# -- LayerNormalization --------------------------------------------------------------------------


def _named_axes(layer: str, attrs: dict, t: TensorType) -> list[int]:
    """The normalised axes of Layer/RMSNormalization, non-negative and ascending (the weights'
    layout)."""
    shape = _ranked(t, layer)
    axes = [normalize_axis(a, len(shape), layer) for a in attrs["axis"]]
    if len(set(axes)) != len(axes):
        raise ShapeError(
            f"{layer} axis {attrs['axis']} names the same axis twice "
            f"for an input of rank {len(shape)}"
        )
    return sorted(axes)


def _named_axes_shape(layer: str):
    """The shape rule of a normalisation over named axes: the input shape, axes checked."""
    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        _named_axes(layer, attrs, ins[0])
        return [ins[0]]
    return rule


def _ln_axes(attrs: dict, t: TensorType) -> list[int]:
    return _named_axes("LayerNormalization", attrs, t)


def _ln_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    axes = _ln_axes(attrs, ins[0])
    if not (attrs["scale"] or attrs["center"]):
        return {}  # without an affine, the normalised axes may stay symbolic
    shape = tuple(static_dim(ins[0].shape[a], "LayerNormalization", f"size of axis {a}")
                  for a in axes)
    w: dict[str, WeightSpec] = {}
    if attrs["scale"]:
        w["weight"] = WeightSpec(shape, ONES)
    if attrs["center"]:
        w["bias"] = WeightSpec(shape, ZEROS)
    return w


def _ln_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axes = sorted(normalize_axis(a, x.ndim, "LayerNormalization") for a in attrs["axis"])
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=tuple(axes), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=tuple(axes), keepdims=True)
    y = (x64 - mean) / np.sqrt(var + attrs["epsilon"])
    if attrs["scale"]:
        y = y * _broadcast(w["weight"], x.ndim, axes)
    if attrs["center"]:
        y = y + _broadcast(w["bias"], x.ndim, axes)
    return [y.astype(x.dtype)]


def _ln_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """Mean and variance reductions over the axes, rsqrt, then the per-element affine."""
    x = xs[0]
    axes = _ln_axes(attrs, x.type)
    return [affine(b, normalize(b, x, axes, attrs["epsilon"]), attrs, axes)]


def _ln_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Mean, variance, normalise and affine: about eight operations per element."""
    assert ins[0].shape is not None
    return 8 * per_sample(ins[0].shape)


LAYER_NORMALIZATION = register(LayerSpec(
    name="LayerNormalization",
    params=(
        Param("axis", Axes(), [-1], doc="axis or list of axes normalised together"),
        Param("epsilon", Float(0.0, min_open=True), 1e-3, aliases=("eps",),
              doc="added to the variance"),
        Param("center", Bool(), True, doc="learn an offset (bias)"),
        Param("scale", Bool(), True, doc="learn a scale (weight)"),
    ),
    positional=("axis", "epsilon", "center", "scale"),
    shape=_named_axes_shape("LayerNormalization"), reference=_ln_reference,
    weights=_ln_weights, flops=_ln_flops,
    lower=_ln_lower,
    aliases=("LayerNorm",),
    doc="Normalises each sample over the given axes, then scales and shifts per element.",
    example="LayerNormalization(epsilon=1e-6)",
))


# -- shared by the per-sample normalisations ------------------------------------------------------


def _affine_weights(attrs: dict, c: int) -> dict[str, WeightSpec]:
    """Per-channel ``weight`` (ones) and ``bias`` (zeros), as torch's affine norms."""
    w: dict[str, WeightSpec] = {}
    if attrs["scale"]:
        w["weight"] = WeightSpec((c,), ONES)
    if attrs["center"]:
        w["bias"] = WeightSpec((c,), ZEROS)
    return w


def _affine(y: np.ndarray, attrs: dict, w: dict[str, np.ndarray], axes: list[int]) -> np.ndarray:
    if attrs["scale"]:
        y = y * _broadcast(w["weight"], y.ndim, axes)
    if attrs["center"]:
        y = y + _broadcast(w["bias"], y.ndim, axes)
    return y


def _norm_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Mean, variance, normalise and affine: about eight operations per element."""
    assert ins[0].shape is not None
    return 8 * per_sample(ins[0].shape)


def _divisor_hint(n: int, near: int, shown: int = 12) -> str:
    """Up to ``shown`` divisors of ``n``, the ones nearest ``near``, for an error's hint.

    Trial division up to the square root, and only for ``n`` up to 10^12: a channel count
    typed as 99999999977 must not make the error message itself take minutes."""
    root = math.isqrt(n)
    if root > 10**6:
        return f"choose groups among the divisors of {n}"
    small = [d for d in range(1, root + 1) if n % d == 0]
    divisors = small + [n // d for d in reversed(small) if d * d != n]
    if len(divisors) > shown:
        divisors = sorted(sorted(divisors, key=lambda d: (abs(d - near), d))[:shown])
        return f"choose groups among the divisors of {n}, such as {', '.join(map(str, divisors))}"
    return f"choose groups among the divisors of {n}: {', '.join(map(str, divisors))}"


# -- GroupNormalization ----------------------------------------------------------------------------


def _gn_check(attrs: dict) -> None:
    if attrs["groups"] == 0 or attrs["groups"] < -1:
        raise ParamError(f"'groups' must be a positive integer or -1 (one group per channel), "
                         f"got {attrs['groups']}")


def _gn_layout(attrs: dict, t: TensorType) -> tuple[int, int, int]:
    """(channel axis, channels, groups); the channel count must be static and divisible."""
    shape = _ranked(t, "GroupNormalization")
    axis = normalize_axis(attrs["axis"], len(shape), "GroupNormalization")
    c = shape[axis]
    if not isinstance(c, int):
        raise ShapeError(
            f"GroupNormalization needs a fixed number of channels (axis {axis}) to form groups, "
            f"got the symbolic dim '{c}'",
            "give the channel axis a number in the input shape",
        )
    groups = c if attrs["groups"] == -1 else attrs["groups"]
    if c % groups != 0:
        raise ShapeError(
            f"GroupNormalization groups={groups} must divide the number of channels {c} "
            f"(input {shape_str(shape)})",
            _divisor_hint(c, groups),
        )
    return axis, c, groups


def _gn_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    _gn_layout(attrs, ins[0])
    return [ins[0]]


def _gn_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    _, c, _ = _gn_layout(attrs, ins[0])
    return _affine_weights(attrs, c)


def _gn_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Statistics over each group of channels and every other non-batch axis, per sample."""
    x = xs[0]
    axis = normalize_axis(attrs["axis"], x.ndim, "GroupNormalization")
    c = x.shape[axis]
    groups = c if attrs["groups"] == -1 else attrs["groups"]
    xc = np.moveaxis(x.astype(np.float64), axis, 1)  # (N, C, ...)
    g = xc.reshape(x.shape[0], groups, -1)
    mean = g.mean(axis=2, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=2, keepdims=True)
    y = np.moveaxis(((g - mean) / np.sqrt(var + attrs["epsilon"])).reshape(xc.shape), 1, axis)
    return [_affine(y, attrs, w, [axis]).astype(x.dtype)]


def _gn_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """Split the channel axis into (groups, channels per group) in place (a row-major reshape),
    normalise over every axis but the batch and the group axis, reshape back, then the
    per-channel affine."""
    x = xs[0]
    shape = x.type.shape
    axis, c, groups = _gn_layout(attrs, x.type)
    split = b.reshape(x, (*shape[:axis], groups, c // groups, *shape[axis + 1:]))
    red = [i for i in range(1, len(shape) + 1) if i != axis]
    y = b.reshape(normalize(b, split, red, attrs["epsilon"]), shape)
    return [affine(b, y, attrs, [axis])]


GROUP_NORMALIZATION = register(LayerSpec(
    name="GroupNormalization",
    params=(
        Param("groups", Int(), 32, aliases=("num_groups",),
              doc="number of channel groups; must divide the channels (-1: one per channel)"),
        Param("axis", Axis(), -1, doc="the channel axis (-1: channels-last)"),
        Param("epsilon", Float(0.0, min_open=True), 1e-3, aliases=("eps",),
              doc="added to the variance"),
        Param("center", Bool(), True, doc="learn an offset (bias)"),
        Param("scale", Bool(), True, doc="learn a scale (weight)"),
    ),
    positional=("groups", "axis", "epsilon", "center", "scale"),
    shape=_gn_shape, reference=_gn_reference, weights=_gn_weights, flops=_norm_flops,
    lower=_gn_lower,
    check=_gn_check, aliases=("GroupNorm",),
    doc="Normalises each group of channels of each sample, then scales and shifts per channel.",
    example="GroupNormalization(groups=8)",
))


# -- InstanceNormalization ----------------------------------------------------------------------


def _in_axis(attrs: dict, t: TensorType) -> int:
    assert t.shape is not None
    if len(t.shape) < 3:
        raise ShapeError(
            "InstanceNormalization expects input (batch, ..., channels) with at least one "
            f"spatial or time axis, got {shape_str(t.shape)}",
            "to normalise a vector of features use LayerNormalization",
        )
    return normalize_axis(attrs["axis"], len(t.shape), "InstanceNormalization")


def _in_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    _in_axis(attrs, ins[0])
    return [ins[0]]


def _in_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    axis = _in_axis(attrs, ins[0])
    if not (attrs["scale"] or attrs["center"]):
        return {}
    c = static_dim(ins[0].shape[axis], "InstanceNormalization", f"number of channels (axis {axis})")
    return _affine_weights(attrs, c)


def _in_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Statistics over every axis but the batch and the channels, per sample and channel."""
    x = xs[0]
    axis = normalize_axis(attrs["axis"], x.ndim, "InstanceNormalization")
    red = tuple(a for a in range(1, x.ndim) if a != axis)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=red, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=red, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + attrs["epsilon"])
    return [_affine(y, attrs, w, [axis]).astype(x.dtype)]


def _in_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """Normalise over every axis but the batch and the channels, then the per-channel affine."""
    x = xs[0]
    axis = _in_axis(attrs, x.type)
    red = [i for i in range(1, len(x.type.shape)) if i != axis]
    return [affine(b, normalize(b, x, red, attrs["epsilon"]), attrs, [axis])]


INSTANCE_NORMALIZATION = register(LayerSpec(
    name="InstanceNormalization",
    params=(
        Param("axis", Axis(), -1, doc="the channel axis (-1: channels-last)"),
        Param("epsilon", Float(0.0, min_open=True), 1e-3, aliases=("eps",),
              doc="added to the variance (Keras family 1e-3; PyTorch's default is 1e-5)"),
        Param("center", Bool(), True, doc="learn an offset (bias)"),
        Param("scale", Bool(), True, doc="learn a scale (weight)"),
    ),
    positional=("axis", "epsilon", "center", "scale"),
    shape=_in_shape, reference=_in_reference, weights=_in_weights, flops=_norm_flops,
    lower=_in_lower,
    aliases=("InstanceNorm",),
    doc="Normalises each channel of each sample over its spatial axes, then scales and shifts.",
    example="InstanceNormalization(epsilon=1e-5)",
))


# -- RMSNormalization ------------------------------------------------------------------------------


def _rms_axes(attrs: dict, t: TensorType) -> list[int]:
    return _named_axes("RMSNormalization", attrs, t)


def _rms_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    axes = _rms_axes(attrs, ins[0])
    if not attrs["scale"]:
        return {}
    shape = tuple(static_dim(ins[0].shape[a], "RMSNormalization", f"size of axis {a}")
                  for a in axes)
    return {"weight": WeightSpec(shape, ONES)}


def _rms_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                   ) -> list[np.ndarray]:
    x = xs[0]
    axes = sorted(normalize_axis(a, x.ndim, "RMSNormalization") for a in attrs["axis"])
    x64 = x.astype(np.float64)
    y = x64 / np.sqrt((x64 ** 2).mean(axis=tuple(axes), keepdims=True) + attrs["epsilon"])
    if attrs["scale"]:
        y = y * _broadcast(w["weight"], x.ndim, axes)
    return [y.astype(x.dtype)]


def _rms_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """``x * rsqrt(mean(x^2) + eps)`` (one reduction plus elementwise ops), then the scale."""
    x = xs[0]
    axes = _rms_axes(attrs, x.type)
    ms = b.reduce("mean", b.unary("square", x), axes, True)
    y = b.binary("mul", x, b.unary("rsqrt", b.binary("add", ms, b.scalar(attrs["epsilon"],
                                                                           x.type.dtype))))
    return [affine(b, y, attrs, axes)]


def _rms_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Square, mean, divide and scale: about four operations per element."""
    assert ins[0].shape is not None
    return 4 * per_sample(ins[0].shape)


RMS_NORMALIZATION = register(LayerSpec(
    name="RMSNormalization",
    params=(
        Param("axis", Axes(), [-1], doc="axis or list of axes normalised together"),
        Param("epsilon", Float(0.0, min_open=True), 1e-6, aliases=("eps",),
              doc="added to the mean square (Keras 3's default 1e-6)"),
        Param("scale", Bool(), True, aliases=("elementwise_affine",),
              doc="learn a scale (weight) per normalised element"),
    ),
    positional=("axis", "epsilon"),
    shape=_named_axes_shape("RMSNormalization"), reference=_rms_reference,
    weights=_rms_weights, flops=_rms_flops,
    lower=_rms_lower,
    aliases=("RMSNorm",),
    doc="Divides each sample by its root mean square over the given axes, then scales.",
    example="RMSNormalization(epsilon=1e-5)",
))
