"""Symbolic tensor dimensions and their small normalising simplifier.

A dimension is either a plain ``int`` or an :class:`Expr`: an integer polynomial over atoms.
An atom is a named symbol (``batch``, ``seq``), a quotient ``num floordiv den``, a remainder
``num mod den`` (both floored, as Python's ``//`` and ``%``; ``den`` is an integer > 1 or a
symbolic dim), or ``min(a, b, ...)`` / ``max(a, b, ...)``. Expressions are kept in one canonical
form, so two dims built along different paths are equal when the rules below bring them to the
same form; printing is deterministic, and the printed text parses back to the same form. This
covers convolution and pooling arithmetic, flattening and reshaping, and the index arithmetic
of loop-level code, without pulling in a computer-algebra system.

Assumptions the construction rules make (dims are sizes): a symbolic divisor is positive, and
``min``/``max`` drop an argument that another one dominates when every symbol is at least 1
(``max(h, 1) == h``). Every other rule holds for any integer value of the symbols, so
:func:`evaluate` follows Python's floor semantics for negative numerators too. Index
arithmetic over loop variables that may be 0 should build ``min``/``max`` only of arguments
for which that assumption is harmless, and use :func:`simplify` with explicit ranges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

from neuralc.limits import NESTING

Dim = Union[int, "Expr"]

# A monomial is a sorted tuple of atoms (with repetition for powers); the empty tuple is 1.
Monomial = tuple["Atom", ...]


def _den_key(den: int | Expr) -> tuple:
    return (0, den) if isinstance(den, int) else (1, den.sort_key())


def _bare(e: Expr) -> bool:
    """``e`` prints as one self-delimiting token: a symbol or a ``min``/``max`` call."""
    if len(e.terms) != 1:
        return False
    m, c = e.terms[0]
    return c == 1 and len(m) == 1 and isinstance(m[0], (str, MinMax))


def _operand_str(e: int | Expr) -> str:
    if isinstance(e, int):
        return str(e)
    return e.to_str() if _bare(e) else f"({e.to_str()})"


@dataclass(frozen=True, order=False)
class FloorDiv:
    """``num floordiv den``: ``den`` is an int > 1 or a non-constant (positive) Expr, and no
    rule of :func:`floordiv` applies any more to ``num`` and ``den``."""

    num: Expr
    den: int | Expr

    def sort_key(self) -> tuple:
        return (1, self.num.sort_key(), _den_key(self.den))

    def __str__(self) -> str:
        return f"{_operand_str(self.num)} floordiv {_operand_str(self.den)}"


@dataclass(frozen=True, order=False)
class Mod:
    """``num mod den`` (floored: in ``[0, den)``), in the canonical form :func:`mod` gives."""

    num: Expr
    den: int | Expr

    def sort_key(self) -> tuple:
        return (2, self.num.sort_key(), _den_key(self.den))

    def __str__(self) -> str:
        return f"{_operand_str(self.num)} mod {_operand_str(self.den)}"


@dataclass(frozen=True, order=False)
class MinMax:
    """``min(args)`` or ``max(args)``: two or more distinct args in canonical order, none of
    them dominated by another."""

    kind: str  # "min" or "max"
    args: tuple[Expr, ...]

    def sort_key(self) -> tuple:
        return (3, self.kind, tuple(a.sort_key() for a in self.args))

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(a.to_str() for a in self.args)})"


Atom = Union[str, FloorDiv, Mod, MinMax]


def _atom_key(a: Atom) -> tuple:
    return (0, a) if isinstance(a, str) else a.sort_key()


def _mono_key(m: Monomial) -> tuple:
    # Constant term last, so expressions read as people write them: ``h - 3``.
    return (m == (), tuple(_atom_key(a) for a in m))


class Expr:
    """A canonical integer polynomial over symbols and the atoms above.

    Construct with :func:`sym`, arithmetic operators, :func:`floordiv`, :func:`mod`,
    :func:`dmin` and :func:`dmax`; results that turn out constant come back as ``int`` from
    :func:`norm`.
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
                out |= _atom_symbols(a)
        return out

    def atoms(self) -> set[Atom]:
        """The atoms of the top-level monomials (not those nested inside them)."""
        return {a for m, _ in self.terms for a in m}

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

    def floordiv(self, k: Dim) -> Dim:
        return floordiv(self, k)

    def mod(self, k: Dim) -> Dim:
        return mod(self, k)

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
                v *= _eval_atom(a, env)
            total += v
        return total

    def subs(self, mapping: Mapping[str, Dim]) -> Dim:
        total: Dim = 0
        for m, c in self.terms:
            v: Dim = c
            for a in m:
                v = v * _subs_atom(a, mapping)
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
                lone = len(m) == 1 and abs(c) == 1 and not (i == 0 and c < 0)
                factors = []
                for a in m:
                    s = str(a)
                    # floordiv and mod bind like '*': a lone one needs no parentheses.
                    factors.append(s if isinstance(a, (str, MinMax)) or lone else f"({s})")
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


def _atom(a: Atom) -> Expr:
    return Expr({(a,): 1})


def _single_atom(e: Expr) -> Atom | None:
    """The atom of ``e`` when ``e`` is exactly that atom (coefficient 1, no constant)."""
    if len(e.terms) == 1 and e.terms[0][1] == 1 and len(e.terms[0][0]) == 1:
        return e.terms[0][0][0]
    return None


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


# -- atoms: symbols, evaluation, substitution -----------------------------------------------


def _atom_symbols(a: Atom) -> set[str]:
    if isinstance(a, str):
        return {a}
    if isinstance(a, MinMax):
        out: set[str] = set()
        for e in a.args:
            out |= e.symbols()
        return out
    return a.num.symbols() | symbols(a.den)


def _eval_atom(a: Atom, env: Mapping[str, int]) -> int:
    if isinstance(a, str):
        if a not in env:
            raise KeyError(a)
        return env[a]
    if isinstance(a, MinMax):
        values = [e.evaluate(env) for e in a.args]
        return min(values) if a.kind == "min" else max(values)
    num, den = a.num.evaluate(env), evaluate(a.den, env)
    return num // den if isinstance(a, FloorDiv) else num % den


def _subs_atom(a: Atom, mapping: Mapping[str, Dim]) -> Dim:
    if isinstance(a, str):
        return mapping.get(a, sym(a))
    if isinstance(a, MinMax):
        # Substitution is of sizes (>= 1): a min/max simplifies under that assumption.
        return _minmax(a.kind, [subs(e, mapping) for e in a.args])
    fn = floordiv if isinstance(a, FloorDiv) else mod
    return fn(subs(a.num, mapping), subs(a.den, mapping))


# -- division --------------------------------------------------------------------------------


def _divisor(k: Dim, what: str) -> int | Expr:
    """``k`` as a divisor: a positive int, or a symbolic dim that is not provably <= 0."""
    if isinstance(k, bool) or not isinstance(k, (int, Expr)):
        raise TypeError(f"not a dimension: {k!r}")
    k = norm(k)
    if isinstance(k, int):
        if k <= 0:
            raise ValueError(f"{what} by a non-positive number")
        return k
    hi = _Bounder({}).upper(k)
    if hi <= 0:
        raise ValueError(f"{what} by {k}, which is never positive")
    return k


def _split_int(d: Expr, k: int) -> tuple[Dim, Expr]:
    """``d == out * k + rest`` with every coefficient of ``rest`` (the constant too) in
    ``[0, k)``: ``q*k*a + r*a`` leaves ``q*a`` outside for any integer-valued ``a``."""
    outside: dict[Monomial, int] = {}
    inside: dict[Monomial, int] = {}
    for m, c in d.terms:
        q, r = divmod(c, k)
        if q:
            outside[m] = q
        if r:
            inside[m] = r
    return norm(Expr(outside)), Expr(inside)


def _mono_divides(lead: Monomial, m: Monomial) -> Monomial | None:
    """``m / lead`` when ``lead``'s atoms are a sub-multiset of ``m``'s, else None."""
    rest = list(m)
    for a in lead:
        if a not in rest:
            return None
        rest.remove(a)
    return tuple(rest)


def _split_sym(d: Expr, k: Expr) -> tuple[Dim, Expr]:
    """``d == out * k + rest``, moving out every term that is a multiple of ``k``'s leading
    term (highest degree, then canonical order), as polynomial division does."""
    lead_m, lead_c = max(k.terms, key=lambda mc: (len(mc[0]), _mono_key(mc[0])))
    out: Dim = 0
    rest = d
    for _ in range(64):  # a safety bound; each step removes the reducible term it picks
        pick = None
        for m, c in rest.terms:
            q_m = _mono_divides(lead_m, m)
            if q_m is not None and c % lead_c == 0:
                pick = Expr({q_m: c // lead_c})
                break
        if pick is None:
            break
        out = out + pick
        rest = Expr.of(rest - pick * k)
    return out, rest


def _content(e: Expr, with_const: bool) -> int:
    return math.gcd(*(c for m, c in e.terms if with_const or m != ()))


def _common_atom(rest: Expr, k: Expr) -> Atom | None:
    """An atom that divides every term of ``rest`` and of ``k`` (neither has a constant)."""
    if rest.const() or k.const():
        return None
    shared: set[Atom] | None = None
    for m, _ in rest.terms + k.terms:
        shared = set(m) if shared is None else shared & set(m)
    return min(shared, key=_atom_key) if shared else None


def _drop_atom(e: Expr, a: Atom) -> Dim:
    terms: dict[Monomial, int] = {}
    for m, c in e.terms:
        lst = list(m)
        lst.remove(a)
        terms[tuple(lst)] = c
    return norm(Expr(terms))


def _split(d: Dim, k: int | Expr) -> tuple[Dim, Expr]:
    if isinstance(k, int):
        return _split_int(Expr.of(d), k)
    return _split_sym(Expr.of(d), k)


def floordiv(d: Dim, k: Dim) -> Dim:
    """``d floordiv k`` (Python's ``//``) for a positive int or a symbolic ``k``, simplified.

    Rules, each exact for integer-valued atoms and a positive divisor:

    - Multiples of ``k`` move out. For an int ``k`` that is the multiple-of-``k`` part of every
      coefficient (``(q*k*a + r*a) floordiv k == q*a + (r*a) floordiv k``), so every coefficient
      left inside, the constant included, lies in ``[0, k)``; a constant alone gives 0. For a
      symbolic ``k`` every term that is a multiple of ``k`` moves out
      (``(i * seq + j) floordiv seq == i + j floordiv seq``; ``k floordiv k == 1``).
    - A factor ``g`` common to ``k`` and the non-constant terms inside is divided out, the
      constant floored: ``(g*x + b) floordiv (g*k') == (x + b floordiv g) floordiv k'``
      (``(2*x) floordiv 4 == x floordiv 2``); so is an atom common to every term
      (``(seq * i) floordiv (seq * 2) == i floordiv 2``).
    - ``(a floordiv p + c) floordiv q == (a + c*p) floordiv (p*q)``.

    Equal dims built along different paths (pooling twice, ceildiv of a ceildiv) thus reach
    the same form.
    """
    k = _divisor(k, "floordiv")
    if isinstance(k, int):
        if isinstance(d, int):
            return d // k
        if k == 1:
            return d
    elif d == 0:
        return 0
    out, rest = _split(d, k)
    return out + _floordiv_rest(rest, k)


def _floordiv_rest(rest: Expr, k: int | Expr) -> Dim:
    """``rest floordiv k`` once no term of ``rest`` is a multiple of ``k``."""
    if not rest.terms or (isinstance(k, int) and rest.is_const()):
        return 0
    if isinstance(k, Expr):
        a = _common_atom(rest, k)
        if a is not None:
            return floordiv(_drop_atom(rest, a), _drop_atom(k, a))
    if not rest.is_const():
        g = math.gcd(_content(rest, False), k if isinstance(k, int) else _content(k, True))
        if g > 1:
            b = rest.const()
            inner = Expr({m: c // g for m, c in rest.terms if m != ()}) + b // g
            return floordiv(inner, _exact_div(k, g))
    var_terms = [(m, c) for m, c in rest.terms if m != ()]
    if len(var_terms) == 1:
        (m, c), = var_terms
        if c == 1 and len(m) == 1 and isinstance(m[0], FloorDiv):
            inner_div = m[0]
            return floordiv(inner_div.num + rest.const() * inner_div.den, inner_div.den * k)
    return _atom(FloorDiv(rest, k))


def _exact_div(k: int | Expr, g: int) -> Dim:
    if isinstance(k, int):
        return k // g
    return norm(Expr({m: c // g for m, c in k.terms}))


def ceildiv(d: Dim, k: Dim) -> Dim:
    """``d ceildiv k == (d + k - 1) floordiv k`` for a positive ``k``."""
    k = _divisor(k, "ceildiv")
    return floordiv(d + (k - 1), k)


def mod(d: Dim, k: Dim) -> Dim:
    """``d mod k`` (Python's ``%``: in ``[0, k)`` for a positive ``k``), simplified.

    Rules, exact for integer-valued atoms and a positive divisor: multiples of ``k`` vanish
    (every coefficient is reduced mod an int ``k``: ``(i*16 + j) mod 16 == j mod 16``; terms
    that are multiples of a symbolic ``k`` go: ``(i*seq + j) mod seq == j mod seq``);
    ``d mod 1 == 0``; constants fold; a factor common to ``k`` and the non-constant terms
    comes out (``(g*x + b) mod (g*k') == g * ((x + b floordiv g) mod k') + b mod g``), as does
    an atom common to every term; ``(a mod p) mod q`` is ``a mod q`` when ``q`` divides ``p``
    and ``a mod p`` when ``p <= q``.
    """
    k = _divisor(k, "mod")
    if isinstance(k, int):
        if isinstance(d, int):
            return d % k
        if k == 1:
            return 0
        return _mod_rest(Expr({m: c % k for m, c in d.terms}), k)
    if d == 0:
        return 0
    return _mod_rest(_split_sym(Expr.of(d), k)[1], k)


def _mod_rest(rest: Expr, k: int | Expr) -> Dim:
    """``rest mod k`` once no term of ``rest`` is a multiple of ``k``."""
    if not rest.terms:
        return 0
    if isinstance(k, int) and rest.is_const():
        return rest.const()
    if isinstance(k, Expr):
        a = _common_atom(rest, k)
        if a is not None:
            return _atom(a) * mod(_drop_atom(rest, a), _drop_atom(k, a))
    if not rest.is_const():
        g = math.gcd(_content(rest, False), k if isinstance(k, int) else _content(k, True))
        if g > 1:
            b = rest.const()
            inner = Expr({m: c // g for m, c in rest.terms if m != ()}) + b // g
            return g * mod(inner, _exact_div(k, g)) + b % g
    inner_mod = _single_atom(rest)
    if isinstance(inner_mod, Mod):
        p = inner_mod.den
        if isinstance(p, int) and isinstance(k, int):
            if p % k == 0:
                return mod(inner_mod.num, k)
            if p <= k:
                return _atom(inner_mod)
        elif p == k:
            return _atom(inner_mod)
    return _atom(Mod(rest, k))


# -- min and max --------------------------------------------------------------------------------


def dmin(*args: Dim) -> Dim:
    """``min(args)``: nested mins flatten, constants fold, and an argument that another one
    provably bounds from below (every symbol >= 1) is dropped; the rest sort canonically."""
    return _minmax("min", list(args))


def dmax(*args: Dim) -> Dim:
    """``max(args)``, as :func:`dmin` (``max(h, 1) == h``)."""
    return _minmax("max", list(args))


def dmin_in(ranges: Ranges, *args: Dim) -> Dim:
    """``min(args)`` simplified with the given ranges of its symbols instead of "every symbol
    >= 1": what index arithmetic over loop variables (which start at 0) needs."""
    return _minmax("min", list(args), _Bounder(ranges))


def dmax_in(ranges: Ranges, *args: Dim) -> Dim:
    """``max(args)``, as :func:`dmin_in`."""
    return _minmax("max", list(args), _Bounder(ranges))


def _rebuild_minmax(kind: str, args: list[Dim]) -> Dim:
    """``min``/``max`` of ``args`` assuming nothing of their symbols (which may be loop
    variables, starting at 0): what parsing uses, so that a form built with known ranges
    comes back as it was printed, never simplified under assumptions it was not made with."""
    free: set[str] = set()
    for d in args:
        free |= symbols(d)
    return _minmax(kind, list(args), _Bounder({n: (None, None) for n in free}))


def _minmax(kind: str, args: list[Dim], bounder: _Bounder | None = None) -> Dim:
    if not args:
        raise TypeError(f"{kind} needs at least one argument")
    flat: list[Expr] = []
    for d in args:
        e = Expr.of(d)
        inner = _single_atom(e)
        flat.extend(inner.args if isinstance(inner, MinMax) and inner.kind == kind else [e])
    pick = min if kind == "min" else max
    consts = [e.const() for e in flat if e.is_const()]
    cands = {e for e in flat if not e.is_const()}
    if consts:
        cands.add(Expr.of(pick(consts)))
    b = bounder or _Bounder({})
    kept: list[Expr] = []
    for x in sorted(cands, key=lambda e: e.sort_key()):
        if any(_dominates(kind, y, x, b) for y in kept):
            continue
        kept = [y for y in kept if not _dominates(kind, x, y, b)] + [x]
    if len(kept) == 1:
        return norm(kept[0])
    return _atom(MinMax(kind, tuple(sorted(kept, key=lambda e: e.sort_key()))))


def _dominates(kind: str, y: Expr, x: Expr, b: _Bounder) -> bool:
    """``y`` makes ``x`` redundant: ``y <= x`` always for min, ``y >= x`` for max."""
    diff = x - y if kind == "min" else y - x
    return b.lower(diff) >= 0


# -- helpers on dims -----------------------------------------------------------------------------


def subs(d: Dim, mapping: Mapping[str, Dim]) -> Dim:
    return d if isinstance(d, int) else norm(d.subs(mapping))


def evaluate(d: Dim, env: Mapping[str, int]) -> int:
    """``d`` at the symbol values ``env`` with Python's floor semantics (KeyError: unbound)."""
    return d if isinstance(d, int) else d.evaluate(env)


def symbols(d: Dim) -> set[str]:
    return set() if isinstance(d, int) else d.symbols()


def product(dims: list[Dim] | tuple[Dim, ...]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = out * d
    return norm(out) if isinstance(out, Expr) else out


# -- facts about symbols (the ``dims`` module attribute) ----------------------------------------

#: The size a symbol takes for single-number estimates when nothing else is recorded for it.
NOMINAL_SIZE = 64


def dim_facts(entry: object) -> tuple[int | None, int | None, int]:
    """``(lo, hi, step)`` of one entry of a module's ``dims`` attribute.

    An entry is ``[lo, hi]`` or ``[lo, hi, step]`` (``dims { h: 32..512 step 32 }``; either end
    None when open); a missing entry is ``(None, None, 1)``: any size.
    """
    if not isinstance(entry, (list, tuple)) or len(entry) < 2:
        return None, None, 1
    lo, hi = entry[0], entry[1]
    step = entry[2] if len(entry) > 2 and isinstance(entry[2], int) else 1
    return lo, hi, max(step, 1)


def fit_size(value: int, lo: int | None = None, hi: int | None = None, step: int = 1) -> int:
    """The size nearest ``value`` that the facts allow: at least ``lo`` (and 1), a multiple of
    ``step``, at most ``hi``; rounding up unless that passes ``hi``."""
    v = max(value, lo or 1, 1)
    v = -(-v // step) * step
    if hi is not None and v > hi:
        v = max(hi // step * step, step)
    return v


def dim_str(d: Dim) -> str:
    """Text of a dim inside a type: atoms bare, compound expressions in parentheses."""
    if isinstance(d, int):
        return str(d)
    if d.is_atomic():
        return d.to_str()
    return f"({d.to_str()})"


# -- range analysis ------------------------------------------------------------------------------

Bound = Union[int, "Expr", None]
Ranges = Mapping[str, tuple[Bound, Bound]]
_INF = math.inf
_DEPTH = 6  # how deep symbolic bounds are chased (bounds given in terms of other symbols)


def _emul(a: float, b: float) -> float:
    """Product of interval ends; 0 times an infinite end is 0 (the end is a limit)."""
    return 0 if a == 0 or b == 0 else a * b


def _efloordiv(a: float, k: int) -> float:
    return a if math.isinf(a) else a // k


class _Bounder:
    """Inclusive intervals of dims under per-symbol ranges (missing symbols: ``[1, inf)``).

    Interval arithmetic over the polynomial, plus one symbolic step: where a symbol's bound is
    itself a dim (``i`` in ``[0, seq - 1]``) and the expression is linear in that symbol with a
    constant coefficient, the symbol is replaced by the bound that minimises (or maximises) the
    expression and the result bounded again. Sufficient, not complete: a bound it gives always
    holds, but it may be looser than the truth.
    """

    def __init__(self, ranges: Ranges):
        self.ranges = ranges
        self.depth = 0
        # Every bound found is sound, so one found deeper (looser) may be reused.
        self.cache: dict[tuple[Expr, bool], float] = {}

    def lower(self, d: Dim) -> float:
        return self._side(d, lower=True)

    def upper(self, d: Dim) -> float:
        return self._side(d, lower=False)

    def _side(self, d: Dim, lower: bool) -> float:
        if isinstance(d, int):
            return d
        if (d, lower) in self.cache:
            return self.cache[(d, lower)]
        if self.depth > _DEPTH:
            return -_INF if lower else _INF
        self.depth += 1
        try:
            lo, hi = self.interval(d)
            best = lo if lower else hi
            for alt in self._substituted(d, lower):
                v = self._side(alt, lower)
                best = max(best, v) if lower else min(best, v)
        finally:
            self.depth -= 1
        self.cache[(d, lower)] = best
        return best

    def _substituted(self, d: Expr, lower: bool) -> list[Dim]:
        """``d`` with one symbol replaced by its symbolic bound, where that is sound: ``d`` is
        linear in the symbol with a coefficient of known sign (a constant, or a dim such as
        ``16 * w`` that the ranges prove non-negative), so the extreme of ``d`` is at an end
        of the symbol's range (``16 * w * i + ...`` with ``i <= h - 1``)."""
        out: list[Dim] = []
        for s in sorted(d.symbols() & self.ranges.keys()):
            lo, hi = self.ranges[s]
            coeff = _linear_coeff(d, s)
            if coeff is None:
                continue
            if isinstance(coeff, int):
                positive = coeff > 0
            elif self.lower(coeff) >= 0:
                positive = True
            elif self.upper(coeff) <= 0:
                positive = False
            else:
                continue
            bound = lo if positive == lower else hi
            if isinstance(bound, Expr) or (not isinstance(coeff, int) and bound is not None):
                out.append(subs(d, {s: bound}))
        return out

    def interval(self, d: Dim) -> tuple[float, float]:
        if isinstance(d, int):
            return d, d
        lo_sum: float = 0
        hi_sum: float = 0
        for m, c in d.terms:
            lo: float = c
            hi: float = c
            for a in m:
                alo, ahi = self._atom_interval(a)
                ends = [_emul(x, y) for x in (lo, hi) for y in (alo, ahi)]
                lo, hi = min(ends), max(ends)
            lo_sum += lo
            hi_sum += hi
        return lo_sum, hi_sum

    def _atom_interval(self, a: Atom) -> tuple[float, float]:
        if isinstance(a, str):
            lo, hi = self.ranges.get(a, (1, None))
            return (-_INF if lo is None else self.lower(lo),
                    _INF if hi is None else self.upper(hi))
        if isinstance(a, MinMax):
            ivs = [self.interval(e) for e in a.args]
            pick = min if a.kind == "min" else max
            return pick(i[0] for i in ivs), pick(i[1] for i in ivs)
        q = self.quotient(a.num, a.den)
        if isinstance(a, FloorDiv):
            return q
        return self._mod_interval(a, q)

    def _mod_interval(self, a: Mod, q: tuple[float, float]) -> tuple[float, float]:
        nlo, nhi = self.lower(a.num), self.upper(a.num)
        if q[0] == q[1] and q[0] == 0:
            return nlo, nhi
        if isinstance(a.den, int) and q[0] == q[1] and not math.isinf(q[0]):
            return nlo - q[0] * a.den, nhi - q[0] * a.den
        if self.lower(a.den) < 1:
            return -_INF, _INF  # a divisor not proven positive: no sign to rely on
        khi = self.upper(a.den)
        top = khi - 1
        if nlo >= 0:
            top = min(top, nhi)
        return 0, top

    def quotient(self, num: Expr, den: int | Expr) -> tuple[float, float]:
        """Interval of ``num floordiv den``."""
        if isinstance(den, int):
            lo, hi = self.lower(num), self.upper(num)
            return _efloordiv(lo, den), _efloordiv(hi, den)
        if self.lower(num) >= 0 and self.upper(num - den) <= -1:
            return 0, 0
        if self.lower(num + den) >= 0 and self.upper(num) <= -1:
            return -1, -1
        klo, khi = self.lower(den), self.upper(den)
        if klo < 1:
            return -_INF, _INF
        nlo, nhi = self.lower(num), self.upper(num)
        if nlo >= 0:
            qlo: float = 0 if math.isinf(khi) else nlo // khi
        else:
            qlo = nlo if math.isinf(nlo) else nlo // klo
        if nhi >= 0:
            qhi: float = nhi if math.isinf(nhi) else nhi // klo
        else:
            qhi = -1 if math.isinf(khi) else nhi // khi
        return qlo, qhi


def _linear_coeff(d: Expr, s: str) -> Dim | None:
    """``c`` when ``d == c * s + (terms without s)``, ``c`` free of ``s`` (an int or a dim:
    ``16 * w`` in ``16 * w * s + t``)."""
    coeff: Dim = 0
    found = False
    for m, c in d.terms:
        if s not in m:
            if any(s in _atom_symbols(a) for a in m):
                return None
            continue
        rest = list(m)
        rest.remove(s)
        if s in rest or any(s in _atom_symbols(a) for a in rest):
            return None
        term: Dim = c
        for a in rest:
            term = term * _atom(a)
        coeff = coeff + term
        found = True
    return coeff if found else None


def _finite(v: float) -> int | None:
    return None if math.isinf(v) else int(v)


def bounds(d: Dim, ranges: Ranges | None = None) -> tuple[int | None, int | None]:
    """An inclusive interval ``(lo, hi)`` holding every value of ``d`` (None: unbounded).

    ``ranges`` gives inclusive bounds per symbol; a bound may be None (open), an int or a
    dim in other symbols (``{"i": (0, seq - 1)}``). A symbol not in ``ranges`` is a size:
    ``[1, None]``. The interval is sound but not always tight (see :class:`_Bounder`).
    """
    b = _Bounder(ranges or {})
    return _finite(b.lower(d)), _finite(b.upper(d))


def simplify(d: Dim, ranges: Ranges | None = None) -> Dim:
    """``d`` with the divisions, remainders, mins and maxes that ``ranges`` settle removed.

    Bottom-up, each atom is rebuilt from its simplified parts and then: a quotient whose
    interval is one value becomes that value (``i floordiv 16 -> 0`` for ``i`` in
    ``[0, 15]``; ``(j * seq + i) floordiv seq -> j`` for ``i`` in ``[0, seq - 1]``); a
    remainder ``n mod k`` whose quotient is one value ``q`` becomes ``n - q * k``
    (``i mod 16 -> i``); a ``min``/``max`` argument that another one bounds under the ranges
    is dropped (``min(i, 15) -> i``). Every step is proven with :func:`bounds`, so the result
    equals ``d`` wherever the symbols lie in their ranges; an unproven step leaves the atom
    alone. Sufficient, not complete.
    """
    if isinstance(d, int):
        return d
    b = _Bounder(ranges or {})
    for _ in range(4):
        new = _simplify(d, b)
        if new == d or isinstance(new, int):
            return new
        d = new
    return d


def _simplify(d: Dim, b: _Bounder) -> Dim:
    if isinstance(d, int):
        return d
    total: Dim = 0
    for m, c in d.terms:
        v: Dim = c
        for a in m:
            v = v * _simplify_atom(a, b)
        total = total + v
    return total


def _simplify_atom(a: Atom, b: _Bounder) -> Dim:
    if isinstance(a, str):
        return sym(a)
    if isinstance(a, MinMax):
        return _minmax(a.kind, [_simplify(e, b) for e in a.args], b)
    fn = floordiv if isinstance(a, FloorDiv) else mod
    rebuilt = fn(_simplify(a.num, b), _simplify(a.den, b))
    if isinstance(rebuilt, int):
        return rebuilt
    total: Dim = 0
    for m, c in rebuilt.terms:
        v: Dim = c
        for x in m:
            v = v * _fold(x, b)
        total = total + v
    return total


def _fold(a: Atom, b: _Bounder) -> Dim:
    """A freshly built atom, replaced by a simpler equal dim where the ranges prove one."""
    if isinstance(a, (FloorDiv, Mod)):
        qlo, qhi = b.quotient(a.num, a.den)
        if qlo == qhi and not math.isinf(qlo):
            q = int(qlo)
            return q if isinstance(a, FloorDiv) else a.num - a.den * q
    return _atom(a)


# -- parsing ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(\d+)|(floordiv|ceildiv|mod|min|max)\b|([A-Za-z_][A-Za-z0-9_]*)|(.))"
)
_BINARY = {"floordiv": floordiv, "ceildiv": ceildiv, "mod": mod}


class DimParseError(ValueError):
    pass


def parse_dim(text: str) -> Dim:
    """Parse the dim grammar the printer writes: ``+ -`` below ``* floordiv ceildiv mod``,
    unary ``-`` above both, ``min(a, b, ...)`` and ``max(...)`` as calls."""
    return _DimParser(text).parse()


class _DimParser:
    def __init__(self, text: str):
        self.text = text
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                break
            pos = m.end()
            num, kw, ident, other = m.groups()
            if num is not None:
                self.toks.append(("num", num))
            elif kw is not None:
                self.toks.append(("kw", kw))
            elif ident is not None:
                self.toks.append(("id", ident))
            elif other is not None and other.strip():
                self.toks.append(("op", other))
        self.i = 0
        self.depth = 0

    def parse(self) -> Dim:
        result = self.additive()
        if self.i != len(self.toks):
            raise self.error(f"unexpected {self.toks[self.i][1]!r}")
        return norm(result) if isinstance(result, Expr) else result

    def error(self, what: str) -> DimParseError:
        return DimParseError(f"{what} in dimension {self.text!r}")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise DimParseError(f"unexpected end of dimension {self.text!r}")
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, op: str) -> None:
        if self.take() != ("op", op):
            raise self.error(f"expected {op!r}")

    def primary(self) -> Dim:
        # Each bracket and unary minus descends once: bound the depth, not the stack.
        self.depth += 1
        if self.depth > NESTING.value:
            raise self.error(f"more than {NESTING.value} levels of nesting ({NESTING.hint()})")
        try:
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self) -> Dim:
        kind, val = self.take()
        if kind == "num":
            return int(val)
        if kind == "id":
            return sym(val)
        if (kind, val) == ("op", "-"):
            return -self.primary()  # type: ignore[operator]
        if (kind, val) == ("op", "("):
            v = self.additive()
            self.expect(")")
            return v
        if kind == "kw" and val in ("min", "max"):
            self.expect("(")
            args = [self.additive()]
            while self.peek() == ("op", ","):
                self.take()
                args.append(self.additive())
            self.expect(")")
            return _rebuild_minmax(val, args)
        raise self.error(f"unexpected {val!r}")

    def multiplicative(self) -> Dim:
        v = self.primary()
        while True:
            t = self.peek()
            if t == ("op", "*"):
                self.take()
                v = v * self.primary()
            elif t is not None and t[0] == "kw" and t[1] in _BINARY:
                self.take()
                k = self.primary()
                if isinstance(k, int) and k <= 0:
                    raise self.error(f"{t[1]} needs a positive divisor")
                try:
                    v = _BINARY[t[1]](v, k)
                except ValueError as e:
                    raise self.error(str(e)) from None
            else:
                return v

    def additive(self) -> Dim:
        v = self.multiplicative()
        while True:
            t = self.peek()
            if t == ("op", "+"):
                self.take()
                v = v + self.multiplicative()
            elif t == ("op", "-"):
                self.take()
                v = v - self.multiplicative()
            else:
                return v
