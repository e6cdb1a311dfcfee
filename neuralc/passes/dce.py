"""``dce``: remove ops whose results nobody uses, in every region. Every tensor op is pure,
so this is safe; the pattern driver's dead-op erasure does the work."""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module
from neuralc.ir.rewrite import apply_patterns
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


def dead_code_elimination(module: Module) -> int:
    """Erase unused pure ops (chains of them included); returns how many."""
    return apply_patterns(module, [])


@register_pass
@dataclass
class DeadCodeEliminationPass(Pass):
    name = "dce"
    level = "any"
    summary = "remove ops whose results are unused (in every region)"

    def run(self, module: Module, ctx: PassContext) -> None:
        dead_code_elimination(module)
