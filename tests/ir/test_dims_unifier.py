"""The Unifier with divisibility facts, its symbol preference, and the verifier's check of the
``dims`` and ``dim_nominal`` module attributes."""

from __future__ import annotations

import pytest

from neuralc.ir.core import Module
from neuralc.ir.dims import ceildiv, dim_facts, fit_size, floordiv, mod, parse_dim, sym
from neuralc.ir.shapes import ShapeError, Unifier, representative
from neuralc.ir.verifier import verify

h, w, t, n, batch = sym("h"), sym("w"), sym("t"), sym("n"), sym("batch")


def test_pool_then_upsample_equals_the_input_when_the_step_allows() -> None:
    u = Unifier({"h": [16, 256, 8]})
    assert u.unify(h, floordiv(h, 2) * 2, "concat") == h
    assert u.unify(floordiv(h, 2) * 2, h, "concat") == h
    assert u.bindings == {}


def test_unet_levels_are_equal_under_the_step() -> None:
    u = Unifier({"h": [16, 256, 8]})
    pooled = floordiv(h, 2)
    strided = ceildiv(pooled, 2)  # a stride-2 convolution with padding "same"
    assert u.unify(pooled, strided * 2, "inner skip") == pooled
    assert u.unify(ceildiv(h, 2), pooled, "a strided conv and a pool") == pooled


def test_no_step_no_equality_and_the_error_suggests_one() -> None:
    u = Unifier({"h": [16, 256]})
    with pytest.raises(ShapeError) as ei:
        u.unify(h, floordiv(h, 4) * 4, "concat")
    assert ei.value.message == ("concat: h and (h floordiv 4) * 4 are not equal; they are equal "
                                "when h is a multiple of 4: say so in dims { } "
                                "(h: lo..hi step 4, or h % 4 == 0)")


def test_a_step_too_small_does_not_prove_equality() -> None:
    u = Unifier({"h": [None, None, 2]})
    with pytest.raises(ShapeError, match="multiple of 4"):
        u.unify(h, floordiv(h, 4) * 4, "concat")


def test_representative_is_the_shorter_text_whatever_the_order() -> None:
    a, b = floordiv(h, 2), floordiv(h + 2, 4) * 2
    assert representative(a, b) == representative(b, a) == a
    assert Unifier({"h": [None, None, 8]}).same(b, a) == a
    assert Unifier({"h": [None, None, 2]}).same(b, a) is None


def test_same_binds_nothing() -> None:
    u = Unifier()
    assert u.same(h, w) is None
    assert u.same(h, h) == h
    assert u.bindings == {}


# -- symbol preference: no name is special ---------------------------------------------------


def test_first_symbol_survives_between_two_without_facts() -> None:
    u = Unifier()
    assert u.unify(n, batch, "add") == n
    assert u.resolve(batch) == n
    u = Unifier()
    assert u.unify(batch, n, "add") == batch
    assert u.resolve(n) == batch


def test_symbol_with_facts_survives() -> None:
    u = Unifier({"seq": [8, 512]})
    assert u.unify(sym("len"), sym("seq"), "add") == sym("seq")
    assert u.resolve(sym("len")) == sym("seq")
    assert u.ranges == {"seq": [8, 512]}


def test_merging_symbols_intersects_ranges_and_combines_steps() -> None:
    u = Unifier({"a": [10, 100, 4], "b": [1, 90, 6]})
    assert u.unify(sym("a"), sym("b"), "add") == sym("a")
    assert u.ranges["a"] == [12, 84, 12]


def test_merging_symbols_without_a_common_size_is_an_error() -> None:
    u = Unifier({"a": [8, 8, 8], "b": [1, 12, 3]})
    with pytest.raises(ShapeError, match="do not overlap on a multiple of 24"):
        u.unify(sym("a"), sym("b"), "add")


def test_binding_a_stepped_symbol_to_a_number() -> None:
    u = Unifier({"h": [8, 64, 8]})
    with pytest.raises(ShapeError, match="h would be 12, not a multiple of 8"):
        u.unify(h, 12, "add")
    assert u.unify(h, 16, "add") == 16


def test_binding_a_stepped_symbol_to_an_expression() -> None:
    u = Unifier({"h": [8, 64, 8]})
    assert u.unify(h, t * 2, "add") == t * 2
    assert u.constraints == [(t * 2, 8, 64), (mod(t * 2, 8), 0, 0)]
    # Always a multiple: no constraint needed.
    u = Unifier({"h": [None, None, 8], "t": [None, None, 4]})
    u.unify(h, t * 2, "add")
    assert u.constraints == []
    # Never a multiple: an error now.
    with pytest.raises(ShapeError, match="never a multiple of 8"):
        Unifier({"h": [None, None, 8]}).unify(h, t * 8 + 4, "add")


def test_dims_facts_helpers() -> None:
    assert dim_facts([8, 64]) == (8, 64, 1)
    assert dim_facts([None, 64, 8]) == (None, 64, 8)
    assert dim_facts(None) == (None, None, 1)
    assert fit_size(64, 16, 256, 8) == 64
    assert fit_size(1, 16, 256, 8) == 16
    assert fit_size(300, 16, 256, 8) == 256
    assert fit_size(20, None, None, 8) == 24
    assert fit_size(0) == 1


# -- the verifier's check of the attributes ----------------------------------------------------


def _problems(**attrs: object) -> list[str]:
    return verify(Module("M", attributes=dict(attrs)))


@pytest.mark.parametrize("dims", [
    {"h": [16, 256, 8]}, {"h": [None, None, 8]}, {"h": [1, 4]}, {"h": [None, 64]},
])
def test_verifier_accepts_dims_facts(dims: dict) -> None:
    assert _problems(dims=dims, dim_nominal={"h": 16}) == []


@pytest.mark.parametrize("rng", [[12, 256, 8], [16, 250, 8], [16, 256, 0], [16, 256, True],
                                 [1, 2, 3, 4], [8], "1..2", [4, 2]])
def test_verifier_rejects_bad_dims_facts(rng: object) -> None:
    (problem,) = _problems(dims={"h": rng})
    assert "the range of 'h' must be [lo, hi] or [lo, hi, step]" in problem


@pytest.mark.parametrize("nominal", [{"h": 0}, {"h": "64"}, [1], {"batch": True}])
def test_verifier_rejects_bad_nominal_sizes(nominal: object) -> None:
    (problem,) = _problems(dim_nominal=nominal)
    assert "'dim_nominal' must map symbols to sizes >= 1" in problem


def test_constraint_text_parses_back() -> None:
    u = Unifier({"h": [8, 64, 8]})
    u.unify(h, t * 2, "add")
    for e, _, _ in u.constraints:
        assert parse_dim(str(e)) == e
