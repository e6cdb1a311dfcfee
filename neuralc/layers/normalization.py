"""BatchNormalization and LayerNormalization: Keras's parameters, PyTorch's weight names.

BatchNormalization runs with its running statistics (inference semantics); its weights are
``torch.nn.BatchNorm*d``'s state_dict entries, ``num_batches_tracked`` included, so a PyTorch
checkpoint loads unchanged. Keras's ``momentum`` (weight of the old running value) is kept as
Keras means it; a training backend converts it (PyTorch's momentum is ``1 - momentum``).
"""

from __future__ import annotations

import numpy as np

from neuralc.ir.dims import Dim
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import (
    Axes,
    Axis,
    Bool,
    Float,
    Init,
    LayerSpec,
    Param,
    ShapeContext,
    ShapeError,
    WeightSpec,
    register,
)
from neuralc.layers.common import ONES, ZEROS, normalize_axis, per_sample, static_dim


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
    w["num_batches_tracked"] = WeightSpec((), Init("const", 0.0), dtype="i64")
    return w


def _broadcast(v: np.ndarray, ndim: int, axes: list[int]) -> np.ndarray:
    """Reshape a per-feature vector (or block over ``axes``, ascending) to broadcast over x."""
    shape = [1] * ndim
    for a, n in zip(axes, v.shape):
        shape[a] = n
    return v.astype(np.float64).reshape(shape)


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
    aliases=("BatchNorm",),
    doc="Normalises each feature with its running mean and variance, then scales and shifts.",
    example="BatchNormalization(momentum=0.9)",
))


# -- LayerNormalization --------------------------------------------------------------------------


def _ln_axes(attrs: dict, t: TensorType) -> list[int]:
    """The normalised axes, non-negative and ascending (the weights' layout)."""
    shape = _ranked(t, "LayerNormalization")
    axes = [normalize_axis(a, len(shape), "LayerNormalization") for a in attrs["axis"]]
    if len(set(axes)) != len(axes):
        raise ShapeError(
            f"LayerNormalization axis {attrs['axis']} names the same axis twice "
            f"for an input of rank {len(shape)}"
        )
    return sorted(axes)


def _ln_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    _ln_axes(attrs, ins[0])
    return [ins[0]]


def _ln_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    axes = _ln_axes(attrs, ins[0])
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
    shape=_ln_shape, reference=_ln_reference, weights=_ln_weights, flops=_ln_flops,
    aliases=("LayerNorm",),
    doc="Normalises each sample over the given axes, then scales and shifts per element.",
    example="LayerNormalization(epsilon=1e-6)",
))
