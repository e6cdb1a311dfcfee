"""``shape-infer``: symbolic shape inference over the graph IR.

Each op's result types come from its definition (for graph ops, the catalog's shape rule).
Dims that must be equal are unified module-wide through a :class:`Unifier`: a symbol may be
bound to a number or to another symbol, respecting the ranges of the ``dims { }`` section, and
every type in the function is rewritten with the final bindings. A shape error is reported at
the layer's ``.nr`` location with both shapes, the reason, and where its input came from; the
ops downstream of a failed op are skipped, so each independent error is reported once.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.diagnostics import DiagnosticEngine
from neuralc.ir.core import BlockArgument, Module, Op, OpResult, Value, func_body
from neuralc.ir.opdef import DefinedOp
from neuralc.ir.shapes import ShapeError, Unifier
from neuralc.layers import catalog
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass

# No real model has a weight tensor this large (2^34 floats = 64 GiB); a bigger one is a typo.
MAX_WEIGHT_ELEMENTS = 2**34




def describe_producer(v: Value) -> tuple[str, object]:
    """ "Dense at m.nr:11:5" style text for the op or input that produced ``v``."""
    if isinstance(v, OpResult):
        spec = catalog.by_op(v.op.name)
        kind = spec.name if spec else v.op.name
        return f"{kind} '{v.op.attributes.get('name', '')}'", v.op.location
    if isinstance(v, BlockArgument):
        return f"the network input '{v.name_hint}'", v.location
    return "an unknown value", None


def infer_func(func: Op, unifier: Unifier, diags: DiagnosticEngine) -> None:
    failed: set[int] = set()
    body = func_body(func)
    for op in body.ops:
        if op.name == "func.return":
            continue
        if any(id(v) in failed or v.type.shape is None for v in op.operands):
            failed.update(id(r) for r in op.results)
            continue
        if not isinstance(op, DefinedOp):
            diags.error(f"unknown op '{op.name}'", op.location)
            failed.update(id(r) for r in op.results)
            continue
        try:
            resolved = [unifier.resolve_type(v.type) for v in op.operands]
            for v, t in zip(op.operands, resolved):
                v.type = t
            types = op.infer_types(unifier)
        except ShapeError as e:
            d = diags.error(e.message, op.location)
            if op.operands:
                what, loc = describe_producer(op.operands[0])
                where = f" at {loc}" if loc is not None and str(loc) != "<unknown>" else ""
                note = f"the input comes from {what}{where}"
                d.with_note(note + (f"; {e.hint}" if e.hint else ""))
            elif e.hint:
                d.with_note(e.hint)
            failed.update(id(r) for r in op.results)
            continue
        if len(types) != len(op.results):
            diags.error(
                f"{op.name}: shape rule gave {len(types)} types for {len(op.results)} results",
                op.location,
            )
            failed.update(id(r) for r in op.results)
            continue
        for r, t in zip(op.results, types):
            r.type = t
        spec = catalog.by_op(op.name)
        if spec is not None:
            # Weight shapes depend on input shapes (a Dense on a symbolic feature axis has no
            # size for its weight): report that here, at the layer, not when weights are made.
            try:
                for wname, w in spec.weights(op.attributes, [v.type for v in op.operands]).items():
                    size = 1
                    for d in w.shape:
                        size *= d
                    if size > MAX_WEIGHT_ELEMENTS:
                        raise ShapeError(f"{spec.name} weight '{wname}' would have {size:,} "
                                         f"elements, more than {MAX_WEIGHT_ELEMENTS:,}",
                                         "check the sizes of this layer")
            except ShapeError as e:
                d = diags.error(e.message, op.location)
                if e.hint:
                    d.with_note(e.hint)
    resolve_nested(func, unifier)


def resolve_nested(func: Op, unifier: Unifier) -> None:
    """Rewrite every type in ``func`` with the final bindings, region bodies included (kernel
    and scan bodies are typed while their op is inferred, before later unifications)."""
    for op in func.walk():
        for region in op.regions:
            for block in region.blocks:
                for a in block.args:
                    a.type = unifier.resolve_type(a.type)
        for r in op.results:
            r.type = unifier.resolve_type(r.type)


@register_pass
@dataclass
class ShapeInferencePass(Pass):
    name = "shape-infer"
    level = "graph"
    summary = "infer symbolic result shapes of every op, unifying equal dims module-wide"

    def run(self, module: Module, ctx: PassContext) -> None:
        unifier = Unifier(module.attributes.get("dims"))
        for func in module.funcs:
            infer_func(func, unifier, ctx.diags)
        if "dims" in module.attributes and unifier.ranges:
            module.attributes["dims"] = {
                k: v for k, v in sorted(unifier.ranges.items()) if k not in unifier.bindings
            }
        if unifier.constraints:
            module.attributes["dim_constraints"] = [
                [str(unifier.resolve(e)), lo, hi] for e, lo, hi in unifier.constraints
            ]
