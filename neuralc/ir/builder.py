"""Building tensor ops while lowering one graph op: the API every layer's ``lower`` rule uses.

A layer's lowering rule (``LayerSpec.lower``) receives a :class:`TensorBuilder`, the graph op's
attributes and its operand values, and returns the values that replace the op's results. The
builder inserts each new op before the graph op, gives it the graph op's location (so kernels
keep the ``.nr`` lines they came from), infers its type at once from its operands, and turns
the layer's weights into ``tensor.constant`` ops named ``<layer>.<param>``.
"""

from __future__ import annotations

from typing import Any, Protocol

from neuralc.ir.core import Op, Rewriter, Value
from neuralc.ir.opdef import DefinedOp
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType, unranked


class WeightType(Protocol):
    """What the builder needs of a weight's declaration: its shape and element type."""

    shape: tuple[int, ...]
    dtype: str


class TensorBuilder:
    def __init__(self, anchor: Op, weights: dict[str, WeightType], unifier: ShapeContext,
                 rewriter: Rewriter | None = None):
        self.anchor = anchor
        self.rewriter = rewriter or Rewriter()
        self.layer = str(anchor.attributes.get("name", ""))
        self.weight_specs = weights
        self.unifier = unifier
        self.created: list[Op] = []

    def op(self, name: str, operands: list[Value], attrs: dict[str, Any] | None = None,
           result: TensorType | None = None) -> Value:
        """Insert ``name`` before the anchor and return its (single) result, typed."""
        return self.op_n(name, operands, attrs, [result] if result is not None else None)[0]

    def op_n(self, name: str, operands: list[Value], attrs: dict[str, Any] | None = None,
             results: list[TensorType] | None = None, n: int = 1) -> list[Value]:
        types = results or [unranked(operands[0].type.dtype if operands else "f32")] * n
        attrs = dict(attrs or {})
        if self.anchor.attributes.get("precision") == "fp32":
            attrs["precision"] = "fp32"  # the layer is pinned: so is every op it becomes
        op = Op(name, operands, types, attrs, location=self.anchor.location)
        self.insert(op)
        assert isinstance(op, DefinedOp), f"unknown tensor op {name}"
        inferred = op.infer_types(self.unifier)
        for r, t in zip(op.results, inferred):
            r.type = t
        return list(op.results)

    def insert(self, op: Op) -> None:
        """Put ``op`` before the anchor (through the rewriter) and remember it."""
        self.rewriter.insert_before(self.anchor, op)
        self.created.append(op)

    def weight(self, param: str) -> Value:
        """The layer's weight ``param`` as a constant (PyTorch layout)."""
        spec = self.weight_specs[param]
        t = TensorType(tuple(spec.shape), spec.dtype)
        return self.op("tensor.constant", [], {"weight": f"{self.layer}.{param}"}, t)

    def has_weight(self, param: str) -> bool:
        return param in self.weight_specs

    def scalar(self, value: float, dtype: str = "f32") -> Value:
        return self.op("tensor.constant", [], {"value": float(value)}, TensorType((), dtype))

    # -- small conveniences for the common patterns --------------------------------------
    def unary(self, fn: str, x: Value, alpha: float | None = None) -> Value:
        if fn == "linear":
            return x
        attrs: dict[str, Any] = {"fn": fn}
        if alpha is not None:
            attrs["alpha"] = alpha
        return self.op("tensor.unary", [x], attrs)

    def activation(self, name: str, x: Value, alpha: float | None = None, axis: int = -1) -> Value:
        """An activation; softmax and log_softmax become reductions plus elementwise ops."""
        if name in ("softmax", "log_softmax"):
            shifted = self.binary("sub", x, self.reduce("max", x, [axis], True))
            if name == "log_softmax":
                total = self.reduce("sum", self.unary("exp", shifted), [axis], True)
                lse = self.unary("log", total)
                return self.binary("sub", shifted, lse)
            e = self.unary("exp", shifted)
            return self.binary("div", e, self.reduce("sum", e, [axis], True))
        return self.unary(name, x, alpha)

    def binary(self, fn: str, a: Value, b: Value) -> Value:
        return self.op("tensor.binary", [a, b], {"fn": fn})

    def reduce(self, kind: str, x: Value, axes: list[int], keepdims: bool) -> Value:
        return self.op("tensor.reduce", [x], {"axes": axes, "keepdims": keepdims, "kind": kind})

    def reshape(self, x: Value, shape: tuple) -> Value:
        return self.op("tensor.reshape", [x], {}, x.type.with_shape(shape))

    def transpose(self, x: Value, perm: list[int]) -> Value:
        return self.op("tensor.transpose", [x], {"perm": perm})
