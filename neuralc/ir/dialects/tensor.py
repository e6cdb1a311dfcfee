"""The tensor dialect: the primitive tensor ops that graph ops lower to.

Each op kind is declared once here with its attributes' checks, its symbolic shape rule, its
fusion kind (elementwise, broadcast, injective, reduction, output-fusible, opaque), its
precision policy, and its numpy reference semantics (what the reference interpreter runs and
what every backend must reproduce). Tensors are channels-last where a layout matters (conv,
pool), with weights in PyTorch's layouts, as in the graph dialect.

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
from neuralc.ir.core import Op
from neuralc.ir.dims import Dim, evaluate
from neuralc.ir.opdef import FusionKind, OpDef, PrecisionPolicy, register_op
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.ir.windows import pad_spatial, sliding_windows, spatial_pads, window_out_dim


class EvalContext(Protocol):
    """What reference evaluation needs besides operand arrays."""

    sizes: dict[str, int]
    weights: dict[str, np.ndarray]


def concrete(t: TensorType, ctx: EvalContext) -> tuple[int, ...]:
    assert t.shape is not None
    return tuple(evaluate(d, ctx.sizes) for d in t.shape)


def _np_dtype(dtype: str) -> Any:
    # bf16 values are held in float32 arrays, rounded to bf16 by tensor.cast.
    return {
        "f32": np.float32,
        "f16": np.float16,
        "bf16": np.float32,
        "f64": np.float64,
        "i64": np.int64,
        "i32": np.int32,
        "i8": np.int8,
        "i1": np.bool_,
    }[dtype]


def _ranked(op: Op, i: int = 0) -> tuple[Dim, ...]:
    t = op.operands[i].type
    if t.shape is None:
        raise ShapeError(f"{op.name}: operand {i} has no inferred shape")
    return t.shape


def _axes(axes: list[int], rank: int, what: str) -> list[int]:
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


def fill_value(v: Any) -> float | None:
    """The value of a ``tensor.constant {value = c}`` fill, or None for anything else."""
    owner = getattr(v, "op", None)
    if owner is not None and owner.name == "tensor.constant" and "value" in owner.attributes:
        return float(owner.attributes["value"])
    return None


def _replace_with(op: Op, value: Any, rewriter: Any) -> bool:
    """Replace ``op``'s single result by ``value`` when the types agree."""
    if value.type != op.results[0].type:
        return False
    rewriter.replace_op(op, [value])
    return True


def _fold_to_fill(op: Op, value: float, rewriter: Any) -> bool:
    t = op.results[0].type
    const = Op("tensor.constant", [], [t], {"value": value}, location=op.location)
    assert op.parent is not None
    op.parent.insert_before(op, const)
    rewriter.replace_op(op, [const.result])
    return True


class TensorOpDef(OpDef):
    """Common base: tensor ops keep the element type of their first operand unless told."""

    fusion_kind: ClassVar[FusionKind] = "elementwise"
    precision: ClassVar[PrecisionPolicy] = "follow"

    def result_dtype(self, op: Op) -> str:
        return op.operands[0].type.dtype


# -- constants -----------------------------------------------------------------------------


class ConstantOp(TensorOpDef):
    """A weight by name (``weight = "conv2d.weight"``) or a scalar fill (``value = 0.5``)."""

    name = "tensor.constant"
    num_operands = 0
    fusion_kind = "none"

    def verify(self, op: Op) -> list[str]:
        has_w, has_v = "weight" in op.attributes, "value" in op.attributes
        if has_w == has_v:
            return ["needs exactly one of 'weight' (a name) and 'value' (a number)"]
        if op.results and op.results[0].type.shape is None:
            return ["a constant needs a ranked result type"]
        return []

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        return [op.results[0].type]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        t = op.results[0].type
        if "weight" in op.attributes:
            return [np.asarray(ctx.weights[op.attributes["weight"]]).astype(_np_dtype(t.dtype))]
        return [np.full(concrete(t, ctx), op.attributes["value"], dtype=_np_dtype(t.dtype))]


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


class UnaryOp(TensorOpDef):
    """``fn(x)`` elementwise: math functions and every activation (``alpha`` optional)."""

    name = "tensor.unary"
    num_operands = 1

    def verify(self, op: Op) -> list[str]:
        fn = op.attributes.get("fn")
        if fn in _NOT_ELEMENTWISE:
            return [f"{fn} is not elementwise; lower it to reductions (TensorBuilder.activation)"]
        if fn not in _MATH and fn not in activation_names():
            return [f"unknown function {fn!r}"]
        return []

    def policy(self, op: Op) -> PrecisionPolicy:
        return "never" if op.attributes.get("fn") in _NEVER_LOW else "follow"

    def canonicalize(self, op: Op, rewriter: Any) -> bool:
        fn = op.attributes["fn"]
        if fn in ("linear", "identity", "none"):
            return _replace_with(op, op.operands[0], rewriter)
        c = fill_value(op.operands[0])
        if c is not None and op.results[0].type.dtype == "f32":
            y = self.evaluate(op, [np.array(c, np.float32)], None)[0]
            return _fold_to_fill(op, float(y), rewriter)
        return False

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        return [op.operands[0].type.with_shape(_ranked(op))]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        fn, x = op.attributes["fn"], args[0]
        if fn in _MATH:
            y = np.asarray(_MATH[fn](x.astype(np.float64))).astype(np.float64)
        else:
            y = apply_activation(fn, x.astype(np.float64), op.attributes.get("alpha"))
        return [y.astype(x.dtype)]


_BINARY: dict[str, Any] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "pow": np.power,
}


class BinaryOp(TensorOpDef):
    """``fn(a, b)`` elementwise with numpy broadcasting."""

    name = "tensor.binary"
    num_operands = 2

    def verify(self, op: Op) -> list[str]:
        fn = op.attributes.get("fn")
        return [] if fn in _BINARY else [f"unknown function {fn!r}"]

    def fusion(self, op: Op) -> FusionKind:
        a, b = (v.type.shape for v in op.operands)
        return "elementwise" if a == b else "broadcast"

    # x + 0, x - 0, x * 1, x / 1 (when the result keeps x's type); c1 op c2 folds.
    _RIGHT_IDENTITY: ClassVar[dict[str, float]] = {"add": 0.0, "sub": 0.0, "mul": 1.0, "div": 1.0}

    def canonicalize(self, op: Op, rewriter: Any) -> bool:
        fn = op.attributes["fn"]
        a, b = op.operands
        ca, cb = fill_value(a), fill_value(b)
        if ca is not None and cb is not None and op.results[0].type.dtype == "f32":
            y = self.evaluate(op, [np.array(ca, np.float32), np.array(cb, np.float32)], None)[0]
            return _fold_to_fill(op, float(y), rewriter)
        if cb is not None and self._RIGHT_IDENTITY.get(fn) == cb:
            return _replace_with(op, a, rewriter)
        if ca is not None and fn in ("add", "mul") and self._RIGHT_IDENTITY[fn] == ca:
            return _replace_with(op, b, rewriter)
        return False

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        shape = broadcast_shapes([_ranked(op, 0), _ranked(op, 1)], ctx, op.name)
        return [op.operands[0].type.with_shape(shape)]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [_BINARY[op.attributes["fn"]](args[0], args[1]).astype(args[0].dtype)]


class SelectOp(TensorOpDef):
    """``cond ? a : b`` elementwise with broadcasting; ``cond`` is i1."""

    name = "tensor.select"
    num_operands = 3

    def result_dtype(self, op: Op) -> str:
        return op.operands[1].type.dtype

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        shape = broadcast_shapes([_ranked(op, i) for i in range(3)], ctx, op.name)
        return [op.operands[1].type.with_shape(shape)]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.where(args[0].astype(bool), args[1], args[2]).astype(args[1].dtype)]


def round_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 precision (round to nearest even), kept in float32."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) & np.uint32(0xFFFF0000)).view(np.float32)
    return np.where(np.isnan(x), x, out).astype(np.float32)


class CastOp(TensorOpDef):
    """Element-type conversion (``to = "f16"``); bf16 is emulated by rounding float32."""

    name = "tensor.cast"
    num_operands = 1
    precision = "never"

    def verify(self, op: Op) -> list[str]:
        to = op.attributes.get("to")
        return (
            [] if to in ("f32", "f16", "bf16", "f64", "i64", "i32", "i1") else [f"bad type {to!r}"]
        )

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        return [TensorType(_ranked(op), op.attributes["to"])]

    def canonicalize(self, op: Op, rewriter: Any) -> bool:
        # A cast to the type a value already has does nothing.
        return _replace_with(op, op.operands[0], rewriter)

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        to = op.attributes["to"]
        if to == "bf16":
            return [round_bf16(args[0].astype(np.float32))]
        return [args[0].astype(_np_dtype(to))]


# -- reductions ----------------------------------------------------------------------------

_REDUCE = {
    "sum": np.sum,
    "max": np.max,
    "min": np.min,
    "mean": np.mean,
    "prod": np.prod,
    "var": lambda x, axis, keepdims: np.var(x, axis=axis, keepdims=keepdims),
}


class ReduceOp(TensorOpDef):
    """``kind`` (sum, max, min, mean, prod, var: population variance) over ``axes``."""

    name = "tensor.reduce"
    num_operands = 1
    fusion_kind = "reduction"
    precision = "never"

    def verify(self, op: Op) -> list[str]:
        a = op.attributes
        errs = []
        if a.get("kind") not in _REDUCE:
            errs.append(f"unknown reduction {a.get('kind')!r}")
        if not (isinstance(a.get("axes"), list) and a["axes"]):
            errs.append("'axes' must be a non-empty list")
        if not isinstance(a.get("keepdims"), bool):
            errs.append("'keepdims' must be a bool")
        return errs

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        shape = _ranked(op)
        axes = set(_axes(op.attributes["axes"], len(shape), op.name))
        if op.attributes["keepdims"]:
            out = tuple(1 if i in axes else d for i, d in enumerate(shape))
        else:
            out = tuple(d for i, d in enumerate(shape) if i not in axes)
        return [op.operands[0].type.with_shape(out)]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x = args[0]
        axes = tuple(a % x.ndim for a in op.attributes["axes"])
        y = _REDUCE[op.attributes["kind"]](
            x.astype(np.float64), axis=axes, keepdims=op.attributes["keepdims"]
        )
        return [np.asarray(y).astype(x.dtype)]


# -- matmul and convolution -----------------------------------------------------------------


class MatmulOp(TensorOpDef):
    """Batched ``a @ b`` (``transpose_b`` for PyTorch's (out, in) weights); fp32 accumulation."""

    name = "tensor.matmul"
    num_operands = 2
    fusion_kind = "output_fusible"
    precision = "low"

    def verify(self, op: Op) -> list[str]:
        ok = isinstance(op.attributes.get("transpose_b", False), bool)
        return [] if ok else ["'transpose_b' must be a bool"]

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        a, b = _ranked(op, 0), _ranked(op, 1)
        if len(a) < 2 or len(b) < 2:
            raise ShapeError(
                f"{op.name} needs operands of rank >= 2, got {shape_str(a)}, {shape_str(b)}"
            )
        if op.attributes.get("transpose_b", False):
            b = b[:-2] + (b[-1], b[-2])
        ctx.unify(a[-1], b[-2], f"{op.name} contraction")
        batch = broadcast_shapes([a[:-2], b[:-2]], ctx, op.name) if (a[:-2] or b[:-2]) else ()
        return [op.operands[0].type.with_shape(batch + (a[-2], b[-1]))]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        a, b = args
        if op.attributes.get("transpose_b", False):
            b = np.swapaxes(b, -1, -2)
        y = np.matmul(a.astype(np.float32), b.astype(np.float32))
        return [y.astype(a.dtype)]


class ConvOp(TensorOpDef):
    """N-d convolution with a (out, in/groups, *k) weight.

    ``padding`` is "valid", "same" (Keras's split, resolved from the concrete size) or explicit
    ``[[lo, hi], ...]`` per spatial axis. ``layout`` is "nhwc" (channels-last, the default when
    absent) or "nchw" (channels-first, chosen by the ``layout`` pass for targets that want it).
    """

    name = "tensor.conv"
    num_operands = 2
    fusion_kind = "output_fusible"
    precision = "low"

    def verify(self, op: Op) -> list[str]:
        a = op.attributes
        errs = []
        for k in ("strides", "dilation"):
            if not (
                isinstance(a.get(k), list) and all(isinstance(v, int) and v >= 1 for v in a[k])
            ):
                errs.append(f"'{k}' must be a list of positive ints")
        if not (isinstance(a.get("groups"), int) and a["groups"] >= 1):
            errs.append("'groups' must be a positive int")
        p = a.get("padding")
        if not (
            p in ("valid", "same")
            or (isinstance(p, list) and all(isinstance(q, list) and len(q) == 2 for q in p))
        ):
            errs.append('\'padding\' must be "valid", "same" or [[lo, hi], ...]')
        if a.get("layout", "nhwc") not in ("nhwc", "nchw"):
            errs.append("'layout' must be \"nhwc\" or \"nchw\"")
        return errs

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        x, w = _ranked(op, 0), _ranked(op, 1)
        first = op.attributes.get("layout", "nhwc") == "nchw"
        if first:
            x = (x[0], *x[2:], x[1])
        nd = len(x) - 2
        a = op.attributes
        if len(w) != nd + 2 or len(a["strides"]) != nd:
            raise ShapeError(f"{op.name}: weight {shape_str(w)} does not fit input {shape_str(x)}")
        ctx.unify(x[-1], w[1] * a["groups"], f"{op.name} input channels")
        spatial: list[Dim] = []
        for i in range(nd):
            k = w[2 + i]
            assert isinstance(k, int)
            if isinstance(a["padding"], list):
                lo, hi = a["padding"][i]
                spatial.append(
                    window_out_dim(
                        x[1 + i] + lo + hi, k, a["strides"][i], a["dilation"][i], "valid"
                    )
                )
            else:
                spatial.append(
                    window_out_dim(x[1 + i], k, a["strides"][i], a["dilation"][i], a["padding"])
                )
        out = (x[0], w[0], *spatial) if first else (x[0], *spatial, w[0])
        return [op.operands[0].type.with_shape(out)]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x, w = args
        a = op.attributes
        if a.get("layout", "nhwc") == "nchw":
            y = self._channels_last(np.moveaxis(x, 1, -1), w, a)
            return [np.ascontiguousarray(np.moveaxis(y, -1, 1))]
        return [self._channels_last(x, w, a)]

    @staticmethod
    def _channels_last(x: np.ndarray, w: np.ndarray, a: dict) -> np.ndarray:
        nd = x.ndim - 2
        k = list(w.shape[2:])
        if isinstance(a["padding"], list):
            pads = [tuple(p) for p in a["padding"]]
        else:
            pads = spatial_pads(x.shape, k, a["strides"], a["dilation"], a["padding"])
        xp = pad_spatial(x.astype(np.float32), pads)
        win = sliding_windows(xp, k, a["strides"], a["dilation"])  # (N, *out, C, *k)
        g = a["groups"]
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


class ReshapeOp(TensorOpDef):
    """Reshape to the result type's shape (which may be symbolic)."""

    name = "tensor.reshape"
    num_operands = 1
    fusion_kind = "injective"

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        out = op.results[0].type
        if out.shape is None:
            raise ShapeError(f"{op.name} needs its result type written out")
        return [out]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [args[0].reshape(concrete(op.results[0].type, ctx))]

    def canonicalize(self, op: Op, rewriter: Any) -> bool:
        x = op.operands[0]
        if _replace_with(op, x, rewriter):
            return True
        inner = getattr(x, "op", None)
        if inner is not None and inner.name == "tensor.reshape":
            op.set_operand(0, inner.operands[0])  # reshape(reshape(y)) == reshape(y)
            return True
        return False


class TransposeOp(TensorOpDef):
    name = "tensor.transpose"
    num_operands = 1
    fusion_kind = "injective"

    def verify(self, op: Op) -> list[str]:
        p = op.attributes.get("perm")
        if not (isinstance(p, list) and sorted(p) == list(range(len(p)))):
            return ["'perm' must be a permutation of 0..rank-1"]
        return []

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        x = _ranked(op)
        p = op.attributes["perm"]
        if len(p) != len(x):
            raise ShapeError(f"{op.name}: perm {p} does not fit rank {len(x)}")
        return [op.operands[0].type.with_shape(tuple(x[i] for i in p))]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.transpose(args[0], op.attributes["perm"])]

    def canonicalize(self, op: Op, rewriter: Any) -> bool:
        perm = op.attributes["perm"]
        if perm == list(range(len(perm))):
            return _replace_with(op, op.operands[0], rewriter)
        inner = getattr(op.operands[0], "op", None)
        if inner is not None and inner.name == "tensor.transpose":
            # transpose(transpose(y, p), q) == transpose(y, p[q])
            op.attributes["perm"] = [inner.attributes["perm"][i] for i in perm]
            op.set_operand(0, inner.operands[0])
            return True
        return False


class BroadcastOp(TensorOpDef):
    """Broadcast to the result type's shape (numpy rules)."""

    name = "tensor.broadcast"
    num_operands = 1
    fusion_kind = "broadcast"

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        out = op.results[0].type
        if out.shape is None:
            raise ShapeError(f"{op.name} needs its result type written out")
        broadcast_shapes([_ranked(op), out.shape], ctx, op.name)
        return [out]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.broadcast_to(args[0], concrete(op.results[0].type, ctx)).copy()]

    def canonicalize(self, op: Op, rewriter: Any) -> bool:
        return _replace_with(op, op.operands[0], rewriter)


class SliceOp(TensorOpDef):
    """``x[..., start:start + size, ...]`` on ``axis``.

    ``size`` is an int attribute, or absent: then the result type gives it (it may be
    symbolic, e.g. the first ``seq`` rows of a positional table).
    """

    name = "tensor.slice"
    num_operands = 1
    fusion_kind = "injective"

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        x = _ranked(op)
        ax = _axes([op.attributes["axis"]], len(x), op.name)[0]
        if "size" in op.attributes:
            size: Dim = op.attributes["size"]
        else:
            out = op.results[0].type.shape
            if out is None:
                raise ShapeError(f"{op.name} needs a 'size' or its result type written out")
            size = out[ax]
        return [op.operands[0].type.with_shape(x[:ax] + (size,) + x[ax + 1 :])]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        x = args[0]
        ax = op.attributes["axis"] % x.ndim
        s = op.attributes["start"]
        size = op.attributes.get("size")
        if size is None:
            size = concrete(op.results[0].type, ctx)[ax]
        return [np.take(x, np.arange(s, s + size), axis=ax)]


class ConcatOp(TensorOpDef):
    name = "tensor.concat"
    num_operands = None
    fusion_kind = "injective"

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        shapes = [_ranked(op, i) for i in range(len(op.operands))]
        ax = _axes([op.attributes["axis"]], len(shapes[0]), op.name)[0]
        out = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(out):
                raise ShapeError(f"{op.name}: ranks differ")
            for i, d in enumerate(s):
                out[i] = out[i] + d if i == ax else ctx.unify(out[i], d, f"{op.name} axis {i}")
        return [op.operands[0].type.with_shape(tuple(out))]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.concatenate(args, axis=op.attributes["axis"])]


class GatherOp(TensorOpDef):
    """``table[indices]`` along axis 0 (embedding lookup)."""

    name = "tensor.gather"
    num_operands = 2
    fusion_kind = "injective"

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        table, idx = _ranked(op, 0), _ranked(op, 1)
        return [op.operands[0].type.with_shape(idx + table[1:])]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        table, idx = args
        if idx.size and (idx.min() < 0 or idx.max() >= table.shape[0]):
            raise IndexError(f"index out of range [0, {table.shape[0]}) in {op.name}")
        return [table[idx]]


class AttentionOp(TensorOpDef):
    """Scaled dot-product attention ``softmax(q k^T * scale + mask) v`` on (..., seq, d).

    Kept whole so a backend can emit one fused kernel for it; ``causal`` masks the future,
    top-left aligned (query i sees keys j <= i) as torch's ``is_causal`` and Keras do.
    """

    name = "tensor.attention"
    num_operands = 3
    fusion_kind = "opaque"
    precision = "low"

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        q, k, v = (_ranked(op, i) for i in range(3))
        ctx.unify(q[-1], k[-1], f"{op.name} key dim")
        ctx.unify(k[-2], v[-2], f"{op.name} key/value length")
        return [op.operands[0].type.with_shape(q[:-1] + (v[-1],))]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        q, k, v = (a.astype(np.float32) for a in args)
        scale = op.attributes.get("scale") or 1.0 / math.sqrt(q.shape[-1])
        s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
        if op.attributes.get("causal", False):
            lq, lk = s.shape[-2], s.shape[-1]
            # Top-left aligned, as torch's is_causal and Keras: query i sees keys j <= i.
            s = np.where(np.tril(np.ones((lq, lk), bool)), s, -np.inf)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p = p / p.sum(axis=-1, keepdims=True)
        return [np.matmul(p, v).astype(args[0].dtype)]


for _cls in (
    ConstantOp,
    UnaryOp,
    BinaryOp,
    SelectOp,
    CastOp,
    ReduceOp,
    MatmulOp,
    ConvOp,
    ReshapeOp,
    TransposeOp,
    BroadcastOp,
    SliceOp,
    ConcatOp,
    GatherOp,
    AttentionOp,
):
    register_op(_cls())
