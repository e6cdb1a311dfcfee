"""Op definitions: what an op name means, declared once per op kind by its dialect.

The generic :class:`~neuralc.ir.core.Op` holds data; an :class:`OpDef` answers questions about
it (verification, shape inference, and later fusion kind and precision policy). Passes ask the
op's definition, so adding an op never edits a pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from neuralc.ir.core import Op
    from neuralc.ir.types import TensorType
    from neuralc.layers.catalog import ShapeContext


class OpDef:
    name: ClassVar[str] = ""
    # None: any number of operands; otherwise exactly this many.
    num_operands: ClassVar[int | None] = None
    num_results: ClassVar[int | None] = 1
    num_regions: ClassVar[int] = 0

    def verify(self, op: Op) -> list[str]:
        """Structural problems of ``op`` beyond counts (attribute types and values)."""
        return []

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        """Result types from operand types; raise ShapeError when they do not fit."""
        raise NotImplementedError(f"{self.name} has no shape inference")


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
    from neuralc.ir.dialects import builtin, graph  # noqa: F401  (they register their ops)
