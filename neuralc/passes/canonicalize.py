"""``canonicalize``: apply every op's canonicalisation pattern to a fixed point, erasing dead
ops, in every region (kernel and scan bodies included).

The patterns live on the op classes (``DefinedOp.canonicalize(rewriter) -> bool``): a pass
never names an op. Folding of constant expressions is one of those patterns (only scalar fills
are known at compile time; weights are not).
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module
from neuralc.ir.rewrite import CanonicalizationPattern, apply_patterns
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


def canonicalize(module: Module) -> int:
    """Canonicalise ``module`` in place; returns the number of changes."""
    return apply_patterns(module, [CanonicalizationPattern()])


@register_pass
@dataclass
class CanonicalizePass(Pass):
    name = "canonicalize"
    level = "any"
    summary = "fold constants, drop no-ops, merge transposes and reshapes (in every region)"

    def run(self, module: Module, ctx: PassContext) -> None:
        canonicalize(module)
