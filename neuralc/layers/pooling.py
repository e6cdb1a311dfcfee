"""Max/average pooling (windowed and global) on channels-last data, with Keras's semantics.

Windowed pooling shares the window arithmetic of the convolutions (``common.py``). With
``padding="same"``, max pooling pads with -inf and average pooling divides by the number of
real (unpadded) elements in each window, as Keras does.

Adaptive pooling (Keras 3's ``Adaptive{Average,Max}Pooling{1,2,3}D``, PyTorch's
``AdaptiveAvgPool``/``AdaptiveMaxPool``) gives a fixed ``output_size`` for any input size with
PyTorch's windows: output ``i`` of an axis of ``n`` elements pools
``[floor(i * n / out), ceil((i + 1) * n / out))``, so windows may overlap by one element and an
input smaller than ``output_size`` repeats elements. Both reductions are separable over the
axes (a window is a product of intervals), which the reference uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from neuralc.ir.dims import Dim, product
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType
from neuralc.ir.windows import (
    adaptive_bounds,
    adaptive_window_total,
    pad_spatial,
    sliding_windows,
    spatial_pads,
    window_out_dim,
)
from neuralc.layers.catalog import (
    Bool,
    Choice,
    IntTuple,
    LayerSpec,
    Optional_,
    Param,
    Reference,
    ShapeRule,
    register,
)
from neuralc.layers.common import check_window_fits, per_sample, require_spatial

# A layer's lowering rule: (TensorBuilder, attrs, operand values) -> result values.
Lowering = Callable[[Any, dict, list], list]

_DATA = {1: "steps", 2: "height and width", 3: "depth, height and width"}


def _strides(attrs: dict) -> list[int]:
    """Keras: ``strides=None`` means the pool size (non-overlapping windows)."""
    return attrs["strides"] if attrs["strides"] is not None else attrs["pool_size"]


def _pool_shape(layer: str, n: int) -> ShapeRule:
    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        shape = require_spatial(ins[0], n, layer)
        k, s, pad = attrs["pool_size"], _strides(attrs), attrs["padding"]
        if pad == "valid":
            check_window_fits(shape, k, layer, "pool_size", f'use padding="same", a smaller '
                              f"pool_size, or Global{layer} to pool the whole input")
        spatial = tuple(window_out_dim(x, ki, si, 1, pad) for x, ki, si in zip(shape[1:-1], k, s))
        return [ins[0].with_shape((shape[0], *spatial, shape[-1]))]

    return rule


def _pool_reference(mode: str) -> Reference:
    def reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = xs[0]
        k, s = attrs["pool_size"], _strides(attrs)
        ones = [1] * len(k)
        pads = spatial_pads(x.shape, k, s, ones, attrs["padding"])
        axes = tuple(range(-len(k), 0))
        if mode == "max":
            win = sliding_windows(pad_spatial(x.astype(np.float64), pads, -np.inf), k, s, ones)
            return [win.max(axis=axes).astype(x.dtype)]
        total = sliding_windows(pad_spatial(x.astype(np.float64), pads), k, s, ones).sum(axis=axes)
        mask = pad_spatial(np.ones((1, *x.shape[1:-1], 1)), pads)
        count = sliding_windows(mask, k, s, ones).sum(axis=axes)
        return [(total / count).astype(x.dtype)]

    return reference


def _pool_lower(mode: str) -> Lowering:
    def lower(b: Any, attrs: dict, xs: list) -> list:
        """``tensor.pool``: the same windows, padding and Keras's average over real elements."""
        return [b.op("tensor.pool", [xs[0]], {
            "kind": "max" if mode == "max" else "avg", "window": list(attrs["pool_size"]),
            "strides": list(_strides(attrs)), "padding": attrs["padding"],
        })]

    return lower


def _pool_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """One comparison or addition per window element per output."""
    assert outs[0].shape is not None
    return per_sample(outs[0].shape) * product(attrs["pool_size"])


def _pool_params(n: int) -> tuple[Param, ...]:
    return (
        Param("pool_size", IntTuple(n), [2] * n, aliases=("kernel_size",),
              doc="window size; an int stands for every spatial axis"),
        Param("strides", Optional_(IntTuple(n)), None, aliases=("stride",),
              doc="step of the window; None means pool_size"),
        Param("padding", Choice(("valid", "same")), "valid",
              doc='"valid" or "same" (output ceil(in / stride), padding ignored)'),
    )


def _global_shape(layer: str, n: int) -> ShapeRule:
    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        shape = require_spatial(ins[0], n, layer)
        if attrs["keepdims"]:
            return [ins[0].with_shape((shape[0], *([1] * n), shape[-1]))]
        return [ins[0].with_shape((shape[0], shape[-1]))]

    return rule


def _global_reference(fn: Callable[..., np.ndarray]) -> Reference:
    def reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = xs[0]
        axes = tuple(range(1, x.ndim - 1))
        return [fn(x.astype(np.float64), axis=axes, keepdims=attrs["keepdims"]).astype(x.dtype)]

    return reference


def _global_lower(kind: str) -> Lowering:
    def lower(b: Any, attrs: dict, xs: list) -> list:
        """``tensor.reduce`` over every spatial axis."""
        n = len(xs[0].type.shape) - 2
        return [b.reduce(kind, xs[0], list(range(1, n + 1)), attrs["keepdims"])]

    return lower


def _global_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    assert ins[0].shape is not None
    return per_sample(ins[0].shape)


_GLOBAL_PARAMS = (
    Param("keepdims", Bool(), False, doc="keep the pooled axes with size 1"),
)

_ALIAS_BASE = {"MaxPooling": "MaxPool", "AveragePooling": "AvgPool"}

for _n in (1, 2, 3):
    for _base, _mode in (("MaxPooling", "max"), ("AveragePooling", "average")):
        _layer = f"{_base}{_n}D"
        register(LayerSpec(
            name=_layer, params=_pool_params(_n), positional=("pool_size", "strides", "padding"),
            shape=_pool_shape(_layer, _n), reference=_pool_reference(_mode), flops=_pool_flops,
            lower=_pool_lower(_mode),
            aliases=(f"{_ALIAS_BASE[_base]}{_n}D",),
            doc=f"{_mode.capitalize()} over sliding windows along {_DATA[_n]}, per channel.",
            example=f"{_layer}((2, 2))" if _n == 2 else f"{_layer}(2)",
        ))
        _glayer = f"Global{_layer}"
        register(LayerSpec(
            name=_glayer, params=_GLOBAL_PARAMS, positional=(),
            shape=_global_shape(_glayer, _n),
            reference=_global_reference(np.max if _mode == "max" else np.mean),
            flops=_global_flops, lower=_global_lower("max" if _mode == "max" else "mean"),
            aliases=(f"Global{_ALIAS_BASE[_base]}{_n}D",),
            doc=f"{_mode.capitalize()} over all of {_DATA[_n]}, per channel: "
                f"(batch, ..., channels) -> (batch, channels).",
            example=f"{_glayer}()" if _mode == "max" else f"{_glayer}(keepdims=true)",
        ))


# -- adaptive pooling --------------------------------------------------------------------------


def _adaptive_shape(layer: str, n: int) -> ShapeRule:
    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        shape = require_spatial(ins[0], n, layer)
        return [ins[0].with_shape((shape[0], *attrs["output_size"], shape[-1]))]

    return rule


def _adaptive_reference(fn: Callable[..., np.ndarray]) -> Reference:
    def reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = xs[0]
        y = x.astype(np.float64)
        for axis, out in enumerate(attrs["output_size"], start=1):
            index = [slice(None)] * y.ndim
            parts = []
            for lo, hi in adaptive_bounds(y.shape[axis], out):
                index[axis] = slice(lo, hi)
                parts.append(fn(y[tuple(index)], axis=axis, keepdims=True))
            y = np.concatenate(parts, axis=axis)
        return [y.astype(x.dtype)]

    return reference


def _adaptive_lower(kind: str) -> Lowering:
    def lower(b: Any, attrs: dict, xs: list) -> list:
        """The simplest op with PyTorch's adaptive windows.

        An output size of 1 everywhere is a global reduction (``tensor.reduce``, keepdims);
        static sizes that the output sizes divide give equal, disjoint windows
        (``tensor.pool``, window = stride = size / out); anything else, symbolic sizes
        included, is ``tensor.adaptive_pool``.
        """
        x = xs[0]
        out = list(attrs["output_size"])
        spatial = x.type.shape[1:-1]
        if all(o == 1 for o in out):
            return [b.reduce("max" if kind == "max" else "mean", x,
                             list(range(1, len(out) + 1)), True)]
        if all(isinstance(d, int) and d % o == 0 for d, o in zip(spatial, out)):
            window = [d // o for d, o in zip(spatial, out)]
            return [b.op("tensor.pool", [x], {"kind": kind, "window": window,
                                              "strides": list(window), "padding": "valid"})]
        return [b.op("tensor.adaptive_pool", [x], {"kind": kind, "output_size": out})]

    return lower


def _adaptive_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """One comparison or addition per window element per output, windows from the input size."""
    assert ins[0].shape is not None
    totals = [adaptive_window_total(d, o) for d, o in zip(ins[0].shape[1:-1], attrs["output_size"])]
    return product(totals) * ins[0].shape[-1]


_ADAPTIVE_ALIAS = {"Max": "AdaptiveMaxPool", "Average": "AdaptiveAvgPool"}

for _n in (1, 2, 3):
    for _kind, _fn in (("Average", np.mean), ("Max", np.max)):
        _alayer = f"Adaptive{_kind}Pooling{_n}D"
        register(LayerSpec(
            name=_alayer,
            params=(Param("output_size", IntTuple(_n),
                          doc="output size of each pooled axis; an int stands for all"),),
            positional=("output_size",),
            shape=_adaptive_shape(_alayer, _n), reference=_adaptive_reference(_fn),
            flops=_adaptive_flops, lower=_adaptive_lower("max" if _kind == "Max" else "avg"),
            aliases=(f"{_ADAPTIVE_ALIAS[_kind]}{_n}D",),
            doc=f"{_kind} over PyTorch's adaptive windows along {_DATA[_n]}, per channel, to a "
                f"fixed output_size.",
            example=f"{_alayer}((7, 7))" if _n == 2 else f"{_alayer}(4)",
        ))
