"""``dce``: remove ops whose results nobody uses. Every op here is pure, so this is safe."""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, Rewriter, func_body
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


def dead_code_elimination(module: Module) -> int:
    """Erase unused ops, last to first so chains of dead ops go in one sweep; returns count."""
    rewriter = Rewriter()
    erased = 0
    for func in module.funcs:
        for op in reversed(list(func_body(func).ops)):
            if op.name == "func.return" or not op.results:
                continue
            if all(not r.uses for r in op.results):
                rewriter.erase_op(op)
                erased += 1
    return erased


@register_pass
@dataclass
class DeadCodeEliminationPass(Pass):
    name = "dce"
    level = "any"
    summary = "remove ops whose results are unused"

    def run(self, module: Module, ctx: PassContext) -> None:
        dead_code_elimination(module)
