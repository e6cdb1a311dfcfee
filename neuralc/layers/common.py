"""Helpers the layer families share: rank checks, axes, static dims, PyTorch's default
initialisers, and the convolution rules every convolution layer applies. The window
arithmetic itself ('valid', 'same', 'causal') lives in ``neuralc.ir.windows``, shared with
the tensor dialect."""

from __future__ import annotations

import math

from neuralc.ir.dims import Dim, product
from neuralc.ir.shapes import ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.ir.windows import effective_window, window_out_dim
from neuralc.layers.catalog import Init


def require_rank(t: TensorType, ranks: int | tuple[int, ...], layer: str, expected: str,
                 hint: str | None = None) -> tuple[Dim, ...]:
    """The shape of ``t`` if its rank is one of ``ranks``; a ShapeError naming ``expected``."""
    assert t.shape is not None
    ok = (ranks,) if isinstance(ranks, int) else ranks
    if len(t.shape) not in ok:
        raise ShapeError(f"{layer} expects input {expected}, got {shape_str(t.shape)}", hint)
    return t.shape


def static_dim(d: Dim, layer: str, what: str) -> int:
    """A dim that a weight shape depends on must be a number, not a symbol."""
    if not isinstance(d, int):
        raise ShapeError(
            f"{layer} needs a fixed {what} to size its weights, got the symbolic dim '{d}'",
            "give that dimension a number in the input shape",
        )
    return d


def kaiming_uniform_bound(fan_in: int) -> Init:
    """PyTorch's default for Linear/Conv weights.

    kaiming_uniform(a=sqrt(5)) is U(+-1/sqrt(fan_in)).
    """
    return Init("uniform", 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)


def bias_bound(fan_in: int) -> Init:
    """PyTorch's default bias for Linear/Conv: U(+-1/sqrt(fan_in))."""
    return Init("uniform", 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)


ONES = Init("const", 1.0)
ZEROS = Init("const", 0.0)
STD_NORMAL = Init("normal", 1.0)


# -- axes ------------------------------------------------------------------------------------


def normalize_axis(axis: int, rank: int, layer: str, param: str = "axis") -> int:
    """A Keras axis (over the full shape, batch included, negative from the end) as an index.

    The batch axis is refused: every layer works per sample, and a layer that mixed samples
    would change meaning with the batch size.
    """
    pos = axis + rank if axis < 0 else axis
    if not 0 <= pos < rank:
        raise ShapeError(
            f"{layer} {param}={axis} is out of range for an input of rank {rank}",
            f"use an axis in [{-rank + 1}, {rank - 1}] (axis 0 is the batch)",
        )
    if pos == 0:
        raise ShapeError(
            f"{layer} cannot use the batch axis ({param}={axis})",
            "axes count the batch as axis 0; the last axis is -1",
        )
    return pos


def check_window_fits(shape: tuple[Dim, ...], windows: list[int], layer: str, what: str,
                      hint: str) -> None:
    """A 'valid' window larger than a static spatial input leaves nothing to compute on."""
    spatial = shape[1:-1]
    if any(isinstance(d, int) and d < w for d, w in zip(spatial, windows)):
        raise ShapeError(
            f"{layer} {what} {shape_str(tuple(windows))} does not fit its input "
            f"{shape_str(tuple(spatial))}",
            hint,
        )


# -- window checks and layer-kind descriptions used in messages ----------------------------

SPATIAL_LAYOUT: dict[int, tuple[str, str]] = {
    1: ("(batch, steps, channels)", "use Reshape((steps, channels)) to make it a sequence"),
    2: ("(batch, height, width, channels)", "use Reshape((h, w, c)) to make it an image"),
    3: ("(batch, depth, height, width, channels)", "use Reshape((d, h, w, c)) to make it a volume"),
}


def require_spatial(t: TensorType, n: int, layer: str) -> tuple[Dim, ...]:
    """The shape of a channels-last input with ``n`` spatial axes, or the section 9 error."""
    expected, hint = SPATIAL_LAYOUT[n]
    return require_rank(t, n + 2, layer, expected, hint)


def per_sample(shape: tuple[Dim, ...]) -> Dim:
    """Elements of one sample (every axis but the batch)."""
    return product(list(shape[1:]))


# -- convolution rules every convolution layer shares (Keras's) -------------------------------


def no_strided_dilation(attrs: dict) -> None:
    """Keras refuses a strided, dilated window in every convolution layer."""
    from neuralc.layers.catalog import ParamError

    if max(attrs["strides"]) > 1 and max(attrs["dilation_rate"]) > 1:
        raise ParamError(
            f"'strides' > 1 cannot be combined with 'dilation_rate' > 1 (as in Keras), got "
            f"strides={tuple(attrs['strides'])} and dilation_rate={tuple(attrs['dilation_rate'])}"
        )


def filters_divisible_by_groups(attrs: dict) -> None:
    from neuralc.layers.catalog import ParamError

    if attrs["filters"] % attrs["groups"]:
        raise ParamError(
            f"'filters' ({attrs['filters']}) must be divisible by 'groups' ({attrs['groups']})"
        )


def channels_divisible_by_groups(layer: str, channels: Dim, groups: int) -> None:
    if isinstance(channels, int) and channels % groups:
        raise ShapeError(
            f"{layer} with groups={groups} needs input channels divisible by {groups}, "
            f"got {channels}",
            "change 'groups' or the number of channels of the input",
        )


def conv_window_dims(layer: str, shape: tuple[Dim, ...], attrs: dict) -> tuple[Dim, ...]:
    """Output spatial dims of a forward convolution over channels-last ``shape``
    (batch, *spatial, channels), after checking that a 'valid' window fits."""
    k, s, d, pad = attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"], attrs["padding"]
    if pad == "valid":
        eff = [effective_window(ki, di) for ki, di in zip(k, d)]
        what = "kernel" if all(di == 1 for di in d) else "dilated kernel"
        check_window_fits(shape, eff, layer, what, 'use padding="same" or a smaller kernel_size')
    return tuple(window_out_dim(x, ki, si, di, pad) for x, ki, si, di in zip(shape[1:-1], k, s, d))
