"""``pack-weights``: put each matmul's and convolution's weights in the layout a CPU kernel
vectorised over output channels reads contiguously.

PyTorch's layouts put the output channel first: a dense weight is (out, in), a convolution's
(out, in/groups, *k). A kernel that computes 16 output channels at once in vector lanes wants
them last: (in, out) and (*k, in/groups, out) ("hwio"). The transposes are work on weights
alone, so ``outline-init`` moves them into the init function: they run once, at load time
(MLAS's, XNNPACK's and IREE's packing, here as ordinary IR).

Only weights computed from weights are packed (an activation stays as it is), only
channels-last convolutions, and only 2-D matmul weights (a dense layer's) with at least
``min_columns`` outputs or fewer than ``DOT_MIN_INNER`` inputs: a narrow layer with a long
inner dim (a 10-class classifier on 128 features) is faster as dot products along the
contiguous inner dim of its (out, in) weight, a few outputs at a time, than as a row of fewer
vectors than hide an FMA's latency; with a short inner dim the dot products' horizontal sums
would cost more than they save.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, Op, Rewriter, Value
from neuralc.ir.dialects.tensor import ConvOp, MatmulOp
from neuralc.passes.analysis import is_load_time
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


def _transpose(anchor: Op, v: Value, perm: list[int], rewriter: Rewriter) -> Value:
    assert v.type.shape is not None
    t = v.type.with_shape(tuple(v.type.shape[p] for p in perm))
    op = Op("tensor.transpose", [v], [t], {"perm": perm}, location=anchor.location)
    rewriter.insert_before(anchor, op)
    return op.results[0]


DOT_MIN_INNER = 64


def pack(module: Module, min_columns: int = 32) -> int:
    rewriter = Rewriter()
    packed = 0
    for op in list(module.walk()):
        w = op.operands[1] if len(op.operands) > 1 else None
        if w is None or w.type.shape is None or not is_load_time(w):
            continue
        if isinstance(op, MatmulOp) and op.transpose_b and len(w.type.shape) == 2 and (
                _at_least(w.type.shape[0], min_columns)
                or not _at_least(w.type.shape[1], DOT_MIN_INNER)):
            rewriter.set_operand(op, 1, _transpose(op, w, [1, 0], rewriter))
            rewriter.set_attr(op, "transpose_b", False)
            packed += 1
        elif isinstance(op, ConvOp) and op.layout == "nhwc" and op.weight_layout == "oihw":
            nd = len(w.type.shape) - 2
            perm = [*range(2, nd + 2), 1, 0]
            rewriter.set_operand(op, 1, _transpose(op, w, perm, rewriter))
            rewriter.set_attr(op, "weight_layout", "hwio")
            packed += 1
    return packed


def _at_least(d: object, n: int) -> bool:
    return not isinstance(d, int) or d >= n


@register_pass
@dataclass
class PackWeightsPass(Pass):
    """Option ``min_columns``: the fewest outputs a dense layer needs to be packed."""

    name = "pack-weights"
    level = "tensor"
    summary = "weights of matmuls and convs in output-channel-last layouts (transposed at load)"

    min_columns: int = 32

    def run(self, module: Module, ctx: PassContext) -> None:
        pack(module, self.min_columns)
