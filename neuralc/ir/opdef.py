"""Op definitions: what an op name means, declared once per op kind by its dialect.

The generic :class:`~neuralc.ir.core.Op` holds data; an :class:`OpDef` answers questions about
it: verification, shape inference, its fusion kind (TVM's classes), its precision policy and
its reference semantics. Passes ask the op's definition, so adding an op never edits a pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import numpy as np

    from neuralc.ir.core import Op
    from neuralc.ir.shapes import ShapeContext
    from neuralc.ir.types import TensorType

# How an op may join a fused kernel (TVM's rule set): elementwise ops fuse with anything;
# broadcast and injective ops (reshape, transpose, slice, concat) fuse into their consumers;
# reductions fuse an elementwise prologue and epilogue; output-fusible ops (matmul, conv) take
# an elementwise epilogue; opaque ops stay alone.
FusionKind = Literal["elementwise", "broadcast", "injective", "reduction", "output_fusible",
                     "opaque", "none"]
# Mixed precision: "low" runs in fp16/bf16 (with fp32 accumulation), "follow" takes the
# precision of its inputs, "never" stays fp32 (softmax, normalisation, exp/log, reductions).
PrecisionPolicy = Literal["low", "follow", "never"]


class OpDef:
    name: ClassVar[str] = ""
    # None: any number of operands; otherwise exactly this many.
    num_operands: ClassVar[int | None] = None
    num_results: ClassVar[int | None] = 1
    num_regions: ClassVar[int] = 0
    fusion_kind: ClassVar[FusionKind] = "opaque"
    precision: ClassVar[PrecisionPolicy] = "never"

    def verify(self, op: Op) -> list[str]:
        """Structural problems of ``op`` beyond counts (attribute types and values)."""
        return []

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        """Result types from operand types; raise ShapeError when they do not fit."""
        raise NotImplementedError(f"{self.name} has no shape inference")

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: Any) -> list[np.ndarray]:
        """Reference semantics in numpy; ``ctx`` gives symbol sizes and weights."""
        raise NotImplementedError(f"{self.name} has no reference semantics")


def evaluate_op(opdef: OpDef, op: Op, args: list[np.ndarray], ctx: Any) -> list[np.ndarray]:
    """``opdef.evaluate`` plus the element type's rounding: a bf16 result is held in float32
    rounded to bf16, wherever the op runs (top level, a fused kernel body, a scan body)."""
    outs = opdef.evaluate(op, args, ctx)
    if any(r.type.dtype == "bf16" for r in op.results):
        from neuralc.ir.dialects.tensor import round_bf16

        outs = [round_bf16(o) if r.type.dtype == "bf16" else o for r, o in zip(op.results, outs)]
    return outs


_REGISTRY: dict[str, OpDef] = {}


def register_op(opdef: OpDef) -> OpDef:
    if opdef.name in _REGISTRY:
        raise ValueError(f"op {opdef.name!r} defined twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def lookup_op(name: str) -> OpDef | None:
    if name not in _REGISTRY:
        _load_dialects()
    return _REGISTRY.get(name)


def known_ops() -> list[str]:
    _load_dialects()
    return sorted(_REGISTRY)


_dialects_loaded = False


def _load_dialects() -> None:
    global _dialects_loaded
    if _dialects_loaded:
        return
    _dialects_loaded = True
    import importlib
    import pkgutil

    from neuralc.ir import dialects
    from neuralc.ir.dialects import builtin, kernel, tensor  # noqa: F401 (register ops)

    # The tensor dialect spans tensor.py and tensor_<family>.py files (ops a family needs).
    for info in pkgutil.iter_modules(dialects.__path__):
        if info.name.startswith("tensor_"):
            importlib.import_module(f"neuralc.ir.dialects.{info.name}")
