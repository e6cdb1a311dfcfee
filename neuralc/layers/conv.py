"""Conv1D/2D/3D: Keras convolutions on channels-last data with PyTorch's weight layout.

``weight`` is ``(filters, in_channels / groups, *kernel_size)`` and ``bias`` is ``(filters,)``,
exactly as ``torch.nn.ConvNd``, so a PyTorch state_dict loads unchanged; the data stays
channels-last as Keras has it. Padding follows Keras: ``same`` pads ``ceil(in / stride)``
outputs' worth with the extra pixel at the end, ``causal`` (Conv1D) pads only the start.
"""

from __future__ import annotations

import numpy as np

from neuralc.ir.activations import apply_activation
from neuralc.ir.dims import Dim, floordiv, product
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType
from neuralc.ir.windows import effective_window, pad_spatial, sliding_windows, spatial_pads
from neuralc.layers.catalog import (
    ActivationName,
    Bool,
    Choice,
    Int,
    IntTuple,
    LayerSpec,
    Param,
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


def _spatial_rank(attrs: dict) -> int:
    return len(attrs["kernel_size"])


def _name(n: int) -> str:
    return f"Conv{n}D"


def _shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    n = _spatial_rank(attrs)
    layer = _name(n)
    shape = require_spatial(ins[0], n, layer)
    channels_divisible_by_groups(layer, shape[-1], attrs["groups"])
    spatial = conv_window_dims(layer, shape, attrs)
    return [ins[0].with_shape((shape[0], *spatial, attrs["filters"]))]


def _weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    layer = _name(_spatial_rank(attrs))
    channels = static_dim(ins[0].shape[-1], layer, "number of input channels")
    in_per_group = channels // attrs["groups"]
    fan_in = in_per_group * product(attrs["kernel_size"])
    assert isinstance(fan_in, int)
    w = {"weight": WeightSpec((attrs["filters"], in_per_group, *attrs["kernel_size"]),
                              kaiming_uniform_bound(fan_in))}
    if attrs["use_bias"]:
        w["bias"] = WeightSpec((attrs["filters"],), bias_bound(fan_in))
    return w


def _reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    k, s, d = attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"]
    pads = spatial_pads(x.shape, k, s, d, attrs["padding"])
    win = sliding_windows(pad_spatial(x.astype(np.float64), pads), k, s, d)  # (N, *out, C, *k)
    weight = w["weight"].astype(np.float64)  # (F, C/g, *k)
    groups = attrs["groups"]
    cg, fg = weight.shape[1], weight.shape[0] // groups
    n = len(k)
    axes = (list(range(n + 1, 2 * n + 2)), list(range(1, n + 2)))  # (C, *k) against (C/g, *k)
    parts = [
        np.tensordot(win[(Ellipsis, slice(g * cg, (g + 1) * cg), *([slice(None)] * n))],
                     weight[g * fg:(g + 1) * fg], axes=axes)
        for g in range(groups)
    ]
    y = np.concatenate(parts, axis=-1)
    if attrs["use_bias"]:
        y = y + w["bias"].astype(np.float64)
    return [apply_activation(attrs["activation"], y.astype(x.dtype))]


def _lower(b, attrs: dict, xs: list) -> list:
    """``tensor.conv`` (causal as explicit padding at the start), bias add, activation."""
    k, d = attrs["kernel_size"], attrs["dilation_rate"]
    padding = attrs["padding"]
    if padding == "causal":
        padding = [[effective_window(k[0], d[0]) - 1, 0]]
    y = b.op("tensor.conv", [xs[0], b.weight("weight")], {
        "strides": list(attrs["strides"]), "dilation": list(d), "groups": attrs["groups"],
        "padding": padding,
    })
    if attrs["use_bias"]:
        y = b.binary("add", y, b.weight("bias"))
    return [b.activation(attrs["activation"], y)]


def _flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    assert ins[0].shape is not None and outs[0].shape is not None
    macs_per_output = floordiv(ins[0].shape[-1], attrs["groups"]) * product(attrs["kernel_size"])
    return 2 * product(list(outs[0].shape[1:])) * macs_per_output


def _check(attrs: dict) -> None:
    """Cross-parameter rules Keras enforces when the layer is constructed."""
    no_strided_dilation(attrs)
    filters_divisible_by_groups(attrs)


def _params(n: int) -> tuple[Param, ...]:
    paddings = ("valid", "same", "causal") if n == 1 else ("valid", "same")
    return (
        Param("filters", Int(min=1), aliases=("out_channels",), doc="output channels"),
        Param("kernel_size", IntTuple(n), aliases=("kernel",),
              doc="window size; an int stands for every spatial axis"),
        Param("activation", ActivationName(), "linear", doc="applied after the bias"),
        Param("strides", IntTuple(n), [1] * n, aliases=("stride",), doc="step of the window"),
        Param("padding", Choice(paddings), "valid",
              doc='"valid" (no padding) or "same" (output ceil(in / stride), extra pad at the end)'
              + ('; "causal" pads only the start' if n == 1 else "")),
        Param("dilation_rate", IntTuple(n), [1] * n, aliases=("dilation",),
              doc="spacing between kernel taps"),
        Param("groups", Int(min=1), 1, doc="split channels into this many independent groups"),
        Param("use_bias", Bool(), True, aliases=("bias",), doc="add a learned bias"),
    )


_EXAMPLES = {
    1: 'Conv1D(64, 3, "relu", padding="causal")',
    2: 'Conv2D(32, (3, 3), "relu", padding="same")',
    3: 'Conv3D(16, 3, "relu")',
}
_DATA = {1: "sequences (batch, steps, channels)", 2: "images (batch, height, width, channels)",
         3: "volumes (batch, depth, height, width, channels)"}

CONV1D, CONV2D, CONV3D = (
    register(LayerSpec(
        name=_name(n), params=_params(n), positional=("filters", "kernel_size", "activation"),
        shape=_shape, reference=_reference, weights=_weights, flops=_flops, check=_check,
        lower=_lower,
        aliases=(f"Convolution{n}D",),
        doc=f"{n}-D convolution over {_DATA[n]}: activation(conv(x, weight) + bias).",
        example=_EXAMPLES[n],
    ))
    for n in (1, 2, 3)
)
