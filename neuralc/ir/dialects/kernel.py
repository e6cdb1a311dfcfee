"""The kernel dialect: ``kernel.fused`` regions, each what a backend turns into one kernel.

A ``kernel.fused`` op takes the values its body reads from outside as operands (the body's
block arguments, in order) and returns what ``kernel.yield`` yields. Its body holds tensor
ops only. Attributes: ``name`` (``fused_3``), ``kind`` (the fusion pattern, e.g.
``conv+elementwise``); its location is a FusedLoc of the layers it came from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.ir.core import Op
from neuralc.ir.opdef import OpDef, register_op
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType


class FusedOp(OpDef):
    name = "kernel.fused"
    num_operands = None
    num_results = None
    num_regions = 1
    fusion_kind = "opaque"

    def verify(self, op: Op) -> list[str]:
        errs: list[str] = []
        if not isinstance(op.attributes.get("name"), str):
            errs.append("needs a string 'name'")
        blocks = op.regions[0].blocks if op.regions else []
        if len(blocks) != 1:
            return errs + ["needs exactly one block"]
        body = blocks[0]
        if len(body.args) != len(op.operands):
            errs.append(f"has {len(op.operands)} operands but its block takes {len(body.args)}")
        term = body.terminator
        if term is None or term.name != "kernel.yield":
            errs.append("its body must end with kernel.yield")
        elif len(term.operands) != len(op.results):
            errs.append(f"yields {len(term.operands)} values for {len(op.results)} results")
        for inner in body.ops:
            if inner.dialect not in ("tensor", "kernel"):
                errs.append(f"holds {inner.name}; a fused body holds tensor ops only")
        return errs

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        from neuralc.ir.regions import infer_block

        body = op.regions[0].blocks[0]
        for arg, v in zip(body.args, op.operands):
            arg.type = v.type
        term = infer_block(body, ctx, "kernel.yield", str(op.attributes.get("name")))
        return [v.type for v in term.operands]

    def evaluate(self, op: Op, args: list[np.ndarray], ctx: Any) -> list[np.ndarray]:
        from neuralc.ir.regions import run_block

        return run_block(op.regions[0].blocks[0], args, ctx, "kernel.yield")


class YieldOp(OpDef):
    name = "kernel.yield"
    num_operands = None
    num_results = 0

    def verify(self, op: Op) -> list[str]:
        parent = op.parent_op()
        if parent is None or parent.name != "kernel.fused":
            return ["kernel.yield must end a kernel.fused body"]
        return []


register_op(FusedOp())
register_op(YieldOp())
