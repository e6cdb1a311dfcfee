"""Convolutions, pooling, padding/cropping, upsampling and squeeze-excitation as ONNX nodes.

Convolution and pooling run channels-first (ONNX's layout) and leave their result so; the
layout machinery of the builder transposes only where a channels-last layer follows. PyTorch's
weight layouts are ONNX's, so weights go in unchanged. Keras's 'same' padding (the extra pixel
at the end) is explicit pads when the spatial dims are numbers and ``SAME_UPPER`` (the same
rule, computed at run time) when they are symbolic; 'causal' pads only the start.

``SAME_UPPER`` differs from Keras in one case: a symbolic axis whose stride exceeds the window.
Keras pads ``max(total, 0)`` there; onnxruntime pads the negative total (shifted windows for a
convolution, an error for pooling). Such an axis gets its pads computed in the graph from the
input's shape and concatenated to the input of the window op (see :func:`same_input`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.backends.onnx.activations import activation
from neuralc.backends.onnx.builder import NEG_INF, Builder, Layer, Val, channels_first
from neuralc.backends.onnx.emitters import emits
from neuralc.ir.dims import Dim
from neuralc.ir.windows import effective_window, same_pads, transpose_crop, transpose_out_dim
from neuralc.layers.resampling import side_pairs

INT64_MAX = 2 ** 63 - 1


# Pads computed in the graph for one axis: (physical axis, pad before, pad after), the amounts
# 1-element int64 tensors.
RuntimePads = list[tuple[int, str, str]]


def runtime_same_pads(spatial: tuple[Dim, ...], k: list[int], s: list[int], d: list[int],
                      padding: str) -> bool:
    """Whether Keras's 'same' pads must be computed in the graph: some symbolic axis has a
    stride larger than its window, where the total padding ``(ceil(n / s) - 1) * s + eff - n``
    can be negative (Keras clamps it at 0, ``SAME_UPPER`` does not)."""
    return padding == "same" and any(
        not isinstance(x, int) and si > 1 and effective_window(ki, di) < si
        for x, ki, si, di in zip(spatial, k, s, d))


def _static_same(n: Dim, k: int, s: int, d: int) -> tuple[int, int]:
    """'same' pads of an axis whose pads do not depend on a symbolic size (stride 1: eff - 1)."""
    return same_pads(n if isinstance(n, int) else 64, k, s, d)


def window_attrs(spatial: tuple[Dim, ...], k: list[int], s: list[int], d: list[int],
                 padding: str) -> dict[str, Any]:
    """ONNX ``pads`` (begins then ends) or ``auto_pad`` for a Keras window whose padding the
    attributes can express (not :func:`runtime_same_pads`: :func:`same_input` handles those)."""
    assert not runtime_same_pads(spatial, k, s, d, padding)
    if padding == "valid":
        return {}
    if padding == "causal":
        return {"pads": [effective_window(ki, di) - 1 for ki, di in zip(k, d)] + [0] * len(k)}
    # With stride 1 the 'same' pads are eff - 1 whatever the size; a strided window over a
    # symbolic dim needs SAME_UPPER (never dilated there: Keras refuses both at once, and
    # onnxruntime refuses dilation with auto_pad). With the window at least the stride, the
    # total padding is never negative, and SAME_UPPER's split is Keras's.
    if all(isinstance(x, int) or si == 1 for x, si in zip(spatial, s)):
        pairs = [_static_same(x, ki, si, di) for x, ki, si, di in zip(spatial, k, s, d)]
        return {"pads": [p[0] for p in pairs] + [p[1] for p in pairs]}
    return {"auto_pad": "SAME_UPPER"}


def _same_amounts(b: Builder, x: str, axis: int, k: int, s: int, d: int) -> tuple[str, str]:
    """Keras's 'same' (before, after) pads of physical ``axis`` of ``x``, computed from its
    run-time length ``n``: ``total = max((ceil(n / s) - 1) * s + eff - n, 0)``, the odd pixel
    at the end."""
    n = b.shape_of(x, axis, axis + 1)
    out = b.op("Div", [b.op("Add", [n, b.ints([s - 1])]), b.ints([s])])  # ceil(n / s)
    total = b.op("Sub", [b.op("Add", [b.op("Mul", [out, b.ints([s])]),
                                      b.ints([effective_window(k, d) - s])]), n])
    # max(t, 0) as (t + |t|) / 2: int64 Max and Relu come only in later opsets.
    total = b.op("Div", [b.op("Add", [total, b.op("Abs", [total])]), b.ints([2])])
    before = b.op("Div", [total, b.ints([2])], hint="pad_before")
    return before, b.op("Sub", [total, before], hint="pad_after")


def pad_by_concat(b: Builder, x: str, pads: RuntimePads, fill: float) -> str:
    """``x`` with ``fill`` blocks of run-time lengths concatenated at both ends of some axes.

    Not ONNX's Pad: with pads that are not constants, ONNX's shape inference loses every dim
    of Pad's result, where a Concat keeps the dims of the other axes (the channels, the batch,
    the static sizes) for the layers after it.
    """
    from onnx import TensorProto, helper

    value = helper.make_tensor("fill", TensorProto.FLOAT, [1], [fill])
    for axis, before, after in pads:
        head, tail = b.shape_of(x, 0, axis), b.shape_of(x, axis + 1)
        blocks = [b.op("ConstantOfShape", [b.concat([head, amount, tail], 0)], value=value,
                       hint="same_pad") for amount in (before, after)]
        x = b.op("Concat", [blocks[0], x, blocks[1]], axis=axis)
    return x


def same_input(b: Builder, x: str, spatial: tuple[Dim, ...], k: list[int], s: list[int],
               d: list[int], padding: str, fill: float = 0.0
               ) -> tuple[str, dict[str, Any], RuntimePads | None]:
    """The input of a window op over channels-first ``x``, its padding attributes, and the
    pads computed in the graph (None when the attributes say all the padding).

    Where :func:`runtime_same_pads` holds, every symbolic strided axis gets its pads computed
    from ``x``'s shape and concatenated to ``x`` (``fill``: -inf for max pooling); the other
    axes keep theirs, which do not depend on the size, in the ``pads`` attribute.
    """
    if not runtime_same_pads(spatial, k, s, d, padding):
        return x, window_attrs(spatial, k, s, d, padding), None
    pads: RuntimePads = []
    static: list[tuple[int, int]] = []
    for axis, (n, ki, si, di) in enumerate(zip(spatial, k, s, d), start=2):
        if isinstance(n, int) or si == 1:
            static.append(_static_same(n, ki, si, di))
        else:
            pads.append((axis, *_same_amounts(b, x, axis, ki, si, di)))
            static.append((0, 0))
    attrs = {"pads": [p[0] for p in static] + [p[1] for p in static]}
    return pad_by_concat(b, x, pads, fill), attrs, pads


def _spatial(t: Val | Any) -> tuple[Dim, ...]:
    return tuple(t.shape[1:-1])


def _cf(b: Builder, v: Val) -> str:
    return b.get(v, channels_first(v.rank))


def _result(b: Builder, layer: Layer, y: str, act: str = "linear") -> list[Val]:
    """A channels-first result after the layer's activation (softmax over the channel axis)."""
    out = layer.out_types[0]
    return [b.val(out, activation(b, act, y, axis=1), channels_first(len(out.shape or ())))]


# -- convolutions ---------------------------------------------------------------------------


@emits("conv1d", "conv2d", "conv3d")
def conv(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    a = layer.attrs
    x = xs[0]
    src, pads, _ = same_input(b, _cf(b, x), _spatial(x), a["kernel_size"], a["strides"],
                              a["dilation_rate"], a["padding"])
    ins = [src, b.param(layer, "weight")]
    if a["use_bias"]:
        ins.append(b.param(layer, "bias"))
    y = b.op("Conv", ins, kernel_shape=a["kernel_size"], strides=a["strides"],
             dilations=a["dilation_rate"], group=a["groups"], **pads)
    return _result(b, layer, y, a["activation"])


def transpose_pads(size: Dim, k: int, s: int, d: int, padding: str,
                   output_padding: int | None) -> tuple[int, int, int]:
    """(pad at the start, pad at the end, output_padding) of ONNX's ConvTranspose for Keras.

    The full transposed convolution has ``(size - 1) * s + eff`` elements; Keras crops its
    start by ``transpose_crop`` and cuts or zero-extends the end to its output length. These
    amounts do not depend on ``size`` (the output length is linear in it with slope ``s``), so
    a symbolic size is measured at a representative length.
    """
    n = size if isinstance(size, int) else 64
    out = transpose_out_dim(n, k, s, d, padding, output_padding)
    assert isinstance(out, int)
    full = (n - 1) * s + effective_window(k, d)
    crop = transpose_crop(n, k, s, d, out)
    keep = min(out, full - crop)
    return crop, full - crop - keep, out - keep


@emits("conv1d_transpose", "conv2d_transpose", "conv3d_transpose")
def conv_transpose(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    a = layer.attrs
    x = xs[0]
    ops = a["output_padding"] or [None] * len(a["kernel_size"])
    amounts = [transpose_pads(size, k, s, d, a["padding"], op) for size, k, s, d, op in
               zip(_spatial(x), a["kernel_size"], a["strides"], a["dilation_rate"], ops)]
    ins = [_cf(b, x), b.param(layer, "weight")]
    if a["use_bias"]:
        ins.append(b.param(layer, "bias"))
    extra = [m[2] for m in amounts]
    y = b.op("ConvTranspose", ins, kernel_shape=a["kernel_size"], strides=a["strides"],
             dilations=a["dilation_rate"], group=a["groups"],
             pads=[m[0] for m in amounts] + [m[1] for m in amounts],
             output_padding=extra if any(extra) else None)
    return _result(b, layer, y, a["activation"])


def _depthwise(b: Builder, layer: Layer, x: Val, weight: str, bias: str | None) -> str:
    a = layer.attrs
    channels = int(x.shape[-1])
    src, pads, _ = same_input(b, _cf(b, x), _spatial(x), a["kernel_size"], a["strides"],
                              a["dilation_rate"], a["padding"])
    ins = [src, b.param(layer, weight)] + ([b.param(layer, bias)] if bias else [])
    return b.op("Conv", ins, kernel_shape=a["kernel_size"], strides=a["strides"],
                dilations=a["dilation_rate"], group=channels, hint="depthwise", **pads)


@emits("depthwise_conv1d", "depthwise_conv2d")
def depthwise(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    y = _depthwise(b, layer, xs[0], "weight", "bias" if layer.attrs["use_bias"] else None)
    return _result(b, layer, y, layer.attrs["activation"])


@emits("separable_conv1d", "separable_conv2d")
def separable(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Depthwise (no bias) then the 1x1 pointwise convolution with the only bias."""
    mid = _depthwise(b, layer, xs[0], "depthwise.weight", None)
    ins = [mid, b.param(layer, "pointwise.weight")]
    if layer.attrs["use_bias"]:
        ins.append(b.param(layer, "pointwise.bias"))
    n = len(layer.attrs["kernel_size"])
    y = b.op("Conv", ins, kernel_shape=[1] * n, hint="pointwise")
    return _result(b, layer, y, layer.attrs["activation"])


# -- pooling ------------------------------------------------------------------------------------


@emits("max_pooling1d", "max_pooling2d", "max_pooling3d",
       "average_pooling1d", "average_pooling2d", "average_pooling3d")
def pool(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Keras 'same' pooling ignores the padding: MaxPool does, AveragePool with
    count_include_pad=0 divides by the real elements.

    With pads computed in the graph (:func:`same_input`) the input is padded explicitly: with
    -inf for the maximum; for the average, with zeros, and the windows' mean is divided by
    their mean over a mask of ones padded alike (the fraction of real elements among those the
    first mean counted), which leaves Keras's sum over the real elements by their count.
    """
    a = layer.attrs
    k = a["pool_size"]
    s = a["strides"] if a["strides"] is not None else k
    x = _cf(b, xs[0])
    is_max = layer.kind.startswith("max")
    src, attrs, pads = same_input(b, x, _spatial(xs[0]), k, s, [1] * len(k), a["padding"],
                                  fill=NEG_INF if is_max else 0.0)
    if is_max:
        y = b.op("MaxPool", [src], kernel_shape=k, strides=s, **attrs)
    elif pads is None:
        y = b.op("AveragePool", [src], kernel_shape=k, strides=s, count_include_pad=0, **attrs)
    else:
        mean = b.op("AveragePool", [src], kernel_shape=k, strides=s, count_include_pad=0,
                    **attrs)
        ones = b.ones(b.concat([b.ints([1, 1]), b.shape_of(x, 2)], 0))  # (1, 1, *spatial)
        real = b.op("AveragePool", [pad_by_concat(b, ones, pads, 0.0)], kernel_shape=k,
                    strides=s, count_include_pad=0, hint="real_fraction", **attrs)
        y = b.op("Div", [mean, real])
    return _result(b, layer, y)


@emits("global_max_pooling1d", "global_max_pooling2d", "global_max_pooling3d",
       "global_average_pooling1d", "global_average_pooling2d", "global_average_pooling3d")
def global_pool(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """GlobalAverage/MaxPool on a channels-first input; a Reduce over the spatial axes else."""
    x = xs[0]
    is_max = "max" in layer.kind
    out = layer.out_types[0]
    cf = channels_first(x.rank)
    if cf in x.forms:
        y = b.op("GlobalMaxPool" if is_max else "GlobalAveragePool", [x.forms[cf]])
        if layer.attrs["keepdims"]:
            return [b.val(out, y, cf)]  # (N, C, 1, ..) is the channels-first (N, 1, .., C)
        return [b.val(out, b.squeeze(y, list(range(2, x.rank))))]
    perm, name = b.any(x)
    axes = [perm.index(i) for i in range(1, x.rank - 1)]
    y = b.reduce("ReduceMax" if is_max else "ReduceMean", name, axes, layer.attrs["keepdims"])
    # Without keepdims (batch, channels) remain, the batch first in every layout.
    return [b.val(out, y, perm if layer.attrs["keepdims"] else None)]


def _bounds(b: Builder, size: Dim, name: str, axis: int, out: int) -> list[tuple[Any, Any]]:
    """PyTorch's adaptive windows over one axis: static ints, or int64 tensors at run time."""
    if isinstance(size, int):
        return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]
    n = b.shape_of(name, axis, axis + 1)
    k = b.ints([out])
    bounds = []
    for i in range(out):
        lo = b.op("Div", [b.op("Mul", [n, b.ints([i])]), k])
        hi = b.op("Div", [b.op("Add", [b.op("Mul", [n, b.ints([i + 1])]), b.ints([out - 1])]), k])
        bounds.append((lo, hi))
    return bounds


@emits("adaptive_average_pooling1d", "adaptive_average_pooling2d", "adaptive_average_pooling3d",
       "adaptive_max_pooling1d", "adaptive_max_pooling2d", "adaptive_max_pooling3d")
def adaptive_pool(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Axis by axis (the windows are products of intervals): one Slice and Reduce per output
    position, or one pooling op where the windows tile the axis exactly."""
    x = xs[0]
    reduce_op = "ReduceMax" if "max" in layer.kind else "ReduceMean"
    sizes = layer.attrs["output_size"]
    spatial = _spatial(x)
    if all(isinstance(n, int) and n % o == 0 for n, o in zip(spatial, sizes)):
        k = [int(n) // o for n, o in zip(spatial, sizes)]
        op = "MaxPool" if "max" in layer.kind else "AveragePool"
        return _result(b, layer, b.op(op, [_cf(b, x)], kernel_shape=k, strides=k))
    perm, y = b.any(x)
    for ir_axis, (n, out) in enumerate(zip(spatial, sizes), start=1):
        axis = perm.index(ir_axis)
        parts = []
        for lo, hi in _bounds(b, n, y, axis, out):
            if isinstance(lo, int):
                part = b.slice(y, [lo], [hi], [axis])
            else:
                part = b.slice(y, lo, hi, [axis])
            parts.append(b.reduce(reduce_op, part, [axis], True))
        y = b.concat(parts, axis)
    return [b.val(layer.out_types[0], y, perm)]


# -- padding, cropping, upsampling --------------------------------------------------------------


@emits("zero_padding1d", "zero_padding2d", "zero_padding3d")
def zero_padding(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    x = xs[0]
    perm, name = b.any(x)
    pairs = side_pairs(layer.attrs["padding"])
    per_axis = [pairs[a - 1] if 0 < a < x.rank - 1 else [0, 0] for a in perm]
    pads = [p[0] for p in per_axis] + [p[1] for p in per_axis]
    return [b.val(layer.out_types[0], b.op("Pad", [name, b.ints(pads)], mode="constant"), perm)]


@emits("cropping1d", "cropping2d", "cropping3d")
def cropping(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    x = xs[0]
    perm, name = b.any(x)
    pairs = side_pairs(layer.attrs["cropping"])
    axes = [perm.index(a) for a in range(1, x.rank - 1)]
    starts = [pairs[a - 1][0] for a in range(1, x.rank - 1)]
    ends = [-pairs[a - 1][1] if pairs[a - 1][1] else INT64_MAX for a in range(1, x.rank - 1)]
    return [b.val(layer.out_types[0], b.slice(name, starts, ends, axes), perm)]


@emits("up_sampling1d", "up_sampling2d", "up_sampling3d")
def up_sampling(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Nearest: Resize with floor(dst / size), exact repetition. Bilinear: Resize 'linear' with
    half-pixel centres on the channels-first image (edges clamped, as Keras and torch)."""
    x = xs[0]
    size = layer.attrs["size"]
    sizes = [size] if isinstance(size, int) else list(size)
    if layer.attrs.get("interpolation", "nearest") == "bilinear":
        perm = channels_first(x.rank)
        name = b.get(x, perm)
        mode = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    else:
        perm, name = b.any(x)
        mode = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                "nearest_mode": "floor"}
    scales = np.array([float(sizes[a - 1]) if 0 < a < x.rank - 1 else 1.0 for a in perm],
                      dtype=np.float32)
    y = b.op("Resize", [name, "", b.const(scales, np.float32, "scales")], **mode)
    return [b.val(layer.out_types[0], y, perm)]


# -- squeeze and excitation ------------------------------------------------------------------------


@emits("squeeze_excitation")
def squeeze_excitation(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Mean over space -> relu(fc1) -> sigmoid(fc2) -> scale the channels, in the input's layout."""
    x = xs[0]
    perm, name = b.any(x, prefer=channels_first(x.rank))
    spatial_axes = [perm.index(a) for a in range(1, x.rank - 1)]
    s = b.reduce("ReduceMean", name, spatial_axes, False, hint="squeeze")  # (N, C)
    h = b.op("Relu", [b.linear(s, layer, "fc1.weight", "fc1.bias", 2)])
    gate = b.op("Sigmoid", [b.linear(h, layer, "fc2.weight", "fc2.bias", 2)])
    shape = [1] * x.rank  # the gate broadcast over space; layouts keep the batch first
    shape[0] = 0
    shape[perm.index(x.rank - 1)] = int(x.shape[-1])
    gate = b.op("Reshape", [gate, b.ints(shape)])
    return [b.val(layer.out_types[0], b.op("Mul", [name, gate], hint="excite"), perm)]
