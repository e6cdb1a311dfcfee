"""Element expressions: how one element of a tensor op's result is computed.

Every tensor op declares an ``element(builder, index)`` method (Inductor's ``inner_fn``): given
the index of one element of its result (symbolic dims over loop variables), it returns a
:class:`Node` computing that element from elements of its operands, which it asks the builder
for (``builder.operand(op, i, index)``). Transposes, slices, pads, broadcasts and reshapes are
thus index arithmetic: the operand is read at another index, never copied. The loop lowering
turns the resulting DAG into loop nests (``neuralc.passes.lower_to_loops``).

Nodes are hash-consed by the builder (equal nodes are one object), so a value read twice at the
same index is computed once. Kinds and their payload (``attrs``):

- ``load`` (buffer, index, guard, other): an element of a kernel buffer; where a guard
  condition ``lo <= e < hi`` fails, ``other`` instead (nothing is read);
- ``const`` (value), ``index`` (expr: an index expression as a number);
- ``unary`` (fn, alpha), ``binary`` (fn), ``compare`` (fn), ``select``, ``cast``: scalar ops,
  with the tensor dialect's function names;
- ``guard`` (conds): an i1 that holds where every condition holds;
- ``reduce`` (kind, vars, lower, upper, contraction): ``kind`` of the body over a box of fresh
  variables; ``contraction`` marks a matmul or convolution's multiply-accumulate;
- ``bind`` (var, lower, upper): a data value (a gather's token id) as index variable ``var``,
  clamped into ``[lower, upper)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from neuralc.ir.dims import Dim, dmax_in, dmin_in, simplify, sym, symbols

Cond = tuple[Dim, Dim, Dim]  # lo <= expr < hi, as (expr, lo, hi)


@dataclass(frozen=True, eq=False)
class Node:
    """One scalar computation; compare by identity (the builder makes equal nodes one)."""

    kind: str
    dtype: str
    args: tuple[Node, ...] = ()
    attrs: tuple[Any, ...] = ()
    free: frozenset[str] = field(default=frozenset(), compare=False)

    def __repr__(self) -> str:
        return f"<{self.kind}:{self.dtype} {self.attrs!r}>"


@dataclass(frozen=True)
class BufferRef:
    """A buffer of the kernel being lowered: its position among the kernel's arguments.

    ``changes_with``: loop variables over which the kernel itself rewrites the buffer (a
    recurrence's state changes every time step): a read of it depends on them even though its
    index does not, so it is never hoisted out of those loops.
    """

    index: int
    dtype: str
    shape: tuple[Dim, ...]
    changes_with: tuple[str, ...] = ()


def _dims_symbols(dims: Sequence[Dim]) -> set[str]:
    out: set[str] = set()
    for d in dims:
        out |= symbols(d)
    return out


def cond_symbols(conds: Sequence[Cond]) -> set[str]:
    return _dims_symbols([d for c in conds for d in c])


class ElementBuilder:
    """Makes element nodes (hash-consed); a lowering subclasses it to resolve operands."""

    def __init__(self) -> None:
        self._nodes: dict[tuple, Node] = {}
        self._fresh = 0
        # Inclusive ranges of the loop and reduction variables made so far (sizes are >= 1).
        self.ranges: dict[str, tuple[Dim, Dim]] = {}
        # Names variables must not take: the model's size symbols (a dim may be called t).
        self.avoid: set[str] = set()

    # -- operands (resolved by the lowering) ---------------------------------------------
    def operand(self, op: Any, i: int, index: Sequence[Dim]) -> Node:
        """The element of operand ``i`` of ``op`` at ``index``."""
        raise NotImplementedError

    def operand_guarded(self, op: Any, i: int, index: Sequence[Dim], conds: Sequence[Cond],
                        other: float) -> Node:
        """Operand ``i`` at ``index`` where every condition holds, ``other`` elsewhere; never
        reads outside the operand (padding)."""
        raise NotImplementedError

    def simplify(self, d: Dim) -> Dim:
        """``d`` simplified with the known ranges of its variables."""
        return simplify(d, self.ranges)

    def declare(self, names: list[str], bounds: list[tuple[Dim, Dim]]) -> None:
        """Variables ``names`` range over ``[lo, hi)``."""
        for n, (lo, hi) in zip(names, bounds):
            self.ranges[n] = (lo, hi - 1)

    def min(self, *args: Dim) -> Dim:
        """``min`` of index expressions, simplified with the variables' ranges (not with the
        "every symbol >= 1" rule of :func:`dmin`, wrong for loop variables, which start at 0)."""
        return dmin_in(self.ranges, *args)

    def max(self, *args: Dim) -> Dim:
        return dmax_in(self.ranges, *args)

    def clamp(self, index: Sequence[Dim], shape: Sequence[Dim]) -> list[Dim]:
        """Each component moved into ``[0, size)``: reads at a clamped index stay inside the
        operand (what a guarded read of an inlined producer evaluates, then discards)."""
        return [self.simplify(self.min(self.max(i, 0), s - 1)) for i, s in zip(index, shape)]

    # -- node construction ---------------------------------------------------------------
    def make(self, kind: str, dtype: str, args: Sequence[Node] = (),
             attrs: tuple[Any, ...] = (), own: set[str] | None = None) -> Node:
        key = (kind, dtype, tuple(id(a) for a in args), attrs)
        node = self._nodes.get(key)
        if node is None:
            free: set[str] = set(own or ())
            for a in args:
                free |= a.free
            node = Node(kind, dtype, tuple(args), attrs, frozenset(free))
            self._nodes[key] = node
        return node

    def fresh(self, prefix: str) -> str:
        """A new variable name, never one of the model's size symbols."""
        while True:
            self._fresh += 1
            name = f"{prefix}{self._fresh - 1}"
            if name not in self.avoid:
                self.avoid.add(name)
                return name

    def load(self, buf: BufferRef, index: Sequence[Dim], conds: Sequence[Cond] = (),
             other: float = 0.0) -> Node:
        index, conds = tuple(index), tuple(tuple(c) for c in conds)
        own = _dims_symbols(index) | cond_symbols(conds) | set(buf.changes_with)
        return self.make("load", buf.dtype, (), (buf, index, conds, float(other)), own)

    def const(self, value: float | int | bool, dtype: str = "f32") -> Node:
        return self.make("const", dtype, (), (value,))

    def index_value(self, expr: Dim, dtype: str) -> Node:
        return self.make("index", dtype, (), (expr,), symbols(expr))

    def unary(self, fn: str, x: Node, alpha: float | None = None) -> Node:
        if fn in ("linear", "identity", "none"):
            return x
        return self.make("unary", x.dtype, (x,), (fn, alpha))

    def binary(self, fn: str, a: Node, b: Node) -> Node:
        return self.make("binary", a.dtype, (a, b), (fn,))

    def compare(self, fn: str, a: Node, b: Node) -> Node:
        return self.make("compare", "i1", (a, b), (fn,))

    def select(self, cond: Node, a: Node, b: Node) -> Node:
        return self.make("select", a.dtype, (cond, a, b))

    def cast(self, x: Node, dtype: str) -> Node:
        return x if x.dtype == dtype else self.make("cast", dtype, (x,))

    def guard(self, conds: Sequence[Cond]) -> Node:
        conds = tuple(tuple(c) for c in conds)
        return self.make("guard", "i1", (), (conds,), cond_symbols(conds))

    def reduce(self, kind: str, bounds: Sequence[tuple[Dim, Dim]],
               body: Callable[[list[Dim]], Node], contraction: bool = False,
               dtype: str | None = None) -> Node:
        """``kind`` (add, max, min, mul) of ``body(vars)`` over ``lower <= var < upper``.

        The variables are fresh names; the result has the body's type unless ``dtype`` asks
        for another (a float reduction accumulates in the result's type).
        """
        names = [self.fresh("r") for _ in bounds]
        self.declare(names, list(bounds))
        value = body([sym(n) for n in names])
        lower = tuple(lo for lo, _ in bounds)
        upper = tuple(hi for _, hi in bounds)
        # A data-dependent index bound inside the body (a gather per term) belongs to it.
        inner = {g for g, b in self.bindings.items() if b.free & set(names)}
        own = (value.free - set(names) - inner) | _dims_symbols(lower + upper)
        node = Node("reduce", dtype or value.dtype, (value,),
                    (kind, tuple(names), lower, upper, contraction), frozenset(own))
        return node

    def bind(self, value: Node, lower: Dim, upper: Dim) -> Dim:
        """``value`` (an integer) as a fresh index variable clamped into ``[lower, upper)``."""
        name = self.fresh("g")
        node = self.make("bind", value.dtype, (value,), (name, lower, upper),
                         _dims_symbols([lower, upper]))
        self.bindings[name] = node
        return sym(name)

    @property
    def bindings(self) -> dict[str, Node]:
        if not hasattr(self, "_bindings"):
            self._bindings: dict[str, Node] = {}
        return self._bindings

