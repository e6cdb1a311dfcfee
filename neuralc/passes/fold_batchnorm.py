"""``fold-batchnorm``: fold a per-channel affine that follows a conv or matmul into its weights.

BatchNorm lowers to ``y * scale + shift`` where ``scale`` and ``shift`` are computed from
weights only. After a conv (or a matmul with PyTorch-layout weights), that is the same as a
conv with weights ``W * scale`` (per output channel) and bias ``b * scale + shift``. The new
weights are tensor ops on constants, computed once when weights are loaded (they are
"load-time" values: every operand is a constant or another load-time value), so each
inference saves a multiply and an add per element and the kernel is a plain conv + bias.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, Op, Rewriter, Value
from neuralc.ir.dialects.tensor import ConvOp, MatmulOp
from neuralc.ir.rewrite import RewritePattern, apply_patterns
from neuralc.ir.types import TensorType
from neuralc.passes.analysis import is_load_time
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


def hoist_before(anchor: Op, values: list[Value], rewriter: Rewriter) -> None:
    """Move the load-time ops computing ``values`` (and what they read) before ``anchor``.

    BatchNorm's scale and shift are computed after the conv they follow; folding uses them in
    the conv's weights, so their (weight-only) computation moves up, keeping program order.
    """
    block = anchor.parent
    assert block is not None
    needed: set[int] = set()

    def visit(v: Value) -> None:
        op = getattr(v, "op", None)
        if op is None or id(op) in needed:
            return
        needed.add(id(op))
        for x in op.operands:
            visit(x)

    for v in values:
        visit(v)
    pos = block.ops.index(anchor)
    movers = [op for op in block.ops[pos + 1:] if id(op) in needed]
    for op in movers:
        rewriter.move_before(op, anchor)


def _per_channel(v: Value, channels: object) -> bool:
    """``v`` broadcasts along the last axis only: shape (C,) or (1, ..., 1, C)."""
    shape = v.type.shape
    return (shape is not None and len(shape) >= 1 and shape[-1] == channels
            and all(d == 1 for d in shape[:-1]))


def _single_use(v: Value) -> bool:
    return len(v.uses) == 1


class _Folder:
    def __init__(self, anchor: Op, rewriter: Rewriter):
        self.anchor = anchor
        self.rewriter = rewriter

    def op(self, name: str, operands: list[Value], attrs: dict, t: TensorType) -> Value:
        new = Op(name, operands, [t], attrs, location=self.anchor.location)
        self.rewriter.insert_before(self.anchor, new)
        return new.result


class FoldAffineIntoWeights(RewritePattern):
    """conv/matmul(x, W) [+ b] then * scale [+ shift], per output channel, with W, b, scale
    and shift load-time values: becomes conv/matmul(x, W * scale) + (b * scale + shift)."""

    roots = (ConvOp, MatmulOp)

    def match_and_rewrite(self, op: Op, rewriter: Rewriter) -> bool:
        if isinstance(op, MatmulOp) and not op.transpose_b:
            return False
        weight = op.operands[1]
        if not is_load_time(weight) or weight.type.shape is None:
            return False
        return _fold(op, weight, rewriter)


def _fold(op: Op, weight: Value, rewriter: Rewriter) -> bool:
    out_ch = weight.type.shape[0]
    y = op.result
    bias: Value | None = None
    bias_op: Op | None = None
    # Optional bias add.
    users = y.users()
    if (len(users) == 1 and users[0].name == "tensor.binary"
            and users[0].attributes["fn"] == "add"):
        other = [v for v in users[0].operands if v is not y]
        if other and is_load_time(other[0]) and _per_channel(other[0], out_ch):
            bias, bias_op = other[0], users[0]
    z = bias_op.result if bias_op is not None else y
    mul = z.users()
    if not (_single_use(z) and len(mul) == 1 and mul[0].name == "tensor.binary"
            and mul[0].attributes["fn"] == "mul"):
        return False
    scale = [v for v in mul[0].operands if v is not z]
    if not scale or not is_load_time(scale[0]) or not _per_channel(scale[0], out_ch):
        return False
    scale_v = scale[0]
    m = mul[0].result
    add = m.users()
    shift_v: Value | None = None
    add_op: Op | None = None
    if _single_use(m) and len(add) == 1 and add[0].name == "tensor.binary" \
            and add[0].attributes["fn"] == "add":
        other = [v for v in add[0].operands if v is not m]
        if other and is_load_time(other[0]) and _per_channel(other[0], out_ch):
            shift_v, add_op = other[0], add[0]
    hoist_before(op, [v for v in (scale_v, shift_v, bias) if v is not None], rewriter)
    f = _Folder(op, rewriter)
    wt = weight.type
    assert wt.shape is not None
    flat_scale = f.op("tensor.reshape", [scale_v], {}, TensorType((out_ch,), "f32"))
    s_shape = (out_ch,) + (1,) * (len(wt.shape) - 1)
    s_w = f.op("tensor.reshape", [flat_scale], {}, TensorType(s_shape, wt.dtype))
    new_w = f.op("tensor.binary", [weight, s_w], {"fn": "mul"}, wt)
    new_b: Value | None = None
    if bias is not None:
        flat_b = f.op("tensor.reshape", [bias], {}, TensorType((out_ch,), "f32"))
        new_b = f.op("tensor.binary", [flat_b, flat_scale], {"fn": "mul"},
                     TensorType((out_ch,), "f32"))
    if shift_v is not None:
        flat_t = f.op("tensor.reshape", [shift_v], {}, TensorType((out_ch,), "f32"))
        new_b = flat_t if new_b is None else f.op(
            "tensor.binary", [new_b, flat_t], {"fn": "add"}, TensorType((out_ch,), "f32"))
    rewriter.set_operand(op, 1, new_w)
    last = add_op if add_op is not None else mul[0]
    out: Value = op.result
    if new_b is not None:
        badd = Op("tensor.binary", [op.result, new_b], [op.result.type], {"fn": "add"},
                  location=last.location)
        rewriter.insert_before(last, badd)
        out = badd.result
    # Replace the affine chain by the folded conv (+ bias).
    rewriter.replace_all_uses(last.results[0], out)
    for dead in (add_op, mul[0], bias_op):
        if dead is not None and dead.parent is not None and not dead.results[0].uses:
            rewriter.erase_op(dead)
    return True


def fold(module: Module) -> int:
    """Fold every per-channel affine that follows a conv or matmul; returns the changes."""
    return apply_patterns(module, [FoldAffineIntoWeights()], erase_dead=False)


@register_pass
@dataclass
class FoldBatchNormPass(Pass):
    name = "fold-batchnorm"
    level = "tensor"
    summary = "fold per-channel scale/shift after conv or matmul into its weights and bias"

    def run(self, module: Module, ctx: PassContext) -> None:
        fold(module)
