"""The IR verifier: each invariant it guards, broken once, is reported at the op's location."""

# ruff: noqa: E501  (IR text is one op per line, as printed)

from __future__ import annotations

from typing import Any

import pytest

import neuralc.layers.graph_dialect  # noqa: F401  (registers the graph ops these tests build)
from neuralc.ir import core
from neuralc.ir.core import (
    Block,
    Module,
    Op,
    Region,
    Rewriter,
    Use,
    Value,
    func_body,
    func_op,
)
from neuralc.ir.dims import sym
from neuralc.ir.opdef import DefinedOp, operand, region
from neuralc.ir.parser import parse_module
from neuralc.ir.types import TensorType
from neuralc.ir.verifier import VerificationError, verify, verify_or_raise
from neuralc.location import FileLoc

batch = sym("batch")
LOC = FileLoc("m.nr", 5, 5, 5, 23)


def T(*dims: Any) -> TensorType:
    return TensorType(tuple(dims))


def dense(x: Value, units: int, name: str = "dense", loc: FileLoc = LOC) -> Op:
    attrs = {"name": name, "units": units, "activation": "relu", "use_bias": True}
    assert x.type.shape is not None
    return Op("graph.dense", [x], [T(*x.type.shape[:-1], units)], attrs, location=loc)


def net() -> tuple[Module, Op]:
    """A valid two-layer function; tests break one thing in it."""
    m = Module("Net")
    f = func_op("Net", [T(batch, 16)], ["x"], location=FileLoc("m.nr", 1, 1))
    m.body.append(f)
    body = func_body(f)
    d1 = body.append(dense(body.args[0], 8))
    d2 = body.append(dense(d1.result, 4, "dense_1", FileLoc("m.nr", 6, 5)))
    body.append(Op("func.return", [d2.result], location=FileLoc("m.nr", 1, 1)))
    return m, f


def test_valid_module_has_no_problems() -> None:
    m, _ = net()
    assert verify(m) == []
    verify_or_raise(m)


def test_parsed_module_verifies() -> None:
    text = """module @Net {
  func.func @Net(%x: tensor<batch x 16 x f32>) -> (tensor<batch x 8 x f32>) {
    %0 = "graph.dense"(%x) {activation = "relu", name = "dense", units = 8, use_bias = true} : (tensor<batch x 16 x f32>) -> tensor<batch x 8 x f32> loc("m.nr":5:5 to 5:23)
    "func.return"(%0) : (tensor<batch x 8 x f32>) -> ()
  }
}
"""
    assert verify(parse_module(text)) == []


def test_unknown_op_is_reported_with_location() -> None:
    m, f = net()
    body = func_body(f)
    body.insert_before(body.ops[-1], Op("test.mystery", [body.args[0]], location=FileLoc("m.nr", 7, 1)))
    assert verify(m) == ["m.nr:7:1: test.mystery: unknown op 'test.mystery'"]


def test_counts_follow_the_opdef() -> None:
    m, f = net()
    body = func_body(f)
    bad = Op("graph.dense", [body.args[0], body.args[0]], [T(batch, 8)],
             {"name": "d", "units": 8, "activation": "relu", "use_bias": True},
             location=FileLoc("m.nr", 8, 2))
    body.insert_before(body.ops[-1], bad)
    no_result = Op("graph.dense", [body.args[0]], [],
                   {"name": "e", "units": 8, "activation": "relu", "use_bias": True},
                   location=FileLoc("m.nr", 9, 2))
    body.insert_before(body.ops[-1], no_result)
    with_region = Op("func.return", [], regions=[Region()], location=FileLoc("m.nr", 10, 2))
    body.insert_before(body.ops[-1], with_region)
    problems = verify(m)
    assert "m.nr:8:2: graph.dense: expects 1 operand(s), got 2" in problems
    assert "m.nr:9:2: graph.dense: expects 1 result(s), got 0" in problems
    assert "m.nr:10:2: func.return: expects 0 region(s), got 1" in problems


def test_opdef_verify_problems_are_reported_once_named() -> None:
    m, f = net()
    op = func_body(f).ops[0]
    del op.attributes["units"]
    op.attributes["colour"] = "red"
    problems = verify(m)
    assert "m.nr:5:5: graph.dense: has unknown attribute 'colour'" in problems
    assert "m.nr:5:5: graph.dense: is missing attribute 'units'" in problems
    assert all("graph.dense: graph.dense" not in p for p in problems)


def test_non_tensor_types() -> None:
    m, f = net()
    body = func_body(f)
    body.args[0].type = "f32"  # type: ignore[assignment]
    body.ops[0].results[0].type = [4]  # type: ignore[assignment]
    problems = verify(m)
    assert "m.nr:1:1: func.func: block argument 0 has no IR type: 'f32'" in problems
    assert "m.nr:5:5: graph.dense: operand #0 has no IR type: 'f32'" in problems
    assert "m.nr:5:5: graph.dense: result #0 has no IR type: [4]" in problems
    assert "m.nr:6:5: graph.dense: operand #0 has no IR type: [4]" in problems


def test_use_before_definition() -> None:
    m, f = net()
    body = func_body(f)
    d1, d2 = body.ops[0], body.ops[1]
    body.ops[0], body.ops[1] = d2, d1
    assert verify(m) == [
        ("m.nr:6:5: graph.dense: operand #0 (result #0 of 'graph.dense') is used before its "
        "definition or outside its scope")
    ]


def test_forward_reference_in_text_is_caught_by_the_verifier() -> None:
    text = """module @M {
  func.func @f(%x: tensor<2 x 4 x f32>) -> () {
    "func.return"(%0) : (tensor<2 x 8 x f32>) -> () loc("t.nir":3:5)
    %0 = "graph.dense"(%x) {activation = "relu", name = "dense", units = 8, use_bias = true} : (tensor<2 x 4 x f32>) -> tensor<2 x 8 x f32>
  }
}
"""
    problems = verify(parse_module(text))
    assert "t.nir:3:5: func.return: operand #0 (result #0 of 'graph.dense') is used before its " \
           "definition or outside its scope" in problems
    assert "t.nir:3:5: func.return: must be the last op of its block" in problems
    assert "<unknown>: func.func: must end with func.return" in problems


def test_value_from_another_function_is_out_of_scope() -> None:
    m, f = net()
    g = func_op("Other", [T(batch, 16)], ["y"], location=FileLoc("m.nr", 20, 1))
    m.body.append(g)
    func_body(g).append(Op("func.return", [func_body(f).args[0]], location=FileLoc("m.nr", 21, 1)))
    assert verify(m) == [
        ("m.nr:21:1: func.return: operand #0 (block argument 'x') is used before its definition "
        "or outside its scope")
    ]


def test_region_values_are_not_visible_outside() -> None:
    m, f = net()
    body = func_body(f)
    inner = Block([T(2)])
    wrap = Op("graph.wrapper", regions=[Region([inner])], location=FileLoc("m.nr", 30, 1))
    body.insert_before(body.ops[-1], wrap)
    body.insert_before(body.ops[-1], Op("graph.use", [inner.args[0]], location=FileLoc("m.nr", 31, 1)))
    problems = verify(m)
    assert ("m.nr:31:1: graph.use: operand #0 (block argument 0) is used before its definition "
            "or outside its scope") in problems


def test_enclosing_values_are_visible_in_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    class Wrapper(DefinedOp):
        name = "test.wrapper"
        body = region()

    class Use_(DefinedOp):
        name = "test.use"
        x = operand()

    monkeypatch.setitem(core._OP_CLASSES, "test.wrapper", Wrapper)
    monkeypatch.setitem(core._OP_CLASSES, "test.use", Use_)
    m, f = net()
    body = func_body(f)
    inner = Block()
    inner.append(Op("test.use", [body.args[0]]))
    body.insert_before(body.ops[-1], Op("test.wrapper", regions=[Region([inner])]))
    assert verify(m) == []
    # An op that declares itself isolated from above sees nothing from outside.
    monkeypatch.setattr(Wrapper, "isolated_from_above", True, raising=False)
    assert verify(m) == [
        ("<unknown>: test.use: operand #0 (block argument 'x') reads a value from outside the "
         "isolated region of test.wrapper; pass it in as an operand")
    ]


def test_dangling_value() -> None:
    m, f = net()
    body = func_body(f)
    body.ops[1].set_operand(0, Value(T(batch, 8)))
    assert verify(m) == [("m.nr:6:5: graph.dense: operand #0 (a value with no owner) is not "
                         "defined in this module")]


def test_broken_use_lists() -> None:
    m, f = net()
    body = func_body(f)
    d1 = body.ops[0]
    d1.result.uses.clear()
    assert verify(m) == ["m.nr:6:5: graph.dense: operand #0 is missing from its value's use list"]

    m, f = net()
    body = func_body(f)
    d1 = body.ops[0]
    detached = Op("graph.dense", [], [T(1)], location=FileLoc("x", 1, 1))
    d1.result.uses.append(Use(detached, 0))
    assert verify(m) == [("m.nr:5:5: graph.dense: result #0 is still used by 'graph.dense', which "
                         "is not in the module")]

    m, f = net()
    body = func_body(f)
    d1 = body.ops[0]
    d1.result.uses.append(Use(body.ops[-1], 0))  # func.return's operand #0 is d2's result
    assert verify(m) == [("m.nr:5:5: graph.dense: result #0 has a stale use: 'func.return' operand "
                         "#0 is another value")]


def test_parent_links() -> None:
    m, f = net()
    body = func_body(f)
    body.ops[0].parent = Block()
    assert verify(m) == [("m.nr:5:5: graph.dense: its parent link does not point at the block "
                         "holding it")]


def test_function_must_end_with_return() -> None:
    m, f = net()
    body = func_body(f)
    body.ops.pop()
    d2 = body.ops[-1]
    d2.result.uses.clear()
    assert verify(m) == ["m.nr:1:1: func.func: must end with func.return"]


def test_module_level_ops_must_be_functions() -> None:
    m, _ = net()
    m.body.append(Op("graph.dense", [], [T(1)], location=FileLoc("m.nr", 40, 1)))
    problems = verify(m)
    assert problems[0] == "m.nr:40:1: graph.dense: only func.func and loop.kernel may appear at module level"
    assert "m.nr:40:1: graph.dense: expects 1 operand(s), got 0" in problems


def test_return_outside_a_function(monkeypatch: pytest.MonkeyPatch) -> None:
    class Wrapper(DefinedOp):
        name = "test.wrapper"
        body = region()

    monkeypatch.setitem(core._OP_CLASSES, "test.wrapper", Wrapper)
    m, f = net()
    body = func_body(f)
    inner = Block()
    inner.append(Op("func.return", location=FileLoc("m.nr", 50, 1)))
    body.insert_before(body.ops[-1], Op("test.wrapper", regions=[Region([inner])]))
    assert verify(m) == ["m.nr:50:1: func.return: must be inside a func.func"]


def test_duplicate_function_names() -> None:
    m, _ = net()
    g = func_op("Net", [], [], location=FileLoc("m.nr", 60, 1))
    func_body(g).append(Op("func.return"))
    m.body.append(g)
    assert verify(m) == ["m.nr:60:1: func.func: function @Net is defined twice"]


def test_crashing_opdef_verify_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class Crashy(DefinedOp):
        name = "test.crashy"

        def verify_extra(self) -> list[str]:
            raise KeyError("units")

    monkeypatch.setitem(core._OP_CLASSES, "test.crashy", Crashy)
    m, f = net()
    body = func_body(f)
    body.insert_before(body.ops[-1], Op("test.crashy", location=FileLoc("m.nr", 70, 1)))
    assert verify(m) == ["m.nr:70:1: test.crashy: its verifier raised KeyError: 'units'"]


def test_rewriter_keeps_the_module_valid() -> None:
    m, f = net()
    body = func_body(f)
    d1, d2 = body.ops[0], body.ops[1]
    replacement = dense(body.args[0], 8, "dense_new")
    Rewriter().insert_before(d1, replacement)
    Rewriter().replace_op(d1, [replacement.result])
    assert d2.operands[0] is replacement.result
    assert verify(m) == []


def test_verify_or_raise_lists_every_problem() -> None:
    m, f = net()
    body = func_body(f)
    body.insert_before(body.ops[-1], Op("test.a", location=FileLoc("m.nr", 7, 1)))
    body.insert_before(body.ops[-1], Op("test.b", location=FileLoc("m.nr", 8, 1)))
    with pytest.raises(VerificationError) as e:
        verify_or_raise(m)
    assert e.value.problems == [
        "m.nr:7:1: test.a: unknown op 'test.a'",
        "m.nr:8:1: test.b: unknown op 'test.b'",
    ]
    assert str(e.value) == (
        "IR verification failed:\n"
        "  m.nr:7:1: test.a: unknown op 'test.a'\n"
        "  m.nr:8:1: test.b: unknown op 'test.b'"
    )
