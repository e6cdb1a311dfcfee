"""The loop dialect: explicit iteration over buffers, below ``kernel.fused`` (the code
generators' input).

A ``loop.kernel`` is one fused kernel: its block arguments are buffers (``memref``s: the
kernel's inputs, outputs and scratch), its body loop nests over named index variables. Index
expressions are symbolic dims (:mod:`neuralc.ir.dims`) over those variables and the model's
size symbols, written as strings in attributes (``index = ["i0", "i1 + r0 - 1"]``), so
transposes, slices, pads, broadcasts and reshapes are index arithmetic, not copies.

- ``loop.for {var, lower, upper, kind}``: a loop; ``kind`` "parallel" (iterations are
  independent) or "serial" (in order: a recurrence's time steps). Schedule attributes
  (``vectorize = W``: W iterations in vector lanes; ``jam = J``: J iterations at once, their
  bodies interleaved and their nested loops and reductions shared, i.e. unroll-and-jam, for
  parallel loops only; ``split_work = N``: the loop a kernel's iterations are split on across
  threads, each iteration about N element operations, which the runtime's cost model weighs
  against a dispatch) are set by the ``schedule`` pass and read by code generators; the
  interpreter ignores them.
- ``loop.reduce {kind, vars, lower, upper}``: a scalar reduction (add, max, min, mul) over
  its own variables; the body yields the value combined at each point. ``contraction``
  marks a matmul or convolution's multiply-accumulate so a code generator can pick a
  microkernel for it.
- ``loop.load`` / ``loop.store``: one element of a buffer at an index. A load may carry a
  ``guard`` (conditions ``lo <= expr < hi`` on index expressions); where it fails the load
  reads nothing and gives ``other``: padding never reads outside a buffer.
- Scalar ops: ``loop.const``, ``loop.unary``, ``loop.binary``, ``loop.select``,
  ``loop.compare``, ``loop.cast``, ``loop.index`` (an index expression as a number),
  ``loop.guard`` (conditions as an i1).
- ``loop.bind``: a data-dependent index (a gather's token id) as a named variable, clamped
  into ``[lower, upper)``, usable by the index expressions after it.

At module level (the host program): ``loop.weight`` (a weight's buffer), ``loop.view`` (a
buffer at a byte offset of the arena), ``loop.call`` (run a kernel on buffers). A network
function takes its inputs, its outputs and its init values as buffers, plus the arena.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from neuralc.ir.dims import Dim, DimParseError, parse_dim, symbols
from neuralc.ir.opdef import (
    BOOL,
    NUMBER,
    POSITIVE,
    STRING,
    DefinedOp,
    ListAttr,
    OneOf,
    StrAttr,
    TensorOf,
    attribute,
    operand,
    opt_attribute,
    region,
    register_op,
    result,
    var_operand,
)
from neuralc.ir.types import ELEMENT_TYPES, MemRefType, ScalarType


@functools.lru_cache(maxsize=65536)
def dim(text: str) -> Dim:
    """An index or size expression attribute, parsed (cached: the same texts recur)."""
    return parse_dim(text)


def dim_text(d: Dim) -> str:
    """The attribute text of a dim (no outer parentheses)."""
    return str(d) if isinstance(d, int) else d.to_str()


class _IsType:
    """A constraint on a value's type class (the loop level's values are not tensors)."""

    def __init__(self, cls: type, label: str):
        self.cls = cls
        self.label = label

    def problem(self, t: Any) -> str | None:
        return None if isinstance(t, self.cls) else f"must be {self.label}, got {t}"


MEMREF: Any = _IsType(MemRefType, "a memref")
SCALAR: Any = _IsType(ScalarType, "a scalar")

DIM_TEXT = STRING  # a dims expression written as text
DIMS = ListAttr(STRING)
# A guard: conditions [expr, lo, hi] meaning lo <= expr < hi, all dims texts.
GUARD = ListAttr(ListAttr(STRING, length=3))
REDUCE_KINDS = ("add", "max", "min", "mul")
FLOAT_TYPES = ("f32", "f16", "bf16", "f64")


def index_problems(texts: list[str], what: str) -> tuple[list[Dim], list[str]]:
    out, errs = [], []
    for t in texts:
        try:
            out.append(dim(t))
        except DimParseError as e:
            errs.append(f"bad {what} '{t}': {e}")
    return out, errs


class LoopOp(DefinedOp):
    """Base of the loop dialect's ops."""

    FUSION: ClassVar[Any] = "opaque"

    def index_exprs(self) -> list[Dim]:
        """Every dims expression this op uses (for scoping checks and code generation)."""
        return []

    def bound_vars(self) -> list[str]:
        """Index variables this op introduces for the ops nested in it or after it."""
        return []


def _scalar_of(op: LoopOp, dtype: str) -> list[str]:
    t = op.results[0].type
    if not isinstance(t, ScalarType) or t.dtype != dtype:
        return [f"result must be {dtype}, got {t}"]
    return []


# -- structure ------------------------------------------------------------------------------


@register_op
class KernelOp(LoopOp):
    """One kernel: buffers in, loop nests inside. ``symbols``: the sizes it reads at run time."""

    name = "loop.kernel"
    body = region()
    sym_name = attribute(STRING)
    symbols = attribute(ListAttr(STRING), default=[])
    kind = opt_attribute(STRING)
    isolated_from_above = True
    fresh_name_scope = True
    module_level = True
    pure = False

    def verify_extra(self) -> list[str]:
        blocks = self.regions[0].blocks
        if len(blocks) != 1:
            return ["needs exactly one block"]
        errs = []
        for i, a in enumerate(blocks[0].args):
            if not isinstance(a.type, MemRefType):
                errs.append(f"argument {i} must be a memref, got {a.type}")
            else:
                for d in a.type.shape:
                    missing = symbols(d) - set(self.symbols)
                    if missing:
                        errs.append(f"argument {i} uses sizes {sorted(missing)} not in "
                                    "'symbols'")
        return errs + unbound_names(blocks[0], set(self.symbols))


def unbound_names(block: Any, visible: set[str]) -> list[str]:
    """Index expressions may name only the kernel's symbols and the variables of the loops,
    reductions and binds around them (a bind's name is visible after it in its block)."""
    errs: list[str] = []
    scope = set(visible)
    for op in block.ops:
        if isinstance(op, LoopOp):
            used: set[str] = set()
            for d in op.index_exprs():
                used |= symbols(d)
            own = set(op.bound_vars()) if not isinstance(op, BindOp) else set()
            free = used - scope  # a loop's bounds may not use its own variable
            if free:
                errs.append(f"{op.name} uses {', '.join(sorted(free))}, which no loop, "
                            "reduction or bind around it defines")
            if isinstance(op, BindOp):
                if op.var in scope:
                    errs.append(f"loop.bind redefines '{op.var}'")
                scope.add(op.var)
            for r in op.regions:
                for b in r.blocks:
                    if own & scope:
                        errs.append(f"{op.name} redefines {', '.join(sorted(own & scope))}")
                    errs += unbound_names(b, scope | own)
    return errs


@register_op
class ForOp(LoopOp):
    name = "loop.for"
    body = region()
    var = attribute(STRING)
    lower = attribute(DIM_TEXT, default="0")
    upper = attribute(DIM_TEXT)
    kind = attribute(StrAttr(("parallel", "serial")), default="parallel")
    # schedule (read by code generators; the interpreter ignores them)
    vectorize = opt_attribute(POSITIVE)
    jam = opt_attribute(POSITIVE)
    split_work = opt_attribute(POSITIVE)
    pure = False

    def index_exprs(self) -> list[Dim]:
        return [dim(self.lower), dim(self.upper)]

    def bound_vars(self) -> list[str]:
        return [self.var]

    def verify_extra(self) -> list[str]:
        _, errs = index_problems([self.lower, self.upper], "bound")
        if len(self.regions[0].blocks) != 1:
            errs.append("needs exactly one block")
        if self.jam is not None and self.kind != "parallel":
            errs.append("only a parallel loop can be unrolled and jammed")
        if self.split_work is not None and self.kind != "parallel":
            errs.append("only a parallel loop can be split across threads")
        return errs


@register_op
class ReduceOp(LoopOp):
    """``kind`` over the box ``vars`` in ``[lower, upper)``; its body yields each term."""

    name = "loop.reduce"
    output = result(SCALAR)
    body = region()
    kind = attribute(StrAttr(REDUCE_KINDS))
    vars = attribute(ListAttr(STRING, non_empty=True))
    lower = attribute(DIMS)
    upper = attribute(DIMS)
    contraction = attribute(BOOL, default=False)
    vectorize = opt_attribute(POSITIVE)

    def index_exprs(self) -> list[Dim]:
        return [dim(t) for t in [*self.lower, *self.upper]]

    def bound_vars(self) -> list[str]:
        return list(self.vars)

    def verify_extra(self) -> list[str]:
        _, errs = index_problems([*self.lower, *self.upper], "bound")
        if not len(self.vars) == len(self.lower) == len(self.upper):
            errs.append("'vars', 'lower' and 'upper' must have one entry per variable")
        blocks = self.regions[0].blocks
        if len(blocks) != 1:
            return errs + ["needs exactly one block"]
        term = blocks[0].terminator
        if term is None or term.name != "loop.yield" or len(term.operands) != 1:
            errs.append("its body must end with loop.yield of one value")
        elif term.operands[0].type != self.results[0].type:
            errs.append(f"yields {term.operands[0].type} for a {self.results[0].type} result")
        return errs


@register_op
class YieldOp(LoopOp):
    name = "loop.yield"
    values = var_operand(SCALAR)
    terminator = True

    def verify_extra(self) -> list[str]:
        parent = self.parent_op()
        if parent is None or parent.name != "loop.reduce":
            return ["loop.yield must end a loop.reduce body"]
        return []


@register_op
class BindOp(LoopOp):
    """Names a data value as an index variable, clamped into ``[lower, upper)``."""

    name = "loop.bind"
    value = operand(SCALAR)
    var = attribute(STRING)
    lower = attribute(DIM_TEXT, default="0")
    upper = attribute(DIM_TEXT)
    pure = False  # it introduces a name: never erased as unused

    def index_exprs(self) -> list[Dim]:
        return [dim(self.lower), dim(self.upper)]

    def bound_vars(self) -> list[str]:
        return [self.var]

    def verify_extra(self) -> list[str]:
        t = self.operands[0].type
        errs = index_problems([self.lower, self.upper], "bound")[1]
        if isinstance(t, ScalarType) and t.dtype not in ("i64", "i32", "i8"):
            errs.append(f"binds an integer, got {t}")
        return errs


# -- memory ---------------------------------------------------------------------------------


def _check_index(op: LoopOp, buf: Any, texts: list[str]) -> list[str]:
    exprs, errs = index_problems(texts, "index")
    if isinstance(buf.type, MemRefType) and len(exprs) != buf.type.rank:
        errs.append(f"has {len(exprs)} indices for a rank-{buf.type.rank} buffer")
    return errs


def guard_exprs(guard: list[list[str]] | None) -> list[Dim]:
    return [dim(t) for cond in guard or [] for t in cond]


@register_op
class LoadOp(LoopOp):
    name = "loop.load"
    buffer = operand(MEMREF)
    output = result(SCALAR)
    index = attribute(DIMS)
    guard = opt_attribute(GUARD)
    other = attribute(NUMBER, default=0.0)

    def index_exprs(self) -> list[Dim]:
        return [dim(t) for t in self.index] + guard_exprs(self.guard)

    def verify_extra(self) -> list[str]:
        errs = _check_index(self, self.buffer, self.index)
        errs += index_problems([t for c in self.guard or [] for t in c], "guard")[1]
        if isinstance(self.buffer.type, MemRefType):
            errs += _scalar_of(self, self.buffer.type.dtype)
        return errs


@register_op
class StoreOp(LoopOp):
    name = "loop.store"
    buffer = operand(MEMREF)
    value = operand(SCALAR)
    index = attribute(DIMS)
    pure = False

    def index_exprs(self) -> list[Dim]:
        return [dim(t) for t in self.index]

    def verify_extra(self) -> list[str]:
        errs = _check_index(self, self.buffer, self.index)
        b, v = self.buffer.type, self.value.type
        if isinstance(b, MemRefType) and isinstance(v, ScalarType) and b.dtype != v.dtype:
            errs.append(f"stores {v} into a buffer of {b.dtype}")
        return errs


# -- scalar computation ----------------------------------------------------------------------


@register_op
class ConstOp(LoopOp):
    name = "loop.const"
    output = result(SCALAR)
    value = attribute(OneOf((NUMBER, BOOL)))


@register_op
class UnaryOp(LoopOp):
    """``fn(x)``: the tensor dialect's elementwise functions, on one element."""

    name = "loop.unary"
    input = operand(SCALAR)
    output = result(SCALAR)
    fn = attribute(STRING)
    alpha = opt_attribute(NUMBER)


@register_op
class BinaryOp(LoopOp):
    name = "loop.binary"
    lhs = operand(SCALAR)
    rhs = operand(SCALAR)
    output = result(SCALAR)
    fn = attribute(StrAttr(("add", "sub", "mul", "div", "max", "min", "pow")))

    def verify_extra(self) -> list[str]:
        types = {self.lhs.type, self.rhs.type, self.results[0].type}
        return [] if len(types) == 1 else [f"mixes the types {sorted(map(str, types))}"]


@register_op
class SelectOp(LoopOp):
    name = "loop.select"
    cond = operand(SCALAR)
    if_true = operand(SCALAR)
    if_false = operand(SCALAR)
    output = result(SCALAR)

    def verify_extra(self) -> list[str]:
        if self.cond.type != ScalarType("i1"):
            return [f"its condition must be i1, got {self.cond.type}"]
        if not self.if_true.type == self.if_false.type == self.results[0].type:
            return ["its branches and result must have one type"]
        return []


@register_op
class CompareOp(LoopOp):
    name = "loop.compare"
    lhs = operand(SCALAR)
    rhs = operand(SCALAR)
    output = result(SCALAR)
    fn = attribute(StrAttr(("eq", "ne", "lt", "le", "gt", "ge")))

    def verify_extra(self) -> list[str]:
        return _scalar_of(self, "i1")


@register_op
class CastOp(LoopOp):
    name = "loop.cast"
    input = operand(SCALAR)
    output = result(SCALAR)


@register_op
class IndexOp(LoopOp):
    """An index expression's value as a number of the result type (``tensor.iota``)."""

    name = "loop.index"
    output = result(SCALAR)
    expr = attribute(DIM_TEXT)

    def index_exprs(self) -> list[Dim]:
        return [dim(self.expr)]


@register_op
class GuardOp(LoopOp):
    """True where every condition ``lo <= expr < hi`` holds."""

    name = "loop.guard"
    output = result(SCALAR)
    conds = attribute(GUARD)

    def index_exprs(self) -> list[Dim]:
        return guard_exprs(self.conds)

    def verify_extra(self) -> list[str]:
        return _scalar_of(self, "i1")


# -- the host program -----------------------------------------------------------------------


@register_op
class WeightOp(LoopOp):
    """A weight's buffer, bound when the model is loaded."""

    name = "loop.weight"
    output = result(MEMREF)
    weight = attribute(STRING)


@register_op
class ViewOp(LoopOp):
    """The buffer at byte ``offset`` of the arena (a byte buffer)."""

    name = "loop.view"
    arena = operand(MEMREF)
    output = result(MEMREF)
    offset = attribute(DIM_TEXT)

    def index_exprs(self) -> list[Dim]:
        return [dim(self.offset)]


@register_op
class CallOp(LoopOp):
    """Run kernel ``callee`` on buffers (its arguments, in order)."""

    name = "loop.call"
    buffers = var_operand(MEMREF)
    callee = attribute(STRING)
    pure = False


SCALAR_TYPES = tuple(ScalarType(t) for t in ELEMENT_TYPES)
__all__ = ["TensorOf", "POSITIVE", "dim", "dim_text"]
