"""``precision``: run the model in fp16 or bf16 where that is safe, with casts at the borders.

Each op is asked its precision policy (:func:`~neuralc.passes.analysis.precision_policy`):

- ``low`` (matmul, conv, attention) computes in the low type: its float operands are cast to
  f16/bf16. Accumulation stays fp32: the reference semantics of these ops multiply and sum in
  float32 and round once to the result type, as tensor cores do, so the pass changes only the
  operand and result types.
- ``follow`` ops (elementwise arithmetic, data movement) compute in the widest float type of
  their non-constant operands; constants (weights and fills) adapt to it. A bias add after an
  f16 matmul thus runs in f16, while ``x - mean(x)`` inside a layer norm stays f32, because
  the mean is f32. (Taking "any low input" instead would run that subtraction in f16 and lose
  the digits a norm exists to keep.)
- ``never`` ops (reductions, exp/log/rsqrt and the activations built on them, recurrences)
  compute in f32: low operands are cast up.

Casts already in the input are kept as written (they are the user's conversions), and an op
whose operands are not floats (indices, masks) is left alone.

Modes: ``fp32`` changes nothing. ``fp16``/``bf16`` use that low type for ``low`` ops and let
``follow`` ops follow, so chains of matmul, bias and relu stay low. ``mixed`` runs only ``low``
ops in f16 and casts each result straight back to f32, so everything else stays f32.

The function signature never changes: inputs stay f32 (the first ``low`` op casts them), and a
low result returned by the function is cast back to f32 (the CLI's ``--keep-io-fp32`` is thus
what this pass always does). Casts are made once per value and type, right after the value's
definition, and a final sweep removes casts that do nothing: a cast to the type a value already
has, a cast of an exact widening (``f16 -> f32 -> T`` is ``f16 -> T``; ``f16 -> f32 -> f16`` is
the f16 value), duplicates and dead casts. ``f32 -> f16 -> f32`` is kept: it rounds.

Constants: a weight's values are known only at run time, so it is cast like any operand (a
weight beyond 65504 becomes inf in f16; the runtime, which sees the values, must check). A
scalar fill ``tensor.constant {value = c}`` is checked here: if ``c`` would overflow or round
to zero in f16 it stays f32, the op that uses it runs in f32, and a warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuralc.diagnostics import DiagnosticEngine
from neuralc.ir.core import Block, BlockArgument, Module, Op, OpResult, Rewriter, Value, func_body
from neuralc.ir.dialects.tensor import round_bf16
from neuralc.ir.types import PRECISIONS, TensorType
from neuralc.passes.analysis import precision_policy
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass

MODES = PRECISIONS  # one list of precisions: the DSL section, the CLI and this pass
LOW_TYPE = {"fp16": "f16", "bf16": "bf16", "mixed": "f16"}
FLOATS = ("f32", "f16", "bf16")  # the types this pass moves between (f64 is left alone)
_RANK = {"bf16": 0, "f16": 0, "f32": 1}
# Conversions that keep every value exactly (so a later cast may skip them).
_EXACT = {("f16", "f32"), ("bf16", "f32"), ("f16", "f64"), ("bf16", "f64"), ("f32", "f64")}


def fill_problem(value: float, dtype: str) -> str | None:
    """Why the fill ``value`` cannot be held in ``dtype`` (overflow, flush to 0), or None."""
    v = float(value)
    if not np.isfinite(v) or v == 0.0:
        return None
    if dtype == "f16":
        with np.errstate(over="ignore"):
            low = float(np.float16(v))
        largest = float(np.finfo(np.float16).max)
    elif dtype == "bf16":
        low = float(round_bf16(np.array([v], np.float32))[0])
        largest = 3.3895313892515355e38
    else:
        return None
    if not np.isfinite(low):
        return f"it exceeds the largest finite {dtype} value, {largest:g}"
    if low == 0.0:
        return f"it rounds to 0 in {dtype}"
    return None


def _fill(v: Value) -> float | None:
    if isinstance(v, OpResult) and v.op.name == "tensor.constant" and "value" in v.op.attributes:
        return float(v.op.attributes["value"])
    return None


def _is_constant(v: Value) -> bool:
    """A constant, seen through the block arguments of kernel bodies (weights enter there)."""
    while isinstance(v, BlockArgument):
        owner = v.block.parent.parent if v.block.parent is not None else None
        if owner is None or owner.name != "kernel.fused":
            return False
        v = owner.operands[v.index]
    return isinstance(v, OpResult) and v.op.name == "tensor.constant"


class _Converter:
    """Rewrites one function, block by block, in program order (types flow forward)."""

    def __init__(self, mode: str, diags: DiagnosticEngine):
        self.mode = mode
        self.low = LOW_TYPE[mode]
        self.diags = diags
        self.casts: dict[tuple[int, str, int], Value] = {}
        self.warned: set[int] = set()

    def cast(self, v: Value, to: str, block: Block, at: Op) -> Value:
        """``v`` as ``to``: one cast per value and type, placed right after its definition."""
        if v.type.dtype == to:
            return v
        key = (id(v), to, id(block))
        if key in self.casts:
            return self.casts[key]
        t = TensorType(v.type.shape, to)
        if isinstance(v, OpResult) and v.op.parent is block:
            c = Op("tensor.cast", [v], [t], {"to": to}, location=v.op.location)
            block.insert_after(v.op, c)
        else:
            c = Op("tensor.cast", [v], [t], {"to": to}, location=at.location)
            first = block.ops[0]
            block.insert_before(first, c)
        self.casts[key] = c.result
        return c.result

    def block(self, block: Block) -> None:
        for op in list(block.ops):
            if op.name == "func.return":
                for k, v in enumerate(op.operands):
                    if v.type.dtype in ("f16", "bf16"):
                        op.set_operand(k, self.cast(v, "f32", block, op))
            elif op.name == "kernel.fused":
                body = op.regions[0].block
                for arg, v in zip(body.args, op.operands):
                    arg.type = v.type
                self.block(body)
                term = body.terminator
                assert term is not None
                for r, v in zip(op.results, term.operands):
                    r.type = v.type
            elif op.name not in ("tensor.constant", "tensor.cast", "kernel.yield"):
                self.op(op, block)

    def target(self, op: Op) -> str:
        """The float type ``op`` computes in, before looking at fills that cannot follow."""
        policy = precision_policy(op)
        if policy == "low":
            return self.low
        if policy == "never" or self.mode == "mixed":
            return "f32"
        kinds = [v.type.dtype for v in op.operands
                 if v.type.dtype in FLOATS and not _is_constant(v)]
        if not kinds:
            return "f32"
        return max(kinds, key=lambda d: _RANK[d])

    def op(self, op: Op, block: Block) -> None:
        floats = [k for k, v in enumerate(op.operands) if v.type.dtype in FLOATS]
        if not floats:
            return
        to = self.target(op)
        if to != "f32":
            for k in floats:
                c = _fill(op.operands[k])
                problem = fill_problem(c, to) if c is not None else None
                if problem is not None:
                    self.warn(op, op.operands[k], c, problem)
                    to = "f32"
                    break
        for k in floats:
            v = op.operands[k]
            if v.type.dtype != to:
                op.set_operand(k, self.cast(v, to, block, op))
        for r in op.results:
            if r.type.dtype in FLOATS and r.type.dtype != to:
                r.type = TensorType(r.type.shape, to)
        if self.mode == "mixed" and to != "f32":
            for r in op.results:
                if r.type.dtype == to:
                    self._cast_back(op, r, block)

    def _cast_back(self, op: Op, r: OpResult, block: Block) -> None:
        """In mixed mode a low result is cast to f32 at once; every user reads the f32 value."""
        users = list(r.uses)
        up = self.cast(r, "f32", block, op)
        for u in users:
            u.op.set_operand(u.index, up)

    def warn(self, op: Op, v: Value, c: float, problem: str) -> None:
        assert isinstance(v, OpResult)
        if id(v.op) in self.warned:
            return
        self.warned.add(id(v.op))
        fn = op.attributes.get("fn")
        what = f"{op.name} ({fn})" if fn else op.name
        self.diags.warning(
            f"constant {c:g} stays f32 under precision mode {self.mode}: {problem}; "
            f"the {what} that uses it runs in f32", v.op.location)


def simplify_casts(block: Block) -> int:
    """Remove casts that are exact no-ops or collapse to one equivalent cast; returns count.

    Kept: any cast that rounds (``f32 -> f16 -> f32`` is not an identity).
    """
    rewriter = Rewriter()
    removed = 0
    changed = True
    while changed:
        changed = False
        seen: dict[tuple[int, str], Op] = {}
        for op in list(block.ops):
            for region in op.regions:
                for b in region.blocks:
                    removed += simplify_casts(b)
            if op.name != "tensor.cast":
                continue
            x = op.operands[0]
            to = op.attributes["to"]
            inner = x.op if isinstance(x, OpResult) and x.op.name == "tensor.cast" else None
            if inner is not None and (inner.operands[0].type.dtype, x.type.dtype) in _EXACT:
                op.set_operand(0, inner.operands[0])  # cast(widen(y), T) == cast(y, T)
                x = inner.operands[0]
                changed = True
            if not op.results[0].uses:
                rewriter.erase_op(op)
            elif x.type == op.results[0].type:
                rewriter.replace_op(op, [x])
            elif (id(x), to) in seen:
                rewriter.replace_op(op, list(seen[(id(x), to)].results))
            else:
                seen[(id(x), to)] = op
                continue
            removed += 1
            changed = True
    return removed


@register_pass
@dataclass
class PrecisionPass(Pass):
    """Option ``mode``: fp32 (no change), fp16, bf16 or mixed."""

    name = "precision"
    level = "tensor"
    summary = "compute matmul/conv (and what follows them) in fp16/bf16 with casts at borders"

    mode: str = "fp32"

    def run(self, module: Module, ctx: PassContext) -> None:
        if self.mode not in MODES:
            ctx.diags.error(f"precision: unknown mode '{self.mode}'; use one of "
                            f"{', '.join(MODES)}")
            return
        if self.mode == "fp32":
            return
        for func in module.funcs:
            _Converter(self.mode, ctx.diags).block(func_body(func))
            simplify_casts(func_body(func))
