"""Shared analyses of tensor and kernel IR: buffer sizes, memory traffic, kernels, liveness.

Fusion scores its candidates with these numbers (Inductor's rule: the bytes that stop going to
memory), memory planning builds on the liveness, and the CLI report prints the totals, so all
three count bytes the same way. Sizes stay symbolic (:data:`~neuralc.ir.dims.Dim` expressions)
until a number is needed; they are then evaluated at the sizes given, or at the *nominal*
sizes the frontend records per symbol (the implicit batch dim 1, every other symbol 64; 64 for
a symbol it did not record), moved into the symbol's ``dims`` range and onto its step.

Counting conventions (what one "kernel" and one "byte moved" mean here):

- A kernel is a ``kernel.fused`` op, or a compute op left at function level (any op other than
  ``tensor.constant`` and ``func.return``). Ops inside a kernel body are not kernels.
- A kernel reads each distinct operand once (weights included) and writes each result once;
  values inside a kernel body never touch memory. A scalar constant cloned into a body is an
  immediate and costs nothing. Sizes use the logical element size (bf16 is 2 bytes even
  though the reference interpreter holds it in float32).
- Reshapes count as copies: no pass makes views alias their input yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from neuralc.ir.core import Module, Op, OpResult, Value, func_body
from neuralc.ir.dims import (
    NOMINAL_SIZE,
    Dim,
    Expr,
    FloorDiv,
    dim_facts,
    evaluate,
    fit_size,
    product,
    subs,
    sym,
    symbols,
)
from neuralc.ir.opdef import DefinedOp, FusionKind, PrecisionPolicy
from neuralc.ir.types import TensorType

ITEMSIZE: dict[str, int] = {
    "f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i64": 8, "i32": 4, "i8": 1, "i1": 1,
}

# Ops that are not kernels of their own: weights/immediates and the terminator.
_NOT_KERNELS = ("tensor.constant", "func.return", "kernel.yield")


class UnrankedError(ValueError):
    """A size was asked of a value whose shape is not inferred yet."""


# -- op interfaces with per-op overrides -----------------------------------------------------


def fusion_kind(op: Op) -> FusionKind:
    """The op's fusion kind; an op without a definition is opaque."""
    return op.fusion_kind() if isinstance(op, DefinedOp) else "opaque"


def precision_policy(op: Op) -> PrecisionPolicy:
    """The op's precision policy: ``policy(op)`` if its definition has one, else the ClassVar.

    An op from a layer pinned with ``precision="fp32"`` in the model stays fp32.
    """
    if op.attributes.get("precision") == "fp32" or not isinstance(op, DefinedOp):
        return "never"
    return op.precision_policy()


# -- sizes -------------------------------------------------------------------------------------


def type_bytes(t: TensorType) -> Dim:
    """Bytes of one tensor of type ``t``, symbolic."""
    if t.shape is None:
        raise UnrankedError(f"{t} has no inferred shape; run shape-infer first")
    return product(t.shape) * ITEMSIZE[t.dtype]


def value_bytes(v: Value) -> Dim:
    return type_bytes(v.type)


def eval_dim(d: Dim, sizes: Mapping[str, int]) -> int:
    """``d`` at ``sizes``; a symbol missing from ``sizes`` takes the default nominal size
    (callers pass :func:`nominal_sizes` to get each symbol's own)."""
    if isinstance(d, int):
        return d
    env = dict(sizes)
    for s in symbols(d):
        env.setdefault(s, NOMINAL_SIZE)
    return evaluate(d, env)


def module_symbols(module: Module) -> set[str]:
    """Every symbol that appears in a type of the module."""
    out: set[str] = set()
    for func in module.funcs:
        for a in func_body(func).args:
            out |= _type_symbols(a.type)
        for op in func.walk():
            for r in op.results:
                out |= _type_symbols(r.type)
            for region in op.regions:
                for b in region.blocks:
                    for a in b.args:
                        out |= _type_symbols(a.type)
    return out


def _type_symbols(t: TensorType) -> set[str]:
    out: set[str] = set()
    for d in t.shape or ():
        out |= symbols(d)
    return out


def nominal_sizes(module: Module) -> dict[str, int]:
    """Each symbol's size for single-number estimates, moved into its ``dims`` facts.

    The frontend records them in the ``dim_nominal`` module attribute (the implicit batch dim
    1, every other symbol 64); a symbol it does not list (textual IR written without the
    attribute, a symbol made by a pass) takes NOMINAL_SIZE = 64. Fusion scores and the
    report's single numbers are taken at these sizes: big enough that per-element traffic
    dominates, small enough to read.
    """
    facts = module.attributes.get("dims") or {}
    recorded = module.attributes.get("dim_nominal") or {}
    out: dict[str, int] = {}
    for s in sorted(module_symbols(module)):
        out[s] = fit_size(recorded.get(s, NOMINAL_SIZE), *dim_facts(facts.get(s)))
    return out


def dim_text(d: Dim) -> str:
    """A dim as an expression string without outer parentheses: ``batch * 1024 + 64``."""
    return str(d) if isinstance(d, int) else d.to_str()


def symbol_lower_bounds(module: Module) -> dict[str, int]:
    """Smallest value of each symbol: the smallest size its ``dims`` facts allow (its range's
    low end, or its step), else 1 (dims are sizes)."""
    facts = module.attributes.get("dims") or {}
    return {s: fit_size(1, *dim_facts(facts.get(s))) for s in module_symbols(module)}


def provably_ge(a: Dim, b: Dim, lows: Mapping[str, int] | None = None) -> bool:
    """True when ``a >= b`` for every symbol value at or above its lower bound (default 1).

    A sufficient test, not a decision procedure: each symbol ``s`` is rewritten ``t + lo`` with
    ``t >= 0``, and ``a - b`` must then have no negative coefficient, with every floordiv atom
    over a numerator that passes the same test. ``False`` means "not proven", so callers that
    act on it stay safe (memory planning keeps such buffers apart).
    """
    diff = a - b
    if isinstance(diff, int):
        return diff >= 0
    lows = lows or {}
    shifted = subs(diff, {s: sym(s) + lows.get(s, 1) for s in symbols(diff)})
    return _nonnegative(shifted)


def _nonnegative(d: Dim) -> bool:
    if isinstance(d, int):
        return d >= 0
    assert isinstance(d, Expr)
    for mono, coeff in d.terms:
        if coeff < 0:
            return False
        for atom in mono:
            if isinstance(atom, FloorDiv) and not _nonnegative(atom.num):
                return False
    return True


# -- kernels and traffic -------------------------------------------------------------------------


def is_load_time(v: Value, memo: dict[Op, bool] | None = None) -> bool:
    """True when ``v`` depends on weights and constants only (no network input).

    An explicit walk over the ops ``v`` depends on, not a recursion: a network of thousands
    of layers is a chain thousands of ops deep. ``memo`` (op -> answer) shares the answers
    between calls over unchanged IR, so that asking for every op of a function in program
    order costs one walk in all instead of one per op.
    """
    memo = {} if memo is None else memo
    root = getattr(v, "op", None)
    if root is None:  # a block argument: a network input
        return False
    stack = [root]
    while stack:
        op = stack[-1]
        if op in memo:
            stack.pop()
            continue
        result = op.name == "tensor.constant"
        pending: list[Op] = []
        if not result and op.dialect == "tensor" and not op.regions:
            result = True
            for x in op.operands:
                dep = getattr(x, "op", None)
                known = None if dep is None else memo.get(dep)
                if dep is None or known is False:
                    result = False
                    break
                if known is None:
                    pending.append(dep)
        if result and pending:
            stack.extend(pending)  # answer this op once they are answered
            continue
        memo[op] = result
        stack.pop()
    return memo[root]


def is_kernel(op: Op, memo: dict[Op, bool] | None = None) -> bool:
    """Whether a function-level op runs as a kernel of its own (see the module docstring).

    Work on weights alone (load-time values) runs once when the weights are loaded, not per
    inference, so it is no kernel.
    """
    if op.results and is_load_time(op.results[0], memo):
        return False
    return op.name not in _NOT_KERNELS and op.name != "func.func"


def kernel_ops(func: Op) -> list[Op]:
    memo: dict[Op, bool] = {}
    return [op for op in func_body(func).ops if is_kernel(op, memo)]


def kernel_count(module: Module) -> int:
    """Kernels launched by one run of every function of the module."""
    return sum(len(kernel_ops(f)) for f in module.networks)


def distinct(values: Iterable[Value]) -> list[Value]:
    """Values in first-seen order without repeats (a kernel reads a buffer once)."""
    seen: set[int] = set()
    out: list[Value] = []
    for v in values:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def traffic_of(reads: Iterable[Value], writes: Iterable[Value]) -> Dim:
    """Bytes moved by a kernel that reads ``reads`` (each once) and writes ``writes``."""
    total: Dim = 0
    for v in distinct(reads):
        total = total + value_bytes(v)
    for v in distinct(writes):
        total = total + value_bytes(v)
    return total


@dataclass
class KernelTraffic:
    """One row of the traffic report: a kernel (or unfused op) and what it moves."""

    name: str  # ``fused_3``, or the op name for an unfused op
    op: str
    kind: str
    reads: Dim
    writes: Dim

    @property
    def total(self) -> Dim:
        return self.reads + self.writes


def traffic(module: Module) -> list[KernelTraffic]:
    """Symbolic reads and writes of every kernel of the module, in program order."""
    rows: list[KernelTraffic] = []
    for func in module.networks:
        for op in kernel_ops(func):
            reads = traffic_of(op.operands, [])
            writes = traffic_of([], op.results)
            if op.name == "kernel.fused":
                name, kind = str(op.attributes.get("name")), str(op.attributes.get("kind", ""))
            else:
                name, kind = op.name, fusion_kind(op)
            rows.append(KernelTraffic(name, op.name, kind, reads, writes))
    return rows


def bytes_moved(module: Module, sizes: Mapping[str, int] | None = None) -> int:
    """Reads plus writes of every kernel or unfused op, at ``sizes`` (nominal by default)."""
    env = dict(nominal_sizes(module)) | dict(sizes or {})
    return sum(eval_dim(row.total, env) for row in traffic(module))


def bytes_moved_expr(module: Module) -> Dim:
    """Reads plus writes of every kernel, as a symbolic expression."""
    total: Dim = 0
    for row in traffic(module):
        total = total + row.total
    return total


# -- liveness ----------------------------------------------------------------------------------


@dataclass
class LiveRange:
    """An intermediate buffer: the value, the function-level op indices where it is written
    (``start``) and last read (``end``, ``len(ops)`` for a function result), and its size."""

    value: OpResult
    start: int
    end: int
    size: Dim

    def overlaps(self, other: LiveRange) -> bool:
        return not (self.end < other.start or other.end < self.start)


def _top_level(op: Op, top: set[int]) -> Op:
    """The function-level op that holds ``op`` (itself when it is at function level)."""
    while id(op) not in top:
        parent = op.parent_op()
        if parent is None:
            break
        op = parent
    return op


def liveness(func: Op) -> list[LiveRange]:
    """Live ranges of every buffer a kernel writes, in definition order.

    Function inputs (the caller's) and constants (weights and immediates) are not buffers of
    the plan. A value used by ``func.return`` lives to the end (index ``len(ops)``); a value
    nobody reads lives only at its definition.
    """
    body_ops = func_body(func).ops
    index = {id(op): i for i, op in enumerate(body_ops)}
    top = set(index)
    ranges: list[LiveRange] = []
    for i, op in enumerate(body_ops):
        if not is_kernel(op):
            continue
        for r in op.results:
            end = i
            for user in r.users():
                top_op = _top_level(user, top)
                j = len(body_ops) if top_op.name == "func.return" else index.get(id(top_op), i)
                end = max(end, j)
            ranges.append(LiveRange(r, i, end, value_bytes(r)))
    return ranges


def peak_live_bytes(func: Op, sizes: Mapping[str, int]) -> int:
    """The most bytes of intermediate buffers live at once: what an ideal allocator needs
    (the function's results are the caller's buffers, as in the memory plan)."""
    returned = {id(v) for v in func_body(func).ops[-1].operands} if func_body(func).ops else set()
    ranges = [lr for lr in liveness(func) if id(lr.value) not in returned]
    n = len(func_body(func).ops) + 1
    live = [0] * (n + 1)
    for lr in ranges:
        b = eval_dim(lr.size, sizes)
        for t in range(lr.start, min(lr.end, n) + 1):
            live[t] += b
    return max(live, default=0)


def planned_peak_bytes(func: Op, sizes: Mapping[str, int]) -> int | None:
    """The size of a ``memory-plan`` arena at ``sizes``: the sum over buffers of the largest
    value placed in each; ``None`` when the function has no plan."""
    if "peak_bytes" not in func.attributes:
        return None
    biggest: dict[int, int] = {}
    for op in func_body(func).ops:
        if "buffer" not in op.attributes:
            continue
        ids = op.attributes["buffer"]
        ids = ids if isinstance(ids, list) else [ids]
        for r, b in zip(op.results, ids):
            biggest[b] = max(biggest.get(b, 0), eval_dim(value_bytes(r), sizes))
    return sum(biggest.values())


def peak_memory(module: Module, sizes: Mapping[str, int] | None = None) -> int:
    """Peak bytes of intermediate buffers over the module's functions, at ``sizes``.

    A function with a memory plan reports its arena size; one without reports the liveness
    peak (the lower bound any plan can reach).
    """
    env = dict(nominal_sizes(module)) | dict(sizes or {})
    best = 0
    for func in module.networks:
        planned = planned_peak_bytes(func, env)
        best = max(best, planned if planned is not None else peak_live_bytes(func, env))
    return best
