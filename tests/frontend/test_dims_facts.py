"""Divisibility facts in ``dims { }``: the forms, their errors, and the module attributes.

``h: 32..512 step 32`` and ``h % 8 == 0`` must parse into the AST they mean, reach the module
as ``dims = {h = [lo, hi, step]}``, and every misuse must be a located diagnostic. The
frontend also records each input symbol's nominal size (``dim_nominal``).
"""

from __future__ import annotations

import textwrap

import pytest

from neuralc.diagnostics import CompileError, render_all
from neuralc.driver import compile_source
from neuralc.frontend import ast
from neuralc.frontend.parser import parse
from neuralc.ir.printer import print_module


def net(dims: str, inp: str = "(h, 4)", layers: str = "Dense(1)") -> str:
    return f"network N {{\n  input: {inp}\n  dims {{ {dims} }}\n  layers:\n    {layers}\n}}\n"


def facts(dims: str) -> list[ast.DimRange | ast.DimStep]:
    return parse(net(dims), "m.nr").networks[0].dims


def compile_dims(dims: str, inp: str = "(h, 4)", layers: str = "Dense(1)"):
    return compile_source(net(dims, inp, layers), "m.nr").module


def errors(dims: str, inp: str = "(h, 4)", layers: str = "Dense(1)") -> str:
    with pytest.raises(CompileError) as ei:
        compile_source(net(dims, inp, layers), "m.nr")
    return render_all(ei.value.diagnostics)


# -- the forms -------------------------------------------------------------------------------


@pytest.mark.parametrize("dims, want", [
    ("h: 32..512 step 32", [("h", 32, 512, 32)]),
    ("h: 8.. step 8", [("h", 8, None, 8)]),
    ("h: ..64 step 16", [("h", None, 64, 16)]),
    ("h: 8..64 STEP 8", [("h", 8, 64, 8)]),
    ("h: 1..8, w: 2..16 step 2", [("h", 1, 8, None), ("w", 2, 16, 2)]),
    ("h: 8..64 step 8 w: 1..2", [("h", 8, 64, 8), ("w", 1, 2, None)]),
])
def test_step_forms(dims: str, want: list) -> None:
    got = facts(dims)
    assert all(isinstance(f, ast.DimRange) for f in got)
    assert [(f.name, f.lo, f.hi, f.step) for f in got] == want


def test_divisibility_entry() -> None:
    got = facts("h: 32..512, h % 8 == 0; w % 4 == 0")
    assert isinstance(got[0], ast.DimRange) and got[0].step is None
    assert [(type(f).__name__, f.name, getattr(f, "step", None)) for f in got[1:]] == [
        ("DimStep", "h", 8), ("DimStep", "w", 4)]
    assert got[1].span.col == 22 and got[1].span.end_col == 32  # the whole "h % 8 == 0"


def test_step_is_still_a_name_elsewhere() -> None:
    m = compile_dims("step: 1..8", inp="(step, 4)")
    assert m.attributes["dims"] == {"step": [1, 8]}
    assert "step" in print_module(m)


# -- the module attributes -------------------------------------------------------------------


def test_dims_attribute_carries_the_step() -> None:
    m = compile_dims("h: 16..256 step 8, w % 4 == 0, b: 1..4", inp="(h, w, 3)",
                     layers="Flatten()")
    assert m.attributes["dims"] == {"h": [16, 256, 8], "w": [None, None, 4], "b": [1, 4]}
    assert "dims = {b = [1, 4], h = [16, 256, 8], w = [none, none, 4]}" in print_module(m)


def test_several_steps_combine_and_a_step_of_one_says_nothing() -> None:
    m = compile_dims("h: 12..120, h % 4 == 0, h % 6 == 0, w: 1..9 step 1", inp="(h, w, 3)",
                     layers="Flatten()")
    assert m.attributes["dims"] == {"h": [12, 120, 12], "w": [1, 9]}


def test_nominal_sizes_are_recorded_per_input_symbol() -> None:
    m = compile_dims("h: 16..48 step 16, w: 100.., batch: 4..8 step 4", inp="(h, w, n)",
                     layers="Flatten()")
    # batch 1 -> 4 (range, step), h 64 -> 48 (the largest allowed), w 64 -> 100, n 64.
    assert m.attributes["dim_nominal"] == {"batch": 4, "h": 48, "w": 100, "n": 64}


def test_static_model_records_only_the_batch_nominal() -> None:
    m = compile_source("network N {\n  input: (4,)\n  layers: Dense(2)\n}\n", "m.nr").module
    assert m.attributes["dim_nominal"] == {"batch": 1}
    assert "dims" not in m.attributes


# -- errors ---------------------------------------------------------------------------------


def test_range_ends_must_be_multiples_of_the_step() -> None:
    out = errors("h: 30..512 step 8")
    assert out.startswith("m.nr:3:10: error: range of 'h' must start and end on multiples of "
                          "its step 8, got 30..512")


def test_range_ends_against_a_separate_fact_point_at_it() -> None:
    out = errors("h: 32..100, h % 8 == 0")
    assert "m.nr:3:10: error: range of 'h' must start and end on multiples of its step 8, " \
           "got 32..100" in out
    assert "m.nr:3:22: note: 'h' is declared a multiple of 8 here" in out


@pytest.mark.parametrize("dims, where, message", [
    ("h: 8..64 step 0", "3:19", "a dimension step must be 1 or more, got 0"),
    ("h % 0 == 0", "3:10", "a dimension step must be 1 or more, got 0"),
    ("h: 8..64 step 2.5", "3:24", "a dimension step must be a non-negative integer, got 2.5"),
    ("h % 8 == 3", "3:19", "a divisibility fact reads 'h % 8 == 0'; only '== 0' can be stated"),
])
def test_bad_steps_are_located(dims: str, where: str, message: str) -> None:
    out = errors(dims)
    assert f"m.nr:{where}: error: {message}" in out


@pytest.mark.parametrize("dims, message", [
    ("h: 8..64 step -8", "unexpected '-'"),
    ("h: 8 step 8", "unexpected 'step'"),
    ("h % 8 = 0", "unexpected '='"),
])
def test_malformed_facts_are_syntax_errors(dims: str, message: str) -> None:
    out = errors(dims)
    assert f"error: {message}" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("name", ["mod", "min", "max"])
def test_dim_names_the_ir_writes_are_reserved(name: str) -> None:
    out = errors("", inp=f"({name}, 4)")
    assert f"'{name}' cannot name a dimension (reserved)" in out


def test_a_percent_outside_dims_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(CompileError) as ei:
        parse(textwrap.dedent("""\
            network N {
              input: (4,)
              layers: Dense(10 % 3)
            }
            """), "m.nr")
    assert "m.nr:3:20: error: unexpected '%'" in render_all(ei.value.diagnostics)
