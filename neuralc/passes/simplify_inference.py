"""``simplify-inference``: drop the layers that do nothing at inference (Dropout and friends).

A layer says so on its catalog entry (``extra["identity_at_inference"]``); the pass replaces
its result by its input. The layers stay in the model for training backends, which never run
this pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, Rewriter, func_body
from neuralc.layers import catalog
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


@register_pass
@dataclass
class SimplifyInferencePass(Pass):
    name = "simplify-inference"
    level = "graph"
    summary = "remove layers that are the identity at inference (Dropout, GaussianNoise, ...)"

    def run(self, module: Module, ctx: PassContext) -> None:
        rewriter = Rewriter()
        for func in module.funcs:
            for op in list(func_body(func).ops):
                spec = catalog.by_op(op.name)
                if spec is None or not spec.extra.get("identity_at_inference"):
                    continue
                if len(op.operands) == 1 and len(op.results) == 1:
                    rewriter.replace_op(op, [op.operands[0]])
