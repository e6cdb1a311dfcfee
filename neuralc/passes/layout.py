"""``layout``: choose the data layout of convolutions for the target.

The DSL and the tensor IR are channels-last. A target that prefers channels-first convs (cuDNN
and most GPU kernels do) asks this pass to run each ``tensor.conv`` as ``layout = "nchw"``
between two transposes; the transposes are then sunk through elementwise ops (bias adds,
activations, residual adds) until two of them meet and cancel, so a chain of convs converts
its layout once at each end instead of around every conv.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, Op, Rewriter, Value, func_body
from neuralc.ir.dialects.tensor import ConvOp, TransposeOp
from neuralc.ir.opdef import DefinedOp
from neuralc.ir.rewrite import CanonicalizationPattern, RewritePattern, apply_patterns
from neuralc.ir.shapes import ShapeContext, Unifier
from neuralc.ir.types import unranked
from neuralc.passes.analysis import is_load_time
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass

LAYOUTS = ("channels_last", "channels_first")


def _emit(anchor: Op, name: str, operands: list[Value], attrs: dict, unifier: ShapeContext,
          rewriter: Rewriter, after: bool = False, result_type=None) -> Value:
    op = Op(name, operands, [result_type or unranked(operands[0].type.dtype)], attrs,
            location=anchor.location)
    (rewriter.insert_after if after else rewriter.insert_before)(anchor, op)
    if result_type is None:
        assert isinstance(op, DefinedOp)
        rewriter.set_type(op.result, op.infer_types(unifier)[0])
    return op.result


def _to_first(nd: int) -> list[int]:
    return [0, nd + 1, *range(1, nd + 1)]


def _to_last(nd: int) -> list[int]:
    return [0, *range(2, nd + 2), 1]


def _sink_once(t: Op, unifier: ShapeContext, rewriter: Rewriter) -> bool:
    """Move transpose ``t`` below its single elementwise user; True if the IR changed."""
    x = t.operands[0]
    perm = t.attributes["perm"]
    users = t.result.users()
    if len(users) != 1 or len(t.result.uses) != 1:
        return False
    u = users[0]
    if u.name == "tensor.unary":
        inner = _emit(u, "tensor.unary", [x], dict(u.attributes), unifier, rewriter)
    elif u.name == "tensor.binary":
        a, b = u.operands
        other = b if a is t.result else a
        first = a is t.result
        other_op = getattr(other, "op", None)
        same_perm = (other_op is not None and other_op.name == "tensor.transpose"
                     and other_op.attributes["perm"] == perm and other is not t.result)
        if same_perm:
            assert other_op is not None
            new_other = other_op.operands[0]
        elif other.type.shape is not None and x.type.shape is not None and (
                len(other.type.shape) == 0
                or (is_load_time(other) and all(d == 1 for d in other.type.shape[:-1]))):
            # A scalar, or a per-channel value broadcast on the last axis: put its channels
            # where the transposed layout keeps them.
            rank = len(x.type.shape)
            if len(other.type.shape) == 0:
                new_other = other
            else:
                # The transpose moved x's axis perm[-1] last: that is where channels live in x.
                shape = [1] * rank
                shape[perm[-1]] = other.type.shape[-1]
                new_other = _emit(u, "tensor.reshape", [other], {}, unifier, rewriter,
                                  result_type=other.type.with_shape(tuple(shape)))
        else:
            return False
        ops = [x, new_other] if first else [new_other, x]
        inner = _emit(u, "tensor.binary", ops, dict(u.attributes), unifier, rewriter)
    else:
        return False
    out = _emit(u, "tensor.transpose", [inner], {"perm": list(perm)}, unifier, rewriter)
    rewriter.replace_op(u, [out])
    return True


class SinkTranspose(RewritePattern):
    """A transpose with one elementwise user moves below it, so transposes meet and cancel."""

    roots = (TransposeOp,)

    def __init__(self, unifier: ShapeContext):
        self.unifier = unifier

    def match_and_rewrite(self, op: Op, rewriter: Rewriter) -> bool:
        return _sink_once(op, self.unifier, rewriter)


def to_channels_first(module: Module) -> int:
    """Run every channels-last conv channels-first between transposes, then sink the
    transposes until they cancel; returns the number of convs converted."""
    unifier = Unifier(module.attributes.get("dims"))
    rewriter = Rewriter()
    converted = 0
    for func in module.funcs:
        for conv in list(func_body(func).ops):
            if not isinstance(conv, ConvOp) or conv.layout != "nhwc":
                continue
            x = conv.operands[0]
            assert x.type.shape is not None
            nd = len(x.type.shape) - 2
            t_in = _emit(conv, "tensor.transpose", [x], {"perm": _to_first(nd)}, unifier,
                         rewriter)
            rewriter.set_operand(conv, 0, t_in)
            rewriter.set_attr(conv, "layout", "nchw")
            old_type = conv.result.type
            rewriter.set_type(conv.result, conv.infer_types(unifier)[0])
            users = list(conv.result.uses)
            t_out = _emit(conv, "tensor.transpose", [conv.result], {"perm": _to_last(nd)},
                          unifier, rewriter, after=True)
            assert t_out.type == old_type, (t_out.type, old_type)
            for use in users:
                rewriter.set_operand(use.op, use.index, t_out)
            converted += 1
    apply_patterns(module, [SinkTranspose(unifier), CanonicalizationPattern()])
    return converted


@register_pass
@dataclass
class LayoutPass(Pass):
    name = "layout"
    level = "tensor"
    summary = "run convolutions in the target's layout, cancelling the transposes it needs"
    target: str = "channels_first"

    def option_problem(self) -> str | None:
        if self.target not in LAYOUTS:
            return f"unknown target layout '{self.target}'; use {' or '.join(LAYOUTS)}"
        return None

    def run(self, module: Module, ctx: PassContext) -> None:
        problem = self.option_problem()
        if problem is not None:
            ctx.diags.error(f"layout: {problem}")
            return
        if self.target == "channels_first":
            to_channels_first(module)
