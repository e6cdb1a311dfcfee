"""``decompose-attention``: ``tensor.attention`` as the matmuls and the softmax it is made of.

``softmax(q k^T * scale [+ causal mask]) v`` becomes a transpose of k, a batched matmul, a
scale, the mask (``iota`` rows and columns, a compare and a select), a max-shifted softmax
(reduce max, subtract, exp, reduce sum, divide) and a second batched matmul, all in float32
(casts around it where the inputs are narrower, as the fused op computes internally).

Why: a code generator that computes element by element can only evaluate the fused op by
recomputing each score for every output feature and for the row's max and sum; decomposed,
the scores are computed once into a (..., q, k) buffer by a register-tiled matmul, and the
softmax and the second matmul are ordinary kernels of their own (what onnxruntime does with
the same graph). The cost is that buffer: batch x heads x q x k floats in the arena.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neuralc.ir.builder import TensorBuilder
from neuralc.ir.core import Module, Rewriter, Value
from neuralc.ir.dialects.tensor import AttentionOp
from neuralc.ir.shapes import Unifier
from neuralc.ir.types import TensorType
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


def _f32(b: TensorBuilder, x: Value) -> Value:
    return x if x.type.dtype == "f32" else b.op("tensor.cast", [x], {"to": "f32"})


def decompose(op: AttentionOp, b: TensorBuilder) -> Value:
    """The ops that replace ``op`` (inserted before it); returns the new result."""
    q, k, v = (_f32(b, x) for x in op.operands)
    assert q.type.shape is not None and k.type.shape is not None
    depth, rows, cols = q.type.shape[-1], q.type.shape[-2], k.type.shape[-2]
    scale = op.scale if op.scale is not None else 1.0 / math.sqrt(int(depth))
    # k^T as a tensor: the transpose fuses into the kernel that produces k (its store goes
    # to (d, keys)), and the scores' matmul then reads rows of keys contiguously.
    perm = list(range(len(k.type.shape)))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    s = b.op("tensor.matmul", [q, b.transpose(k, perm)])
    s = b.binary("mul", s, b.scalar(scale))
    if op.causal:  # top-left aligned: query i sees keys j <= i
        i = b.op("tensor.iota", [], {"axis": 0}, TensorType((rows, 1), "i32"))
        j = b.op("tensor.iota", [], {"axis": 1}, TensorType((1, cols), "i32"))
        seen = b.op("tensor.compare", [j, i], {"fn": "le"})
        s = b.op("tensor.select", [seen, s, b.scalar(float("-inf"))])
    p = b.activation("softmax", s)
    out = b.op("tensor.matmul", [p, v])
    dtype = op.results[0].type.dtype
    return out if dtype == "f32" else b.op("tensor.cast", [out], {"to": dtype})


def decompose_all(module: Module) -> int:
    unifier = Unifier(module.attributes.get("dims"))
    rewriter = Rewriter()
    count = 0
    for op in [o for o in module.walk() if isinstance(o, AttentionOp)]:
        if op.operands[0].type.shape is None or op.operands[1].type.shape is None:
            continue
        if op.scale is None and not isinstance(op.operands[0].type.shape[-1], int):
            continue  # 1/sqrt(d) of a symbolic depth: the op's own lowering computes it
        out = decompose(op, TensorBuilder(op, {}, unifier, rewriter))
        rewriter.replace_op(op, [out])
        count += 1
    return count


@register_pass
@dataclass
class DecomposeAttentionPass(Pass):
    name = "decompose-attention"
    level = "tensor"
    summary = "attention as matmul, softmax and matmul (scores computed once, in a buffer)"

    def run(self, module: Module, ctx: PassContext) -> None:
        decompose_all(module)
