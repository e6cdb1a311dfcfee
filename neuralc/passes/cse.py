"""``cse``: common-subexpression elimination, in every region.

Two ops are the same computation when they have the same name, the same operands, the same
attributes and result types, and no regions; the later one is replaced by the earlier one
through the rewriter. This also merges repeated reads of one weight
(``tensor.constant {weight = ...}``). Scopes follow visibility, as in MLIR: an op in a nested
region may reuse a computation of an enclosing block that comes before it, unless the region is
isolated from above (kernel and scan bodies, functions), where a fresh scope starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Block, Module, Op, Rewriter
from neuralc.ir.opdef import DefinedOp
from neuralc.ir.printer import format_attr
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


def _key(op: Op) -> tuple:
    attrs = tuple(sorted((k, format_attr(v)) for k, v in op.attributes.items()))
    return (op.name, tuple(id(v) for v in op.operands), attrs,
            tuple(str(r.type) for r in op.results))


def _candidate(op: Op) -> bool:
    return (isinstance(op, DefinedOp) and op.pure and not op.terminator and not op.regions
            and bool(op.results))


class _CSE:
    def __init__(self) -> None:
        self.rewriter = Rewriter()
        self.merged = 0

    def block(self, block: Block, seen: dict[tuple, Op]) -> None:
        scope = dict(seen)  # a nested block sees the enclosing scope, not the reverse
        for op in list(block.ops):
            for region in op.regions:
                isolated = isinstance(op, DefinedOp) and op.isolated_from_above
                for b in region.blocks:
                    self.block(b, {} if isolated else scope)
            if not _candidate(op):
                continue
            k = _key(op)
            earlier = scope.get(k)
            if earlier is not None:
                self.rewriter.replace_op(op, list(earlier.results))
                self.merged += 1
            else:
                scope[k] = op


def common_subexpressions(module: Module) -> int:
    cse = _CSE()
    cse.block(module.body, {})
    return cse.merged


@register_pass
@dataclass
class CSEPass(Pass):
    name = "cse"
    level = "any"
    summary = "merge ops that compute the same value (in every region)"

    def run(self, module: Module, ctx: PassContext) -> None:
        common_subexpressions(module)
