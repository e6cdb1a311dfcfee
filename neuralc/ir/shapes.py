"""Symbolic shape inference's core: the errors shape rules raise, the context they run in,
and the union-find that unifies dims module-wide.

Shape rules live on op definitions (``ir/dialects``) and on layer specs (``layers``); both
raise :class:`ShapeError` and ask a :class:`ShapeContext` to unify dims that must be equal.
The ``shape-infer`` pass, the lowering and the verifier all use one :class:`Unifier`.
"""

from __future__ import annotations

from neuralc.ir.dims import Dim, Expr, subs, symbols
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
    """Union-find over symbolic dims, checked against the declared ranges."""

    def __init__(self, ranges: dict[str, list[int | None]] | None = None):
        self.bindings: dict[str, Dim] = {}
        self.ranges: dict[str, list[int | None]] = {k: list(v) for k, v in (ranges or {}).items()}
        # A ranged symbol bound to an expression (seq = t * 2) keeps its range here, as a
        # constraint on the expression, checked against real sizes when inputs arrive.
        self.constraints: list[tuple[Dim, int | None, int | None]] = []

    def resolve(self, d: Dim) -> Dim:
        for _ in range(64):
            if isinstance(d, int) or not (symbols(d) & self.bindings.keys()):
                return d
            d = subs(d, self.bindings)
        return d

    def unify(self, a: Dim, b: Dim, what: str) -> Dim:
        a, b = self.resolve(a), self.resolve(b)
        if a == b:
            return a
        for s, other in ((b, a), (a, b)):
            if isinstance(s, Expr) and s.is_atomic():
                name = next(iter(s.symbols()))
                if name == "batch" and isinstance(other, Expr) and other.is_atomic():
                    continue  # keep the batch symbol; bind the other one to it
                self._bind(name, other, what)
                return other
        raise ShapeError(f"{what}: {a} and {b} are not equal")

    def _bind(self, name: str, value: Dim, what: str) -> None:
        if name in symbols(value):
            raise ShapeError(f"{what}: {name} cannot equal {value}")
        lo, hi = self.ranges.get(name, [None, None])
        if isinstance(value, int):
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                rng = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
                raise ShapeError(f"{what}: {name} would be {value}, outside its range {rng}")
        elif isinstance(value, Expr) and value.is_atomic() and name in self.ranges:
            other = next(iter(value.symbols()))
            olo, ohi = self.ranges.get(other, [None, None])
            nlo = max(x for x in (lo, olo) if x is not None) if (lo, olo) != (None, None) else None
            nhi = min(x for x in (hi, ohi) if x is not None) if (hi, ohi) != (None, None) else None
            if nlo is not None and nhi is not None and nlo > nhi:
                raise ShapeError(f"{what}: the ranges of {name} and {other} do not overlap")
            self.ranges[other] = [nlo, nhi]
        elif isinstance(value, Expr) and name in self.ranges:
            lo, hi = self.ranges[name]
            self.constraints.append((value, lo, hi))
        self.bindings[name] = value

    def resolve_type(self, t: TensorType) -> TensorType:
        if t.shape is None:
            return t
        return t.with_shape(tuple(self.resolve(d) for d in t.shape))
