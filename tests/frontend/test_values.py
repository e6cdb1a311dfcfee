"""``evaluate``: AST values to Python values, and its errors with their spans."""

from __future__ import annotations

import pytest

from neuralc.frontend import ast
from neuralc.frontend.parser import parse
from neuralc.frontend.values import CallValue, EvalError, evaluate
from neuralc.location import FileLoc


def V(text: str) -> ast.Value:
    """The AST of one value, parsed as the argument of a layer in a macro body (so that
    ``$p`` is allowed by the grammar)."""
    src = f"define M(a, b) {{ F({text}) }}\nnetwork N {{ input: (1,) layers: Dense(1) }}"
    return parse(src, "v.nr").macros[0].body[0].args[0]


def at(col: int, end: int) -> FileLoc:
    return FileLoc("v.nr", 1, col, 1, end)


@pytest.mark.parametrize("text, want", [
    ("3", 3), ("-3", -3), ("0.5", 0.5), (".5", 0.5), ("1e-4", 1e-4),
    ('"relu"', "relu"), ("'x'", "x"),
    ("true", True), ("False", False), ("None", None), ("none", None),
    ("relu", "relu"),
    ("(3, 3)", (3, 3)), ("(10,)", (10,)), ("()", ()),
    ("[16, 32]", [16, 32]), ("[(1, 2), [3]]", [(1, 2), [3]]),
    ("{a: 1, b: [2]}", {"a": 1, "b": [2]}),
    ("1 + 2", 3), ("7 - 10", -3), ("3 * 4", 12), ("2 * 0.5", 1.0),
    ("8 / 2", 4), ("7 / 2", 3.5), ("1.0 / 2", 0.5), ("-(2 + 3)", -5), ("(1 + 2) * 3", 9),
    ("2 + 3 * 4", 14),
])
def test_plain_values(text, want):
    got = evaluate(V(text))
    assert got == want and type(got) is type(want)


def test_exact_integer_division_stays_int():
    assert evaluate(V("64 / 4")) == 16 and isinstance(evaluate(V("64 / 4")), int)
    assert isinstance(evaluate(V("6.0 / 3")), float)


def test_calls_become_call_values():
    v = V('ExponentialDecay(0.1, 1000, decay_rate=0.96, staircase=true)')
    got = evaluate(v)
    want = {"decay_rate": 0.96, "staircase": True}
    assert got == CallValue("ExponentialDecay", [0.1, 1000], want, v.span)
    assert got.span == at(20, 80)
    wrapped = evaluate(V("TimeDistributed(Dense(64))"))
    assert wrapped.args == [CallValue("Dense", [64], {}, wrapped.args[0].span)]


def test_hpo_goes_through_the_callback():
    v = V("HPO(choice(64, 128))")
    seen: list[ast.HPO] = []

    def pick(node: ast.HPO):
        seen.append(node)
        return evaluate(node.args[-1])

    assert evaluate(v, pick) == 128
    assert seen == [v]
    assert evaluate(V("[HPO(range(1, 5)), 2]"), lambda h: "x") == ["x", 2]


def test_unresolved_hpo_is_an_error_at_its_span():
    with pytest.raises(EvalError) as ei:
        evaluate(V("(1, HPO(log_range(1e-4, 1e-2)))"))
    assert ei.value.message.startswith("unresolved hyperparameter")
    assert ei.value.span == at(24, 50)


def test_param_ref_outside_a_macro():
    with pytest.raises(EvalError) as ei:
        evaluate(V("$a * 2"))
    assert ei.value.message == "'$a' is used outside a macro"
    assert ei.value.span == at(20, 22)


def test_division_by_zero():
    with pytest.raises(EvalError) as ei:
        evaluate(V("4 / (2 - 2)"))
    assert ei.value.message == "division by zero"
    assert ei.value.span == at(20, 31)


@pytest.mark.parametrize("text, message, col, end", [
    ('"a" + 1', "cannot apply '+' to \"a\": arithmetic needs numbers", 20, 23),
    ("2 * relu", "cannot apply '*' to \"relu\": arithmetic needs numbers", 24, 28),
    ("true + 1", "cannot apply '+' to true: arithmetic needs numbers", 20, 24),
    ("-\"x\"", "cannot negate \"x\": '-' needs a number", 20, 24),
    ("(1, 2) * 2", "cannot apply '*' to (1, 2): arithmetic needs numbers", 20, 26),
])
def test_arithmetic_on_non_numbers(text, message, col, end):
    with pytest.raises(EvalError) as ei:
        evaluate(V(text))
    assert ei.value.message == message
    assert ei.value.span == at(col, end)


def test_eval_error_is_an_exception_with_message_and_span():
    e = EvalError("bad", at(1, 2))
    assert isinstance(e, Exception) and str(e) == "bad" and e.span == at(1, 2)
