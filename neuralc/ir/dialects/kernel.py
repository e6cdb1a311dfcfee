"""The kernel dialect: ``kernel.fused`` regions, each what a backend turns into one kernel.

A ``kernel.fused`` op takes the values its body reads from outside as operands (the body's
block arguments, in order) and returns what ``kernel.yield`` yields: its body sees nothing
else (isolated from above), so a backend compiles it on its own. Its body holds tensor ops
only. Attributes: ``name`` (``fused_3``), ``kind`` (the fusion pattern, e.g.
``conv+elementwise``), ``symbols`` (the symbolic sizes its types use: ``["batch", "seq"]``,
what a code generator passes it at run time); its location is a FusedLoc of the layers it came
from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.ir.dims import symbols
from neuralc.ir.opdef import (
    STRING,
    DefinedOp,
    ListAttr,
    attribute,
    opt_attribute,
    region,
    register_op,
    var_operand,
    var_result,
)
from neuralc.ir.regions import infer_block, run_block, type_problems
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType


def type_symbols(types: list[TensorType]) -> set[str]:
    out: set[str] = set()
    for t in types:
        for d in t.shape or ():
            out |= symbols(d)
    return out


@register_op
class FusedOp(DefinedOp):
    name = "kernel.fused"
    inputs = var_operand()
    outputs = var_result()
    body = region()
    kernel_name = attribute(STRING, key="name")
    kind = opt_attribute(STRING)
    symbols = opt_attribute(ListAttr(STRING))
    isolated_from_above = True
    FUSION = "opaque"

    def verify_extra(self) -> list[str]:
        errs: list[str] = []
        blocks = self.regions[0].blocks
        if len(blocks) != 1:
            return errs + ["needs exactly one block"]
        body = blocks[0]
        if len(body.args) != len(self.operands):
            errs.append(f"has {len(self.operands)} operands but its block takes {len(body.args)}")
        else:
            for i, (arg, v) in enumerate(zip(body.args, self.operands)):
                errs += type_problems(arg.type, v.type, f"block argument {i}")
        term = body.terminator
        if term is None or term.name != "kernel.yield":
            errs.append("its body must end with kernel.yield")
        elif len(term.operands) != len(self.results):
            errs.append(f"yields {len(term.operands)} values for {len(self.results)} results")
        else:
            for i, (v, r) in enumerate(zip(term.operands, self.results)):
                errs += type_problems(v.type, r.type, f"yielded value {i}")
        for inner in body.ops:
            if inner.dialect not in ("tensor", "kernel"):
                errs.append(f"holds {inner.name}; a fused body holds tensor ops only")
        if self.symbols is not None:
            types = [v.type for v in self.operands] + [r.type for r in self.results]
            missing = sorted(type_symbols(types) - set(self.symbols))
            if missing:
                errs.append(f"uses the sizes {', '.join(missing)} missing from its 'symbols'")
        return errs

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        body = self.regions[0].blocks[0]
        for arg, v in zip(body.args, self.operands):
            arg.type = v.type
        term = infer_block(body, ctx, "kernel.yield", str(self.kernel_name))
        return [v.type for v in term.operands]

    def evaluate(self, args: list[np.ndarray], ctx: Any) -> list[np.ndarray]:
        return run_block(self.regions[0].blocks[0], args, ctx, "kernel.yield")


@register_op
class YieldOp(DefinedOp):
    name = "kernel.yield"
    values = var_operand()
    terminator = True

    def verify_extra(self) -> list[str]:
        parent = self.parent_op()
        if parent is None or parent.name != "kernel.fused":
            return ["kernel.yield must end a kernel.fused body"]
        return []
