"""``func.func`` and ``func.return``: one function per network, returning its outputs."""

from __future__ import annotations

from neuralc.ir.core import Op
from neuralc.ir.opdef import OpDef, register_op


class FuncOp(OpDef):
    name = "func.func"
    num_operands = 0
    num_results = 0
    num_regions = 1

    def verify(self, op: Op) -> list[str]:
        errs = []
        if not isinstance(op.attributes.get("sym_name"), str):
            errs.append("func.func needs a string 'sym_name'")
        body = op.regions[0].blocks if op.regions else []
        if len(body) != 1:
            errs.append("func.func needs exactly one block")
        elif body[0].terminator is None or body[0].terminator.name != "func.return":
            errs.append("func.func must end with func.return")
        return errs


class ReturnOp(OpDef):
    name = "func.return"
    num_operands = None
    num_results = 0

    def verify(self, op: Op) -> list[str]:
        if op.parent is not None and op.parent.terminator is not op:
            return ["func.return must be the last op of its block"]
        return []


register_op(FuncOp())
register_op(ReturnOp())
