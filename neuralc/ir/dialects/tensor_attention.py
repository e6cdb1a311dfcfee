"""Index and comparison primitives the attention family needs: ``tensor.iota``, ``tensor.compare``.

Two things in the attention layers cannot be written with the ops of ``tensor.py``:

- a tensor whose values depend on element positions: the sinusoidal position table
  (``sin(p / 10000^(2i/d))``) and the causal mask's row and column indices. ``tensor.iota``
  makes the index along one axis of its result type (XLA's ``iota``, MLIR's
  ``tensor.generate`` of an index); the table and the mask are then ordinary elementwise ops
  on it, so they fuse, and a constant folder can turn a static table into a weight.
- a boolean from numbers, which ``tensor.select`` takes as its condition: the elementwise
  ``tensor.compare`` (MLIR's ``arith.cmpf``/``cmpi``, StableHLO's ``compare``).

Both are family-neutral primitives; nothing here knows about attention.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.ir.dialects.tensor import (
    EvalContext,
    TensorOp,
    broadcast_index,
    broadcast_shapes,
    concrete,
    ranked,
)
from neuralc.ir.dims import Dim
from neuralc.ir.element import ElementBuilder, Node
from neuralc.ir.numeric import np_dtype
from neuralc.ir.opdef import (
    BOOL_TENSOR,
    FusionKind,
    IntAttr,
    StrAttr,
    attribute,
    operand,
    register_op,
    result,
)
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType


@register_op
class IotaOp(TensorOp):
    """The index along ``axis`` at every element of the result type (which may be symbolic).

    ``tensor.iota {axis = 0} : () -> tensor<seq x 1 x i32>`` holds ``0, 1, ..., seq - 1``;
    the element type (int or float) is the result's. It reads no memory: each element is a
    function of its position, so it fuses wherever an elementwise op does. Its precision
    policy is "never": indices above 2048 are not exact in f16 (256 in bf16).
    """

    name = "tensor.iota"
    output = result()
    axis = attribute(IntAttr())
    FUSION = "elementwise"
    PRECISION = "never"

    def verify_extra(self) -> list[str]:
        axis = self.axis
        t = self.results[0].type
        if t.shape is None:
            return ["an iota needs a ranked result type"]
        if not -len(t.shape) <= axis < len(t.shape):
            return [f"axis {axis} is out of range for rank {len(t.shape)}"]
        return []

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        """The loop index along ``axis``, converted to the result's element type."""
        return b.index_value(index[self.axis % len(index)], self.results[0].type.dtype)


    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        t = self.results[0].type
        if t.shape is None:
            raise ShapeError(f"{self.name} needs its result type written out")
        return [t]

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        t = self.results[0].type
        shape = concrete(t, ctx)
        axis = self.attributes["axis"] % len(shape)
        index = np.arange(shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])
        return [np.broadcast_to(index, shape).astype(np_dtype(t.dtype))]


_COMPARE: dict[str, Any] = {
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}


COMPARE_FNS = _COMPARE

_ELEMENT_OF_NUMPY = {np.dtype(np_dtype(t)): t for t in ("f64", "f32", "f16", "i64", "i32",
                                                        "i8", "i1")}


def _common_type(a: str, b: str) -> str:
    """The element type numpy compares ``a`` and ``b`` in (bf16 is held as float32, so bf16
    with anything but itself is f32 or wider)."""
    if a == b:
        return a
    return _ELEMENT_OF_NUMPY[np.result_type(np_dtype(a), np_dtype(b))]


@register_op
class CompareOp(TensorOp):
    """``fn(a, b)`` elementwise with numpy broadcasting, an i1 result; ``fn`` in eq ne lt le gt ge.

    Ordered comparisons (a NaN operand gives false, except for ``ne``), as ``arith.cmpf o*``.
    """

    name = "tensor.compare"
    lhs = operand()
    rhs = operand()
    output = result(BOOL_TENSOR)
    fn = attribute(StrAttr(tuple(_COMPARE)))
    PRECISION = "follow"


    def fusion_kind(self) -> FusionKind:
        a, b = (v.type.shape for v in self.operands)
        return "elementwise" if a == b else "broadcast"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        shape = broadcast_shapes([ranked(self, 0), ranked(self, 1)], ctx, self.name)
        return [TensorType(shape, "i1")]

    def element(self, b: ElementBuilder, index: list[Dim]) -> Node:
        """Both operands read under broadcasting and compared in their common type (numpy's
        promotion, which the reference applies), so no value is rounded before comparing."""
        x, y = (b.operand(self, i, broadcast_index(index, v))
                for i, v in enumerate(self.operands))
        common = _common_type(x.dtype, y.dtype)
        return b.compare(self.fn, b.cast(x, common), b.cast(y, common))

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.asarray(_COMPARE[self.attributes["fn"]](args[0], args[1]), dtype=np.bool_)]
