"""Merge layers (Add, Subtract, Multiply, Average, Maximum, Concatenate) and ResidualConnection.

Elementwise merges take inputs of one rank and broadcast axes of size 1 as Keras does (so a
squeeze-and-excitation gate ``(batch, 1, 1, c)`` multiplies a ``(batch, h, w, c)`` map); every
other pair of dims must be equal and is unified through the shape context, which makes equal
symbols equal module-wide. A residual ``x + body(x)`` admits no broadcasting: the body must
keep the shape.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import TYPE_CHECKING

import numpy as np

from neuralc.ir.activations import apply_activation
from neuralc.ir.dims import Dim
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import (
    ActivationName,
    Axis,
    FlopRule,
    LayerSpec,
    Param,
    Reference,
    ShapeRule,
    register,
)
from neuralc.layers.common import normalize_axis, per_sample

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value

_BRANCH_HINT = "give every branch the same shape, or add a layer that makes it so"


def _shapes(ins: list[TensorType], layer: str) -> list[tuple[Dim, ...]]:
    shapes = []
    for t in ins:
        assert t.shape is not None
        shapes.append(t.shape)
    dtypes = {t.dtype for t in ins}
    if len(dtypes) > 1:
        raise ShapeError(f"{layer} inputs have different element types: "
                         + ", ".join(t.dtype for t in ins))
    ranks = {len(s) for s in shapes}
    if len(ranks) > 1:
        raise ShapeError(
            f"{layer} inputs have different ranks: " + ", ".join(shape_str(s) for s in shapes),
            _BRANCH_HINT,
        )
    return shapes


def _unify(ctx: ShapeContext, a: Dim, b: Dim, layer: str, axis: int,
           shapes: list[tuple[Dim, ...]]) -> Dim:
    """``ctx.unify`` with the merge-level message when the dims cannot be equal."""
    mismatch = (f"{layer} inputs have incompatible shapes "
                + ", ".join(shape_str(s) for s in shapes) + f" (axis {axis})")
    if isinstance(a, int) and isinstance(b, int):
        if a != b:
            raise ShapeError(mismatch, _BRANCH_HINT)
        return a
    try:
        return ctx.unify(a, b, f"{layer} input axis {axis}")
    except ShapeError as e:
        raise ShapeError(mismatch, e.message) from None


def _elementwise_shape(layer: str) -> ShapeRule:
    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        shapes = _shapes(ins, layer)
        out = list(shapes[0])
        for s in shapes[1:]:
            for i, d in enumerate(s):
                if i > 0 and d == 1:
                    continue
                if i > 0 and out[i] == 1:
                    out[i] = d
                    continue
                out[i] = _unify(ctx, out[i], d, layer, i, shapes)
        return [ins[0].with_shape(tuple(out))]

    return rule


def _elementwise_reference(fn: Callable[[list[np.ndarray]], np.ndarray]) -> Reference:
    def reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [fn([x.astype(np.float64) for x in xs]).astype(xs[0].dtype)]

    return reference


def _chain(b: TensorBuilder, fn: str, xs: list[Value]) -> Value:
    """``fn`` folded left over the inputs, as the references' ``functools.reduce``; size-1 axes
    broadcast in ``tensor.binary`` as in the merge."""
    return reduce(lambda acc, x: b.binary(fn, acc, x), xs[1:], xs[0])


def _average_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """The sum divided by the number of inputs (a division, as the reference)."""
    total = _chain(b, "add", xs)
    return [b.binary("div", total, b.scalar(float(len(xs)), total.type.dtype))]


_LOWER: dict[str, Callable[[TensorBuilder, dict, list[Value]], list[Value]]] = {
    "Add": lambda b, attrs, xs: [_chain(b, "add", xs)],
    "Subtract": lambda b, attrs, xs: [b.binary("sub", xs[0], xs[1])],
    "Multiply": lambda b, attrs, xs: [_chain(b, "mul", xs)],
    "Average": _average_lower,
    "Maximum": lambda b, attrs, xs: [_chain(b, "max", xs)],
}


def _elementwise_flops(extra: int) -> FlopRule:
    """``len(inputs) - 1 + extra`` operations per output element."""

    def flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
        assert outs[0].shape is not None
        return (len(ins) - 1 + extra) * per_sample(outs[0].shape)

    return flops


_ELEMENTWISE: list[tuple[str, int | None, Callable[[list[np.ndarray]], np.ndarray], int, str]] = [
    ("Add", None, lambda xs: reduce(np.add, xs), 0, "Sums its inputs elementwise."),
    ("Subtract", 2, lambda xs: xs[0] - xs[1], 0,
     "Subtracts the second input from the first, elementwise."),
    ("Multiply", None, lambda xs: reduce(np.multiply, xs), 0,
     "Multiplies its inputs elementwise (size-1 axes broadcast, e.g. a gate)."),
    ("Average", None, lambda xs: reduce(np.add, xs) / len(xs), 1,
     "Averages its inputs elementwise."),
    ("Maximum", None, lambda xs: reduce(np.maximum, xs), 0,
     "Elementwise maximum of its inputs."),
]

_EXAMPLES = {
    "Add": "Add { { Conv2D(64, 3, padding=\"same\") } { Conv2D(64, 1) } }",
    "Subtract": "Subtract { { Dense(64) } { Dense(64) } }",
    "Multiply": "Multiply { { } { GlobalAveragePooling2D(keepdims=true) Dense(64, \"sigmoid\") } }",
    "Average": "Average { { Dense(10) } { Dense(10) } }",
    "Maximum": "Maximum { { Dense(32) } { Dense(32) } }",
}

for _name, _arity, _fn, _extra, _doc in _ELEMENTWISE:
    register(LayerSpec(
        name=_name, params=(), positional=(),
        shape=_elementwise_shape(_name), reference=_elementwise_reference(_fn),
        flops=_elementwise_flops(_extra), kind="merge", arity=_arity, lower=_LOWER[_name],
        doc=_doc, example=_EXAMPLES[_name],
    ))


# -- Concatenate -------------------------------------------------------------------------------


def _concat_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    shapes = _shapes(ins, "Concatenate")
    axis = normalize_axis(attrs["axis"], len(shapes[0]), "Concatenate")
    out = list(shapes[0])
    for s in shapes[1:]:
        for i, d in enumerate(s):
            if i == axis:
                out[i] = out[i] + d
            else:
                out[i] = _unify(ctx, out[i], d, "Concatenate", i, shapes)
    return [ins[0].with_shape(tuple(out))]


def _concat_reference(attrs: dict, xs: list[np.ndarray],
                      w: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate(xs, axis=attrs["axis"])]


def _concat_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    axis = normalize_axis(attrs["axis"], len(xs[0].type.shape), "Concatenate")
    return [b.op("tensor.concat", list(xs), {"axis": axis})]


CONCATENATE = register(LayerSpec(
    name="Concatenate",
    params=(Param("axis", Axis(), -1, aliases=("dim",),
                  doc="axis to join along (batch is axis 0; -1 is the last)"),),
    positional=("axis",),
    shape=_concat_shape, reference=_concat_reference, kind="merge", arity=None,
    lower=_concat_lower,
    aliases=("Concat",),
    doc="Joins its inputs along one axis; the other axes must agree.",
    example="Concatenate(axis=-1) { { Conv2D(32, 1) } { Conv2D(32, 3, padding=\"same\") } }",
))


# -- ResidualConnection -----------------------------------------------------------------------


def _residual_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    x, body = ins[0], ins[1]
    assert x.shape is not None and body.shape is not None
    hint = ("the body must keep the shape; to change it, use a projection branch: "
            "Add { { ...body... } { Conv2D(filters, 1) } }")
    changed = ShapeError(
        f"ResidualConnection body changes the shape from {shape_str(x.shape)} "
        f"to {shape_str(body.shape)}", hint)
    if len(x.shape) != len(body.shape) or x.dtype != body.dtype:
        raise changed
    out = []
    for a, b in zip(x.shape, body.shape):
        if a == b:
            out.append(a)
            continue
        if isinstance(a, int) and isinstance(b, int):
            raise changed
        try:
            out.append(ctx.unify(a, b, "ResidualConnection"))
        except ShapeError:
            raise changed from None
    return [x.with_shape(tuple(out))]


def _residual_reference(attrs: dict, xs: list[np.ndarray],
                        w: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [apply_activation(attrs["activation"], xs[0] + xs[1])]


def _residual_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """The add, then the activation: an elementwise epilogue of the body's last conv/matmul."""
    return [b.activation(attrs["activation"], b.binary("add", xs[0], xs[1]))]


def _residual_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """The add, plus one operation per element for a non-linear activation."""
    assert outs[0].shape is not None
    return (1 if attrs["activation"] == "linear" else 2) * per_sample(outs[0].shape)


RESIDUAL = register(LayerSpec(
    name="ResidualConnection",
    params=(Param("activation", ActivationName(), "linear", doc="applied after the add"),),
    positional=("activation",),
    shape=_residual_shape, reference=_residual_reference, flops=_residual_flops,
    kind="residual", arity=2, aliases=("Residual",), lower=_residual_lower,
    doc="x + body(x) for its nested block (the body must keep the shape), then the activation.",
    example='ResidualConnection(activation="relu") { Conv2D(64, 3, padding="same") }',
))
