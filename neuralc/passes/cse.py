"""``cse``: common-subexpression elimination.

Two ops are the same computation when they have the same name, the same operands, the same
attributes and result types, and no regions; the later one is replaced by the earlier one. This
also merges repeated reads of one weight (``tensor.constant {weight = ...}``).
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, Op, Rewriter, func_body
from neuralc.ir.printer import format_attr
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


def _key(op: Op) -> tuple:
    attrs = tuple(sorted((k, format_attr(v)) for k, v in op.attributes.items()))
    return (op.name, tuple(id(v) for v in op.operands), attrs,
            tuple(str(r.type) for r in op.results))


def common_subexpressions(module: Module) -> int:
    rewriter = Rewriter()
    merged = 0
    for func in module.funcs:
        seen: dict[tuple, Op] = {}
        for op in list(func_body(func).ops):
            if op.regions or not op.results or op.name == "func.return":
                continue
            k = _key(op)
            if k in seen:
                rewriter.replace_op(op, list(seen[k].results))
                merged += 1
            else:
                seen[k] = op
    return merged


@register_pass
@dataclass
class CSEPass(Pass):
    name = "cse"
    level = "any"
    summary = "merge ops that compute the same value"

    def run(self, module: Module, ctx: PassContext) -> None:
        common_subexpressions(module)
