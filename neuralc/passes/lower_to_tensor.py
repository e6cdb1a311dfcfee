"""``lower-to-tensor``: replace every graph op with the tensor ops its layer's rule builds.

The rule lives on the layer's catalog entry (``LayerSpec.lower``), next to its reference
semantics, so the two are read and changed together. A graph op without a rule is an error at
its ``.nr`` line: the tensor pipeline needs every op lowered.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.builder import TensorBuilder
from neuralc.ir.core import Module, Rewriter, func_body
from neuralc.ir.shapes import ShapeError, Unifier
from neuralc.layers import catalog
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


@register_pass
@dataclass
class LowerToTensorPass(Pass):
    name = "lower-to-tensor"
    level = "graph"
    summary = "lower every graph op to tensor ops through its layer's lowering rule"

    def run(self, module: Module, ctx: PassContext) -> None:
        unifier = Unifier(module.attributes.get("dims"))
        rewriter = Rewriter()
        for func in module.funcs:
            for op in list(func_body(func).ops):
                if op.dialect != "graph":
                    continue
                spec = catalog.by_op(op.name)
                if spec is None or spec.lower is None:
                    what = spec.name if spec else op.name
                    ctx.diags.error(f"{what} '{op.attributes.get('name')}' has no tensor lowering "
                                    "yet", op.location)
                    continue
                ins = [v.type for v in op.operands]
                if any(t.shape is None for t in ins):
                    ctx.diags.error(f"lower-to-tensor needs inferred shapes, but {spec.name} "
                                    f"'{op.attributes.get('name')}' reads a value of unknown "
                                    "shape; run shape-infer first", op.location)
                    continue
                try:
                    b = TensorBuilder(op, spec.weights(op.attributes, ins), unifier, rewriter)
                    outs = spec.lower(b, op.attributes, list(op.operands))
                except (NotImplementedError, ShapeError) as e:
                    ctx.diags.error(f"{spec.name} '{op.attributes.get('name')}' cannot be "
                                    f"lowered to tensor ops: {e}", op.location)
                    continue
                for old, new in zip(op.results, outs):
                    if old.type.shape is not None and new.type != old.type:
                        raise AssertionError(
                            f"lowering of {op.name} at {op.location} gave {new.type}, "
                            f"expected {old.type}")
                rewriter.replace_op(op, list(outs))
