"""Symbolic tensor dimensions and their small normalising simplifier.

A dimension is either a plain ``int`` or an :class:`Expr`: an integer polynomial over atoms,
where an atom is a named symbol (``batch``, ``seq``) or ``floordiv(expr, k)`` with a positive
integer ``k``. Expressions are kept in one canonical form, so two dims are equal exactly when
their canonical forms are equal; printing is deterministic, and the printed text parses back to
the same form. This covers convolution and pooling arithmetic, flattening and reshaping without
pulling in a computer-algebra system.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

Dim = Union[int, "Expr"]

# A monomial is a sorted tuple of atoms (with repetition for powers); the empty tuple is 1.
Monomial = tuple["Atom", ...]


@dataclass(frozen=True, order=False)
class FloorDiv:
    """``num floordiv den`` with ``den > 1`` and ``num`` not divisible by ``den``."""

    num: Expr
    den: int

    def sort_key(self) -> tuple:
        return (1, self.num.sort_key(), self.den)

    def __str__(self) -> str:
        inner = self.num.to_str()
        if not self.num.is_atomic():
            inner = f"({inner})"
        return f"{inner} floordiv {self.den}"


Atom = Union[str, FloorDiv]


def _atom_key(a: Atom) -> tuple:
    return (0, a) if isinstance(a, str) else a.sort_key()


def _mono_key(m: Monomial) -> tuple:
    # Constant term last, so expressions read as people write them: ``h - 3``.
    return (m == (), tuple(_atom_key(a) for a in m))


class Expr:
    """A canonical integer polynomial over symbols and floordiv atoms.

    Construct with :func:`sym`, arithmetic operators and :meth:`floordiv`; results that turn
    out constant come back as ``int`` from :func:`norm`.
    """

    __slots__ = ("_hash", "terms")

    def __init__(self, terms: Mapping[Monomial, int]):
        clean = {m: c for m, c in terms.items() if c != 0}
        self.terms: tuple[tuple[Monomial, int], ...] = tuple(
            sorted(clean.items(), key=lambda mc: _mono_key(mc[0]))
        )
        self._hash = hash(self.terms)

    # -- construction -------------------------------------------------------------------
    @staticmethod
    def of(d: Dim) -> Expr:
        if isinstance(d, Expr):
            return d
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"not a dimension: {d!r}")
        return Expr({(): d})

    def const(self) -> int:
        for m, c in self.terms:
            if m == ():
                return c
        return 0

    def is_const(self) -> bool:
        return all(m == () for m, _ in self.terms)

    def is_atomic(self) -> bool:
        """A single symbol with coefficient 1 (prints without parentheses)."""
        return (
            len(self.terms) == 1
            and self.terms[0][1] == 1
            and len(self.terms[0][0]) == 1
            and isinstance(self.terms[0][0][0], str)
        )

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for m, _ in self.terms:
            for a in m:
                if isinstance(a, str):
                    out.add(a)
                else:
                    out |= a.num.symbols()
        return out

    # -- arithmetic ---------------------------------------------------------------------
    def _add(self, other: Dim, sign: int) -> Dim:
        o = Expr.of(other)
        acc = dict(self.terms)
        for m, c in o.terms:
            acc[m] = acc.get(m, 0) + sign * c
        return norm(Expr(acc))

    def __add__(self, other: Dim) -> Dim:
        return self._add(other, 1)

    def __radd__(self, other: Dim) -> Dim:
        return self._add(other, 1)

    def __sub__(self, other: Dim) -> Dim:
        return self._add(other, -1)

    def __rsub__(self, other: Dim) -> Dim:
        return Expr.of(other)._add(self, -1)

    def __neg__(self) -> Dim:
        return norm(Expr({m: -c for m, c in self.terms}))

    def __mul__(self, other: Dim) -> Dim:
        o = Expr.of(other)
        acc: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in o.terms:
                m = tuple(sorted(m1 + m2, key=_atom_key))
                acc[m] = acc.get(m, 0) + c1 * c2
        return norm(Expr(acc))

    def __rmul__(self, other: Dim) -> Dim:
        return self.__mul__(other)

    def floordiv(self, k: int) -> Dim:
        return floordiv(self, k)

    # -- comparison ---------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, int) and not isinstance(other, bool):
            return self.is_const() and self.const() == other
        return isinstance(other, Expr) and self.terms == other.terms

    def __hash__(self) -> int:
        return self._hash

    def sort_key(self) -> tuple:
        return tuple((_mono_key(m), c) for m, c in self.terms)

    # -- evaluation and substitution ------------------------------------------------------
    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for m, c in self.terms:
            v = c
            for a in m:
                if isinstance(a, str):
                    if a not in env:
                        raise KeyError(a)
                    v *= env[a]
                else:
                    v *= a.num.evaluate(env) // a.den
            total += v
        return total

    def subs(self, mapping: Mapping[str, Dim]) -> Dim:
        total: Dim = 0
        for m, c in self.terms:
            v: Dim = c
            for a in m:
                if isinstance(a, str):
                    v = v * mapping.get(a, sym(a))
                else:
                    v = v * floordiv(subs(a.num, mapping), a.den)
            total = total + v
        return total

    # -- text ---------------------------------------------------------------------------
    def to_str(self) -> str:
        if not self.terms:
            return "0"
        parts: list[str] = []
        for i, (m, c) in enumerate(self.terms):
            if m == ():
                body = str(abs(c))
            else:
                lone_div = len(m) == 1 and abs(c) == 1 and not (i == 0 and c < 0)
                factors = []
                for a in m:
                    s = str(a)
                    # floordiv binds like '*': a lone quotient needs no parentheses.
                    factors.append(s if isinstance(a, str) or lone_div else f"({s})")
                body = " * ".join(factors)
                if abs(c) != 1:
                    body = f"{body} * {abs(c)}"
            if i == 0:
                parts.append(("-" if c < 0 else "") + body)
            else:
                parts.append(("- " if c < 0 else "+ ") + body)
        return " ".join(parts)

    def __str__(self) -> str:
        return self.to_str()

    def __repr__(self) -> str:
        return f"Expr({self.to_str()!r})"


def norm(d: Dim) -> Dim:
    """Return an ``int`` for constant expressions, the expression otherwise."""
    if isinstance(d, Expr) and d.is_const():
        return d.const()
    return d


def sym(name: str) -> Expr:
    return Expr({(name,): 1})


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def floordiv(d: Dim, k: int) -> Dim:
    """``d floordiv k`` for a positive integer ``k``, simplified.

    The multiple-of-``k`` part of every coefficient moves out of the division:
    ``(q*k*a + r*a) floordiv k == q*a + (r*a) floordiv k`` for integer-valued ``a``, so every
    coefficient left inside (the constant included) lies in ``[0, k)``. A factor common to
    ``k`` and everything inside is divided out (``(2*x) floordiv 4 == x floordiv 2``), and
    ``(a floordiv p + c) floordiv q == (a + c*p) floordiv (p*q)``. Equal dims built along
    different paths (pooling twice, ceildiv of a ceildiv) thus reach the same form.
    """
    if k <= 0:
        raise ValueError("floordiv by a non-positive number")
    if isinstance(d, int):
        return d // k
    if k == 1:
        return d
    outside: dict[Monomial, int] = {}
    inside: dict[Monomial, int] = {}
    for m, c in d.terms:
        q, r = divmod(c, k)
        if q:
            outside[m] = q
        if r:
            inside[m] = r
    out = norm(Expr(outside))
    if not inside:
        return out
    g = math.gcd(k, *inside.values())
    if g > 1:
        inside = {m: c // g for m, c in inside.items()}
        k //= g
    rest = Expr(inside)
    if rest.is_const():
        return out  # 0 <= constant < k
    # Nested division: (a floordiv p + c) floordiv q == (a + c*p) floordiv (p*q).
    c0 = rest.const()
    var_terms = [(m, c) for m, c in rest.terms if m != ()]
    if len(var_terms) == 1:
        (m, c), = var_terms
        if c == 1 and len(m) == 1 and isinstance(m[0], FloorDiv):
            inner = m[0]
            return out + floordiv(inner.num + c0 * inner.den, inner.den * k)
    return out + Expr({(FloorDiv(rest, k),): 1})


def ceildiv(d: Dim, k: int) -> Dim:
    return floordiv(d + (k - 1), k)


def subs(d: Dim, mapping: Mapping[str, Dim]) -> Dim:
    return d if isinstance(d, int) else norm(d.subs(mapping))


def evaluate(d: Dim, env: Mapping[str, int]) -> int:
    return d if isinstance(d, int) else d.evaluate(env)


def symbols(d: Dim) -> set[str]:
    return set() if isinstance(d, int) else d.symbols()


def product(dims: list[Dim] | tuple[Dim, ...]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = out * d
    return norm(out) if isinstance(out, Expr) else out


def dim_str(d: Dim) -> str:
    """Text of a dim inside a type: atoms bare, compound expressions in parentheses."""
    if isinstance(d, int):
        return str(d)
    if d.is_atomic():
        return d.to_str()
    return f"({d.to_str()})"


# -- parsing ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+)|(floordiv|ceildiv)\b|([A-Za-z_][A-Za-z0-9_]*)|(.))")


class DimParseError(ValueError):
    pass


def parse_dim(text: str) -> Dim:
    """Parse the dim grammar the printer writes: ``+ -`` below ``* floordiv ceildiv``."""
    toks: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        num, kw, ident, other = m.groups()
        if num is not None:
            toks.append(("num", num))
        elif kw is not None:
            toks.append(("kw", kw))
        elif ident is not None:
            toks.append(("id", ident))
        elif other is not None and other.strip():
            toks.append(("op", other))
    i = 0

    def peek() -> tuple[str, str] | None:
        return toks[i] if i < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise DimParseError(f"unexpected end of dimension {text!r}")
        t = toks[i]
        i += 1
        return t

    def primary() -> Dim:
        kind, val = take()
        if kind == "num":
            return int(val)
        if kind == "id":
            return sym(val)
        if (kind, val) == ("op", "-"):
            return -primary()  # type: ignore[operator]
        if (kind, val) == ("op", "("):
            v = additive()
            if take() != ("op", ")"):
                raise DimParseError(f"expected ')' in dimension {text!r}")
            return v
        raise DimParseError(f"unexpected {val!r} in dimension {text!r}")

    def multiplicative() -> Dim:
        v = primary()
        while True:
            t = peek()
            if t == ("op", "*"):
                take()
                v = v * primary()
            elif t is not None and t[0] == "kw":
                take()
                k = primary()
                if not isinstance(k, int) or k <= 0:
                    raise DimParseError(f"{t[1]} needs a positive integer in {text!r}")
                v = floordiv(v, k) if t[1] == "floordiv" else ceildiv(v, k)
            else:
                return v

    def additive() -> Dim:
        v = multiplicative()
        while True:
            t = peek()
            if t == ("op", "+"):
                take()
                v = v + multiplicative()
            elif t == ("op", "-"):
                take()
                v = v - multiplicative()
            else:
                return v

    result = additive()
    if i != len(toks):
        raise DimParseError(f"unexpected {toks[i][1]!r} in dimension {text!r}")
    return norm(result) if isinstance(result, Expr) else result
