"""``pack-weights``: put each matmul's and convolution's weights in the layout a CPU kernel
vectorised over output channels reads contiguously.

PyTorch's layouts put the output channel first: a dense weight is (out, in), a convolution's
(out, in/groups, *k), a transposed convolution's (in, out/groups, *k). A kernel that computes
16 output channels at once in vector lanes wants them last: (in, out), (*k, in/groups, out)
and (*k, in, out/groups) ("hwio"). The transposes are work on weights
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

from neuralc.ir.core import BlockArgument, Module, Op, Rewriter, Value
from neuralc.ir.dialects.tensor import ConvOp, MatmulOp
from neuralc.ir.dialects.tensor_spatial import ConvTransposeOp
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


def _pack_scan_invariant(op: MatmulOp, rewriter: Rewriter) -> bool:
    """A recurrence's weight: the matmul's rhs is a block argument of a ``tensor.scan``
    bound to a load-time operand (an LSTM's recurrent weight, (4h, h)). The scan's operand is
    transposed outside it (at load time) and every use inside becomes a plain matmul, so a
    time step's recurrent product vectorises over the gates' outputs."""
    w = op.operands[1]
    if not isinstance(w, BlockArgument):
        return False
    block = w.block
    scan = block.parent.parent if block.parent is not None else None
    if scan is None or scan.name != "tensor.scan":
        return False
    k = w.index
    ns, nc = int(scan.attributes["num_scanned"]), int(scan.attributes["num_carried"])
    outer = scan.operands[k]
    if k < ns + nc or outer.type.shape is None or len(outer.type.shape) != 2 \
            or not is_load_time(outer):
        return False
    users = w.users()
    if not all(isinstance(u, MatmulOp) and u.transpose_b and u.operands[1] is w
               and u.operands[0] is not w for u in users):
        return False
    packed = _transpose(scan, outer, [1, 0], rewriter)
    rewriter.set_operand(scan, k, packed)
    rewriter.set_type(w, packed.type)
    for u in users:
        rewriter.set_attr(u, "transpose_b", False)
    return True


def pack(module: Module, min_columns: int = 32) -> int:
    rewriter = Rewriter()
    packed = 0
    for op in list(module.walk()):
        if isinstance(op, MatmulOp) and op.transpose_b and _pack_scan_invariant(op, rewriter):
            packed += 1
            continue
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
        elif isinstance(op, ConvTransposeOp) and op.weight_layout == "iohw":
            nd = len(w.type.shape) - 2
            perm = [*range(2, nd + 2), 0, 1]
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
