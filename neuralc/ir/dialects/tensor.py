"""The tensor dialect: the primitive tensor ops that graph ops lower to.

Each op kind is declared once here: its operands, results and attributes, its symbolic shape
rule, its fusion kind (elementwise, broadcast, injective, reduction, output-fusible, opaque),
its precision policy, its canonicalisation pattern and its numpy reference semantics (what the
reference interpreter runs and what every backend must reproduce). Tensors are channels-last
where a layout matters (conv, pool), with weights in PyTorch's layouts, as in the graph
dialect.

Design choices: attributes are static (axes, permutations, window sizes); sizes come from the
result types, which may be symbolic and are evaluated against the symbol sizes bound from the
inputs at run time. Keras "same" padding stays symbolic (``padding = "same"``) because its
split depends on the concrete size.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Protocol

import numpy as np

from neuralc.ir.activations import activation_names, apply_activation
from neuralc.ir.core import Op, Rewriter, Value
from neuralc.ir.dims import Dim, ceildiv, dmax, evaluate, floordiv, mod, product
from neuralc.ir.element import ElementBuilder, Node
from neuralc.ir.numeric import np_dtype, round_bf16
from neuralc.ir.opdef import (
    BOOL,
    BOOL_TENSOR,
    INT_TENSOR,
    NUMBER,
    PAD_PAIRS,
    POSITIVE,
    POSITIVE_INTS,
    STRING,
    DefinedOp,
    FusionKind,
    IntAttr,
    ListAttr,
    OneOf,
    PrecisionPolicy,
    StrAttr,
    attribute,
    operand,
    opt_attribute,
    register_op,
    result,
    var_operand,
)
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.ir.windows import pad_spatial, sliding_windows, spatial_pads, window_out_dim

__all__ = ["round_bf16"]  # re-exported: the precision pass checks fills with it


class EvalContext(Protocol):
    """What reference evaluation needs besides operand arrays."""

    sizes: dict[str, int]
    weights: dict[str, np.ndarray]


def concrete(t: TensorType, ctx: EvalContext) -> tuple[int, ...]:
    assert t.shape is not None
    return tuple(evaluate(d, ctx.sizes) for d in t.shape)


def ranked(op: Op, i: int = 0) -> tuple[Dim, ...]:
    """The shape of operand ``i``, or a ShapeError when it is not inferred yet."""
    t = op.operands[i].type
    if t.shape is None:
        raise ShapeError(f"{op.name}: operand {i} has no inferred shape")
    return t.shape


def check_axes(axes: list[int], rank: int, what: str) -> list[int]:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"{what}: axis {a} is out of range for rank {rank}")
        out.append(a % rank)
    return out


def broadcast_shapes(
    shapes: list[tuple[Dim, ...]], ctx: ShapeContext, what: str
) -> tuple[Dim, ...]:
    """Numpy broadcasting (right-aligned); non-1 dims must be equal and are unified."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        d: Dim = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            e = s[j]
            if e == 1:
                continue
            d = e if d == 1 else ctx.unify(d, e, f"{what} axis {i}")
        out.append(d)
    return tuple(out)


def broadcast_index(index: list[Dim], operand: Value) -> list[Dim]:
    """The index into ``operand`` of a result element at ``index`` under numpy broadcasting:
    right-aligned, and 0 on the operand's axes of size 1."""
    shape = operand.type.shape
    assert shape is not None
    tail = index[len(index) - len(shape):] if shape else []
    return [0 if d == 1 else i for i, d in zip(tail, shape)]


def accumulator_type(dtype: str) -> str:
    """The type a reduction or contraction accumulates in: f32 for the low float types."""
    return "f32" if dtype in ("f16", "bf16") else dtype


def unflatten(flat: Dim, shape: tuple[Dim, ...]) -> list[Dim]:
    """Row-major index of element ``flat`` (``0 <= flat < numel``) in ``shape``."""
    out: list[Dim] = []
    for k, d in enumerate(shape):
        q = floordiv(flat, product(list(shape[k + 1:])))
        out.append(q if k == 0 else mod(q, d))
    return out


def flatten(index: list[Dim], shape: tuple[Dim, ...]) -> Dim:
    flat: Dim = 0
    for i, d in zip(index, shape):
        flat = flat * d + i
    return flat


def fill_value(v: Any) -> float | None:
    """The value of a ``tensor.constant {value = c}`` fill, or None for anything else."""
    owner = getattr(v, "op", None)
    if isinstance(owner, ConstantOp) and owner.value is not None:
        return float(owner.value)
    return None


def replace_with(op: Op, value: Value, rewriter: Rewriter) -> bool:
    """Replace ``op``'s single result by ``value`` when the types agree."""
    if value.type != op.results[0].type:
        return False
    rewriter.replace_op(op, [value])
    return True


def fold_to_fill(op: Op, value: float, rewriter: Rewriter) -> bool:
    t = op.results[0].type
    const = Op("tensor.constant", [], [t], {"value": value}, location=op.location)
    rewriter.insert_before(op, const)
    rewriter.replace_op(op, [const.results[0]])
    return True


class TensorOp(DefinedOp):
    """Common base: tensor ops are elementwise and follow their inputs' precision unless
    they say otherwise."""

    FUSION: ClassVar[FusionKind] = "elementwise"
    PRECISION: ClassVar[PrecisionPolicy] = "follow"


def _elementwise_or_broadcast(op: Op) -> FusionKind:
    shapes = {v.type.shape for v in op.operands}
    return "elementwise" if len(shapes) == 1 else "broadcast"


# -- constants -----------------------------------------------------------------------------


@register_op
class ConstantOp(TensorOp):
    """A weight by name (``weight = "conv2d.weight"``) or a scalar fill (``value = 0.5``)."""

    name = "tensor.constant"
    output = result()
    weight = opt_attribute(STRING)
    value = opt_attribute(NUMBER)
    FUSION = "none"

    def verify_extra(self) -> list[str]:
        if (self.weight is None) == (self.value is None):
            return ["needs exactly one of 'weight' (a name) and 'value' (a number)"]
        if self.results[0].type.shape is None:
            return ["a constant needs a ranked result type"]
        return []

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        return [self.results[0].type]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        if self.value is None:
            raise NotImplementedError("a weight is a buffer, read where it is used")
        return b.const(self.value, self.results[0].type.dtype)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        t = self.results[0].type
        if self.weight is not None:
            return [np.asarray(ctx.weights[self.weight]).astype(np_dtype(t.dtype))]
        return [np.full(concrete(t, ctx), self.value, dtype=np_dtype(t.dtype))]


# -- elementwise ---------------------------------------------------------------------------

_MATH: dict[str, Any] = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "neg": np.negative,
    "abs": np.abs,
    "reciprocal": lambda x: 1.0 / x,
    "square": np.square,
    "sin": np.sin,
    "cos": np.cos,
    "floor": np.floor,
    "ceil": np.ceil,
    "erf": np.frompyfunc(math.erf, 1, 1),
}
MATH_FUNCTIONS = tuple(_MATH)
_NOT_ELEMENTWISE = {"softmax", "log_softmax"}
# Ops whose results lose accuracy in fp16/bf16: they stay fp32 under mixed precision.
_NEVER_LOW = {
    "exp",
    "log",
    "rsqrt",
    "reciprocal",
    "erf",
    "softmax",
    "softplus",
    "exponential",
    "gelu",
    "selu",
    "elu",
    "sigmoid",
    "tanh",
    "swish",
}


@register_op
class UnaryOp(TensorOp):
    """``fn(x)`` elementwise: math functions and every activation (``alpha`` optional)."""

    name = "tensor.unary"
    input = operand()
    output = result()
    fn = attribute(STRING)
    alpha = opt_attribute(NUMBER)

    def verify_extra(self) -> list[str]:
        fn = self.fn
        if fn in _NOT_ELEMENTWISE:
            return [f"{fn} is not elementwise; lower it to reductions (TensorBuilder.activation)"]
        if fn not in _MATH and fn not in activation_names():
            return [f"unknown function {fn!r}"]
        return []

    def precision_policy(self) -> PrecisionPolicy:
        return "never" if self.fn in _NEVER_LOW else "follow"

    def canonicalize(self, rewriter: Rewriter) -> bool:
        if self.fn in ("linear", "identity", "none"):
            return replace_with(self, self.input, rewriter)
        c = fill_value(self.input)
        if c is not None and self.results[0].type.dtype == "f32":
            y = self.evaluate([np.array(c, np.float32)], None)[0]
            return fold_to_fill(self, float(y), rewriter)
        return False

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        return [self.input.type.with_shape(ranked(self))]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        return b.unary(self.fn, b.operand(self, 0, index), self.alpha)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [unary_fn(self.fn, args[0], self.alpha)]


def unary_fn(fn: str, x: np.ndarray, alpha: float | None = None) -> np.ndarray:
    """``fn`` elementwise (a math function or an activation), computed in float64 and returned
    in ``x``'s dtype: the semantics of ``tensor.unary`` and ``loop.unary``."""
    if fn in _MATH:
        y = np.asarray(_MATH[fn](x.astype(np.float64))).astype(np.float64)
    else:
        y = apply_activation(fn, x.astype(np.float64), alpha)
    return np.asarray(y).astype(x.dtype)


_BINARY: dict[str, Any] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "pow": np.power,
}


BINARY_FNS = _BINARY


@register_op
class BinaryOp(TensorOp):
    """``fn(a, b)`` elementwise with numpy broadcasting."""

    name = "tensor.binary"
    lhs = operand()
    rhs = operand()
    output = result()
    fn = attribute(StrAttr(tuple(_BINARY)))

    def fusion_kind(self) -> FusionKind:
        return _elementwise_or_broadcast(self)

    # x + 0, x - 0, x * 1, x / 1 (when the result keeps x's type); c1 op c2 folds.
    _RIGHT_IDENTITY: ClassVar[dict[str, float]] = {"add": 0.0, "sub": 0.0, "mul": 1.0, "div": 1.0}

    def canonicalize(self, rewriter: Rewriter) -> bool:
        fn = self.fn
        a, b = self.lhs, self.rhs
        ca, cb = fill_value(a), fill_value(b)
        if ca is not None and cb is not None and self.results[0].type.dtype == "f32":
            y = self.evaluate([np.array(ca, np.float32), np.array(cb, np.float32)], None)[0]
            return fold_to_fill(self, float(y), rewriter)
        if cb is not None and self._RIGHT_IDENTITY.get(fn) == cb:
            return replace_with(self, a, rewriter)
        if ca is not None and fn in ("add", "mul") and self._RIGHT_IDENTITY[fn] == ca:
            return replace_with(self, b, rewriter)
        return False

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        shape = broadcast_shapes([ranked(self, 0), ranked(self, 1)], ctx, self.name)
        return [self.lhs.type.with_shape(shape)]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        x = b.operand(self, 0, broadcast_index(index, self.lhs))
        y = b.operand(self, 1, broadcast_index(index, self.rhs))
        return b.binary(self.fn, x, b.cast(y, x.dtype))

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [_BINARY[self.fn](args[0], args[1]).astype(args[0].dtype)]


@register_op
class SelectOp(TensorOp):
    """``cond ? a : b`` elementwise with broadcasting; ``cond`` is i1."""

    name = "tensor.select"
    cond = operand(BOOL_TENSOR)
    if_true = operand()
    if_false = operand()
    output = result()

    def fusion_kind(self) -> FusionKind:
        return _elementwise_or_broadcast(self)

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        shape = broadcast_shapes([ranked(self, i) for i in range(3)], ctx, self.name)
        return [self.if_true.type.with_shape(shape)]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        c, x, y = (b.operand(self, i, broadcast_index(index, v))
                   for i, v in enumerate(self.operands))
        return b.select(b.cast(c, "i1"), x, b.cast(y, x.dtype))

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.where(args[0].astype(bool), args[1], args[2]).astype(args[1].dtype)]


CAST_TYPES = ("f32", "f16", "bf16", "f64", "i64", "i32", "i1")


@register_op
class CastOp(TensorOp):
    """Element-type conversion (``to = "f16"``); bf16 is emulated by rounding float32."""

    name = "tensor.cast"
    input = operand()
    output = result()
    to = attribute(StrAttr(CAST_TYPES))
    PRECISION = "never"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        return [TensorType(ranked(self), self.to)]

    def canonicalize(self, rewriter: Rewriter) -> bool:
        # A cast to the type a value already has does nothing.
        return replace_with(self, self.input, rewriter)

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        return b.cast(b.operand(self, 0, index), self.to)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        if self.to == "bf16":
            return [round_bf16(args[0].astype(np.float32))]
        return [args[0].astype(np_dtype(self.to))]


# -- reductions ----------------------------------------------------------------------------

_REDUCE = {
    "sum": np.sum,
    "max": np.max,
    "min": np.min,
    "mean": np.mean,
    "prod": np.prod,
    "var": lambda x, axis, keepdims: np.var(x, axis=axis, keepdims=keepdims),
}


@register_op
class ReduceOp(TensorOp):
    """``kind`` (sum, max, min, mean, prod, var: population variance) over ``axes``."""

    name = "tensor.reduce"
    input = operand()
    output = result()
    kind = attribute(StrAttr(tuple(_REDUCE)))
    axes = attribute(ListAttr(IntAttr(), non_empty=True))
    keepdims = attribute(BOOL)
    FUSION = "reduction"
    PRECISION = "never"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        shape = ranked(self)
        axes = set(check_axes(self.axes, len(shape), self.name))
        if self.keepdims:
            out = tuple(1 if i in axes else d for i, d in enumerate(shape))
        else:
            out = tuple(d for i, d in enumerate(shape) if i not in axes)
        return [self.input.type.with_shape(out)]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        shape = ranked(self)
        axes = sorted(a % len(shape) for a in self.axes)
        dtype = self.results[0].type.dtype
        acc = accumulator_type(dtype)
        outer = list(index)
        if not self.keepdims:
            for a in axes:
                outer.insert(a, 0)

        def at(rs: list[Dim]) -> list[Dim]:
            where = list(outer)
            for a, r in zip(axes, rs):
                where[a] = r
            return where

        bounds = [(0, shape[a]) for a in axes]
        count = b.cast(b.index_value(product([shape[a] for a in axes]), "i64"), acc)
        if self.kind in ("sum", "mean", "max", "min", "prod"):
            combine = {"sum": "add", "mean": "add", "max": "max", "min": "min",
                       "prod": "mul"}[self.kind]
            total = b.reduce(combine, bounds,
                             lambda rs: b.cast(b.operand(self, 0, at(rs)), acc), dtype=acc)
            if self.kind == "mean":
                total = b.binary("div", total, count)
            return b.cast(total, dtype)
        # var: the mean of squared deviations from the mean (two passes, as numpy).
        mean = b.binary("div", b.reduce(
            "add", bounds, lambda rs: b.cast(b.operand(self, 0, at(rs)), acc), dtype=acc), count)

        def dev(rs: list[Dim]) -> Node:
            d = b.binary("sub", b.cast(b.operand(self, 0, at(rs)), acc), mean)
            return b.binary("mul", d, d)

        return b.cast(b.binary("div", b.reduce("add", bounds, dev, dtype=acc), count), dtype)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x = args[0]
        axes = tuple(a % x.ndim for a in self.axes)
        y = _REDUCE[self.kind](x.astype(np.float64), axis=axes, keepdims=self.keepdims)
        return [np.asarray(y).astype(x.dtype)]


# -- matmul and convolution -----------------------------------------------------------------


@register_op
class MatmulOp(TensorOp):
    """Batched ``a @ b`` (``transpose_b`` for PyTorch's (out, in) weights); fp32 accumulation."""

    name = "tensor.matmul"
    lhs = operand()
    rhs = operand()
    output = result()
    transpose_b = attribute(BOOL, default=False)
    FUSION = "output_fusible"
    PRECISION = "low"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        a, b = ranked(self, 0), ranked(self, 1)
        if len(a) < 2 or len(b) < 2:
            raise ShapeError(
                f"{self.name} needs operands of rank >= 2, got {shape_str(a)}, {shape_str(b)}"
            )
        if self.transpose_b:
            b = b[:-2] + (b[-1], b[-2])
        ctx.unify(a[-1], b[-2], f"{self.name} contraction")
        batch = broadcast_shapes([a[:-2], b[:-2]], ctx, self.name) if (a[:-2] or b[:-2]) else ()
        return [self.lhs.type.with_shape(batch + (a[-2], b[-1]))]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        a_shape, b_shape = ranked(self, 0), ranked(self, 1)
        k_dim = a_shape[-1]
        i, j = index[-2], index[-1]
        batch = index[:-2]
        acc = "f32"

        def term(rs: list[Dim]) -> Node:
            (k,) = rs
            a_idx = _batch_index(batch, a_shape) + [i, k]
            b_idx = _batch_index(batch, b_shape) + ([j, k] if self.transpose_b else [k, j])
            x = b.cast(b.operand(self, 0, a_idx), acc)
            y = b.cast(b.operand(self, 1, b_idx), acc)
            return b.binary("mul", x, y)

        total = b.reduce("add", [(0, k_dim)], term, contraction=True, dtype=acc)
        return b.cast(total, self.results[0].type.dtype)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        a, b = args
        if self.transpose_b:
            b = np.swapaxes(b, -1, -2)
        y = np.matmul(a.astype(np.float32), b.astype(np.float32))
        return [y.astype(a.dtype)]


def _batch_index(batch: list[Dim], shape: tuple[Dim, ...]) -> list[Dim]:
    """A matmul operand's leading (batch) index: broadcast from the result's batch index."""
    lead = shape[:-2]
    tail = batch[len(batch) - len(lead):] if lead else []
    return [0 if d == 1 else i for i, d in zip(tail, lead)]


def spatial_pad_lo(size: Dim, k: int, stride: int, dilation: int, padding: Any,
                   axis: int) -> Dim:
    """Elements of padding before spatial axis ``axis``: explicit, none ("valid"), or Keras's
    "same" split (the smaller half first), symbolic when the size is."""
    if isinstance(padding, list):
        return padding[axis][0]
    if padding != "same":
        return 0
    eff = (k - 1) * dilation + 1
    out = ceildiv(size, stride)
    return floordiv(dmax((out - 1) * stride + eff - size, 0), 2)


PADDING = OneOf((StrAttr(("valid", "same")), PAD_PAIRS))


@register_op
class ConvOp(TensorOp):
    """N-d convolution with a (out, in/groups, *k) weight.

    ``padding`` is "valid", "same" (Keras's split, resolved from the concrete size) or explicit
    ``[[lo, hi], ...]`` per spatial axis. ``layout`` is "nhwc" (channels-last, the default when
    absent) or "nchw" (channels-first, chosen by the ``layout`` pass for targets that want it).
    ``weight_layout`` is "oihw" (PyTorch's (out, in/groups, *k), the default) or "hwio"
    ((*k, in/groups, out): output channels contiguous, as a CPU kernel vectorised over them
    wants; ``pack-weights`` chooses it and the transpose runs once, at load time).
    """

    name = "tensor.conv"
    input = operand()
    weight = operand()
    output = result()
    strides = attribute(POSITIVE_INTS)
    dilation = attribute(POSITIVE_INTS)
    groups = attribute(POSITIVE)
    padding = attribute(PADDING)
    layout = attribute(StrAttr(("nhwc", "nchw")), default="nhwc")
    weight_layout = attribute(StrAttr(("oihw", "hwio")), default="oihw")
    FUSION = "output_fusible"
    PRECISION = "low"

    def oihw(self, w: Any) -> Any:
        """The weight's shape (or index) in PyTorch's order, whatever its layout."""
        w = tuple(w)
        if self.weight_layout == "hwio":
            return (w[-1], w[-2], *w[:-2])
        return w

    def weight_index(self, o: Dim, c: Dim, taps: list[Dim]) -> list[Dim]:
        """Where weight element (o, c, *taps) is in the weight's layout."""
        return [*taps, c, o] if self.weight_layout == "hwio" else [o, c, *taps]

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        x, w = ranked(self, 0), self.oihw(ranked(self, 1))
        first = self.layout == "nchw"
        if first:
            x = (x[0], *x[2:], x[1])
        nd = len(x) - 2
        if len(w) != nd + 2 or len(self.strides) != nd:
            raise ShapeError(f"{self.name}: weight {shape_str(w)} does not fit input "
                             f"{shape_str(x)}")
        ctx.unify(x[-1], w[1] * self.groups, f"{self.name} input channels")
        spatial: list[Dim] = []
        for i in range(nd):
            k = w[2 + i]
            assert isinstance(k, int)
            if isinstance(self.padding, list):
                lo, hi = self.padding[i]
                spatial.append(window_out_dim(x[1 + i] + lo + hi, k, self.strides[i],
                                              self.dilation[i], "valid"))
            else:
                spatial.append(window_out_dim(x[1 + i], k, self.strides[i], self.dilation[i],
                                              self.padding))
        out = (x[0], w[0], *spatial) if first else (x[0], *spatial, w[0])
        return [self.input.type.with_shape(out)]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        x_shape, w_shape = ranked(self, 0), self.oihw(ranked(self, 1))
        first = self.layout == "nchw"
        if first:  # view both as channels-last
            x_shape = (x_shape[0], *x_shape[2:], x_shape[1])
            index = [index[0], *index[2:], index[1]]
        nd = len(x_shape) - 2
        n, out_sp, o = index[0], index[1:-1], index[-1]
        cin = w_shape[1]
        cout_g = floordiv(w_shape[0], self.groups)
        group = floordiv(o, cout_g) if self.groups > 1 else 0
        taps = [int(k) for k in w_shape[2:]]
        pads = [spatial_pad_lo(x_shape[1 + a], taps[a], self.strides[a], self.dilation[a],
                               self.padding, a) for a in range(nd)]

        def term(rs: list[Dim]) -> Node:
            c, ts = rs[0], rs[1:]
            pos = [y * s + t * d - p for y, t, s, d, p in
                   zip(out_sp, ts, self.strides, self.dilation, pads)]
            ch = group * cin + c
            x_idx = [n, *pos, ch]
            if first:
                x_idx = [n, ch, *pos]
            conds = [(q, 0, x_shape[1 + a]) for a, q in enumerate(pos)
                     if not (isinstance(pads[a], int) and pads[a] == 0
                             and self.padding != "same")]
            x = b.operand_guarded(self, 0, x_idx, conds, 0.0) if conds else \
                b.operand(self, 0, x_idx)
            w = b.operand(self, 1, self.weight_index(o, c, list(ts)))
            return b.binary("mul", b.cast(x, "f32"), b.cast(w, "f32"))

        total = b.reduce("add", [(0, cin)] + [(0, k) for k in taps], term, contraction=True,
                         dtype="f32")
        return b.cast(total, self.results[0].type.dtype)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x, w = args
        if self.weight_layout == "hwio":
            nd = w.ndim - 2
            w = np.transpose(w, (nd + 1, nd, *range(nd)))
        if self.layout == "nchw":
            y = self._channels_last(np.moveaxis(x, 1, -1), w)
            return [np.ascontiguousarray(np.moveaxis(y, -1, 1))]
        return [self._channels_last(x, w)]

    def _channels_last(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        nd = x.ndim - 2
        k = list(w.shape[2:])
        if isinstance(self.padding, list):
            pads = [tuple(p) for p in self.padding]
        else:
            pads = spatial_pads(x.shape, k, self.strides, self.dilation, self.padding)
        xp = pad_spatial(x.astype(np.float32), pads)
        win = sliding_windows(xp, k, self.strides, self.dilation)  # (N, *out, C, *k)
        g = self.groups
        cin = x.shape[-1] // g
        cout = w.shape[0] // g
        outs = []
        letters = "defghi"[:nd]  # spatial axes; n, c and o name batch and channels
        for gi in range(g):
            wg = w[gi * cout : (gi + 1) * cout].astype(np.float32)
            xg = win[(Ellipsis, slice(gi * cin, (gi + 1) * cin), *([slice(None)] * nd))]
            outs.append(
                np.einsum(
                    f"n{letters}c{letters.upper()},oc{letters.upper()}->n{letters}o",
                    xg,
                    wg,
                    optimize=True,
                )
            )
        return np.concatenate(outs, axis=-1).astype(x.dtype)


# -- data movement ---------------------------------------------------------------------------


@register_op
class ReshapeOp(TensorOp):
    """Reshape to the result type's shape (which may be symbolic)."""

    name = "tensor.reshape"
    input = operand()
    output = result()
    FUSION = "injective"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        out = self.results[0].type
        if out.shape is None:
            raise ShapeError(f"{self.name} needs its result type written out")
        return [out]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        out = self.results[0].type.shape
        src = ranked(self)
        assert out is not None
        flat = flatten(index, out)
        return b.operand(self, 0, [b.simplify(d) for d in unflatten(flat, src)])

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [args[0].reshape(concrete(self.results[0].type, ctx))]

    def canonicalize(self, rewriter: Rewriter) -> bool:
        x = self.input
        if replace_with(self, x, rewriter):
            return True
        inner = getattr(x, "op", None)
        if isinstance(inner, ReshapeOp):
            rewriter.set_operand(self, 0, inner.input)  # reshape(reshape(y)) == reshape(y)
            return True
        return False


@register_op
class TransposeOp(TensorOp):
    name = "tensor.transpose"
    input = operand()
    output = result()
    perm = attribute(ListAttr(IntAttr(0)))
    FUSION = "injective"

    def verify_extra(self) -> list[str]:
        if sorted(self.perm) != list(range(len(self.perm))):
            return ["'perm' must be a permutation of 0..rank-1"]
        return []

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        x = ranked(self)
        p = self.perm
        if len(p) != len(x):
            raise ShapeError(f"{self.name}: perm {p} does not fit rank {len(x)}")
        return [self.input.type.with_shape(tuple(x[i] for i in p))]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        src: list[Dim] = [0] * len(self.perm)
        for j, p in enumerate(self.perm):
            src[p] = index[j]
        return b.operand(self, 0, src)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.transpose(args[0], self.perm)]

    def canonicalize(self, rewriter: Rewriter) -> bool:
        perm = self.perm
        if perm == list(range(len(perm))):
            return replace_with(self, self.input, rewriter)
        inner = getattr(self.input, "op", None)
        if isinstance(inner, TransposeOp):
            # transpose(transpose(y, p), q) == transpose(y, p[q])
            rewriter.set_attr(self, "perm", [inner.perm[i] for i in perm])
            rewriter.set_operand(self, 0, inner.input)
            return True
        return False


@register_op
class BroadcastOp(TensorOp):
    """Broadcast to the result type's shape (numpy rules)."""

    name = "tensor.broadcast"
    input = operand()
    output = result()
    FUSION = "broadcast"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        out = self.results[0].type
        if out.shape is None:
            raise ShapeError(f"{self.name} needs its result type written out")
        broadcast_shapes([ranked(self), out.shape], ctx, self.name)
        return [out]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        return b.operand(self, 0, broadcast_index(index, self.input))

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.broadcast_to(args[0], concrete(self.results[0].type, ctx)).copy()]

    def canonicalize(self, rewriter: Rewriter) -> bool:
        return replace_with(self, self.input, rewriter)


@register_op
class SliceOp(TensorOp):
    """``x[..., start:start + size, ...]`` on ``axis``.

    ``size`` is an int attribute, or absent: then the result type gives it (it may be
    symbolic, e.g. the first ``seq`` rows of a positional table).
    """

    name = "tensor.slice"
    input = operand()
    output = result()
    axis = attribute(IntAttr())
    start = attribute(IntAttr(0))
    size = opt_attribute(IntAttr(0))
    FUSION = "injective"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        x = ranked(self)
        ax = check_axes([self.axis], len(x), self.name)[0]
        if self.size is not None:
            size: Dim = self.size
        else:
            out = self.results[0].type.shape
            if out is None:
                raise ShapeError(f"{self.name} needs a 'size' or its result type written out")
            size = out[ax]
        return [self.input.type.with_shape(x[:ax] + (size,) + x[ax + 1 :])]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        ax = self.axis % len(index)
        src = list(index)
        src[ax] = src[ax] + self.start
        return b.operand(self, 0, src)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x = args[0]
        ax = self.axis % x.ndim
        size = self.size
        if size is None:
            size = concrete(self.results[0].type, ctx)[ax]
        return [np.take(x, np.arange(self.start, self.start + size), axis=ax)]


@register_op
class ConcatOp(TensorOp):
    name = "tensor.concat"
    inputs = var_operand()
    output = result()
    axis = attribute(IntAttr())
    FUSION = "injective"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        shapes = [ranked(self, i) for i in range(len(self.operands))]
        if not shapes:
            raise ShapeError(f"{self.name} needs at least one operand")
        ax = check_axes([self.axis], len(shapes[0]), self.name)[0]
        out = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(out):
                raise ShapeError(f"{self.name}: ranks differ")
            for i, d in enumerate(s):
                out[i] = out[i] + d if i == ax else ctx.unify(out[i], d, f"{self.name} axis {i}")
        return [self.operands[0].type.with_shape(tuple(out))]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        ax = self.axis % len(index)
        pieces: list[tuple[Dim, Dim, int]] = []
        start: Dim = 0
        for k, v in enumerate(self.operands):
            assert v.type.shape is not None
            pieces.append((start, start + v.type.shape[ax], k))
            start = start + v.type.shape[ax]
        value: Node | None = None
        for lo, hi, k in reversed(pieces):
            src = list(index)
            src[ax] = index[ax] - lo
            part = b.operand_guarded(self, k, src, [(index[ax], lo, hi)], 0.0)
            value = part if value is None else b.select(
                b.guard([(index[ax], lo, hi)]), part, value)
        assert value is not None
        return value

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.concatenate(args, axis=self.axis)]


@register_op
class GatherOp(TensorOp):
    """``table[indices]`` along axis 0 (embedding lookup)."""

    name = "tensor.gather"
    table = operand()
    indices = operand(INT_TENSOR)
    output = result()
    FUSION = "injective"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        table, idx = ranked(self, 0), ranked(self, 1)
        return [self.table.type.with_shape(idx + table[1:])]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        table, idx = ranked(self, 0), ranked(self, 1)
        token = b.operand(self, 1, list(index[:len(idx)]))
        row = b.bind(token, 0, table[0])  # clamped: no index reads outside the table
        return b.operand(self, 0, [row, *index[len(idx):]])

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        table, idx = args
        if idx.size and (idx.min() < 0 or idx.max() >= table.shape[0]):
            raise IndexError(f"index out of range [0, {table.shape[0]}) in {self.name}")
        return [table[idx]]


@register_op
class AttentionOp(TensorOp):
    """Scaled dot-product attention ``softmax(q k^T * scale + mask) v`` on (..., seq, d).

    Kept whole so a backend can emit one fused kernel for it; ``causal`` masks the future,
    top-left aligned (query i sees keys j <= i) as torch's ``is_causal`` and Keras do.
    """

    name = "tensor.attention"
    query = operand()
    key = operand()
    value = operand()
    output = result()
    scale = opt_attribute(NUMBER)
    causal = attribute(BOOL, default=False)
    FUSION = "opaque"
    PRECISION = "low"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        q, k, v = (ranked(self, i) for i in range(3))
        ctx.unify(q[-1], k[-1], f"{self.name} key dim")
        ctx.unify(k[-2], v[-2], f"{self.name} key/value length")
        return [self.query.type.with_shape(q[:-1] + (v[-1],))]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        """Softmax attention for one output element, with a max-shifted softmax: the row's
        max and sum depend only on the query position, so the loop placement computes them
        once per row; the scores are recomputed for each output feature (the price of
        computing element by element)."""
        q_shape, k_shape, v_shape = (ranked(self, i) for i in range(3))
        lead, i, f = index[:-2], index[-2], index[-1]
        depth, keys = q_shape[-1], k_shape[-2]
        scale = self.scale
        if scale is not None:
            scale_node = b.const(scale, "f32")
        elif isinstance(depth, int):
            scale_node = b.const(1.0 / math.sqrt(depth), "f32")
        else:  # a symbolic depth: 1/sqrt(d) from its size at run time
            scale_node = b.unary("rsqrt", b.index_value(depth, "f32"))

        def lead_of(shape: tuple[Dim, ...]) -> list[Dim]:
            return _batch_index(list(lead), shape)

        def score(j: Dim) -> Node:
            def term(rs: list[Dim]) -> Node:
                (e,) = rs
                x = b.cast(b.operand(self, 0, lead_of(q_shape) + [i, e]), "f32")
                y = b.cast(b.operand(self, 1, lead_of(k_shape) + [j, e]), "f32")
                return b.binary("mul", x, y)

            s = b.binary("mul", b.reduce("add", [(0, depth)], term, contraction=True), scale_node)
            if self.causal:  # top-left aligned: query i sees keys j <= i
                s = b.select(b.guard([(j, 0, i + 1)]), s, b.const(float("-inf"), "f32"))
            return s

        top = b.reduce("max", [(0, keys)], lambda rs: score(rs[0]))
        total = b.reduce("add", [(0, keys)],
                         lambda rs: b.unary("exp", b.binary("sub", score(rs[0]), top)))

        def weighted(rs: list[Dim]) -> Node:
            (j,) = rs
            p = b.unary("exp", b.binary("sub", score(j), top))
            val = b.cast(b.operand(self, 2, lead_of(v_shape) + [j, f]), "f32")
            return b.binary("mul", p, val)

        out = b.binary("div", b.reduce("add", [(0, keys)], weighted), total)
        return b.cast(out, self.results[0].type.dtype)

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        q, k, v = (a.astype(np.float32) for a in args)
        scale = self.scale or 1.0 / math.sqrt(q.shape[-1])
        s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
        if self.causal:
            lq, lk = s.shape[-2], s.shape[-1]
            # Top-left aligned, as torch's is_causal and Keras: query i sees keys j <= i.
            s = np.where(np.tril(np.ones((lq, lk), bool)), s, -np.inf)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p = p / p.sum(axis=-1, keepdims=True)
        return [np.matmul(p, v).astype(args[0].dtype)]
