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

from neuralc.ir.core import Op
from neuralc.ir.dialects.tensor import (
    EvalContext,
    TensorOpDef,
    _np_dtype,
    _ranked,
    broadcast_shapes,
    concrete,
)
from neuralc.ir.opdef import FusionKind, register_op
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType


class IotaOp(TensorOpDef):
    """The index along ``axis`` at every element of the result type (which may be symbolic).

    ``tensor.iota {axis = 0} : () -> tensor<seq x 1 x i32>`` holds ``0, 1, ..., seq - 1``;
    the element type (int or float) is the result's. It reads no memory: each element is a
    function of its position, so it fuses wherever an elementwise op does. Its precision
    policy is "never": indices above 2048 are not exact in f16 (256 in bf16).
    """

    name = "tensor.iota"
    num_operands = 0
    fusion_kind = "elementwise"
    precision = "never"

    def verify(self, op: Op) -> list[str]:
        axis = op.attributes.get("axis")
        if not isinstance(axis, int) or isinstance(axis, bool):
            return ["'axis' must be an integer"]
        t = op.results[0].type if op.results else None
        if t is None or t.shape is None:
            return ["an iota needs a ranked result type"]
        if not -len(t.shape) <= axis < len(t.shape):
            return [f"axis {axis} is out of range for rank {len(t.shape)}"]
        return []

    def result_dtype(self, op: Op) -> str:
        return op.results[0].type.dtype

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        t = op.results[0].type
        if t.shape is None:
            raise ShapeError(f"{op.name} needs its result type written out")
        return [t]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        t = op.results[0].type
        shape = concrete(t, ctx)
        axis = op.attributes["axis"] % len(shape)
        index = np.arange(shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])
        return [np.broadcast_to(index, shape).astype(_np_dtype(t.dtype))]


_COMPARE: dict[str, Any] = {
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}


class CompareOp(TensorOpDef):
    """``fn(a, b)`` elementwise with numpy broadcasting, an i1 result; ``fn`` in eq ne lt le gt ge.

    Ordered comparisons (a NaN operand gives false, except for ``ne``), as ``arith.cmpf o*``.
    """

    name = "tensor.compare"
    num_operands = 2
    precision = "follow"

    def verify(self, op: Op) -> list[str]:
        fn = op.attributes.get("fn")
        return [] if fn in _COMPARE else [f"unknown comparison {fn!r}"]

    def result_dtype(self, op: Op) -> str:
        return "i1"

    def fusion(self, op: Op) -> FusionKind:
        a, b = (v.type.shape for v in op.operands)
        return "elementwise" if a == b else "broadcast"

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        shape = broadcast_shapes([_ranked(op, 0), _ranked(op, 1)], ctx, op.name)
        return [TensorType(shape, "i1")]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        return [np.asarray(_COMPARE[op.attributes["fn"]](args[0], args[1]), dtype=np.bool_)]


for _cls in (IotaOp, CompareOp):
    register_op(_cls())
