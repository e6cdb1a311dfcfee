"""``canonicalize``: apply every op's canonicalisation patterns to a fixed point, then DCE.

The patterns live on the op definitions (``OpDef.canonicalize(op, rewriter) -> bool``): a pass
never names an op. Folding of constant expressions is one of those patterns (only scalar fills
are known at compile time; weights are not).
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, Rewriter, func_body
from neuralc.ir.opdef import lookup_op
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.dce import dead_code_elimination
from neuralc.passes.registry import register_pass

MAX_ROUNDS = 32


def canonicalize(module: Module) -> int:
    rewriter = Rewriter()
    total = 0
    for _ in range(MAX_ROUNDS):
        changed = 0
        for func in module.funcs:
            for op in list(func_body(func).ops):
                if op.parent is None:
                    continue  # erased by an earlier pattern this round
                opdef = lookup_op(op.name)
                hook = getattr(opdef, "canonicalize", None)
                if hook is not None and hook(op, rewriter):
                    changed += 1
        changed += dead_code_elimination(module)
        total += changed
        if not changed:
            break
    return total


@register_pass
@dataclass
class CanonicalizePass(Pass):
    name = "canonicalize"
    level = "any"
    summary = "fold constants, drop no-ops, merge transposes and reshapes"

    def run(self, module: Module, ctx: PassContext) -> None:
        canonicalize(module)
