"""UpSampling, ZeroPadding and Cropping over the spatial axes of channels-last data, as Keras.

- ``UpSampling{1,2,3}D(size)`` repeats each element ``size`` times per axis (``nearest``).
  ``UpSampling2D(interpolation="bilinear")`` is Keras 3's ``ops.image.resize(...,
  "bilinear")`` (half-pixel centres, no antialiasing; the same in TensorFlow's and JAX's
  resize), which for integer upsampling factors equals
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``: the source of
  output ``i`` is ``(i + 0.5) / size - 0.5``, clamped to the first and last element.
- ``ZeroPadding{1,2,3}D(padding)`` and ``Cropping{1,2,3}D(cropping)`` take Keras's forms: an
  int for every side; for 1-D a pair ``(before, after)``; for 2-D/3-D one entry per axis,
  each an int (both sides) or a pair ``(before, after)``, e.g. ``((top, bottom), (left,
  right))``. Attributes are canonical: ``[before, after]`` for 1-D, ``[[b, a], ...]`` else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neuralc.ir.dims import Dim, product
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import Choice, Int, IntTuple, LayerSpec, Param, ParamType, register
from neuralc.layers.common import require_spatial

_AXES = {1: "steps", 2: "height and width", 3: "depth, height and width"}
_AXIS_NAMES = {1: ("steps",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _spatial_rank(layer: str) -> int:
    return int(layer[-2])


# -- per-side amounts (ZeroPadding, Cropping) --------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_int(v: Any) -> Any:
    """An integral float (from macro arithmetic) as an int."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


@dataclass(frozen=True)
class SideAmounts(ParamType):
    """Keras's padding/cropping forms for ``n`` spatial axes, as canonical (before, after)."""

    n: int

    def convert(self, value: Any, pname: str) -> list:
        pairs = self._pairs(value)
        if pairs is None or any(v < 0 for pair in pairs for v in pair):
            raise self._fail(pname, value, self.describe())
        return pairs[0] if self.n == 1 else pairs

    def _pairs(self, value: Any) -> list[list[int]] | None:
        value = _as_int(value)
        if _is_int(value):
            return [[value, value] for _ in range(self.n)]
        if not isinstance(value, (list, tuple)):
            return None
        items = [_as_int(v) for v in value]
        if self.n == 1:
            ok = len(items) == 2 and all(_is_int(v) for v in items)
            return [items] if ok else None
        if len(items) != self.n:
            return None
        out = []
        for v in items:
            if _is_int(v):
                out.append([v, v])
            elif (isinstance(v, (list, tuple)) and len(v) == 2
                  and all(_is_int(_as_int(x)) for x in v)):
                out.append([_as_int(x) for x in v])
            else:
                return None
        return out

    def describe(self) -> str:
        if self.n == 1:
            return "a non-negative integer or a pair (before, after)"
        axes = ", ".join(_AXIS_NAMES[self.n])
        return (f"a non-negative integer or a tuple of {self.n} entries ({axes}), each an "
                f"integer or a pair (before, after)")


def side_pairs(value: list) -> list[list[int]]:
    """Canonical attribute -> one (before, after) pair per spatial axis."""
    return [value] if _is_int(value[0]) else value


def _pad_shape(layer: str) -> Any:
    n = _spatial_rank(layer)

    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        shape = require_spatial(ins[0], n, layer)
        pairs = side_pairs(attrs["padding"])
        spatial = tuple(d + b + a for d, (b, a) in zip(shape[1:-1], pairs))
        return [ins[0].with_shape((shape[0], *spatial, shape[-1]))]

    return rule


def _pad_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                   ) -> list[np.ndarray]:
    x = xs[0]
    pairs = [tuple(p) for p in side_pairs(attrs["padding"])]
    return [np.pad(x, [(0, 0), *pairs, (0, 0)], mode="constant")]


def _pad_lower(b: Any, attrs: dict, xs: list) -> list:
    """``tensor.pad`` with zeros on the spatial axes (nothing when every amount is 0)."""
    pairs = side_pairs(attrs["padding"])
    if all(v == 0 for pair in pairs for v in pair):
        return [xs[0]]
    pads = [[0, 0], *([lo, hi] for lo, hi in pairs), [0, 0]]
    return [b.op("tensor.pad", [xs[0]], {"pads": pads, "value": 0.0})]


def _crop_shape(layer: str) -> Any:
    n = _spatial_rank(layer)

    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        shape = require_spatial(ins[0], n, layer)
        pairs = side_pairs(attrs["cropping"])
        for axis, d, (b, a) in zip(_AXIS_NAMES[n], shape[1:-1], pairs):
            if isinstance(d, int) and b + a >= d:
                raise ShapeError(
                    f"{layer} crops {b} + {a} from {axis} {d}, which leaves nothing "
                    f"(input {shape_str(shape)})",
                    "crop less than the input's size along every axis",
                )
        spatial = tuple(d - b - a for d, (b, a) in zip(shape[1:-1], pairs))
        return [ins[0].with_shape((shape[0], *spatial, shape[-1]))]

    return rule


def _crop_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                    ) -> list[np.ndarray]:
    x = xs[0]
    pairs = side_pairs(attrs["cropping"])
    sizes = x.shape[1:-1]
    if any(b + a >= d for d, (b, a) in zip(sizes, pairs)):
        raise ValueError(f"cropping {pairs} leaves nothing of a sample of shape {x.shape[1:]}")
    index = tuple(slice(b, d - a) for d, (b, a) in zip(sizes, pairs))
    return [x[(slice(None), *index, slice(None))]]


def _crop_lower(b: Any, attrs: dict, xs: list) -> list:
    """One ``tensor.slice`` per cropped spatial axis (the size may be symbolic)."""
    y = xs[0]
    for axis, (before, after) in enumerate(side_pairs(attrs["cropping"]), start=1):
        if before == 0 and after == 0:
            continue
        shape = list(y.type.shape)
        shape[axis] = shape[axis] - before - after
        slice_attrs: dict[str, Any] = {"axis": axis, "start": before}
        if isinstance(shape[axis], int):
            slice_attrs["size"] = shape[axis]
        y = b.op("tensor.slice", [y], slice_attrs, y.type.with_shape(tuple(shape)))
    return [y]


_PAD_DEFAULT = {1: [1, 1], 2: [[1, 1], [1, 1]], 3: [[1, 1], [1, 1], [1, 1]]}
_CROP_DEFAULT = {1: [1, 1], 2: [[0, 0], [0, 0]], 3: [[1, 1], [1, 1], [1, 1]]}
_PAD_EXAMPLE = {1: "ZeroPadding1D(2)", 2: "ZeroPadding2D(((1, 2), (0, 1)))",
                3: "ZeroPadding3D(1)"}
_CROP_EXAMPLE = {1: "Cropping1D((1, 2))", 2: "Cropping2D(((2, 2), (4, 4)))",
                 3: "Cropping3D(1)"}

for _n in (1, 2, 3):
    _pad = f"ZeroPadding{_n}D"
    register(LayerSpec(
        name=_pad,
        params=(Param("padding", SideAmounts(_n), _PAD_DEFAULT[_n],
                      doc="zeros per side: an int, or per axis an int or (before, after)"),),
        positional=("padding",),
        shape=_pad_shape(_pad), reference=_pad_reference, lower=_pad_lower,
        doc=f"Pads {_AXES[_n]} with zeros: (before, after) per axis; channels are untouched.",
        example=_PAD_EXAMPLE[_n],
    ))
    _crop = f"Cropping{_n}D"
    register(LayerSpec(
        name=_crop,
        params=(Param("cropping", SideAmounts(_n), _CROP_DEFAULT[_n],
                      doc="elements cut per side: an int, or per axis an int or "
                          "(before, after)"),),
        positional=("cropping",),
        shape=_crop_shape(_crop), reference=_crop_reference, lower=_crop_lower,
        doc=f"Cuts (before, after) elements off {_AXES[_n]}; channels are untouched.",
        example=_CROP_EXAMPLE[_n],
    ))


# -- upsampling --------------------------------------------------------------------------------


def _sizes(attrs: dict) -> list[int]:
    size = attrs["size"]
    return [size] if _is_int(size) else size


def _up_shape(layer: str) -> Any:
    n = _spatial_rank(layer)

    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        shape = require_spatial(ins[0], n, layer)
        spatial = tuple(d * f for d, f in zip(shape[1:-1], _sizes(attrs)))
        return [ins[0].with_shape((shape[0], *spatial, shape[-1]))]

    return rule


def _linear_axis(x: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Half-pixel linear resampling of one axis by an integer factor (edges clamped)."""
    size = x.shape[axis]
    src = np.maximum((np.arange(size * factor) + 0.5) / factor - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), size - 1)
    hi = np.minimum(lo + 1, size - 1)
    frac = (src - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, lo, axis=axis) * (1.0 - frac) + np.take(x, hi, axis=axis) * frac


def _up_reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]
                  ) -> list[np.ndarray]:
    x = xs[0]
    if attrs.get("interpolation", "nearest") == "bilinear":
        y = x.astype(np.float64)
        for axis, f in enumerate(_sizes(attrs), start=1):
            y = _linear_axis(y, axis, f)
        return [y.astype(x.dtype)]
    for axis, f in enumerate(_sizes(attrs), start=1):
        x = np.repeat(x, f, axis=axis)
    return [x]


def _up_lower(b: Any, attrs: dict, xs: list) -> list:
    """``tensor.resize``: nearest, or linear per axis with half-pixel centres (bilinear)."""
    scale = _sizes(attrs)
    if all(f == 1 for f in scale):
        return [xs[0]]
    mode = "linear" if attrs.get("interpolation", "nearest") == "bilinear" else "nearest"
    return [b.op("tensor.resize", [xs[0]], {"mode": mode, "scale": list(scale)})]


def _up_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Nearest copies (0); bilinear is a weighted sum of 4 inputs: 4 multiply-adds each."""
    assert outs[0].shape is not None
    if attrs.get("interpolation", "nearest") != "bilinear":
        return 0
    return 8 * product(list(outs[0].shape[1:]))


UP_SAMPLING1D = register(LayerSpec(
    name="UpSampling1D",
    params=(Param("size", Int(min=1), 2, aliases=("scale_factor",),
                  doc="repetitions of each step"),),
    positional=("size",),
    shape=_up_shape("UpSampling1D"), reference=_up_reference, lower=_up_lower,
    doc="Repeats each step size times: (batch, steps, c) -> (batch, steps * size, c).",
    example="UpSampling1D(2)",
))

UP_SAMPLING2D = register(LayerSpec(
    name="UpSampling2D",
    params=(
        Param("size", IntTuple(2), [2, 2], aliases=("scale_factor",),
              doc="factor for height and width"),
        Param("interpolation", Choice(("nearest", "bilinear")), "nearest", aliases=("mode",),
              doc='"nearest" repeats pixels; "bilinear" interpolates with half-pixel centres '
                  "(Keras 3, torch align_corners=False)"),
    ),
    positional=("size", "interpolation"),
    shape=_up_shape("UpSampling2D"), reference=_up_reference, flops=_up_flops, lower=_up_lower,
    doc="Upsamples height and width by integer factors: (batch, h * sh, w * sw, c).",
    example='UpSampling2D(2, interpolation="bilinear")',
))

UP_SAMPLING3D = register(LayerSpec(
    name="UpSampling3D",
    params=(Param("size", IntTuple(3), [2, 2, 2], aliases=("scale_factor",),
                  doc="factor for depth, height and width"),),
    positional=("size",),
    shape=_up_shape("UpSampling3D"), reference=_up_reference, lower=_up_lower,
    doc="Repeats each voxel by integer factors along depth, height and width.",
    example="UpSampling3D((1, 2, 2))",
))

