"""Running and typing the single block of a region op (``kernel.fused``, ``tensor.scan``).

A region body is a straight list of ops ending in a terminator (an op with no results whose
operands are what the region yields). Both the shape inference and the reference semantics of
region ops walk that list the same way; this module is that walk, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.ir.core import Block, Op
from neuralc.ir.opdef import evaluate_op, lookup_op
from neuralc.ir.shapes import ShapeContext, ShapeError


def infer_block(body: Block, ctx: ShapeContext, terminator: str, owner: str) -> Op:
    """Type every op of ``body`` in order from its operands; returns the terminator."""
    for inner in body.ops:
        if inner.name == terminator:
            return inner
        opdef = lookup_op(inner.name)
        if opdef is None:
            raise ShapeError(f"unknown op '{inner.name}' in {owner}")
        for v in inner.operands:
            if v.type.shape is not None:
                v.type = v.type.with_shape(tuple(ctx.resolve(d) for d in v.type.shape))
        for r, t in zip(inner.results, opdef.infer_types(inner, ctx)):
            r.type = t
    raise ShapeError(f"{owner} body without {terminator}")


def run_block(body: Block, args: list[np.ndarray], ctx: Any, terminator: str) -> list[np.ndarray]:
    """Run ``body`` on ``args`` (its block arguments) with each op's reference semantics;
    returns what its terminator yields."""
    env = {id(a): x for a, x in zip(body.args, args)}
    for inner in body.ops:
        ins = [env[id(v)] for v in inner.operands]
        if inner.name == terminator:
            return ins
        opdef = lookup_op(inner.name)
        assert opdef is not None, inner.name
        for r, y in zip(inner.results, evaluate_op(opdef, inner, ins, ctx)):
            env[id(r)] = np.asarray(y)
    raise AssertionError(f"a region body without {terminator}")
