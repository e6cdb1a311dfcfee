"""The symbolic-dim simplifier: canonical forms, floordiv rules, text round trip, evaluation.

The property tests build random expressions twice, once as dims and once as a Python function
over ints, and compare them at random positive symbol values: the simplifier may reshape an
expression however it likes, but never change its value.
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
    ceildiv,
    dim_str,
    evaluate,
    floordiv,
    norm,
    parse_dim,
    product,
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


def _extend(children: st.SearchStrategy[Case]) -> st.SearchStrategy[Case]:
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

    pair = st.tuples(children, children)
    divisor = st.tuples(children, st.integers(1, 6))
    return st.one_of(
        pair.map(add),
        pair.map(sub),
        pair.map(mul),
        children.map(neg),
        divisor.map(fdiv),
        divisor.map(cdiv),
    )


CASES = st.recursive(_leaf(), _extend, max_leaves=8)
ENVS = st.fixed_dictionaries({s: st.integers(1, 40) for s in SYMS})


@settings(max_examples=400, deadline=None)
@given(CASES, ENVS)
def test_random_expression_evaluates_like_python(case: Case, env: dict[str, int]) -> None:
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
@given(CASES, CASES, ENVS)
def test_random_subs_evaluates_like_python(case: Case, repl: Case, env: dict[str, int]) -> None:
    d, f = case
    r, fr = repl
    env2 = dict(env, a=fr(env))
    got = subs(d, {"a": r})
    assert "a" not in symbols(got) or "a" in symbols(r)
    assert evaluate(got, env) == f(env2)


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
    "text", ["", "h +", "(h", "h)", "h floordiv 0", "h floordiv y", "h ceildiv -2", "h $", "h h"]
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
