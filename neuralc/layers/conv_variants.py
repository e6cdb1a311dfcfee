"""Transposed, depthwise and separable convolutions: Keras semantics, PyTorch weight layouts.

- ``Conv{1,2,3}DTranspose``: ``weight`` is ``(in_channels, filters / groups, *kernel_size)``
  and ``bias`` ``(filters,)``, as ``torch.nn.ConvTransposeNd``. The output length is Keras's
  (``common.transpose_out_dim``, ``output_padding=None`` included). The result is the adjoint
  of the Keras forward convolution: the full transposed convolution, cropped at the start by
  the smaller half of Keras's 'same' padding and cut or zero-extended at the end
  (``common.transpose_crop``). Keras 3's JAX and PyTorch backends (3.15) compute exactly this;
  TensorFlow agrees where it runs (it refuses 'same' with an even kernel and
  ``output_padding=0``). An output length below 1 is a shape error (Keras gives an empty
  tensor). ``groups`` is a PyTorch extension (Keras has none), default 1.
- ``DepthwiseConv{1,2}D``: ``weight`` ``(in * depth_multiplier, 1, *kernel_size)``, ``bias``
  ``(in * depth_multiplier,)``: ``torch.nn.ConvNd(in, in * dm, k, groups=in)``. Output channel
  ``c * dm + m`` is input channel ``c``'s ``m``-th filter, in Keras and PyTorch alike.
- ``SeparableConv{1,2}D``: a depthwise convolution without bias (``depthwise.weight``) then a
  1x1 convolution (``pointwise.weight`` ``(filters, in * dm, 1[, 1])``, ``pointwise.bias``); as
  in Keras the only bias is the pointwise one, and the activation follows it.

Keras refuses ``strides > 1`` with ``dilation_rate > 1`` for all of them; so do we.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from neuralc.ir.activations import apply_activation
from neuralc.ir.dims import Dim, floordiv, product
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.ir.windows import (
    effective_window,
    pad_spatial,
    sliding_windows,
    spatial_pads,
    transpose_crop,
    transpose_out_dim,
)
from neuralc.layers.catalog import (
    ActivationName,
    Bool,
    Choice,
    Int,
    IntTuple,
    LayerSpec,
    Optional_,
    Param,
    ParamError,
    WeightSpec,
    register,
)
from neuralc.layers.common import (
    bias_bound,
    channels_divisible_by_groups,
    conv_window_dims,
    filters_divisible_by_groups,
    kaiming_uniform_bound,
    no_strided_dilation,
    require_spatial,
    static_dim,
)

_DATA = {1: "sequences (batch, steps, channels)", 2: "images (batch, height, width, channels)",
         3: "volumes (batch, depth, height, width, channels)"}


def _rank(attrs: dict) -> int:
    return len(attrs["kernel_size"])


def _window_params(n: int) -> tuple[Param, ...]:
    """strides, padding, dilation_rate: the window parameters shared by these layers."""
    return (
        Param("strides", IntTuple(n), [1] * n, aliases=("stride",), doc="step of the window"),
        Param("padding", Choice(("valid", "same")), "valid",
              doc='"valid" (no padding) or "same" (Keras\'s padding, the extra at the end)'),
        Param("dilation_rate", IntTuple(n), [1] * n, aliases=("dilation",),
              doc="spacing between kernel taps"),
    )


def depthwise_conv(x: np.ndarray, weight: np.ndarray, attrs: dict) -> np.ndarray:
    """Depthwise convolution of channels-last ``x`` (float64) with ``weight`` (C*dm, 1, *k)."""
    k, s, d = attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"]
    n, c = len(k), x.shape[-1]
    pads = spatial_pads(x.shape, k, s, d, attrs["padding"])
    win = sliding_windows(pad_spatial(x, pads), k, s, d)  # (N, *out, C, *k)
    w = weight.reshape(c, weight.shape[0] // c, *k)  # (C, dm, *k): channel c*dm + m
    sp, ks = "abc"[:n], "ijk"[:n]
    y = np.einsum(f"n{sp}c{ks},cm{ks}->n{sp}cm", win, w, optimize=True)
    return y.reshape(*y.shape[:-2], -1)


# -- transposed convolution ------------------------------------------------------------------


def _tname(n: int) -> str:
    return f"Conv{n}DTranspose"


def _transpose_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    n = _rank(attrs)
    layer = _tname(n)
    shape = require_spatial(ins[0], n, layer)
    channels_divisible_by_groups(layer, shape[-1], attrs["groups"])
    op = attrs["output_padding"] or [None] * n
    spatial = tuple(
        transpose_out_dim(x, ki, si, di, attrs["padding"], oi)
        for x, ki, si, di, oi in zip(shape[1:-1], attrs["kernel_size"], attrs["strides"],
                                     attrs["dilation_rate"], op)
    )
    if any(isinstance(x, int) and x < 1 for x in spatial):
        raise ShapeError(
            f"{layer} gives an empty output {shape_str(spatial)} for input "
            f"{shape_str(shape[1:-1])}",
            "an even kernel with padding=\"same\" and output_padding=0 shrinks the output; "
            "use output_padding=None or an odd kernel_size",
        )
    return [ins[0].with_shape((shape[0], *spatial, attrs["filters"]))]


def _transpose_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    channels = static_dim(ins[0].shape[-1], _tname(_rank(attrs)), "number of input channels")
    out_per_group = attrs["filters"] // attrs["groups"]
    # torch computes fan_in from weight.size(1) * prod(kernel) for transposed convolutions too.
    fan_in = out_per_group * int(np.prod(attrs["kernel_size"]))
    w = {"weight": WeightSpec((channels, out_per_group, *attrs["kernel_size"]),
                              kaiming_uniform_bound(fan_in))}
    if attrs["use_bias"]:
        w["bias"] = WeightSpec((attrs["filters"],), bias_bound(fan_in))
    return w


def _transpose_reference(attrs: dict, xs: list[np.ndarray],
                         w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0].astype(np.float64)
    k, s, d = attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"]
    weight = w["weight"].astype(np.float64)  # (C, F/g, *k)
    groups = attrs["groups"]
    batch, spatial, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    cg, fg = c // groups, weight.shape[1]
    full = [(i - 1) * si + effective_window(ki, di) for i, ki, si, di in zip(spatial, k, s, d)]
    acc = np.zeros((batch, *full, fg * groups))
    # Scatter: input position o with tap t lands on o * stride + t * dilation.
    for tap in itertools.product(*(range(ki) for ki in k)):
        wt = weight[(slice(None), slice(None), *tap)]  # (C, F/g)
        contrib = np.concatenate(
            [x[..., g * cg:(g + 1) * cg] @ wt[g * cg:(g + 1) * cg] for g in range(groups)],
            axis=-1)
        where = tuple(slice(t * di, t * di + (i - 1) * si + 1, si)
                      for t, di, i, si in zip(tap, d, spatial, s))
        acc[(slice(None), *where, slice(None))] += contrib
    op = attrs["output_padding"] or [None] * len(k)
    outs = [transpose_out_dim(i, ki, si, di, attrs["padding"], oi)
            for i, ki, si, di, oi in zip(spatial, k, s, d, op)]
    crops = [transpose_crop(i, ki, si, di, o) for i, ki, si, di, o in zip(spatial, k, s, d, outs)]
    y = np.zeros((batch, *outs, fg * groups))
    keep = [min(o, f - cr) for o, f, cr in zip(outs, full, crops)]
    y[(slice(None), *(slice(0, kp) for kp in keep), slice(None))] = \
        acc[(slice(None), *(slice(cr, cr + kp) for cr, kp in zip(crops, keep)), slice(None))]
    if attrs["use_bias"]:
        y = y + w["bias"].astype(np.float64)
    return [apply_activation(attrs["activation"], y.astype(xs[0].dtype))]


def _transpose_lower(b, attrs: dict, xs: list) -> list:
    """``tensor.conv_transpose`` with Keras's output length and crop, bias add, activation."""
    conv_attrs = {
        "strides": list(attrs["strides"]), "dilation": list(attrs["dilation_rate"]),
        "groups": attrs["groups"], "padding": attrs["padding"],
    }
    if attrs["output_padding"] is not None:
        conv_attrs["output_padding"] = list(attrs["output_padding"])
    y = b.op("tensor.conv_transpose", [xs[0], b.weight("weight")], conv_attrs)
    if attrs["use_bias"]:
        y = b.binary("add", y, b.weight("bias"))
    return [b.activation(attrs["activation"], y)]


def _transpose_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Every input element meets every tap of its group's filters: 2 FLOPs per product."""
    assert ins[0].shape is not None
    macs = product(list(ins[0].shape[1:])) * floordiv(attrs["filters"], attrs["groups"])
    return 2 * macs * product(attrs["kernel_size"])


def _transpose_check(attrs: dict) -> None:
    no_strided_dilation(attrs)
    filters_divisible_by_groups(attrs)
    op = attrs["output_padding"]
    if op is not None and any(p >= s for p, s in zip(op, attrs["strides"])):
        raise ParamError(
            f"'output_padding' must be smaller than 'strides' (as in Keras), got "
            f"output_padding={tuple(op)} and strides={tuple(attrs['strides'])}"
        )


def _transpose_params(n: int) -> tuple[Param, ...]:
    return (
        Param("filters", Int(min=1), aliases=("out_channels",), doc="output channels"),
        Param("kernel_size", IntTuple(n), aliases=("kernel",),
              doc="window size; an int stands for every spatial axis"),
        Param("activation", ActivationName(), "linear", doc="applied after the bias"),
        *_window_params(n),
        Param("output_padding", Optional_(IntTuple(n, min=0)), None,
              doc="extra output length at the end, smaller than strides; None: Keras's "
                  "in * stride ('same') or in * stride + max(kernel - stride, 0) ('valid')"),
        Param("groups", Int(min=1), 1,
              doc="independent channel groups (a PyTorch extension; Keras has none)"),
        Param("use_bias", Bool(), True, aliases=("bias",), doc="add a learned bias"),
    )


CONV1D_TRANSPOSE, CONV2D_TRANSPOSE, CONV3D_TRANSPOSE = (
    register(LayerSpec(
        name=_tname(n), params=_transpose_params(n),
        positional=("filters", "kernel_size", "activation"),
        shape=_transpose_shape, reference=_transpose_reference, weights=_transpose_weights,
        flops=_transpose_flops, check=_transpose_check, lower=_transpose_lower,
        aliases=(f"Convolution{n}DTranspose",),
        doc=f"{n}-D transposed convolution over {_DATA[n]}, the adjoint of a Keras "
            f"convolution: upsamples by strides.",
        example=(f'{_tname(n)}(16, 3, "relu", strides=2, padding="same")' if n == 2
                 else f"{_tname(n)}(8, 2, strides=2)"),
    ))
    for n in (1, 2, 3)
)


# -- depthwise convolution -------------------------------------------------------------------


def _dname(n: int) -> str:
    return f"DepthwiseConv{n}D"


def _depthwise_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    n = _rank(attrs)
    layer = _dname(n)
    shape = require_spatial(ins[0], n, layer)
    spatial = conv_window_dims(layer, shape, attrs)
    return [ins[0].with_shape((shape[0], *spatial, shape[-1] * attrs["depth_multiplier"]))]


def _depthwise_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    channels = static_dim(ins[0].shape[-1], _dname(_rank(attrs)), "number of input channels")
    out = channels * attrs["depth_multiplier"]
    fan_in = int(np.prod(attrs["kernel_size"]))  # one input channel per group
    w = {"weight": WeightSpec((out, 1, *attrs["kernel_size"]), kaiming_uniform_bound(fan_in))}
    if attrs["use_bias"]:
        w["bias"] = WeightSpec((out,), bias_bound(fan_in))
    return w


def _depthwise_reference(attrs: dict, xs: list[np.ndarray],
                         w: dict[str, np.ndarray]) -> list[np.ndarray]:
    y = depthwise_conv(xs[0].astype(np.float64), w["weight"].astype(np.float64), attrs)
    if attrs["use_bias"]:
        y = y + w["bias"].astype(np.float64)
    return [apply_activation(attrs["activation"], y.astype(xs[0].dtype))]


def _depthwise_conv_op(b, attrs: dict, x: Any, weight: str) -> Any:
    """A depthwise convolution as ``tensor.conv`` with one group per input channel.

    The weight ``(C * dm, 1, *k)`` is already the grouped layout: group ``c`` holds channel
    ``c``'s ``dm`` filters, giving output channel ``c * dm + m`` as Keras and PyTorch do.
    """
    channels = x.type.shape[-1]
    assert isinstance(channels, int), "depthwise weights fix the number of channels"
    return b.op("tensor.conv", [x, b.weight(weight)], {
        "strides": list(attrs["strides"]), "dilation": list(attrs["dilation_rate"]),
        "groups": channels, "padding": attrs["padding"],
    })


def _depthwise_lower(b, attrs: dict, xs: list) -> list:
    """Grouped ``tensor.conv``, bias add, activation."""
    y = _depthwise_conv_op(b, attrs, xs[0], "weight")
    if attrs["use_bias"]:
        y = b.binary("add", y, b.weight("bias"))
    return [b.activation(attrs["activation"], y)]


def _depthwise_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    assert outs[0].shape is not None
    return 2 * product(list(outs[0].shape[1:])) * product(attrs["kernel_size"])


def _depthwise_params(n: int) -> tuple[Param, ...]:
    return (
        Param("kernel_size", IntTuple(n), aliases=("kernel",),
              doc="window size; an int stands for every spatial axis"),
        Param("activation", ActivationName(), "linear", doc="applied after the bias"),
        *_window_params(n),
        Param("depth_multiplier", Int(min=1), 1, doc="output channels per input channel"),
        Param("use_bias", Bool(), True, aliases=("bias",), doc="add a learned bias"),
    )


DEPTHWISE_CONV1D, DEPTHWISE_CONV2D = (
    register(LayerSpec(
        name=_dname(n), params=_depthwise_params(n), positional=("kernel_size", "activation"),
        shape=_depthwise_shape, reference=_depthwise_reference, weights=_depthwise_weights,
        flops=_depthwise_flops, check=no_strided_dilation, lower=_depthwise_lower,
        doc=f"{n}-D depthwise convolution over {_DATA[n]}: each channel convolved with its own "
            f"depth_multiplier filters.",
        example=(f'{_dname(n)}(3, strides=2, padding="same")' if n == 2
                 else f"{_dname(n)}(5, depth_multiplier=2)"),
    ))
    for n in (1, 2)
)


# -- separable convolution -------------------------------------------------------------------


def _sname(n: int) -> str:
    return f"SeparableConv{n}D"


def _separable_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    n = _rank(attrs)
    layer = _sname(n)
    shape = require_spatial(ins[0], n, layer)
    spatial = conv_window_dims(layer, shape, attrs)
    return [ins[0].with_shape((shape[0], *spatial, attrs["filters"]))]


def _separable_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    n = _rank(attrs)
    channels = static_dim(ins[0].shape[-1], _sname(n), "number of input channels")
    mid = channels * attrs["depth_multiplier"]
    k = attrs["kernel_size"]
    w = {
        "depthwise.weight": WeightSpec((mid, 1, *k), kaiming_uniform_bound(int(np.prod(k)))),
        "pointwise.weight": WeightSpec((attrs["filters"], mid, *([1] * n)),
                                       kaiming_uniform_bound(mid)),
    }
    if attrs["use_bias"]:
        w["pointwise.bias"] = WeightSpec((attrs["filters"],), bias_bound(mid))
    return w


def _separable_reference(attrs: dict, xs: list[np.ndarray],
                         w: dict[str, np.ndarray]) -> list[np.ndarray]:
    mid = depthwise_conv(xs[0].astype(np.float64), w["depthwise.weight"].astype(np.float64),
                         attrs)
    pw = w["pointwise.weight"].astype(np.float64)
    y = mid @ pw.reshape(pw.shape[0], pw.shape[1]).T
    if attrs["use_bias"]:
        y = y + w["pointwise.bias"].astype(np.float64)
    return [apply_activation(attrs["activation"], y.astype(xs[0].dtype))]


def _separable_lower(b, attrs: dict, xs: list) -> list:
    """Depthwise ``tensor.conv`` (no bias), 1x1 ``tensor.conv``, its bias, activation."""
    mid = _depthwise_conv_op(b, attrs, xs[0], "depthwise.weight")
    n = _rank(attrs)
    y = b.op("tensor.conv", [mid, b.weight("pointwise.weight")], {
        "strides": [1] * n, "dilation": [1] * n, "groups": 1, "padding": "valid",
    })
    if attrs["use_bias"]:
        y = b.binary("add", y, b.weight("pointwise.bias"))
    return [b.activation(attrs["activation"], y)]


def _separable_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    assert ins[0].shape is not None and outs[0].shape is not None
    positions = product(list(outs[0].shape[1:-1]))
    mid = ins[0].shape[-1] * attrs["depth_multiplier"]
    depthwise = 2 * positions * mid * product(attrs["kernel_size"])
    return depthwise + 2 * positions * mid * attrs["filters"]


def _separable_params(n: int) -> tuple[Param, ...]:
    return (
        Param("filters", Int(min=1), aliases=("out_channels",), doc="output channels"),
        Param("kernel_size", IntTuple(n), aliases=("kernel",),
              doc="depthwise window size; an int stands for every spatial axis"),
        Param("activation", ActivationName(), "linear", doc="applied after the pointwise bias"),
        *_window_params(n),
        Param("depth_multiplier", Int(min=1), 1,
              doc="depthwise output channels per input channel"),
        Param("use_bias", Bool(), True, aliases=("bias",),
              doc="add a learned bias after the pointwise convolution (the only bias)"),
    )


SEPARABLE_CONV1D, SEPARABLE_CONV2D = (
    register(LayerSpec(
        name=_sname(n), params=_separable_params(n),
        positional=("filters", "kernel_size", "activation"),
        shape=_separable_shape, reference=_separable_reference, weights=_separable_weights,
        flops=_separable_flops, check=no_strided_dilation, lower=_separable_lower,
        aliases=(f"SeparableConvolution{n}D",),
        doc=f"{n}-D depthwise-separable convolution over {_DATA[n]}: a depthwise convolution, "
            f"then a 1x1 convolution with bias.",
        example=(f'{_sname(n)}(32, 3, "relu", padding="same")' if n == 2
                 else f"{_sname(n)}(16, 5, depth_multiplier=2)"),
    ))
    for n in (1, 2)
)
