"""The textual IR: exact printed form, parse(print(m)) round trips, and parse errors.

The promise tested throughout is ``print(parse(print(m))) == print(m)`` byte for byte, plus
that parsing restores what the text carries (names, types, attributes, locations, nesting).
"""

# ruff: noqa: E501  (golden IR text is one op per line, as printed)

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralc.diagnostics import CompileError
from neuralc.ir.core import Block, Module, Op, Region, Value, func_body, func_op, func_return
from neuralc.ir.dims import floordiv, sym
from neuralc.ir.parser import (
    IRParseError,
    parse_attr,
    parse_location,
    parse_module,
    parse_module_or_diagnose,
    parse_type,
)
from neuralc.ir.printer import format_attr, print_module, print_op
from neuralc.ir.types import ELEMENT_TYPES, TensorType
from neuralc.location import UNKNOWN, CallSiteLoc, FileLoc, FusedLoc, Location

batch, h = sym("batch"), sym("h")


def T(*dims: Any, dtype: str = "f32") -> TensorType:
    return TensorType(tuple(dims), dtype)


def roundtrip(m: Module) -> Module:
    """Print, parse and print again; the two texts must be identical."""
    text = print_module(m)
    back = parse_module(text)
    assert print_module(back) == text
    return back


def dense_attrs(name: str, units: int, activation: str = "relu") -> dict[str, Any]:
    return {"name": name, "units": units, "activation": activation, "use_bias": True}


def digit_net() -> Module:
    m = Module("DigitNet", attributes={"dims": {"batch": [1, 64]}})
    f = func_op("DigitNet", [T(batch, 28, 28, 1)], ["image"], location=FileLoc("m.nr", 1, 1))
    m.body.append(f)
    body = func_body(f)
    image = body.args[0]
    image.location = FileLoc("m.nr", 3, 10, 3, 22)
    d1 = body.append(Op("graph.dense", [image], [T(batch, 28, 28, 128)], dense_attrs("dense", 128),
                        location=FileLoc("m.nr", 5, 5, 5, 23)))
    d2 = body.append(Op("graph.output", [d1.result], [T(batch, 28, 28, 10)],
                        dense_attrs("output", 10, "softmax"),
                        location=CallSiteLoc(FileLoc("m.nr", 2, 3, 2, 9), FileLoc("m.nr", 9, 5, 9, 12))))
    body.append(Op("func.return", [d2.result], location=FileLoc("m.nr", 1, 1)))
    return m


DIGIT_NET_TEXT = """\
module @DigitNet attributes {dims = {batch = [1, 64]}} {
  func.func @DigitNet(%image: tensor<batch x 28 x 28 x 1 x f32> loc("m.nr":3:10 to 3:22)) -> (tensor<batch x 28 x 28 x 10 x f32>) {
    %0 = "graph.dense"(%image) {activation = "relu", name = "dense", units = 128, use_bias = true} : (tensor<batch x 28 x 28 x 1 x f32>) -> tensor<batch x 28 x 28 x 128 x f32> loc("m.nr":5:5 to 5:23)
    %1 = "graph.output"(%0) {activation = "softmax", name = "output", units = 10, use_bias = true} : (tensor<batch x 28 x 28 x 128 x f32>) -> tensor<batch x 28 x 28 x 10 x f32> loc(callsite("m.nr":2:3 to 2:9 at "m.nr":9:5 to 9:12))
    "func.return"(%1) : (tensor<batch x 28 x 28 x 10 x f32>) -> () loc("m.nr":1:1)
  } loc("m.nr":1:1)
}"""


# -- exact form ------------------------------------------------------------------------------


def test_digit_net_prints_exactly() -> None:
    assert print_module(digit_net()) == DIGIT_NET_TEXT


def test_digit_net_parses_back() -> None:
    m = parse_module(DIGIT_NET_TEXT)
    assert print_module(m) == DIGIT_NET_TEXT
    assert m.name == "DigitNet"
    assert m.attributes == {"dims": {"batch": [1, 64]}}
    f = m.func("DigitNet")
    assert f.location == FileLoc("m.nr", 1, 1)
    body = func_body(f)
    (image,) = body.args
    assert image.name_hint == "image"
    assert image.location == FileLoc("m.nr", 3, 10, 3, 22)
    assert image.type == T(batch, 28, 28, 1)
    dense, output, ret = body.ops
    assert dense.name == "graph.dense" and dense.operands == (image,)
    assert dense.attributes == dense_attrs("dense", 128)
    assert output.operands == (dense.result,)
    assert output.location == CallSiteLoc(FileLoc("m.nr", 2, 3, 2, 9), FileLoc("m.nr", 9, 5, 9, 12))
    assert func_return(f) is ret and ret.operands == (output.result,)
    assert [u.op for u in dense.result.uses] == [output]
    assert dense.parent is body and body.parent is f.regions[0] and f.parent is m.body


def test_empty_module_and_function_without_extras() -> None:
    m = Module("M")
    assert print_module(m) == "module @M {\n}"
    roundtrip(m)
    f = func_op("f", [], [])
    m.body.append(f)
    func_body(f).append(Op("func.return"))
    text = roundtrip(m)
    assert print_module(text) == 'module @M {\n  func.func @f() -> () {\n    "func.return"() : () -> ()\n  }\n}'


def test_function_attributes_and_quoted_symbols() -> None:
    m = Module("my model")
    f = func_op("net-1", [T(4)], ["x"])
    f.attributes["device"] = "cuda"
    m.body.append(f)
    func_body(f).append(Op("func.return", [func_body(f).args[0]]))
    text = print_module(m)
    assert text.splitlines()[0] == 'module @"my model" {'
    assert text.splitlines()[1] == (
        '  func.func @"net-1"(%x: tensor<4 x f32>) -> (tensor<4 x f32>) attributes {device = "cuda"} {'
    )
    back = roundtrip(m)
    assert back.name == "my model"
    assert back.func("net-1").attributes == {"sym_name": "net-1", "device": "cuda"}


def test_function_without_return_prints_no_results() -> None:
    m = Module("M")
    f = func_op("f", [T(2)], ["x"])
    m.body.append(f)
    back = roundtrip(m)
    assert "-> ()" in print_module(back)
    assert func_body(back.func()).ops == []


def test_func_that_does_not_fit_the_custom_form_prints_generic() -> None:
    m = Module("M")
    f = Op("func.func", attributes={"sym_name": "f"}, regions=[Region([Block(), Block()])])
    m.body.append(f)
    text = print_module(m)
    assert '"func.func"() {sym_name = "f"} ({' in text
    back = roundtrip(m)
    assert len(back.func().regions[0].blocks) == 2


# -- results and names -------------------------------------------------------------------------


def test_multi_result_ops_and_numbering() -> None:
    m = Module("M")
    f = func_op("f", [T(4), T(4)], ["a", "b"])
    m.body.append(f)
    body = func_body(f)
    a, b = body.args
    split = body.append(Op("test.split", [a], [T(2), T(2)]))
    body.append(Op("test.sink", [split.results[1]]))  # no results: no number
    add = body.append(Op("test.add", [split.results[0], b], [T(2)]))
    none = body.append(Op("test.three", [], [T(1), T(1), T(1)]))
    body.append(Op("func.return", [add.result, none.results[2]]))
    text = print_module(m)
    assert '%0:2 = "test.split"(%a)' in text
    assert '"test.sink"(%0#1) : (tensor<2 x f32>) -> ()' in text
    assert '%1 = "test.add"(%0#0, %b) : (tensor<2 x f32>, tensor<4 x f32>) -> tensor<2 x f32>' in text
    assert '%2:3 = "test.three"() : () -> (tensor<1 x f32>, tensor<1 x f32>, tensor<1 x f32>)' in text
    assert '"func.return"(%1, %2#2)' in text
    back = roundtrip(m)
    bops = func_body(back.func()).ops
    assert bops[1].operands[0] is bops[0].results[1]
    assert bops[4].operands[1] is bops[3].results[2]


def test_numbering_restarts_per_function() -> None:
    m = Module("M")
    for name in ("f", "g"):
        f = func_op(name, [T(1)], ["x"])
        m.body.append(f)
        body = func_body(f)
        op = body.append(Op("test.id", [body.args[0]], [T(1)]))
        body.append(Op("func.return", [op.result]))
    text = roundtrip_text(m)
    assert text.count('%0 = "test.id"(%x)') == 2


def roundtrip_text(m: Module) -> str:
    roundtrip(m)
    return print_module(m)


def test_argument_names_are_sanitised_and_unique() -> None:
    m = Module("M")
    hints = ["x", "x", "my-input", None, "3d", "x_1", "", "ünï"]
    f = func_op("f", [T(1)] * len(hints), ["_"] * len(hints))
    for a, hint in zip(func_body(f).args, hints):
        a.name_hint = hint
    m.body.append(f)
    func_body(f).append(Op("func.return"))
    text = print_module(m)
    names = [part.split(":")[0] for part in text.splitlines()[1].split("(", 1)[1].split(", ")]
    assert names == ["%x", "%x_1", "%my_input", "%arg3", "%_3d", "%x_1_1", "%arg6", "%_n_"]
    back = roundtrip(m)
    assert [a.name_hint for a in func_body(back.func()).args] == [n[1:] for n in names]


def test_forward_reference_parses_and_keeps_order() -> None:
    text = """module @M {
  func.func @f(%x: tensor<2 x f32>) -> () {
    "test.use"(%5) : (tensor<2 x f32>) -> ()
    %5 = "test.def"(%x) : (tensor<2 x f32>) -> tensor<2 x f32>
    "func.return"() : () -> ()
  }
}
"""
    m = parse_module(text)
    use, define, _ = func_body(m.func()).ops
    assert use.operands[0] is define.result
    assert [u.op for u in define.result.uses] == [use]
    # The printer names it by its definition; the output parses again.
    out = print_module(m)
    assert '"test.use"(%0)' in out and '%0 = "test.def"(%x)' in out
    roundtrip(m)


def test_result_groups_and_implicit_entry_block_are_accepted() -> None:
    text = """module @M {
  func.func @f() -> () {
    %a, %b:2 = "test.three"() : () -> (tensor<1 x f32>, tensor<2 x f32>, tensor<3 x f32>)
    "test.use"(%a, %b#1, %a#0) : (tensor<1 x f32>, tensor<3 x f32>, tensor<1 x f32>) -> ()
    "test.wrap"() ({
      "test.inner"(%b#0) : (tensor<2 x f32>) -> ()
    }) : () -> ()
    "func.return"() : () -> ()
  }
}
"""
    m = parse_module(text)
    three, use, wrap, _ = func_body(m.func()).ops
    assert use.operands == (three.results[0], three.results[2], three.results[0])
    inner = wrap.regions[0].blocks[0].ops[0]
    assert inner.operands == (three.results[1],)
    assert '"test.use"(%0#0, %0#2, %0#0)' in print_module(m)
    roundtrip(m)


# -- regions ---------------------------------------------------------------------------------


def kernel_module() -> Module:
    m = Module("K")
    f = func_op("f", [T(4), T(4)], ["x", "y"])
    m.body.append(f)
    body = func_body(f)
    x, y = body.args
    inner = Block()
    a = inner.add_arg(T(4), "a")
    a.location = FileLoc("k.nr", 2, 1)
    b = inner.add_arg(T(4), "x")  # same hint as the function argument: made unique
    s = inner.append(Op("tensor.add", [a, b], [T(4)]))
    inner.append(Op("test.scale", [s.result, x], [T(4)], {"by": 0.5}))
    nested = Block()
    nested.append(Op("test.yield", [y]))
    fused = body.append(Op("kernel.fused", [x, y], [T(4)], {"kind": "elementwise"},
                           regions=[Region([inner]), Region([Block(), nested]), Region()],
                           location=FusedLoc((FileLoc("k.nr", 1, 1), FileLoc("k.nr", 2, 1)))))
    body.append(Op("func.return", [fused.result]))
    return m


KERNEL_TEXT = """\
module @K {
  func.func @f(%x: tensor<4 x f32>, %y: tensor<4 x f32>) -> (tensor<4 x f32>) {
    %0 = "kernel.fused"(%x, %y) {kind = "elementwise"} ({
    ^bb0(%a: tensor<4 x f32> loc("k.nr":2:1), %x_1: tensor<4 x f32>):
      %1 = "tensor.add"(%a, %x_1) : (tensor<4 x f32>, tensor<4 x f32>) -> tensor<4 x f32>
      %2 = "test.scale"(%1, %x) {by = 0.5} : (tensor<4 x f32>, tensor<4 x f32>) -> tensor<4 x f32>
    }, {
    ^bb0:
    ^bb1:
      "test.yield"(%y) : (tensor<4 x f32>) -> ()
    }, {
    }) : (tensor<4 x f32>, tensor<4 x f32>) -> tensor<4 x f32> loc(fused["k.nr":1:1, "k.nr":2:1])
    "func.return"(%0) : (tensor<4 x f32>) -> ()
  }
}"""


def test_regions_print_exactly_and_round_trip() -> None:
    m = kernel_module()
    assert print_module(m) == KERNEL_TEXT
    back = roundtrip(m)
    fused = func_body(back.func()).ops[0]
    assert [len(r.blocks) for r in fused.regions] == [1, 2, 0]
    inner = fused.regions[0].blocks[0]
    assert [a.name_hint for a in inner.args] == ["a", "x_1"]
    assert inner.args[0].location == FileLoc("k.nr", 2, 1)
    scale = inner.ops[1]
    assert scale.operands[1] is func_body(back.func()).args[0]  # sees the enclosing scope
    assert fused.regions[1].blocks[1].ops[0].operands[0] is func_body(back.func()).args[1]


def test_print_op_uses_function_names() -> None:
    m = kernel_module()
    fused = func_body(m.func()).ops[0]
    scale = fused.regions[0].blocks[0].ops[1]
    assert print_op(scale) == (
        '%2 = "test.scale"(%1, %x) {by = 0.5} : (tensor<4 x f32>, tensor<4 x f32>) -> tensor<4 x f32>'
    )
    assert print_op(fused).splitlines()[0] == '%0 = "kernel.fused"(%x, %y) {kind = "elementwise"} ({'
    assert print_op(m.func()).startswith("func.func @f(%x: tensor<4 x f32>")
    detached = Op("test.lonely", [], [T(1)])
    assert print_op(detached) == '%0 = "test.lonely"() : () -> tensor<1 x f32>'
    stray = Op("test.stray", [Value(T(1))])
    assert print_op(stray) == '"test.stray"(%<<UNKNOWN SSA VALUE>>) : (tensor<1 x f32>) -> ()'


def test_region_scopes_are_closed() -> None:
    text = """module @M {
  func.func @f() -> () {
    "test.wrap"() ({
    ^bb0(%a: tensor<1 x f32>):
      "test.y"() : () -> ()
    }) : () -> ()
    "test.use"(%a) : (tensor<1 x f32>) -> ()
    "func.return"() : () -> ()
  }
}
"""
    with pytest.raises(IRParseError, match="use of undefined value '%a'") as e:
        parse_module(text)
    assert (e.value.line, e.value.col) == (7, 16)


def test_functions_are_isolated() -> None:
    text = """module @M {
  func.func @f(%x: tensor<1 x f32>) -> () {
    "func.return"() : () -> ()
  }
  func.func @g() -> () {
    "test.use"(%x) : (tensor<1 x f32>) -> ()
    "func.return"() : () -> ()
  }
}
"""
    with pytest.raises(IRParseError, match="undefined value '%x'"):
        parse_module(text)


# -- attributes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "0"),
        (-1, "-1"),
        (10**30, str(10**30)),
        (1.0, "1.0"),
        (0.001, "0.001"),
        (1e-05, "1e-05"),
        (1e20, "1e+20"),
        (-0.0, "-0.0"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (True, "true"),
        (False, "false"),
        (None, "none"),
        ("relu", '"relu"'),
        ('a"b\\c\n\u00e9', '"a\\"b\\\\c\\n\\u00e9"'),
        ([1, 2], "[1, 2]"),
        ((3, 3), "[3, 3]"),
        ([], "[]"),
        ({}, "{}"),
        ({"b": 1, "a": [True, None]}, "{a = [true, none], b = 1}"),
        ({"with space": 1, "x.y": 2, "_ok1": 3}, '{_ok1 = 3, "with space" = 1, "x.y" = 2}'),
        (T(batch, 3), "tensor<batch x 3 x f32>"),
        (np.int64(4), "4"),
        (np.float32(0.5), "0.5"),
        (np.bool_(True), "true"),
    ],
)
def test_format_attr(value: Any, text: str) -> None:
    assert format_attr(value) == text
    back = parse_attr(text)
    assert format_attr(back) == text


def test_nan_attribute() -> None:
    assert format_attr(float("nan")) == "nan"
    assert math.isnan(parse_attr("nan"))
    assert parse_attr("-inf") == float("-inf")


def test_format_attr_rejects_values_without_text() -> None:
    with pytest.raises(TypeError):
        format_attr(object())
    with pytest.raises(TypeError):
        format_attr({1: 2})
    with pytest.raises(TypeError):
        format_attr(np.zeros(3))


def test_tuples_print_as_lists_and_parse_as_lists() -> None:
    m = Module("M", attributes={"pool": (2, 2)})
    back = roundtrip(m)
    assert back.attributes == {"pool": [2, 2]}


def same_attr(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0 and True, -0.0 from 0.0, and accepts nan == nan."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b) and not (isinstance(a, (list, tuple)) and isinstance(b, list)):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_attr(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_attr(a[k], b[k]) for k in a)
    return a == b


ATTR_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
ATTRS = st.recursive(
    ATTR_LEAVES,
    lambda c: st.one_of(
        st.lists(c, max_size=4),
        st.tuples(c, c),
        st.dictionaries(st.text(max_size=8), c, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(ATTRS)
def test_random_attributes_round_trip(value: Any) -> None:
    text = format_attr(value)
    back = parse_attr(text)
    assert same_attr(value, back)
    assert format_attr(back) == text


# -- types and locations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t",
    [
        T(batch, 28, 28, 1),
        TensorType(None, "f16"),
        T(),
        T(floordiv(h - 3, 2) + 1, h * 2, -batch + 7),
        T(1, dtype="i1"),
        *[T(2, dtype=d) for d in ELEMENT_TYPES],
    ],
)
def test_types_round_trip(t: TensorType) -> None:
    assert parse_type(str(t)) == t


def test_type_spacing_is_flexible() -> None:
    assert parse_type("tensor<batch  x\t3 x f32>") == T(batch, 3)
    assert parse_type("tensor< * x f32 >") == TensorType(None)


DIM_SYMS = st.sampled_from(["batch", "h", "w", "seq_len", "x1"])
DIMS = st.recursive(
    st.one_of(st.integers(0, 512), DIM_SYMS.map(sym)),
    lambda c: st.one_of(
        st.tuples(c, c).map(lambda p: p[0] + p[1]),
        st.tuples(c, c).map(lambda p: p[0] - p[1]),
        st.tuples(c, st.integers(-3, 4)).map(lambda p: p[0] * p[1]),
        st.tuples(c, st.integers(1, 5)).map(lambda p: floordiv(p[0], p[1])),
    ),
    max_leaves=6,
)
TYPES = st.one_of(
    st.builds(lambda ds, dt: TensorType(tuple(ds), dt), st.lists(DIMS, max_size=4),
              st.sampled_from(ELEMENT_TYPES)),
    st.sampled_from(ELEMENT_TYPES).map(lambda dt: TensorType(None, dt)),
)


@settings(max_examples=300, deadline=None)
@given(TYPES)
def test_random_types_round_trip(t: TensorType) -> None:
    back = parse_type(str(t))
    assert back == t
    assert str(back) == str(t)


@pytest.mark.parametrize(
    "loc",
    [
        UNKNOWN,
        FileLoc("m.nr", 3, 10),
        FileLoc("m.nr", 3, 10, 3, 22),
        FileLoc('dir with "quotes"/ü.nr', 1, 1, 2, 1),
        CallSiteLoc(FileLoc("m.nr", 2, 3, 2, 9), FileLoc("m.nr", 9, 5, 9, 12)),
        CallSiteLoc(CallSiteLoc(FileLoc("a", 1, 1), FileLoc("a", 2, 2)), FileLoc("a", 3, 3)),
        FusedLoc((FileLoc("a", 1, 1), UNKNOWN, CallSiteLoc(FileLoc("a", 1, 2), FileLoc("a", 5, 5)))),
        FusedLoc(()),
    ],
)
def test_locations_round_trip(loc: Location) -> None:
    assert parse_location(loc.to_ir()) == loc


LOCS = st.recursive(
    st.one_of(
        st.just(UNKNOWN),
        st.builds(FileLoc, st.text(max_size=6), st.integers(1, 999), st.integers(1, 200)),
        st.builds(FileLoc, st.text(max_size=6), st.integers(1, 999), st.integers(1, 200),
                  st.integers(1, 999), st.integers(0, 200)),
    ),
    lambda c: st.one_of(
        st.builds(CallSiteLoc, c, c),
        st.lists(c, max_size=3).map(lambda xs: FusedLoc(tuple(xs))),
    ),
    max_leaves=5,
)


# -- random modules ------------------------------------------------------------------------------


@st.composite
def modules(draw: st.DrawFn) -> Module:
    """A function over random values: every op uses earlier values; names, types, locations vary."""
    m = Module(draw(st.text(min_size=1, max_size=6)),
               attributes=draw(st.dictionaries(st.text(max_size=5), ATTRS, max_size=2)))
    for fi in range(draw(st.integers(1, 2))):
        arg_types = draw(st.lists(TYPES, min_size=0, max_size=3))
        hints = draw(st.lists(st.one_of(st.none(), st.text(max_size=4)),
                              min_size=len(arg_types), max_size=len(arg_types)))
        f = func_op(f"f{fi}", arg_types, ["_"] * len(arg_types), location=draw(LOCS))
        body = func_body(f)
        for a, hint in zip(body.args, hints):
            a.name_hint = hint
            a.location = draw(LOCS)
        values: list[Value] = list(body.args)
        for i in range(draw(st.integers(0, 5))):
            operands = draw(st.lists(st.sampled_from(values), max_size=3)) if values else []
            results = draw(st.lists(TYPES, max_size=3))
            attrs = draw(st.dictionaries(st.text(max_size=5), ATTRS, max_size=3))
            op = body.append(Op(f"test.op{i}", operands, results, attrs, location=draw(LOCS)))
            values.extend(op.results)
        rets = draw(st.lists(st.sampled_from(values), max_size=2)) if values else []
        body.append(Op("func.return", rets, location=draw(LOCS)))
        m.body.append(f)
    return m


def same_structure(a: Module, b: Module) -> None:
    assert a.name == b.name and same_attr(a.attributes, b.attributes)
    for fa, fb in zip(a.funcs, b.funcs, strict=True):
        assert fa.location == fb.location
        ba, bb = func_body(fa), func_body(fb)
        index: dict[int, Value] = {}
        for x, y in zip(ba.args, bb.args, strict=True):
            assert x.type == y.type and x.location == y.location
            index[id(x)] = y
        for x, y in zip(ba.ops, bb.ops, strict=True):
            assert x.name == y.name and x.location == y.location
            assert same_attr(x.attributes, y.attributes)
            assert [index[id(v)] for v in x.operands] == list(y.operands)
            assert [r.type for r in x.results] == [r.type for r in y.results]
            index.update({id(r): s for r, s in zip(x.results, y.results)})


@settings(max_examples=150, deadline=None)
@given(modules())
def test_random_modules_round_trip(m: Module) -> None:
    back = roundtrip(m)
    same_structure(m, back)


# -- errors ----------------------------------------------------------------------------------------

FUNC = """module @M {{
  func.func @f(%x: tensor<2 x f32>) -> () {{
{body}
    "func.return"() : () -> ()
  }}
}}
"""


def parse_error(body: str) -> IRParseError:
    with pytest.raises(IRParseError) as e:
        parse_module(FUNC.format(body=body))
    return e.value


@pytest.mark.parametrize(
    "body, message, line, col",
    [
        ('    "t.a"(%7) : (tensor<2 x f32>) -> ()', "use of undefined value '%7'", 3, 11),
        ('    %x = "t.a"() : () -> tensor<2 x f32>', "redefinition of value '%x'", 3, 5),
        ('    %0 = "t.a"() : () -> tensor<2 x f32>\n    %0 = "t.b"() : () -> tensor<2 x f32>',
         "redefinition of value '%0'", 4, 5),
        ('    "t.a"(%x) : () -> ()', "has 1 operand(s) but its signature lists 0", 3, 17),
        ('    "t.a"(%x) : (tensor<2 x f32>, tensor<2 x f32>) -> ()', "lists 2 operand type", 3, 17),
        ('    %0 = "t.a"() : () -> (tensor<2 x f32>, tensor<2 x f32>)', "names 1 result(s)", 3, 5),
        ('    "t.a"(%x) : (tensor<3 x f32>) -> ()', ("'%x' has type tensor<2 x f32> but is used as "
         "tensor<3 x f32>"), 3, 11),
        ('    "t.a"(%x) : (tensor<(h +) x f32>) -> ()', "bad dimension", 3, 25),
        ('    "t.a"(%x) : (tensor<2 x f31>) -> ()', "expected an element type", 3, 29),
        ('    "t.a"(%x) : (tensor<2 x * x f32>) -> ()', "'*' (unranked) must be the only", 3, 29),
        ('    "t.a"(%x) : (tensor<2 x f32) -> ()', "expected '>' to close the tensor type, got ')'", 3, 32),
        (('    %0:2 = "t.a"() : () -> (tensor<2 x f32>, tensor<2 x f32>)\n'
         '    "t.b"(%0) : (tensor<2 x f32>) -> ()'), "'%0' has 2 results; use '%0#0'", 4, 11),
        (('    %0:2 = "t.a"() : () -> (tensor<2 x f32>, tensor<2 x f32>)\n'
         '    "t.b"(%0#2) : (tensor<2 x f32>) -> ()'), "'%0' has only 2 result(s), no #2", 4, 11),
        ('    "t.a"(%x : (tensor<2 x f32>) -> ()', "expected ',' or ')' in the operand list", 3, 14),
        ('    "t.a"(%x) {a = } : (tensor<2 x f32>) -> ()', "expected an attribute value", 3, 20),
        ('    "t.a"(%x) {a = 1, a = 2} : (tensor<2 x f32>) -> ()', "duplicate attribute 'a'", 3, 23),
        ('    "t.a"(%x) {a = "x\\q"} : (tensor<2 x f32>) -> ()', "bad string literal", 3, 20),
        ('    "t.a"(%x) : (tensor<2 x f32>) -> () loc("f":1)', "expected ':' between line", 3, 50),
        ('    "t.a"(%x) : (tensor<2 x f32>) -> () loc(nowhere)', "expected a location", 3, 45),
        ('    "t.a"(%x) (tensor<2 x f32>) -> ()', "expected '{' to open a region", 3, 16),
        ("    t.a(%x) : () -> ()", "expected an op", 3, 5),
        ('    "t.a"(%x) : (tensor<2 x f32>) -> () ; ', "unexpected character ';'", 3, 41),
    ],
)
def test_parse_errors(body: str, message: str, line: int, col: int) -> None:
    e = parse_error(body)
    assert message in e.message
    assert (e.line, e.col) == (line, col), e
    assert str(e).startswith(f"{line}:{col}: ")


def test_forward_use_type_must_match_definition() -> None:
    e = parse_error('    "t.a"(%0) : (tensor<3 x f32>) -> ()\n    %0 = "t.b"() : () -> tensor<2 x f32>')
    assert "'%0' has type tensor<2 x f32> but is used as tensor<3 x f32>" in e.message
    assert (e.line, e.col) == (3, 11)


def test_function_result_types_must_match_return() -> None:
    text = """module @M {
  func.func @f(%x: tensor<2 x f32>) -> (tensor<3 x f32>) {
    "func.return"(%x) : (tensor<2 x f32>) -> ()
  }
}
"""
    with pytest.raises(IRParseError, match=r"declares result types \(tensor<3 x f32>\) but its "
                       r"func.return returns \(tensor<2 x f32>\)") as e:
        parse_module(text)
    assert (e.value.line, e.value.col) == (2, 37)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected 'module' at the start of the IR, got end of input"),
        ("module M {}", "expected a symbol name"),
        ('module @"a\\q" {}', "bad string literal"),
        ("module @M {", "expected '}' to close the module body, got end of input"),
        ("module @M {} extra", "expected end of input after the module, got 'extra'"),
        ("module @M attributes [1] {}", "expected '{' to open an attribute dictionary"),
        ('module @M {\n  func.func @f() -> () attributes {sym_name = "g"} {\n  }\n}',
         "'sym_name' is given by the function's @name"),
        ("module @M {\n  ^bb0:\n}", "expected '}' to close the module body, got '^bb0'"),
        ('module @M {\n "t.w"() ({\n ^bb0:\n ^bb0:\n }) : () -> ()\n}', "redefinition of block ^bb0"),
    ],
)
def test_module_level_errors(text: str, message: str) -> None:
    with pytest.raises(IRParseError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("^", r"\^")):
        parse_module(text)


def test_comments_are_ignored() -> None:
    text = "// RUN: something %s\n" + DIGIT_NET_TEXT.replace(
        ' {\n    %0', ' { // trailing comment "with quotes"\n    // CHECK: %0\n    %0', 1)
    assert print_module(parse_module(text)) == DIGIT_NET_TEXT
    # '//' inside a string is not a comment.
    assert parse_attr('"a//b"') == "a//b"


def test_parse_module_or_diagnose_reports_a_located_error() -> None:
    text = 'module @M {\n  func.func @f() -> () {\n    "t.a"(%nope) : (tensor<1 x f32>) -> ()\n'
    text += '    "func.return"() : () -> ()\n  }\n}\n'
    with pytest.raises(CompileError) as e:
        parse_module_or_diagnose(text, "bad.nir")
    (diag,) = e.value.diagnostics
    assert diag.location == FileLoc("bad.nir", 3, 11)
    rendered = e.value.render()
    assert rendered.splitlines()[:3] == [
        "bad.nir:3:11: error: use of undefined value '%nope'",
        '    3 |     "t.a"(%nope) : (tensor<1 x f32>) -> ()',
        "      |           ^",
    ]


def test_parse_module_or_diagnose_passes_good_text_through() -> None:
    assert print_module(parse_module_or_diagnose(DIGIT_NET_TEXT, "ok.nir")) == DIGIT_NET_TEXT
