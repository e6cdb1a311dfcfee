"""The symbolic-dim simplifier: canonical forms, floordiv/mod/min/max rules, text round trip,
evaluation, and range analysis.

The property tests build random expressions twice, once as dims and once as a Python function
over ints, and compare them at random positive symbol values: the simplifier may reshape an
expression however it likes, but never change its value. Expressions with only integer
divisors and no min/max are also checked at zero and negative symbol values (index
arithmetic); range simplification is checked at values inside the ranges it was given.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralc.ir.dims import (
    DimParseError,
    Expr,
    FloorDiv,
    MinMax,
    Mod,
    bounds,
    ceildiv,
    dim_str,
    dmax,
    dmin,
    evaluate,
    floordiv,
    mod,
    norm,
    parse_dim,
    product,
    simplify,
    subs,
    sym,
    symbols,
)

h, w, x, y = sym("h"), sym("w"), sym("x"), sym("y")
SYMS = ("a", "b", "c")

# -- random expressions --------------------------------------------------------------------

# A case is (dim, python function of the environment).
Case = tuple[object, Callable[[dict[str, int]], int]]


def _leaf() -> st.SearchStrategy[Case]:
    const = st.integers(-6, 9).map(lambda n: (n, lambda env, n=n: n))
    var = st.sampled_from(SYMS).map(lambda s: (sym(s), lambda env, s=s: env[s]))
    return st.one_of(const, var)


def _positive_divisor() -> st.SearchStrategy[Case]:
    """``s * k + c`` with ``k >= 1`` and ``c >= 1``: positive for every ``s >= 0``."""

    def make(p: tuple[str, int, int]) -> Case:
        s, k, c = p
        return sym(s) * k + c, lambda env: env[s] * k + c

    return st.tuples(st.sampled_from(SYMS), st.integers(1, 3), st.integers(1, 3)).map(make)


def _extend_int(children: st.SearchStrategy[Case]) -> st.SearchStrategy[Case]:
    """Polynomials, floordiv, ceildiv and mod by positive ints: exact at any symbol values."""

    def add(p: tuple[Case, Case]) -> Case:
        (a, fa), (b, fb) = p
        return a + b, lambda env: fa(env) + fb(env)

    def sub(p: tuple[Case, Case]) -> Case:
        (a, fa), (b, fb) = p
        return a - b, lambda env: fa(env) - fb(env)

    def mul(p: tuple[Case, Case]) -> Case:
        (a, fa), (b, fb) = p
        return a * b, lambda env: fa(env) * fb(env)

    def neg(c: Case) -> Case:
        a, fa = c
        return -a, lambda env: -fa(env)

    def fdiv(p: tuple[Case, int]) -> Case:
        (a, fa), k = p
        return floordiv(a, k), lambda env: fa(env) // k

    def cdiv(p: tuple[Case, int]) -> Case:
        (a, fa), k = p
        return ceildiv(a, k), lambda env: -(-fa(env) // k)

    def imod(p: tuple[Case, int]) -> Case:
        (a, fa), k = p
        return mod(a, k), lambda env: fa(env) % k

    pair = st.tuples(children, children)
    divisor = st.tuples(children, st.integers(1, 6))
    return st.one_of(
        pair.map(add),
        pair.map(sub),
        pair.map(mul),
        children.map(neg),
        divisor.map(fdiv),
        divisor.map(cdiv),
        divisor.map(imod),
    )


def _extend(children: st.SearchStrategy[Case]) -> st.SearchStrategy[Case]:
    """Everything: also symbolic divisors and min/max (symbols >= 1, as for sizes)."""

    def sdiv(p: tuple[Case, Case, int]) -> Case:
        (a, fa), (k, fk), which = p
        if which == 0:
            return floordiv(a, k), lambda env: fa(env) // fk(env)
        if which == 1:
            return ceildiv(a, k), lambda env: -(-fa(env) // fk(env))
        return mod(a, k), lambda env: fa(env) % fk(env)

    def mm(p: tuple[Case, Case, bool]) -> Case:
        (a, fa), (b, fb), is_min = p
        if is_min:
            return dmin(a, b), lambda env: min(fa(env), fb(env))
        return dmax(a, b), lambda env: max(fa(env), fb(env))

    return st.one_of(
        _extend_int(children),
        st.tuples(children, _positive_divisor(), st.integers(0, 2)).map(sdiv),
        st.tuples(children, children, st.booleans()).map(mm),
    )


CASES = st.recursive(_leaf(), _extend, max_leaves=8)
INT_CASES = st.recursive(_leaf(), _extend_int, max_leaves=8)
ENVS = st.fixed_dictionaries({s: st.integers(1, 40) for s in SYMS})
ANY_ENVS = st.fixed_dictionaries({s: st.integers(-20, 40) for s in SYMS})


@settings(max_examples=400, deadline=None)
@given(CASES, ENVS)
def test_random_expression_evaluates_like_python(case: Case, env: dict[str, int]) -> None:
    d, f = case
    assert evaluate(d, env) == f(env)


@settings(max_examples=300, deadline=None)
@given(INT_CASES, ANY_ENVS)
def test_integer_divisions_are_exact_at_any_values(case: Case, env: dict[str, int]) -> None:
    d, f = case
    assert evaluate(d, env) == f(env)


@settings(max_examples=400, deadline=None)
@given(CASES)
def test_random_expression_text_round_trip(case: Case) -> None:
    d, _ = case
    text = dim_str(d)
    back = parse_dim(text)
    assert back == d, text
    assert dim_str(back) == text
    if isinstance(d, Expr):
        assert parse_dim(d.to_str()) == d


@settings(max_examples=300, deadline=None)
@given(INT_CASES, CASES, ENVS)
def test_random_subs_evaluates_like_python(case: Case, repl: Case, env: dict[str, int]) -> None:
    d, f = case
    r, fr = repl
    env2 = dict(env, a=fr(env))
    got = subs(d, {"a": r})
    assert "a" not in symbols(got) or "a" in symbols(r)
    assert evaluate(got, env) == f(env2)


@settings(max_examples=300, deadline=None)
@given(CASES, _positive_divisor(), ENVS)
def test_random_subs_of_a_size_evaluates_like_python(
    case: Case, repl: Case, env: dict[str, int]
) -> None:
    # A size replaced by a size keeps every assumption the canonical form was built on.
    d, f = case
    r, fr = repl
    got = subs(d, {"a": r})
    assert evaluate(got, env) == f(dict(env, a=fr(env)))


@settings(max_examples=300, deadline=None)
@given(CASES, ENVS)
def test_full_substitution_gives_an_int(case: Case, env: dict[str, int]) -> None:
    d, f = case
    got = subs(d, env)
    assert isinstance(got, int) and not isinstance(got, bool)
    assert got == f(env)


@settings(max_examples=200, deadline=None)
@given(CASES)
def test_constants_come_back_as_int(case: Case) -> None:
    d, _ = case
    if isinstance(d, Expr):
        assert not d.is_const()
        assert d.symbols()


# -- canonical forms ---------------------------------------------------------------------


def test_polynomial_canonical_form() -> None:
    assert x + y == y + x
    assert x * y == y * x
    assert (x + 1) * (x - 1) == x * x - 1
    assert x - x == 0 and isinstance(x - x, int)
    assert 2 * x - x == x
    assert hash(x + y) == hash(y + x)
    assert dim_str(x * 2 + 3) == "(x * 2 + 3)"
    assert dim_str(3 - x) == "(-x + 3)"
    assert dim_str(x) == "x"
    assert dim_str(7) == "7"
    assert dim_str(-1) == "-1"


def test_product_and_norm() -> None:
    assert product([2, 3, 4]) == 24
    assert product([]) == 1
    assert product([h, w, 3]) == h * w * 3
    assert norm(Expr.of(5)) == 5 and isinstance(norm(Expr.of(5)), int)


def test_floordiv_of_ints_and_by_one() -> None:
    assert floordiv(7, 2) == 3
    assert floordiv(-7, 2) == -4
    assert floordiv(x, 1) == x
    with pytest.raises(ValueError):
        floordiv(x, 0)
    with pytest.raises(ValueError):
        floordiv(x, -2)


def test_floordiv_moves_multiples_out() -> None:
    assert floordiv(x * 4 + 8, 4) == x + 2
    assert floordiv(x * 4 + 9, 4) == x + 2
    assert floordiv(x * 4 + y, 4) == x + floordiv(y, 4)
    # The constant inside a floordiv is kept in [0, k).
    assert floordiv(x - 1, 2) == floordiv(x + 1, 2) - 1
    assert floordiv(x + 5, 2) == floordiv(x + 1, 2) + 2


def test_floordiv_reduces_coefficients_modulo_the_divisor() -> None:
    assert floordiv(x * 3, 2) == x + floordiv(x, 2)
    assert floordiv(-x, 2) == -x + floordiv(x, 2)


def test_floordiv_divides_out_common_factors() -> None:
    assert floordiv(x * 2, 4) == floordiv(x, 2)
    assert floordiv(x * 2 + y * 4 + 2, 8) == floordiv(x + y * 2 + 1, 4)


def test_nested_floordiv_merges() -> None:
    assert floordiv(floordiv(x, 2), 3) == floordiv(x, 6)
    assert floordiv(floordiv(x, 2) + 1, 2) == floordiv(x + 2, 4)
    assert ceildiv(ceildiv(h, 2), 2) == ceildiv(h, 4)


def test_floordiv_atom_invariants() -> None:
    d = floordiv(x * 5 + y * 7 + 13, 3)
    assert isinstance(d, Expr)
    atoms = [a for m, _ in d.terms for a in m if isinstance(a, FloorDiv)]
    assert len(atoms) == 1
    (fd,) = atoms
    assert fd.den == 3
    assert all(0 < c < 3 for m, c in fd.num.terms if m != ())
    assert 0 <= fd.num.const() < 3


def test_conv_arithmetic() -> None:
    out = floordiv(h - 3, 2) + 1
    for hv in range(3, 40):
        assert evaluate(out, {"h": hv}) == (hv - 3) // 2 + 1
    assert floordiv(h + 2 - 3, 1) + 1 == h
    assert ceildiv(h, 2) == floordiv(h + 1, 2)


# -- text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("28", 28),
        ("-1", -1),
        ("batch", sym("batch")),
        ("h - 3", h - 3),
        ("(h - 3) floordiv 2 + 1", floordiv(h - 3, 2) + 1),
        ("h ceildiv 2", ceildiv(h, 2)),
        ("2 * h * w", h * w * 2),
        ("-x floordiv 2", floordiv(-x, 2)),  # unary minus binds tighter, as in Python
        ("-(x floordiv 2)", -floordiv(x, 2)),
        ("x floordiv 2 floordiv 3", floordiv(x, 6)),
        ("  h  +  1 ", h + 1),
        ("h - h", 0),
    ],
)
def test_parse_dim(text: str, expected: object) -> None:
    got = parse_dim(text)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    "text",
    ["", "h +", "(h", "h)", "h floordiv 0", "h floordiv (-y)", "h ceildiv -2", "h $", "h h",
     "h mod 0", "h mod (y - y)", "min(h", "min()", "max(h, )", "min h", "h floordiv", "mod"],
)
def test_parse_dim_errors(text: str) -> None:
    with pytest.raises(DimParseError):
        parse_dim(text)


def test_printed_types_parse_back() -> None:
    dims = [h, floordiv(h - 3, 2) + 1, h * w * 3, -floordiv(x, 2), floordiv(-x, 3), ceildiv(x, 4)]
    for d in dims:
        assert parse_dim(dim_str(d)) == d


# -- evaluate and subs -----------------------------------------------------------------------


def test_evaluate() -> None:
    assert evaluate(5, {}) == 5
    assert evaluate(h * w + 1, {"h": 3, "w": 4}) == 13
    assert evaluate(floordiv(h - 3, 2) + 1, {"h": 28}) == 13
    with pytest.raises(KeyError):
        evaluate(h + w, {"h": 1})


def test_subs() -> None:
    assert subs(h + w, {"h": 2}) == w + 2
    assert subs(h * w, {"h": 2, "w": 3}) == 6
    assert isinstance(subs(h * w, {"h": 2, "w": 3}), int)
    assert subs(floordiv(h, 2), {"h": x * 2}) == x
    assert subs(floordiv(h, 2), {"h": x}) == floordiv(x, 2)
    assert subs(7, {"h": 1}) == 7
    assert symbols(h * w + floordiv(x, 2)) == {"h", "w", "x"}
    assert symbols(3) == set()


# -- mod, symbolic division, min and max ----------------------------------------------------

i, j, seq = sym("i"), sym("j"), sym("seq")


def test_mod_rules() -> None:
    assert mod(i * 16 + j, 16) == mod(j, 16)
    assert mod(h, 1) == 0 and isinstance(mod(h, 1), int)
    assert mod(-1, 4) == 3 and mod(7, 4) == 3
    assert mod(h * 4 + 8, 4) == 0
    assert mod(h * 17 + 3, 16) == mod(h + 3, 16)
    # A factor common to the divisor comes out: 2*h + 1 is odd, so its mod 4 is 2*(h mod 2) + 1.
    assert mod(h * 2 + 1, 4) == mod(h, 2) * 2 + 1
    assert mod(mod(h, 8), 4) == mod(h, 4)
    assert mod(mod(h, 3), 4) == mod(h, 3)
    with pytest.raises(ValueError):
        mod(h, 0)


def test_symbolic_division_moves_multiples_out() -> None:
    assert floordiv(i * seq + j, seq) == i + floordiv(j, seq)
    assert floordiv(seq, seq) == 1 and isinstance(floordiv(seq, seq), int)
    assert floordiv(seq * 3, seq) == 3
    assert floordiv(h * w, w) == h
    assert mod(i * seq + j, seq) == mod(j, seq)
    assert mod(seq, seq) == 0
    assert floordiv(0, seq) == 0 and mod(0, seq) == 0


def test_symbolic_division_divides_out_common_factors() -> None:
    assert floordiv(seq * i, seq * 2) == floordiv(i, 2)
    assert floordiv(h * 2, seq * 4) == floordiv(h, seq * 2)
    assert mod(seq * i, seq * 2) == seq * mod(i, 2)
    # Nested quotients merge into one divisor, whatever the order.
    assert floordiv(floordiv(h, seq), 2) == floordiv(floordiv(h, 2), seq) == floordiv(h, seq * 2)
    assert ceildiv(h, seq) == floordiv(h - 1, seq) + 1
    with pytest.raises(ValueError):
        floordiv(h, -seq)


def test_min_max_fold_and_sort() -> None:
    assert dmin(3, 5) == 3 and dmax(3, 5) == 5
    assert dmax(h, 1) == h and dmin(h, 1) == 1
    assert dmin(h, w) == dmin(w, h)
    assert dmax(h, h + 2) == h + 2
    assert dmin(dmin(h, w), x) == dmin(h, dmin(w, x))
    assert dmin(h, h) == h
    assert dmin(h, w, 3) == dmin(3, dmin(w, h))
    d = dmax(h - 3, w)
    assert isinstance(d, Expr)
    (atom,) = d.atoms()
    assert isinstance(atom, MinMax) and atom.kind == "max" and len(atom.args) == 2


def test_new_atoms_symbols_and_subs() -> None:
    d = mod(h, seq) + dmin(w, x) + floordiv(y, seq * 2)
    assert symbols(d) == {"h", "seq", "w", "x", "y"}
    assert subs(d, {"seq": 4, "h": 9, "w": 2, "x": 5, "y": 17}) == 1 + 2 + 2
    assert subs(mod(h, seq), {"h": seq * 3 + 1}) == mod(1, seq)
    assert subs(dmax(h, w), {"w": 1}) == h


@pytest.mark.parametrize(
    "d, env, expected",
    [
        (floordiv(h - 1, 2), {"h": 0}, -1),
        (mod(h - 1, 4), {"h": 0}, 3),
        (floordiv(h - 7, seq), {"h": 0, "seq": 3}, -3),
        (mod(h - 7, seq), {"h": 0, "seq": 3}, 2),
        (dmin(h, w - 10), {"h": 4, "w": 3}, -7),
        (dmax(h, w) * 2, {"h": 4, "w": 3}, 8),
    ],
)
def test_evaluate_uses_floor_semantics(d: object, env: dict[str, int], expected: int) -> None:
    assert evaluate(d, env) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a mod b", mod(sym("a"), sym("b"))),
        ("min(a, b)", dmin(sym("a"), sym("b"))),
        ("max(a, b)", dmax(sym("a"), sym("b"))),
        ("a floordiv (b * 2)", floordiv(sym("a"), sym("b") * 2)),
        ("a floordiv b", floordiv(sym("a"), sym("b"))),
        ("a ceildiv (b + 1)", ceildiv(sym("a"), sym("b") + 1)),
        ("(i * 16 + j) mod 16", mod(j, 16)),
        ("i * 2 mod 3", mod(i * 2, 3)),  # mod binds like '*', left to right
        ("2 + i mod 3", mod(i, 3) + 2),
        ("min(h, w) * 2 + max(h - 1, 3)", dmin(h, w) * 2 + dmax(h - 1, 3)),
        ("min(h, min(w, 3))", dmin(h, w, 3)),
    ],
)
def test_parse_new_forms(text: str, expected: object) -> None:
    got = parse_dim(text)
    assert got == expected
    assert parse_dim(str(got)) == got


def test_new_forms_print_and_parse_back() -> None:
    dims = [
        mod(h, 16), mod(h * 2 + w, seq), -mod(x, 3), mod(x, 3) * 5, floordiv(h, seq * 2),
        floordiv(h + 1, w + 2), dmin(h, w), dmax(h, 3) * w, floordiv(dmin(h, w), 2),
        mod(floordiv(h, 4), 3), dmin(floordiv(h, 2), mod(w, 5)), floordiv(h, dmin(w, seq)),
    ]
    texts = {str(d) for d in dims}
    assert "h mod 16" in texts and "min(h, w)" in texts and "h floordiv (seq * 2)" in texts
    assert "w * max(h, 3)" in texts and "-(x mod 3)" in texts
    for d in dims:
        assert parse_dim(dim_str(d)) == d
        assert parse_dim(str(d)) == d
    assert isinstance(_only_atom(mod(h, 16)), Mod)
    assert isinstance(_only_atom(floordiv(h, seq)), FloorDiv)


def _only_atom(d: object) -> object:
    assert isinstance(d, Expr)
    (atom,) = d.atoms()
    return atom


# -- range analysis ------------------------------------------------------------------------

IDX = {"i": (0, 15), "j": (0, None)}
SEQ_IDX = {"i": (0, seq - 1), "j": (0, None)}


@pytest.mark.parametrize(
    "d, ranges, expected",
    [
        (floordiv(i, 16), IDX, 0),
        (mod(i, 16), IDX, i),
        (floordiv(j * 16 + i, 16), IDX, j),
        (mod(j * 16 + i, 16), IDX, i),
        (dmin(i, 15), IDX, i),
        (dmax(i, 15), IDX, 15),
        (floordiv(i * 32 + j, 32), {"i": (0, 3), "j": (0, 31)}, i),
        (floordiv(j * seq + i, seq), SEQ_IDX, j),
        (mod(j * seq + i, seq), SEQ_IDX, i),
        (floordiv(i, seq), SEQ_IDX, 0),
        (floordiv(i - seq, seq), SEQ_IDX, -1),
        (mod(i + 16, 16), IDX, i),
        (floordiv(i + 16, 16), IDX, 1),
        (floordiv(i, 32) + mod(i, 32), {"i": (0, 31)}, i),
    ],
)
def test_simplify_with_ranges(d: object, ranges: dict, expected: object) -> None:
    assert simplify(d, ranges) == expected


def test_simplify_leaves_what_it_cannot_prove() -> None:
    assert simplify(floordiv(i, 16), {"i": (0, 16)}) == floordiv(i, 16)
    assert simplify(mod(i, 16), {"i": (-1, 15)}) == mod(i, 16)
    assert simplify(floordiv(i, seq), {"i": (0, seq)}) == floordiv(i, seq)
    assert simplify(floordiv(i, 16)) == floordiv(i, 16)  # a size: unbounded above
    assert simplify(dmin(i, 15), {"i": (0, 16)}) == dmin(i, 15)
    assert simplify(7, IDX) == 7


def test_bounds() -> None:
    assert bounds(i, IDX) == (0, 15)
    assert bounds(h) == (1, None)
    assert bounds(i * 2 - 3, IDX) == (-3, 27)
    assert bounds(-i, IDX) == (-15, 0)
    assert bounds(floordiv(i, 4), IDX) == (0, 3)
    assert bounds(mod(h, 8)) == (0, 7)
    assert bounds(mod(i, 32), IDX) == (0, 15)
    assert bounds(dmin(i, 4), IDX) == (0, 4)
    assert bounds(i, SEQ_IDX) == (0, None)
    assert bounds(seq - i, SEQ_IDX) == (1, None)
    assert bounds(i * j, {"i": (-2, 3), "j": (0, None)}) == (None, None)
    assert bounds(i * j, {"i": (0, 3), "j": (0, 5)}) == (0, 15)


def test_bounds_of_cyclic_symbolic_ranges_terminate() -> None:
    assert bounds(i, {"i": (0, j), "j": (0, i)}) == (0, None)


# Index arithmetic: a in [0, 15], b in [0, c - 1] (a bound in another symbol), c in [1, 20].
RANGES = {"a": (0, 15), "b": (0, sym("c") - 1), "c": (1, 20)}


@st.composite
def _range_envs(draw: st.DrawFn) -> dict[str, int]:
    c = draw(st.integers(1, 20))
    return {"a": draw(st.integers(0, 15)), "b": draw(st.integers(0, c - 1)), "c": c}


def _index_leaf() -> st.SearchStrategy[Case]:
    def reshape(p: tuple[str, str, int]) -> Case:
        # (outer * n + inner) with a symbolic or constant n: what reshapes of loops produce.
        outer, inner, n = p
        k = sym("c") if n == 0 else n
        d = sym(outer) * k + sym(inner)
        return d, lambda env: env[outer] * (env["c"] if n == 0 else n) + env[inner]

    return st.one_of(_leaf(), st.tuples(st.sampled_from(SYMS), st.sampled_from(SYMS),
                                        st.sampled_from([0, 4, 16])).map(reshape))


INDEX_CASES = st.recursive(_index_leaf(), _extend, max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(INDEX_CASES, _range_envs())
def test_simplify_keeps_values_inside_the_ranges(case: Case, env: dict[str, int]) -> None:
    d, _ = case
    try:
        want = evaluate(d, env)
    except ZeroDivisionError:
        return
    assert evaluate(simplify(d, RANGES), env) == want


@settings(max_examples=400, deadline=None)
@given(INDEX_CASES, _range_envs())
def test_bounds_hold_inside_the_ranges(case: Case, env: dict[str, int]) -> None:
    d, _ = case
    try:
        value = evaluate(d, env)
    except ZeroDivisionError:
        return
    lo, hi = bounds(d, RANGES)
    assert lo is None or lo <= value
    assert hi is None or value <= hi


@settings(max_examples=200, deadline=None)
@given(INDEX_CASES)
def test_simplified_expressions_round_trip(case: Case) -> None:
    d = simplify(case[0], RANGES)
    assert parse_dim(dim_str(d)) == d
