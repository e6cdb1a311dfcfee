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
from neuralc.ir.dialects.tensor import CastOp, round_bf16
from neuralc.ir.rewrite import RewritePattern, apply_patterns
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

    def __init__(self, mode: str, diags: DiagnosticEngine, rewriter: Rewriter):
        self.mode = mode
        self.rewriter = rewriter
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
            self.rewriter.insert_after(v.op, c)
        else:
            c = Op("tensor.cast", [v], [t], {"to": to}, location=at.location)
            self.rewriter.insert_before(block.ops[0], c)
        self.casts[key] = c.result
        return c.result

    def block(self, block: Block) -> None:
        for op in list(block.ops):
            if op.name == "func.return":
                for k, v in enumerate(op.operands):
                    if v.type.dtype in ("f16", "bf16"):
                        self.rewriter.set_operand(op, k, self.cast(v, "f32", block, op))
            elif op.name == "kernel.fused":
                body = op.regions[0].block
                for arg, v in zip(body.args, op.operands):
                    self.rewriter.set_type(arg, v.type)
                self.block(body)
                term = body.terminator
                assert term is not None
                for r, v in zip(op.results, term.operands):
                    self.rewriter.set_type(r, v.type)
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
                self.rewriter.set_operand(op, k, self.cast(v, to, block, op))
        for r in op.results:
            if r.type.dtype in FLOATS and r.type.dtype != to:
                self.rewriter.set_type(r, TensorType(r.type.shape, to))
        if self.mode == "mixed" and to != "f32":
            for r in op.results:
                if r.type.dtype == to:
                    self._cast_back(op, r, block)

    def _cast_back(self, op: Op, r: OpResult, block: Block) -> None:
        """In mixed mode a low result is cast to f32 at once; every user reads the f32 value."""
        users = list(r.uses)
        up = self.cast(r, "f32", block, op)
        for u in users:
            self.rewriter.set_operand(u.op, u.index, up)

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


class SkipExactWidening(RewritePattern):
    """``cast(widen(y), T) == cast(y, T)`` when ``widen`` keeps every value exactly."""

    roots = (CastOp,)

    def match_and_rewrite(self, op: Op, rewriter: Rewriter) -> bool:
        x = op.operands[0]
        inner = x.op if isinstance(x, OpResult) and isinstance(x.op, CastOp) else None
        if inner is None or (inner.operands[0].type.dtype, x.type.dtype) not in _EXACT:
            return False
        rewriter.set_operand(op, 0, inner.operands[0])
        return True


class MergeDuplicateCast(RewritePattern):
    """Two casts of one value to one type in one block: the later one reads the earlier."""

    roots = (CastOp,)

    def match_and_rewrite(self, op: Op, rewriter: Rewriter) -> bool:
        x, block = op.operands[0], op.parent
        assert block is not None
        for user in x.users():
            if (user is not op and isinstance(user, CastOp) and user.parent is block
                    and user.to == op.attributes["to"]
                    and block.ops.index(user) < block.ops.index(op)):
                rewriter.replace_op(op, list(user.results))
                return True
        return False


class DropIdentityCast(RewritePattern):
    """A cast to the type its operand already has does nothing; a cast nobody reads goes."""

    roots = (CastOp,)

    def match_and_rewrite(self, op: Op, rewriter: Rewriter) -> bool:
        if not op.results[0].uses:
            rewriter.erase_op(op)
            return True
        if op.operands[0].type != op.results[0].type:
            return False
        rewriter.replace_op(op, [op.operands[0]])
        return True


CAST_PATTERNS = (DropIdentityCast(), SkipExactWidening(), MergeDuplicateCast())


def simplify_casts(root: Module | Op) -> int:
    """Remove casts that are exact no-ops, duplicates or dead, and collapse exact widenings;
    returns the changes. Kept: any cast that rounds (``f32 -> f16 -> f32`` is not an
    identity)."""
    return apply_patterns(root, CAST_PATTERNS, erase_dead=False)


@register_pass
@dataclass
class PrecisionPass(Pass):
    """Option ``mode``: fp32 (no change), fp16, bf16 or mixed."""

    name = "precision"
    level = "tensor"
    summary = "compute matmul/conv (and what follows them) in fp16/bf16 with casts at borders"

    mode: str = "fp32"

    def option_problem(self) -> str | None:
        if self.mode not in MODES:
            return f"unknown mode '{self.mode}'; use one of {', '.join(MODES)}"
        return None

    def run(self, module: Module, ctx: PassContext) -> None:
        problem = self.option_problem()
        if problem is not None:
            ctx.diags.error(f"precision: {problem}")
            return
        if self.mode == "fp32":
            return
        rewriter = Rewriter()
        for func in module.funcs:
            _Converter(self.mode, ctx.diags, rewriter).block(func_body(func))
        simplify_casts(module)
