"""Running and typing the single block of a region op (``kernel.fused``, ``tensor.scan``).

A region body is a straight list of ops ending in a terminator (an op with no results whose
operands are what the region yields). Both the shape inference and the reference semantics of
region ops walk that list the same way; this module is that walk, once, and the one rule by
which the verifier compares a region's types with the values that feed it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.ir.core import Block, Op
from neuralc.ir.opdef import DefinedOp, evaluate_op
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType


def infer_block(body: Block, ctx: ShapeContext, terminator: str, owner: str) -> Op:
    """Type every op of ``body`` in order from its operands; returns the terminator."""
    for inner in body.ops:
        if inner.name == terminator:
            return inner
        if not isinstance(inner, DefinedOp):
            raise ShapeError(f"unknown op '{inner.name}' in {owner}")
        for v in inner.operands:
            if v.type.shape is not None:
                v.type = v.type.with_shape(tuple(ctx.resolve(d) for d in v.type.shape))
        for r, t in zip(inner.results, inner.infer_types(ctx)):
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
        assert isinstance(inner, DefinedOp), inner.name
        for r, y in zip(inner.results, evaluate_op(inner, ins, ctx)):
            env[id(r)] = np.asarray(y)
    raise AssertionError(f"a region body without {terminator}")


def type_problems(got: TensorType, want: TensorType, what: str) -> list[str]:
    """A region value must have exactly the type of the value it stands for; before shape
    inference (an unranked side) only the element type is compared."""
    if got.dtype != want.dtype or (got.shape is not None and want.shape is not None
                                   and got != want):
        return [f"{what} is {got}, expected {want}"]
    return []
