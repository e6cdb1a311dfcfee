"""Composite blocks that are one graph op: SqueezeExcitation.

A squeeze-and-excitation gate (Hu et al., 2018) could be written with merge branches, but as
one op it keeps its weights together under one name, as a PyTorch ``SEBlock`` module with two
``nn.Linear`` children ``fc1`` and ``fc2`` does, so such a checkpoint loads unchanged.

Keras has no built-in SE layer; ``ratio`` defaults to 16, the reduction the paper uses and the
value of most Keras and PyTorch SE implementations (EfficientNet's se_ratio=0.25 is ratio=4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from neuralc.ir.activations import apply_activation
from neuralc.ir.dims import Dim
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import Int, LayerSpec, Param, WeightSpec, register
from neuralc.layers.common import bias_bound, kaiming_uniform_bound, per_sample, require_rank

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value

_LAYOUT = "(batch, height, width, channels) or (batch, steps, channels)"


def _se_sizes(attrs: dict, t: TensorType) -> tuple[int, int]:
    """(channels, hidden units); channels must be static and ``channels // ratio`` at least 1."""
    shape = require_rank(t, (3, 4, 5), "SqueezeExcitation", _LAYOUT,
                         "a squeeze-and-excitation gate rescales the channels of a feature map; "
                         "use it after a convolution")
    c = shape[-1]
    if not isinstance(c, int):
        raise ShapeError(
            f"SqueezeExcitation needs a fixed number of channels to size its weights, got the "
            f"symbolic dim '{c}'",
            "give the channel axis a number in the input shape",
        )
    ratio = attrs["ratio"]
    hidden = c // ratio
    if hidden < 1:
        raise ShapeError(
            f"SqueezeExcitation ratio={ratio} leaves {c} // {ratio} = 0 hidden units for the "
            f"{c} channels of its input {shape_str(shape)}",
            f"use a ratio of at most {c}",
        )
    return c, hidden


def _shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    _se_sizes(attrs, ins[0])
    return [ins[0]]


def _weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    c, h = _se_sizes(attrs, ins[0])
    return {
        "fc1.weight": WeightSpec((h, c), kaiming_uniform_bound(c)),
        "fc1.bias": WeightSpec((h,), bias_bound(c)),
        "fc2.weight": WeightSpec((c, h), kaiming_uniform_bound(h)),
        "fc2.bias": WeightSpec((c,), bias_bound(h)),
    }


def _reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    """squeeze (mean over space) -> relu(fc1) -> sigmoid(fc2) -> excite (scale the channels)."""
    x = xs[0]
    x64 = x.astype(np.float64)
    s = x64.mean(axis=tuple(range(1, x.ndim - 1)))  # (N, C)
    h = np.maximum(s @ w["fc1.weight"].astype(np.float64).T + w["fc1.bias"], 0.0)
    gate = apply_activation("sigmoid", h @ w["fc2.weight"].astype(np.float64).T + w["fc2.bias"])
    gate = gate.reshape(x.shape[0], *([1] * (x.ndim - 2)), x.shape[-1])
    return [(x64 * gate).astype(x.dtype)]


def _lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """Squeeze: mean over the spatial axes, kept as size 1 so the gate (batch, 1, .., c)
    broadcasts back without a reshape; two dense layers as matmul + bias + relu and
    matmul + bias + sigmoid (batched over the size-1 axes); excite: a broadcast multiply."""
    x = xs[0]
    s = b.reduce("mean", x, list(range(1, len(x.type.shape) - 1)), True)
    h = b.op("tensor.matmul", [s, b.weight("fc1.weight")], {"transpose_b": True})
    h = b.unary("relu", b.binary("add", h, b.weight("fc1.bias")))
    g = b.op("tensor.matmul", [h, b.weight("fc2.weight")], {"transpose_b": True})
    g = b.unary("sigmoid", b.binary("add", g, b.weight("fc2.bias")))
    return [b.binary("mul", x, g)]


def _flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Pooling and scaling touch every element once; the two dense layers 2 * c * h each."""
    assert ins[0].shape is not None
    c, h = _se_sizes(attrs, ins[0])
    return 2 * per_sample(ins[0].shape) + 4 * c * h + c


SQUEEZE_EXCITATION = register(LayerSpec(
    name="SqueezeExcitation",
    params=(
        Param("ratio", Int(min=1), 16, aliases=("reduction",),
              doc="channel reduction of the bottleneck: channels // ratio hidden units"),
    ),
    positional=("ratio",),
    shape=_shape, reference=_reference, weights=_weights, flops=_flops, lower=_lower,
    aliases=("SEBlock",),
    doc="Rescales each channel by a gate computed from the global average of the input.",
    example="SqueezeExcitation(ratio=16)",
))
