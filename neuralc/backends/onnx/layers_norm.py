"""Normalisation layers as ONNX nodes: native operators where the opset has them, the defining
formula otherwise (LayerNormalization before opset 17, RMSNormalization before 23, and axes
the native operators cannot take: not trailing, or of symbolic size). GroupNormalization is
InstanceNormalization over groups.

BatchNormalization, GroupNormalization and InstanceNormalization want the channel axis at
physical position 1 — a channels-first form for the usual channels-last axis, which a
preceding convolution already produced.
"""

from __future__ import annotations

import numpy as np

from neuralc.backends.onnx.builder import Builder, Layer, Perm, Val, channels_first
from neuralc.backends.onnx.emitters import emits
from neuralc.layers.common import normalize_axis


def _broadcast_block(w: np.ndarray, perm: Perm, axes: list[int]) -> np.ndarray:
    """A weight laid over IR ``axes`` (ascending), reshaped to broadcast in layout ``perm``."""
    phys = sorted(axes, key=perm.index)
    block = w.transpose([axes.index(a) for a in phys]) if len(axes) > 1 else w
    shape = [1] * len(perm)
    for a, n in zip(phys, block.shape):
        shape[perm.index(a)] = n
    return block.reshape(shape)


def _channel_first_form(b: Builder, v: Val, axis: int) -> tuple[Perm, str]:
    """A form with IR axis ``axis`` at physical position 1 (existing, else transposed)."""
    for perm, name in v.forms.items():
        if v.rank > 1 and perm[1] == axis:
            return perm, name
    if axis == v.rank - 1:
        perm = channels_first(v.rank)
    else:
        rest = [a for a in range(1, v.rank) if a != axis]
        perm = (0, axis, *rest)
    return perm, b.get(v, perm)


def _affine(b: Builder, layer: Layer, y: str, perm: Perm, axes: list[int]) -> str:
    """``y * weight + bias`` for the layer's optional weight and bias over ``axes``."""
    for param, op in (("weight", "Mul"), ("bias", "Add")):
        if b.has_weight(layer, param):
            w = _broadcast_block(b.weight(layer, param), perm, axes)
            y = b.op(op, [y, b.init(f"{layer.name}.{param}", w)])
    return y


def _ones_or(b: Builder, layer: Layer, param: str, shape: tuple[int, ...], fill: float) -> str:
    """The layer's weight as an initializer, or a constant the operator needs in its place."""
    if b.has_weight(layer, param):
        return b.param(layer, param)
    return b.const(np.full(shape, fill, dtype=np.float32))


# -- BatchNormalization ---------------------------------------------------------------------------


@emits("batch_normalization")
def batch_norm(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """The BatchNormalization operator where the feature axis is physically axis 1 already;
    otherwise one multiply-add with the statistics folded in (no transposes for it)."""
    x = xs[0]
    axis = normalize_axis(layer.attrs["axis"], x.rank, "BatchNormalization")
    eps = float(layer.attrs["epsilon"])
    mean = b.weight(layer, "running_mean").astype(np.float64)
    var = b.weight(layer, "running_var").astype(np.float64)
    c = mean.shape[0]
    for perm, name in x.forms.items():
        if perm[1] == axis:
            ins = [name, _ones_or(b, layer, "weight", (c,), 1.0),
                   _ones_or(b, layer, "bias", (c,), 0.0),
                   b.param(layer, "running_mean"), b.param(layer, "running_var")]
            return [b.val(layer.out_types[0], b.op("BatchNormalization", ins, epsilon=eps), perm)]
    perm, name = b.any(x)
    gamma = b.weight(layer, "weight").astype(np.float64) if b.has_weight(layer, "weight") else 1.0
    beta = b.weight(layer, "bias").astype(np.float64) if b.has_weight(layer, "bias") else 0.0
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    s = b.init(f"{layer.name}.scale", _broadcast_block(np.asarray(scale), perm, [axis]))
    t = b.init(f"{layer.name}.shift", _broadcast_block(np.asarray(shift), perm, [axis]))
    y = b.op("Add", [b.op("Mul", [name, s]), t], hint="batchnorm")
    return [b.val(layer.out_types[0], y, perm)]


# -- LayerNormalization, RMSNormalization ---------------------------------------------------------


def _norm_axes(layer: Layer, rank: int, what: str) -> list[int]:
    return sorted(normalize_axis(a, rank, what) for a in layer.attrs["axis"])


def _native_axes(x: Val, axes: list[int]) -> bool:
    """Whether the native LayerNormalization/RMSNormalization operator fits: the axes trail,
    and their sizes are numbers (its scale input, ones when the layer has none, is a constant
    of that shape; a symbolic axis takes the defining formula, which needs no constant)."""
    return (axes == list(range(axes[0], x.rank))
            and all(isinstance(x.shape[a], int) for a in axes))


@emits("layer_normalization")
def layer_norm(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    x = xs[0]
    axes = _norm_axes(layer, x.rank, "LayerNormalization")
    eps = float(layer.attrs["epsilon"])
    out = layer.out_types[0]
    if _native_axes(x, axes) and b.has("LayerNormalization"):
        shape = tuple(int(x.shape[a]) for a in axes)
        ins = [b.get(x), _ones_or(b, layer, "weight", shape, 1.0)]
        if b.has_weight(layer, "bias"):
            ins.append(b.param(layer, "bias"))
        return [b.val(out, b.op("LayerNormalization", ins, axis=axes[0], epsilon=eps))]
    perm, name = b.any(x)
    phys = [perm.index(a) for a in axes]
    centred = b.op("Sub", [name, b.reduce("ReduceMean", name, phys, True)])
    var = b.reduce("ReduceMean", b.op("Mul", [centred, centred]), phys, True)
    y = b.op("Div", [centred, b.op("Sqrt", [b.op("Add", [var, b.scalar(eps)])])],
             hint="layernorm")
    return [b.val(out, _affine(b, layer, y, perm, axes), perm)]


@emits("rms_normalization")
def rms_norm(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    x = xs[0]
    axes = _norm_axes(layer, x.rank, "RMSNormalization")
    eps = float(layer.attrs["epsilon"])
    out = layer.out_types[0]
    if _native_axes(x, axes) and b.has("RMSNormalization"):
        shape = tuple(int(x.shape[a]) for a in axes)
        ins = [b.get(x), _ones_or(b, layer, "weight", shape, 1.0)]
        return [b.val(out, b.op("RMSNormalization", ins, axis=axes[0], epsilon=eps))]
    perm, name = b.any(x)
    phys = [perm.index(a) for a in axes]
    ms = b.reduce("ReduceMean", b.op("Mul", [name, name]), phys, True)
    y = b.op("Div", [name, b.op("Sqrt", [b.op("Add", [ms, b.scalar(eps)])])], hint="rmsnorm")
    return [b.val(out, _affine(b, layer, y, perm, axes), perm)]


# -- GroupNormalization, InstanceNormalization ----------------------------------------------------


@emits("group_normalization")
def group_norm(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Statistics per group through InstanceNormalization on a (batch, groups, rest) view,
    then the per-channel affine. Not the opset-21 GroupNormalization operator: onnx has no
    shape inference for it, so nothing after it could be shape-checked (or made float16)."""
    x = xs[0]
    axis = normalize_axis(layer.attrs["axis"], x.rank, "GroupNormalization")
    c = int(x.shape[axis])
    groups = c if layer.attrs["groups"] == -1 else int(layer.attrs["groups"])
    eps = float(layer.attrs["epsilon"])
    perm, name = _channel_first_form(b, x, axis)
    grouped = b.op("Reshape", [name, b.ints([0, groups, -1])])
    normed = b.op("InstanceNormalization", [grouped, b.const(np.ones(groups, np.float32)),
                                            b.const(np.zeros(groups, np.float32))], epsilon=eps)
    y = b.op("Reshape", [normed, b.op("Shape", [name])], hint="groupnorm")
    return [b.val(layer.out_types[0], _affine(b, layer, y, perm, [axis]), perm)]


@emits("instance_normalization")
def instance_norm(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    x = xs[0]
    axis = normalize_axis(layer.attrs["axis"], x.rank, "InstanceNormalization")
    c = int(x.shape[axis]) if isinstance(x.shape[axis], int) else None
    perm, name = _channel_first_form(b, x, axis)
    eps = float(layer.attrs["epsilon"])
    out = layer.out_types[0]
    if c is None:  # no affine and a symbolic channel count: normalise with the formula
        phys = [i for i in range(2, x.rank)]
        centred = b.op("Sub", [name, b.reduce("ReduceMean", name, phys, True)])
        var = b.reduce("ReduceMean", b.op("Mul", [centred, centred]), phys, True)
        y = b.op("Div", [centred, b.op("Sqrt", [b.op("Add", [var, b.scalar(eps)])])])
        return [b.val(out, y, perm)]
    ins = [name, _ones_or(b, layer, "weight", (c,), 1.0), _ones_or(b, layer, "bias", (c,), 0.0)]
    return [b.val(out, b.op("InstanceNormalization", ins, epsilon=eps), perm)]

