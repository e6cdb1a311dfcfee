"""Symbolic shape inference's core: the errors shape rules raise, the context they run in,
and the union-find that unifies dims module-wide.

Shape rules live on op definitions (``ir/dialects``) and on layer specs (``layers``); both
raise :class:`ShapeError` and ask a :class:`ShapeContext` to unify dims that must be equal.
The ``shape-infer`` pass, the lowering and the verifier all use one :class:`Unifier`.
"""

from __future__ import annotations

import math

from neuralc.ir.dims import Dim, Expr, dim_facts, dim_str, mod, subs, sym, symbols
from neuralc.ir.types import TensorType


class ShapeError(Exception):
    """A shape rule cannot accept its inputs. ``hint`` becomes a note (a suggestion)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class ShapeContext:
    """What a shape rule may ask of shape inference: unification of dims, symbol ranges.

    The pass provides the implementation; rules call :meth:`unify` wherever two dims must be
    equal (merges, residuals) so that equal symbols are unified module-wide.
    """

    def unify(self, a: Dim, b: Dim, what: str) -> Dim:
        raise NotImplementedError

    def resolve(self, d: Dim) -> Dim:
        return d


class Unifier(ShapeContext):
    """Union-find over symbolic dims, checked against the facts of the ``dims { }`` section.

    ``ranges`` is the module's ``dims`` attribute: per symbol ``[lo, hi]`` or
    ``[lo, hi, step]`` (every size a multiple of ``step``).

    Equality under divisibility facts: two dims are equal when they agree at every size the
    steps allow. With ``h`` a multiple of 8 the sizes of ``h`` are exactly ``8 * t`` for sizes
    ``t``, so each stepped symbol is replaced by ``step * symbol`` and the canonical forms are
    compared: ``(h floordiv 2) * 2`` and ``h`` both become ``h * 8``. That is sound (equal
    canonical forms are equal functions) and as strong as the dim simplifier. Types keep the
    forms their shape rules computed, so they read as written (``h floordiv 2``), print and
    parse back without any hidden symbol, and a pass that rebuilds an op gets the same type
    again; of two dims equal only under the facts, :meth:`unify` returns the one that prints
    shorter (:func:`representative`), whatever their order.

    Which symbol survives when two symbols are unified: the one with declared facts (a range
    or a step) if only one has them, otherwise the first argument (merges unify in operand
    order, so in practice the symbol of the earlier input). No name is special.
    """

    def __init__(self, ranges: dict[str, list[int | None]] | None = None):
        self.bindings: dict[str, Dim] = {}
        self.ranges: dict[str, list[int | None]] = {k: list(v) for k, v in (ranges or {}).items()}
        # A ranged symbol bound to an expression (seq = t * 2) keeps its range here, as a
        # constraint on the expression, checked against real sizes when inputs arrive; a step
        # becomes the constraint ``expr mod step`` in [0, 0].
        self.constraints: list[tuple[Dim, int | None, int | None]] = []

    def resolve(self, d: Dim) -> Dim:
        for _ in range(64):
            if isinstance(d, int) or not (symbols(d) & self.bindings.keys()):
                return d
            d = subs(d, self.bindings)
        return d

    def step(self, name: str) -> int:
        return dim_facts(self.ranges.get(name))[2]

    def scaled(self, d: Dim) -> Dim:
        """``d`` with every stepped symbol ``s`` replaced by ``step * s``: the form in which
        dims equal at every allowed size are equal."""
        steps = {s: sym(s) * self.step(s) for s in symbols(d) if self.step(s) > 1}
        return subs(d, steps) if steps else d

    def same(self, a: Dim, b: Dim) -> Dim | None:
        """The dim standing for both ``a`` and ``b`` if they are equal at every size the facts
        allow (binding nothing), else None."""
        a, b = self.resolve(a), self.resolve(b)
        if a == b:
            return a
        if self.scaled(a) == self.scaled(b):
            return representative(a, b)
        return None

    def unify(self, a: Dim, b: Dim, what: str) -> Dim:
        a, b = self.resolve(a), self.resolve(b)
        both = self.same(a, b)
        if both is not None:
            return both
        for name, other in self._binding_order(a, b):
            if name not in symbols(other):
                self._bind(name, other, what)
                return other
        raise ShapeError(f"{what}: {a} and {b} are not equal{self._step_hint(a, b)}")

    def _binding_order(self, a: Dim, b: Dim) -> list[tuple[str, Dim]]:
        """``(symbol, value)`` bindings that would make ``a`` and ``b`` equal, preferred first."""
        sa, sb = _lone_symbol(a), _lone_symbol(b)
        if sa is not None and sb is not None:
            keep_b = sb in self.ranges and sa not in self.ranges
            return [(sa, b)] if keep_b else [(sb, a)]
        return [(n, v) for n, v in ((sb, a), (sa, b)) if n is not None]

    def _step_hint(self, a: Dim, b: Dim) -> str:
        """How to make ``a`` and ``b`` equal by declaring a step, when one small step does."""
        for s in sorted(symbols(a) & symbols(b)):
            for k in range(2, 65):
                scale = {s: sym(s) * k}
                if subs(self.scaled(a), scale) == subs(self.scaled(b), scale):
                    step = k * self.step(s)
                    return (f"; they are equal when {s} is a multiple of {step}: say so in "
                            f"dims {{ }} ({s}: lo..hi step {step}, or {s} % {step} == 0)")
        return ""

    def _bind(self, name: str, value: Dim, what: str) -> None:
        if name in symbols(value):
            raise ShapeError(f"{what}: {name} cannot equal {value}")
        lo, hi, step = dim_facts(self.ranges.get(name))
        if isinstance(value, int):
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                rng = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
                raise ShapeError(f"{what}: {name} would be {value}, outside its range {rng}")
            if value % step:
                raise ShapeError(f"{what}: {name} would be {value}, not a multiple of {step} "
                                 "as its step in dims { } requires")
        elif isinstance(value, Expr) and value.is_atomic() and name in self.ranges:
            self._merge_facts(name, next(iter(value.symbols())), what)
        elif isinstance(value, Expr) and name in self.ranges:
            self._constrain(name, value, what)
        self.bindings[name] = value

    def _merge_facts(self, name: str, other: str, what: str) -> None:
        """``name`` becomes ``other``: ``other`` takes the facts of both."""
        lo, hi, step = dim_facts(self.ranges.get(name))
        olo, ohi, ostep = dim_facts(self.ranges.get(other))
        nstep = math.lcm(step, ostep)
        los = [x for x in (lo, olo) if x is not None]
        his = [x for x in (hi, ohi) if x is not None]
        nlo = -(-max(los) // nstep) * nstep if los else None
        nhi = min(his) // nstep * nstep if his else None
        if nlo is not None and nhi is not None and nlo > nhi:
            raise ShapeError(f"{what}: the ranges of {name} and {other} do not overlap"
                             + (f" on a multiple of {nstep}" if nstep > 1 else ""))
        self.ranges[other] = [nlo, nhi] + ([nstep] if nstep > 1 else [])

    def _constrain(self, name: str, value: Expr, what: str) -> None:
        """``name`` becomes the expression ``value``: its facts become checks on ``value``."""
        lo, hi, step = dim_facts(self.ranges.get(name))
        if lo is not None or hi is not None:
            self.constraints.append((value, lo, hi))
        if step > 1:
            rest = mod(self.scaled(value), step)
            if isinstance(rest, int) and rest != 0:
                raise ShapeError(f"{what}: {name} would be {value}, which is never a multiple "
                                 f"of {step} as its step in dims {{ }} requires")
            if not isinstance(rest, int):
                self.constraints.append((mod(value, step), 0, 0))

    def resolve_type(self, t: TensorType) -> TensorType:
        if t.shape is None:
            return t
        return t.with_shape(tuple(self.resolve(d) for d in t.shape))


def _lone_symbol(d: Dim) -> str | None:
    """The symbol ``d`` is, when it is a bare symbol."""
    return next(iter(d.symbols())) if isinstance(d, Expr) and d.is_atomic() else None


def representative(a: Dim, b: Dim) -> Dim:
    """Of two dims known to be equal, the one types carry: the shorter text, then the first in
    text order, so that every pass picks the same one whatever order it meets them in."""
    return min((a, b), key=lambda d: (len(dim_str(d)), dim_str(d)))
