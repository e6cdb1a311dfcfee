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
from neuralc.ir.opdef import lookup_op
from neuralc.ir.shapes import Unifier
from neuralc.ir.types import unranked
from neuralc.passes.analysis import is_load_time
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.canonicalize import canonicalize
from neuralc.passes.registry import register_pass

LAYOUTS = ("channels_last", "channels_first")


def _emit(anchor: Op, name: str, operands: list[Value], attrs: dict, unifier: Unifier,
          after: bool = False, result_type=None) -> Value:
    op = Op(name, operands, [result_type or unranked(operands[0].type.dtype)], attrs,
            location=anchor.location)
    block = anchor.parent
    assert block is not None
    (block.insert_after if after else block.insert_before)(anchor, op)
    if result_type is None:
        opdef = lookup_op(name)
        assert opdef is not None
        op.result.type = opdef.infer_types(op, unifier)[0]
    return op.result


def _to_first(nd: int) -> list[int]:
    return [0, nd + 1, *range(1, nd + 1)]


def _to_last(nd: int) -> list[int]:
    return [0, *range(2, nd + 2), 1]


def _sink_once(t: Op, unifier: Unifier) -> bool:
    """Move transpose ``t`` below its single elementwise user; True if the IR changed."""
    x = t.operands[0]
    perm = t.attributes["perm"]
    users = t.result.users()
    if len(users) != 1 or len(t.result.uses) != 1:
        return False
    u = users[0]
    if u.name == "tensor.unary":
        inner = _emit(u, "tensor.unary", [x], dict(u.attributes), unifier)
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
                new_other = _emit(u, "tensor.reshape", [other], {}, unifier,
                                  result_type=other.type.with_shape(tuple(shape)))
        else:
            return False
        ops = [x, new_other] if first else [new_other, x]
        inner = _emit(u, "tensor.binary", ops, dict(u.attributes), unifier)
    else:
        return False
    out = _emit(u, "tensor.transpose", [inner], {"perm": list(perm)}, unifier)
    Rewriter().replace_op(u, [out])
    return True


def to_channels_first(module: Module) -> int:
    unifier = Unifier(module.attributes.get("dims"))
    converted = 0
    for func in module.funcs:
        for conv in list(func_body(func).ops):
            if conv.name != "tensor.conv" or conv.attributes.get("layout", "nhwc") != "nhwc":
                continue
            x = conv.operands[0]
            assert x.type.shape is not None
            nd = len(x.type.shape) - 2
            t_in = _emit(conv, "tensor.transpose", [x], {"perm": _to_first(nd)}, unifier)
            conv.set_operand(0, t_in)
            conv.attributes["layout"] = "nchw"
            old_type = conv.result.type
            conv.result.type = lookup_op("tensor.conv").infer_types(conv, unifier)[0]
            users = list(conv.result.uses)
            t_out = _emit(conv, "tensor.transpose", [conv.result], {"perm": _to_last(nd)},
                          unifier, after=True)
            assert t_out.type == old_type, (t_out.type, old_type)
            for use in users:
                use.op.set_operand(use.index, t_out)
            converted += 1
        changed = True
        while changed:
            changed = False
            for op in list(func_body(func).ops):
                if op.parent is None or op.name != "tensor.transpose":
                    continue
                if _sink_once(op, unifier):
                    changed = True
            canonicalize(module)
    return converted


@register_pass
@dataclass
class LayoutPass(Pass):
    name = "layout"
    level = "tensor"
    summary = "run convolutions in the target's layout, cancelling the transposes it needs"
    target: str = "channels_first"

    def run(self, module: Module, ctx: PassContext) -> None:
        if self.target not in LAYOUTS:
            ctx.diags.error(f"layout: unknown target layout '{self.target}'; "
                            f"use {' or '.join(LAYOUTS)}")
            return
        if self.target == "channels_first":
            to_channels_first(module)
