"""Spatial tensor ops: windowed and adaptive pooling, padding, resizing, transposed convolution.

These extend the tensor dialect (``tensor.py``) with the primitives the convolution, pooling
and resampling layers need and that the core ops cannot express faithfully:

- ``tensor.pool``: a max or average over sliding windows (Keras's padding rules, padding never
  counted); a windowed reduction is not a ``tensor.reduce`` (which removes whole axes).
- ``tensor.adaptive_pool``: PyTorch's adaptive windows, whose bounds depend on the concrete
  input size, so they cannot be static slices when the size is symbolic.
- ``tensor.pad``: a constant fill around any axes (ZeroPadding; a backend's explicit padding).
- ``tensor.resize``: nearest or (multi)linear resampling by integer factors, half-pixel centres.
- ``tensor.conv_transpose``: the adjoint of ``tensor.conv``, with Keras's output length.

As in ``tensor.py``, data is channels-last where the layout matters (the spatial axes are all
but the first and the last), weights keep PyTorch's layouts, attributes are static, and sizes
come from the (possibly symbolic) types, evaluated against the symbol sizes bound at run time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from neuralc.ir.core import Op
from neuralc.ir.dialects.tensor import (
    PADDING,
    EvalContext,
    TensorOp,
    accumulator_type,
    ranked,
    spatial_pad_lo,
)
from neuralc.ir.dims import Dim, ceildiv, dmax, floordiv, mod
from neuralc.ir.element import Cond, ElementBuilder, Node
from neuralc.ir.opdef import (
    NON_NEGATIVE,
    NUMBER,
    POSITIVE,
    POSITIVE_INTS,
    ListAttr,
    StrAttr,
    attribute,
    operand,
    opt_attribute,
    register_op,
    result,
)
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.ir.windows import (
    adaptive_bounds,
    effective_window,
    pad_spatial,
    sliding_windows,
    spatial_pads,
    transpose_crop,
    transpose_out_dim,
    window_out_dim,
)

# -- attribute checks shared by the ops ------------------------------------------------------


def _same_lengths(op: Op, names: tuple[str, ...]) -> list[str]:
    """Per-axis list attributes must have one entry per spatial axis each."""
    lengths = {len(op.attributes[k]) for k in names if isinstance(op.attributes.get(k), list)}
    if len(lengths) > 1:
        return [f"{', '.join(repr(k) for k in names)} must have one entry per spatial axis"]
    return []


def _spatial_input(op: Op, n: int) -> tuple[Dim, ...]:
    """The channels-last operand 0 with ``n`` spatial axes, or a ShapeError."""
    x = ranked(op)
    if len(x) != n + 2:
        raise ShapeError(f"{op.name} with {n} spatial axes needs a channels-last operand of rank "
                         f"{n + 2}, got {shape_str(x)}")
    return x


def _non_empty(op: Op, spatial: tuple[Dim, ...], x: tuple[Dim, ...]) -> None:
    if any(isinstance(d, int) and d < 1 for d in spatial):
        raise ShapeError(f"{op.name} gives an empty output {shape_str(spatial)} for input "
                         f"{shape_str(x)}")


def _count(b: ElementBuilder, lengths: list[Node | int], dtype: str) -> Node:
    """The number of real elements of a window, a ``dtype`` number: the product of its
    per-axis lengths (ints where the ranges settle them, else nodes of type ``dtype``)."""
    static = 1
    value: Node | None = None
    for length in lengths:
        if isinstance(length, int):
            static *= length
        else:
            value = length if value is None else b.binary("mul", value, length)
    if value is None:
        return b.const(float(static), dtype)
    return value if static == 1 else b.binary("mul", value, b.const(float(static), dtype))


def _window_reduce(b: ElementBuilder, op: Op, kind: str, n: Dim, c: Dim,
                   starts: list[Dim], bounds: list[tuple[Dim, Dim]],
                   conds: Callable[[list[Dim]], list[Cond]],
                   count: Callable[[str], Node]) -> Node:
    """Max or average of operand 0 of ``op`` over the box ``starts + r`` (``r`` within
    ``bounds``), where ``conds(rs)`` says which elements are real (the rest take no part)."""
    dtype = op.results[0].type.dtype

    def at(rs: list[Dim]) -> list[Dim]:
        return [n, *(st + r for st, r in zip(starts, rs)), c]

    if kind == "max":  # exact in the input type; padding is -inf, below every real element
        best = b.reduce("max", bounds, lambda rs: b.operand_guarded(op, 0, at(rs), conds(rs),
                                                                     -math.inf))
        return b.cast(best, dtype)
    acc = accumulator_type(dtype)
    total = b.reduce("add", bounds, lambda rs: b.cast(
        b.operand_guarded(op, 0, at(rs), conds(rs), 0.0), acc), dtype=acc)
    return b.cast(b.binary("div", total, count(acc)), dtype)


# -- pooling ---------------------------------------------------------------------------------


@register_op
class PoolOp(TensorOp):
    """Max or average over sliding windows on the spatial axes of channels-last input.

    ``kind`` is "max" or "avg"; ``window`` and ``strides`` have one entry per spatial axis;
    ``padding`` is "valid", "same" (Keras's split, the extra element at the end, resolved from
    the concrete size) or explicit ``[[lo, hi], ...]`` (each below the window, so every window
    holds a real element). Padding never takes part: max ignores it, avg divides by the number
    of real elements in each window (Keras; PyTorch's ``count_include_pad=False``).
    Output-fusible as in TVM (an elementwise epilogue fuses; the windowed read does not take a
    prologue); precision follows the input (max is exact, avg accumulates in wide precision).
    """

    name = "tensor.pool"
    input = operand()
    output = result()
    kind = attribute(StrAttr(("max", "avg")))
    window = attribute(POSITIVE_INTS)
    strides = attribute(POSITIVE_INTS)
    padding = attribute(PADDING)
    FUSION = "output_fusible"
    PRECISION = "follow"

    def verify_extra(self) -> list[str]:
        errs = _same_lengths(self, ("window", "strides"))
        p = self.padding
        if isinstance(p, list) and (len(p) != len(self.window) or any(
                not 0 <= v < k for q, k in zip(p, self.window) for v in q)):
            errs.append("explicit 'padding' needs one [lo, hi] per spatial axis, each in "
                        "[0, window)")
        return errs

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        a = self.attributes
        x = _spatial_input(self, len(a["window"]))
        spatial = []
        for i, (d, k, s) in enumerate(zip(x[1:-1], a["window"], a["strides"])):
            if isinstance(a["padding"], list):
                lo, hi = a["padding"][i]
                spatial.append(window_out_dim(d + lo + hi, k, s, 1, "valid"))
            else:
                spatial.append(window_out_dim(d, k, s, 1, a["padding"]))
        _non_empty(self, tuple(spatial), x)
        return [self.operands[0].type.with_shape((x[0], *spatial, x[-1]))]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        """Window ``o * stride - pad_lo + r``; reads outside the input are padding, guarded
        away; avg divides by the number of real elements, per axis ``min(start + k, size) -
        max(start, 0)`` where the ranges make it a constant, else that axis's guard summed
        over the window."""
        x = ranked(self)
        window, strides = self.attributes["window"], self.attributes["strides"]
        sizes = x[1:-1]
        starts = [b.simplify(o * s - spatial_pad_lo(d, k, s, 1, self.padding, a))
                  for a, (o, d, k, s) in enumerate(zip(index[1:-1], sizes, window, strides))]
        # Axes with no padding: every window lies inside (the output length says so), even
        # where symbolic sizes keep the range analysis from proving it.
        padded = [self.padding == "same" or (isinstance(self.padding, list)
                                             and any(self.padding[a]))
                  for a in range(len(window))]

        def conds(rs: list[Dim]) -> list[Cond]:
            return [(st + r, 0, d) for st, r, d, p in zip(starts, rs, sizes, padded) if p]

        def count(dtype: str) -> Node:
            # Not the min/max as an index expression: parse_dim (which reads the loop IR's
            # attributes back) simplifies min/max as if every symbol were >= 1, turning
            # max(2 * i - 1, 0) into 2 * i - 1 for a loop variable i that starts at 0.
            lengths: list[Node | int] = []
            for st, k, d, p in zip(starts, window, sizes, padded):
                exact = b.simplify(b.min(st + k, d) - b.max(st, 0)) if p else k
                lengths.append(exact if isinstance(exact, int) else b.reduce(
                    "add", [(0, k)], lambda rs, st=st, d=d: b.cast(
                        b.guard([(st + rs[0], 0, d)]), dtype), dtype=dtype))
            return _count(b, lengths, dtype)

        return _window_reduce(b, self, self.kind, index[0], index[-1], starts,
                              [(0, k) for k in window], conds, count)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        a = self.attributes
        x = args[0]
        k, s = a["window"], a["strides"]
        ones = [1] * len(k)
        if isinstance(a["padding"], list):
            pads = [(lo, hi) for lo, hi in a["padding"]]
        else:
            pads = spatial_pads(x.shape, k, s, ones, a["padding"])
        axes = tuple(range(-len(k), 0))
        wide = x.astype(np.float64)
        if a["kind"] == "max":
            win = sliding_windows(pad_spatial(wide, pads, -np.inf), k, s, ones)
            return [win.max(axis=axes).astype(x.dtype)]
        total = sliding_windows(pad_spatial(wide, pads), k, s, ones).sum(axis=axes)
        real = pad_spatial(np.ones((1, *x.shape[1:-1], 1)), pads)
        count = sliding_windows(real, k, s, ones).sum(axis=axes)
        return [(total / count).astype(x.dtype)]


@register_op
class AdaptivePoolOp(TensorOp):
    """Max or average over PyTorch's adaptive windows to a fixed ``output_size``.

    Output ``i`` of a spatial axis of ``n`` elements pools ``[floor(i * n / out),
    ceil((i + 1) * n / out))``: windows depend on the concrete size, so with a symbolic size
    they are not static slices (a lowering uses ``tensor.pool`` or ``tensor.reduce`` where the
    size is known to divide evenly). Windows are products of intervals, so the op is separable
    per axis, which the reference uses. Output-fusible and precision-following, as ``tensor.pool``.
    """

    name = "tensor.adaptive_pool"
    input = operand()
    output = result()
    kind = attribute(StrAttr(("max", "avg")))
    output_size = attribute(POSITIVE_INTS)
    FUSION = "output_fusible"
    PRECISION = "follow"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        out = self.attributes["output_size"]
        x = _spatial_input(self, len(out))
        return [self.operands[0].type.with_shape((x[0], *out, x[-1]))]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        """Output ``i`` of an axis pools ``[i * n floordiv out, (i + 1) * n ceildiv out)``:
        the reduction runs over the longest window (its bounds may not depend on ``i``) and a
        guard ``r < hi - lo`` cuts the shorter ones."""
        x = ranked(self)
        starts: list[Dim] = []
        lengths: list[Dim] = []
        longest: list[Dim] = []
        for i, n, out in zip(index[1:-1], x[1:-1], self.attributes["output_size"]):
            lo = b.simplify(floordiv(i * n, out))
            hi = b.simplify(ceildiv((i + 1) * n, out))
            starts.append(lo)
            lengths.append(b.simplify(hi - lo))
            longest.append(_longest_adaptive_window(n, out))

        def conds(rs: list[Dim]) -> list[Cond]:
            return [(r, 0, length) for r, length in zip(rs, lengths)]

        def count(dtype: str) -> Node:
            return _count(b, [d if isinstance(d, int) else b.index_value(d, dtype)
                              for d in lengths], dtype)

        return _window_reduce(b, self, self.kind, index[0], index[-1], starts,
                              [(0, k) for k in longest], conds, count)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        fn = np.max if self.attributes["kind"] == "max" else np.mean
        y = args[0].astype(np.float64)
        for axis, out in enumerate(self.attributes["output_size"], start=1):
            if y.shape[axis] < 1:
                raise ValueError(f"{self.name} cannot pool an empty axis {axis}")
            index: list[Any] = [slice(None)] * y.ndim
            parts = []
            for lo, hi in adaptive_bounds(y.shape[axis], out):
                index[axis] = slice(lo, hi)
                parts.append(fn(y[tuple(index)], axis=axis, keepdims=True))
            y = np.concatenate(parts, axis=axis)
        return [y.astype(args[0].dtype)]


def _longest_adaptive_window(n: Dim, out: int) -> Dim:
    """The longest of PyTorch's ``out`` adaptive windows over ``n`` elements, or a bound on it
    when ``n`` is symbolic: ``ceil((i + 1) n / out) - floor(i n / out) < n / out + 2``, so at
    most ``ceil(n / out) + 1`` (exactly ``n`` for one window)."""
    if isinstance(n, int):
        return max(hi - lo for lo, hi in adaptive_bounds(n, out))
    if out == 1:
        return n
    return ceildiv(n, out) + 1


# -- padding and resizing --------------------------------------------------------------------


@register_op
class PadOp(TensorOp):
    """Pads every axis by ``pads[i] = [lo, hi]`` (non-negative) elements of ``value`` (0.0).

    General over the axes (not only the spatial ones) so that any layout's explicit padding is
    one op; cropping is ``tensor.slice``. Injective: it fuses into its consumers.
    """

    name = "tensor.pad"
    input = operand()
    output = result()
    pads = attribute(ListAttr(ListAttr(NON_NEGATIVE, length=2)))
    value = attribute(NUMBER, default=0.0)
    FUSION = "injective"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        x = ranked(self)
        pads = self.attributes["pads"]
        if len(pads) != len(x):
            raise ShapeError(f"{self.name}: {len(pads)} [lo, hi] pairs for an operand of rank "
                             f"{len(x)}")
        shape = tuple(d + lo + hi for d, (lo, hi) in zip(x, pads))
        return [self.operands[0].type.with_shape(shape)]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        """Reads ``index - lo`` where that lies inside the operand, ``value`` elsewhere."""
        x = ranked(self)
        pads = self.attributes["pads"]
        src = [i - lo for i, (lo, _) in zip(index, pads)]
        conds = [(s, 0, d) for s, d, (lo, hi) in zip(src, x, pads) if lo or hi]
        if not conds:
            return b.operand(self, 0, src)
        return b.operand_guarded(self, 0, src, conds, float(self.attributes.get("value", 0.0)))

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x = args[0]
        pads = [(lo, hi) for lo, hi in self.attributes["pads"]]
        value = self.attributes.get("value", 0.0)
        return [np.pad(x, pads, mode="constant", constant_values=value).astype(x.dtype)]


_RESIZE_MODES = ("nearest", "linear")


def _linear_resample(x: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Half-pixel linear resampling of one axis by an integer factor, edges clamped.

    Output ``i`` reads source ``(i + 0.5) / factor - 0.5`` (clamped below at 0), interpolated
    between its floor and the next element (clamped at the last).
    """
    size = x.shape[axis]
    out = np.arange(size * factor)
    src = np.clip((out + 0.5) / factor - 0.5, 0.0, None)
    lo = np.minimum(np.floor(src).astype(np.int64), size - 1)
    hi = np.minimum(lo + 1, size - 1)
    shape = [1] * x.ndim
    shape[axis] = -1
    frac = (src - lo).reshape(shape)
    return np.take(x, lo, axis=axis) * (1.0 - frac) + np.take(x, hi, axis=axis) * frac


@register_op
class ResizeOp(TensorOp):
    """Upsamples the spatial axes of channels-last input by integer factors ``scale``.

    ``mode`` "nearest" repeats each element ``scale`` times (output ``i`` reads ``i //
    scale``); "linear" interpolates along each spatial axis in turn (bilinear in 2-D,
    trilinear in 3-D) with half-pixel centres and clamped edges: Keras 3's
    ``image.resize``, PyTorch's ``interpolate(align_corners=False)``, ONNX's ``half_pixel``.
    Injective, as in TVM: each output reads a fixed set of inputs.
    """

    name = "tensor.resize"
    input = operand()
    output = result()
    mode = attribute(StrAttr(_RESIZE_MODES))
    scale = attribute(POSITIVE_INTS)
    FUSION = "injective"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        scale = self.attributes["scale"]
        x = _spatial_input(self, len(scale))
        spatial = tuple(d * f for d, f in zip(x[1:-1], scale))
        return [self.operands[0].type.with_shape((x[0], *spatial, x[-1]))]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        """Nearest reads ``i floordiv f``. Linear, as ``_linear_resample``: output ``i`` reads
        source ``(2i + 1 - f) / 2f``, so with ``a = 2i + 1 - f`` the floor index is
        ``lo = a floordiv 2f`` (-1 before the first centre) and the weight of ``lo + 1`` is
        ``(a mod 2f) / 2f`` (float64, as the reference). The clamped edges are weights, not
        indices: the two reads are at ``lo mod size`` and ``(lo + 1) mod size`` (always
        inside the input, equal to the reference's where it reads them), and where the
        reference clamps (``lo < 0``: all on element 0; ``lo = size - 1``: all on the last)
        the weight is 1 or 0 (no ``min``/``max`` in an index: the loop IR's text would not
        keep one over loop variables, see ``PoolOp.element``). The 2^n corners (n: the axes
        scaled by more than 1) are interpolated axis by axis in the reference's order."""
        x = ranked(self)
        scale = self.attributes["scale"]
        n, c = index[0], index[-1]
        if self.attributes["mode"] == "nearest":
            return b.operand(self, 0, [n, *(floordiv(i, f) for i, f in
                                            zip(index[1:-1], scale)), c])
        wide = "f64"
        one, zero = b.const(1.0, wide), b.const(0.0, wide)
        # Per axis: the two source indices and the weight of the second; None where the scale
        # is 1 (the weight is 0: the element is read where it is).
        taps: list[tuple[Dim, Dim, Node | None]] = []
        for i, f, d in zip(index[1:-1], scale, x[1:-1]):
            if f == 1:
                taps.append((i, i, None))
                continue
            a = b.simplify(2 * i + 1 - f)
            lo = b.simplify(floordiv(a, 2 * f))
            frac = b.binary("div", b.index_value(b.simplify(mod(a, 2 * f)), wide),
                            b.const(float(2 * f), wide))
            # a < 2 f size always holds, so this guard is a >= 0: past the first centre.
            edge = b.select(b.guard([(a, 0, 2 * f * d)]), zero, one)
            weight = b.select(b.guard([(lo, 0, d - 1)]), frac, edge)
            taps.append((b.simplify(mod(lo, d)), b.simplify(mod(lo + 1, d)), weight))
        # Corner values keyed by the choice (0: lo, 1: lo + 1) on the axes not yet merged.
        choices = [(0, 1) if w is not None else (0,) for _, _, w in taps]
        corners: dict[tuple[int, ...], Node] = {}
        for pick in itertools.product(*choices):
            src = [t[p] for t, p in zip(taps, pick)]
            corners[pick] = b.cast(b.operand(self, 0, [n, *src, c]), wide)
        for _, _, weight in taps:
            if weight is None:
                corners = {pick[1:]: v for pick, v in corners.items()}
                continue
            rest = b.binary("sub", one, weight)
            corners = {pick[1:]: b.binary("add", b.binary("mul", low, rest),
                                          b.binary("mul", corners[(1, *pick[1:])], weight))
                       for pick, low in corners.items() if pick[0] == 0}
        return b.cast(corners[()], self.results[0].type.dtype)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x = args[0]
        scale = self.attributes["scale"]
        if self.attributes["mode"] == "nearest":
            y = x
            for axis, f in enumerate(scale, start=1):
                y = np.repeat(y, f, axis=axis)
            return [y]
        y = x.astype(np.float64)
        for axis, f in enumerate(scale, start=1):
            y = _linear_resample(y, axis, f)
        return [y.astype(x.dtype)]


# -- transposed convolution ------------------------------------------------------------------


@register_op
class ConvTransposeOp(TensorOp):
    """Transposed convolution of channels-last input with a ``(in, out / groups, *k)`` weight.

    Input position ``o`` with tap ``t`` lands on ``o * stride + t * dilation`` of the full
    result, ``(size - 1) * stride + (k - 1) * dilation + 1`` long, which is then cut to the
    output. ``weight_layout`` is "iohw" (PyTorch's ``(in, out / groups, *k)``, the default) or
    "hwio" (``(*k, in, out / groups)``: output channels contiguous for a kernel vectorised over
    them; ``pack-weights`` chooses it, the transpose running once at load time). ``padding``
    "valid" or "same" gives Keras's output length
    (``common.transpose_out_dim``, with ``output_padding`` when present) and crop (the smaller
    half of the adjoint forward convolution's 'same' padding, ``common.transpose_crop``);
    explicit ``[[lo, hi], ...]`` crops ``lo`` at the start and ``hi`` at the end, a negative
    ``hi`` extending the end with zeros (PyTorch's padding and output_padding as ``[[p, p -
    output_padding]]``). Positions past the full result receive nothing. Output-fusible and
    low precision like ``tensor.conv`` (float32 accumulation).
    """

    name = "tensor.conv_transpose"
    input = operand()
    weight = operand()
    output = result()
    strides = attribute(POSITIVE_INTS)
    dilation = attribute(POSITIVE_INTS)
    groups = attribute(POSITIVE)
    padding = attribute(PADDING)
    output_padding = opt_attribute(ListAttr(NON_NEGATIVE, non_empty=True))
    weight_layout = attribute(StrAttr(("iohw", "hwio")), default="iohw")
    FUSION = "output_fusible"
    PRECISION = "low"

    def iohw(self, w: Any) -> tuple:
        """The weight's shape in PyTorch's order ``(in, out / groups, *k)``, whatever its
        layout."""
        w = tuple(w)
        return (w[-2], w[-1], *w[:-2]) if self.weight_layout == "hwio" else w

    def weight_index(self, c: Dim, f: Dim, taps: list[Dim]) -> list[Dim]:
        """Where weight element (c, f, *taps) is in the weight's layout."""
        return [*taps, c, f] if self.weight_layout == "hwio" else [c, f, *taps]

    def verify_extra(self) -> list[str]:
        errs = _same_lengths(self, ("strides", "dilation"))
        p = self.padding
        if isinstance(p, list):
            if any(q[0] < 0 for q in p):
                errs.append("explicit 'padding' must be [[lo, hi], ...] with lo >= 0")
            if self.output_padding is not None:
                errs.append("'output_padding' goes with \"valid\" or \"same\" padding only")
        return errs

    def _geometry(self, size: Dim, i: int, k: int) -> tuple[Dim, int | None]:
        """Output length of spatial axis ``i``, and its start crop when it is static."""
        a = self.attributes
        s, d = a["strides"][i], a["dilation"][i]
        if isinstance(a["padding"], list):
            lo, hi = a["padding"][i]
            return (size - 1) * s + effective_window(k, d) - lo - hi, lo
        opad = a.get("output_padding")
        out = transpose_out_dim(size, k, s, d, a["padding"], None if opad is None else opad[i])
        if isinstance(size, int) and isinstance(out, int):
            return out, transpose_crop(size, k, s, d, out)
        return out, None

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        x, w = ranked(self, 0), self.iohw(ranked(self, 1))
        a = self.attributes
        nd = len(x) - 2
        if nd < 1 or len(w) != nd + 2 or len(a["strides"]) != nd or len(a["dilation"]) != nd:
            raise ShapeError(f"{self.name}: weight {shape_str(w)} does not fit input "
                             f"{shape_str(x)}")
        for what in ("padding", "output_padding"):
            v = a.get(what)
            if isinstance(v, list) and len(v) != nd:
                raise ShapeError(f"{self.name}: '{what}' needs {nd} entries, got {len(v)}")
        ctx.unify(x[-1], w[0], f"{self.name} input channels")
        if isinstance(w[0], int) and w[0] % a["groups"]:
            raise ShapeError(f"{self.name}: {w[0]} input channels do not split into "
                             f"{a['groups']} groups")
        spatial = []
        for i in range(nd):
            k = w[2 + i]
            assert isinstance(k, int)
            spatial.append(self._geometry(x[1 + i], i, k)[0])
        _non_empty(self, tuple(spatial), x)
        return [self.operands[0].type.with_shape((x[0], *spatial, w[1] * a["groups"]))]

    def _crop(self, size: Dim, i: int, k: int) -> Dim:
        """Elements cropped from the start of the full result on axis ``i``; where the size is
        symbolic, ``transpose_crop``'s ``max(full - out, 0) // 2`` (``full - out`` does not
        depend on the size: both grow by ``stride`` per input element)."""
        out, crop = self._geometry(size, i, k)
        if crop is not None:
            return crop
        a = self.attributes
        full = (size - 1) * a["strides"][i] + effective_window(k, a["dilation"][i])
        return floordiv(dmax(full - out, 0), 2)

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        """The adjoint of conv: output ``y`` (``p = y + crop`` in the full result) receives
        input ``(p - t * dilation) / stride`` through tap ``t`` where that is an integer
        (``mod`` 0) inside the input; a contraction over the group's input channels and the
        taps, accumulated in float32 as the reference. On an axis whose window equals its
        stride (k == s, no dilation: a U-Net's 2x2 up-convolution) exactly one tap reaches
        each output, ``t = p mod s`` from input ``p floordiv s``: no reduction over that
        axis's taps, no tap masked out."""
        x, w = ranked(self, 0), self.iohw(ranked(self, 1))
        a = self.attributes
        strides, dilation, groups = a["strides"], a["dilation"], a["groups"]
        taps = [int(k) for k in w[2:]]
        n, ys, f = index[0], index[1:-1], index[-1]
        per_group = w[1]
        group: Dim = b.simplify(floordiv(f, per_group)) if groups > 1 else 0
        fo = b.simplify(mod(f, per_group)) if groups > 1 else f
        cin = floordiv(x[-1], groups)
        crops = [self._crop(d, i, k) for i, (d, k) in enumerate(zip(x[1:-1], taps))]

        exact = [k == s and dl == 1 for k, s, dl in zip(taps, strides, dilation)]

        def term(rs: list[Dim]) -> Node:
            ch, reduced = group * cin + rs[0], iter(rs[1:])
            pos: list[Dim] = []
            ts: list[Dim] = []
            conds: list[Cond] = []
            for y, s, dl, cr, d, one in zip(ys, strides, dilation, crops, x[1:-1], exact):
                if one:  # the one tap that lands on y
                    t: Dim = b.simplify(mod(y + cr, s))
                    q = b.simplify(floordiv(y + cr, s))
                else:
                    t = next(reduced)
                    p = b.simplify(y + cr - t * dl)
                    q = b.simplify(floordiv(p, s))
                    if s > 1:
                        conds.append((b.simplify(mod(p, s)), 0, 1))
                conds.append((q, 0, d))
                pos.append(q)
                ts.append(t)
            xv = b.operand_guarded(self, 0, [n, *pos, ch], conds, 0.0)
            wv = b.operand(self, 1, self.weight_index(ch, fo, ts))
            return b.binary("mul", b.cast(xv, "f32"), b.cast(wv, "f32"))

        loops = [(0, cin)] + [(0, k) for k, one in zip(taps, exact) if not one]
        total = b.reduce("add", loops, term, contraction=True, dtype="f32")
        return b.cast(total, self.results[0].type.dtype)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x, w = args[0].astype(np.float32), args[1].astype(np.float32)
        if self.weight_layout == "hwio":
            nd = w.ndim - 2
            w = np.transpose(w, (nd, nd + 1, *range(nd)))
        a = self.attributes
        s, d, g = a["strides"], a["dilation"], a["groups"]
        k = list(w.shape[2:])
        batch, spatial, c = x.shape[0], x.shape[1:-1], x.shape[-1]
        cg, fg = c // g, w.shape[1]
        full = [(n - 1) * si + effective_window(ki, di) for n, ki, si, di in zip(spatial, k, s, d)]
        acc = np.zeros((batch, *full, fg * g), np.float32)
        for tap in itertools.product(*(range(ki) for ki in k)):
            wt = w[(slice(None), slice(None), *tap)]  # (C, F/g)
            contrib = np.concatenate(
                [x[..., gi * cg:(gi + 1) * cg] @ wt[gi * cg:(gi + 1) * cg] for gi in range(g)],
                axis=-1)
            where = tuple(slice(t * di, t * di + (n - 1) * si + 1, si)
                          for t, di, n, si in zip(tap, d, spatial, s))
            acc[(slice(None), *where, slice(None))] += contrib
        geo = [self._geometry(n, i, ki) for i, (n, ki) in enumerate(zip(spatial, k))]
        outs = [int(o) for o, _ in geo]
        crops = [int(cr) for _, cr in geo]  # static: the sizes are concrete here
        y = np.zeros((batch, *outs, fg * g), np.float32)
        keep = [max(min(o, f - cr), 0) for o, f, cr in zip(outs, full, crops)]
        y[(slice(None), *(slice(0, kp) for kp in keep), slice(None))] = \
            acc[(slice(None), *(slice(cr, cr + kp) for cr, kp in zip(crops, keep)), slice(None))]
        return [y.astype(args[0].dtype)]


